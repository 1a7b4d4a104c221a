"""Reading an ONNX model's ``BatchNormalization`` nodes as batch-norm records: scale, bias, mean
and variance from the initializers (or Constant nodes) their inputs name, ``epsilon`` and
``momentum`` from their attributes (ONNX's defaults, 1e-5 and 0.9, where a node has none:
tf2onnx writes no momentum). ONNX's momentum is the decay:
``running_mean = running_mean * momentum + mean * (1 - momentum)``. Nodes come in the graph's
order, which ONNX requires to be topological: the network's order. A model whose batch norm was
folded into its convolutions (tf2onnx's default optimizers, any Keras 3 export) has no such
node, and says so.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import numpy as np

from .. import imports
from ..errors import CheckpointError, first_line
from .batch_norm import DECAY, BatchNormRecord, LayerFile, record

ONNX_EPSILON, ONNX_MOMENTUM = 1e-5, 0.9  # the operator's defaults


def read_onnx(path: str) -> LayerFile:
    """The BatchNormalization nodes of an ONNX model; CheckpointError (one line) for a file
    that is none, or has no such node."""
    imports.require(["onnx"], "reading the ONNX model %s" % path)
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(os.fspath(path))
    except Exception as exc:  # protobuf's DecodeError, OSError, missing external data
        raise CheckpointError("%s is not a readable ONNX model (%s)"
                              % (path, first_line(exc))) from None
    graph = model.graph
    constants: Dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i)
                                        for i in graph.initializer}
    identities: Dict[str, str] = {}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute:
            for attribute in node.attribute:
                if attribute.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(attribute.t)
        elif node.op_type == "Identity":
            identities[node.output[0]] = node.input[0]
    layers: List[BatchNormRecord] = []
    notes: List[str] = []
    for index, node in enumerate(graph.node):
        if node.op_type != "BatchNormalization":
            continue
        name = node.name or node.output[0] or "BatchNormalization_%d" % index
        values = [_constant(constants, identities, tensor) for tensor in node.input[1:5]]
        if len(values) < 4 or any(v is None for v in values):
            notes.append("node %s: its statistics are not constants of the model (computed "
                         "at run time), so it is left out" % name)
            continue
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        scale, bias, mean, variance = values
        layers.append(record(
            name, mean, variance, gamma=scale, beta=bias,
            epsilon=float(attributes.get("epsilon", ONNX_EPSILON)),
            momentum=float(attributes.get("momentum", ONNX_MOMENTUM)), convention=DECAY,
            keys=(name,) + tuple(node.input[1:5]),
            defaults=tuple(key for key in ("epsilon", "momentum") if key not in attributes)))
    if not layers:
        raise CheckpointError(
            "%s has no BatchNormalization node with constant statistics: its batch norm was "
            "folded into the convolutions (tf2onnx's default optimizers do that; keep the nodes "
            "with optimizers without 'remove_back_to_back'), or it has none" % path)
    return LayerFile(os.fspath(path), "ONNX model", tuple(layers), True, tuple(notes))


def _constant(constants: Dict[str, np.ndarray], identities: Dict[str, str],
              tensor: str) -> Optional[Any]:
    """The value of ``tensor`` when it is an initializer or a Constant, through Identity
    nodes."""
    seen = set()
    while tensor in identities and tensor not in constants and tensor not in seen:
        seen.add(tensor)
        tensor = identities[tensor]
    return constants.get(tensor)
