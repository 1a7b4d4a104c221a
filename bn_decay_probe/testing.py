"""Assertions on how a probe's variables drifted, for pytest (or any test runner); and how
far a sweep's result is from probe()'s.

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

import math
from typing import NamedTuple, Optional

import numpy as np

from .names import PHASES
from .probe.result import ProbeResult

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


class Deviation(NamedTuple):
    """How far a result's numbers are from a reference's, for the same layer and decay."""

    identical: bool  # every field equal, but the names of the traced ops
    statistics: float  # variables (every snapshot and step) and batch statistics, float32 ulps
    outputs: float  # the train and test outputs, in float32 ulps of output_scale(reference)
    gap: float  # the test/train gap after each step, in the same ulps


def _ulps(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| in float32 ulps of the larger of the two (NaN equal to NaN)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    differ = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    if not differ.any():
        return 0.0
    unit = np.spacing(np.maximum(np.abs(a[differ]), np.abs(b[differ]))).astype(np.float64)
    return float(np.max(np.abs(a[differ].astype(np.float64) - b[differ]) / unit))


def output_scale(result: ProbeResult) -> float:
    """M, the largest term batch norm forms: (|x| + |mean|) / sqrt(variance + epsilon) over
    the inputs and the statistics either output normalizes with (the last train input's,
    numpy, float64, or the moving ones after the train and test phases). The float32 spacing
    at M is the unit of the sweep's output bound: rounding an intermediate of that size moves
    the output by about one such ulp."""
    last = result.config.train_inputs()[-1].astype(np.float64)
    pairs = [(np.abs(last).max(axis=(0, 1, 2)), last.mean(axis=(0, 1, 2)),
              last.var(axis=(0, 1, 2)))]
    x = np.abs(np.concatenate([last, result.inputs.astype(np.float64)])).max(axis=(0, 1, 2))
    for phase in PHASES:
        moving = result.after[phase]
        if "moving_mean" in moving:
            pairs.append((x, moving["moving_mean"].astype(np.float64),
                          moving["moving_variance"].astype(np.float64)))
    with np.errstate(invalid="ignore", over="ignore"):
        scales = [np.nanmax((top + np.abs(mean)) /
                            np.sqrt(np.maximum(var, 0.0) + result.epsilon["train"]))
                  for top, mean, var in pairs]
    return float(np.nanmax(scales))


def deviation(result: ProbeResult, reference: ProbeResult) -> Deviation:
    """How far ``result`` (e.g. a sweep's) is from ``reference`` (probe()'s for the same
    layer and decay): whether they are identical, and the largest differences of their
    numbers."""
    mine, theirs = result.to_dict(), reference.to_dict()
    for data in (mine, theirs):
        del data["device"]["ops"]
    unit = float(np.spacing(np.float32(output_scale(reference))))
    statistics = [_ulps(result.snapshots[label][name], values)
                  for label, snapshot in reference.snapshots.items()
                  for name, values in snapshot.items()]
    statistics += [_ulps(result.batch_statistics[name], values)
                   for name, values in reference.batch_statistics.items()]
    statistics += [_ulps(result.trajectory[name], values)
                   for name, values in reference.trajectory.items() if name != "gap"]
    outputs = [float(np.max(np.abs(result.outputs[phase].astype(np.float64) - values)))
               for phase, values in reference.outputs.items()]
    gap = 0.0
    if "gap" in reference.trajectory:
        differ = result.trajectory["gap"] != reference.trajectory["gap"]
        differ &= ~(np.isnan(result.trajectory["gap"]) & np.isnan(reference.trajectory["gap"]))
        if differ.any():
            gap = float(np.max(np.abs(result.trajectory["gap"] - reference.trajectory["gap"])
                               [differ]))
    return Deviation(mine == theirs, max(statistics, default=0.0),
                     float(np.nan_to_num(max(outputs) / unit, nan=np.inf)),
                     float(np.nan_to_num(gap / unit, nan=np.inf)))


def sweep_bound(result: ProbeResult) -> float:
    """The bound, in ulps, within which a sweep's numbers stay of probe()'s where they differ
    at all (docs/sweeps.md): 2 + sqrt(n), n the values each channel averages over, as the
    rounding of a sum of n values taken in another order stays within about sqrt(n) ulps."""
    shape = result.config.train_inputs()[-1].shape
    return 2.0 + math.sqrt(shape[0] * shape[1] * shape[2])


def assert_sweep_matches_probe(swept: ProbeResult, probed: ProbeResult) -> Deviation:
    """Fails unless ``swept`` equals ``probed`` in every field, the variables, statistics and
    outputs within sweep_bound() ulps and the gap within twice that. Returns the deviation."""
    __tracebackhide__ = True
    found = deviation(swept, probed)
    mine, theirs = swept.to_dict(), probed.to_dict()
    for key in ("outputs", "snapshots", "trajectory", "batch_statistics", "device"):
        del mine[key], theirs[key]
    bound = sweep_bound(probed)
    if mine != theirs or swept.device.ran_on != probed.device.ran_on:
        differ = sorted(k for k in mine if mine[k] != theirs.get(k))
        raise AssertionError("decay %g: the sweep's %s differ from probe()'s"
                             % (probed.decay, ", ".join(differ) or "devices"))
    if max(found.statistics, found.outputs) > bound or found.gap > 2 * bound:
        raise AssertionError("decay %g: the sweep's numbers are beyond %.1f ulps of probe()'s "
                             "(gap: %.1f): %s" % (probed.decay, bound, 2 * bound, found))
    return found


__all__ = ["assert_moved", "assert_not_moved", "assert_moved_as_decay_predicts",
           "expected_after", "DEFAULT_RTOL", "DEFAULT_ATOL", "Deviation", "deviation",
           "output_scale", "sweep_bound", "assert_sweep_matches_probe"]
