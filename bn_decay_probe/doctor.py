"""BN doctor: finds the usual reasons a TF1 model's batch norm is bad at inference.

Two entry points: :func:`diagnose_checkpoint` reads the moving statistics a ``tf.train.Saver``
checkpoint holds; :func:`diagnose_graph` checks how a live graph wires its moving-average update
ops, and with a session also the values. Both return a :class:`Diagnosis`. Importing this module
does not import TensorFlow.

Finding codes (stable):

- ``NEVER_UPDATED``: moving_mean all 0 and moving_variance all 1, within ``INITIAL_ATOL``.
- ``UNSHARED_BRANCHES``: a never-updated layer with a trained sibling of the same base name
  (``_N`` suffixes stripped from each scope) and the same number of channels.
- ``BAD_VARIANCE``: moving_variance negative, zero, NaN or inf, or moving_mean NaN or inf.
- ``PARTLY_CONVERGED``: ``decay**global_step`` (the weight still on the initial values) above the
  threshold.
- ``MISSING_UPDATE_DEPENDENCY`` (graph): update ops neither in place nor run by the train op.
- ``KERAS_UPDATES_NOT_COLLECTED`` (graph): tf.keras update ops outside ``UPDATE_OPS`` that the
  train op does not run either.
"""
from __future__ import annotations

import math
import numbers
import os
import re
import weakref
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np

from .config import check_decay
from .errors import ProbeConfigError
from .jsonable import json_number

NEVER_UPDATED = "NEVER_UPDATED"
PARTLY_CONVERGED = "PARTLY_CONVERGED"
UNSHARED_BRANCHES = "UNSHARED_BRANCHES"
BAD_VARIANCE = "BAD_VARIANCE"
MISSING_UPDATE_DEPENDENCY = "MISSING_UPDATE_DEPENDENCY"
KERAS_UPDATES_NOT_COLLECTED = "KERAS_UPDATES_NOT_COLLECTED"
CODES = (NEVER_UPDATED, PARTLY_CONVERGED, UNSHARED_BRANCHES, BAD_VARIANCE,
         MISSING_UPDATE_DEPENDENCY, KERAS_UPDATES_NOT_COLLECTED)
ERROR, WARNING = "error", "warning"

# The initial values weigh decay**steps; 0.05 ~ e**-3 is reached after 3 / (1 - decay) steps,
# three time constants of the moving average, when the statistics are 95% the data's.
DEFAULT_THRESHOLD = 0.05
# The initial 0 and 1 are exact in float32; 1e-6 (about 8 float32 steps at 1.0) allows for
# rounding. One update moves them by (1 - decay) * (batch statistic - initial value): more than
# 1e-6 at decay 0.999 unless the batch statistics are within 1e-3 of 0 and 1.
INITIAL_ATOL = 1e-6

_MOVING = ("moving_mean", "moving_variance")
# Keys of object-based checkpoints (tf.train.Checkpoint, Keras save_weights) end in this.
_OBJECT_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
# A checkpoint's own files; their prefix is the checkpoint.
_CHECKPOINT_FILE = re.compile(r"\.(index|meta|data-\d{5}-of-\d{5})$")
_COPY_SUFFIX = re.compile(r"_\d+$")  # what TF appends to a scope name that is already taken
_UPDATE_OPS = frozenset({"AssignSub", "AssignSubVariableOp"})
_PASS_THROUGH = frozenset({"Identity", "RefIdentity", "Switch", "RefSwitch", "Enter", "RefEnter"})
# Control flow v2 (the default under TF 2.x, also in graph mode): tf.cond builds an If op whose
# branches are functions, and contrib puts its update ops inside the training branch.
_IF_OPS = frozenset({"If", "StatelessIf"})
_BRANCHES = ("then_branch", "else_branch")
# The graph collection behind tf.compat.v1.get_variable (TF 1.15 and 2.x alike).
_VARIABLE_STORE = ("__variable_store",)


@dataclass(frozen=True)
class Finding:
    layer: str
    code: str  # one of CODES
    severity: str  # "error" | "warning"
    explanation: str  # one line
    fix: str  # one line

    def to_dict(self) -> Dict[str, Any]:
        return {"layer": self.layer, "code": self.code, "severity": self.severity,
                "explanation": self.explanation, "fix": self.fix}


