"""Writing the repaired copy of a Keras model file (``.keras``, legacy ``.h5``) so that nothing
is lost, as :mod:`.writer` does for checkpoints:

- the input file is only read; ``out`` may not name it, and keeps its format (``.keras`` ->
  ``.keras``, ``.h5`` -> ``.h5``);
- the copy is made under a temporary name beside ``out``: the HDF5 weights (a ``.keras``
  file's ``model.weights.h5`` member) copied byte for byte, the moving statistics' datasets
  overwritten in place (same dtype and shape), the repair's marker added as a root attribute
  (:data:`~bn_decay_probe.checkpoints.keras_files.MARKER_ATTRIBUTE`), and for a ``.keras`` the
  zip rebuilt with every other member copied as it was (names, order, dates, compression);
- every dataset of the copy is read back and compared with the input's (bit for bit, but the
  replaced ones, which must hold the new values) before the copy is renamed to ``out``."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
import zipfile
from typing import Any, Dict, Iterator, Mapping

import numpy as np

from ..checkpoints.keras_files import MARKER_ATTRIBUTE, WEIGHTS_MEMBER, KerasModelFile
from ..checkpoints.sniff import KERAS_ZIP, import_h5py
from ..checkpoints.zip_member import open_member
from ..errors import CheckpointError, ProbeConfigError, first_line

_CHUNK = 1 << 22
H5_SUFFIXES = (".h5", ".hdf5")


def output_path(out: Any, source: str, overwrite: bool = False) -> str:
    """Checks ``out``: a new file (unless ``overwrite``) in an existing writable directory, not
    the input, with the input's suffix (Keras loads a .keras file only by that name)."""
    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
        raise ProbeConfigError("out must be a file path for the repaired copy, got %r" % (out,))
    out = os.fspath(out)
    suffixes = (".keras",) if source.lower().endswith(".keras") else H5_SUFFIXES
    if not out.lower().endswith(suffixes):
        raise ProbeConfigError("out %s: the repaired copy of %s keeps its format; give a path "
                               "ending in %s" % (out, source, " or ".join(suffixes)))
    if os.path.abspath(out) == os.path.abspath(source) or (
            os.path.exists(out) and os.path.samefile(out, source)):
        raise ProbeConfigError("out %s is the input file; the repair never writes over its "
                               "input: give a new path" % out)
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        raise ProbeConfigError("out %s: directory %s does not exist" % (out, directory))
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ProbeConfigError("out %s: directory %s is not writable" % (out, directory))
    if os.path.isdir(out):
        raise ProbeConfigError("out %s is a directory; give a file path" % out)
    if os.path.exists(out) and not overwrite:
        raise ProbeConfigError("out %s already exists; give a new path, or --overwrite" % out)
    return out


def write_copy(saved: KerasModelFile, out: str, replacements: Mapping[str, np.ndarray],
               marker: Mapping[str, Any], overwrite: bool = False) -> None:
    """Writes the copy of ``saved`` with ``replacements`` (dataset path -> value, in the
    dataset's dtype and shape) and the marker; checks it, then renames it to ``out``."""
    h5py = import_h5py()
    temporary = "%s.tmp-%s" % (out, uuid.uuid4().hex[:12])
    weights = temporary + ".weights.h5" if saved.format == KERAS_ZIP else temporary
    try:
        with _source_weights(saved) as source:
            _copy_stream(source, weights)
            source.seek(0)
            with h5py.File(weights, "r+") as copy:
                _patch(copy, replacements, marker)
            source.seek(0)
            with h5py.File(source, "r") as original, h5py.File(weights, "r") as copy:
                _verify(original, copy, replacements, saved.path)
        if saved.format == KERAS_ZIP:
            _rezip(saved.path, weights, temporary)
        if overwrite and os.path.exists(out):
            os.remove(out)
        os.replace(temporary, out)
    except OSError as exc:
        raise CheckpointError("the repaired copy could not be written to %s (%s)"
                              % (os.path.dirname(out) or ".", first_line(exc))) from None
    finally:
        for leftover in (weights, temporary):
            if os.path.exists(leftover):
                os.remove(leftover)


@contextlib.contextmanager
def _source_weights(saved: KerasModelFile) -> Iterator[Any]:
    """The input's HDF5 weights as a file object: the file itself, or a .keras member."""
    if saved.format == KERAS_ZIP:
        with zipfile.ZipFile(saved.path) as archive:
            handle = open_member(saved.path, archive, WEIGHTS_MEMBER)
    else:
        handle = open(saved.path, "rb")
    try:
        yield handle
    finally:
        handle.close()


def _copy_stream(source: Any, path: str) -> None:
    with open(path, "wb") as target:
        shutil.copyfileobj(source, target, _CHUNK)


def _patch(copy: Any, replacements: Mapping[str, np.ndarray], marker: Mapping[str, Any]) -> None:
    for key, value in replacements.items():
        dataset = copy[key]
        value = np.asarray(value)
        if value.shape != dataset.shape or value.dtype != dataset.dtype:
            raise CheckpointError("dataset %s holds %s %s; the repair has %s %s"
                                  % (key, dataset.dtype, dataset.shape, value.dtype,
                                     value.shape))
        dataset[...] = value
    copy.attrs[MARKER_ATTRIBUTE] = json.dumps(dict(marker), sort_keys=True)


def _datasets(handle: Any) -> Dict[str, Any]:
    found: Dict[str, Any] = {}
    handle.visititems(lambda name, item: found.setdefault(name, item)
                      if hasattr(item, "dtype") else None)
    return found


def _verify(original: Any, copy: Any, replacements: Mapping[str, np.ndarray],
            source: str) -> None:
    before, after = _datasets(original), _datasets(copy)
    if set(before) != set(after):
        raise CheckpointError("the copy of %s lost or gained datasets; nothing was written"
                              % source)
    for key, dataset in before.items():
        expected = np.asarray(replacements[key]) if key in replacements else dataset[()]
        written = after[key][()]
        same = (written.dtype == expected.dtype and np.shape(written) == np.shape(expected)
                and (np.array_equal(written, expected) if written.dtype.kind == "O"
                     else np.asarray(written).tobytes() == np.asarray(expected).tobytes()))
        if not same:
            raise CheckpointError("dataset %s of the copy differs from what was meant to be "
                                  "written; nothing was written" % key)


def _rezip(source: str, weights: str, target: str) -> None:
    """``source``'s members into a new zip, in order, each with its own name, date and
    compression, the weights member taken from ``weights``."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as rebuilt:
        for info in archive.infolist():
            copy = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            copy.compress_type, copy.external_attr = info.compress_type, info.external_attr
            if info.filename != WEIGHTS_MEMBER:
                rebuilt.writestr(copy, archive.read(info.filename))
                continue
            size = os.path.getsize(weights)
            with open(weights, "rb") as data, rebuilt.open(
                    copy, "w", force_zip64=size >= zipfile.ZIP64_LIMIT) as member:
                shutil.copyfileobj(data, member, _CHUNK)
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target) as rebuilt:
        if [i.filename for i in archive.infolist()] != [i.filename for i in rebuilt.infolist()] \
                or any(archive.read(name) != rebuilt.read(name) for name in archive.namelist()
                       if name != WEIGHTS_MEMBER):
            raise CheckpointError("the copy of %s lost or changed a member; nothing was written"
                                  % source)
