"""The same configurations on the other backend (TF 1.15 <-> TF 2.x) give bit-identical moving
statistics and outputs, with TF 2.x's oneDNN kernels off; with them on (TF 2.x's default on
x86), fused batch norm rounds differently by a few float32 ulps.

`make cross` runs this with BN_DECAY_PROBE_OTHER_PYTHON naming the other backend's interpreter;
the other side writes its results as JSON, this side compares.
"""
import json
import os
import subprocess

import numpy as np
import pytest

from bn_decay_probe import probe

OTHER = os.environ.get("BN_DECAY_PROBE_OTHER_PYTHON")
pytestmark = pytest.mark.skipif(not OTHER, reason="needs BN_DECAY_PROBE_OTHER_PYTHON: `make cross`")

CONFIGS = [
    dict(decay=0.0),
    dict(decay=1.0),
    dict(decay=0.9, steps=5, shape=(2, 3, 5, 3), seed=4),
    dict(decay=0.999, fused=False, steps=3),
    dict(decay=0.9, zero_debias=True, steps=2),
    dict(decay=0.5, batches=[[[[[1.0], [7.0]]]], [[[[3.0], [-2.0]]]]], steps=2),
    dict(decay=0.5, api="layers"),
    dict(decay=0.5, api="layers", fused=False, updates="update_ops"),
    dict(decay=0.5, api="keras", steps=2),
    dict(decay=0.5, api="keras", fused=False),
    dict(decay=0.5, api="nn", updates="update_ops"),
    dict(decay=0.5, api="nn", fused=False, data_format="NCHW"),
]
# Measured numbers; the rest (versions, op names, devices) describes the backend itself.
COMPARED = ("inputs", "batches", "outputs", "trajectory", "batch_statistics", "update_factor",
            "fused_by_phase", "epsilon", "branches_share_variables", "moving_statistics_updated")
SCRIPT = ("import json, sys; from bn_decay_probe import probe; "
          "print(json.dumps([probe(device='cpu', **c).to_dict() for c in json.load(sys.stdin)]))")


def run_other(onednn):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS=onednn)
    out = subprocess.run([OTHER, "-c", SCRIPT], input=json.dumps(CONFIGS), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def theirs():
    return run_other("0")


@pytest.fixture(scope="module")
def mine():
    return [probe(device="cpu", **config).to_dict() for config in CONFIGS]


@pytest.mark.parametrize("index", range(len(CONFIGS)),
                         ids=[",".join("%s=%s" % kv for kv in c.items() if kv[0] != "batches")
                              for c in CONFIGS])
def test_other_backend_gives_identical_numbers(mine, theirs, index):
    mine, other = mine[index], theirs[index]
    assert other["versions"]["backend"] != mine["versions"]["backend"]
    assert not mine["versions"]["onednn"] and not other["versions"]["onednn"]
    for key in COMPARED:
        assert mine[key] == other[key], key
    # Scopes may be named differently; the variables' values before and after each phase may not.
    for label in mine["snapshots"]:
        assert by_short_name(mine["snapshots"][label]) == \
            by_short_name(other["snapshots"][label]), label


def by_short_name(values):
    return {name.split(":")[0].split("/")[-1]: v for name, v in values.items()}


def float32_ulps(a, b):
    """Largest distance in float32 units in the last place (same sign assumed)."""
    a, b = np.asarray(a, np.float32).ravel(), np.asarray(b, np.float32).ravel()
    return int(np.max(np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32))))


def test_with_onednn_the_fused_kernel_rounds_differently_by_a_few_ulps(mine):
    """Measured on TF 2.13.1: up to 4 ulps in the moving statistics, 1e-6 in the outputs."""
    onednn = run_other("1")
    tf2 = [r for r in (mine[0], onednn[0]) if r["versions"]["backend"] == "tf2"][0]
    if not tf2["versions"]["onednn"]:
        pytest.skip("this TensorFlow 2 build has no oneDNN kernels")
    for config, a, b in zip(CONFIGS, mine, onednn):
        for name in ("moving_mean", "moving_variance"):
            assert float32_ulps(a["trajectory"][name], b["trajectory"][name]) <= 8, config
        for phase in ("train", "test"):
            np.testing.assert_allclose(a["outputs"][phase], b["outputs"][phase], atol=1e-6,
                                       rtol=1e-6)