@dataclass(frozen=True)
class LayerSummary:
    name: str  # the variables' common prefix, e.g. "model/conv1/BatchNorm"
    channels: Optional[int]
    kind: Optional[str]  # graph mode: "contrib", "tf.layers" or "tf.keras"; checkpoint: None
    decay: Optional[float]  # the decay used for PARTLY_CONVERGED: given, or read from the graph
    # graph mode: names of the ops that run the moving-average updates; when a control flow v2
    # cond (TF 2.x) holds them, the If op
    update_ops: Tuple[str, ...]
    mean_range: Optional[Tuple[float, float]]  # (min, max) ignoring NaN; None if not read
    variance_range: Optional[Tuple[float, float]]

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "channels": self.channels, "kind": self.kind,
                "decay": self.decay, "update_ops": list(self.update_ops),
                "mean_range": _json_range(self.mean_range),
                "variance_range": _json_range(self.variance_range)}


@dataclass(frozen=True)
class Diagnosis:
    source: str  # "checkpoint" | "graph"
    path: Optional[str]  # the checkpoint prefix that was read
    global_step: Optional[int]
    decay: Optional[float]  # as given by the caller
    threshold: float
    layers: Tuple[LayerSummary, ...]
    findings: Tuple[Finding, ...]
    notes: Tuple[str, ...]  # what could not be checked, and why

    @property
    def clean(self) -> bool:
        return not self.findings

    def findings_for(self, layer: str) -> Tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.layer == layer)

    def to_dict(self) -> Dict[str, Any]:
        return {"source": self.source, "path": self.path, "global_step": self.global_step,
                "decay": self.decay, "threshold": self.threshold, "clean": self.clean,
                "layers": [layer.to_dict() for layer in self.layers],
                "findings": [f.to_dict() for f in self.findings], "notes": list(self.notes)}


@dataclass
class _Layer:
    """One batch-norm layer as read; internal (graph mode holds live TF objects here)."""

    name: str
    channels: Optional[int]
    mean: Optional[np.ndarray] = None
    variance: Optional[np.ndarray] = None
    kind: Optional[str] = None
    decay: Optional[float] = None
    update_ops: List[Any] = field(default_factory=list)  # ops of the graph that run the updates
    in_place: Set[Any] = field(default_factory=set)  # those of update_ops the output depends on
    variables: Dict[str, Any] = field(default_factory=dict)  # graph mode: short name -> tf.Variable

    @property
    def read(self) -> bool:
        return self.mean is not None and self.variance is not None


def check_threshold(threshold: Any) -> float:
    if (isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, numbers.Real)
            or not 0.0 < float(threshold) <= 1.0):
        raise ProbeConfigError("threshold must be a number in (0, 1] (the largest weight "
                               "decay**steps left on the initial values), got %r" % (threshold,))
    return float(threshold)


def _check_options(decay: Any, threshold: Any) -> Tuple[Optional[float], float]:
    return (None if decay is None else check_decay(decay)), check_threshold(threshold)


# ---------------------------------------------------------------------------------- checkpoint

def diagnose_checkpoint(path: Any, decay: Any = None,
                        threshold: Any = DEFAULT_THRESHOLD) -> Diagnosis:
    """Diagnoses the batch-norm moving statistics in a checkpoint.

    ``path`` is a checkpoint prefix (``model.ckpt-1000``), one of its files (``.index``,
    ``.data-*``, ``.meta``), or a directory (its latest checkpoint, by the ``checkpoint`` file).
    A checkpoint does not record decay: give ``decay`` to check PARTLY_CONVERGED.
    """
    decay, threshold = _check_options(decay, threshold)
    prefix = _existing_prefix(path)
    from . import backend

    with backend.quiet() as tf1:
        if os.path.isdir(prefix):
            prefix = _latest_checkpoint(tf1, prefix)
        values = _read_checkpoint(tf1, prefix)
    layers = _checkpoint_layers(prefix, values)
    for layer in layers:
        layer.decay = decay
    step = _global_step(values.get("global_step"))
    findings, notes = _value_findings(layers, step, threshold)
    return _diagnosis("checkpoint", prefix, step, decay, threshold, layers, findings, notes)


def _global_step(value: Optional[np.ndarray]) -> Optional[int]:
    return None if value is None or np.size(value) != 1 else int(np.asarray(value).reshape(-1)[0])


