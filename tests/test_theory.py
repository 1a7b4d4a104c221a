"""The numpy reference against values worked out by hand."""
import numpy as np
import pytest

from bn_decay_probe import theory

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
    assert theory.bessel_factor(1) == float("inf")


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


def test_predicted_after_train_by_hand():
    before = {"moving_mean": np.zeros(2), "moving_variance": np.ones(2)}
    predicted = theory.predicted_after_train(X, before, decay=0.5, steps=1, fused=True)
    np.testing.assert_allclose(predicted["moving_mean"], [1.25, 7.5])
    np.testing.assert_allclose(predicted["moving_variance"], [0.5 + 5 / 6, 50.5])
