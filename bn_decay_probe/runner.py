"""Runs a built probe graph in its own session and returns what it measured.

``run``: snapshot -> each train step (followed by a snapshot, and with one input a test run for
the output gap, except after the last) -> snapshot -> test run -> snapshot; every snapshot is
one ``Session.run`` of all variables. The last train run and the test run are traced so the
result can say which device every batch-norm op actually ran on.

``converge``: train steps until the test output is within ``tol`` of the train output, or the
moving statistics stop changing, for the semantics matrix.
"""
from __future__ import annotations

import contextlib
import dataclasses
import warnings
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Set, Tuple

import numpy as np

from . import backend, devices, graph, report, theory
from .config import ProbeConfig
from .errors import DeviceFallbackWarning, ProbeConfigError
from .frozen import FrozenDict, freeze, frozen_array, frozen_arrays
from .result import Convergence, DeviceReport, ProbeResult, VariableInfo, short_name


class _Session(NamedTuple):
    """Callables over one session: each is one ``Session.run`` without per-call graph lookups."""

    built: graph.ProbeGraph
    names: Tuple[str, ...]  # variable full names, in the order ``read`` returns them
    read: Any  # () -> [values]
    train: Any  # ([batch index]) -> [train output, fed statistics (see ProbeGraph.fed)...]
    step: Any  # () -> train output (one input, nothing else fetched: the convergence loop)
    test: Any  # () -> test output
    factors: Any  # () -> [1 - decay of each fed moving statistic], constants
    placement: devices.Placement
    gpus: Tuple[str, ...]

    def snapshot(self) -> Dict[str, np.ndarray]:
        return dict(zip(self.names, self.read()))


@contextlib.contextmanager
def _session(config: ProbeConfig) -> Iterator[_Session]:
    with backend.quiet() as tf1:
        gpus = backend.visible_gpus()
        placement = devices.resolve(config.device, gpus)
        if placement.notice:
            _notify(placement.notice)
        built = graph.build(config, placement.target)
        # Not `with Session(...)`: entering a session makes it the caller's default session.
        session = tf1.Session(graph=built.graph, config=backend.session_config(placement.target))
        try:
            session.run(built.initializers, feed_dict=built.feeds)
            names = tuple(sorted(built.variables))
            train_fetches = [built.train_step] + list(built.fed.values())
            feed_list = [] if built.batch_index is None else [built.batch_index]
            yield _Session(
                built, names,
                session.make_callable([built.variables[n] for n in names]),
                session.make_callable(train_fetches, feed_list, accept_options=True),
                session.make_callable(built.train_step),
                session.make_callable(built.test_output, accept_options=True),
                session.make_callable(list(built.factors.values())) if built.factors
                else list,
                placement, gpus)
        except backend.tensorflow().errors.OpError as exc:
            raise _unsupported(config, placement, exc) from None
        finally:
            session.close()


def _unsupported(config: ProbeConfig, placement: devices.Placement, exc: Exception) -> Exception:
    """TF's kernels refuse some layouts on some devices (CPU fused batch norm and NCHW in 1.15);
    that is a configuration the device cannot run, said in one line."""
    if config.data_format == "NCHW":
        return ProbeConfigError(
            "data_format 'NCHW' is not supported here by TensorFlow %s on %s (%s); use "
            "data_format='NHWC' or fused=False" % (backend.tensorflow().__version__,
                                                   placement.target,
                                                   exc.message.splitlines()[0]))
    return exc


_notified: Set[str] = set()


def _notify(notice: str) -> None:
    """Warns once per process: a notebook calling probe() hundreds of times wants one line.
    (The warnings module's own once-per-call-site registry is reset by every
    catch_warnings(), which TF's quiet import uses.) Every result still records the notice."""
    if notice not in _notified:
        _notified.add(notice)
        warnings.warn(notice, DeviceFallbackWarning, stacklevel=6)


def _to_nhwc(config: ProbeConfig, array: np.ndarray) -> np.ndarray:
    if config.data_format == "NHWC":
        return array
    return np.ascontiguousarray(np.transpose(array, graph.TO_NHWC))


_GAP_CHUNK = 1 << 18  # elements: the float32 scratch stays in cache


def _gap(test: np.ndarray, train: np.ndarray) -> float:
    """max |test - train| in float64, as np.abs(test.astype(np.float64) - train).max() gives
    it, without float64 copies of a large output. Rounding is monotonic, so the largest exact
    difference is among the elements whose float32 difference is largest; only those are
    taken to float64. Non-finite float32 differences (NaN, inf, overflow) take the plain way."""
    a, b = test.reshape(-1), train.reshape(-1)
    if a.size <= _GAP_CHUNK:
        return float(np.max(np.abs(a.astype(np.float64) - b)))
    scratch = np.empty(_GAP_CHUNK, np.float32)
    largest, where = -1.0, []  # type: ignore[var-annotated]
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, a.size, _GAP_CHUNK):
            d = scratch[:min(_GAP_CHUNK, a.size - start)]
            np.abs(np.subtract(a[start:start + d.size], b[start:start + d.size], out=d), out=d)
            top = d.max()
            if not np.isfinite(top):
                return float(np.max(np.abs(a.astype(np.float64) - b)))
            if top >= largest:
                where = ([] if top > largest else where) + [start + np.flatnonzero(d == top)]
                largest = top
    picked = np.concatenate(where)
    return float(np.max(np.abs(a[picked].astype(np.float64) - b[picked])))


