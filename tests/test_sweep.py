"""sweep(): every decay through one graph, each result following the update rule (the
comparison with probe() is test_sweep_identity.py); the stacked arrays, JSON and CSV round
trips, and bad decays."""
import csv
import functools
import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from bn_decay_probe import ProbeConfigError, SweepResult, probe, sweep
from bn_decay_probe.probe.config import ProbeConfig
from bn_decay_probe.probe.engines import choose
from bn_decay_probe.probe.engines.tf_graph import TFGraphEngine
from conftest import DECAYS, EPSILON, FUSED, SHAPES, Reference, channel_inputs


@functools.lru_cache(maxsize=None)
def _sweep(fused, shape, steps):
    return sweep(DECAYS, steps=steps, inputs=channel_inputs(shape), fused=fused,
                 epsilon=EPSILON, device="cpu")


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fused", FUSED)
def test_trajectories_follow_the_update_rule(fused, shape, steps):
    swept = _sweep(fused, shape, steps)
    ref = Reference(channel_inputs(shape))
    channels = shape[-1]
    assert swept.moving_mean.shape == swept.moving_variance.shape == (len(DECAYS), steps,
                                                                      channels)
    assert swept.gap.shape == (len(DECAYS), steps)
    np.testing.assert_array_equal(swept.decays, DECAYS)
    for i, decay in enumerate(DECAYS):
        for k in range(1, steps + 1):
            mean, var = ref.moving(decay, k, fused)
            np.testing.assert_allclose(swept.moving_mean[i, k - 1], mean, rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(swept.moving_variance[i, k - 1], var, rtol=1e-5)
            test = ref.normalize(mean, var)
            assert swept.gap[i, k - 1] == pytest.approx(
                np.abs(test - ref.train_output()).max(), rel=1e-4, abs=1e-4)


@pytest.fixture(scope="module")
def small():
    return sweep([0.0, 0.5, 0.9], steps=2, inputs=channel_inputs((2, 3, 5, 3)), device="cpu")


def test_result_is_a_sequence_of_read_only_results(small):
    assert [r.decay for r in small] == [small[i].decay for i in range(3)] == [0.0, 0.5, 0.9]
    for array in (small.decays, small.moving_mean, small.moving_variance, small.gap):
        with pytest.raises(ValueError):
            array.flat[0] = 1.0
    with pytest.raises(ValueError):
        small[1].outputs["test"].flat[0] = 1.0
    with pytest.raises(ValueError):
        small[1].after["train"]["moving_mean"][0] = 1.0
    assert repr(small) == ("<SweepResult 3 decay(s) from 0 to 0.9 fused=True "
                           "shape=(2, 3, 5, 3) steps=2>")


def test_json_round_trip(small):
    data = json.loads(json.dumps(small.to_dict(), allow_nan=False))
    assert data["decays"] == [0.0, 0.5, 0.9]
    np.testing.assert_array_equal(np.array(data["moving_variance"], np.float32),
                                  small.moving_variance)
    rebuilt = SweepResult.from_dict(data)
    assert rebuilt == small
    np.testing.assert_array_equal(rebuilt.moving_mean, small.moving_mean)


def test_csv_round_trip(small):
    rows = list(csv.DictReader(io.StringIO(small.to_csv())))
    assert len(rows) == 3 * 2 * 3  # decays x steps x channels
    ref = Reference(channel_inputs((2, 3, 5, 3)))
    for row in rows:
        i, k, c = [0.0, 0.5, 0.9].index(float(row["decay"])), int(row["step"]), int(row["channel"])
        # Written exactly: the float32 values read back bit for bit.
        assert np.float32(row["moving_mean"]) == small.moving_mean[i, k - 1, c]
        assert np.float32(row["moving_variance"]) == small.moving_variance[i, k - 1, c]
        assert float(row["gap"]) == small.gap[i, k - 1]
        mean, var = ref.moving(float(row["decay"]), k, fused=True)
        assert float(row["rule_moving_mean"]) == pytest.approx(mean[c], rel=1e-12)
        assert float(row["rule_moving_variance"]) == pytest.approx(var[c], rel=1e-12)
        assert float(row["batch_mean"]) == pytest.approx(ref.mean[c], rel=1e-6)
        assert float(row["batch_variance"]) == pytest.approx(ref.unbiased_var[c], rel=1e-5)


def test_progress_is_told_once_per_decay():
    told = []
    sweep([0.1, 0.2, 0.3, 0.4], device="cpu", progress=told.append)
    assert told == [1, 1, 1, 1]


def test_a_sweep_result_of_probe_results():
    """What the CLI builds from one probe() per decay for settings sweep does not run."""
    x = channel_inputs((1, 4, 4, 2))
    results = tuple(probe(decay=d, inputs=x, api="layers", steps=2, device="cpu")
                    for d in (0.5, 0.9))
    swept = SweepResult(results)
    ref = Reference(x)
    for i, decay in enumerate((0.5, 0.9)):
        mean, var = ref.moving(decay, 2, fused=True)
        np.testing.assert_allclose(swept.moving_mean[i, -1], mean, rtol=1e-5)
        np.testing.assert_allclose(swept.moving_variance[i, -1], var, rtol=1e-5)
    with pytest.raises(ValueError, match="must share steps and shape"):
        SweepResult((results[0], probe(decay=0.5, inputs=x, api="layers", device="cpu")))


BAD_DECAYS = [
    ([], "decays must be a non-empty sequence of numbers in [0, 1], got an empty list"),
    (np.array([]), "decays must be a non-empty sequence of numbers in [0, 1], got an empty "
                   "ndarray"),
    (0.9, "decays must be a non-empty sequence of numbers in [0, 1], got 0.9"),
    ("0.9", "decays must be a non-empty sequence of numbers in [0, 1], got '0.9'"),
    (np.ones((2, 2)) / 2, "decays must be a 1-D sequence of numbers in [0, 1], got an array "
                          "of shape (2, 2)"),
    ([0.5, 1.5], "decays[1] must be a number in [0, 1], got 1.5"),
    ([0.5, float("nan")], "decays[1] must be a number in [0, 1], got nan"),
    ([-0.1], "decays[0] must be a number in [0, 1], got -0.1"),
    ([True], "decays[0] must be a number in [0, 1], got True"),
    (["0.5"], "decays[0] must be a number in [0, 1], got '0.5'"),
]


@pytest.mark.parametrize("decays, message", BAD_DECAYS, ids=[m for _, m in BAD_DECAYS])
def test_bad_decays_raise_one_line(decays, message):
    with pytest.raises(ProbeConfigError) as info:
        sweep(decays)
    assert str(info.value) == message


def test_other_arguments_are_probes_own_checks():
    with pytest.raises(ProbeConfigError, match=r"^steps must be an integer >= 1, got 0$"):
        sweep([0.5], steps=0)


def test_bad_input_fails_before_tensorflow_and_the_modules_do_not_import_it():
    code = ("import sys, bn_decay_probe.probe.api, bn_decay_probe.report.plot\n"
            "import bn_decay_probe.progress\n"
            "from bn_decay_probe import sweep, ProbeConfigError\n"
            "try:\n    sweep([2.0])\nexcept ProbeConfigError as exc:\n    print(exc)\n"
            "print(sorted(m for m in ('tensorflow', 'matplotlib', 'tqdm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True,
                         universal_newlines=True)
    assert out.stdout.splitlines() == ["decays[0] must be a number in [0, 1], got 2.0", "[]"]


@pytest.mark.parametrize("options", [
    {}, {"fused": False, "steps": 3}, {"trainable": False}, {"api": "layers"},
    {"updates": "update_ops"}, {"data_format": "NCHW"}, {"zero_debias": True},
    {"share_variables": False}, {"batches": np.ones((2, 1, 2, 2, 1))}])
def test_sweep_runs_every_graph_api_and_setting(options):
    assert isinstance(choose(ProbeConfig.create(**options)), TFGraphEngine)


def test_sweep_does_not_change_decay_values():
    """The decay reaches the graph as float64, as a Python float does: 1 - decay is rounded to
    float32 once, after the subtraction."""
    decays = [0.1, 1 / 3, 0.999999]
    swept = sweep(decays, device="cpu")
    for decay, result in zip(decays, swept):
        assert result.decay == decay
        assert result.update_factor["moving_mean"] == float(np.float32(1.0 - decay))
        assert math.isclose(result.update_factor["moving_variance"], 1.0 - decay, rel_tol=1e-7)
