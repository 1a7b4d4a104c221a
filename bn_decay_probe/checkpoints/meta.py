"""A checkpoint's graph: its .meta imported (one importer for the doctor, the repair and the
port), the checkpoint's values restored into a session of it, and what its Saver says (the
checkpoint key of each variable, partitioned variables)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import CheckpointError, first_line


def import_graph(tf1: Any, prefix: str) -> Tuple[Any, Any]:
    """A new graph holding the .meta's graph, and the Saver the .meta describes (None if it has
    none). Devices are cleared (the graph runs where this process can). Some TF 2.x releases
    refuse a TF 1.x .meta whose ``_output_shapes`` hints contradict their shape functions
    (e.g. on gradient ops); those hints are then dropped and the import retried."""
    meta = tf1.MetaGraphDef()
    try:
        with open(prefix + ".meta", "rb") as handle:
            meta.ParseFromString(handle.read())
    except Exception as exc:  # protobuf's DecodeError and OSError
        raise CheckpointError("%s.meta is not a readable MetaGraphDef (%s)"
                              % (prefix, first_line(exc))) from None
    # TF's importer fails in many ways: ValueError, TypeError, KeyError (an op this
    # TensorFlow does not have), OpError.
    try:
        return _import(tf1, meta)
    except Exception as first:  # pylint: disable=broad-except
        stripped = _without_output_shapes(meta)
        if stripped is None:
            raise _import_error(prefix, first) from None
        try:
            return _import(tf1, stripped)
        except Exception as exc:  # pylint: disable=broad-except
            raise _import_error(prefix, exc) from None


def _import(tf1: Any, meta: Any) -> Tuple[Any, Any]:
    graph = tf1.Graph()
    with graph.as_default():
        saver = tf1.train.import_meta_graph(meta, clear_devices=True)
    return graph, saver


def _without_output_shapes(meta: Any) -> Any:
    copy = type(meta)()
    copy.CopyFrom(meta)
    found = False
    for node in copy.graph_def.node:
        if "_output_shapes" in node.attr:
            del node.attr["_output_shapes"]
            found = True
    for function in copy.graph_def.library.function:
        for node in function.node_def:
            if "_output_shapes" in node.attr:
                del node.attr["_output_shapes"]
                found = True
    return copy if found else None


def _import_error(prefix: str, exc: BaseException) -> CheckpointError:
    from .. import backend

    return CheckpointError("%s.meta cannot be imported by TensorFlow %s (%s)"
                           % (prefix, backend.tensorflow().__version__, first_line(exc)))


def restore(tf1: Any, session: Any, saver: Any, graph: Any, prefix: str) -> None:
    """Loads the checkpoint's values into the session's variables, with the .meta's own Saver
    (its key names), or one over the global variables when the .meta has none."""
    try:
        if saver is None:
            with graph.as_default():
                saver = tf1.train.Saver(allow_empty=True)
        saver.restore(session, prefix)
    except (tf1.errors.OpError, ValueError) as exc:
        raise CheckpointError("checkpoint %s does not fit its .meta graph (%s)"
                              % (prefix, first_line(exc))) from None


def variable_keys(graph: Any) -> Dict[str, str]:
    """Variable op name -> checkpoint key, read from the .meta's restore ops (a Saver may save a
    variable under another name); variables no restore op names map to their own name."""
    keys: Dict[str, str] = {}
    for op in graph.get_operations():
        if op.type not in ("RestoreV2", "Restore", "RestoreSlice"):
            continue
        names = _constant_strings(op.inputs[1])
        if names is None:
            continue
        for index, output in enumerate(op.outputs):
            for consumer in _through_identity(output):
                if consumer.type in ("Assign", "AssignVariableOp") and index < len(names):
                    target = consumer.inputs[0].op
                    keys.setdefault(target.name, names[index])
    return keys


def _constant_strings(tensor: Any) -> Optional[List[str]]:
    op = tensor.op
    while op.type == "Identity":
        op = op.inputs[0].op
    if op.type != "Const":
        return None
    from .. import backend

    value = backend.tensorflow().make_ndarray(op.get_attr("value"))
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(value).reshape(-1)]


def _through_identity(tensor: Any) -> List[Any]:
    found = []
    for consumer in tensor.consumers():
        if consumer.type == "Identity":
            found.extend(_through_identity(consumer.outputs[0]))
        else:
            found.append(consumer)
    return found


def partitioned(graph: Any) -> bool:
    """Whether the .meta's Saver saves slices (partitioned variables), which the copy could not
    reproduce key for key."""
    for op in graph.get_operations():
        if op.type in ("SaveV2", "SaveSlices"):
            slices = _constant_strings(op.inputs[2])
            if slices and any(slices):
                return True
    return False