def _existing_prefix(path: Any) -> str:
    """Checks the path without TensorFlow, so a typo fails at once."""
    if not isinstance(path, (str, os.PathLike)):
        raise ProbeConfigError("checkpoint path must be a string or os.PathLike, got %r"
                               % (path,))
    path = os.fspath(path)
    prefix = _CHECKPOINT_FILE.sub("", path) if os.path.isfile(path) else path
    if os.path.isdir(prefix) or os.path.isfile(prefix) or os.path.isfile(prefix + ".index"):
        return prefix
    raise ProbeConfigError("checkpoint %s not found: give a checkpoint prefix (such as "
                           "model.ckpt-1000, which has a .index file) or a directory holding a "
                           "'checkpoint' file" % path)


def _latest_checkpoint(tf1: Any, directory: str) -> str:
    prefix = tf1.train.latest_checkpoint(directory)
    if prefix is None:
        raise ProbeConfigError("no checkpoint in directory %s: it has no readable 'checkpoint' "
                               "file naming an existing checkpoint; give a checkpoint prefix or "
                               "a directory written by tf.train.Saver" % directory)
    return prefix


def _read_checkpoint(tf1: Any, prefix: str) -> Dict[str, np.ndarray]:
    """Reads only the moving statistics and global_step; both steps can hit a corrupt file."""
    try:
        reader = tf1.train.NewCheckpointReader(prefix)
        keys = {_plain_name(key): key for key in reader.get_variable_to_shape_map()}
        wanted = [name for name in keys if _moving_name(name) or name == "global_step"]
        return {name: reader.get_tensor(keys[name]) for name in wanted}
    except tf1.errors.OpError as exc:
        raise ProbeConfigError("%s is not a readable TensorFlow checkpoint (%s); give the prefix "
                               "of a checkpoint written by tf.train.Saver"
                               % (prefix, _first_line(exc.message))) from None


def _first_line(message: Any) -> str:
    lines = str(message).strip().splitlines()
    return lines[0] if lines else "no reason given"


def _plain_name(key: str) -> str:
    return key[:-len(_OBJECT_SUFFIX)] if key.endswith(_OBJECT_SUFFIX) else key


def _moving_name(name: str) -> Optional[Tuple[str, str]]:
    """("layer/prefix", "moving_mean") for a moving statistic's variable name, else None."""
    layer, _, short = name.rpartition("/")
    return (layer, short) if layer and short in _MOVING else None


def _checkpoint_layers(prefix: str, values: Dict[str, np.ndarray]) -> List[_Layer]:
    grouped: Dict[str, Dict[str, np.ndarray]] = {}
    for name, value in values.items():
        parts = _moving_name(name)
        if parts:
            grouped.setdefault(parts[0], {})[parts[1]] = np.asarray(value, np.float64).reshape(-1)
    layers = [_Layer(name, stats[_MOVING[0]].size, stats[_MOVING[0]], stats[_MOVING[1]])
              for name, stats in sorted(grouped.items()) if len(stats) == 2]
    if not layers:
        raise ProbeConfigError("checkpoint %s has no batch-norm layer: no pair of variables "
                               "named .../moving_mean and .../moving_variance" % prefix)
    return layers


# ---------------------------------------------------------------------------------------- graph

def diagnose_graph(graph: Any, train_op: Any = None, session: Any = None, decay: Any = None,
                   threshold: Any = DEFAULT_THRESHOLD) -> Diagnosis:
    """Diagnoses how ``graph`` runs its batch-norm update ops, without changing the graph.

    ``train_op``: the op (or tensor, or list of them) run at each train step; without it, update
    ops in ``UPDATE_OPS`` are assumed to run. ``session``: a session on ``graph`` whose variables
    hold values; with it the value findings are checked too, with each layer's decay read from
    its update ops unless ``decay`` is given.
    """
    decay, threshold = _check_options(decay, threshold)
    from . import backend

    with backend.quiet() as tf1:
        _check_graph_arguments(tf1, graph, train_op, session)
        collected = _ancestors(_collected_ops(tf1, graph))  # what running UPDATE_OPS runs
        layers = _graph_layers(tf1, graph, collected)
        findings = _wiring_findings(tf1, layers, train_op, collected)
        step = None if session is None else _read_values(tf1, graph, session, layers)
    for layer in layers:
        layer.decay = decay if decay is not None else layer.decay
    notes = _graph_notes(train_op, session)
    if session is not None:
        value_findings, value_notes = _value_findings(layers, step, threshold)
        findings += value_findings
        notes += value_notes
    return _diagnosis("graph", None, step, decay, threshold, layers, findings, notes)


