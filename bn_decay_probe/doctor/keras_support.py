"""Keras objects the doctor accepts in place of a graph or a train op: a Keras Model (TF1 graph
mode) and the train function ``Model.fit`` builds (``model.train_function``, a backend
GraphExecutionFunction). Recognized by their attributes, so tf.keras (TF 1.15, Keras 2.x) and
tf_keras alike work and nothing here imports TensorFlow or Keras."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Dict, List

from .graph_reader import KERAS_LEARNING_PHASE


def is_keras_model(obj: Any) -> bool:
    return all(hasattr(obj, name) for name in ("layers", "weights", "get_config"))


def is_train_function(obj: Any) -> bool:
    return all(hasattr(obj, name) for name in ("updates_op", "inputs", "outputs"))


@dataclass
class KerasTraining:
    """What a Keras model or train function tells the doctor."""

    graph: Any = None
    train_ops: List[Any] = field(default_factory=list)  # what one call of the function runs
    feeds_learning_phase: bool = False  # Model.fit feeds it 1 when it is an input
    session: Any = None
    layer_names: Dict[str, str] = field(default_factory=dict)  # variable prefix -> layer name


def from_train_function(function: Any) -> KerasTraining:
    """Model.fit's train function runs its outputs (the loss) and ``updates_op`` (the
    optimizer's and the layers' updates), feeding the learning phase 1 when it is an input."""
    ops = [function.updates_op] + [t.op for t in function.outputs if hasattr(t, "op")]
    fed = any(getattr(t, "name", "").split(":")[0].endswith(KERAS_LEARNING_PHASE)
              for t in function.inputs)
    return KerasTraining(function.updates_op.graph, ops, fed,
                         getattr(function, "_session", None))


def from_model(model: Any) -> KerasTraining:
    """The model's graph, its train function if Model.fit built one, a session holding its
    values, and its batch-norm layers' names."""
    if not model.weights:
        return KerasTraining()
    function = getattr(model, "train_function", None)
    found = from_train_function(function) if is_train_function(function) else KerasTraining()
    found.graph = model.weights[0].graph
    found.session = found.session or _keras_session(model, found.graph)
    found.layer_names = layer_names(model)
    return found


def layer_names(model: Any) -> Dict[str, str]:
    """Variable prefix ("bn_Conv1_1") -> Keras layer name ("bn_Conv1"), nested models too."""
    names = {}
    for layer in model.layers:
        if is_keras_model(layer):
            names.update(layer_names(layer))
        mean = getattr(layer, "moving_mean", None)
        if mean is not None and hasattr(mean, "op"):
            names[mean.op.name.rpartition("/")[0]] = layer.name
    return names


def _keras_session(model: Any, graph: Any) -> Any:
    """The session Keras runs the model in: its backend's get_session() on the model's graph
    (tf.keras, keras and tf_keras keep the backend next to the engine package)."""
    package = type(model).__module__.rpartition(".engine")[0]
    if not package:
        return None
    try:
        backend = importlib.import_module(package + ".backend")
    except ImportError:
        return None
    get_session = getattr(backend, "get_session", None)
    if get_session is None:
        return None
    with graph.as_default():
        return get_session()
