"""Writing the repaired copy of a checkpoint so that nothing is lost:

- the input checkpoint is never written: ``out`` may not name it, and its files are only read;
- the copy is written under a temporary prefix beside ``out`` and renamed into place only once
  it is complete and checked (the .index last, since readers look for it);
- every tensor of the input checkpoint is copied from the input file as read, not from a session,
  so every tensor but the replaced moving statistics is bit-identical -- and the copy is read
  back and compared before it is renamed.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from typing import Any, Mapping

import numpy as np

from ..checkpoints.paths import checkpoint_files
from ..checkpoints.reader import MARKER_KEY, open_reader
from ..errors import CheckpointError, first_line


def write_copy(tf1: Any, source: str, out: str, replacements: Mapping[str, np.ndarray],
               marker: Mapping[str, Any], overwrite: bool = False) -> None:
    """Writes ``source``'s tensors to ``out`` with ``replacements`` (checkpoint key -> value, in
    the key's dtype and shape) instead of the stored values, plus the marker and a copy of the
    .meta; checks the copy, then renames it into place."""
    reader = open_reader(tf1, source)
    dtypes = reader.get_variable_to_dtype_map()
    missing = sorted(set(replacements) - set(dtypes))
    if missing:
        raise CheckpointError("checkpoint %s has no tensor %s for the repaired statistics; its "
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
        for leftover in checkpoint_files(temporary):
            os.remove(leftover)


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
            raise CheckpointError("the repaired checkpoint could not be written to %s (%s)"
                                  % (os.path.dirname(prefix) or ".", first_line(exc))) from None


def _verify(tf1: Any, reader: Any, prefix: str, replacements: Mapping[str, np.ndarray],
            source: str) -> None:
    copy = open_reader(tf1, prefix)
    copied = copy.get_variable_to_dtype_map()
    original = reader.get_variable_to_dtype_map()
    if set(copied) != set(original) | {MARKER_KEY}:
        raise CheckpointError("the copy of %s lost or gained tensors; nothing was written"
                              % source)
    for key, dtype in original.items():
        expected = replacements[key] if key in replacements else reader.get_tensor(key)
        if copied[key] != dtype or not _identical(copy.get_tensor(key), expected):
            raise CheckpointError("tensor %s of the copy differs from what was meant to be "
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
        for old in checkpoint_files(out):
            os.remove(old)
    files = checkpoint_files(temporary)
    # The .index last: a reader finds the checkpoint by it, and by then the data is in place.
    files.sort(key=lambda path: path.endswith(".index"))
    for path in files:
        os.replace(path, out + path[len(temporary):])