def _graph_notes(train_op: Any, session: Any) -> List[str]:
    notes = []
    if train_op is None:
        notes.append("no train_op given: update ops in UPDATE_OPS are assumed to run at every "
                     "train step")
    if session is None:
        notes.append("no session given: values not read, so NEVER_UPDATED, UNSHARED_BRANCHES, "
                     "BAD_VARIANCE and PARTLY_CONVERGED were not checked")
    return notes


def _check_graph_arguments(tf1: Any, graph: Any, train_op: Any, session: Any) -> None:
    if not isinstance(graph, tf1.Graph):
        raise ProbeConfigError("graph must be a tf.Graph, got %r" % (graph,))
    for op in _as_ops(tf1, train_op):
        if op.graph is not graph:
            raise ProbeConfigError("train_op %s belongs to another graph; give an op of graph"
                                   % op.name)
    if session is not None and getattr(session, "graph", None) is not graph:
        raise ProbeConfigError("session must be a tf.compat.v1.Session on graph, got %r"
                               % (session,))


def _as_ops(tf1: Any, fetches: Any) -> List[Any]:
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
        return [op for item in fetches for op in _as_ops(tf1, item)]
    raise ProbeConfigError("train_op must be a tf.Operation, tf.Tensor, tf.Variable or a list of "
                           "them, got %r" % (fetches,))


def _graph_layers(tf1: Any, graph: Any, collected: Set[Any]) -> List[_Layer]:
    grouped: Dict[str, Dict[str, Any]] = {}
    for variable in graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES):
        parts = _moving_name(variable.op.name)
        if parts:
            grouped.setdefault(parts[0], {})[parts[1]] = variable
    sites = _update_sites(graph)
    contrib = {v.op.name for v in graph.get_collection(tf1.GraphKeys.MODEL_VARIABLES)}
    scoped = _get_variable_names(graph)
    layers = []
    for name, variables in sorted(grouped.items()):
        if len(variables) < 2:
            continue
        mean = variables[_MOVING[0]]
        found = [site for v in variables.values() for site in sites.get(v.op.name, [])]
        ops = list(dict.fromkeys(site.op for site in found))  # one If op can run both updates
        kind = _kind(mean, contrib, scoped, any(op in collected for op in ops))
        layers.append(_Layer(name, mean.shape.num_elements(), kind=kind,
                             decay=_graph_decay(tf1, [site.assign for site in found]),
                             update_ops=ops, in_place={s.op for s in found if s.in_place},
                             variables=variables))
    if not layers:
        raise ProbeConfigError("graph has no batch-norm layer: no pair of global variables named "
                               ".../moving_mean and .../moving_variance")
    return layers


@dataclass(frozen=True)
class _Site:
    """Where a variable is updated: ``op`` of the graph runs ``assign`` (the op itself, or an If
    op whose branch holds it); ``in_place``: an Identity (the layer's output) depends on it."""

    op: Any
    assign: Any
    in_place: bool


def _update_sites(graph: Any) -> Dict[str, List[_Site]]:
    """Name of the variable's op (in a branch function: its placeholder) -> where it is updated.

    Control flow v1 (TF 1.15) keeps cond branches in the graph, behind Switch ops; control flow
    v2 (TF 2.x) puts them in functions of an If op, which stands for them in the graph."""
    in_place = {dep for op in graph.get_operations() if op.type == "Identity"
                for dep in op.control_inputs}
    sites: Dict[str, List[_Site]] = {}
    for op in graph.get_operations():
        if op.type in _UPDATE_OPS:
            target = _source(op.inputs[0]).name
            sites.setdefault(target, []).append(_Site(op, op, op in in_place))
        elif op.type in _IF_OPS:
            for attr in _BRANCHES:
                branch = _branch_graph(op, attr)
                if branch is None:
                    continue
                index = {tensor.op.name: i for i, tensor in enumerate(branch.inputs)}
                for name, inner in _update_sites(branch).items():
                    if name in index:  # inputs[0] of an If op is its condition
                        target = _source(op.inputs[index[name] + 1]).name
                        sites.setdefault(target, []).extend(
                            _Site(op, site.assign, site.in_place) for site in inner)
    return sites


