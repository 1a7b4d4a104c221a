"""Builds the probe's graph: the inputs held in the graph, the train and test branches of one
batch-norm API, and the train step for the chosen update mode.

Everything the result reports about the graph is read back from what TensorFlow built (op
types, attributes, which variables each branch reads, what feeds each moving average), never
taken from the arguments that were passed in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

import numpy as np

from .. import backend
from ..errors import GraphStructureError, UnsharedVariablesError
from ..names import MOVING, PHASES
from . import builders
from .config import ProbeConfig
from .measure import layout

FUSED_OPS = frozenset({"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"})
_VARIABLE_OPS = frozenset({"VariableV2", "Variable", "VarHandleOp"})
_READ_OPS = frozenset({"Identity", "ReadVariableOp"})
_ASSIGN_SUB_OPS = frozenset({"AssignSub", "AssignSubVariableOp"})
_WRITE_OPS = _ASSIGN_SUB_OPS | {"Assign", "AssignVariableOp", "AssignAdd", "AssignAddVariableOp"}


@dataclass
class ProbeGraph:
    """The built graph and the handles the runner needs. Internal: holds live TF objects."""

    graph: Any
    feeds: Dict[Any, np.ndarray]  # placeholder -> the array it initializes (fed once)
    initializers: List[Any]
    batch_index: Optional[Any]  # scalar placeholder choosing the train batch, with batches
    train_step: Any  # runs one train step; its value is the train output
    test_output: Any
    variables: Dict[str, Any]  # full name -> tf.Variable, every batch-norm variable
    branch_ops: Dict[str, FrozenSet[str]]  # phase -> names of the ops that branch created
    branch_variables: Dict[str, Tuple[str, ...]]  # phase -> full names of variables it reads
    # "moving_mean"/"moving_variance" -> the statistic fed to its update, and 1 - decay in the
    # graph; empty when the train branch has no moving-average update at all (TF 2.x Keras
    # with trainable=False runs in inference mode and builds none).
    fed: Dict[str, Any]
    factors: Dict[str, Any]
    fused: Dict[str, bool]  # phase -> whether a FusedBatchNorm kernel is in that branch
    epsilon: Dict[str, float]  # phase -> epsilon as the graph holds it
    update_ops: Tuple[str, ...]  # names of the ops in the UPDATE_OPS collection


def build(config: ProbeConfig, target: str) -> ProbeGraph:
    """A fresh tf.Graph for ``config``, built under the device ``target``."""
    with backend.quiet() as tf1:
        graph = tf1.Graph()
        with graph.as_default(), tf1.device(target):
            feeds: Dict[Any, np.ndarray] = {}
            test_input = hold_input(tf1, feeds, "input", layout(config, config.inputs))
            batch_index = None
            train_input = test_input
            if config.batches is not None:
                batches = hold_input(tf1, feeds, "batches", layout(config, config.batches))
                batch_index = tf1.placeholder(tf1.int32, [], name="batch_index")
                train_input = tf1.gather(batches, batch_index, name="train_input")
            layer = builders.builder(tf1, config)
            branches, branch_ops = {}, {}
            for phase in PHASES:
                start = len(graph.get_operations())
                branches[phase] = layer.branch(train_input if phase == "train" else test_input,
                                               phase)
                branch_ops[phase] = frozenset(op.name for op in graph.get_operations()[start:])
            step = train_step(tf1, config, branches["train"])
            bn_variables = tf1.global_variables()
            collected = tuple(u.name for u in tf1.get_collection(tf1.GraphKeys.UPDATE_OPS))
            initializers = [v.initializer for v in held_variables(graph)]
            initializers.append(tf1.variables_initializer(bn_variables))
        graph.finalize()  # nothing may add ops while the probe runs

    variables = {v.name: v for v in bn_variables}
    by_op = {v.op.name: v for v in bn_variables}
    branch_variables = {phase: variables_read(graph, branch_ops[phase], by_op)
                        for phase in PHASES}
    if config.share_variables and not shares_variables(branch_variables):
        raise UnsharedVariablesError(
            "train and test branches do not share their variables: train reads %s, test reads %s"
            % (list(branch_variables["train"]), list(branch_variables["test"])))
    fed, factors = {}, {}
    for name in MOVING:
        variable = find_variable(variables, branch_variables["train"], name)
        found = moving_average_inputs(graph, branch_ops["train"], variable)
        if found:
            fed[name], factors[name] = found
    return ProbeGraph(graph, feeds, initializers, batch_index, step,
                      branches["test"].output, variables, branch_ops, branch_variables, fed,
                      factors, {p: is_fused(graph, branch_ops[p]) for p in PHASES},
                      {p: epsilon_of(graph, branch_ops[p]) for p in PHASES}, collected)


def shares_variables(branch_variables: Dict[str, Tuple[str, ...]]) -> bool:
    """The test branch reads only variables of the train branch: the moving statistics it
    normalizes with are the ones training updates. (The train branch may hold more, e.g. the
    zero_debias accumulators.)"""
    return set(branch_variables["test"]) <= set(branch_variables["train"])


HELD = "held_inputs"


def hold_input(tf1: Any, feeds: Dict[Any, np.ndarray], name: str,
               array: np.ndarray) -> Any:
    """A variable initialized once from a placeholder: the input lives in the graph. Not a
    constant: grappler would fold a constant input's statistics at optimization time, and a
    large input would bloat the GraphDef. Kept out of GLOBAL_VARIABLES, which is the layer's.
    A resource variable, read once here: it keeps the buffer of an aligned feed (see
    values.aligned_empty, which config uses) instead of copying it, and the branches add no read
    op."""
    placeholder = tf1.placeholder(tf1.float32, array.shape, name=name + "/value")
    feeds[placeholder] = array
    held = tf1.Variable(placeholder, trainable=False, collections=[HELD], name=name + "/held",
                        use_resource=True)
    return held.read_value()


def held_variables(graph: Any) -> List[Any]:
    return graph.get_collection(HELD)


def train_step(tf1: Any, config: ProbeConfig, branch: builders.Branch) -> Any:
    """inplace: the branch's updates run with its output (contrib does this itself with
    updates_collections=None). update_ops: UPDATE_OPS as control dependencies of the train step,
    as TF's docs prescribe. forgotten: the output alone, the classic bug."""
    if config.updates == "update_ops":
        updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
    elif config.updates == "inplace":
        updates = branch.updates
    else:
        updates = []
    if not updates:
        return branch.output
    with tf1.control_dependencies(updates):
        return tf1.identity(branch.output, name="train_step")


