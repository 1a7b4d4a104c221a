"""A checkpoint's graph: its .meta imported (one importer for the doctor, the repair and the
port), the checkpoint's values restored into a session of it, and what its Saver says (the
checkpoint key of each variable, partitioned variables)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import CheckpointError, first_line


def read_meta(tf1: Any, prefix: str) -> Any:
    """The MetaGraphDef of ``prefix``.meta; CheckpointError naming the file when it is damaged
    (empty, cut short, bytes changed, a directory)."""
    path = prefix + ".meta"
    meta = tf1.MetaGraphDef()
    try:
        with open(path, "rb") as handle:
            content = handle.read()
        meta.ParseFromString(content)
    except Exception as exc:  # protobuf's DecodeError (its class differs by version), OSError
        raise CheckpointError("%s is not a readable MetaGraphDef (%s): the file is damaged, or "
                              "not a .meta tf.train.Saver wrote"
                              % (path, first_line(exc))) from None
    if not content or not meta.graph_def.node:
        raise CheckpointError("%s holds no graph (%s): the file is damaged, or not a .meta "
                              "tf.train.Saver wrote" % (path, "empty" if not content else
                                                        "no node"))
    return meta


def import_graph(tf1: Any, prefix: str, meta: Any = None) -> Tuple[Any, Any]:
    """A new graph holding the .meta's graph (``meta``: its MetaGraphDef if already read), and
    the Saver the .meta describes (None if it has none). Devices are cleared (the graph runs
    where this process can). What another TensorFlow wrote is imported as far as it can be,
    each repair tried in turn when the import fails:

    - some TF 2.x releases refuse a TF 1.x .meta whose ``_output_shapes`` hints contradict
      their shape functions (e.g. on gradient ops): the hints are dropped;
    - a TF 2.x graph may list in a collection ops that live in a cond's branch function (the
      update ops a layer adds to UPDATE_OPS inside tf.cond): those entries are dropped;
    - TF 1.15 does not know attributes TF 2.x adds to ops (``debug_name`` of a variable): they
      are dropped; and it lacks ops TF 2.x puts in variables' initializers (stateless random
      ops): they are replaced by placeholders of their output types (nothing here runs an
      initializer; the values come from the checkpoint).
    """
    meta = read_meta(tf1, prefix) if meta is None else meta
    # TF's importer fails in many ways: ValueError, TypeError, KeyError (an op this
    # TensorFlow does not have), OpError, and on a damaged file others still.
    try:
        return _import(tf1, meta)
    except Exception as first:  # pylint: disable=broad-except
        current = meta
        for repair in (_without_output_shapes, _without_dangling_collections,
                       _without_unknown_attrs, _with_stub_ops):
            repaired = repair(current)
            if repaired is None:
                continue
            current = repaired
            try:
                return _import(tf1, current)
            except Exception:  # pylint: disable=broad-except
                continue
        raise _import_error(prefix, first) from None


def _import(tf1: Any, meta: Any) -> Tuple[Any, Any]:
    graph = tf1.Graph()
    with graph.as_default():
        saver = tf1.train.import_meta_graph(meta, clear_devices=True)
    return graph, saver


def _copy(meta: Any) -> Any:
    copy = type(meta)()
    copy.CopyFrom(meta)
    return copy


def _without_output_shapes(meta: Any) -> Any:
    copy = _copy(meta)
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


def _without_dangling_collections(meta: Any) -> Any:
    """The .meta without collection entries naming ops its graph does not have."""
    copy = _copy(meta)
    nodes = {node.name for node in copy.graph_def.node}
    found = False
    for collection in copy.collection_def.values():
        if collection.WhichOneof("kind") != "node_list":
            continue
        kept = [value for value in collection.node_list.value
                if value.split(":")[0].lstrip("^") in nodes]
        if len(kept) != len(collection.node_list.value):
            del collection.node_list.value[:]
            collection.node_list.value.extend(kept)
            found = True
    return copy if found else None


def _without_unknown_attrs(meta: Any) -> Any:
    """The .meta without the attributes its ops' definitions here do not declare (those TF
    adds for itself, named "_...", are kept)."""
    from .. import backend

    copy = _copy(meta)
    found = False
    definitions: Dict[str, Any] = {}
    nodes = list(copy.graph_def.node) + [node for function in copy.graph_def.library.function
                                         for node in function.node_def]
    for node in nodes:
        if node.op not in definitions:
            definitions[node.op] = backend.op_def(node.op)
        definition = definitions[node.op]
        if definition is None:
            continue
        declared = {attr.name for attr in definition.attr}
        for name in [name for name in node.attr if name not in declared
                     and not name.startswith("_")]:
            del node.attr[name]
            found = True
    return copy if found else None


# Output types of the TF 2.x ops TF 1.15 lacks that initializers use: a list of dtype enum values
# (uint64 = 23, int32 = 3) or the attr that holds the one output's type.
_STUB_OUTPUTS = {"StatelessRandomGetKeyCounter": [23, 23],
                 "StatelessRandomGetKeyCounterAlg": [23, 23, 3],
                 "StatelessRandomGetAlg": [3],
                 "StatelessRandomUniformV2": "dtype", "StatelessRandomNormalV2": "dtype",
                 "StatelessTruncatedNormalV2": "dtype", "StatelessRandomUniformIntV2": "dtype",
                 "StatelessRandomUniformFullIntV2": "dtype"}


def _with_stub_ops(meta: Any) -> Any:
    """The .meta with each op this TensorFlow lacks (of those above) replaced by placeholders
    of its output types; None when there is none or one it cannot stand in for."""
    from .. import backend

    copy = _copy(meta)
    missing = [node for node in copy.graph_def.node if backend.op_def(node.op) is None]
    if not missing or any(node.op not in _STUB_OUTPUTS for node in missing):
        return None
    for node in missing:
        outputs = _STUB_OUTPUTS[node.op]
        types = [node.attr[outputs].type] if isinstance(outputs, str) else list(outputs)
        name, stubs = node.name, []
        for index, dtype in enumerate(types):
            stub = copy.graph_def.node.add()
            stub.name, stub.op = "%s/bn_decay_probe_stub_%d" % (name, index), "Placeholder"
            stub.attr["dtype"].type = dtype
            stubs.append(stub.name)
        node.Clear()
        node.name, node.op = name, "IdentityN"
        node.input.extend(stubs)
        node.attr["T"].list.type.extend(types)
    return copy


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
