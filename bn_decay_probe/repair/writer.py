"""Writing the repaired copy of a checkpoint so that nothing is lost:

- the input checkpoint is never written: ``out`` may not name it, and its files are only read;
- the copy is written under a temporary prefix beside ``out`` and renamed into place only once
  it is complete and checked (the .index last, since readers look for it), with Ctrl-C held
  back while the files move, so that an interrupted repair leaves nothing at ``out``;
- a ``checkpoint`` state file beside the copy names it (tf.train.latest_checkpoint finds it),
  unless the directory already has one naming other checkpoints, which is left alone;
- every tensor of the input checkpoint is copied from the input file as read, not from a session,
  so every tensor but the replaced moving statistics is bit-identical -- and the copy is read
  back and compared before it is renamed.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from typing import Any, Mapping, Optional

import numpy as np

from .. import interrupts
from ..checkpoints.paths import STATE_FILE, checkpoint_files
from ..checkpoints.reader import MARKER_KEY, open_reader
from ..errors import CheckpointError, first_line


def write_copy(tf1: Any, source: str, out: str, replacements: Mapping[str, np.ndarray],
               marker: Mapping[str, Any], overwrite: bool = False) -> Optional[str]:
    """Writes ``source``'s tensors to ``out`` with ``replacements`` (checkpoint key -> value, in
    the key's dtype and shape) instead of the stored values, plus the marker and a copy of the
    .meta; checks the copy, then renames it into place and names it in the directory's
    ``checkpoint`` file. -> a note when that file was left as it was."""
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
        with interrupts.held():  # the files it moves are all moved
            _rename(temporary, out, overwrite)
            return _name_in_state_file(out)
    finally:
        for leftover in checkpoint_files(temporary):
            os.remove(leftover)


def _name_in_state_file(out: str) -> Optional[str]:
    """Names ``out`` in its directory's ``checkpoint`` file (as tf.train.Saver does), written
    whole through a temporary file; a state file naming other checkpoints is left alone."""
    directory, name = os.path.split(os.path.abspath(out))
    state = os.path.join(directory, STATE_FILE)
    line = "model_checkpoint_path: %s" % json.dumps(name)
    if os.path.exists(state):
        try:
            with open(state) as handle:
                lines = handle.read().splitlines()
        except (OSError, UnicodeDecodeError):
            lines = []
        if line not in lines:
            return ("%s names other checkpoints and was left as it was: give the repaired "
                    "copy's prefix %s, not its directory, to read it" % (state, out))
        return None
    temporary = "%s.tmp-%s" % (state, uuid.uuid4().hex[:12])
    try:
        with open(temporary, "w") as handle:
            handle.write("%s\nall_model_checkpoint_paths: %s\n" % (line, json.dumps(name)))
        os.replace(temporary, state)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return None


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
