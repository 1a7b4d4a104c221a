"""Reading a TF1 graph (built, or imported from a .meta): its batch-norm layers, their moving
statistics' variables and update ops, the decay those ops use, the switch between training and
inference, and the ops a train step runs.

Works on graphs from contrib / tf-slim ``batch_norm``, ``tf.layers.batch_normalization`` and
tf.keras ``BatchNormalization`` (TF1 graph mode), in control flow v1 (TF 1.15: Switch / Merge)
and v2 (TF 2.x: If ops whose branches are functions, see checkpoints.branches). Nothing here adds
an op to the graph. The functions take ``tf1`` (``tf.compat.v1``, from ``backend.quiet()``) where
they need TensorFlow's classes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from ..checkpoints.branches import BRANCHES, IF_OPS, branch_graph
from ..checkpoints.conds import Branches, cond_contexts, if_branch
from ..checkpoints.graphwalk import ancestors
from ..errors import ProbeConfigError
from ..names import MOVING, moving_name
from .train_step import as_ops, collected_update_ops, train_roots

__all__ = ["BatchNormLayer", "TrainingSwitch", "UpdateSite", "find_batch_norm_layers",
           "branch_copies", "require_layers", "update_sites", "layer_decay",
           "collected_update_ops", "as_ops", "train_roots", "TRAINING", "INFERENCE", "SWITCHED",
           "KERAS_LEARNING_PHASE"]

_UPDATE_OPS = frozenset({"AssignSub", "AssignSubVariableOp"})
_PASS_THROUGH = frozenset({"Identity", "RefIdentity", "Switch", "RefSwitch", "Enter", "RefEnter"})
_READS = frozenset({"Identity", "ReadVariableOp", "Switch", "RefSwitch", "Enter", "RefEnter"})
# Consumers of a moving statistic that neither update nor normalize with it.
_BOOKKEEPING = frozenset({"Assign", "AssignVariableOp", "VarIsInitializedOp",
                          "IsVariableInitialized", "SaveV2", "Save", "SaveSlices"})
_FUSED = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
# The graph collection behind tf.compat.v1.get_variable (TF 1.15 and 2.x alike).
_VARIABLE_STORE = ("__variable_store",)
KERAS_LEARNING_PHASE = "keras_learning_phase"

# What switches a layer between training and inference.
TRAINING, INFERENCE, SWITCHED = "training", "inference", "switched"


@dataclass(frozen=True)
class TrainingSwitch:
    """The boolean tensor a layer's conds test: True runs the layer in training mode (batch
    statistics, moving averages updated), False in inference mode."""

    tensor: Any  # the placeholder / placeholder_with_default (or other op) output
    default: Optional[bool]  # its value when not fed; None: must be fed, or computed
    keras_learning_phase: bool  # tf.keras's K.learning_phase() (default 0: inference)

    @property
    def name(self) -> str:
        return self.tensor.name

    def describe(self) -> str:
        default = {None: "no default", True: "default True", False: "default False"}
        return "%s (%s)" % (self.name, default[self.default])


@dataclass
class BatchNormLayer:
    """One batch-norm layer of a graph: a pair of global variables named .../moving_mean and
    .../moving_variance, and what the graph does with them."""

    name: str  # the variables' common prefix, e.g. "resnet_v1_50/conv1/BatchNorm"
    variables: Dict[str, Any]  # "moving_mean" / "moving_variance" -> the tf.Variable
    channels: Optional[int]
    kind: str  # "contrib" (also tf-slim), "tf.layers" or "tf.keras"
    decay: Optional[float]  # read from the update ops; None if none or not a constant
    # ops of the graph that run the moving-average updates (an If op for updates in its branch)
    update_ops: List[Any] = field(default_factory=list)
    in_place: Set[Any] = field(default_factory=set)  # those the layer's output depends on
    mode: str = TRAINING  # TRAINING, INFERENCE (never updates) or SWITCHED (by ``switch``)
    switch: Optional[TrainingSwitch] = None
    # the ops that normalize with the moving statistics (inference mode), each with the cond
    # branches it runs in (an If op: the branches of its functions that do); the train step
    # running one outside any cond, without the layer's update ops, trains in inference mode
    inference_sites: List[Tuple[Any, Branches]] = field(default_factory=list)
    update_sites: List["UpdateSite"] = field(default_factory=list)

    @property
    def inference_ops(self) -> List[Any]:
        return list(dict.fromkeys(op for op, _ in self.inference_sites))

    def mode_text(self) -> str:
        if self.mode == SWITCHED and self.switch is not None:
            return "switched by " + self.switch.describe()
        return "always " + self.mode


def find_batch_norm_layers(tf1: Any, graph: Any) -> List[BatchNormLayer]:
    """Every batch-norm layer of ``graph``, in the order the graph made them (network order)."""
    grouped: Dict[str, Dict[str, Any]] = {}
    for variable in graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES):
        parts = moving_name(variable.op.name)
        if parts:
            grouped.setdefault(parts[0], {})[parts[1]] = variable
    position = {op.name: i for i, op in enumerate(graph.get_operations())}
    contexts = cond_contexts(graph.get_operations())
    sites = update_sites(graph, contexts)
    collected = ancestors(collected_update_ops(tf1, graph))
    contrib = {v.op.name for v in graph.get_collection(tf1.GraphKeys.MODEL_VARIABLES)}
    scoped = _get_variable_names(graph)
    layers = []
    for name, variables in grouped.items():
        if len(variables) < 2:
            continue
        mean = variables[MOVING[0]]
        found = [site for v in variables.values() for site in sites.get(v.op.name, [])]
        ops = list(dict.fromkeys(site.op for site in found))  # one If op can run both updates
        kind = _kind(mean, contrib, scoped, any(op in collected for op in ops))
        layer = BatchNormLayer(name, variables, mean.shape.num_elements(), kind,
                               layer_decay(tf1, [site.assign for site in found]), ops,
                               {s.op for s in found if s.in_place})
        layer.update_sites = found
        switch = _switch(tf1, found)
        layer.inference_sites = _inference_sites(variables.values(), contexts)
        if switch is not None:
            layer.mode, layer.switch = SWITCHED, switch
        elif not found:
            layer.mode = INFERENCE if layer.inference_ops else TRAINING
        layers.append(layer)
    return sorted(layers, key=lambda layer: position[layer.variables[MOVING[0]].op.name])


def branch_copies(layers: Sequence[BatchNormLayer]) -> Dict[str, str]:
    """Copies that share no variable with the layer they copy, as tf.cond(is_training,
    train_net, test_net) builds them without reuse: a layer built in inference mode only in one
    branch of a cond whose other branch builds a layer in training mode (its updates run there)
    with as many channels. -> {copy: the layer in training mode}; within a cond and a number of
    channels, the k-th copy (in graph order) pairs with the k-th layer of the other branch."""
    sides: Dict[Tuple[str, bool, Optional[int]], List[str]] = {}
    copies: Dict[Tuple[str, bool, Optional[int]], List[str]] = {}
    for layer in layers:
        if layer.mode == INFERENCE:
            branches = [b for _, bs in layer.inference_sites for b in bs]
            target = copies
        else:
            branches = [b for site in layer.update_sites for b in site.branches]
            target = sides
        for branch in dict.fromkeys(branches):
            target.setdefault((branch.cond, branch.taken, layer.channels), []).append(
                layer.name)
    found: Dict[str, str] = {}
    for (cond, taken, channels), names in copies.items():
        others = sides.get((cond, not taken, channels), [])
        for name, other in zip(names, others):
            found.setdefault(name, other)
    return found


def require_layers(layers: Sequence[BatchNormLayer]) -> None:
    """Raises ProbeConfigError (one line) when a graph has no batch-norm layer."""
    if not layers:
        raise ProbeConfigError("graph has no batch-norm layer: no pair of global variables named "
                               ".../moving_mean and .../moving_variance")


@dataclass(frozen=True)
class UpdateSite:
    """Where a variable is updated: ``op`` of the graph runs ``assign`` (the op itself, or an If
    op whose branch holds it); ``in_place``: an Identity (the layer's output) depends on it;
    ``conds``: the If ops or Switch ops the update sits behind; ``branches``: the cond branches
    it runs in."""

    op: Any
    assign: Any
    in_place: bool
    conds: tuple = ()
    branches: Branches = ()


def update_sites(graph: Any, contexts: Optional[Dict[Any, Branches]] = None
                 ) -> Dict[str, List[UpdateSite]]:
    """Name of the variable's op (in a branch function: its placeholder) -> where it is updated.

    Control flow v1 (TF 1.15) keeps cond branches in the graph, behind Switch ops; control flow
    v2 (TF 2.x) puts them in functions of an If op, which stands for them in the graph.
    ``contexts``: cond_contexts of the graph's ops, if already known."""
    operations = graph.get_operations()
    contexts = cond_contexts(operations) if contexts is None else contexts
    in_place = {dep for op in operations if op.type == "Identity" for dep in op.control_inputs}
    sites: Dict[str, List[UpdateSite]] = {}
    for op in operations:
        if op.type in _UPDATE_OPS:
            target, switches = _source_and_switches(op.inputs[0])
            sites.setdefault(target.name, []).append(
                UpdateSite(op, op, op in in_place, tuple(switches), contexts.get(op, ())))
        elif op.type in IF_OPS:
            for attr in BRANCHES:
                branch = branch_graph(op, attr)
                if branch is None:
                    continue
                index = {tensor.op.name: i for i, tensor in enumerate(branch.inputs)}
                outer = contexts.get(op, ()) + (if_branch(op, attr),)
                for name, inner in update_sites(branch).items():
                    if name in index:  # inputs[0] of an If op is its condition
                        target = _source(op.inputs[index[name] + 1])
                        sites.setdefault(target.name, []).extend(
                            UpdateSite(op, site.assign, site.in_place, (op,) + site.conds,
                                       outer + site.branches) for site in inner)
    return sites


def _source(tensor: Any) -> Any:
    return _source_and_switches(tensor)[0]


def _source_and_switches(tensor: Any) -> Any:
    """The op a tensor comes from through pass-through ops, and the Switch ops passed."""
    op, switches = tensor.op, []
    while op.type in _PASS_THROUGH and op.inputs:
        if op.type in ("Switch", "RefSwitch"):
            switches.append(op)
        op = op.inputs[0].op
    return op, switches


def layer_decay(tf1: Any, update_ops: Sequence[Any]) -> Optional[float]:
    """The decay of assign_moving_average's ``v -= (v - value) * (1 - decay)``, evaluated from
    the constant factor; with a tensor training flag the factor is cond(training, decay, 1), and
    the training branch's value is taken."""
    for op in update_ops:
        factor = _factor(tf1, op)
        if factor is not None:
            return 1.0 - _constant(tf1, factor)  # type: ignore[operator]
    return None


def _factor(tf1: Any, update_op: Any) -> Any:
    delta = update_op.inputs[1].op
    if delta.type == "Mul":
        for tensor in delta.inputs:
            if _constant(tf1, tensor) is not None:
                return tensor
    return None


def _constant(tf1: Any, tensor: Any) -> Optional[float]:
    """The scalar value of a small arithmetic subgraph of constants, else None."""
    op = tensor.op
    if op.type == "Const":
        value = tf1.make_ndarray(op.get_attr("value"))
        return float(value) if value.size == 1 else None
    if op.type in ("Identity", "Cast"):
        return _constant(tf1, op.inputs[0])
    if op.type == "Merge":
        # contrib, tf.layers and tf.keras build cond(training, decay, 1) for a tensor training
        # flag; in control flow v1 the Merge's second input is the true (training) branch.
        return _constant(tf1, op.inputs[1])
    if op.type in IF_OPS:
        # Control flow v2: the output of the then (training) branch's function.
        branch = branch_graph(op, BRANCHES[0])
        if branch is None or tensor.value_index >= len(branch.outputs):
            return None
        return _constant(tf1, branch.outputs[tensor.value_index])
    if op.type in ("Sub", "Add", "Mul"):
        a, b = (_constant(tf1, t) for t in op.inputs)
        if a is None or b is None:
            return None
        return {"Sub": a - b, "Add": a + b, "Mul": a * b}[op.type]
    return None


def _switch(tf1: Any, sites: Sequence[UpdateSite]) -> Optional[TrainingSwitch]:
    """The predicate of the conds around the layer's updates or their decay factor."""
    conds = [op for site in sites for op in site.conds]
    for site in sites:
        if site.assign is site.op:  # in the graph itself, not in a branch function
            factor = _factor(tf1, site.assign)
            if factor is not None:
                conds += _conds_of_constant(factor.op)
    for op in conds:
        predicate = op.inputs[0] if op.type in IF_OPS else op.inputs[1]
        return _training_switch(tf1, predicate)
    return None


def _conds_of_constant(op: Any) -> List[Any]:
    """Switch / If ops in a constant subgraph (the decay factor), walked through inputs and
    control inputs (a control flow v1 branch's constants depend on the branch's switch)."""
    seen, stack, conds = set(), [op], []
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        if op.type in IF_OPS or op.type in ("Switch", "RefSwitch"):
            conds.append(op)
            continue
        if op.type in ("Const", "Identity", "Cast", "Merge", "Sub", "Add", "Mul"):
            stack.extend(t.op for t in op.inputs)
            stack.extend(op.control_inputs)
    return conds


def _training_switch(tf1: Any, predicate: Any) -> TrainingSwitch:
    while predicate.op.type in ("Identity", "RefIdentity") and predicate.op.inputs:
        predicate = predicate.op.inputs[0]
    op, default = predicate.op, None
    if op.type == "PlaceholderWithDefault":
        value = _constant(tf1, op.inputs[0])
        default = None if value is None else bool(value)
    return TrainingSwitch(predicate, default, op.name.endswith(KERAS_LEARNING_PHASE))


def _inference_sites(variables: Iterable[Any], contexts: Dict[Any, Branches]
                     ) -> List[Tuple[Any, Branches]]:
    """Ops that read the moving statistics for anything but updating, saving or initializing
    them: the inference-mode normalization (a fused batch norm with is_training=False, or the
    non-fused arithmetic), each with the cond branches it runs in; inside an If op's functions
    the If op stands for them, with the branch (and nested Ifs' branches) that normalizes."""
    def outer_consumers(op: Any) -> List[Any]:
        return [c for t in op.outputs for c in t.consumers()]

    found: List[Tuple[Any, Branches]] = []
    for variable in variables:
        for op, branches in _normalizing(variable.op, outer_consumers, None, ()):
            found.append((op, contexts.get(op, ()) + branches))
    return list(dict.fromkeys(found))


def _normalizing(start: Any, consumers: Callable[[Any], List[Any]], stand_in: Any,
                 branches: Branches) -> List[Tuple[Any, Branches]]:
    """The normalizing uses of the value ``start`` outputs, in one graph (``stand_in``: the If
    op of the outer graph that runs this branch function, None in the outer graph)."""
    found: List[Tuple[Any, Branches]] = []
    stack, seen = [start], set()
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        for consumer in consumers(op):
            if consumer.type in _READS and not consumer.name.startswith("save"):
                stack.append(consumer)
            elif consumer.type in _FUSED:
                if not consumer.get_attr("is_training"):
                    found.append((stand_in or consumer, branches))
            elif consumer.type in IF_OPS:
                found += _normalizing_in_branches(consumer, op, stand_in or consumer, branches)
            elif (consumer.type not in _BOOKKEEPING and consumer.type not in _UPDATE_OPS
                  and not consumer.name.startswith(("save", "gradients"))
                  and "AssignMovingAvg" not in consumer.name):
                found.append((stand_in or consumer, branches))
    return found


def _normalizing_in_branches(if_op: Any, source: Any, stand_in: Any,
                             branches: Branches) -> List[Tuple[Any, Branches]]:
    """The normalizing uses of ``source``'s value inside the branch functions of ``if_op``."""
    positions = [i - 1 for i, t in enumerate(if_op.inputs) if i and t.op is source]
    found: List[Tuple[Any, Branches]] = []
    for attr in BRANCHES:
        graph = branch_graph(if_op, attr)
        if graph is None:
            continue
        consumers: Dict[Any, List[Any]] = {}
        for op in graph.get_operations():
            for tensor in op.inputs:
                consumers.setdefault(tensor.op, []).append(op)
        inner = branches + (if_branch(if_op, attr),)
        for position in positions:
            if position < len(graph.inputs):
                found += _normalizing(graph.inputs[position].op,
                                      lambda op: consumers.get(op, []), stand_in, inner)
    return found


def _get_variable_names(graph: Any) -> Set[str]:
    """Names of the variables tf.compat.v1.get_variable made (contrib and tf.layers do, tf.keras
    does not); empty for a graph that was imported rather than built."""
    stores = graph.get_collection(_VARIABLE_STORE)
    return set(getattr(stores[0], "_vars", {})) if stores else set()


def _kind(variable: Any, contrib_variables: Set[str], scoped_variables: Set[str],
          collected: bool) -> str:
    """contrib / slim batch_norm puts its moving statistics in MODEL_VARIABLES; tf.layers makes
    them with tf.compat.v1.get_variable, tf.keras does not. TF 1.x's tf.layers makes ref variables
    (VariableV2), tf.keras resource variables; under TF 2.x both make resource variables. A graph
    imported from a MetaGraphDef has no record of get_variable: there a resource variable whose
    updates are in UPDATE_OPS is taken for tf.layers', which always collects them."""
    name = variable.op.name
    if name in contrib_variables:
        return "contrib"
    if name in scoped_variables or variable.op.type != "VarHandleOp":
        return "tf.layers"
    return "tf.layers" if collected and not scoped_variables else "tf.keras"
