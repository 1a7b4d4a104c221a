"""SavedModel directories and TF 2 object checkpoints (``tf.train.Checkpoint``, tf_keras
``save_weights`` in the TensorFlow format) read as Keras models: the same
:class:`~.keras_files.KerasModelFile` as the Keras files give.

Keys are object paths: ``model/_operations/2/moving_mean/...`` (Keras 3), ``layer_with_weights-1
/moving_mean/...`` (tf_keras), and in Keras 3's ``model.export`` only ``variables/<n>``; the
object graph stored with the values keeps each variable's own name (``bn_Conv1/moving_mean``),
which names the layer and, for exports, finds it. The step counter is an optimizer's
``_iterations`` (Keras 2.11+ and 3; a LossScaleOptimizer's inner one) or ``iter``, or a ``step``
/ ``global_step`` variable; ``save_counter`` counts saves and is never taken. Momentum, epsilon
and trainable exist only in a tf_keras ``model.save(dir)`` SavedModel, in its
``keras_metadata.pb``, read here without TensorFlow's protos."""
from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import CheckpointError, first_line
from ..names import MOVING, moving_name, natural_key
from ..values import FrozenDict, frozen_array
from . import protowire
from .keras_files import KerasBatchNorm, KerasModelFile
from .keras_v3 import number_or_none
from .reader import OBJECT_GRAPH, OBJECT_SUFFIX, plain_name, verify
from .sniff import SAVED_MODEL, TF_CHECKPOINT
from .step_counter import is_step_counter_name

SAVED_MODEL_VARIABLES = os.path.join("variables", "variables")
# Object paths that only Keras 3 (and TF 2 eager code) writes.
_KERAS3_PATH = re.compile(r"(^|/)(_operations|_functional|_layers|_all_variables)(/|$)")
# Paths whose numbers follow the model's layers, nested models expanded in place.
_ORDERED_PATH = re.compile(r"^(model/)?((_functional|_operations/\d+|layer_with_weights-\d+|"
                           r"layer-\d+)(/|$))+$")


def saved_model_variables(directory: str) -> str:
    """The checkpoint prefix of a SavedModel directory's variables."""
    return os.path.join(directory, SAVED_MODEL_VARIABLES)


def read_saved_model(tf1: Any, directory: str) -> KerasModelFile:
    """A SavedModel directory (``tf.saved_model.save``, Keras 3 ``model.export``, tf_keras
    ``model.save(dir)``): its variables, with keras_metadata.pb's configs when there is one."""
    prefix = saved_model_variables(directory)
    if not os.path.isfile(prefix + ".index"):
        raise CheckpointError("SavedModel %s has no variables (no %s.index): nothing to read"
                              % (directory, SAVED_MODEL_VARIABLES))
    metadata_path = os.path.join(directory, "keras_metadata.pb")
    metadata = keras_metadata(metadata_path) if os.path.isfile(metadata_path) else {}
    return _read(tf1, prefix, directory, SAVED_MODEL, metadata)


def read_object_checkpoint(tf1: Any, prefix: str) -> Optional[KerasModelFile]:
    """A TF 2 object checkpoint as a Keras model; None when it is a name-based (tf.train.Saver)
    checkpoint, or an object checkpoint with no sign of TF 2 Keras (no Keras 3 object path, no
    Keras 2.11+ ``_iterations`` counter, no ``save_counter``): those are read as TF1
    checkpoints. A damaged file is one CheckpointError naming it (every tensor is read once)."""
    reader = verify(tf1, prefix)
    keys = [plain_name(key) for key in reader.get_variable_to_shape_map()]
    if OBJECT_GRAPH not in keys:
        return None
    if not any(_KERAS3_PATH.search(key) or key.endswith("/_iterations") or key == "save_counter"
               for key in keys):
        return None
    return _read(tf1, prefix, prefix, TF_CHECKPOINT, {}, reader)


