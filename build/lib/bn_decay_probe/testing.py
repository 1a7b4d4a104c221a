"""Assertions on how a probe's variables drifted, for pytest (or any test runner).

    from bn_decay_probe import probe
    from bn_decay_probe.testing import assert_moved_as_decay_predicts, assert_not_moved

    r = probe(decay=0.9)
    assert_moved_as_decay_predicts(r, "moving_mean", "train")
    assert_not_moved(r, "moving_variance", "test")

Each failure message names the variable, phase, decay, what was expected, what was measured
and the largest difference. Expectations come from ``theory`` (numpy, float64) applied to the
result's inputs, never from the probe's own output.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .result import PHASES, ProbeResult

# float32 rounding of a moving average of values up to ~255**2 leaves relative errors near 1e-6;
# 1e-5 keeps a margin without hiding a wrong decay (0.9 vs 0.91 differs by 1e-2 relative).
DEFAULT_RTOL = 1e-5
DEFAULT_ATOL = 1e-6


def _array(values: np.ndarray) -> str:
    return np.array2string(np.asarray(values), precision=7, threshold=8, edgeitems=3,
                           max_line_width=10 ** 6)


def _check(result: ProbeResult, variable: str, phase: str) -> None:
    if phase not in PHASES:
        raise ValueError("phase must be one of %s, got %r" % (", ".join(PHASES), phase))
    names = result.before[phase]
    if variable not in names:
        raise ValueError("variable must be one of %s, got %r" % (", ".join(names), variable))


def _largest(expected: np.ndarray, actual: np.ndarray) -> str:
    diff = np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64))
    channel = int(np.argmax(diff))
    return "largest difference %.7g at channel %d" % (diff[channel], channel)


def _where(result: ProbeResult, variable: str, phase: str) -> str:
    return "%s in phase %r (decay=%g, fused=%s, steps=%d)" % (
        variable, phase, result.decay, result.fused, result.config.steps)


def assert_moved(result: ProbeResult, variable: str, phase: str = "train",
                 atol: float = 0.0) -> None:
    """Fails unless some channel of ``variable`` changed by more than ``atol`` in ``phase``."""
    __tracebackhide__ = True
    _check(result, variable, phase)
    before, after = result.before[phase][variable], result.after[phase][variable]
    if not np.max(np.abs(after.astype(np.float64) - before)) > atol:
        raise AssertionError(
            "%s did not move: expected a change larger than %g, actual before=%s after=%s, %s"
            % (_where(result, variable, phase), atol, _array(before), _array(after),
               _largest(before, after)))


def assert_not_moved(result: ProbeResult, variable: str, phase: str = "test",
                     atol: float = 0.0) -> None:
    """Fails if any channel of ``variable`` changed by more than ``atol`` (default: at all)."""
    __tracebackhide__ = True
    _check(result, variable, phase)
    before, after = result.before[phase][variable], result.after[phase][variable]
    if np.max(np.abs(after.astype(np.float64) - before)) > atol:
        raise AssertionError(
            "%s moved: expected %s (unchanged, atol=%g), actual %s, %s"
            % (_where(result, variable, phase), _array(before), atol, _array(after),
               _largest(before, after)))


def expected_after(result: ProbeResult, variable: str, phase: str) -> np.ndarray:
    """What the update rule predicts for ``variable`` after ``phase``.

    Train: ``moving = decay * moving + (1 - decay) * statistic`` at every step (with one input:
    ``decay**steps * before + (1 - decay**steps) * statistic``), the statistic being the batch
    mean, or the batch variance (biased when not fused, times n/(n-1) when fused), computed by
    numpy from each step's input. Test: no change; beta and gamma never change without an
    optimizer.
    """
    _check(result, variable, phase)
    before = result.before[phase][variable].astype(np.float64)
    if phase == "test" or variable not in ("moving_mean", "moving_variance"):
        return before
    return result.predicted_trajectory()[variable][-1]


def assert_moved_as_decay_predicts(result: ProbeResult, variable: str, phase: str = "train",
                                   rtol: float = DEFAULT_RTOL,
                                   atol: Optional[float] = None) -> None:
    """Fails unless ``variable`` after ``phase`` matches :func:`expected_after` within
    ``|actual - expected| <= atol + rtol * |expected|`` (atol defaults to 1e-6)."""
    __tracebackhide__ = True
    expected = expected_after(result, variable, phase)
    actual = result.after[phase][variable]
    atol = DEFAULT_ATOL if atol is None else atol
    if not np.allclose(actual, expected, rtol=rtol, atol=atol):
        raise AssertionError(
            "%s did not move as the decay predicts: expected %s, actual %s, %s (rtol=%g, atol=%g)"
            % (_where(result, variable, phase), _array(expected), _array(actual),
               _largest(expected, actual), rtol, atol))


__all__ = ["assert_moved", "assert_not_moved", "assert_moved_as_decay_predicts",
           "expected_after", "DEFAULT_RTOL", "DEFAULT_ATOL"]