def find_variable(variables: Dict[str, Any], names: Tuple[str, ...], short: str) -> Any:
    for name in names:
        if name.split(":")[0].split("/")[-1] == short:
            return variables[name]
    raise GraphStructureError("the train branch reads no %s variable (it reads %s)"
                              % (short, list(names)))


def computed(graph: Any, names: FrozenSet[str]) -> FrozenSet[str]:
    """The ops among ``names`` that compute something at every run: not constants, nor ops
    computed from constants alone (grappler folds them into constants, e.g. 1 - decay for a
    constant decay), which TF may serve without running them, so that whether a step trace
    lists them varies from run to run."""
    folded: Dict[str, bool] = {}

    def constant(op: Any) -> bool:
        if op.name not in folded:
            folded[op.name] = op.type == "Const" or (
                bool(op.inputs) and not op.op_def.is_stateful and
                all(constant(t.op) for t in op.inputs))
        return folded[op.name]

    return frozenset(op.name for op in _ops(graph, names) if not constant(op))


def _ops(graph: Any, names: FrozenSet[str]) -> List[Any]:
    return [op for op in graph.get_operations() if op.name in names]


def _source_variable(op: Any) -> Any:
    """Follows reads (Identity '.../read', ReadVariableOp) back to the variable op, if any."""
    while op.type not in _VARIABLE_OPS and op.type in _READ_OPS and op.inputs:
        op = op.inputs[0].op
    return op


