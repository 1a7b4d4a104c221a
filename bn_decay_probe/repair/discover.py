"""Reading a graph for a repair: each batch-norm layer's batch statistics in training mode, the
input tensor and the training switch. Works on a graph a program built
(TF 1.15 or TF 2.x graph mode) and on one imported from a .meta file; adds nothing to the graph.

A layer is a pair of variables ``.../moving_mean`` and ``.../moving_variance``. Its batch
statistics are found from the ops that update those variables: walking back from each update op,
the nearest op that computes batch statistics in training mode is the layer's -- a fused kernel
(``FusedBatchNorm*`` with ``is_training``; its variance output carries Bessel's correction) or the
``Mean`` ops of ``tf.nn.moments`` (biased variance). The walk crosses conds (Switch / Merge of
control flow v1, If ops of control flow v2) and records which branch each cond must take for that
path to run, so that a run can check that feeding the switch really selects training mode.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np

from ..checkpoints.branches import IF_OPS
from ..checkpoints.graphwalk import (STATE_OPS, VARIABLE_OPS, Condition, Edge, Node, Walker,
                                     ancestors)
from ..errors import ProbeConfigError
from ..names import MOVING, moving_name
from ..probe.config import DEFAULT_EPSILON  # contrib's, tf.layers' and Keras's default

FUSED_OPS = frozenset({"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"})
_STOP_OPS = VARIABLE_OPS | {"Const", "Placeholder", "PlaceholderWithDefault", "VarIsInitializedOp"}
# Ops that compute a layer's input, not statistics of it: a walk from an update op that reaches
# one has passed the values its layer normalizes (a layer whose statistics the repair cannot
# read, such as tf.nn.weighted_moments'), and must not take the layer before's statistics.
_LAYER_OPS = frozenset({"Conv2D", "Conv3D", "DepthwiseConv2dNative", "MatMul", "BatchMatMul",
                        "BatchMatMulV2", "BiasAdd", "Relu", "Relu6", "Elu", "Selu", "Softmax"})
_FLOAT = ("float16", "bfloat16", "float32", "float64")


@dataclass(frozen=True)
class Statistic:
    """Where a layer computes its batch statistics in training mode, as fetchable tensors."""

    producer: str  # the op's name (in a cond branch function: the If op's name / the op's name)
    mean: Any  # tensor: per-channel batch mean
    variance: Any  # tensor: per-channel batch variance, Bessel-corrected when ``bessel``
    values: Any  # tensor: the values normalized (the layer's input)
    bessel: bool  # fused kernel: variance * n/(n-1)
    conditions: Tuple[Condition, ...]  # conds that must take the given branch in training
    epsilon: float = DEFAULT_EPSILON  # what the layer adds to the variance when it normalizes
    channel_axis: int = -1  # of ``values``


@dataclass
class Layer:
    """One batch-norm layer of the graph (live TF objects; internal)."""

    name: str  # the variables' common prefix
    mean_variable: Any
    variance_variable: Any
    channels: int
    statistics: List[Statistic] = field(default_factory=list)
    skipped: Optional[str] = None  # why the layer cannot be recalibrated from this graph
    notes: List[str] = field(default_factory=list)  # what else of the layer stays as it was


def find_layers(tf1: Any, graph: Any, walker: Walker) -> List[Layer]:
    """Every batch-norm layer of ``graph`` with its batch statistics in training mode, in the
    order the graph made their variables (network order)."""
    grouped: Dict[str, Dict[str, Any]] = {}
    for variable in graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES):
        parts = moving_name(variable.op.name)
        if parts:
            grouped.setdefault(parts[0], {})[parts[1]] = variable
    layers = [Layer(name, pair[MOVING[0]], pair[MOVING[1]],
                    int(pair[MOVING[0]].shape.num_elements() or 0))
              for name, pair in grouped.items() if len(pair) == 2]
    if not layers:
        raise ProbeConfigError("the graph has no batch-norm layer: no pair of global variables "
                               "named .../moving_mean and .../moving_variance")
    updates = _update_ops(graph, walker)
    for layer in layers:
        sites = [site for variable in (layer.mean_variable, layer.variance_variable)
                 for site in updates.get(variable.op, [])
                 if site.op is not variable.initializer and not _restores(site.op)]
        if not sites:
            layer.skipped = ("no op of the graph updates its moving statistics, so it has no "
                             "training mode here (built in inference mode, or unused)")
            continue
        found = _statistics(walker, sites)
        if isinstance(found, str):
            layer.skipped = found
        else:
            layer.statistics = found
    return layers


def _update_ops(graph: Any, walker: Walker) -> Dict[Any, List[Node]]:
    """Variable op -> the state ops that change it, anywhere in the graph or its cond branches."""
    found: Dict[Any, List[Node]] = {}

    def scan(operations: Iterable[Any], frames: Tuple[Any, ...]) -> None:
        for op in operations:
            if op.type in STATE_OPS:
                target = walker.leave(Edge(Node(op.inputs[0].op, frames),
                                           op.inputs[0].value_index))
                if target is not None:
                    found.setdefault(target, []).append(Node(op, frames))
            elif op.type in IF_OPS:
                for attr in ("then_branch", "else_branch"):
                    branch = walker.branch(op, attr)
                    if branch is not None:
                        scan(branch.get_operations(), frames + ((op, attr),))

    scan(graph.get_operations(), ())
    return found


def _restores(op: Any) -> bool:
    """Whether an assign op is a Saver's restore (its value comes from a Restore op)."""
    source = op.inputs[1].op if len(op.inputs) > 1 else None
    while source is not None and source.type == "Identity":
        source = source.inputs[0].op
    return source is not None and source.type in ("RestoreV2", "Restore", "RestoreSlice")


