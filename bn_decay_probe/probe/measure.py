"""The measuring core every engine shares: the step loop (snapshot -> train steps -> test), the
test/train output gap, the trajectory of the variables, the layout between the probe's NHWC and
the graph's, the variables' descriptions, the one-time device notice, and the ProbeResult made
from what was measured (with its notes).

No TensorFlow import here: an engine hands over numpy values and the facts its graph showed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import warnings
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

import numpy as np

from .. import verbosity
from ..errors import DeviceFallbackWarning, ProbeConfigError
from ..names import MOVING, short_name
from ..values import FrozenDict, freeze, frozen_array, frozen_arrays
from .config import ProbeConfig
from .notes import measured_notes
from .result import DeviceReport, ProbeResult, VariableInfo

TO_NCHW, TO_NHWC = (0, 3, 1, 2), (0, 2, 3, 1)
GAP_CHUNK = 1 << 18  # elements: gap()'s float32 scratch stays in cache
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def layout(config: ProbeConfig, array: np.ndarray) -> np.ndarray:
    """NHWC (the probe's interface) -> the graph's data format; batches carry a leading axis."""
    if config.data_format == "NHWC":
        return array
    lead = array.ndim - 4
    return np.ascontiguousarray(
        np.transpose(array, tuple(range(lead)) + tuple(lead + a for a in TO_NCHW)))


def to_nhwc(config: ProbeConfig, array: np.ndarray) -> np.ndarray:
    """The graph's data format -> NHWC, for one output."""
    if config.data_format == "NHWC":
        return array
    return np.ascontiguousarray(np.transpose(array, TO_NHWC))


def gap(test: np.ndarray, train: np.ndarray) -> float:
    """max |test - train| in float64, as np.abs(test.astype(np.float64) - train).max() gives
    it, without float64 copies of a large output. Rounding is monotonic, so the largest exact
    difference is among the elements whose float32 difference is largest; only those are
    taken to float64. Non-finite float32 differences (NaN, inf, overflow) take the plain way."""
    a, b = test.reshape(-1), train.reshape(-1)
    if a.size <= GAP_CHUNK:
        return float(np.max(np.abs(a.astype(np.float64) - b)))
    scratch = np.empty(GAP_CHUNK, np.float32)
    largest, where = -1.0, []  # type: ignore[var-annotated]
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, a.size, GAP_CHUNK):
            d = scratch[:min(GAP_CHUNK, a.size - start)]
            np.abs(np.subtract(a[start:start + d.size], b[start:start + d.size], out=d), out=d)
            top = d.max()
            if not np.isfinite(top):
                return float(np.max(np.abs(a.astype(np.float64) - b)))
            if top >= largest:
                where = ([] if top > largest else where) + [start + np.flatnonzero(d == top)]
                largest = top
    picked = np.concatenate(where)
    return float(np.max(np.abs(a[picked].astype(np.float64) - b[picked])))


_notified: Set[str] = set()


def notify(notice: str) -> None:
    """Warns once per process: a notebook calling probe() hundreds of times wants one line.
    (The warnings module's own once-per-call-site registry is reset by every
    catch_warnings(), which TF's quiet import uses.) Every result still records the notice."""
    if notice not in _notified and verbosity.level() != "quiet":
        _notified.add(notice)
        warnings.warn(notice, DeviceFallbackWarning, stacklevel=_caller_level())


def _caller_level() -> int:
    """warnings.warn's stacklevel that names the user's line calling into the package (probe,
    sweep, the CLI, ...) whatever path led here."""
    frame, level = sys._getframe(1), 1
    inside = (_PACKAGE, os.path.abspath(contextlib.__file__))
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            inside):
        frame, level = frame.f_back, level + 1
    return level


def unsupported_layout(config: ProbeConfig, target: str, version: str,
                       reason: str) -> Optional[ProbeConfigError]:
    """TF's kernels refuse some layouts on some devices (CPU fused batch norm and NCHW in 1.15):
    for NCHW that is a configuration the device cannot run, said in one line (None for any
    other layout: the failure is TensorFlow's own)."""
    if config.data_format != "NCHW":
        return None
    return ProbeConfigError("data_format 'NCHW' is not supported here by TensorFlow %s on %s "
                            "(%s); use data_format='NHWC' or fused=False"
                            % (version, target, reason))


def require_one_input(config: ProbeConfig) -> None:
    """Convergence compares the test and train outputs of one input: refuse batches."""
    if config.batches is not None:
        raise ValueError("converge compares the test and train outputs of one input; "
                         "it takes no batches")


class StoppedChanging:
    """Whether train steps have stopped changing the variables, for a convergence loop. Reading
    every variable (``read()``, a list of arrays) costs more than a step, so it reads only when
    the gap repeats exactly: unchanged variables give an unchanged gap, so a changed gap proves
    the state moved; two equal reads in a row prove a step changed nothing."""

    def __init__(self, read: Any):
        self.read = read
        self.last_gap: Optional[float] = None
        self.unchanged: Optional[List[np.ndarray]] = None

    def after(self, gap: float) -> bool:
        """After a step with this ``gap``: True when that step left every variable as it was."""
        if gap != self.last_gap:
            self.last_gap, self.unchanged = gap, None
            return False
        current = list(self.read())
        same = self.unchanged is not None and all(
            np.array_equal(a, b) for a, b in zip(self.unchanged, current))
        self.unchanged = current
        return same