def _source(tensor: Any) -> Any:
    op = tensor.op
    while op.type in _PASS_THROUGH and op.inputs:
        op = op.inputs[0].op
    return op


def _branch_graph(op: Any, attr: str) -> Any:
    """The function graph of an If op's branch: the one TF built, or for a graph imported from a
    GraphDef or MetaGraphDef, where TF keeps only the function's definition, a view of that."""
    name = op.get_attr(attr).name
    graph = op.graph
    while graph is not None:
        function = graph._get_function(name)  # pylint: disable=protected-access
        if function is not None:
            built = getattr(function, "graph", None)
            if built is not None:
                return built
            definition = _function_definition(graph, name)
            return None if definition is None else _FunctionView(definition, graph)
        graph = getattr(graph, "outer_graph", None)
    return None


# graph -> {function name: FunctionDef}, from the graph's GraphDef (serialized once per graph).
_LIBRARIES: "weakref.WeakKeyDictionary[Any, Dict[str, Any]]" = weakref.WeakKeyDictionary()


def _function_definition(graph: Any, name: str) -> Any:
    """The FunctionDef of the graph's library. Read from the GraphDef: the function object's own
    ``definition`` registers the function with the eager context, which fails for an imported
    function whose name a function of this process already has."""
    library = _LIBRARIES.get(graph)
    if library is None or name not in library:
        library = {f.signature.name: f for f in graph.as_graph_def().library.function}
        _LIBRARIES[graph] = library
    return library.get(name)


class _FunctionView:
    """A FunctionDef read as the little of a graph the doctor walks: operations with type,
    inputs, control inputs and attributes, and the function's inputs and outputs."""

    def __init__(self, definition: Any, outer_graph: Any) -> None:
        self.outer_graph = outer_graph
        self._args = {arg.name: _NodeView(self, arg.name, "Placeholder", (), None)
                      for arg in definition.signature.input_arg}
        self._nodes = {node.name: _NodeView(self, node.name, node.op, node.input, node.attr)
                       for node in definition.node_def}
        self.inputs = [_TensorView(self._args[arg.name], 0)
                       for arg in definition.signature.input_arg]
        self.outputs = [self.tensor(definition.ret[arg.name])
                        for arg in definition.signature.output_arg]

    def get_operations(self) -> List[Any]:
        return list(self._nodes.values())

    def _get_function(self, name: str) -> None:
        return None  # the library is the outer graph's

    def tensor(self, ref: str) -> Any:
        """"arg" (a function input) or "node:output_arg:index"; the index is the output's
        position for the ops walked here (one output argument each)."""
        if ":" not in ref:
            return _TensorView(self._args[ref], 0)
        node, _, index = ref.partition(":")
        return _TensorView(self._nodes[node], int(index.rpartition(":")[2] or 0))

    def node(self, name: str) -> Any:
        return self._nodes[name]


class _NodeView:
    def __init__(self, graph: _FunctionView, name: str, type_: str, inputs: Sequence[str],
                 attrs: Any) -> None:
        self.graph, self.name, self.type = graph, name, type_
        self._inputs, self._attrs = list(inputs), attrs

    @property
    def inputs(self) -> List[Any]:
        return [self.graph.tensor(ref) for ref in self._inputs if not ref.startswith("^")]

    @property
    def control_inputs(self) -> List[Any]:
        return [self.graph.node(ref[1:]) for ref in self._inputs if ref.startswith("^")]

    def get_attr(self, name: str) -> Any:
        value = self._attrs[name]
        return getattr(value, value.WhichOneof("value"))


