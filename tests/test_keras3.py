"""api "keras3": Keras 3's BatchNormalization run eagerly through tf.function (TF >= 2.16),
against the numpy reference and the update rule. Elsewhere it is one ProbeConfigError
(tests/test_backend.py)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bn_decay_probe import ProbeConfigError, ProbeResult, backend, probe
from bn_decay_probe.report import render_text
from conftest import DECAYS, EPSILON, SHAPES, Reference, channel_inputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif("'keras3' not in backend.versions()",
                                reason="Keras 3 is tf.keras from TensorFlow 2.16 on")


@pytest.fixture(scope="module")
def measured():
    cache = {}

    def run(decay, shape, steps=2, **options):
        key = (decay, shape, steps, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = probe(decay=decay, inputs=channel_inputs(shape), steps=steps,
                               epsilon=EPSILON, api="keras3", device="cpu", **options)
        return cache[key]

    return run


@pytest.mark.parametrize("shape", SHAPES, ids=["C1", "C3"])
@pytest.mark.parametrize("decay", DECAYS)
def test_moving_statistics_follow_the_rule_with_the_biased_variance(measured, decay, shape):
    r = measured(decay, shape)
    ref = Reference(channel_inputs(shape))
    assert not r.fused  # no FusedBatchNorm op in the traced functions
    # What Keras 3 fed, read from the traced update: the biased variance (tf.nn.moments).
    np.testing.assert_allclose(r.batch_statistics["moving_mean"], ref.mean, rtol=1e-6)
    np.testing.assert_allclose(r.batch_statistics["moving_variance"], ref.biased_var, rtol=1e-5)
    mean, var = ref.moving(decay, 2, fused=False)
    np.testing.assert_allclose(r.after["train"]["moving_mean"], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r.after["train"]["moving_variance"], var, rtol=1e-5)
    assert r.moving_statistics_updated is (decay < 1)
    np.testing.assert_allclose(r.outputs["train"], ref.train_output(), rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(r.outputs["test"], ref.normalize(mean, var), rtol=1e-5, atol=2e-5)
    # The test call changes nothing.
    for name, values in r.before["test"].items():
        np.testing.assert_array_equal(r.after["test"][name], values)
    # Keras 3 multiplies the statistic by 1 - momentum, a float32 constant of the float64 value.
    factor = float(np.float32(1.0 - decay))
    assert dict(r.update_factor) == {"moving_mean": factor, "moving_variance": factor}


@pytest.mark.parametrize("shape", SHAPES, ids=["C1", "C3"])
def test_at_decay_zero_test_equals_train(measured, shape):
    """The biased variance is what normalized the batch, so decay 0 gives test == train."""
    r = measured(0.0, shape, steps=1)
    assert r.trajectory["gap"][-1] <= 1e-5
    np.testing.assert_allclose(r.outputs["test"], r.outputs["train"], atol=1e-5)


def test_one_layer_object_shares_its_variables_and_two_do_not(measured):
    shared = measured(0.0, SHAPES[1], steps=1)
    assert shared.branches_share_variables
    assert shared.branch_variables["train"] == shared.branch_variables["test"] == (
        "batch_normalization/beta:0", "batch_normalization/gamma:0",
        "batch_normalization/moving_mean:0", "batch_normalization/moving_variance:0")
    unshared = measured(0.0, SHAPES[1], steps=1, share_variables=False)
    assert not unshared.branches_share_variables and unshared.shared_variables == ()
    x = channel_inputs(SHAPES[1])
    # The second layer never trained: the test normalizes with its initial (0, 1).
    np.testing.assert_allclose(unshared.outputs["test"], x / np.sqrt(1 + EPSILON), rtol=1e-6)


def test_trainable_false_runs_in_inference_mode(measured):
    r = measured(0.0, SHAPES[1], steps=1, trainable=False)
    x = channel_inputs(SHAPES[1])
    assert dict(r.batch_statistics) == {} and dict(r.update_factor) == {}
    assert not r.moving_statistics_updated
    assert any("no moving-average update op" in note for note in r.notes)
    np.testing.assert_allclose(r.outputs["train"], x / np.sqrt(1 + EPSILON), rtol=1e-6)


def test_batches_nchw_and_the_trajectory(measured):
    batches = [channel_inputs((2, 3, 3, 2), seed) for seed in (1, 2)]
    r = probe(decay=0.5, batches=batches, steps=2, api="keras3", data_format="NCHW",
              device="cpu")
    refs = [Reference(b) for b in batches * 2]
    np.testing.assert_allclose(r.trajectory["batch_variance"], [f.biased_var for f in refs],
                               rtol=1e-5)
    np.testing.assert_allclose(r.trajectory["moving_mean"],
                               r.predicted_trajectory()["moving_mean"], rtol=1e-5)
    np.testing.assert_allclose(r.trajectory["moving_variance"],
                               r.predicted_trajectory()["moving_variance"], rtol=1e-5)
    assert r.epsilon == {"train": float(np.float32(1e-3)), "test": float(np.float32(1e-3))}


def test_what_an_eager_run_does_not_have_is_stated_not_invented(measured):
    r = measured(0.9, SHAPES[0])
    assert r.update_ops == ()
    assert dict(r.device.ops) == {"train": {}, "test": {}} and r.device.ran_on == ()
    assert r.notes[-1] == (
        "api keras3 ran as Keras 3 runs it, through tf.function calls: there is no UPDATE_OPS "
        "collection, and TensorFlow records no per-op devices for such calls, so where each op "
        "ran is not measured; the outputs were on /device:CPU:0")
    assert r.versions["keras3"] == backend.keras3().__version__
    assert ProbeResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert "ran on (no op traced) (device cpu)" in render_text(r)


@pytest.mark.parametrize("options, message", [
    (dict(fused=True), "fused=True is not available with api='keras3': Keras 3's "
                       "BatchNormalization has no fused argument (it builds the non-fused ops); "
                       "use fused=None or False"),
    (dict(updates="update_ops"), "api='keras3' updates the moving statistics as the layer runs "
                                 "(Keras 3 has no update ops to collect or forget); updates must "
                                 "be 'inplace', got 'update_ops'"),
])
def test_options_keras3_does_not_have_are_one_line_errors(options, message):
    with pytest.raises(ProbeConfigError) as info:
        probe(api="keras3", **options)
    assert str(info.value) == message


def test_cli_json_end_to_end():
    out = subprocess.run([sys.executable, "-m", "bn_decay_probe", "--api", "keras3", "--decay",
                          "0", "--device", "cpu", "--json", "-"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert out.returncode == 0, out.stderr
    (result,) = json.loads(out.stdout)["results"]
    x = np.array(result["inputs"], np.float64)
    assert result["config"]["api"] == "keras3" and result["fused"] is False
    np.testing.assert_allclose(result["batch_statistics"]["moving_variance"], [x.var()],
                               rtol=1e-6)
    assert result["outputs"]["test"] == result["outputs"]["train"]


def step_by_step(config, tol, max_steps):
    """The reference for converge(): one tf.function call per train step and per test, as
    Keras 3 runs them, variables compared after each step."""
    from bn_decay_probe.probe.engines import keras3
    from bn_decay_probe.probe.measure import gap as _gap, layout

    p, _, _ = keras3.build(config)
    x = layout(config, config.inputs)
    before = p.snapshot()
    for step in range(1, max_steps + 1):
        train_output, _ = p.run_train(x)
        if _gap(p.run_test(x), train_output) <= tol:
            return step, step, ""
        after = p.snapshot()
        if all(np.array_equal(before[n], after[n]) for n in after):
            return None, step, "the variables stopped changing after step %d" % (step - 1)
        before = after
    return None, max_steps, "limit reached"


@pytest.mark.parametrize("decay, share, max_steps", [
    (0.9, True, 200), (0.99, True, 2000), (0.9, False, 400), (0.99, True, 300)],
    ids=["converges in the first chunk", "converges in a later chunk", "stops changing",
         "limit reached mid-chunk"])
def test_converge_in_chunks_decides_the_step_that_one_call_per_step_does(decay, share,
                                                                        max_steps):
    from bn_decay_probe.probe.config import ProbeConfig
    from bn_decay_probe.probe.engines import keras3

    config = ProbeConfig.create(decay=decay, inputs=channel_inputs((4, 8, 8, 3)),
                                api="keras3", device="cpu", share_variables=share)
    got = keras3.converge(config, 0.01, max_steps)
    assert (got.measured, got.steps_run, got.stopped) == step_by_step(config, 0.01, max_steps)
