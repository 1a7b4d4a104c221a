"""The same configurations on the other backend (TF 1.15 <-> TF 2.x) give bit-identical moving
statistics and outputs, with TF 2.x's oneDNN kernels off; with them on (TF 2.x's default on
x86), fused batch norm rounds differently by a few float32 ulps. And the doctor finds the same
in a checkpoint this backend wrote when the other backend reads it.

`make cross` runs this with BN_DECAY_PROBE_OTHER_PYTHON naming the other backend's interpreter;
the other side writes its results as JSON, this side compares.
"""
import json
import os
import subprocess

import numpy as np
import pytest

from bn_decay_probe import diagnose_checkpoint, probe

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


ULPS = 4  # the most measured, on TF 2.13.1 and on TF 2.21.0 (x86, AVX-512)


def test_with_onednn_the_fused_kernel_rounds_differently_by_a_few_ulps(mine):
    """With oneDNN the moving statistics stay within ULPS of TF 1.15's, the outputs within 1e-6
    (measured on TF 2.21.0: 4 ulps, outputs within 4.8e-7)."""
    onednn = run_other("1")
    tf2 = [r for r in (mine[0], onednn[0]) if r["versions"]["backend"] == "tf2"][0]
    if not tf2["versions"]["onednn"]:
        pytest.skip("this TensorFlow 2 build has no oneDNN kernels")
    for config, a, b in zip(CONFIGS, mine, onednn):
        for name in ("moving_mean", "moving_variance"):
            assert float32_ulps(a["trajectory"][name], b["trajectory"][name]) <= ULPS, config
        for phase in ("train", "test"):
            np.testing.assert_allclose(a["outputs"][phase], b["outputs"][phase], atol=1e-6,
                                       rtol=1e-6)


# A correct contrib model, the same with its update ops never run, and a Keras model whose
# layer.updates never run (tests/test_doctor.py builds them), each checked with a decay, and the
# finding codes expected in it.
CHECKPOINTS = [("contrib", dict(test_branch="shared"), 0.9, set()),
               ("contrib", dict(wiring="none"), 0.9, {"NEVER_UPDATED"}),
               ("contrib", dict(test_branch="shared"), 0.99, {"PARTLY_CONVERGED"}),
               ("keras", dict(wiring="none"), 0.99, {"NEVER_UPDATED"})]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from test_doctor import Model

    return [Model(api, **options).save(tmp_path_factory.mktemp(api))
            for api, options, _, _ in CHECKPOINTS]


@pytest.fixture(scope="module")
def their_diagnoses(checkpoints):
    script = ("import json, sys; from bn_decay_probe import diagnose_checkpoint; "
              "print(json.dumps([diagnose_checkpoint(p, decay=d).to_dict() "
              "for p, d in json.load(sys.stdin)]))")
    jobs = [[path, c[2]] for path, c in zip(checkpoints, CHECKPOINTS)]
    out = subprocess.run([OTHER, "-c", script], input=json.dumps(jobs),
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("index", range(len(CHECKPOINTS)),
                         ids=["%s-%s-%s" % (a, ",".join("%s=%s" % kv for kv in o.items()), d)
                              for a, o, d, _ in CHECKPOINTS])
def test_the_other_backend_diagnoses_this_backends_checkpoint_alike(checkpoints,
                                                                     their_diagnoses, index):
    _, _, decay, expected = CHECKPOINTS[index]
    mine = diagnose_checkpoint(checkpoints[index], decay=decay).to_dict()
    assert {f["code"] for f in mine["findings"]} == expected
    # The same findings, layers, ranges (read from the same file), step and notes.
    assert their_diagnoses[index] == mine