@dataclass(frozen=True)
class _TensorView:
    op: Any
    value_index: int


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
    updates are in UPDATE_OPS is taken for tf.layers', which always collects them. Telling
    tf.layers from tf.keras only picks the finding code, KERAS_UPDATES_NOT_COLLECTED being for
    updates outside UPDATE_OPS."""
    name = variable.op.name
    if name in contrib_variables:
        return "contrib"
    if name in scoped_variables or variable.op.type != "VarHandleOp":
        return "tf.layers"
    return "tf.layers" if collected and not scoped_variables else "tf.keras"


def _graph_decay(tf1: Any, update_ops: Sequence[Any]) -> Optional[float]:
    """assign_moving_average builds ``v -= (v - value) * factor`` with factor = 1 - decay."""
    for op in update_ops:
        delta = op.inputs[1].op
        if delta.type == "Mul":
            for factor in delta.inputs:
                value = _constant(tf1, factor)
                if value is not None:
                    return 1.0 - value
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
    if op.type in _IF_OPS:
        # Control flow v2: the output of the then (training) branch's function.
        branch = _branch_graph(op, _BRANCHES[0])
        if branch is None or tensor.value_index >= len(branch.outputs):
            return None
        return _constant(tf1, branch.outputs[tensor.value_index])
    if op.type in ("Sub", "Add", "Mul"):
        a, b = (_constant(tf1, t) for t in op.inputs)
        if a is None or b is None:
            return None
        return {"Sub": a - b, "Add": a + b, "Mul": a * b}[op.type]
    return None


def _wiring_findings(tf1: Any, layers: Sequence[_Layer], train_op: Any,
                     collected: Set[Any]) -> List[Finding]:
    run = _ancestors(_as_ops(tf1, train_op)) if train_op is not None else collected
    findings = []
    for layer in layers:
        missing = [op for op in layer.update_ops if op not in layer.in_place and op not in run]
        if missing:
            outside = not any(op in collected for op in missing)
            findings.append(_wiring_finding(layer, missing, train_op is not None, outside))
    return findings


def _collected_ops(tf1: Any, graph: Any) -> List[Any]:
    """The ops behind UPDATE_OPS; an item session.run could not run is no update op."""
    ops = []
    for item in graph.get_collection(tf1.GraphKeys.UPDATE_OPS):
        try:
            ops += _as_ops(tf1, item)
        except ProbeConfigError:
            pass
    return ops


def _ancestors(roots: Iterable[Any]) -> Set[Any]:
    """Every op that running ``roots`` runs: inputs and control inputs, transitively."""
    seen: Set[Any] = set()
    stack = list(roots)
    while stack:
        op = stack.pop()
        if op not in seen:
            seen.add(op)
            stack.extend(t.op for t in op.inputs)
            stack.extend(op.control_inputs)
    return seen


def _wiring_finding(layer: _Layer, missing: Sequence[Any], have_train_op: bool,
                    outside_collection: bool) -> Finding:
    names = ", ".join(op.name for op in missing)
    if layer.kind == "tf.keras" and outside_collection:
        return Finding(layer.name, KERAS_UPDATES_NOT_COLLECTED, ERROR,
                       "tf.keras BatchNormalization keeps its update ops (%s) in layer.updates, "
                       "not in UPDATE_OPS, and %s, so the moving statistics never change"
                       % (names, "train_op does not run them" if have_train_op else
                          "a train op built on UPDATE_OPS will not run them"),
                       "build the train op under tf.control_dependencies(model.updates) (or "
                       "layer.updates), or add each of those ops to tf.GraphKeys.UPDATE_OPS; "
                       "Model.fit runs them itself")
    return Finding(layer.name, MISSING_UPDATE_DEPENDENCY, ERROR,
                   "update ops %s are neither in place (a control dependency of the layer's "
                   "output) nor %s, so the moving statistics never change"
                   % (names, "run by train_op" if have_train_op else "in UPDATE_OPS"),
                   "build the train op under tf.control_dependencies(tf.get_collection("
                   "tf.GraphKeys.UPDATE_OPS)), or give contrib batch_norm "
                   "updates_collections=None")


def _read_values(tf1: Any, graph: Any, session: Any, layers: Sequence[_Layer]) -> Optional[int]:
    """Fetches the variables themselves, which adds no op to the graph."""
    step_variable = tf1.train.get_global_step(graph)
    fetches = {"layers": [[layer.variables[name] for name in _MOVING] for layer in layers],
               "step": [] if step_variable is None else [step_variable]}
    try:
        values = session.run(fetches)
    except tf1.errors.OpError as exc:
        raise ProbeConfigError("session could not read the moving statistics (%s); initialize "
                               "or restore the variables first" % _first_line(exc.message)
                               ) from None
    for layer, (mean, variance) in zip(layers, values["layers"]):
        layer.mean = np.asarray(mean, np.float64).reshape(-1)
        layer.variance = np.asarray(variance, np.float64).reshape(-1)
    return int(values["step"][0]) if values["step"] else None


# --------------------------------------------------------------------------------------- values

def _value_findings(layers: Sequence[_Layer], step: Optional[int],
                    threshold: float) -> Tuple[List[Finding], List[str]]:
    """At most one value finding per layer: a broken value, never updated, or not converged."""
    trained = [layer for layer in layers if not _is_initial(layer)]
    findings = [_value_finding(layer, trained, step, threshold) for layer in layers]
    unchecked = [layer for layer, finding in zip(layers, findings)
                 if finding is None and not _can_check_convergence(layer, step)]
    return [f for f in findings if f is not None], _convergence_notes(step, unchecked)


def _value_finding(layer: _Layer, trained: Sequence[_Layer], step: Optional[int],
                   threshold: float) -> Optional[Finding]:
    bad = _bad_variance(layer)
    if bad is not None:
        return bad
    if _is_initial(layer):
        return _never_updated(layer, trained)
    if _can_check_convergence(layer, step):
        return _partly_converged(layer, step, threshold)  # type: ignore[arg-type]
    return None


def _can_check_convergence(layer: _Layer, step: Optional[int]) -> bool:
    # global_step 0 with moved statistics means the optimizer did not count steps.
    return step is not None and step > 0 and layer.decay is not None


def _is_initial(layer: _Layer) -> bool:
    with np.errstate(invalid="ignore"):  # NaN compares False, which is the answer wanted
        return (layer.read and bool(np.all(np.abs(layer.mean) <= INITIAL_ATOL))
                and bool(np.all(np.abs(layer.variance - 1.0) <= INITIAL_ATOL)))


def _counts(values: np.ndarray, tests: Sequence[Tuple[str, Any]]) -> List[str]:
    with np.errstate(invalid="ignore"):  # NaN compares False; NaNs are counted on their own
        counted = [(label, int(np.count_nonzero(test(values)))) for label, test in tests]
    return ["%d %s" % (count, label) for label, count in counted if count]


def _bad_variance(layer: _Layer) -> Optional[Finding]:
    variance = _counts(layer.variance, [("negative", lambda v: np.isfinite(v) & (v < 0)),
                                        ("zero", lambda v: v == 0), ("NaN", np.isnan),
                                        ("inf", np.isinf)])
    mean = _counts(layer.mean, [("NaN", np.isnan), ("inf", np.isinf)])
    if not variance and not mean:
        return None
    parts = (["moving_variance has %s" % ", ".join(variance)] if variance else []) + \
            (["moving_mean has %s" % ", ".join(mean)] if mean else [])
    summary = "; ".join(parts) + " of %d channels" % layer.variance.size
    if not mean and len(variance) == 1 and variance[0].endswith(" zero"):
        return Finding(layer.name, BAD_VARIANCE, WARNING,
                       summary + ": those channels were constant in training, so inference "
                       "divides them by sqrt(epsilon) alone",
                       "harmless if the channels are dead (e.g. after ReLU); otherwise check "
                       "the layer's input")
    return Finding(layer.name, BAD_VARIANCE, ERROR,
                   summary + ": inference output is NaN, inf or wrong for those channels",
                   "restore an earlier checkpoint, or re-estimate the statistics (train-mode "
                   "forward passes with the update ops, no optimizer step); look for NaN/inf "
                   "in inputs and loss, and for code that assigns the variables")


def _never_updated(layer: _Layer, trained: Sequence[_Layer]) -> Finding:
    family = _family(layer)
    siblings = [other.name for other in trained if _family(other) == family]
    if siblings:
        return Finding(layer.name, UNSHARED_BRANCHES, ERROR,
                       "moving statistics still at their initial 0 and 1 while %s, with the same "
                       "base name and %s channels, was trained: this looks like a second copy "
                       "of the layer (e.g. the test branch) that never shared the trained "
                       "variables" % (siblings[0], layer.channels),
                       "build train and test branches with one layer: the same tf.keras layer "
                       "object, or the same name / scope with reuse=tf.AUTO_REUSE")
    return Finding(layer.name, NEVER_UPDATED, ERROR,
                   "moving_mean is all 0 and moving_variance all 1, their initial values: the "
                   "update ops never ran, so inference normalizes with (0, 1)",
                   "run the update ops at every train step: build the train op under "
                   "tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)) (tf.keras: "
                   "model.updates); tf.layers also needs training=True")


def _family(layer: _Layer) -> Tuple[str, Optional[int]]:
    """Name with TF's uniquifying _N suffixes removed from every scope, plus channels."""
    return "/".join(_COPY_SUFFIX.sub("", part) for part in layer.name.split("/")), layer.channels


