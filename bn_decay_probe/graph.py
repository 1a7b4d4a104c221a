"""Builds the probe's graph: the input held in the graph, and the train and test branches of
batch_norm sharing one set of variables under one variable_scope.

Everything here reads the graph TensorFlow built (op types, attributes, which variables each
branch reads) instead of trusting the arguments that were passed in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Tuple

from . import backend
from .config import ProbeConfig

SCOPE = "probe"
PHASES = ("train", "test")
MOVING = ("moving_mean", "moving_variance")
FUSED_OPS = frozenset({"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"})
_VARIABLE_OPS = frozenset({"VariableV2", "Variable", "VarHandleOp"})
_ASSIGN_SUB_OPS = frozenset({"AssignSub", "AssignSubVariableOp"})


class GraphStructureError(RuntimeError):
    """The graph TensorFlow built is not shaped as the probe expects (a bug, or a TF change)."""


class UnsharedVariablesError(GraphStructureError):
    """The train and test branches do not read the same batch-norm variables."""


@dataclass
class ProbeGraph:
    """The built graph and the handles the runner needs. Internal: holds live TF objects."""

    graph: Any
    input_placeholder: Any
    initializers: List[Any]
    outputs: Dict[str, Any]  # phase -> output tensor
    variables: Dict[str, Any]  # short name ("beta", "moving_mean", ...) -> tf.Variable
    fed: Dict[str, Any]  # moving variable -> the batch statistic fed to its moving average
    factors: Dict[str, Any]  # moving variable -> the (1 - decay) factor of its update
    branch_ops: Dict[str, FrozenSet[str]]  # phase -> names of the ops that branch created
    branch_variables: Dict[str, Tuple[str, ...]]  # phase -> variables that branch reads
    fused: Dict[str, bool]  # phase -> whether a FusedBatchNorm kernel is in that branch
    epsilon: Dict[str, float]  # phase -> epsilon as the graph holds it


def build(config: ProbeConfig, target: str) -> ProbeGraph:
    """A fresh tf.Graph for ``config``, built under the device ``target``."""
    with backend.quiet() as tf1:
        graph = tf1.Graph()
        with graph.as_default(), tf1.device(target):
            # A variable, not a constant: grappler would fold a constant input's statistics at
            # optimization time, and a large input would bloat the GraphDef.
            placeholder = tf1.placeholder(tf1.float32, config.shape, name="input/value")
            held = tf1.Variable(placeholder, trainable=False, collections=[], name="input/held")
            outputs: Dict[str, Any] = {}
            branch_ops: Dict[str, FrozenSet[str]] = {}
            for phase in PHASES:
                start = len(graph.get_operations())
                with tf1.variable_scope(SCOPE, reuse=tf1.AUTO_REUSE):
                    outputs[phase] = backend.batch_norm()(
                        held, decay=config.decay, epsilon=config.epsilon, fused=config.fused,
                        is_training=(phase == "train"), updates_collections=None)
                branch_ops[phase] = frozenset(op.name for op in graph.get_operations()[start:])
            bn_variables = tf1.global_variables()
            initializers = [held.initializer, tf1.variables_initializer(bn_variables)]
        graph.finalize()  # nothing may add ops while the probe runs

    variables = {v.op.name.split("/")[-1]: v for v in bn_variables}
    by_op = {v.op.name: v for v in bn_variables}
    branch_variables = {phase: _variables_read(graph, branch_ops[phase], by_op)
                        for phase in PHASES}
    if branch_variables["train"] != branch_variables["test"]:
        raise UnsharedVariablesError(
            "train and test branches do not share their variables: train reads %s, test reads %s"
            % (list(branch_variables["train"]), list(branch_variables["test"])))
    fed, factors = {}, {}
    for name in MOVING:
        fed[name], factors[name] = _moving_average_inputs(graph, branch_ops["train"],
                                                          variables[name])
    return ProbeGraph(graph, placeholder, initializers, outputs, variables, fed, factors,
                      branch_ops, branch_variables,
                      {p: _is_fused(graph, branch_ops[p]) for p in PHASES},
                      {p: _epsilon(graph, branch_ops[p]) for p in PHASES})


def _ops(graph: Any, names: FrozenSet[str]) -> List[Any]:
    return [op for op in graph.get_operations() if op.name in names]


def _source_variable(op: Any) -> Any:
    """Follows reads (Identity '.../read', ReadVariableOp) back to the variable op, if any."""
    while op.type not in _VARIABLE_OPS and op.type in ("Identity", "ReadVariableOp") and op.inputs:
        op = op.inputs[0].op
    return op


def _variables_read(graph: Any, names: FrozenSet[str], by_op: Dict[str, Any]) -> Tuple[str, ...]:
    read = {_source_variable(t.op).name for op in _ops(graph, names) for t in op.inputs}
    return tuple(sorted(by_op[name].name for name in read if name in by_op))


def _moving_average_inputs(graph: Any, names: FrozenSet[str], variable: Any) -> Tuple[Any, Any]:
    """Finds ``variable -= (variable - value) * factor`` (assign_moving_average) in the branch and
    returns (value, factor): the statistic actually fed and 1 - decay as the graph holds it."""
    for op in _ops(graph, names):
        if op.type in _ASSIGN_SUB_OPS and _source_variable(op.inputs[0].op).name == variable.op.name:
            delta = op.inputs[1].op
            if delta.type == "Mul":
                subs = [t.op for t in delta.inputs if t.op.type == "Sub"]
                others = [t for t in delta.inputs if t.op.type != "Sub"]
                if len(subs) == 1 and len(others) == 1:
                    return subs[0].inputs[1], others[0]
    raise GraphStructureError("no moving-average update of %s found in the train branch"
                              % variable.op.name)


def _is_fused(graph: Any, names: FrozenSet[str]) -> bool:
    return any(op.type in FUSED_OPS for op in _ops(graph, names))


def _epsilon(graph: Any, names: FrozenSet[str]) -> float:
    """The fused kernel's epsilon attribute (TF raises values below 1.001e-5 to that), or the
    constant added to the variance before Rsqrt on the non-fused path."""
    tf = backend.tensorflow()
    for op in _ops(graph, names):
        if op.type in FUSED_OPS:
            return float(op.get_attr("epsilon"))
        if op.type == "Rsqrt" and op.inputs[0].op.type in ("Add", "AddV2"):
            constants = [t.op for t in op.inputs[0].op.inputs if t.op.type == "Const"]
            if constants:
                return float(tf.make_ndarray(constants[0].get_attr("value")))
    raise GraphStructureError("no epsilon found in the batch-norm branch")
