"""Runs many decays through one graph: the decay is fed as a float64 tensor, and each train step
is one ``Session.run`` of a chain train -> read -> test -> read (-> reset -> read after the last
step), so a decay at steps=1 costs one run instead of a graph, a session and several runs.

The layer is the one probe() builds (apis.ContribBuilder, updates in place), with the decay a
tensor: ``assign_moving_average`` computes ``1 - decay`` in float64 and casts it to float32,
which is what it does with a Python float, so every number is bit-identical to probe()'s.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import apis, backend, devices, graph, runner
from .config import ProbeConfig
from .frozen import FrozenDict, freeze, frozen_array
from .result import DeviceReport, ProbeResult, VariableInfo, short_name


class _Fetched(NamedTuple):
    """One step's run, in the order of ``_SweepGraph.fetches``."""

    train: np.ndarray  # train output
    fed_mean: np.ndarray
    fed_variance: np.ndarray
    after_train: np.ndarray  # [variables, C]: read after the train step, before the test run
    test: np.ndarray  # test output
    after_test: np.ndarray  # [variables, C]
    factors: np.ndarray  # [2]: 1 - decay as the graph holds it, mean then variance
    after_reset: Optional[np.ndarray] = None  # [variables, C], after the last step only


class _SweepGraph(NamedTuple):
    """The built sweep graph and what the run loop needs. Internal: holds live TF objects."""

    graph: Any
    feeds: Dict[Any, np.ndarray]
    initializers: List[Any]
    decay: Any  # the float64 placeholder
    variables: List[Any]  # sorted by name, the rows of every read
    fetches: List[Any]  # one step, as _Fetched
    initial: List[Any]  # the values the variables' initializers assign
    after_reset: Any  # read after the variables are set back to their initial values
    branch_ops: Dict[str, frozenset]
    branch_variables: Dict[str, Tuple[str, ...]]
    fused: Dict[str, bool]
    epsilon: Dict[str, float]
    update_ops: Tuple[str, ...]


def _build(config: ProbeConfig, target: str) -> _SweepGraph:
    with backend.quiet() as tf1:
        g = tf1.Graph()
        with g.as_default(), tf1.device(target):
            feeds: Dict[Any, np.ndarray] = {}
            x = graph.hold_input(tf1, feeds, "input", config.inputs)
            decay = tf1.placeholder(tf1.float64, [], name="decay")
            # ProbeConfig does not validate on construction; this one carries the tensor.
            layer = apis.ContribBuilder(tf1, dataclasses.replace(config, decay=decay))
            # Resource variables: every read is an op made where it is asked for, so the
            # control dependencies below order it inside one run (a ref variable's reads alias
            # its buffer and are not ordered), and a read is a snapshot later updates leave alone.
            with tf1.variable_scope(tf1.get_variable_scope(), use_resource=True):
                branch_ops, outputs = {}, {}
                start = len(g.get_operations())
                outputs["train"] = layer.branch(x, "train").output
                branch_ops["train"] = frozenset(op.name for op in g.get_operations()[start:])
                variables = sorted(tf1.global_variables(), key=lambda v: v.name)
                read = lambda: tf1.stack([v.read_value() for v in variables])  # noqa: E731
                with tf1.control_dependencies([outputs["train"]]):
                    after_train = read()
                start = len(g.get_operations())
                with tf1.control_dependencies([after_train]):
                    outputs["test"] = layer.branch(x, "test").output
                branch_ops["test"] = frozenset(op.name for op in g.get_operations()[start:])
                with tf1.control_dependencies([outputs["test"]]):
                    after_test = read()
                # The initializers' own values, so the next decay starts where probe() starts.
                initial = [v.initial_value for v in variables]
                with tf1.control_dependencies([after_test]):
                    reset = tf1.group(*[v.assign(i) for v, i in zip(variables, initial)])
                with tf1.control_dependencies([reset]):
                    after_reset = read()
            by_op = {v.op.name: v for v in variables}
            branch_variables = {phase: graph.variables_read(g, branch_ops[phase], by_op)
                                for phase in graph.PHASES}
            fed, factors = [], []
            for name in graph.MOVING:
                variable = graph.find_variable({v.name: v for v in variables},
                                       branch_variables["train"], name)
                found = graph.moving_average_inputs(g, branch_ops["train"], variable)
                if found is None:  # contrib updates in place whenever it trains
                    raise graph.GraphStructureError("no moving-average update of %s in the "
                                                    "train branch" % variable.op.name)
                value, factor = found
                fed.append(value)
                factors.append(factor)
            fetches = [outputs["train"], *fed, after_train, outputs["test"], after_test,
                       tf1.stack(factors)]
            initializers = [v.initializer for v in graph.held_variables(g)]
            initializers.append(tf1.variables_initializer(variables))
            update_ops = tuple(u.name for u in tf1.get_collection(tf1.GraphKeys.UPDATE_OPS))
        g.finalize()
    return _SweepGraph(g, feeds, initializers, decay, variables, fetches, initial, after_reset,
                       branch_ops, branch_variables,
                       {p: graph.is_fused(g, branch_ops[p]) for p in graph.PHASES},
                       {p: graph.epsilon_of(g, branch_ops[p]) for p in graph.PHASES}, update_ops)


