"""Reading a TensorFlow checkpoint (tf.train.Saver's, or an object-based one): its moving
statistics, its step counters, the repair's marker, and (object-based checkpoints) the variable
names behind its keys."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..errors import CheckpointError, first_line
from ..names import MOVING, moving_name, variable_name
from .paths import check_files, data_files
from .step_counter import is_step_counter_name

# Keys of object-based checkpoints (tf.train.Checkpoint, Keras save_weights) end in this.
OBJECT_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"
# A string tensor a repaired copy holds in addition (JSON: the keys recalibrated, batches, rows),
# so that the doctor can tell statistics recomputed from data from trained ones.
MARKER_KEY = "bn_decay_probe/repair"


@dataclass
class CheckpointContents:
    """What the doctor reads from a checkpoint."""

    prefix: str
    # layer key (the variables' common prefix in the checkpoint) -> (moving_mean, moving_variance)
    statistics: Dict[str, Tuple[np.ndarray, np.ndarray]]
    step_counters: Dict[str, int]  # plain variable name -> value
    # object-based checkpoints: layer key ("layer_with_weights-3") -> the variables' own prefix
    # ("bn_Conv1"), from the object graph the checkpoint stores
    variable_prefixes: Dict[str, str] = field(default_factory=dict)
    # what `bn-decay-probe repair` wrote into the copy, if this is one (MARKER_KEY)
    repair: Optional[Dict[str, Any]] = None

    def recalibrated(self, key: str) -> bool:
        """Whether the repair recomputed this layer's statistics from data."""
        replaced = {plain_name(k) for k in (self.repair or {}).get("keys", ())}
        return all(variable_name(key, short) in replaced for short in MOVING)


def plain_name(key: str) -> str:
    """A checkpoint key without the object-checkpoint suffix."""
    return key[:-len(OBJECT_SUFFIX)] if key.endswith(OBJECT_SUFFIX) else key


def read_checkpoint(tf1: Any, prefix: str) -> CheckpointContents:
    """Reads the moving statistics, the step counters and the object graph's names, and every
    other tensor too: TF checks each against its checksum as it reads, so a damaged file is
    found here, whatever part of it is damaged."""
    reader = open_reader(tf1, prefix)
    shapes = _guarded(prefix, lambda: reader.get_variable_to_shape_map(), "index")
    keys = {plain_name(key): key for key in shapes}
    grouped: Dict[str, Dict[str, np.ndarray]] = {}
    counters: Dict[str, int] = {}
    object_graph, repair = None, None
    for name, key in keys.items():
        value = _guarded(prefix, lambda: reader.get_tensor(key), "data")
        parts = moving_name(name)
        if parts:
            grouped.setdefault(parts[0], {})[parts[1]] = np.asarray(value,
                                                                    np.float64).reshape(-1)
        elif is_step_counter_name(name) and len(shapes[key]) == 0:
            value = np.asarray(value)
            if np.issubdtype(value.dtype, np.integer):
                counters[name] = int(value)
        elif key == OBJECT_GRAPH:
            object_graph = value
        elif key == MARKER_KEY:
            repair = _repair_marker(value)
    statistics = {name: (stats[MOVING[0]], stats[MOVING[1]])
                  for name, stats in grouped.items() if len(stats) == 2}
    if not statistics:
        raise CheckpointError("checkpoint %s has no batch-norm layer: no pair of variables "
                              "named .../moving_mean and .../moving_variance" % prefix)
    names = _variable_prefixes(object_graph) if object_graph is not None else {}
    return CheckpointContents(prefix, statistics, counters,
                              {key: names[key] for key in statistics if key in names}, repair)


def verify(tf1: Any, prefix: str) -> Any:
    """Reads every tensor of the checkpoint once (TF checks each against its checksum), so that
    a damaged file is named before anything else runs; -> its reader."""
    reader = open_reader(tf1, prefix)
    for key in _guarded(prefix, lambda: reader.get_variable_to_shape_map(), "index"):
        _guarded(prefix, lambda: reader.get_tensor(key), "data")
    return reader


def _guarded(prefix: str, read: Any, part: str) -> Any:
    """``read()``; what TF raises on a damaged file (OpError, and under TF 2.x IndexError,
    ValueError, ...) as one CheckpointError naming the file."""
    try:
        return read()
    except Exception as exc:  # pylint: disable=broad-except
        raise CheckpointError(damaged(prefix, exc, part)) from None


def damaged(prefix: str, exc: BaseException, part: str) -> str:
    """The one line for a checkpoint TF could not read: the file (``part``: "index" or "data",
    unless TF's reason names a data file) and TF's reason."""
    reason = first_line(exc)
    if part == "data" or ".data-" in reason:
        shards = data_files(prefix)
        files = shards[0] if len(shards) == 1 else "%s.data-* (%d files)" % (prefix, len(shards))
        return ("checkpoint %s cannot be read: its data file %s is damaged or does not match its "
                "index (%s)" % (prefix, files, reason))
    return ("checkpoint %s cannot be read: %s.index is not a readable checkpoint index (%s); "
            "the file is damaged, or not one tf.train.Saver wrote" % (prefix, prefix, reason))


def _repair_marker(value: Any) -> Optional[Dict[str, Any]]:
    """The repair's JSON record; None when the tensor is not one (then nothing is assumed)."""
    try:
        marker = json.loads(np.asarray(value).item())
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    return marker if isinstance(marker, dict) else None


def _variable_prefixes(serialized: bytes) -> Dict[str, str]:
    """Object checkpoints key a variable by its path in the object graph
    ("layer_with_weights-1/moving_mean"); the graph's attributes keep the variable's own name
    (full_name "bn_Conv1/moving_mean"). -> {"layer_with_weights-1": "bn_Conv1"}."""
    from .. import backend

    graph = backend.object_graph_proto()
    graph.ParseFromString(serialized)
    prefixes = {}
    for node in graph.nodes:
        for attribute in node.attributes:
            key, full = moving_name(plain_name(attribute.checkpoint_key)), \
                moving_name(attribute.full_name)
            if key and full and key[1] == full[1]:
                prefixes[key[0]] = full[0]
    return prefixes


def open_reader(tf1: Any, prefix: str) -> Any:
    """TensorFlow's reader of the checkpoint at ``prefix``; CheckpointError (one line, naming
    the file) when its files cannot be read."""
    check_files(prefix)
    index = prefix + ".index"
    if os.path.isfile(index) and os.path.getsize(index) == 0:
        raise CheckpointError("checkpoint %s cannot be read: %s is empty; the file is damaged"
                              % (prefix, index))
    return _guarded(prefix, lambda: tf1.train.NewCheckpointReader(prefix), "index")