def steps_to_converge(step: Callable[[], np.ndarray], test: Callable[[], np.ndarray],
                      read: Any, tol: float, max_steps: int) -> Tuple[Optional[int], int, str]:
    """Runs train ``step()`` after step until the gap between ``test()`` and the step's output
    is within ``tol``: (that step or None, steps run, why it stopped otherwise). Stops early when
    a step leaves every variable (``read()``) bit-identical: the same state and input give the
    same outputs forever, so the gap can no longer shrink (update ops that never run, decay 1,
    or float32 updates too small to change the value)."""
    watch = StoppedChanging(read)
    ran = 0
    for ran in range(1, max_steps + 1):
        output = step()
        gap_now = gap(test(), output)
        if gap_now <= tol:
            return ran, ran, ""
        if watch.after(gap_now):
            return None, ran, "the variables stopped changing after step %d" % (ran - 1)
    return None, ran, "limit reached"


def variable_infos(variables: Dict[str, Any]) -> Tuple[VariableInfo, ...]:
    """Full name -> tf.Variable, as VariableInfo sorted by name."""
    return tuple(VariableInfo(v.name, short_name(v.name), tuple(v.shape.as_list()),
                              v.dtype.base_dtype.name) for _, v in sorted(variables.items()))


def trajectory(train_variables: Sequence[str], steps: List[Dict[str, np.ndarray]],
               fed_names: Sequence[str], fed: List[List[np.ndarray]],
               gaps: Optional[List[float]]) -> FrozenDict:
    """ProbeResult.trajectory: the train branch's variables after each step, the statistics fed
    to each moving average (``fed[step]`` in ``fed_names`` order), and the gap (one input)."""
    found = {short_name(n): frozen_array([values[n] for values in steps])
             for n in train_variables}
    for name, key in zip(MOVING, ("batch_mean", "batch_variance")):
        if name in fed_names:
            found[key] = frozen_array([step[list(fed_names).index(name)] for step in fed])
    if gaps is not None:
        found["gap"] = frozen_array(gaps, np.float64)
    return FrozenDict(found)


class Steps:
    """One layer as an engine runs it: what the step loop needs (an engine subclasses it)."""

    def snapshot(self) -> Dict[str, np.ndarray]:
        """Every variable's value, by full name."""
        raise NotImplementedError

    def train(self, step: int, last: bool) -> Tuple[np.ndarray, List[np.ndarray]]:
        """Train step ``step`` (0-based; with batches it picks the batch): the train output
        and the statistics fed to the moving averages; ``last``: the last train step."""
        raise NotImplementedError

    def test(self, last: bool) -> np.ndarray:
        """The test output of the input; ``last``: the test run the result reports."""
        raise NotImplementedError


class Measured(NamedTuple):
    """What the step loop read: every variable around each phase and after each train step,
    the statistics fed at each step, the last outputs, and (one input) the gap per step."""

    snapshots: Dict[str, Dict[str, np.ndarray]]
    steps: List[Dict[str, np.ndarray]]
    fed: List[List[np.ndarray]]
    gaps: Optional[List[float]]
    train_output: np.ndarray
    test_output: np.ndarray


def run_steps(config: ProbeConfig, layer: Steps) -> Measured:
    """snapshot -> each train step (followed by a snapshot, and with one input a test run for
    the output gap, except after the last) -> snapshot -> test run -> snapshot."""
    one_input = config.batches is None
    snapshots = {"before_train": layer.snapshot()}
    steps: List[Dict[str, np.ndarray]] = []
    fed: List[List[np.ndarray]] = []
    gaps: List[float] = []
    train_output = None
    for step in range(config.train_steps):
        last = step == config.train_steps - 1
        train_output, statistics = layer.train(step, last)
        steps.append(layer.snapshot())
        fed.append(statistics)
        if one_input and not last:
            gaps.append(gap(layer.test(False), train_output))
    snapshots["after_train"] = steps[-1]
    snapshots["before_test"] = layer.snapshot()
    test_output = layer.test(True)
    snapshots["after_test"] = layer.snapshot()
    if one_input:
        gaps.append(gap(test_output, train_output))
    return Measured(snapshots, steps, fed, gaps if one_input else None, train_output,
                    test_output)


def probe_result(config: ProbeConfig, measured: Measured, fed_names: Sequence[str],
                 factors: Sequence[float], *, fused: Dict[str, bool], epsilon: Dict[str, float],
                 variables: Tuple[VariableInfo, ...], branch_variables: Dict[str, Tuple[str, ...]],
                 update_ops: Tuple[str, ...], device: DeviceReport, versions: Dict[str, Any],
                 engine_notes: Sequence[str] = ()) -> ProbeResult:
    """The ProbeResult of one decay from the step loop's values and the facts the engine's
    graph showed; its notes are the measured ones, then ``engine_notes``."""
    m = measured
    return with_notes(ProbeResult(
        config=config,
        inputs=config.inputs,
        outputs=FrozenDict(train=freeze(to_nhwc(config, m.train_output)),
                           test=freeze(to_nhwc(config, m.test_output))),
        snapshots=FrozenDict((label, frozen_arrays(values))
                             for label, values in m.snapshots.items()),
        trajectory=trajectory(branch_variables["train"], m.steps, fed_names, m.fed, m.gaps),
        batch_statistics=frozen_arrays(dict(zip(fed_names, m.fed[-1]))),
        update_factor=FrozenDict((name, float(value)) for name, value in zip(fed_names, factors)),
        fused_by_phase=FrozenDict(fused),
        epsilon=FrozenDict(epsilon),
        variables=variables,
        branch_variables=FrozenDict(branch_variables),
        update_ops=update_ops,
        device=device,
        versions=FrozenDict(versions),
    ), engine_notes)


def with_notes(result: ProbeResult, engine_notes: Sequence[str] = ()) -> ProbeResult:
    """``result`` with its notes: what its numbers show (notes.measured_notes), then what the
    engine says of how it measured."""
    return dataclasses.replace(result, notes=measured_notes(result) + tuple(engine_notes))
