"""Checkpoint files for a repair: checking the paths, importing the graph of the .meta beside the
checkpoint, and writing the repaired copy so that nothing is lost:

- the input checkpoint is never written: ``out`` may not name it, and its files are only read;
- the copy is written under a temporary prefix beside ``out`` and renamed into place only once
  it is complete and checked (the .index last, since readers look for it);
- every tensor of the input checkpoint is copied from the input file as read, not from a session,
  so every tensor but the replaced moving statistics is bit-identical -- and the copy is read
  back and compared before it is renamed.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import uuid
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..doctor.checkpoint_reader import MARKER_KEY
from ..errors import ProbeConfigError

# A checkpoint's own files; their prefix is the checkpoint.
_CHECKPOINT_FILE = re.compile(r"\.(index|meta|data-\d{5}-of-\d{5})$")


def input_prefix(path: Any) -> str:
    """The checkpoint prefix of ``path`` (a prefix or one of its files), checked without
    TensorFlow: it must have a .index and a .meta."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ProbeConfigError("checkpoint must be a path to a checkpoint prefix (such as "
                               "model.ckpt-1000), got %r" % (path,))
    path = os.fspath(path)
    prefix = _CHECKPOINT_FILE.sub("", path) if os.path.isfile(path) else path
    if os.path.isdir(prefix):
        raise ProbeConfigError("checkpoint %s is a directory; give the checkpoint prefix (such "
                               "as %s/model.ckpt-1000)" % (path, path.rstrip("/")))
    if not os.path.isfile(prefix + ".index"):
        raise ProbeConfigError("checkpoint %s not found: no file %s.index; give a checkpoint "
                               "prefix written by tf.train.Saver" % (path, prefix))
    if not os.path.isfile(prefix + ".meta"):
        raise ProbeConfigError("checkpoint %s has no .meta file (%s.meta), so its graph is "
                               "unknown; save with tf.train.Saver (write_meta_graph=True) or "
                               "use recalibrate() on the live graph" % (prefix, prefix))
    return prefix


def output_prefix(out: Any, source: str, overwrite: bool = False) -> str:
    """Checks ``out``: not the input checkpoint, in an existing writable directory, and (unless
    ``overwrite``) not an existing checkpoint."""
    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
        raise ProbeConfigError("out must be a checkpoint prefix for the repaired copy, got %r"
                               % (out,))
    out = os.fspath(out)
    if _CHECKPOINT_FILE.search(out):
        raise ProbeConfigError("out %s names a checkpoint file; give the prefix (without "
                               ".index/.meta/.data-...)" % out)
    if _same_prefix(out, source):
        raise ProbeConfigError("out %s is the input checkpoint; the repair never writes over "
                               "its input: give a new prefix" % out)
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        raise ProbeConfigError("out %s: directory %s does not exist" % (out, directory))
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ProbeConfigError("out %s: directory %s is not writable" % (out, directory))
    if os.path.isdir(out):
        raise ProbeConfigError("out %s is a directory; give a checkpoint prefix inside it, such "
                               "as %s" % (out, os.path.join(out, "model.ckpt")))
    existing = _files(out)
    if existing and not overwrite:
        raise ProbeConfigError("out %s already holds a checkpoint (%s); give a new prefix, or "
                               "--overwrite" % (out, os.path.basename(existing[0])))
    return out


def _same_prefix(a: str, b: str) -> bool:
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a + ".index", b + ".index")
    except OSError:
        return False


def _files(prefix: str) -> List[str]:
    return sorted(path for path in glob.glob(glob.escape(prefix) + ".*")
                  if _CHECKPOINT_FILE.search(path[len(prefix):]) and
                  _CHECKPOINT_FILE.sub("", path) == prefix)


# ---------------------------------------------------------------------------------- reading

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
        raise ProbeConfigError("%s.meta is not a readable MetaGraphDef (%s)"
                               % (prefix, _first_line(exc))) from None
    try:
        return _import(tf1, meta)
    except (ValueError, TypeError, tf1.errors.OpError) as first:
        stripped = _without_output_shapes(meta)
        if stripped is None:
            raise _import_error(prefix, first) from None
        try:
            return _import(tf1, stripped)
        except (ValueError, TypeError, tf1.errors.OpError) as exc:
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


def _import_error(prefix: str, exc: BaseException) -> ProbeConfigError:
    from .. import backend

    return ProbeConfigError("%s.meta cannot be imported by TensorFlow %s (%s)"
                            % (prefix, backend.tensorflow().__version__, _first_line(exc)))


