"""bn_decay_probe.testing: passes on real measurements, fails with messages that name variable,
phase, decay, expected, actual and the largest difference."""
import dataclasses

import numpy as np
import pytest

from bn_decay_probe import ProbeResult, probe, testing
from bn_decay_probe.testing import (assert_moved, assert_moved_as_decay_predicts,
                                    assert_not_moved, expected_after)
from conftest import DECAYS, Reference, channel_inputs

X = channel_inputs((1, 2, 2, 1))


@pytest.fixture(scope="module")
def frozen():
    return probe(decay=1.0, inputs=X, device="cpu")


@pytest.mark.parametrize("decay", DECAYS)
@pytest.mark.parametrize("fused", [True, False])
def test_real_probes_move_as_predicted(decay, fused):
    r = probe(decay=decay, inputs=channel_inputs((2, 2, 3, 2)), fused=fused, steps=2, device="cpu")
    for name in ("beta", "moving_mean", "moving_variance"):
        assert_moved_as_decay_predicts(r, name, "train")
        assert_moved_as_decay_predicts(r, name, "test")
        assert_not_moved(r, name, "test")
    if decay < 1:
        assert_moved(r, "moving_mean", "train")
        assert_moved(r, "moving_variance", "train")


def test_expected_after_is_the_update_rule():
    r = probe(decay=0.75, inputs=X, fused=False, steps=3, device="cpu")
    ref = Reference(X)
    np.testing.assert_allclose(expected_after(r, "moving_variance", "train"),
                               ref.moving(0.75, 3, fused=False)[1], rtol=1e-12)
    np.testing.assert_array_equal(expected_after(r, "moving_mean", "test"),
                                  r.before["test"]["moving_mean"])


def test_assert_moved_message(frozen):
    with pytest.raises(AssertionError) as info:
        assert_moved(frozen, "moving_mean", "train")
    assert str(info.value) == (
        "moving_mean in phase 'train' (decay=1, fused=True, steps=1) did not move: expected a "
        "change larger than 0, actual before=[0.] after=[0.], largest difference 0 at channel 0")


def test_assert_not_moved_message():
    r = probe(decay=0.0, inputs=X, fused=False, device="cpu")
    ref = Reference(X)
    with pytest.raises(AssertionError) as info:
        assert_not_moved(r, "moving_mean", "train")
    after = r.after["train"]["moving_mean"][0]
    assert after == pytest.approx(ref.mean[0], rel=1e-6)
    assert str(info.value) == (
        "moving_mean in phase 'train' (decay=0, fused=False, steps=1) moved: expected [0.] "
        "(unchanged, atol=0), actual [%s], largest difference %.7g at channel 0"
        % (np.array2string(np.float32(after), precision=7), after))


def test_assert_moved_as_decay_predicts_message_when_the_decay_is_not_the_one_used():
    """Measured at decay 0.5 but checked as if decay were 0.6: must fail, and say how far off."""
    data = probe(decay=0.5, inputs=X, fused=False, device="cpu").to_dict()
    data["config"]["decay"] = 0.6
    r = ProbeResult.from_dict(data)
    ref = Reference(X)
    expected = 0.4 * ref.mean[0]
    actual = r.after["train"]["moving_mean"][0]
    with pytest.raises(AssertionError) as info:
        assert_moved_as_decay_predicts(r, "moving_mean", "train")
    message = str(info.value)
    assert message.startswith("moving_mean in phase 'train' (decay=0.6, fused=False, steps=1) "
                              "did not move as the decay predicts: expected [")
    assert message.endswith("largest difference %.7g at channel 0 (rtol=1e-05, atol=1e-06)"
                            % abs(actual - expected))
    assert abs(actual - expected) == pytest.approx(0.1 * ref.mean[0], rel=1e-6)


@pytest.mark.parametrize("call, message", [
    (lambda r: assert_moved(r, "gamma", "train"),
     "variable must be one of beta, moving_mean, moving_variance, got 'gamma'"),
    (lambda r: assert_not_moved(r, "beta", "eval"), "phase must be one of train, test, got 'eval'"),
])
def test_helpers_reject_unknown_names(frozen, call, message):
    with pytest.raises(ValueError) as info:
        call(frozen)
    assert str(info.value) == message


@pytest.fixture(scope="module")
def reference():
    return probe(decay=0.9, steps=2, shape=(2, 3, 5, 3), device="cpu")


def _changed(result, **fields):
    return dataclasses.replace(result, **fields)


def test_output_scale_is_the_largest_term_batch_norm_forms(reference):
    """By hand, per channel: (max |x| + |mean|) / sqrt(variance + epsilon) for the input's own
    statistics and for the moving ones after the train and the test phase."""
    x = reference.inputs.astype(np.float64).reshape(-1, 3)
    terms = [(np.abs(x).max(0) + np.abs(x.mean(0))) / np.sqrt(x.var(0) + 1e-3)]
    for phase in ("train", "test"):
        mean = reference.after[phase]["moving_mean"].astype(np.float64)
        var = reference.after[phase]["moving_variance"].astype(np.float64)
        terms.append((np.abs(x).max(0) + np.abs(mean)) / np.sqrt(var + 1e-3))
    assert testing.output_scale(reference) == pytest.approx(np.max(terms), rel=1e-12)


def test_deviation_counts_ulps(reference):
    assert testing.deviation(reference, reference) == (True, 0.0, 0.0, 0.0)
    unit = float(np.spacing(np.float32(testing.output_scale(reference))))
    test = reference.outputs["test"].copy()
    test[0, 0, 0, 0] += np.float32(3 * unit)  # exactly 3 units: test is below M in size
    moving = dict(reference.snapshots["after_test"])
    name = [n for n in moving if n.endswith("moving_mean:0")][0]
    moving[name] = np.nextafter(moving[name], np.float32(np.inf))  # one ulp up, every channel
    gap = reference.trajectory["gap"] + 2 * unit
    changed = _changed(reference, outputs=dict(reference.outputs, test=test),
                       snapshots=dict(reference.snapshots, after_test=moving),
                       trajectory=dict(reference.trajectory, gap=gap))
    found = testing.deviation(changed, reference)
    assert found.identical is False
    assert found.statistics == 1.0
    assert found.outputs == pytest.approx(3.0, rel=1e-6)
    assert found.gap == pytest.approx(2.0, rel=1e-6)


def test_assert_sweep_matches_probe(reference):
    assert testing.sweep_bound(reference) == 2 + np.sqrt(30)
    test = reference.outputs["test"] + np.float32(
        50 * np.spacing(np.float32(testing.output_scale(reference))))
    far = _changed(reference, outputs=dict(reference.outputs, test=test))
    with pytest.raises(AssertionError, match=r"^decay 0.9: the sweep's numbers are beyond "
                                             r"7.5 ulps of probe\(\)'s \(gap: 15.0\): "):
        testing.assert_sweep_matches_probe(far, reference)
    other = _changed(reference, update_ops=("extra",))
    with pytest.raises(AssertionError, match=r"^decay 0.9: the sweep's update_ops differ from "
                                             r"probe\(\)'s$"):
        testing.assert_sweep_matches_probe(other, reference)
    assert testing.assert_sweep_matches_probe(reference, reference).identical