def run(config: ProbeConfig) -> ProbeResult:
    if config.api == "keras3":
        from . import keras3_runner

        return keras3_runner.run(config)
    tf1 = backend.tensorflow().compat.v1
    trace = tf1.RunOptions(trace_level=tf1.RunOptions.SOFTWARE_TRACE)
    metadata = {phase: tf1.RunMetadata() for phase in graph.PHASES}
    one_input = config.batches is None
    with _session(config) as s:
        snapshots = {"before_train": s.snapshot()}
        steps: List[Dict[str, np.ndarray]] = []
        fed: List[List[np.ndarray]] = []
        gaps: List[float] = []
        for step in range(config.train_steps):
            last = step == config.train_steps - 1
            index = [] if one_input else [step % len(config.batches)]
            train_output, *statistics = s.train(
                *index, options=trace if last else None,
                run_metadata=metadata["train"] if last else None)
            steps.append(s.snapshot())
            fed.append(statistics)
            if one_input and not last:
                gaps.append(_gap(s.test(), train_output))
        snapshots["after_train"] = steps[-1]
        snapshots["before_test"] = s.snapshot()
        test_output = s.test(options=trace, run_metadata=metadata["test"])
        snapshots["after_test"] = s.snapshot()
        factors = s.factors()
        if one_input:
            gaps.append(_gap(test_output, train_output))
        built = s.built
        device = DeviceReport(config.device, s.placement.target, s.gpus, s.placement.notice,
                              FrozenDict((phase, FrozenDict(devices.executed_on(
                                  metadata[phase],
                                  graph.computed(built.graph, built.branch_ops[phase]))))
                                  for phase in graph.PHASES))

    fed_names = list(built.fed)
    result = ProbeResult(
        config=config,
        inputs=config.inputs,
        outputs=FrozenDict(train=freeze(_to_nhwc(config, train_output)),
                           test=freeze(_to_nhwc(config, test_output))),
        snapshots=FrozenDict((label, frozen_arrays(values)) for label, values in snapshots.items()),
        trajectory=trajectory(built.branch_variables["train"], steps, fed_names, fed,
                              gaps if one_input else None),
        batch_statistics=frozen_arrays(dict(zip(fed_names, fed[-1]))),
        update_factor=FrozenDict((name, float(value)) for name, value in zip(fed_names, factors)),
        fused_by_phase=FrozenDict(built.fused),
        epsilon=FrozenDict(built.epsilon),
        variables=variable_infos(built.variables),
        branch_variables=FrozenDict(built.branch_variables),
        update_ops=built.update_ops,
        device=device,
        versions=FrozenDict(backend.versions()),
    )
    return dataclasses.replace(result, notes=report.measured_notes(result))


def trajectory(train_variables: Tuple[str, ...], steps: List[Dict[str, np.ndarray]],
               fed_names: List[str], fed: List[List[np.ndarray]],
               gaps: Optional[List[float]]) -> FrozenDict:
    """ProbeResult.trajectory: the train branch's variables after each step, the statistics fed
    to each moving average (``fed[step]`` in ``fed_names`` order), and the gap (one input)."""
    found = {short_name(n): frozen_array([values[n] for values in steps])
             for n in train_variables}
    for name, key in (("moving_mean", "batch_mean"), ("moving_variance", "batch_variance")):
        if name in fed_names:
            found[key] = frozen_array([step[fed_names.index(name)] for step in fed])
    if gaps is not None:
        found["gap"] = frozen_array(gaps, np.float64)
    return FrozenDict(found)


def variable_infos(variables: Dict[str, Any]) -> Tuple[VariableInfo, ...]:
    """Full name -> tf.Variable, as VariableInfo sorted by name."""
    return tuple(VariableInfo(v.name, short_name(v.name), tuple(v.shape.as_list()),
                              v.dtype.base_dtype.name) for _, v in sorted(variables.items()))


def converge(config: ProbeConfig, tol: float, max_steps: int) -> Convergence:
    """Trains (one input) until max |test - train| <= tol, measured after every step.

    Stops early when a step leaves every variable bit-identical: the same state and input give
    the same outputs forever, so the gap can no longer shrink (update ops that never run, decay
    1, or float32 updates too small to change the value).
    """
    if config.batches is not None:
        raise ValueError("converge compares the test and train outputs of one input; "
                         "it takes no batches")
    if config.api == "keras3":
        from . import keras3_runner

        return keras3_runner.converge(config, tol, max_steps)
    with _session(config) as s:
        stopped = "limit reached"
        measured: Optional[int] = None
        last_gap, unchanged = None, None
        step = 0
        for step in range(1, max_steps + 1):
            train_output = s.step()
            gap = _gap(s.test(), train_output)
            if gap <= tol:
                measured = step
                break
            # Reading every variable costs more than a step, so only when the gap repeats
            # exactly (unchanged variables give unchanged outputs, so a changing gap proves
            # the state moved); two equal reads in a row prove a step changed nothing.
            if gap == last_gap:
                current = s.read()
                if unchanged is not None and all(
                        np.array_equal(a, b) for a, b in zip(unchanged, current)):
                    stopped = "the variables stopped changing after step %d" % (step - 1)
                    break
                unchanged = current
            else:
                unchanged = None
            last_gap = gap
        fused = s.built.fused["train"]
        epsilon = s.built.epsilon["train"]
    predicted = theory.predicted_steps_to_converge(config.inputs, config.decay, fused, epsilon,
                                                   tol, config.zero_debias)
    return Convergence(tol, measured, predicted, step, "" if measured else stopped)