def _first_line(exc: Any) -> str:
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def restore(tf1: Any, session: Any, saver: Any, graph: Any, prefix: str) -> None:
    """Loads the checkpoint's values into the session's variables, with the .meta's own Saver
    (its key names), or one over the global variables when the .meta has none."""
    try:
        if saver is None:
            with graph.as_default():
                saver = tf1.train.Saver(allow_empty=True)
        saver.restore(session, prefix)
    except (tf1.errors.OpError, ValueError) as exc:
        raise ProbeConfigError("checkpoint %s does not fit its .meta graph (%s)"
                               % (prefix, _first_line(exc))) from None


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


# ---------------------------------------------------------------------------------- writing

def write_copy(tf1: Any, source: str, out: str, replacements: Mapping[str, np.ndarray],
               marker: Mapping[str, Any], overwrite: bool = False) -> None:
    """Writes ``source``'s tensors to ``out`` with ``replacements`` (checkpoint key -> value, in
    the key's dtype and shape) instead of the stored values, plus the marker and a copy of the
    .meta; checks the copy, then renames it into place."""
    reader = _reader(tf1, source)
    dtypes = reader.get_variable_to_dtype_map()
    missing = sorted(set(replacements) - set(dtypes))
    if missing:
        raise ProbeConfigError("checkpoint %s has no tensor %s for the repaired statistics; its "
                               ".meta and data do not match" % (source, missing[0]))
    temporary = "%s.tmp-%s" % (out, uuid.uuid4().hex[:12])
    try:
        tensors = {key: replacements[key] if key in replacements else reader.get_tensor(key)
                   for key in sorted(dtypes)}
        tensors[MARKER_KEY] = np.array(json.dumps(dict(marker), sort_keys=True).encode())
        _save(tf1, temporary, tensors, dtypes)
        shutil.copyfile(source + ".meta", temporary + ".meta")
        _verify(tf1, reader, temporary, replacements, source)
        _rename(temporary, out, overwrite)
    finally:
        for leftover in _files(temporary):
            os.remove(leftover)


def _reader(tf1: Any, prefix: str) -> Any:
    try:
        return tf1.train.NewCheckpointReader(prefix)
    except tf1.errors.OpError as exc:
        raise ProbeConfigError("%s is not a readable TensorFlow checkpoint (%s)"
                               % (prefix, _first_line(exc))) from None


def _save(tf1: Any, prefix: str, tensors: Mapping[str, Any], dtypes: Mapping[str, Any]) -> None:
    graph = tf1.Graph()
    keys = list(tensors)
    with graph.as_default():
        feeds = [tf1.placeholder(dtypes[key] if key in dtypes else tf1.string)
                 for key in keys]
        save = tf1.raw_ops.SaveV2(prefix=prefix, tensor_names=keys,
                                  shape_and_slices=[""] * len(keys), tensors=feeds)
    with tf1.Session(graph=graph) as session:
        try:
            session.run(save, dict(zip(feeds, (tensors[key] for key in keys))))
        except tf1.errors.OpError as exc:
            raise ProbeConfigError("the repaired checkpoint could not be written to %s (%s)"
                                   % (os.path.dirname(prefix) or ".", _first_line(exc))
                                   ) from None


def _verify(tf1: Any, reader: Any, prefix: str, replacements: Mapping[str, np.ndarray],
            source: str) -> None:
    copy = _reader(tf1, prefix)
    copied = copy.get_variable_to_dtype_map()
    original = reader.get_variable_to_dtype_map()
    if set(copied) != set(original) | {MARKER_KEY}:
        raise ProbeConfigError("the copy of %s lost or gained tensors; nothing was written"
                               % source)
    for key, dtype in original.items():
        expected = replacements[key] if key in replacements else reader.get_tensor(key)
        if copied[key] != dtype or not _identical(copy.get_tensor(key), expected):
            raise ProbeConfigError("tensor %s of the copy differs from what was meant to be "
                                   "written; nothing was written" % key)


def _identical(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "O":
        return bool(np.all(a == b))
    return a.tobytes() == b.tobytes()


def _rename(temporary: str, out: str, overwrite: bool) -> None:
    if overwrite:
        for old in _files(out):
            os.remove(old)
    files = _files(temporary)
    # The .index last: a reader finds the checkpoint by it, and by then the data is in place.
    files.sort(key=lambda path: path.endswith(".index"))
    for path in files:
        os.replace(path, out + path[len(temporary):])