def _read(tf1: Any, prefix: str, path: str, kind: str, metadata: Dict[str, Dict[str, Any]],
          reader: Any = None) -> KerasModelFile:
    reader = reader if reader is not None else verify(tf1, prefix)
    try:
        shapes = reader.get_variable_to_shape_map()
        graph = reader.get_tensor(OBJECT_GRAPH) if reader.has_tensor(OBJECT_GRAPH) else None
        full_names = _full_names(graph) if graph is not None else {}
        found, warnings = _layers(shapes, full_names)
        values = {key: np.asarray(reader.get_tensor(key)) for layer in found for key in layer[2]}
        counters = {}
        for key, shape in shapes.items():
            name = plain_name(key)
            if is_step_counter_name(name) and len(shape) == 0:
                value = np.asarray(reader.get_tensor(key))
                if np.issubdtype(value.dtype, np.integer):
                    counters[name] = int(value)
    except tf1.errors.OpError as exc:
        raise CheckpointError("%s is not a readable TensorFlow checkpoint (%s)"
                              % (prefix, first_line(exc))) from None
    if not found:
        raise CheckpointError("%s has no batch-norm layer: no pair of variables named "
                              ".../moving_mean and .../moving_variance" % path)
    layers = []
    for base, name, (mean_key, variance_key) in found:
        described = metadata.get(base, {})
        config = described.get("config") if isinstance(described.get("config"), dict) else {}
        layers.append(KerasBatchNorm(
            str(config.get("name", name)), base, int(values[mean_key].size),
            number_or_none(config.get("momentum")), number_or_none(config.get("epsilon")),
            _trainable(metadata, base) if described else None,
            frozen_array(values[mean_key]), frozen_array(values[variance_key]), mean_key,
            variance_key))
    root = metadata.get("", {})
    return KerasModelFile(
        path, kind, root.get("keras_version") if root else None, root.get("class_name"),
        root.get("name"), tuple(layers), FrozenDict(counters),
        bool(metadata) and all(layer.momentum is not None for layer in layers),
        all(_ORDERED_PATH.match(layer.path) for layer in layers), tuple(warnings))


def _layers(shapes: Dict[str, Any], full_names: Dict[str, str]
            ) -> Tuple[List[Tuple[str, str, Tuple[str, str]]], List[str]]:
    """(path, layer name, (mean key, variance key)) per layer: by their keys
    ("_operations/2/moving_mean", path "_operations/2"), in natural order of the paths; else
    (exports, whose keys are "variables/<n>") by the variables' own names (path "bn_Conv1"), in
    the order of their keys."""
    keys = {plain_name(key): key for key in shapes}
    grouped: Dict[str, Dict[str, str]] = {}
    for name, key in keys.items():
        parts = moving_name(name)
        if parts:
            grouped.setdefault(parts[0], {})[parts[1]] = key
    found = []
    for base in sorted(grouped, key=natural_key):
        pair = grouped[base]
        if len(pair) == 2:
            full = moving_name(full_names.get(plain_name(pair[MOVING[0]]), ""))
            name = (full[0] if full else base).rpartition("/")[2]
            found.append((base, name, (pair[MOVING[0]], pair[MOVING[1]])))
    if found:
        return found, []
    # An export stores each variable twice: variables/<n> in the model's order, and
    # _all_variables/<n> in no useful order.
    by_full_name: Dict[str, Dict[str, str]] = {}
    for name, key in sorted(keys.items(), key=lambda item: (
            item[0].startswith("_all_variables/"), natural_key(item[0]))):
        parts = moving_name(full_names.get(name, ""))
        if parts:
            by_full_name.setdefault(parts[0], {}).setdefault(parts[1], key)
    found = [(base, base.rpartition("/")[2], (pair[MOVING[0]], pair[MOVING[1]]))
             for base, pair in by_full_name.items() if len(pair) == 2]
    warnings = ["batch-norm layers found by their variables' names only (keys such as "
                "variables/<n>): in the order of the variables"] if found else []
    return found, warnings


def _full_names(serialized: bytes) -> Dict[str, str]:
    """Checkpoint key (without the suffix) -> the variable's own name, from the object graph."""
    from .. import backend

    graph = backend.object_graph_proto()
    graph.ParseFromString(serialized)
    return {plain_name(attribute.checkpoint_key): attribute.full_name
            for node in graph.nodes for attribute in node.attributes
            if attribute.checkpoint_key.endswith(OBJECT_SUFFIX)}


def keras_metadata(path: str) -> Dict[str, Dict[str, Any]]:
    """tf_keras's keras_metadata.pb (SavedMetadata: nodes with node_path 3 and metadata 5, a
    JSON of the layer's class and config): object path ("layer_with_weights-1", "" for the
    root) -> the metadata. A node that does not parse is left out."""
    with open(path, "rb") as handle:
        data = handle.read()
    found: Dict[str, Dict[str, Any]] = {}
    try:
        for number, _, node in protowire.fields(data):
            if number != 1 or not isinstance(node, bytes):
                continue
            parts = {n: v for n, _, v in protowire.fields(node) if isinstance(v, bytes)}
            node_path = parts.get(3, b"").decode("utf-8", "replace")
            try:
                described = json.loads(parts.get(5, b"{}").decode("utf-8"))
            except ValueError:
                continue
            if isinstance(described, dict) and (node_path == "root" or
                                                node_path.startswith("root.")):
                found[node_path[len("root."):].replace(".", "/")] = described
    except ValueError:
        return found
    return found


def _trainable(metadata: Dict[str, Dict[str, Any]], base: str) -> bool:
    """The layer's flag and every enclosing model's (a frozen base freezes its layers)."""
    parts = base.split("/")
    return all(metadata.get("/".join(parts[:end]), {}).get("trainable", True) is not False
               for end in range(len(parts) + 1))
