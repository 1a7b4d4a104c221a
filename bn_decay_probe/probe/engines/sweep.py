"""Many decays of a TF1-style graph API through the sweep graph (sweep_graph).

Every decay of a chunk runs in one ``Session.run`` per train step, so a sweep costs about as
many runs as steps, whatever the number of decays.

``run``: each decay's ProbeResult, as probe() measures it. ``converge``: train steps until each
decay's test output is within ``tol`` of its train output, every decay stopping as soon as its
answer is decided, for the semantics matrix.

Where a decay's numbers can differ from probe()'s (docs/sweeps.md; tests/test_sweep.py holds the
bounds): TensorFlow's CPU kernels take a channel through vectorized (packet) code or scalar code
depending on where it falls in the per-channel vectors, which are C long in probe()'s graph and
C x decays long here, and the two round differently (Eigen's packet rsqrt; on TF 2.x the order
of the non-fused reductions). With C a multiple of 8, every channel takes the same code in both
graphs and everything is bit-identical; so is one decay per chunk (``copies=1``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import (Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple,
                    Union)

import numpy as np

from ... import backend
from ...errors import ProbeConfigError
from ...names import MOVING, PHASES, short_name
from ...values import FrozenDict, freeze, frozen_array
from .. import devices, graph, measure, sweep_graph, theory
from ..config import ProbeConfig
from ..result import Convergence, DeviceReport, ProbeResult, VariableInfo
from .session import unsupported


class _Fetched(NamedTuple):
    """One step's run, in the order of ``_Session.fetches``."""

    fed: List[np.ndarray]  # the statistics fed to the moving averages, [copies * C] each
    after_train: List[np.ndarray]  # every variable, read after the train step
    gap: Optional[np.ndarray]  # [copies]: max |test - train|, or None with batches
    outputs: Optional[Tuple[np.ndarray, np.ndarray]] = None  # train, test (one input or last)
    after_test: Optional[List[np.ndarray]] = None  # every variable after the test (last step)
    factors: Optional[List[np.ndarray]] = None  # 1 - decay per fed statistic (last step)


class _Session:
    """One sweep graph in its own session; a callable per kind of run, made on first use (each
    distinct run costs TensorFlow a graph optimization)."""

    def __init__(self, config: ProbeConfig, copies: int, placement: devices.Placement,
                 gpus: Tuple[str, ...], decays: Optional[Sequence[float]]):
        tf1 = backend.tensorflow().compat.v1
        self.config, self.placement, self.gpus = config, placement, gpus
        self.built = built = sweep_graph.build(config, copies, placement.target, decays)
        self.session = tf1.Session(graph=built.graph, config=backend.session_config(
            placement.target, inline=True))
        self.held = False
        self.feeds: List[np.ndarray] = []  # the decays fed to every run, if the graph takes them
        self.feed_list = [t for t in (built.decay, built.batch_index) if t is not None]
        # One input: every step's outputs, for the test/train gap.
        self.one_input = config.batches is None
        self._callables: Dict[Any, Any] = {}

    def close(self) -> None:
        self.session.close()

    def fetches(self, last: bool) -> List[Any]:
        b = self.built
        fetches = list(b.fed.values()) + b.after_train
        if last or self.one_input:
            fetches += [b.train_output, b.test_output]
        if last:
            fetches += b.after_test + list(b.factors.values())
        return fetches

    def _unpack(self, values: List[Any], last: bool) -> _Fetched:
        b = self.built
        fed, values = values[:len(b.fed)], values[len(b.fed):]
        after_train, values = values[:len(b.variables)], values[len(b.variables):]
        gap = outputs = None
        if last or self.one_input:
            outputs, values = (values[0], values[1]), values[2:]
            if self.one_input:
                gap = _gaps(self.built, *outputs)
        if not last:  # a step's outputs only give its gap: a long sweep keeps none of them
            return _Fetched(fed, after_train, gap)
        return _Fetched(fed, after_train, gap, outputs, values[:len(b.variables)],
                        values[len(b.variables):])

    def start(self, decays: Sequence[float]) -> List[np.ndarray]:
        """Sets every variable to its initial value for ``decays`` (at most ``copies``; the rest
        of the chunk repeats the last; the graph's own when it holds them) and returns those
        values."""
        b = self.built
        self.feeds = [] if b.decay is None else [b.decay_values(decays)]
        run = [b.initializers, b.initial]
        if not self.held:  # the inputs enter the graph once, for every chunk
            run, self.held = [b.holders] + run, True
            return self.session.run(run, feed_dict=b.feeds)[2]
        return self.session.run(run)[1]

    def step(self, index: int, last: bool, metadata: Any = None) -> _Fetched:
        """Train step ``index`` (0-based; it picks the batch) with its reads, test and gap;
        traced into ``metadata`` when given."""
        feeds = self.feeds + ([np.int32(index % len(self.config.batches))]
                              if self.config.batches is not None else [])
        if metadata is not None:
            tf1 = backend.tensorflow().compat.v1
            values = self.session.run(
                self.fetches(last), dict(zip(self.feed_list, feeds)),
                options=tf1.RunOptions(trace_level=tf1.RunOptions.SOFTWARE_TRACE),
                run_metadata=metadata)
        else:
            if last not in self._callables:
                self._callables[last] = backend.fast_callable(self.session, self.feed_list,
                                                              self.fetches(last))
            values = self._callables[last](*feeds)
        return self._unpack(list(values), last)


