"""What a TF checkpoint's .meta graph adds to its batch-norm records: each layer's decay (the
doctor's reader of the update ops), its epsilon (the fused kernel's attribute, or the constant
added to the variance before Rsqrt), and the network's order (the graph's)."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

from ..checkpoints import meta
from ..checkpoints.batch_norm import DECAY, LayerFile
from ..checkpoints.branches import BRANCHES, IF_OPS, branch_graph
from ..doctor.graph_reader import find_batch_norm_layers

_FUSED = frozenset({"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"})


def with_graph(tf1: Any, layers: LayerFile) -> Tuple[LayerFile, Optional[str]]:
    """``layers`` with decay, epsilon and order from the .meta beside the checkpoint, and the
    .meta's path; unchanged (and None) without one."""
    path = layers.path + ".meta"
    if not os.path.isfile(path):
        return layers, None
    graph, _ = meta.import_graph(tf1, layers.path)
    found = find_batch_norm_layers(tf1, graph)
    facts: Dict[str, Tuple[Optional[float], Optional[float]]] = {
        layer.name: (layer.decay, _epsilon(tf1, graph, layer.name)) for layer in found}
    order = {layer.name: i for i, layer in enumerate(found)}
    records = []
    for record in layers.layers:
        decay, epsilon = facts.get(record.name, (None, None))  # named as its variables
        records.append(dataclasses.replace(
            record, epsilon=epsilon, momentum=decay, convention=DECAY if decay is not None
            else ""))
    ordered = all(r.name in order for r in records)
    if ordered:
        records.sort(key=lambda r: order[r.name])
    return dataclasses.replace(layers, layers=tuple(records), ordered=ordered), path


def _epsilon(tf1: Any, graph: Any, scope: str) -> Optional[float]:
    """The epsilon the layer's ops add: a FusedBatchNorm's attribute, or the constant added to
    the variance before Rsqrt (tf.nn.batch_normalization), in the layer's name scope (and in
    the branches of its conds)."""
    for op in _scope_ops(graph, scope + "/"):
        if op.type in _FUSED:
            return float(op.get_attr("epsilon"))
        if op.type == "Rsqrt" and op.inputs[0].op.type in ("Add", "AddV2"):
            for tensor in op.inputs[0].op.inputs:
                if tensor.op.type == "Const":
                    value = tf1.make_ndarray(tensor.op.get_attr("value"))
                    if value.size == 1:
                        return float(value)
    return None


def _scope_ops(graph: Any, prefix: str) -> Iterator[Any]:
    """The graph's ops named under ``prefix``, and every op of their If ops' branches."""
    return _with_branches(op for op in graph.get_operations() if op.name.startswith(prefix))


def _with_branches(ops: Iterable[Any]) -> Iterator[Any]:
    """``ops``, each If op followed by the ops of its branches (and of theirs)."""
    for op in ops:
        yield op
        if op.type in IF_OPS:
            for attr in BRANCHES:
                branch = branch_graph(op, attr)
                if branch is not None:
                    yield from _with_branches(branch.get_operations())
