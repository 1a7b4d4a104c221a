"""api "keras3": Keras 3's BatchNormalization(momentum=decay), run the way Keras 3 runs it.

Keras 3 (tf.keras from TF 2.16) has no TF1 graph mode: inside a tf.compat.v1 graph its updates
never run. So this probe makes one layer object (two with share_variables=False), calls it
through tf.function with training=True for each train step and with training=False for the
test, eagerly between calls, as Model.fit and Model.predict do. The numbers are read the same
way as for the graph APIs: the moving-average update is found in the traced function's graph
(Keras 3 writes ``v = v * momentum + value * (1 - momentum)``), and the statistic it multiplies
is returned by the train function, so ``batch_statistics`` is what was fed, not recomputed.

What an eager run does not have is said, not filled in: no UPDATE_OPS collection (the result's
``update_ops`` is empty) and no per-op step stats (``device.ops`` is empty; a note gives the
device of the outputs).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

from ... import backend
from ...errors import GraphStructureError
from ...names import MOVING, PHASES
from ...values import FrozenDict
from .. import devices, graph, measure, theory
from ..config import ProbeConfig
from ..result import Convergence, DeviceReport, ProbeResult
from .base import Engine

LAYER_NAMES = ("batch_normalization", "batch_normalization_1")  # as Keras names two layers
_READS = frozenset({"ReadVariableOp", "Cast", "Identity"})
# converge() runs steps in tf.function calls of this many, doubling: few calls for thousands of
# steps, little overshoot past an early answer.
_FIRST_CHUNK, _MAX_CHUNK = 64, 4096


class _Probe:
    """The layer(s), the traced train and test functions and what their graphs show."""

    def __init__(self, config: ProbeConfig, target: str):
        self.tf, self.config, self.target = backend.tensorflow(), config, target
        keras = backend.keras3()

        def layer(name: str) -> Any:
            return keras.layers.BatchNormalization(
                axis=1 if config.data_format == "NCHW" else -1, momentum=config.decay,
                epsilon=config.epsilon, trainable=config.trainable, name=name)

        self.layers = {"train": layer(LAYER_NAMES[0])}
        self.layers["test"] = (self.layers["train"] if config.share_variables
                               else layer(LAYER_NAMES[1]))
        self.fed: Dict[str, float] = {}  # moving variable -> 1 - decay as the graph holds it
        self.graphs: Dict[str, Any] = {}
        self.train = self.tf.function(self._train, autograph=False)
        self.test = self.tf.function(self._test, autograph=False)
        self.steps = self.tf.function(self._steps)  # traced on first use (converge only)
        x = self.tf.constant(measure.layout(config, config.inputs))
        with self.tf.device(target):
            for phase, function in (("train", self.train), ("test", self.test)):
                self.graphs[phase] = function.get_concrete_function(x).graph
        self.variables = {v.name: v for phase in ("train", "test")
                          for v in self._variables(phase)}

    def _train(self, x: Any) -> List[Any]:
        output = self.layers["train"](x, training=True)
        statistics = []
        updates = _moving_averages(self.tf.compat.v1.get_default_graph(), self.layers["train"])
        for name in MOVING:
            if name in updates:
                value, factor = updates[name]
                self.fed[name] = float(self.tf.get_static_value(factor))
                statistics.append(value)
        return [output] + statistics

    def _test(self, x: Any) -> Any:
        return self.layers["test"](x, training=False)

    def _variables(self, phase: str) -> List[Any]:
        """The tf.Variables the traced function of ``phase`` reads (captured, so measured)."""
        captured = {id(handle) for handle, _ in self.graphs[phase].captures}
        return [v for v in _tf_variables(self.layers[phase]) if id(v.handle) in captured]

    def branch_variables(self) -> Dict[str, Tuple[str, ...]]:
        return {phase: tuple(sorted(v.name for v in self._variables(phase)))
                for phase in PHASES}

    def snapshot(self) -> Dict[str, np.ndarray]:
        return {name: v.numpy() for name, v in sorted(self.variables.items())}

    def run_train(self, x: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
        with self.tf.device(self.target):
            output, *statistics = self.train(self.tf.constant(x))
        self.output_device = output.device
        return output.numpy(), [s.numpy() for s in statistics]

    def run_test(self, x: np.ndarray) -> np.ndarray:
        with self.tf.device(self.target):
            return self.test(self.tf.constant(x)).numpy()

    def run_steps(self, x: np.ndarray, count: int) -> Tuple[np.ndarray, np.ndarray]:
        """``count`` train steps, each followed by a test call, in one tf.function call (a loop
        in the graph, as Model.fit runs steps_per_execution > 1): per step, max |test - train|
        in float64 as measure.gap computes it (NaN if any difference is NaN), and whether the
        step left every variable bit-identical."""
        with self.tf.device(self.target):
            gaps, unchanged = self.steps(self.tf.constant(x), self.tf.constant(count))
        return gaps.numpy(), unchanged.numpy()

    def _steps(self, x: Any, count: Any) -> Tuple[Any, Any]:
        tf = self.tf
        variables = list(self.variables.values())
        gaps = tf.TensorArray(tf.float64, size=count)
        unchanged = tf.TensorArray(tf.bool, size=count)
        for step in tf.range(count):
            before = [tf.identity(v.read_value()) for v in variables]
            train = self.layers["train"](x, training=True)
            difference = tf.abs(tf.cast(self._test(x), tf.float64) - tf.cast(train, tf.float64))
            gap = tf.where(tf.reduce_any(tf.math.is_nan(difference)),
                           tf.constant(np.nan, tf.float64), tf.reduce_max(difference))
            same = tf.reduce_all([tf.reduce_all(tf.equal(tf.bitcast(b, tf.int32),
                                                         tf.bitcast(v.read_value(), tf.int32)))
                                  for b, v in zip(before, variables)])
            gaps = gaps.write(step, gap)
            unchanged = unchanged.write(step, same)
        return gaps.stack(), unchanged.stack()


def _tf_variables(layer: Any) -> List[Any]:
    """The TensorFlow variables behind a Keras 3 layer's weights."""
    return [getattr(w, "value", w) for w in layer.weights]


