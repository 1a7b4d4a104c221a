"""Pooled population statistics (numpy only): the merge of per-batch moments against numpy over
all the values at once, for unequal batches, large offsets, single values and the fused kernel's
Bessel-corrected variance."""
import numpy as np
import pytest

from bn_decay_probe.repair.pooled import PooledMoments, batch_moments, unbessel


def reference(batches, axis=-1):
    """mean and population variance per channel of every value of every batch, in one go."""
    values = np.concatenate([np.moveaxis(np.asarray(b, np.float64), axis, -1).reshape(
        -1, np.shape(b)[axis]) for b in batches])
    return values.mean(axis=0), values.var(axis=0), values.shape[0]


@pytest.mark.parametrize("rows", [(8, 8, 8), (5, 8, 3), (1, 1, 1, 1), (64,), (1, 30)])
@pytest.mark.parametrize("shape", [(4, 4, 3), (7,), (2, 5, 1)])
def test_pooled_moments_equal_numpy_over_all_values(rows, shape):
    rs = np.random.RandomState(sum(rows) + len(shape))
    channels = shape[-1]
    scale = np.arange(1, channels + 1)
    batches = [rs.normal(3.0, 2.0, (n,) + shape) * scale + 10 * scale for n in rows]
    pool = PooledMoments(channels)
    for batch in batches:
        pool.add_values(batch)
    mean, variance, count = reference(batches)
    assert pool.count == count and pool.batches == len(rows)
    np.testing.assert_allclose(pool.mean, mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pool.variance, variance, rtol=1e-10)


def test_channel_axis_other_than_last():
    rs = np.random.RandomState(3)
    batches = [rs.normal(size=(n, 3, 4, 5)) + np.arange(3)[:, None, None] for n in (2, 5)]
    pool = PooledMoments(3)
    for batch in batches:
        pool.add_values(batch, axis=1)
    mean, variance, _ = reference(batches, axis=1)
    np.testing.assert_allclose(pool.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(pool.variance, variance, rtol=1e-10)


def test_large_offset_keeps_the_variance():
    """Mean 1e8, spread 1: a float64 sum of squares would lose every digit of the variance
    (1e16 + 1 == 1e16); the pairwise merge keeps it."""
    rs = np.random.RandomState(5)
    batches = [1e8 + rs.normal(0.0, 1.0, (n, 1)) for n in (100, 37, 250)]
    pool = PooledMoments(1)
    for batch in batches:
        pool.add_values(batch)
    values = np.concatenate(batches)
    exact = np.mean((values - np.mean(values)) ** 2)
    naive = np.mean(values ** 2) - np.mean(values) ** 2
    assert abs(naive - exact) / exact > 1e-3  # the naive formula fails here...
    assert pool.variance[0] == pytest.approx(exact, rel=1e-9)  # ...the pool does not


def test_add_takes_count_mean_and_biased_variance():
    """What the repair feeds from a layer: per-batch (count, mean, biased variance)."""
    rs = np.random.RandomState(1)
    batches = [rs.uniform(-5, 5, (n, 2)) for n in (3, 11, 6)]
    pool = PooledMoments(2)
    for batch in batches:
        pool.add(batch.shape[0], batch.mean(axis=0), batch.var(axis=0))
    mean, variance, _ = reference(batches)
    np.testing.assert_allclose(pool.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(pool.variance, variance, rtol=1e-12)


def test_unbessel_undoes_the_fused_kernels_correction():
    rs = np.random.RandomState(2)
    values = rs.normal(size=(9, 4))
    unbiased = values.var(axis=0, ddof=1)  # what the fused kernel outputs
    np.testing.assert_allclose(unbessel(unbiased, 9), values.var(axis=0), rtol=1e-14)
    # One value per channel: the correction is undefined and the variance of one value is 0.
    np.testing.assert_array_equal(unbessel(np.array([5.0, np.nan]), 1), [0.0, 0.0])


def test_batch_moments():
    values = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 20.0]], np.float32)
    count, mean, variance = batch_moments(values)
    assert count == 3
    np.testing.assert_allclose(mean, [3.0, 20.0])
    np.testing.assert_allclose(variance, [8.0 / 3.0, 200.0 / 3.0])


def test_empty_pool_and_empty_batch():
    pool = PooledMoments(2)
    assert pool.mean is None and pool.variance is None
    pool.add(0, [np.nan, np.nan], [np.nan, np.nan])  # an empty batch adds nothing
    assert pool.count == 0 and pool.batches == 0 and pool.mean is None
    pool.add(4, [1.0, 2.0], [0.0, 0.0])
    np.testing.assert_array_equal(pool.variance, [0.0, 0.0])


def test_channel_mismatch_is_refused():
    with pytest.raises(ValueError, match="2 and 2 channels, the layer 3"):
        PooledMoments(3).add(4, [0.0, 0.0], [1.0, 1.0])


def test_constant_channel_never_goes_negative():
    pool = PooledMoments(1)
    for n in (3, 7, 2):
        pool.add_values(np.full((n, 1), 0.1, np.float32))
    assert pool.variance[0] == 0.0
    assert pool.mean[0] == pytest.approx(np.float64(np.float32(0.1)))
