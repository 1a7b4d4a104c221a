"""What a path is, told from its name, its first bytes or its members, without TensorFlow or
Keras: a TensorFlow checkpoint, a SavedModel directory, one of the Keras files (``.keras``,
``.weights.h5``, a tf_keras ``.h5``), or something the doctor and the repair do not read (an
ONNX model, a frozen graph, a PyTorch file, a damaged zip, ...), named in one line.

:func:`sniff` decides which reader opens a path; a path it cannot place (``UNKNOWN``: no known
signature, or missing) goes to the TensorFlow checkpoint reader, whose messages say why it is no
checkpoint. HDF5 files are told apart by their root attributes and groups (h5py, imported when
such a file is met)."""
from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import dataclass
from typing import Optional

from ..errors import BackendUnavailableError, first_line
from . import protowire
from .paths import CHECKPOINT_FILE

# Kinds the doctor reads.
TF_CHECKPOINT = "tf checkpoint"  # a prefix, one of its files, or a directory of checkpoints
SAVED_MODEL = "savedmodel"  # a directory with saved_model.pb
KERAS_ZIP = "keras"  # .keras: config.json + model.weights.h5 (Keras 3; tf_keras 2.13+)
KERAS_WEIGHTS = "weights.h5"  # Keras 3 / tf_keras save_weights("x.weights.h5")
KERAS_H5 = "h5"  # legacy HDF5 model: tf_keras (or Keras 3) model.save("x.h5")
KERAS_H5_WEIGHTS = "h5 weights"  # legacy HDF5 weights: tf_keras save_weights("x.h5")
READABLE = (TF_CHECKPOINT, SAVED_MODEL, KERAS_ZIP, KERAS_WEIGHTS, KERAS_H5, KERAS_H5_WEIGHTS)
KERAS_FILES = (KERAS_ZIP, KERAS_WEIGHTS, KERAS_H5, KERAS_H5_WEIGHTS)
UNKNOWN = "unknown"
OTHER = "other"  # something known that is not read: ``what`` names it

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive's end record
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NUMPY_MAGIC = b"\x93NUMPY"
SSTABLE_MAGIC = 0xDB4775248B80FB57  # the last 8 bytes of a checkpoint's .index (LevelDB table)
TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # the first object legacy torch.save pickles
KERAS_MEMBERS = ("config.json", "model.weights.h5")
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
_HEAD = 4096


@dataclass(frozen=True)
class PathKind:
    """What a path is: ``kind`` (one of READABLE, OTHER or UNKNOWN) and ``what``, the words for
    it in a message ("a Keras .keras model", "an ONNX model")."""

    kind: str
    what: str

    @property
    def readable(self) -> bool:
        return self.kind in READABLE

    @property
    def keras(self) -> bool:
        return self.kind in KERAS_FILES


def sniff(path: str) -> PathKind:
    """What ``path`` is; reads at most its first and last few kilobytes (an HDF5 file: its root
    attributes and group names)."""
    if os.path.isdir(path):
        names = set(os.listdir(path))
        if names & {"saved_model.pb", "saved_model.pbtxt"}:
            return PathKind(SAVED_MODEL, "a SavedModel directory")
        if names >= set(KERAS_MEMBERS):
            return PathKind(OTHER, "an unzipped .keras model (a directory with config.json and "
                                   "model.weights.h5; zip it back into one .keras file)")
        return PathKind(TF_CHECKPOINT, "a directory of TensorFlow checkpoints")
    if not os.path.isfile(path):
        return PathKind(UNKNOWN, "a path that does not exist")
    if CHECKPOINT_FILE.search(path) or os.path.isfile(path + ".index"):
        return PathKind(TF_CHECKPOINT, "a TensorFlow checkpoint")
    with open(path, "rb") as handle:
        head = handle.read(_HEAD)
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(size - 8, 0))
        tail = handle.read(8)
    return _by_content(path, head, tail)


def _by_content(path: str, head: bytes, tail: bytes) -> PathKind:
    if head.startswith(HDF5_MAGIC):
        return _hdf5(path)
    if head.startswith(ZIP_MAGIC):
        return _zip(path)
    if head.startswith(NUMPY_MAGIC):
        return PathKind(OTHER, "a numpy array (.npy: data for the repair's --data, not a model)")
    if len(tail) == 8 and struct.unpack("<Q", tail)[0] == SSTABLE_MAGIC:
        return PathKind(TF_CHECKPOINT, "a TensorFlow checkpoint's .index")
    if head[4:8] == b"TFL3":
        return PathKind(OTHER, "a TensorFlow Lite model (.tflite: a flat buffer without moving "
                               "statistics variables)")
    pickled = _pickle(head)
    if pickled:
        return PathKind(OTHER, pickled)
    if head.lstrip().startswith((b"node {", b"node{")):
        return PathKind(OTHER, "a text GraphDef (.pbtxt)")
    message = _protobuf(os.path.basename(path), head)
    if message:
        return PathKind(OTHER, message)
    if path.lower().endswith(KERAS_SUFFIXES):
        return PathKind(OTHER, "neither a zip nor an HDF5 file, as Keras writes them (a cut or "
                               "overwritten file?)")
    return PathKind(UNKNOWN, "a file of unknown kind")


