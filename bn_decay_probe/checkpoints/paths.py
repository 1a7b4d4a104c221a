"""Where a checkpoint is: a path (a prefix, one of its files, or a directory) resolved to the
checkpoint's prefix, checked without TensorFlow so that a typo fails at once; and the checks of
a path a new checkpoint is written to."""
from __future__ import annotations

import glob
import os
import re
from typing import Any, List

from ..errors import CheckpointError, ProbeConfigError, first_line

# A checkpoint's own files; their prefix is the checkpoint.
CHECKPOINT_FILE = re.compile(r"\.(index|meta|data-\d{5}-of-\d{5})$")
# The file in a checkpoint directory naming its checkpoints (tf.train.latest_checkpoint).
STATE_FILE = "checkpoint"


def data_files(prefix: str) -> List[str]:
    """The checkpoint's data files (.data-00000-of-00001, ...), sorted."""
    return [path for path in checkpoint_files(prefix) if ".data-" in path[len(prefix):]]


def check_files(prefix: str) -> None:
    """CheckpointError naming the file when one of the checkpoint's own files is a directory:
    what TF's readers would otherwise report obscurely."""
    candidates = [prefix + ".index", prefix + ".meta"] + sorted(
        path for path in glob.glob(glob.escape(prefix) + ".data-*")
        if CHECKPOINT_FILE.sub("", path) == prefix)
    for path in candidates:
        if os.path.isdir(path):
            raise CheckpointError("%s is a directory, not a checkpoint file" % path)


def _prefix_of(path: Any, message: str) -> str:
    """``path`` as a string, without the suffix of a checkpoint file it names; ``message``
    (with %r) when it is no path."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ProbeConfigError(message % (path,))
    path = os.fspath(path)
    return CHECKPOINT_FILE.sub("", path) if os.path.isfile(path) else path


def existing_prefix(path: Any) -> str:
    """The checkpoint prefix (or directory) ``path`` names, for reading."""
    prefix = _prefix_of(path, "checkpoint path must be a string or os.PathLike, got %r")
    if os.path.isdir(prefix) or os.path.isfile(prefix) or os.path.isfile(prefix + ".index"):
        return prefix
    check_files(prefix)
    raise CheckpointError("checkpoint %s not found: give a checkpoint prefix (such as "
                          "model.ckpt-1000, which has a .index file) or a directory holding a "
                          "'checkpoint' file" % os.fspath(path))


def latest_checkpoint(tf1: Any, directory: str) -> str:
    """The checkpoint the directory's ``checkpoint`` file names, as tf.train.latest_checkpoint."""
    state = os.path.join(directory, STATE_FILE)
    if os.path.isdir(state):
        raise CheckpointError("%s is a directory, not the checkpoint state file "
                              "tf.train.Saver writes" % state)
    try:
        prefix = tf1.train.latest_checkpoint(directory)
    except Exception as exc:  # pylint: disable=broad-except  (text-format parse errors)
        raise CheckpointError("%s is not a readable checkpoint state file (%s): the file is "
                              "damaged, or not one tf.train.Saver wrote"
                              % (state, first_line(exc))) from None
    if prefix is None:
        raise CheckpointError("no checkpoint in directory %s: it has no readable 'checkpoint' "
                              "file naming an existing checkpoint; give a checkpoint prefix or "
                              "a directory written by tf.train.Saver" % directory)
    return prefix


def input_prefix(path: Any) -> str:
    """The prefix of a checkpoint with its graph: a .index and a .meta (what the repair needs)."""
    prefix = _prefix_of(path, "checkpoint must be a path to a checkpoint prefix (such as "
                              "model.ckpt-1000), got %r")
    path = os.fspath(path)
    if os.path.isdir(prefix):
        raise CheckpointError("checkpoint %s is a directory; give the checkpoint prefix (such "
                              "as %s/model.ckpt-1000)" % (path, path.rstrip("/")))
    check_files(prefix)
    if not os.path.isfile(prefix + ".index"):
        raise CheckpointError("checkpoint %s not found: no file %s.index; give a checkpoint "
                              "prefix written by tf.train.Saver" % (path, prefix))
    if not os.path.isfile(prefix + ".meta"):
        raise CheckpointError("checkpoint %s has no .meta file (%s.meta), so its graph is "
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
    if CHECKPOINT_FILE.search(out):
        raise ProbeConfigError("out %s names a checkpoint file; give the prefix (without "
                               ".index/.meta/.data-...)" % out)
    if same_prefix(out, source):
        raise ProbeConfigError("out %s is the input checkpoint; the repair never writes over "
                               "its input: give a new prefix" % out)
    check_out_directory(out)
    if os.path.isdir(out):
        raise ProbeConfigError("out %s is a directory; give a checkpoint prefix inside it, such "
                               "as %s" % (out, os.path.join(out, "model.ckpt")))
    existing = checkpoint_files(out)
    if existing and not overwrite:
        raise ProbeConfigError("out %s already holds a checkpoint (%s); give a new prefix, or "
                               "--overwrite" % (out, os.path.basename(existing[0])))
    return out


def check_out_directory(out: str) -> None:
    """The directory a repaired copy ``out`` goes into exists and is writable."""
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        raise ProbeConfigError("out %s: directory %s does not exist" % (out, directory))
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ProbeConfigError("out %s: directory %s is not writable" % (out, directory))


def same_prefix(a: str, b: str) -> bool:
    """Whether two prefixes name the same checkpoint (also through links)."""
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a + ".index", b + ".index")
    except OSError:
        return False


def checkpoint_files(prefix: str) -> List[str]:
    """The files of the checkpoint at ``prefix`` (.index, .meta, .data-*), sorted."""
    return sorted(path for path in glob.glob(glob.escape(prefix) + ".*")
                  if CHECKPOINT_FILE.search(path[len(prefix):]) and
                  CHECKPOINT_FILE.sub("", path) == prefix)
