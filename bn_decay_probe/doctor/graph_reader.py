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
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set

from ..checkpoints.branches import BRANCHES, IF_OPS, branch_graph
from ..checkpoints.graphwalk import ancestors
from ..errors import ProbeConfigError
from ..names import MOVING, moving_name

__all__ = ["BatchNormLayer", "TrainingSwitch", "UpdateSite", "find_batch_norm_layers",
           "require_layers", "update_sites", "layer_decay", "collected_update_ops", "as_ops",
           "train_roots", "TRAINING", "INFERENCE", "SWITCHED",
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
    # ops that normalize with the moving statistics (inference mode); the train step running
    # one of them without the layer's update ops means training in inference mode
    inference_ops: List[Any] = field(default_factory=list)

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
    sites = update_sites(graph)
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
        switch = _switch(tf1, found)
        layer.inference_ops = _inference_ops(variables.values())
        if switch is not None:
            layer.mode, layer.switch = SWITCHED, switch
        elif not found:
            layer.mode = INFERENCE if layer.inference_ops else TRAINING
        layers.append(layer)
    return sorted(layers, key=lambda layer: position[layer.variables[MOVING[0]].op.name])


def require_layers(layers: Sequence[BatchNormLayer]) -> None:
    """Raises ProbeConfigError (one line) when a graph has no batch-norm layer."""
    if not layers:
        raise ProbeConfigError("graph has no batch-norm layer: no pair of global variables named "
                               ".../moving_mean and .../moving_variance")


@dataclass(frozen=True)
class UpdateSite:
    """Where a variable is updated: ``op`` of the graph runs ``assign`` (the op itself, or an If
    op whose branch holds it); ``in_place``: an Identity (the layer's output) depends on it;
    ``conds``: the If ops or Switch ops the update sits behind."""

    op: Any
    assign: Any
    in_place: bool
    conds: tuple = ()


def update_sites(graph: Any) -> Dict[str, List[UpdateSite]]:
    """Name of the variable's op (in a branch function: its placeholder) -> where it is updated.

    Control flow v1 (TF 1.15) keeps cond branches in the graph, behind Switch ops; control flow
    v2 (TF 2.x) puts them in functions of an If op, which stands for them in the graph."""
    in_place = {dep for op in graph.get_operations() if op.type == "Identity"
                for dep in op.control_inputs}
    sites: Dict[str, List[UpdateSite]] = {}
    for op in graph.get_operations():
        if op.type in _UPDATE_OPS:
            target, switches = _source_and_switches(op.inputs[0])
            sites.setdefault(target.name, []).append(
                UpdateSite(op, op, op in in_place, tuple(switches)))
        elif op.type in IF_OPS:
            for attr in BRANCHES:
                branch = branch_graph(op, attr)
                if branch is None:
                    continue
                index = {tensor.op.name: i for i, tensor in enumerate(branch.inputs)}
                for name, inner in update_sites(branch).items():
                    if name in index:  # inputs[0] of an If op is its condition
                        target = _source(op.inputs[index[name] + 1])
                        sites.setdefault(target.name, []).extend(
                            UpdateSite(op, site.assign, site.in_place, (op,) + site.conds)
                            for site in inner)
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


def _inference_ops(variables: Iterable[Any]) -> List[Any]:
    """Ops that read the moving statistics for anything but updating, saving or initializing
    them: the inference-mode normalization (a fused batch norm with is_training=False, the
    non-fused arithmetic, or an If op whose inference branch does it)."""
    found = []
    for variable in variables:
        stack = [variable.op]
        while stack:
            op = stack.pop()
            for consumer in (c for t in op.outputs for c in t.consumers()):
                if consumer.type in _READS and not consumer.name.startswith("save"):
                    stack.append(consumer)
                elif consumer.type in _FUSED:
                    if not consumer.get_attr("is_training"):
                        found.append(consumer)
                elif consumer.type in IF_OPS:
                    found.append(consumer)
                elif (consumer.type not in _BOOKKEEPING and consumer.type not in _UPDATE_OPS
                      and not consumer.name.startswith(("save", "gradients"))
                      and "AssignMovingAvg" not in consumer.name):
                    found.append(consumer)
    return list(dict.fromkeys(found))


def collected_update_ops(tf1: Any, graph: Any) -> List[Any]:
    """The ops behind UPDATE_OPS; an item session.run could not run is no update op."""
    ops = []
    for item in graph.get_collection(tf1.GraphKeys.UPDATE_OPS):
        try:
            ops += as_ops(tf1, item)
        except ProbeConfigError:
            pass
    return ops


def as_ops(tf1: Any, fetches: Any) -> List[Any]:
    """The ops behind a train op given as session.run takes it: an op, a tensor, a variable or
    a (nested) list of them."""
    if fetches is None:
        return []
    if isinstance(fetches, tf1.Operation):
        return [fetches]
    # A tensor's or a variable's op. Not isinstance(.., tf1.Variable): under TF 2.x resource
    # variables are no tf.compat.v1.Variable -- every variable there, global_step too, and what
    # assign_sub returns (a variable whose op is the update), which contrib puts in UPDATE_OPS.
    if isinstance(getattr(fetches, "op", None), tf1.Operation):
        return [fetches.op]
    if isinstance(fetches, (list, tuple)):
        return [op for item in fetches for op in as_ops(tf1, item)]
    raise ProbeConfigError("train_op must be a tf.Operation, tf.Tensor, tf.Variable, a Keras "
                           "train function or a list of them, got %r" % (fetches,))


def train_roots(tf1: Any, graph: Any) -> List[Any]:
    """The ops a train step runs when nobody says which: the TRAIN_OP collection when it is
    filled (tf.compat.v1 optimizers add their apply op there, slim's create_train_op its train
    op); else (Keras's optimizers add nothing) the ops that nothing consumes among
    those that run an optimizer's apply op (ApplyGradientDescent, ResourceApplyAdam, ...), e.g.
    ``minimize()``'s op or Keras Model.fit's ``training/group_deps``, leaving out the reads TF
    2.x's optimizers add after their updates. In graph order."""
    collected = as_ops(tf1, graph.get_collection(tf1.GraphKeys.TRAIN_OP))
    if collected:
        return collected
    consumers: Dict[Any, List[Any]] = {}
    for op in graph.get_operations():
        for tensor in op.inputs:
            consumers.setdefault(tensor.op, []).append(op)
        for dependency in op.control_inputs:
            consumers.setdefault(dependency, []).append(op)
    stack = [op for op in graph.get_operations() if _applies_gradients(op)]
    reached: Set[Any] = set()
    while stack:
        op = stack.pop()
        if op not in reached:
            reached.add(op)
            stack.extend(consumers.get(op, []))
    return [op for op in graph.get_operations() if op in reached and not consumers.get(op)
            and op.type != "ReadVariableOp"]


def _applies_gradients(op: Any) -> bool:
    return op.type.startswith(("Apply", "ResourceApply", "SparseApply", "ResourceSparseApply"))


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