def _hdf5(path: str) -> PathKind:
    h5py = import_h5py()
    try:
        with h5py.File(path, "r") as handle:
            attributes, groups = set(handle.attrs.keys()), set(handle.keys())
    except (OSError, ValueError, RuntimeError) as exc:
        return PathKind(OTHER, "a damaged HDF5 file (%s)" % first_line(exc))
    if "model_config" in attributes:
        return PathKind(KERAS_H5, "a Keras .h5 model")
    if "layer_names" in attributes:
        return PathKind(KERAS_H5_WEIGHTS, "a Keras .h5 weights file")
    if groups & {"layers", "vars", "optimizer"}:
        return PathKind(KERAS_WEIGHTS, "a Keras .weights.h5 file")
    return PathKind(OTHER, "an HDF5 file without Keras weights (no model_config, layer_names, "
                           "layers or vars)")


def _zip(path: str) -> PathKind:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return PathKind(OTHER, "a damaged zip file (%s)" % first_line(exc))
    members = set(names)
    if "config.json" in members and "model.weights.h5" in members:
        return PathKind(KERAS_ZIP, "a Keras .keras model")
    if "config.json" in members and "model.weights.npz" in members:
        return PathKind(OTHER, "a .keras model whose weights are in model.weights.npz (not read: "
                               "save with the default HDF5 weights)")
    if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        return PathKind(OTHER, "a PyTorch file (torch.save)")
    if names and all(name.endswith(".npy") for name in names):
        return PathKind(OTHER, "a numpy .npz archive (data for the repair's --data, not a model)")
    if "config.json" in members:
        return PathKind(OTHER, "a zip with config.json but no model.weights.h5 (a .keras file "
                               "missing its weights)")
    return PathKind(OTHER, "a zip file without a Keras model (no config.json and "
                           "model.weights.h5)")


def _pickle(head: bytes) -> Optional[str]:
    """A pickle (protocol 2 or later starts with PROTO): legacy torch.save pickles its magic
    number first (LONG1 of 10 bytes)."""
    if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= 5:
        return None
    if head[2:4] == b"\x8a\x0a" and int.from_bytes(head[4:14], "little") == TORCH_MAGIC:
        return "a PyTorch file (legacy torch.save)"
    return "a Python pickle"


def _protobuf(name: str, head: bytes) -> Optional[str]:
    """Which TensorFlow or ONNX message a binary .pb / .onnx holds, by its first fields:
    SavedModel (schema version 1, then meta graphs), ONNX (ir_version 3-30), a GraphDef (nodes
    whose first field is a name) or keras_metadata.pb (objects with a node id or path)."""
    found = protowire.leading_fields(head)
    if not found:
        return None
    number, kind, value = found[0]
    numbers = {field[0] for field in found}
    if (number, kind, value) == (1, protowire.VARINT, 1) and len(found) > 1 and \
            found[1][:2] == (2, protowire.LENGTH):
        return "a SavedModel's saved_model.pb (give its directory)"
    if (number, kind) == (1, protowire.VARINT) and 3 <= int(value) <= 30 and \
            numbers & {2, 7, 8}:
        return "an ONNX model"
    if (number, kind) == (1, protowire.LENGTH) and numbers <= {1, 2, 3, 4}:
        inner = protowire.leading_fields(value, 2) or []  # type: ignore[arg-type]
        if name == "keras_metadata.pb" or (inner and inner[0][:2] in (
                (2, protowire.VARINT), (3, protowire.LENGTH))):
            return "a tf_keras SavedModel's keras_metadata.pb (give the SavedModel directory)"
        if inner and inner[0][:2] == (1, protowire.LENGTH):
            return ("a frozen TensorFlow graph (GraphDef .pb: constants, no moving statistics "
                    "variables)")
    return None


def import_h5py() -> object:
    """h5py, which reads Keras's HDF5 files; one line naming the package when it is missing."""
    try:
        import h5py
    except ImportError:
        raise BackendUnavailableError("reading Keras .keras / .h5 files needs h5py: pip install "
                                      "h5py") from None
    return h5py