def variables_read(graph: Any, names: FrozenSet[str],
                   by_op: Dict[str, Any]) -> Tuple[str, ...]:
    read = {_source_variable(t.op).name for op in _ops(graph, names) for t in op.inputs}
    return tuple(sorted(by_op[name].name for name in read if name in by_op))


def moving_average_inputs(graph: Any, names: FrozenSet[str],
                           variable: Any) -> Optional[Tuple[Any, Any]]:
    """Finds ``v -= (v - value) * factor`` (assign_moving_average, also Keras's) updating
    ``variable`` in the branch and returns (value, factor): the statistic actually fed and
    1 - decay as the graph holds it. With zero_debias the moving mean is set from a hidden
    '<moving_mean>/biased' average, which is where the statistic goes in. None: no update of
    ``variable`` in the branch; GraphStructureError: an update shaped otherwise."""
    name = variable.op.name
    candidates = [op for op in _ops(graph, names) if op.type in _ASSIGN_SUB_OPS and
                  _writes(op, name)]
    for op in candidates:
        delta = op.inputs[1].op
        if delta.type != "Mul":
            continue
        target = _source_variable(op.inputs[0].op).name
        # (v - value): the Sub that reads the updated variable; the other factor is 1 - decay
        # (a constant, or itself a Sub 1 - momentum in tf.layers).
        for i, t in enumerate(delta.inputs):
            if t.op.type == "Sub" and _source_variable(t.op.inputs[0].op).name == target:
                return t.op.inputs[1], delta.inputs[1 - i]
    if candidates:
        raise GraphStructureError("the update of %s in the train branch is not "
                                  "v -= (v - value) * (1 - decay)" % variable.op.name)
    return None


def _writes(assign: Any, name: str) -> bool:
    target = _source_variable(assign.inputs[0].op).name
    return target == name or target.endswith(name + "/biased")


def written_variables(target: Any) -> FrozenSet[str]:
    """Names of the variable ops that running ``target`` (a tensor or an op) assigns to, through
    its inputs and control dependencies."""
    written = set()
    for op in _upstream([target], control=True):
        if op.type in _WRITE_OPS:
            written.add(_source_variable(op.inputs[0].op).name)
    return frozenset(written)


def variables_feeding(tensors: List[Any]) -> FrozenSet[str]:
    """Names of the variable ops whose values ``tensors`` are computed from (data inputs only:
    an update that merely runs first, as a control dependency, is not read; nor the mean and
    variance inputs of a fused kernel in training mode that does not average them, which
    TF 2.x Keras wires to its moving statistics and the kernel ignores)."""
    return frozenset(op.name for op in _upstream(tensors, control=False, read=_read_inputs)
                     if op.type in _VARIABLE_OPS)


def _read_inputs(op: Any) -> List[Any]:
    """The inputs an op's kernel reads: FusedBatchNorm* with is_training and an
    exponential_avg_factor of 1 (V3's default; V1 and V2 have none) normalizes with the batch's
    statistics and reads only x, scale and offset."""
    if op.type in FUSED_OPS and op.get_attr("is_training"):
        factor = op.get_attr("exponential_avg_factor") if op.type == "FusedBatchNormV3" and \
            "exponential_avg_factor" in op.node_def.attr else 1.0
        if factor == 1.0:
            return list(op.inputs)[:3]
    return list(op.inputs)


def _upstream(targets: List[Any], control: bool, read: Any = None) -> List[Any]:
    """Every op ``targets`` depend on (through ``read(op)``'s inputs, default all, and with
    ``control`` the control dependencies), themselves included."""
    stack = [getattr(t, "op", t) for t in targets]
    seen: Dict[str, Any] = {}
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen[op.name] = op
        stack.extend(t.op for t in (read(op) if read else op.inputs))
        if control:
            stack.extend(op.control_inputs)
    return list(seen.values())


def is_fused(graph: Any, names: FrozenSet[str]) -> bool:
    return any(op.type in FUSED_OPS for op in _ops(graph, names))


def epsilon_of(graph: Any, names: FrozenSet[str]) -> float:
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
