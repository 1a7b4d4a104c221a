"""Update modes, the four TF1 APIs, fused/non-fused, trajectories, batches, NCHW and
zero_debias, each against the numpy reference in conftest or the closed form."""
import numpy as np
import pytest

from bn_decay_probe import ProbeConfigError, backend, probe
from bn_decay_probe.report import render_text
from conftest import (Reference, backend_name, channel_inputs, first_step_within,
                      updates_run)

APIS = ("contrib", "layers", "keras", "nn")
UPDATES = ("inplace", "update_ops", "forgotten")
SHAPE = (2, 3, 5, 3)


@pytest.mark.parametrize("updates", UPDATES)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "nonfused"])
@pytest.mark.parametrize("api", APIS)
def test_api_fused_and_update_mode_against_the_reference(api, fused, updates):
    x = channel_inputs(SHAPE)
    r = probe(decay=0.75, inputs=x, fused=fused, steps=2, api=api, updates=updates,
              device="cpu")
    ref = Reference(x)
    assert r.fused is fused
    assert r.branches_share_variables
    # What the kernel feeds to the moving average, whether or not the update then runs.
    np.testing.assert_allclose(r.batch_statistics["moving_mean"], ref.mean, rtol=1e-6)
    np.testing.assert_allclose(r.batch_statistics["moving_variance"], ref.fed_var(fused),
                               rtol=1e-5)
    after = r.after["train"]
    if updates_run(api, updates):
        mean, var = ref.moving(0.75, 2, fused)
        np.testing.assert_allclose(after["moving_mean"], mean, rtol=1e-5)
        np.testing.assert_allclose(after["moving_variance"], var, rtol=1e-5)
    else:  # exactly the initial values: the classic "moving_mean stays 0" bug
        np.testing.assert_array_equal(after["moving_mean"], np.zeros(3))
        np.testing.assert_array_equal(after["moving_variance"], np.ones(3))
        mean, var = np.zeros(3), np.ones(3)
    assert r.moving_statistics_updated is updates_run(api, updates)
    np.testing.assert_allclose(r.outputs["train"], ref.train_output(), rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(r.outputs["test"], ref.normalize(mean, var), rtol=1e-5, atol=2e-5)
    for name, values in r.before["test"].items():
        np.testing.assert_array_equal(r.after["test"][name], values)


@pytest.mark.parametrize("api, updates, collected", [
    ("contrib", "inplace", 0), ("contrib", "update_ops", 2), ("layers", "inplace", 2),
    ("layers", "update_ops", 2), ("keras", "inplace", 0), ("keras", "update_ops", 0),
    ("nn", "update_ops", 2), ("nn", "inplace", 0),
])
def test_what_reaches_the_update_ops_collection(api, updates, collected):
    """tf.keras in a TF1 graph adds nothing to UPDATE_OPS: measured on the graph."""
    r = probe(decay=0.5, api=api, updates=updates, device="cpu")
    assert len(r.update_ops) == collected
    assert all("moving" in name or "AssignMovingAvg" in name for name in r.update_ops)


@pytest.mark.parametrize("api, train_prefix", [
    ("contrib", "probe_train/BatchNorm/"), ("layers", "batch_normalization/"),
    ("keras", "batch_normalization/"), ("nn", "probe_train/")])
def test_unshared_branches_are_shown_not_hidden(api, train_prefix):
    x = channel_inputs((1, 4, 4, 2))
    r = probe(decay=0.0, inputs=x, api=api, share_variables=False, device="cpu")
    assert not r.branches_share_variables and r.shared_variables == ()
    assert all(n.startswith(train_prefix) for n in r.branch_variables["train"])
    assert not set(r.branch_variables["test"]) & set(r.branch_variables["train"])
    # Training moved its own copy; the test branch normalizes with untouched (0, 1).
    np.testing.assert_allclose(r.after["train"]["moving_mean"], Reference(x).mean, rtol=1e-6)
    np.testing.assert_array_equal(r.after["test"]["moving_mean"], np.zeros(2))
    np.testing.assert_allclose(r.outputs["test"], x / np.sqrt(1.001), rtol=1e-6)
    assert "train and test do NOT share variables" in render_text(r)


@pytest.mark.parametrize("decay", [0.0, 0.6, 1.0])
@pytest.mark.parametrize("fused", [True, False])
def test_trajectory_follows_the_closed_form(decay, fused):
    x = channel_inputs((1, 3, 3, 2))
    r = probe(decay=decay, inputs=x, fused=fused, steps=6, device="cpu")
    ref = Reference(x)
    k = np.arange(1, 7)[:, None]
    assert r.trajectory["moving_mean"].shape == r.trajectory["moving_variance"].shape == (6, 2)
    np.testing.assert_allclose(r.trajectory["moving_mean"], (1 - decay ** k) * ref.mean,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r.trajectory["moving_variance"],
                               decay ** k + (1 - decay ** k) * ref.fed_var(fused), rtol=1e-5)
    np.testing.assert_allclose(r.trajectory["batch_mean"], np.tile(ref.mean, (6, 1)), rtol=1e-6)
    assert r.trajectory["gap"].shape == (6,)


@pytest.mark.parametrize("decay", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("fused", [True, False])
def test_steps_to_converge_measured_equals_predicted(decay, fused):
    x = channel_inputs((4, 8, 8, 1))
    expected = first_step_within(x, decay, fused, 0.01, 2000)
    r = probe(decay=decay, inputs=x, fused=fused, steps=expected + 3, device="cpu")
    convergence = r.steps_to_converge(0.01)
    assert convergence.predicted == expected
    assert abs(convergence.measured - expected) <= 1
    assert convergence.steps_run == expected + 3
    short = r.steps_to_converge(0.01 / 1000)
    assert short.measured is None


def test_steps_to_converge_needs_one_input():
    r = probe(decay=0.5, batches=[channel_inputs((1, 2, 2, 1))], device="cpu")
    with pytest.raises(ValueError, match="with batches the train steps see other inputs"):
        r.steps_to_converge(0.01)


def test_batches_follow_the_update_rule_over_the_sequence():
    batches = [channel_inputs((2, 2, 2, 2), seed=s) + 40.0 * s for s in range(3)]
    test_input = channel_inputs((1, 2, 2, 2), seed=9)
    r = probe(decay=0.5, inputs=test_input, batches=batches, steps=2, fused=False, device="cpu")
    assert r.trajectory["moving_mean"].shape == (6, 2)
    mean, var, expected = np.zeros(2), np.ones(2), []
    for batch in batches * 2:
        ref = Reference(batch)
        mean, var = 0.5 * mean + 0.5 * ref.mean, 0.5 * var + 0.5 * ref.biased_var
        expected.append((mean, var))
    np.testing.assert_allclose(r.trajectory["moving_mean"], [m for m, _ in expected], rtol=1e-5)
    np.testing.assert_allclose(r.trajectory["moving_variance"], [v for _, v in expected],
                               rtol=1e-5)
    # The moving average is weighted toward the last batches, not the population mean.
    population = np.concatenate(batches).astype(np.float64).mean(axis=(0, 1, 2))
    assert np.all(np.abs(r.after["train"]["moving_mean"] - population) > 1.0)
    assert r.outputs["test"].shape == (1, 2, 2, 2) and r.outputs["train"].shape == (2, 2, 2, 2)
    text = render_text(r)
    assert "population mean [%.7g, %.7g]" % tuple(population) in text


@pytest.mark.parametrize("api", APIS)
def test_nchw_non_fused_matches_nhwc(api):
    x = channel_inputs(SHAPE)
    nchw = probe(decay=0.5, inputs=x, fused=False, api=api, data_format="NCHW", device="cpu")
    ref = Reference(x)
    mean, var = ref.moving(0.5, 1, False)
    np.testing.assert_allclose(nchw.after["train"]["moving_mean"], mean, rtol=1e-5)
    np.testing.assert_allclose(nchw.after["train"]["moving_variance"], var, rtol=1e-5)
    assert nchw.outputs["test"].shape == SHAPE  # back in NHWC
    np.testing.assert_allclose(nchw.outputs["test"], ref.normalize(mean, var), rtol=1e-5,
                               atol=2e-5)


@pytest.mark.parametrize("api", APIS)
def test_nchw_fused_on_the_cpu(api):
    """TF 1.15's CPU fused kernel refuses NCHW: a clear config error. TF 2.x runs it."""
    if backend.visible_gpus():
        pytest.skip("a GPU runs fused NCHW")
    x = channel_inputs(SHAPE)
    if backend_name() == "tf2":
        r = probe(decay=0.5, inputs=x, api=api, data_format="NCHW", device="cpu")
        ref = Reference(x)
        assert r.fused
        np.testing.assert_allclose(r.after["train"]["moving_variance"],
                                   0.5 + 0.5 * ref.unbiased_var, rtol=1e-5)
        np.testing.assert_allclose(r.outputs["train"], ref.train_output(), rtol=1e-5, atol=2e-5)
        return
    with pytest.raises(ProbeConfigError) as info:
        probe(decay=0.5, inputs=x, api=api, data_format="NCHW", device="cpu")
    assert str(info.value) == (
        "data_format 'NCHW' is not supported here by TensorFlow 1.15.5 on /device:CPU:0 (The CPU "
        "implementation of FusedBatchNorm only supports NHWC tensor format for now.); use "
        "data_format='NHWC' or fused=False")


@pytest.mark.parametrize("fused", [True, False])
def test_zero_debias_gives_the_batch_mean_from_the_first_step(fused):
    x = channel_inputs((1, 3, 3, 2))
    r = probe(decay=0.9, inputs=x, fused=fused, steps=3, zero_debias=True, device="cpu")
    ref = Reference(x)
    np.testing.assert_allclose(r.trajectory["moving_mean"], np.tile(ref.mean, (3, 1)), rtol=1e-5)
    k = np.arange(1, 4)[:, None]
    np.testing.assert_allclose(r.trajectory["moving_variance"],
                               0.9 ** k + (1 - 0.9 ** k) * ref.fed_var(fused), rtol=1e-5)
    assert any(n.endswith("moving_mean/local_step:0") for n in r.branch_variables["train"])
    assert r.branches_share_variables


def test_zero_debias_at_decay_one_divides_zero_by_zero():
    r = probe(decay=1.0, zero_debias=True, device="cpu")
    assert np.isnan(r.after["train"]["moving_mean"]).all()
    assert "note: non-finite values (NaN or inf) in moving_mean" in render_text(r)
    assert r.to_dict()["snapshots"]["after_train"]["probe/BatchNorm/moving_mean:0"] == ["NaN"]


@pytest.mark.parametrize("api, updates, arithmetic", [
    ("contrib", "inplace", "float64"), ("nn", "inplace", "float64"), ("nn", "update_ops", "float64"),
    ("contrib", "update_ops", "float32"), ("layers", "inplace", "float32"),
    ("keras", "inplace", "float32"),
])
def test_one_minus_decay_as_the_graph_holds_it(api, updates, arithmetic):
    """assign_moving_average computes 1 - decay in Python, then casts; the tf.layers / Keras
    class (also behind contrib's UPDATE_OPS path) subtracts in float32 inside the graph."""
    r = probe(decay=0.999, api=api, updates=updates, device="cpu")
    expected = np.float32(1 - 0.999) if arithmetic == "float64" else \
        np.float32(1) - np.float32(0.999)
    assert r.update_factor == {"moving_mean": float(expected), "moving_variance": float(expected)}


@pytest.mark.parametrize("api", ["layers", "keras"])
def test_trainable_false_layers_publish_no_updates(api):
    """Keras's Layer.updates is empty for a layer that is not trainable, so neither in-place
    nor UPDATE_OPS updates run; TF 2.x tf.keras goes further: inference mode, no update op."""
    x = channel_inputs((1, 3, 3, 2))
    r = probe(decay=0.0, inputs=x, api=api, trainable=False, device="cpu")
    np.testing.assert_array_equal(r.after["train"]["moving_mean"], np.zeros(2))
    np.testing.assert_array_equal(r.after["train"]["moving_variance"], np.ones(2))
    ref = Reference(x)
    if api == "keras" and backend_name() == "tf2":
        assert dict(r.batch_statistics) == {}
        assert any("no moving-average update op" in note for note in r.notes)
        np.testing.assert_allclose(r.outputs["train"], x / np.sqrt(1.001), rtol=1e-6)
    else:
        np.testing.assert_allclose(r.batch_statistics["moving_mean"], ref.mean, rtol=1e-6)
        np.testing.assert_allclose(r.outputs["train"], ref.train_output(), rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(r.outputs["test"], x / np.sqrt(1.001), rtol=1e-6)