@contextlib.contextmanager
def _opened(config: ProbeConfig, copies: int,
            decays: Optional[Sequence[float]] = None) -> Iterator[_Session]:
    """A _Session for chunks of ``copies`` decays; holding ``decays`` when they are one."""
    gpus = backend.visible_gpus()
    placement = devices.resolve(config.device, gpus)
    if placement.notice:
        measure.notify(placement.notice)
    s = _Session(config, copies, placement, gpus, decays)
    try:
        yield s
    except backend.tensorflow().errors.OpError as exc:
        raise unsupported(config, placement.target, exc) from None
    finally:
        s.close()


def _chunks(decays: Sequence[float], copies: int) -> List[Tuple[float, ...]]:
    return [tuple(decays[i:i + copies]) for i in range(0, len(decays), copies)]


def run(config: ProbeConfig, decays: Sequence[float],
        progress: Optional[Callable[[int], Any]] = None,
        copies: Optional[int] = None) -> Tuple[ProbeResult, ...]:
    """One ProbeResult per decay of ``decays``, each as probe() would measure it with
    ``config``, the decays run ``copies`` at a time (default sweep_graph.copies_per_chunk).

    The device report comes from tracing the first chunk's last run (one graph, one placement
    for all). ``before_test`` is the read that follows the train step, as nothing runs between
    the two. ``progress(1)`` is called for each decay as its chunk finishes.
    """
    tf1 = backend.tensorflow().compat.v1
    copies = copies or sweep_graph.copies_per_chunk(config, len(decays))
    chunks = _chunks(decays, copies)
    results: List[ProbeResult] = []
    with _opened(config, copies, decays if len(chunks) == 1 else None) as s:
        shared = _Shared(config, s, backend.versions())
        for index, chunk in enumerate(chunks):
            before = s.start(chunk)
            runs = [s.step(k, last=False) for k in range(config.train_steps - 1)]
            metadata = tf1.RunMetadata() if index == 0 else None
            runs.append(s.step(config.train_steps - 1, last=True, metadata=metadata))
            if metadata is not None:
                shared.device = _device_report(s, metadata)
            stacked = _Stacked(before, runs)
            for copy, decay in enumerate(chunk):
                results.append(shared.result(float(decay), copy, stacked))
                if progress:
                    progress(1)
    return tuple(results)