def _statistics(walker: Walker, sites: Sequence[Node]) -> Any:
    """The training-mode statistics nearest to the update ops ``sites``, or why none was found.
    One statistic per producer: both Mean ops of one tf.nn.moments are one."""
    found: Dict[str, Statistic] = {}
    reasons: List[str] = []
    for site in sites:
        for edge, conditions in _nearest_producers(walker, site):
            statistic = _statistic(walker, edge, conditions)
            if isinstance(statistic, str):
                reasons.append(statistic)
                continue
            known = found.get(statistic.mean.name)
            if known is not None:
                statistic = dataclasses.replace(
                    known, conditions=tuple(dict.fromkeys(known.conditions +
                                                          statistic.conditions)))
            found[statistic.mean.name] = statistic
    if found:
        return list(found.values())
    if reasons:
        return reasons[0]
    return ("its update ops take no batch statistics computed in training mode (the graph runs "
            "the layer in inference mode only, or computes its statistics in a way the repair "
            "does not read, such as tf.nn.weighted_moments)")


def _nearest_producers(walker: Walker, site: Node) -> List[Tuple[Edge, Tuple[Condition, ...]]]:
    """Breadth first from an update op's inputs (not the variable it changes): the training-mode
    statistic ops at the smallest distance. Nearest, because farther back lie the layers that
    feed this one."""
    frontier = [(e, ()) for e in walker.inputs(site)[1:]]
    seen: Set[Tuple[Any, Any]] = set()
    while frontier:
        found, following = [], []
        for edge, conditions in frontier:
            for real, path in walker.resolve(edge):
                key = (real.node.op, real.node.frames)
                if key in seen:
                    continue
                seen.add(key)
                path = conditions + path
                kind = _kind(real.node.op)
                if kind == "training":
                    found.append((real, path))
                elif kind is None:
                    start = 1 if real.node.op.type in STATE_OPS else 0
                    following.extend((e, path) for e in walker.inputs(real.node)[start:])
        if found:
            return found
        frontier = following
    return []


def _kind(op: Any) -> Optional[str]:
    """"training" for an op computing batch statistics in training mode, "stop" for ops a walk
    must not pass (the inference kernel, variables, constants, placeholders), else None."""
    if op.type in FUSED_OPS:
        return "training" if op.get_attr("is_training") else "stop"
    if op.type == "Mean" and _moments_of(op) is not None:
        return "training"
    if op.type in _STOP_OPS or op.type in _LAYER_OPS:
        return "stop"
    return None