def _moving_averages(func_graph: Any, layer: Any) -> Dict[str, Tuple[Any, Any]]:
    """moving_mean / moving_variance -> (statistic fed, its factor 1 - momentum), found in the
    traced graph as AssignVariableOp(v, v * momentum + value * factor)."""
    handles = {id(layer.moving_mean.value.handle): "moving_mean",
               id(layer.moving_variance.value.handle): "moving_variance"}
    placeholders = {id(inner.op): handles[id(outer)]
                    for outer, inner in func_graph.captures if id(outer) in handles}
    found = {}
    for op in func_graph.get_operations():
        if op.type != "AssignVariableOp" or id(op.inputs[0].op) not in placeholders:
            continue
        total = op.inputs[1].op
        if total.type not in ("AddV2", "Add") or any(t.op.type != "Mul" for t in total.inputs):
            raise GraphStructureError("Keras 3 updated %s otherwise than v * momentum + "
                                      "value * (1 - momentum)"
                                      % placeholders[id(op.inputs[0].op)])
        for product in (t.op for t in total.inputs):
            a, b = product.inputs
            if not _reads(a.op, op.inputs[0].op) and not _reads(b.op, op.inputs[0].op):
                value, factor = (a, b) if b.op.type == "Const" else (b, a)
                found[placeholders[id(op.inputs[0].op)]] = (value, factor)
    return found


def _reads(op: Any, resource: Any) -> bool:
    """Whether ``op`` is a read (possibly cast) of the variable behind ``resource``."""
    while op.type in _READS and op.inputs:
        if op.inputs[0].op is resource:
            return True
        op = op.inputs[0].op
    return False


def _ops(func_graph: Any) -> frozenset:
    return frozenset(op.name for op in func_graph.get_operations())


def build(config: ProbeConfig) -> Tuple[_Probe, devices.Placement, Tuple[str, ...]]:
    gpus = backend.visible_gpus()
    placement = devices.resolve(config.device, gpus)
    if placement.notice:
        measure.notify(placement.notice)
    with backend.quiet():
        return _Probe(config, placement.target), placement, gpus