def _gaps(built: sweep_graph.SweepGraph, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """max |test - train| of each copy, as measure.gap gives it for one decay: the same
    float64 operations, and NaN where a difference is NaN."""
    copies, c = built.copies, built.channels
    if copies == 1:  # memory-bounded for a large input
        return np.array([measure.gap(test, train)])
    difference = np.subtract(test, train, dtype=np.float64)
    np.abs(difference, out=difference)
    if built.data_format == "NCHW":  # [N, copies * C, H, W]: the channel axis last
        difference = difference.reshape(test.shape[0], copies * c, -1).max(axis=2)
    # max over rows, then over each copy's channels: numpy reduces a contiguous axis 0 many
    # times faster than several axes at once
    return difference.reshape(-1, copies * c).max(axis=0).reshape(copies, c).max(axis=1)


class _Stacked:
    """A chunk's runs, each quantity stacked over the train steps: [steps, copies * C]."""

    def __init__(self, before: List[np.ndarray], runs: List[_Fetched]):
        self.before, self.final = before, runs[-1]
        self.after_train = [np.stack(values) for values in zip(*(r.after_train for r in runs))]
        self.fed = [np.stack(values) for values in zip(*(r.fed for r in runs))]
        self.gap = None if self.final.gap is None else np.stack([r.gap for r in runs])


class FirstStep(NamedTuple):
    """What the first train step measured for each decay of a convergence run (the semantics
    matrix's decay-0 columns)."""

    fused: bool  # a FusedBatchNorm kernel in the train branch
    branches_share_variables: bool  # the test branch reads only variables of the train branch
    updated: Tuple[bool, ...]  # a bit of moving_mean or moving_variance changed
    fed_variance: Optional[Tuple[np.ndarray, ...]]  # fed to moving_variance; None: no update
    gap: np.ndarray  # [decays] max |test output - train output|


def converge(config: ProbeConfig, decays: Sequence[float], tol: float,
             budget_factor: float) -> Tuple[FirstStep, Tuple[Convergence, ...]]:
    """converge_rows for one layer; raises what its build raises."""
    found = converge_rows([config], decays, tol, budget_factor)[0]
    if isinstance(found, ProbeConfigError):
        raise found
    return found


def converge_rows(configs: Sequence[ProbeConfig], decays: Sequence[float], tol: float,
                  budget_factor: float) -> List[Union[Tuple[FirstStep, Tuple[Convergence, ...]],
                                                      ProbeConfigError]]:
    """Trains the layer of each config (one input each; one device) at every decay until its
    max |test - train| <= tol, measured after every step: every layer and decay in one graph
    (sweep_graph.build_rows), each step one run of them all. Per config: what the first step
    measured and each decay's Convergence, or the ProbeConfigError that says why this
    TensorFlow cannot build it.

    A decay's column stops at the first step within ``tol``; or when a step left every
    variable of its column bit-identical (the same state and input give the same outputs
    forever); or after the first step when no variable either output reads is written by a
    train step (unshared branches, updates that never run: the gap cannot change); or at
    ``budget_factor`` times the closed form's predicted step (or, predicted never, the step
    after which the closed form no longer changes in float64). A layer leaves the runs once all
    its columns have stopped, so no step runs after the last answer is decided.
    """
    copies = len(decays)
    for config in configs:
        measure.require_one_input(config)
        if copies > sweep_graph.copies_per_chunk(config, copies):
            raise ValueError("converge runs every decay in one graph: %d decays of shape %s "
                             "do not fit" % (copies, config.shape))
    if len({c.device for c in configs}) != 1:
        raise ValueError("converge_rows runs every layer on one device")
    tf1 = backend.tensorflow().compat.v1
    placement = devices.resolve(configs[0].device, backend.visible_gpus())
    if placement.notice:
        measure.notify(placement.notice)
    g, rows = sweep_graph.build_rows(configs, copies, placement.target, decays)
    session = tf1.Session(graph=g, config=backend.session_config(placement.target, inline=True))
    try:
        runs = [_Row(config, row, decays, tol, budget_factor)
                for config, row in zip(configs, rows) if not isinstance(row, ProbeConfigError)]
        built = [r.built for r in runs]
        feeds = {k: v for row in built for k, v in row.feeds.items()}
        starts = dict(zip(map(id, runs), session.run(
            [[r.initial for r in built], [r.holders + r.initializers for r in built]],
            feeds)[0]))
        # Rows whose gap cannot change are decided by their first step: one run for them all.
        # The others step on up to THREADS threads, a share of the rows each, each step one
        # run (TensorFlow releases the GIL while it runs).
        changing = [r for r in runs if not r.built.gap_is_constant]
        workers = max(1, min(THREADS, os.cpu_count() or 1, len(changing)))
        graph_lock = threading.Lock()  # the graph grows when a callable joins its screens
        parts = [[r for r in runs if r.built.gap_is_constant]] + \
            [changing[i::workers] for i in range(workers)]
        _converge(session, parts[0], starts, graph_lock)
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda part: _converge(session, part, starts, graph_lock), parts[1:]))
    except backend.tensorflow().errors.OpError as exc:
        if len(configs) == 1:
            raise unsupported(configs[0], placement.target, exc) from None
        raise
    finally:
        session.close()
    results = iter(runs)
    return [row if isinstance(row, ProbeConfigError) else next(results).result()
            for row in rows]


