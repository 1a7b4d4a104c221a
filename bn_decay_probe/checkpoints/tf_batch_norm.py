"""A TensorFlow checkpoint's batch-norm layers as records (:mod:`.batch_norm`), read through
:mod:`.reader`: per layer (a prefix with moving_mean and moving_variance) its gamma and beta
(ones and zeros when the layer has none), in tf.train.Saver checkpoints and object-based ones
(Keras ``save_weights``, tf.train.Checkpoint), whose layers are named by the variables' own
names the object graph keeps (``bn_Conv1``) with the checkpoint's keys beside them.

A checkpoint stores neither epsilon nor decay: they live in the graph (the .meta, which
:mod:`..port.tf_graph` reads). Its order is its keys' sorted order, not the network's, except in
an object checkpoint of a Keras model, whose keys number the layers (``layer_with_weights-3``).
"""
from __future__ import annotations

import re
from typing import Any, List

from .batch_norm import BatchNormRecord, LayerFile, record
from .reader import OBJECT_SUFFIX, open_reader, plain_name, read_checkpoint

_NUMBERED = re.compile(r"(?:^|/)layer_with_weights-(\d+)$")


def read_tf_checkpoint(tf1: Any, prefix: str) -> LayerFile:
    """The batch-norm layers of the checkpoint at ``prefix``; CheckpointError (one line) when it
    is unreadable or has none."""
    contents = read_checkpoint(tf1, prefix)
    reader = open_reader(tf1, prefix)
    keys = {plain_name(key): key for key in reader.get_variable_to_shape_map()}
    layers: List[BatchNormRecord] = []
    for key, (mean, variance) in contents.statistics.items():
        affine = {}
        for field, default in (("gamma", 1.0), ("beta", 0.0)):
            found = keys.get("%s/%s" % (key, field))
            affine[field] = (reader.get_tensor(found) if found is not None
                             else default + 0.0 * mean)
        name = contents.variable_prefixes.get(key, key)
        layers.append(record(name, mean, variance, keys=(key,) if key != name else (),
                             **affine))
    numbered = [_NUMBERED.search(layer_key) for layer_key in contents.statistics]
    ordered = bool(numbered) and all(numbered)
    if ordered:  # an object checkpoint of a Keras model: its keys number the layers
        index = {layer.name: int(match.group(1)) for layer, match in zip(layers, numbered)}
        layers.sort(key=lambda layer: index[layer.name])
    kind = "TF object checkpoint" if any(k.endswith(OBJECT_SUFFIX) for k in keys.values()) \
        else "TF checkpoint"
    return LayerFile(prefix, kind, tuple(layers), ordered)