def _moments_of(op: Any) -> Optional[Tuple[Any, Any]]:
    """(mean op, variance op) of tf.nn.moments when ``op`` is either Mean op, else None.
    moments: mean = Mean(x); variance = Mean(SquaredDifference(x, StopGradient(mean)))."""
    source = op.inputs[0].op
    if source.type == "SquaredDifference":
        for position in (0, 1):
            stopped = source.inputs[1 - position].op
            if stopped.type == "StopGradient" and stopped.inputs[0].op.type == "Mean":
                mean = stopped.inputs[0].op
                if mean.inputs[0].op is source.inputs[position].op:
                    return mean, op
        return None
    for consumer in _consumers(op):
        if consumer.type == "StopGradient":
            for difference in _consumers(consumer):
                if difference.type == "SquaredDifference":
                    for variance in _consumers(difference):
                        if variance.type == "Mean":
                            return op, variance
    return None


def _consumers(op: Any) -> List[Any]:
    return [c for t in op.outputs for c in t.consumers()]


def _statistic(walker: Walker, edge: Edge, conditions: Tuple[Condition, ...]) -> Any:
    """The fetchable statistics of a producer (fused kernel or moments), or why there are
    none."""
    op, frames = edge.node.op, edge.node.frames
    if op.type in FUSED_OPS:
        factor = _attr(op, "exponential_avg_factor", 1.0)
        if factor != 1.0:
            return ("its fused kernel averages into the moving statistics itself "
                    "(exponential_avg_factor %g), so the batch statistics are not in the graph"
                    % factor)
        mean = walker.fetchable(Edge(edge.node, 1))
        variance = walker.fetchable(Edge(edge.node, 2))
        values_edge, entry = _values(walker, walker.input(edge.node, 0))
        bessel = True
        epsilon = float(_attr(op, "epsilon", DEFAULT_EPSILON))
        channel_axis = 1 if _attr(op, "data_format", b"NHWC") in (b"NCHW", "NCHW") else -1
    else:
        mean_op, variance_op = _moments_of(op)  # type: ignore[misc]
        mean = walker.fetchable(Edge(Node(mean_op, frames), 0))
        variance = walker.fetchable(Edge(Node(variance_op, frames), 0))
        values_edge, entry = _values(walker, walker.input(Node(mean_op, frames), 0))
        bessel = False
        epsilon = _added_constant(variance_op)
        channel_axis = _kept_axis(mean_op)
    values = walker.fetchable(values_edge)
    if mean is None or variance is None or values is None:
        return ("its batch statistics (%s) are computed inside a cond branch that does not "
                "return them, so no run can read them" % op.name)
    name = "/".join([if_op.name for if_op, _ in frames] + [op.name])
    return Statistic(name, mean, variance, values, bessel,
                     tuple(dict.fromkeys(conditions + entry)), epsilon, channel_axis)


def _constant_value(tensor: Any) -> Any:
    op = tensor.op
    while op.type == "Identity" and op.inputs:
        op = op.inputs[0].op
    if op.type != "Const":
        return None
    from .. import backend

    return backend.tensorflow().make_ndarray(op.get_attr("value"))


def _added_constant(variance_op: Any) -> float:
    """The epsilon tf.nn.batch_normalization adds to the batch variance (variance + epsilon,
    before its rsqrt), through the ops that pass the variance on (Squeeze, Identity)."""
    stack, seen = [variance_op], set()
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        for consumer in _consumers(op):
            if consumer.type in ("Add", "AddV2"):
                for tensor in consumer.inputs:
                    value = _constant_value(tensor)
                    if value is not None and np.size(value) == 1:
                        return float(value)
            elif consumer.type in ("Squeeze", "Identity", "Reshape"):
                stack.append(consumer)
    return DEFAULT_EPSILON


def _kept_axis(mean_op: Any) -> int:
    """The channel axis of tf.nn.moments: the one axis its Mean does not reduce."""
    axes = _constant_value(mean_op.inputs[1]) if len(mean_op.inputs) > 1 else None
    rank = mean_op.inputs[0].shape.ndims
    if axes is None or rank is None:
        return -1
    kept = sorted(set(range(rank)) - {int(a) % rank for a in np.reshape(axes, -1)})
    return kept[0] if len(kept) == 1 else -1


