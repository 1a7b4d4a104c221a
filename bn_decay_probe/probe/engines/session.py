"""One decay of a TF1-style graph API in its own graph and session (probe()'s engine).

``run``: the step loop of measure.run_steps, every snapshot one ``Session.run`` of all variables;
the last train run and the test run are traced so the result can say which device every
batch-norm op actually ran on. ``converge``: train steps until the test output is within ``tol``
of the train output, or the moving statistics stop changing.
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, NamedTuple, Tuple

import numpy as np

from ... import backend
from ...names import PHASES
from ...values import FrozenDict
from .. import devices, graph, measure, theory
from ..config import ProbeConfig
from ..result import Convergence, DeviceReport, ProbeResult


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
def opened(config: ProbeConfig) -> Iterator[_Session]:
    """The probe graph of ``config`` in a session of its own, initialized; closed on exit."""
    with backend.quiet() as tf1:
        gpus = backend.visible_gpus()
        placement = devices.resolve(config.device, gpus)
        if placement.notice:
            measure.notify(placement.notice)
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
            raise unsupported(config, placement.target, exc) from None
        finally:
            session.close()


def unsupported(config: ProbeConfig, target: str, exc: Any) -> Exception:
    """TensorFlow's error as the probe reports it: one line for a layout the device cannot run
    (measure.unsupported_layout), else the error itself."""
    return measure.unsupported_layout(config, target, backend.tensorflow().__version__,
                                      exc.message.splitlines()[0]) or exc


class _Traced(measure.Steps):
    """measure.Steps over a _Session: the last train run and the test run traced."""

    def __init__(self, s: _Session, config: ProbeConfig):
        tf1 = backend.tensorflow().compat.v1
        self.s, self.config = s, config
        self.trace = tf1.RunOptions(trace_level=tf1.RunOptions.SOFTWARE_TRACE)
        self.metadata = {phase: tf1.RunMetadata() for phase in PHASES}

    def snapshot(self) -> Dict[str, np.ndarray]:
        return self.s.snapshot()

    def train(self, step: int, last: bool) -> Tuple[np.ndarray, List[np.ndarray]]:
        index = [] if self.config.batches is None else [step % len(self.config.batches)]
        output, *statistics = self.s.train(*index, options=self.trace if last else None,
                                           run_metadata=self.metadata["train"] if last else None)
        return output, statistics

    def test(self, last: bool) -> np.ndarray:
        if not last:
            return self.s.test()
        return self.s.test(options=self.trace, run_metadata=self.metadata["test"])


def run(config: ProbeConfig) -> ProbeResult:
    """probe() for a TF1-style graph API."""
    with opened(config) as s:
        traced = _Traced(s, config)
        measured = measure.run_steps(config, traced)
        factors = s.factors()
        built = s.built
        device = DeviceReport(config.device, s.placement.target, s.gpus, s.placement.notice,
                              FrozenDict((phase, FrozenDict(devices.executed_on(
                                  traced.metadata[phase],
                                  graph.computed(built.graph, built.branch_ops[phase]))))
                                  for phase in PHASES))
    return measure.probe_result(
        config, measured, list(built.fed), factors, fused=built.fused, epsilon=built.epsilon,
        variables=measure.variable_infos(built.variables),
        branch_variables=built.branch_variables, update_ops=built.update_ops, device=device,
        versions=backend.versions())


def converge(config: ProbeConfig, tol: float, max_steps: int) -> Convergence:
    """Trains (one input) until max |test - train| <= tol, measured after every step, or until
    a step leaves every variable bit-identical (measure.steps_to_converge)."""
    measure.require_one_input(config)
    with opened(config) as s:
        measured, step, stopped = measure.steps_to_converge(s.step, s.test, s.read, tol,
                                                            max_steps)
        fused = s.built.fused["train"]
        epsilon = s.built.epsilon["train"]
    predicted = theory.predicted_steps_to_converge(config.inputs, config.decay, fused, epsilon,
                                                   tol, config.zero_debias)
    return Convergence(tol, measured, predicted, step, stopped)