# Row-steps that cost about what a new callable's graph optimization costs (~0.25 s for the
# matrix's graph): fewer rows are stepped only when the done ones would run more than this.
REPLAN_STEPS = 5000
THREADS = 2  # rows stepped side by side, at most one thread per core


def _converge(session: Any, runs: List["_Row"], starts: Dict[int, List[np.ndarray]],
              graph_lock: Any) -> None:
    """Steps ``runs`` from their first step until every column of them is decided."""
    if not runs:
        return
    with graph_lock:
        steps = _Steps(session, runs, full=True)
    for run, screen, values in zip(runs, *steps.run()):
        run.first_step(starts[id(run)], screen, values)
    step = 1
    while not all(r.done for r in steps.runs):
        step = steps.until_decided(step)
        active = [r for r in steps.runs if not r.done]
        if active:
            with graph_lock:
                steps = _Steps(session, active)


class _Steps:
    """Runs steps of ``runs`` (the other rows' ops do not run): one callable fetching every
    row's screen, joined into one tensor per quantity, and each row's variables and outputs
    (and at the first step, ``full``, the statistics fed)."""

    def __init__(self, session: Any, runs: List["_Row"], full: bool = False):
        tf1 = backend.tensorflow().compat.v1
        self.runs, self.full = runs, full
        with session.graph.as_default():
            screens = [tf1.concat([r.built.screen[i] for r in runs], 0) for i in (0, 1)]
        fetches = [[t for t in _fetches(r.built, full)] for r in runs]
        self.bounds = np.cumsum([2] + [len(f) for f in fetches]).tolist()
        self.callable = backend.fast_callable(session, [], screens + [t for f in fetches
                                                                      for t in f])
        # where each copy's channels start in the joined screen, and each row's copies
        sizes = [r.built.channels for r in runs for _ in range(r.copies)]
        self.copy_starts = np.cumsum([0] + sizes[:-1])
        self.row_starts = np.cumsum([0] + [r.copies for r in runs]).tolist()

    def run(self) -> Tuple[List[np.ndarray], List[np.ndarray], List[List[np.ndarray]]]:
        """One step: each row's float32 gaps and screen sums per copy, and its values."""
        screened, sums, per_row = self._run()
        cut = list(zip(self.row_starts, self.row_starts[1:]))
        return ([(screened[a:b], sums[a:b]) for a, b in cut], per_row)

    def _run(self) -> Tuple[np.ndarray, np.ndarray, List[List[np.ndarray]]]:
        values = self.callable()
        return (np.maximum.reduceat(values[0], self.copy_starts),
                np.add.reduceat(values[1], self.copy_starts),
                [values[a:b] for a, b in zip(self.bounds, self.bounds[1:])])

    def until_decided(self, step: int) -> int:
        """Steps the rows until all are done, or until so many are that fewer rows should run
        (REPLAN_STEPS); returns the last step run. A step where no running column's float32
        gap is near or within tol, NaN, not normal or unchanged, and no budget is reached,
        costs a few vectorized comparisons for all rows; the others go to each row."""
        runs = self.runs
        running = np.zeros(self.row_starts[-1], bool)
        last = np.concatenate([r.screened for r in runs])
        high = np.concatenate([np.full(r.copies, r.screen.high) for r in runs])
        previous: Optional[List[List[np.ndarray]]] = None
        values: List[List[np.ndarray]] = [[] for _ in runs]
        while True:
            for run, start in zip(runs, self.row_starts):
                running[start:start + run.copies] = False
                running[[start + j for j in run.running]] = True
            last_budget = min((r.last_budget for r in runs if not r.done), default=0)
            while True:
                previous, (screened, sums, values) = values, self._run()
                step += 1
                if step >= last_budget or not np.all(
                        ((high < screened) & (screened < np.inf) & (screened != last)
                         & (sums == sums))[running]):  # NaN == NaN is False
                    break
                last = screened
            for run, a, b, before, now in zip(runs, self.row_starts, self.row_starts[1:],
                                              previous, values):
                if not run.done:
                    run.observe(step, screened[a:b], sums[a:b], last[a:b], before, now)
            last = screened
            done = [r for r in runs if r.done]
            if len(done) == len(runs) or (len(done) * 2 >= len(runs) and len(done) * max(
                    r.steps_left(step) for r in runs) > REPLAN_STEPS):
                return step