def _values(walker: Walker, edge: Edge) -> Tuple[Edge, Tuple[Condition, ...]]:
    """The layer's input as a tensor outside conds and branch functions: back through
    Identity, the Switch that passes it into a cond branch and branch function inputs (with the
    conditions they imply: the statistics exist only when that branch runs)."""
    conditions: Tuple[Condition, ...] = ()
    while True:
        op = edge.node.op
        if op.type == "Identity":
            edge = walker.input(edge.node, 0)
        elif op.type in ("Switch", "RefSwitch") or (op.type == "Placeholder" and
                                                     edge.node.frames):
            steps = walker.step_back(edge) or []
            if len(steps) != 1:
                return edge, conditions
            edge, condition = steps[0]
            conditions += (condition,) if condition else ()
        else:
            return edge, conditions


def _attr(op: Any, name: str, default: Any) -> Any:
    try:
        return op.get_attr(name)
    except (ValueError, KeyError):
        return default


# --------------------------------------------------------------------------- inputs, switch

def _tensor_dtype(tensor: Any) -> str:
    return tensor.dtype.base_dtype.name


def statistic_tensors(layers: Sequence[Layer]) -> List[Any]:
    """The batch mean and variance tensors of ``layers``."""
    return [t for layer in layers for s in layer.statistics for t in (s.mean, s.variance)]


def input_candidates(walker: Walker, layers: Sequence[Layer]) -> List[Any]:
    """Float placeholders the batch statistics depend on."""
    ops = ancestors([t.op for t in statistic_tensors(layers)], control=False)
    return sorted((op.outputs[0] for op in ops if op.type == "Placeholder"
                   and _tensor_dtype(op.outputs[0]) in _FLOAT), key=lambda t: t.name)


def switch_candidates(walker: Walker, layers: Sequence[Layer]) -> List[Any]:
    """Boolean placeholders (with or without a default) the conds of the layers, or their batch
    statistics, depend on: a layer inside tf.cond(is_training, train_net, test_net) computes
    its statistics only when the switch is True, with no cond between them and its updates."""
    predicates = [c.predicate for layer in layers for s in layer.statistics
                  for c in s.conditions if c.predicate is not None]
    ops = ancestors([p.op for p in predicates] + [t.op for t in statistic_tensors(layers)],
                    control=False)
    return sorted((op.outputs[0] for op in ops
                   if op.type in ("Placeholder", "PlaceholderWithDefault")
                   and _tensor_dtype(op.outputs[0]) == "bool"), key=lambda t: t.name)


def resolve_tensor(graph: Any, name: Any, what: str) -> Any:
    """A tensor of ``graph`` given as a tensor, "op:0" or "op" name."""
    if not isinstance(name, str):
        if getattr(name, "graph", None) is not graph:
            raise ProbeConfigError("%s %r is not a tensor of the graph" % (what, name))
        return name
    text = name if ":" in name else name + ":0"
    try:
        return graph.get_tensor_by_name(text)
    except (KeyError, ValueError):
        raise ProbeConfigError("%s %s: the graph has no tensor %s" % (what, name, text)) from None


def names(tensors: Sequence[Any]) -> str:
    return ", ".join(t.name for t in tensors) or "none"


def mutated_variables(walker: Walker, fetches: Sequence[Any],
                      variables: Sequence[Any]) -> List[Any]:
    """The variables among ``variables`` that running ``fetches`` may change (in-place update
    ops, counters): they are read before the runs and written back after."""
    by_op = {v.op: v for v in variables}
    targets: Set[Any] = set()
    for op in ancestors([getattr(f, "op", f) for f in fetches]):
        if op.type in STATE_OPS:
            targets.add(walker.leave(Edge(Node(op.inputs[0].op), op.inputs[0].value_index)))
        elif op.type in IF_OPS:
            targets.update(walker.branch_state_targets(op))
    return sorted((by_op[op] for op in targets if op in by_op), key=lambda v: v.op.name)