def run(config: ProbeConfig, decays: Sequence[float],
        progress: Optional[Callable[[int], Any]] = None) -> Tuple[ProbeResult, ...]:
    """One ProbeResult per decay of ``decays``, each as probe() would measure it with
    ``config`` (contrib, updates in place, NHWC, shared variables, one input).

    The device report comes from tracing the first decay's last run (one graph, one
    placement for all). The first decay's ``before_train`` is what the initializers assign,
    fetched in their run; each next one's is read after the reset. ``before_test`` is the read
    that follows the train step, as nothing runs between the two. ``progress(1)`` is called
    after each decay.
    """
    tf1 = backend.tensorflow().compat.v1
    gpus = backend.visible_gpus()
    placement = devices.resolve(config.device, gpus)
    if placement.notice:
        runner._notify(placement.notice)
    built = _build(config, placement.target)
    session = tf1.Session(graph=built.graph, config=backend.session_config(placement.target))
    # Each distinct run optimizes the graph once (~0.1 s), so a callable is made on first use:
    # a single decay at steps=1 runs only the initializers and one traced step.
    callables: Dict[bool, Any] = {}

    def step(decay: np.float64, last: bool) -> _Fetched:
        if last not in callables:
            callables[last] = backend.fast_callable(
                session, [built.decay], built.fetches + ([built.after_reset] if last else []))
        return _Fetched(*callables[last](decay))

    try:
        before = np.array(session.run([built.initializers, built.initial],
                                      feed_dict=built.feeds)[1])
        shared = _Shared(config, built, backend.versions())
        results = []
        for index, decay in enumerate(decays):
            fed = np.float64(decay)
            runs = [step(fed, last=False) for _ in range(config.steps - 1)]
            if index == 0:  # traced, once: one graph, one placement for every decay
                metadata = tf1.RunMetadata()
                runs.append(_Fetched(*session.run(
                    built.fetches + [built.after_reset], {built.decay: fed},
                    options=tf1.RunOptions(trace_level=tf1.RunOptions.SOFTWARE_TRACE),
                    run_metadata=metadata)))
                shared.device = _device_report(config, placement, gpus, built, metadata)
            else:
                runs.append(step(fed, last=True))
            results.append(shared.result(float(decay), before, runs))
            before = runs[-1].after_reset
            if progress:
                progress(1)
    finally:
        session.close()
    return tuple(results)


def _device_report(config: ProbeConfig, placement: devices.Placement, gpus: Tuple[str, ...],
                   built: _SweepGraph, metadata: Any) -> DeviceReport:
    """Where each op of the two branches ran, leaving out the variables' own initializers,
    which the reset runs and probe() runs before its traced runs."""
    own = tuple(v.op.name + "/" for v in built.variables)
    return DeviceReport(config.device, placement.target, gpus, placement.notice, FrozenDict(
        (phase, FrozenDict(devices.executed_on(
            metadata, [n for n in graph.computed(built.graph, built.branch_ops[phase])
                       if not n.startswith(own)])))
        for phase in graph.PHASES))


class _Shared:
    """What every decay's result shares: the config, the graph's facts, the device report."""

    def __init__(self, config: ProbeConfig, built: _SweepGraph, versions: Dict[str, Any]):
        self.config = config
        self.names = tuple(v.name for v in built.variables)
        self.train_rows = [(short_name(n), self.names.index(n))
                           for n in built.branch_variables["train"]]
        self.variables = tuple(VariableInfo(v.name, short_name(v.name),
                                            tuple(v.shape.as_list()), v.dtype.base_dtype.name)
                               for v in built.variables)
        self.facts = dict(fused_by_phase=FrozenDict(built.fused),
                          epsilon=FrozenDict(built.epsilon),
                          branch_variables=FrozenDict(built.branch_variables),
                          update_ops=built.update_ops, versions=FrozenDict(versions))
        self.device: Optional[DeviceReport] = None

    def _snapshot(self, values: np.ndarray) -> FrozenDict:
        return FrozenDict(zip(self.names, freeze(values)))

    def result(self, decay: float, before: np.ndarray, runs: List[_Fetched]) -> ProbeResult:
        final = runs[-1]
        after_train = self._snapshot(final.after_train)
        trajectory = {name: frozen_array([r.after_train[row] for r in runs])
                      for name, row in self.train_rows}
        trajectory["batch_mean"] = frozen_array([r.fed_mean for r in runs])
        trajectory["batch_variance"] = frozen_array([r.fed_variance for r in runs])
        trajectory["gap"] = frozen_array([runner._gap(r.test, r.train) for r in runs],
                                         np.float64)
        return ProbeResult(
            config=dataclasses.replace(self.config, decay=decay),
            inputs=self.config.inputs,
            outputs=FrozenDict(train=freeze(final.train), test=freeze(final.test)),
            snapshots=FrozenDict(before_train=self._snapshot(before), after_train=after_train,
                                 before_test=after_train,
                                 after_test=self._snapshot(final.after_test)),
            trajectory=FrozenDict(trajectory),
            batch_statistics=FrozenDict(moving_mean=freeze(final.fed_mean),
                                        moving_variance=freeze(final.fed_variance)),
            update_factor=FrozenDict(zip(graph.MOVING, map(float, final.factors))),
            variables=self.variables,
            device=self.device,
            **self.facts)
