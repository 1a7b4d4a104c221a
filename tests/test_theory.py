"""The numpy reference against values worked out by hand."""
import warnings

import numpy as np
import pytest

from bn_decay_probe.probe import theory

# Two channels over N*H*W = 4: channel 0 is 1, 2, 3, 4; channel 1 is 10, 10, 10, 30.
X = np.array([[[[1, 10], [2, 10]], [[3, 10], [4, 30]]]], dtype=np.float32)


def test_batch_statistics_by_hand():
    np.testing.assert_array_equal(theory.batch_mean(X), [2.5, 15.0])
    np.testing.assert_array_equal(theory.batch_variance(X), [1.25, 75.0])
    np.testing.assert_array_equal(theory.batch_variance(X, unbiased=True), [5 / 3, 100.0])
    np.testing.assert_array_equal(theory.fed_variance(X, fused=True), [5 / 3, 100.0])
    np.testing.assert_array_equal(theory.fed_variance(X, fused=False), [1.25, 75.0])
    assert theory.elements_per_channel(X.shape) == 4
    assert theory.bessel_factor(4) == 4 / 3


def test_one_value_per_channel_has_no_bessel_correction():
    """n = 1: the biased variance is 0 and n/(n-1) is undefined, said as NaN without numpy's
    divide-by-zero warnings."""
    one = X[:, :1, :1, :]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(theory.bessel_factor(1))
        np.testing.assert_array_equal(theory.batch_variance(one), [0.0, 0.0])
        assert np.isnan(theory.batch_variance(one, unbiased=True)).all()
        assert np.isnan(theory.population_statistics(one[None])["paper_variance"]).all()


@pytest.mark.parametrize("decay, steps, expected", [
    (0.0, 1, 10.0), (1.0, 5, 2.0), (0.5, 1, 6.0), (0.5, 2, 8.0), (0.9, 3, 2 * 0.729 + 10 * 0.271),
])
def test_closed_form_equals_repeated_updates(decay, steps, expected):
    assert theory.moving_after_steps(2.0, 10.0, decay, steps) == pytest.approx(expected, rel=1e-15)
    value = 2.0
    for _ in range(steps):
        value = theory.moving_average_update(value, 10.0, decay)
    assert value == pytest.approx(expected, rel=1e-12)


def test_normalize_and_train_output_by_hand():
    y = theory.train_output(X, epsilon=0.25)
    np.testing.assert_allclose(y[0, :, :, 0].ravel(), (np.array([1, 2, 3, 4]) - 2.5) / np.sqrt(1.5))
    np.testing.assert_allclose(theory.normalize(X, 0.0, 3.0, 1.0, beta=1.0, gamma=2.0),
                               2 * X / 2.0 + 1.0)


def test_predicted_trajectory_by_hand():
    before = {"moving_mean": np.zeros(2), "moving_variance": np.ones(2)}
    predicted = theory.predicted_trajectory([X, X], before, decay=0.5, fused=True)
    np.testing.assert_allclose(predicted["moving_mean"], [[1.25, 7.5], [1.875, 11.25]])
    np.testing.assert_allclose(predicted["moving_variance"],
                               [[0.5 + 0.5 * 5 / 3, 50.5], [0.25 + 0.75 * 5 / 3, 75.25]])


def test_zero_debias_trajectory_is_the_batch_mean_from_step_one():
    before = {"moving_mean": np.zeros(2), "moving_variance": np.ones(2)}
    predicted = theory.predicted_trajectory([X, X, X], before, decay=0.9, fused=False,
                                            zero_debias=True)
    np.testing.assert_allclose(predicted["moving_mean"], [[2.5, 15.0]] * 3)
    frozen = theory.predicted_trajectory([X], before, decay=1.0, fused=False, zero_debias=True)
    assert np.isnan(frozen["moving_mean"]).all()


def test_sequence_of_batches_by_hand():
    trajectory = theory.moving_after_sequence([0.0], [[4.0], [8.0], [0.0]], decay=0.5)
    np.testing.assert_array_equal(trajectory, [[2.0], [5.0], [2.5]])
    batches = np.stack([X, X + 1.0])
    population = theory.population_statistics(batches)
    np.testing.assert_allclose(population["mean"], [3.0, 15.5])
    np.testing.assert_allclose(population["variance"], [1.5, 75.25])
    np.testing.assert_allclose(population["paper_mean"], [3.0, 15.5])
    np.testing.assert_allclose(population["paper_variance"], [5 / 3, 100.0])


def test_predicted_steps_to_converge_by_hand():
    # One channel, values -1 and 1: mean 0, biased variance 1. After k steps at decay 0.5 the
    # moving variance is 1 (exactly), so test == train from step 1 with epsilon in both.
    x = np.array([-1.0, 1.0]).reshape(1, 1, 2, 1)
    assert theory.predicted_steps_to_converge(x, 0.5, False, 1e-3, 1e-9) == 1
    # Shifted by 10: the moving mean 10 * (1 - 0.5**k) closes the gap 10 * 0.5**k / sqrt(1 + eps)
    # to <= 0.01 at 0.5**k <= 0.01 * sqrt(1.001) / 10, i.e. k = 10.
    assert theory.predicted_steps_to_converge(x + 10, 0.5, False, 1e-3, 0.01) == 10
    assert theory.predicted_steps_to_converge(x + 10, 1.0, False, 1e-3, 0.01) is None
    # Fused: the moving variance tends to 2 (n/(n-1) with n = 2), a gap that never closes.
    assert theory.predicted_steps_to_converge(x, 0.5, True, 1e-3, 0.01) is None


def test_the_other_frameworks_averages_by_hand():
    """Two batches: X (means 2.5, 15; biased variances 1.25, 75) then X + 1 (means 3.5, 16).
    Haiku's zero-debiased average at decay 0.5: hidden 0.5 * m1, then 0.25 * m1 + 0.5 * m2,
    divided by 1 - 0.5 and 1 - 0.25. PyTorch's momentum=None: the running mean of the steps."""
    batches = [X, X + 1]
    before = {"moving_mean": np.zeros(2), "moving_variance": np.ones(2)}
    debiased = theory.predicted_trajectory(batches, before, 0.5, False, average=theory.DEBIASED)
    np.testing.assert_allclose(debiased["moving_mean"], [[2.5, 15.0],
                                                         [(0.25 * 2.5 + 0.5 * 3.5) / 0.75,
                                                          (0.25 * 15 + 0.5 * 16) / 0.75]])
    np.testing.assert_allclose(debiased["moving_variance"], [[1.25, 75.0], [1.25, 75.0]])
    cumulative = theory.predicted_trajectory(batches, before, 0.5, True,
                                             average=theory.CUMULATIVE)
    np.testing.assert_allclose(cumulative["moving_mean"], [[2.5, 15.0], [3.0, 15.5]])
    np.testing.assert_allclose(cumulative["moving_variance"], [[5 / 3, 100.0], [5 / 3, 100.0]])
    # Both hold one batch's own statistics from the first step: converged at step 1 whatever
    # the decay (non-fused, biased: the gap is 0), except Haiku's 0/0 at decay 1.
    for average in (theory.DEBIASED, theory.CUMULATIVE):
        assert theory.predicted_steps_to_converge(X, 0.999, False, 1e-3, 0.01,
                                                  average=average) == 1
    assert theory.predicted_steps_to_converge(X, 1.0, False, 1e-3, 0.01,
                                              average=theory.DEBIASED) is None
    assert theory.predicted_steps_to_converge(X, 1.0, False, 1e-3, 0.01,
                                              average=theory.CUMULATIVE) == 1