def _fetches(row: sweep_graph.SweepGraph, full: bool) -> List[Any]:
    """What a convergence step fetches of a row besides its screen: the variables and the
    outputs; and at the first step, ``full``, the statistics fed."""
    return (list(row.fed.values()) if full else []) + row.after_train + \
        [row.train_output, row.test_output]


class _Row:
    """One layer's convergence run: its columns (one per decay) and what decided each."""

    def __init__(self, config: ProbeConfig, built: sweep_graph.SweepGraph,
                 decays: Sequence[float], tol: float, budget_factor: float):
        self.built, self.tol, self.copies = built, tol, len(decays)
        fused, epsilon = built.fused["train"], built.epsilon["train"]
        self.predicted = [_predicted(config.inputs.tobytes(), config.shape, d, fused, epsilon,
                                     tol, config.zero_debias) for d in decays]
        self.budgets = [budget_factor * (p or theory.settled_after(d))
                        for d, p in zip(decays, self.predicted)]
        self.columns = _Columns(built)
        self.screen = _Screen(tol)
        # decay index -> (measured step or None, steps run, why it stopped without converging)
        self.decided: Dict[int, Tuple[Optional[int], int, str]] = {}
        self.first: Optional[FirstStep] = None
        self.after: List[np.ndarray] = []  # the variables after the last step decided on
        self.screened = np.zeros(self.copies, np.float32)  # its float32 gaps
        self.running: List[int] = list(range(self.copies))
        self.last_budget = min(self.budgets)

    @property
    def done(self) -> bool:
        return not self.running

    def steps_left(self, step: int) -> float:
        """About how many steps the running columns still take: to the closed form's
        prediction, or to the budget where it predicts none."""
        return max((max((p or b) - step, 0) for j in self.running
                    for p, b in [(self.predicted[j], self.budgets[j])]), default=0)

    def _after(self, values: List[np.ndarray]) -> List[np.ndarray]:
        return values[len(values) - 2 - len(self.built.variables):-2]

    def first_step(self, before: List[np.ndarray], screen: Tuple[np.ndarray, np.ndarray],
                   values: List[np.ndarray]) -> None:
        b, columns = self.built, self.columns
        fed, after = values[:len(b.fed)], self._after(values)
        gaps = _gaps(b, values[-2], values[-1])
        moving = [i for i, v in enumerate(b.variables) if short_name(v.name) in MOVING
                  and v.name in b.branch_variables["train"]]
        variance = list(b.fed).index("moving_variance") if "moving_variance" in b.fed else None
        self.first = FirstStep(
            b.fused["train"], graph.shares_variables(b.branch_variables),
            tuple(any(before[i][columns.cut(j)].tobytes() != after[i][columns.cut(j)].tobytes()
                      for i in moving) for j in range(self.copies)),
            None if variance is None else tuple(fed[variance][columns.cut(j)]
                                                for j in range(self.copies)),
            gaps)
        self.screened = screen[0]
        self._decide(1, gaps.tolist(), before, after, [True] * self.copies)

    def observe(self, step: int, screened: np.ndarray, sums: np.ndarray, last: np.ndarray,
                before: List[np.ndarray], values: List[np.ndarray]) -> None:
        """A step where something may be decided: ``screened`` / ``sums`` its float32 gaps
        and screen sums per copy, ``last`` the step before's gaps, ``before`` that step's
        values (empty: the step this run began at, whose variables the row kept)."""
        previous = self._after(before) if before else self.after
        gaps = self.screen.gaps(screened, sums, self.decided,
                                lambda: _gaps(self.built, values[-2], values[-1]))
        self._decide(step, gaps, previous, self._after(values), (screened == last).tolist())
        self.screened = screened

    def _decide(self, step: int, gaps: List[float], previous: List[np.ndarray],
                after: List[np.ndarray], repeated: List[bool]) -> None:
        for j in self.running:
            if gaps[j] <= self.tol:
                self.decided[j] = (step, step, "")
            elif repeated[j] and not self.columns.changed(previous, after, j):
                self.decided[j] = (None, step, "the variables stopped changing after step %d"
                                   % (step - 1))
            elif self.built.gap_is_constant:
                self.decided[j] = (None, step, "the variables stopped changing after step 0 "
                                               "for the outputs: a train step writes no "
                                               "variable either output reads")
            elif step >= self.budgets[j]:
                self.decided[j] = (None, step, "limit reached")
        self.running = [j for j in self.running if j not in self.decided]
        self.last_budget = min((self.budgets[j] for j in self.running), default=0)
        self.after = after

    def result(self) -> Tuple[FirstStep, Tuple[Convergence, ...]]:
        return self.first, tuple(Convergence(self.tol, self.decided[j][0], self.predicted[j],
                                             self.decided[j][1], self.decided[j][2])
                                 for j in range(self.copies))