def _partly_converged(layer: _Layer, step: int, threshold: float) -> Optional[Finding]:
    decay = float(layer.decay)  # type: ignore[arg-type]
    weight = decay ** step
    if weight <= threshold:
        return None
    # Rounded down, so that the suggested decay really meets the threshold.
    lower = "a decay of at most %g for %d steps" % (
        math.floor(threshold ** (1.0 / step) * 1e4) / 1e4, step)
    if decay < 1.0:
        fix = "train to at least %d steps at decay %.6g (decay**steps <= %g), or use %s" % (
            math.ceil(math.log(threshold) / math.log(decay)), decay, threshold, lower)
    else:
        fix = "at decay 1 the moving statistics never move: use " + lower
    return Finding(layer.name, PARTLY_CONVERGED, WARNING,
                   "%.6g**%d = %.4g of each moving statistic is still its initial value (mean 0, "
                   "variance 1), above the threshold %g" % (decay, step, weight, threshold), fix)


def _convergence_notes(step: Optional[int], unchecked: Sequence[_Layer]) -> List[str]:
    if not unchecked:
        return []
    if step is None:
        return ["no global_step found: PARTLY_CONVERGED not checked"]
    if step == 0:
        return ["global_step is 0 although moving statistics moved (the optimizer did not count "
                "steps): PARTLY_CONVERGED not checked"]
    return ["decay unknown for %d layer(s): give decay (--decay) to check PARTLY_CONVERGED"
            % len(unchecked)]