class _Calls(measure.Steps):
    """measure.Steps over a _Probe: one tf.function call per train step or test."""

    def __init__(self, p: _Probe, config: ProbeConfig):
        self.p, self.config = p, config
        self.inputs = measure.layout(config, config.inputs)
        self.batches = None if config.batches is None else measure.layout(config, config.batches)

    def snapshot(self) -> Dict[str, np.ndarray]:
        return self.p.snapshot()

    def train(self, step: int, last: bool) -> Tuple[np.ndarray, List[np.ndarray]]:
        x = self.inputs if self.batches is None else self.batches[step % len(self.batches)]
        return self.p.run_train(x)

    def test(self, last: bool) -> np.ndarray:
        return self.p.run_test(self.inputs)


def run(config: ProbeConfig) -> ProbeResult:
    """probe() for api "keras3": the same result as the graph APIs, measured eagerly."""
    p, placement, gpus = build(config)
    measured = measure.run_steps(config, _Calls(p, config))
    fed_names = [name for name in MOVING if name in p.fed]
    ops = {phase: _ops(p.graphs[phase]) for phase in PHASES}
    return measure.probe_result(
        config, measured, fed_names, [p.fed[name] for name in fed_names],
        fused={phase: graph.is_fused(p.graphs[phase], ops[phase]) for phase in PHASES},
        epsilon={phase: graph.epsilon_of(p.graphs[phase], ops[phase]) for phase in PHASES},
        variables=measure.variable_infos(p.variables), branch_variables=p.branch_variables(),
        update_ops=(),  # no TF1 collection in an eager run
        device=DeviceReport(config.device, placement.target, gpus, placement.notice,
                            FrozenDict((phase, FrozenDict()) for phase in PHASES)),
        versions=backend.versions(),
        engine_notes=(
            "api keras3 ran as Keras 3 runs it, through tf.function calls: there is no "
            "UPDATE_OPS collection, and TensorFlow records no per-op devices for such calls, so "
            "where each op ran is not measured; the outputs were on %s"
            % devices.canonical(p.output_device),))


def converge(config: ProbeConfig, tol: float, max_steps: int) -> Convergence:
    """session.converge for api "keras3": train steps until max |test - train| <= tol, or until a
    step leaves every variable bit-identical. Steps run in chunks (one tf.function call each,
    doubling up to _MAX_CHUNK); the answer is the first step of a chunk that decides it."""
    measure.require_one_input(config)
    p, _, _ = build(config)
    x = measure.layout(config, config.inputs)
    stopped, measured, step, chunk = "limit reached", None, 0, _FIRST_CHUNK
    while step < max_steps and measured is None and stopped == "limit reached":
        count = min(chunk, max_steps - step)
        with backend.quiet():
            gaps, unchanged = p.run_steps(x, count)
        with np.errstate(invalid="ignore"):  # NaN is not within tol, as in measure.gap's use
            decided = np.flatnonzero((gaps <= tol) | unchanged)
        if decided.size:
            first = int(decided[0])
            step += first + 1
            if gaps[first] <= tol:
                measured = step
            else:
                stopped = "the variables stopped changing after step %d" % (step - 1)
        else:
            step += count
        chunk = min(2 * chunk, _MAX_CHUNK)
    epsilon = graph.epsilon_of(p.graphs["train"], _ops(p.graphs["train"]))
    fused = graph.is_fused(p.graphs["train"], _ops(p.graphs["train"]))
    predicted = theory.predicted_steps_to_converge(config.inputs, config.decay, fused, epsilon,
                                                   tol, config.zero_debias)
    return Convergence(tol, measured, predicted, step, "" if measured else stopped)


class Keras3Engine(Engine):
    """api "keras3": Keras 3's layer, eagerly; many decays and matrix rows one decay at a time."""

    name = "keras3"

    def run(self, config: ProbeConfig) -> ProbeResult:
        return run(config)

    def converge(self, config: ProbeConfig, tol: float, max_steps: int) -> Convergence:
        return converge(config, tol, max_steps)


ENGINE = Keras3Engine()
