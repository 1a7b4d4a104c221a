"""The blog experiment's five claims (docs/blog-experiment/README.md), each measured for every decay,
fused and non-fused, C = 1 and C = 3, against the numpy reference in conftest."""
import numpy as np
import pytest

from conftest import DECAYS, FUSED, SHAPES, Reference, channel_inputs

ALL = pytest.mark.parametrize("decay", DECAYS)
BOTH = pytest.mark.parametrize("fused", FUSED, ids=["fused", "nonfused"])
SHAPED = pytest.mark.parametrize("shape", SHAPES, ids=["C1", "C3"])
# float32 arithmetic against a float64 reference: moving statistics of values up to ~900
# (variances up to ~5e4) agree to a few 1e-7 relative; outputs of order 1 to a few 1e-6.
RTOL = 1e-5
OUT_ATOL = 2e-5


@ALL
@BOTH
@SHAPED
def test_claim1_train_phase_moves_the_moving_statistics_test_phase_does_not(
        measured, decay, fused, shape):
    r = measured(decay, fused, shape)
    ref = Reference(channel_inputs(shape))
    mean, var = ref.moving(decay, 1, fused)
    np.testing.assert_allclose(r.after["train"]["moving_mean"], mean, rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(r.after["train"]["moving_variance"], var, rtol=RTOL)
    if decay < 1:
        assert np.all(r.after["train"]["moving_mean"] != r.before["train"]["moving_mean"])
        assert np.all(r.after["train"]["moving_variance"] != r.before["train"]["moving_variance"])
    for name in ("beta", "moving_mean", "moving_variance"):
        np.testing.assert_array_equal(r.after["test"][name], r.before["test"][name])


@ALL
@BOTH
@SHAPED
def test_claim2_test_phase_normalizes_with_what_train_left_behind(measured, decay, fused, shape):
    r = measured(decay, fused, shape)
    ref = Reference(channel_inputs(shape))
    expected = ref.normalize(*ref.moving(decay, 1, fused))
    np.testing.assert_allclose(r.outputs["test"], expected, rtol=RTOL, atol=OUT_ATOL)


@ALL
@BOTH
@SHAPED
def test_claim3_decay_does_not_change_the_train_output(measured, decay, fused, shape):
    r = measured(decay, fused, shape)
    ref = Reference(channel_inputs(shape))
    np.testing.assert_allclose(r.outputs["train"], ref.train_output(), rtol=RTOL, atol=OUT_ATOL)
    # Bit for bit: decay only enters the update ops, never the normalization.
    np.testing.assert_array_equal(r.outputs["train"], measured(0.0, fused, shape).outputs["train"])


@BOTH
@SHAPED
def test_claim4_decay_one_freezes_the_moving_statistics(measured, fused, shape):
    r = measured(1.0, fused, shape)
    x = channel_inputs(shape)
    c = shape[-1]
    for phase in ("train", "test"):
        np.testing.assert_array_equal(r.after[phase]["moving_mean"], np.zeros(c))
        np.testing.assert_array_equal(r.after[phase]["moving_variance"], np.ones(c))
    # The train output is still normalized: per channel mean 0 and variance var / (var + eps).
    ref = Reference(x)
    train = r.outputs["train"].astype(np.float64)
    np.testing.assert_allclose(train.mean(axis=(0, 1, 2)), np.zeros(c), atol=1e-5)
    np.testing.assert_allclose(train.var(axis=(0, 1, 2)),
                               ref.biased_var / (ref.biased_var + 1e-3), rtol=1e-5)
    # ... but the test output is the raw input divided by sqrt(1 + epsilon).
    np.testing.assert_allclose(r.outputs["test"], x / np.sqrt(1 + 1e-3), rtol=1e-6)


@ALL
@BOTH
@SHAPED
def test_claim5_one_mean_and_variance_per_channel(measured, decay, fused, shape):
    r = measured(decay, fused, shape)
    c = shape[-1]
    for snapshot in (*r.before.values(), *r.after.values()):
        assert set(snapshot) == {"beta", "moving_mean", "moving_variance"}
        assert all(values.shape == (c,) for values in snapshot.values())
    assert r.outputs["train"].shape == r.outputs["test"].shape == shape
    # The statistic fed to the moving mean is the mean over N, H, W of each channel.
    x = channel_inputs(shape).astype(np.float64)
    per_channel = [x[..., k].mean() for k in range(c)]
    np.testing.assert_allclose(r.batch_statistics["moving_mean"], per_channel, rtol=1e-6)


@SHAPED
def test_decay_zero_test_equals_train_only_on_the_nonfused_path(measured, shape):
    nonfused = measured(0.0, False, shape)
    np.testing.assert_allclose(nonfused.outputs["test"], nonfused.outputs["train"],
                               rtol=1e-5, atol=1e-5)

    fused = measured(0.0, True, shape)
    n = shape[0] * shape[1] * shape[2]
    # The fused kernel feeds var * n/(n-1) to the moving average, so test shrinks by
    # sqrt((n-1)/n) (epsilon makes it inexact by ~eps/var, far below the tolerance).
    np.testing.assert_allclose(fused.outputs["test"], fused.outputs["train"] * np.sqrt((n - 1) / n),
                               rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(fused.outputs["test"] - fused.outputs["train"])) > 1e-2


@BOTH
def test_decay_one_test_output_is_input_over_sqrt_one_plus_epsilon(fused):
    from bn_decay_probe import probe

    x = channel_inputs((2, 2, 2, 2))
    r = probe(decay=1.0, inputs=x, fused=fused, epsilon=0.5, device="cpu")
    np.testing.assert_allclose(r.outputs["test"], x / np.sqrt(1.5), rtol=1e-6)


def test_seed_observation_decay_zero_gives_the_batch_statistics():
    """The blog's printed observation, on the blog's own kind of input: after one train run at
    decay=0 the moving statistics are that batch's (Bessel-corrected on today's fused default)."""
    from bn_decay_probe import probe

    r = probe(decay=0.0, device="cpu")  # the blog experiment's [1, 4, 4, 1] uniform(0, 255) input
    x = r.inputs.astype(np.float64)
    assert r.fused  # TF >= 1.4: fused=None means fused for 4-D inputs
    np.testing.assert_allclose(r.after["train"]["moving_mean"], [x.mean()], rtol=1e-6)
    np.testing.assert_allclose(r.after["train"]["moving_variance"], [x.var(ddof=1)], rtol=1e-6)
