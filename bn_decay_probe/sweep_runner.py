"""Runs the sweep graph (sweep_graph): every decay of a chunk in one ``Session.run`` per train
step, so a sweep costs about as many runs as steps, whatever the number of decays.

``run``: each decay's ProbeResult, as probe() measures it. ``converge``: train steps until each
decay's test output is within ``tol`` of its train output, every decay stopping as soon as its
answer is decided, for the semantics matrix.

Where a decay's numbers can differ from probe()'s (docs/sweep.md; tests/test_sweep.py holds the
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
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import backend, devices, graph, report, runner, sweep_graph, theory
from .config import ProbeConfig
from .frozen import FrozenDict, freeze, frozen_array
from .result import Convergence, DeviceReport, ProbeResult, VariableInfo, short_name


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
                gap = self.gaps(*outputs)
        if not last:  # a step's outputs only give its gap: a long sweep keeps none of them
            return _Fetched(fed, after_train, gap)
        return _Fetched(fed, after_train, gap, outputs, values[:len(b.variables)],
                        values[len(b.variables):])

    def gaps(self, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        """max |test - train| of each copy, as runner._gap gives it for one decay: the same
        float64 operations, and NaN where a difference is NaN."""
        copies, c = self.built.copies, self.built.channels
        if copies == 1:  # memory-bounded for a large input
            return np.array([runner._gap(test, train)])
        difference = np.subtract(test, train, dtype=np.float64)
        np.abs(difference, out=difference)
        if self.config.data_format == "NCHW":  # [N, copies * C, H * W]: the channel axis last
            difference = difference.reshape(test.shape[0], copies * c, -1).max(axis=2)
        # max over rows, then over each copy's channels: numpy reduces a contiguous axis 0
        # many times faster than several axes at once
        return difference.reshape(-1, copies * c).max(axis=0).reshape(copies, c).max(axis=1)

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

    def screened_step(self) -> Tuple[np.ndarray, np.ndarray, _Fetched]:
        """A train step (one input) fetching what converge needs: the float32 gap of each copy
        and the sum that tells NaN (sweep_graph._screen), and the step's fed statistics,
        variables and outputs (no exact gap)."""
        return self.unscreen(self.screened_run()(*self.feeds))

    def screened_run(self) -> Any:
        """The callable of screened_step, its values in a list (unscreen reads them)."""
        b = self.built
        if "screened" not in self._callables:
            self._callables["screened"] = backend.fast_callable(
                self.session, self.feed_list, list(b.screen) + list(b.fed.values()) +
                b.after_train + [b.train_output, b.test_output])
        return self._callables["screened"]

    def unscreen(self, values: List[np.ndarray]) -> Tuple[np.ndarray, np.ndarray, _Fetched]:
        fed, count = len(self.built.fed), len(self.built.variables)
        return values[0], values[1], _Fetched(values[2:2 + fed], values[2 + fed:2 + fed + count],
                                              None, (values[-2], values[-1]))

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
        runner._notify(placement.notice)
    s = _Session(config, copies, placement, gpus, decays)
    try:
        yield s
    except backend.tensorflow().errors.OpError as exc:
        raise runner._unsupported(config, placement, exc) from None
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
             budget_factor: int) -> Tuple[FirstStep, Tuple[Convergence, ...]]:
    """Trains (one input) until each decay's max |test - train| <= tol, measured after every
    step, all decays in one graph (they must fit one chunk: small inputs, as the semantics
    matrix has).

    A decay's column stops at the first step within ``tol``; or when a step left every
    variable of its column bit-identical (the same state and input give the same outputs
    forever); or after the first step when no variable either output reads is written by a
    train step (unshared branches, updates that never run: the gap cannot change); or at
    ``budget_factor`` times the closed form's predicted step (or, predicted never, the step
    after which the closed form no longer changes in float64). The run ends when every column
    has stopped, so no step runs after the last answer is decided.
    """
    if config.batches is not None:
        raise ValueError("converge compares the test and train outputs of one input; "
                         "it takes no batches")
    copies = len(decays)
    if copies > sweep_graph.copies_per_chunk(config, copies):
        raise ValueError("converge runs every decay in one graph: %d decays of shape %s do "
                         "not fit" % (copies, config.shape))
    with _opened(config, copies, decays) as s:
        b = s.built
        fused, epsilon = b.fused["train"], b.epsilon["train"]
        predicted = [_predicted(config.inputs.tobytes(), config.shape, d, fused, epsilon, tol,
                                config.zero_debias) for d in decays]
        budgets = [budget_factor * (p or theory.settled_after(d))
                   for d, p in zip(decays, predicted)]
        columns = _Columns(s)
        before = s.start(decays)
        screened, _, fetched = s.screened_step()
        gaps = s.gaps(*fetched.outputs).tolist()
        moving = [i for i, v in enumerate(b.variables) if short_name(v.name) in graph.MOVING
                  and v.name in b.branch_variables["train"]]
        first = FirstStep(
            fused, graph.shares_variables(b.branch_variables),
            tuple(any(before[i][columns.cut(j)].tobytes() !=
                      fetched.after_train[i][columns.cut(j)].tobytes() for i in moving)
                  for j in range(copies)),
            tuple(fetched.fed[list(b.fed).index("moving_variance")][columns.cut(j)]
                  for j in range(copies)) if "moving_variance" in b.fed else None,
            np.array(gaps))
        # decay index -> (measured step or None, steps run, why it stopped without converging)
        decided: Dict[int, Tuple[Optional[int], int, str]] = {}
        screen = _Screen(tol)
        previous, after, step = before, fetched.after_train, 1
        # A step that leaves a column's float32 gap unchanged may have left its variables
        # unchanged: only then are they compared (after the first step, always).
        repeated = [True] * copies
        while True:
            for j in range(copies):
                if j in decided:
                    continue
                if gaps[j] <= tol:
                    decided[j] = (step, step, "")
                elif repeated[j] and not columns.changed(previous, after, j):
                    decided[j] = (None, step, "the variables stopped changing after step %d"
                                  % (step - 1))
                elif b.gap_is_constant:
                    decided[j] = (None, step, "the variables stopped changing after step 0 for "
                                              "the outputs: a train step writes no variable "
                                              "either output reads")
                elif step >= budgets[j]:
                    decided[j] = (None, step, "limit reached")
            if len(decided) == copies:
                break
            running = [j for j in range(copies) if j not in decided]
            last_budget = min(budgets[j] for j in running)
            last_screened, run, feeds = screened.tolist(), s.screened_run(), s.feeds
            raw = None
            while True:  # the steps where nothing is decided, with as little Python as can be
                before_step, raw = raw, run(*feeds)
                step += 1
                values, totals = raw[0].tolist(), raw[1].tolist()
                if step >= last_budget or not all(  # NaN != NaN: a NaN difference breaks out
                        screen.high < values[j] < np.inf and values[j] != last_screened[j]
                        and totals[j] == totals[j] for j in running):
                    break
                last_screened = values
            if before_step is not None:  # else the variables after the step the loop began at
                after = s.unscreen(before_step)[2].after_train
            previous = after
            screened, sums, fetched = s.unscreen(raw)
            after = fetched.after_train
            repeated = [v == w for v, w in zip(values, last_screened)]
            gaps = screen.gaps(screened, sums, decided, lambda: s.gaps(*fetched.outputs))
    return first, tuple(Convergence(tol, decided[j][0], predicted[j], decided[j][1],
                                    decided[j][2]) for j in range(copies))


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

    def __init__(self, s: _Session):
        self.channels = s.built.channels
        self.tiled = [v.shape.as_list() == [s.built.channels * s.built.copies]
                      for v in s.built.variables]

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
        metadata, graph.computed(built.graph, built.branch_ops[phase])))) for phase in graph.PHASES)
    return DeviceReport(s.config.device, s.placement.target, s.gpus, s.placement.notice, ops)


class _Shared:
    """What every decay's result shares: the config, the graph's facts, the device report; and
    how to cut one decay's numbers out of a chunk's."""

    def __init__(self, config: ProbeConfig, s: _Session, versions: Dict[str, Any]):
        built = s.built
        self.config, self.copies = config, built.copies
        self.columns = _Columns(s)
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
            return freeze(runner._to_nhwc(self.config, array))
        cut = self.columns.cut(copy)
        part = array[..., cut] if self.config.data_format == "NHWC" else array[:, cut]
        return freeze(np.ascontiguousarray(runner._to_nhwc(self.config, part)))

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
        return dataclasses.replace(result, notes=report.measured_notes(result))