@functools.lru_cache(maxsize=256)
def _predicted(inputs: bytes, shape: Tuple[int, ...], decay: float, fused: bool, epsilon: float,
               tol: float, zero_debias: bool) -> Optional[int]:
    """theory.predicted_steps_to_converge, once per input and setting: the semantics matrix
    asks it again for every row."""
    x = np.frombuffer(inputs, np.float32).reshape(shape)
    return theory.predicted_steps_to_converge(x, decay, fused, epsilon, tol, zero_debias)


class _Screen:
    """Decides ``gap <= tol`` from the float32 gaps as the exact (float64) gaps would: the
    float32 maximum is the exact maximum rounded to float32 (rounding is monotonic), so it is on
    the same side of ``tol`` unless it lies within float32 rounding of it or is not a normal
    number (flushed to zero, or beyond float32); then the exact gaps are taken from the
    outputs. In plain floats: a step's few columns cost less so than as numpy arrays. A gap
    above ``high`` is surely above tol."""

    def __init__(self, tol: float):
        band = 4 * float(np.spacing(np.float32(tol)))
        self.low, self.high = tol - band, tol + band

    def gaps(self, screened: np.ndarray, sums: np.ndarray, settled: Dict[int, Any],
             exact: Callable[[], np.ndarray]) -> List[float]:
        """Per copy: NaN where a difference is NaN (its ``sums`` is NaN; numpy's max returns
        it, TensorFlow's skips it), else a gap on the same side of tol as the exact one (for
        the copies not in ``settled``, whose gaps no longer matter)."""
        values, nans = screened.tolist(), [math.isnan(v) for v in sums.tolist()]
        for j, (g, is_nan) in enumerate(zip(values, nans)):
            if j not in settled and not is_nan and not (
                    2.0 ** -120 <= g < np.inf and not self.low <= g <= self.high):
                values = exact().tolist()
                break
        return [float("nan") if is_nan else g for g, is_nan in zip(values, nans)]


class _Columns:
    """Which variable values belong to a decay: its C channels of every per-channel variable,
    and every scalar variable (zero_debias's local_step, shared by the chunk)."""

    def __init__(self, built: sweep_graph.SweepGraph):
        self.channels = built.channels
        self.tiled = [v.shape.as_list() == [built.channels * built.copies]
                      for v in built.variables]

    def cut(self, copy: int) -> slice:
        return slice(copy * self.channels, (copy + 1) * self.channels)

    def of(self, values: List[np.ndarray], copy: int) -> List[np.ndarray]:
        return [v[self.cut(copy)] if tiled else v for v, tiled in zip(values, self.tiled)]

    def changed(self, before: List[np.ndarray], after: List[np.ndarray], copy: int) -> bool:
        """Did a step change any bit of ``copy``'s variables (NaN == NaN: a bit compare)?"""
        return any(a.tobytes() != b.tobytes()
                   for a, b in zip(self.of(before, copy), self.of(after, copy)))