# ---------------------------------------------------------------------------------- the result

def _range(values: Optional[np.ndarray]) -> Optional[Tuple[float, float]]:
    if values is None:
        return None
    if np.all(np.isnan(values)):
        return math.nan, math.nan
    return float(np.nanmin(values)), float(np.nanmax(values))


def _json_range(bounds: Optional[Tuple[float, float]]) -> Optional[List[Any]]:
    return None if bounds is None else [json_number(b) for b in bounds]


def _diagnosis(source: str, path: Optional[str], step: Optional[int], decay: Optional[float],
               threshold: float, layers: Sequence[_Layer], findings: Sequence[Finding],
               notes: Sequence[str]) -> Diagnosis:
    summaries = tuple(LayerSummary(layer.name, layer.channels, layer.kind, layer.decay,
                                   tuple(op.name for op in layer.update_ops),
                                   _range(layer.mean), _range(layer.variance))
                      for layer in layers)
    order = {layer.name: i for i, layer in enumerate(layers)}
    ordered = sorted(findings, key=lambda f: (order[f.layer], CODES.index(f.code)))
    return Diagnosis(source, path, step, decay, threshold, summaries, tuple(ordered),
                     tuple(notes))


def _num(value: float) -> str:
    return "%.4g" % value


def _range_text(bounds: Optional[Tuple[float, float]]) -> str:
    return "-" if bounds is None else "[%s, %s]" % (_num(bounds[0]), _num(bounds[1]))


def render_diagnosis(diagnosis: Diagnosis) -> str:
    """The per-layer table, then each finding with its fix, then the notes."""
    d = diagnosis
    head = ("checkpoint %s" % d.path if d.source == "checkpoint" else "graph") + \
        " | global_step %s" % ("-" if d.global_step is None else d.global_step) + \
        " | decay %s" % ("%g (given)" % d.decay if d.decay is not None else
                         "from the graph" if d.source == "graph" else "unknown") + \
        " | threshold %g" % d.threshold
    verdict = ("clean: no finding in %d batch-norm layer(s)" % len(d.layers) if d.clean else
               "%d finding(s) in %d batch-norm layer(s)" % (len(d.findings), len(d.layers)))
    header = ["layer", "ch", "moving_mean", "moving_variance", "finding"]
    rows = [[s.name, "?" if s.channels is None else str(s.channels), _range_text(s.mean_range),
             _range_text(s.variance_range),
             ", ".join(f.code for f in d.findings_for(s.name)) or "ok"] for s in d.layers]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    table = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines = [head, verdict, ""] + table
    for f in d.findings:
        lines += ["", "%s %s (%s): %s" % (f.layer, f.code, f.severity, f.explanation),
                  "  fix: %s" % f.fix]
    if d.notes:
        lines.append("")
        lines += ["note: %s" % note for note in d.notes]
    return "\n".join(lines)
