"""Reading a graph for a repair: each batch-norm layer's batch statistics in training mode, the
input tensor, the training switch and the model's outputs. Works on a graph a program built
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
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from ..checkpoints.branches import IF_OPS
from ..checkpoints.graphwalk import (STATE_OPS, VARIABLE_OPS, Condition, Edge, Node, Walker,
                                     ancestors, descendants)
from ..errors import ProbeConfigError
from ..names import MOVING, moving_name

FUSED_OPS = frozenset({"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"})
_STOP_OPS = VARIABLE_OPS | {"Const", "Placeholder", "PlaceholderWithDefault", "VarIsInitializedOp"}
# Name components of the ops tf.gradients and the optimizers build.
_GRADIENTS = re.compile(r"(^|/)gradients(_\d+)?(/|$)")
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


@dataclass
class Layer:
    """One batch-norm layer of the graph (live TF objects; internal)."""

    name: str  # the variables' common prefix
    mean_variable: Any
    variance_variable: Any
    channels: int
    statistics: List[Statistic] = field(default_factory=list)
    skipped: Optional[str] = None  # why the layer cannot be recalibrated from this graph


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
            "does not read)")


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
    if op.type in _STOP_OPS:
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
    else:
        mean_op, variance_op = _moments_of(op)  # type: ignore[misc]
        mean = walker.fetchable(Edge(Node(mean_op, frames), 0))
        variance = walker.fetchable(Edge(Node(variance_op, frames), 0))
        values_edge, entry = _values(walker, walker.input(Node(mean_op, frames), 0))
        bessel = False
    values = walker.fetchable(values_edge)
    if mean is None or variance is None or values is None:
        return ("its batch statistics (%s) are computed inside a cond branch that does not "
                "return them, so no run can read them" % op.name)
    name = "/".join([if_op.name for if_op, _ in frames] + [op.name])
    return Statistic(name, mean, variance, values, bessel,
                     tuple(dict.fromkeys(conditions + entry)))


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
    """Boolean placeholders (with or without a default) the conds of the layers depend on."""
    predicates = [c.predicate for layer in layers for s in layer.statistics
                  for c in s.conditions if c.predicate is not None]
    ops = ancestors([p.op for p in predicates], control=False)
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


# --------------------------------------------------------------------------------- outputs

def find_outputs(tf1: Any, walker: Walker, graph: Any, inputs: Sequence[Any],
                 switches: Sequence[Any]) -> List[Any]:
    """The model's outputs, for the inference/training gap: the float tensors computed from the
    inputs that nothing else of the forward pass consumes (nothing at all, if there are such),
    the deepest of them. The forward pass leaves out what depends on another
    placeholder (labels, so losses and metrics), what tf.gradients and the optimizers build,
    and ops that change variables (update ops)."""
    operations = graph.get_operations()
    given = {t.op for t in list(inputs) + list(switches)}
    others = [op for op in operations if op.type == "Placeholder" and op not in given]
    # What update ops compute, or read after they ran, is no output of the model either (but a
    # layer output that waits for its in-place updates is: only reads count). A cond whose
    # branches update variables (control flow v2) may return both: only the outputs its
    # training branch reads from a variable are left out.
    state = {op for op in operations if op.type in STATE_OPS
             or op.type.startswith(("Apply", "ResourceApply"))}
    read_after = [consumer for op in operations if op.type in IF_OPS
                  and walker.branch_state_targets(op)
                  for index in _variable_outputs(walker, op)
                  for consumer in op.outputs[index].consumers()]
    control: Dict[Any, List[Any]] = {}
    for op in operations:
        if op.type == "ReadVariableOp":
            for source in op.control_inputs:
                control.setdefault(source, []).append(op)
    excluded = descendants(others) | descendants(list(state) + read_after, control) | {
        op for op in operations if _GRADIENTS.search(op.name)}
    forward: Set[Any] = set()
    depth: Dict[Any, int] = {}
    for op in _topological_from([t.op for t in inputs]):
        if op in excluded or not _has_float_output(op):
            continue
        forward.add(op)
        preceding = [depth[t.op] for t in op.inputs if t.op in depth]
        depth[op] = 1 + max(preceding) if preceding else 0
    sinks = []
    for op in forward:
        if op in given or not graph.is_fetchable(op):
            continue
        consumers = [c for t in op.outputs for c in t.consumers()]
        if any(c in forward or c in state for c in consumers):
            continue
        sinks.append(op)
    # Tensors nothing consumes are outputs; tensors only a loss consumes (it meets the labels
    # further on) are outputs too, unless the model has outputs of the first kind: a loss may
    # reshape the prediction's logits on its way.
    unconsumed = [op for op in sinks if not any(t.consumers() for t in op.outputs)]
    sinks = unconsumed or sinks
    if not sinks:
        return []
    deepest = max(depth[op] for op in sinks)
    return sorted((next(t for t in op.outputs if _tensor_dtype(t) in _FLOAT)
                   for op in sinks if depth[op] == deepest), key=lambda t: t.name)


def _has_float_output(op: Any) -> bool:
    return any(_tensor_dtype(t) in _FLOAT for t in op.outputs)


def _variable_outputs(walker: Walker, if_op: Any) -> List[int]:
    """Outputs of an If op whose training (then) branch returns a variable's value."""
    branch = walker.branch(if_op, "then_branch")
    if branch is None:
        return []
    found = []
    for index, tensor in enumerate(branch.outputs):
        op = tensor.op
        while op.type == "Identity" and op.inputs:
            op = op.inputs[0].op
        if op.type in VARIABLE_OPS or op.type in STATE_OPS:
            found.append(index)
    return found


def _topological_from(roots: Sequence[Any]) -> List[Any]:
    """The ops reachable from ``roots`` by data edges, each after all of its reachable inputs."""
    reachable = descendants(roots)
    pending = {op: sum(1 for t in op.inputs if t.op in reachable) for op in reachable}
    ready = deque(op for op, count in pending.items() if count == 0)
    order = []
    while ready:
        op = ready.popleft()
        order.append(op)
        for consumer in {c for t in op.outputs for c in t.consumers()}:
            if consumer in pending:
                pending[consumer] -= 1
                if pending[consumer] == 0:
                    ready.append(consumer)
    return order


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