def _device_report(s: _Session, metadata: Any) -> DeviceReport:
    built = s.built
    ops = FrozenDict((phase, FrozenDict(devices.executed_on(
        metadata, graph.computed(built.ops, built.branch_ops[phase])))) for phase in PHASES)
    return DeviceReport(s.config.device, s.placement.target, s.gpus, s.placement.notice, ops)


class _Shared:
    """What every decay's result shares: the config, the graph's facts, the device report; and
    how to cut one decay's numbers out of a chunk's."""

    def __init__(self, config: ProbeConfig, s: _Session, versions: Dict[str, Any]):
        built = s.built
        self.config, self.copies = config, built.copies
        self.columns = _Columns(built)
        self.names = tuple(v.name for v in built.variables)
        self.train_rows = [(short_name(n), self.names.index(n))
                           for n in built.branch_variables["train"]]
        c = built.channels
        self.variables = tuple(VariableInfo(
            v.name, short_name(v.name),
            (c,) if tiled else tuple(v.shape.as_list()), v.dtype.base_dtype.name)
            for v, tiled in zip(built.variables, self.columns.tiled))
        self.fed_names = list(built.fed)
        self.facts = dict(fused_by_phase=FrozenDict(built.fused),
                          epsilon=FrozenDict(built.epsilon),
                          branch_variables=FrozenDict(built.branch_variables),
                          update_ops=built.update_ops, versions=FrozenDict(versions))
        self.device: Optional[DeviceReport] = None
        self._train: Optional[np.ndarray] = None  # the last train output handed out

    def _snapshot(self, values: List[np.ndarray], copy: int) -> FrozenDict:
        return FrozenDict(zip(self.names, (frozen_array(v)
                                           for v in self.columns.of(values, copy))))

    def _output(self, array: np.ndarray, copy: int) -> np.ndarray:
        if self.copies == 1:  # the array TensorFlow handed over, as probe() keeps it
            return freeze(measure.to_nhwc(self.config, array))
        cut = self.columns.cut(copy)
        part = array[..., cut] if self.config.data_format == "NHWC" else array[:, cut]
        return freeze(np.ascontiguousarray(measure.to_nhwc(self.config, part)))

    def _shared_train(self, train: np.ndarray) -> np.ndarray:
        """One array for equal train outputs: in train mode every decay's is the same (a large
        input's sweep then holds it once, not once per decay)."""
        if self._train is not None and np.array_equal(train, self._train):
            return self._train
        self._train = train
        return train

    def result(self, decay: float, copy: int, chunk: _Stacked) -> ProbeResult:
        final = chunk.final
        cut = self.columns.cut(copy)
        after_train = self._snapshot(final.after_train, copy)
        trajectory = {name: frozen_array(chunk.after_train[row][:, cut]
                                         if self.columns.tiled[row] else chunk.after_train[row])
                      for name, row in self.train_rows}
        for i, name in enumerate(self.fed_names):
            key = "batch_mean" if name == "moving_mean" else "batch_variance"
            trajectory[key] = frozen_array(chunk.fed[i][:, cut])
        if chunk.gap is not None:
            trajectory["gap"] = frozen_array(chunk.gap[:, copy], np.float64)
        result = ProbeResult(
            config=dataclasses.replace(self.config, decay=decay),
            inputs=self.config.inputs,
            outputs=FrozenDict(train=self._shared_train(self._output(final.outputs[0], copy)),
                               test=self._output(final.outputs[1], copy)),
            snapshots=FrozenDict(before_train=self._snapshot(chunk.before, copy),
                                 after_train=after_train, before_test=after_train,
                                 after_test=self._snapshot(final.after_test, copy)),
            trajectory=FrozenDict(trajectory),
            batch_statistics=FrozenDict((name, frozen_array(final.fed[i][cut]))
                                        for i, name in enumerate(self.fed_names)),
            update_factor=FrozenDict((name, float(final.factors[i][cut.start]))
                                     for i, name in enumerate(self.fed_names)),
            variables=self.variables,
            device=self.device,
            **self.facts)
        return measure.with_notes(result)
