"""The data a repair runs on: batches read from a file one at a time, or any iterable of arrays,
each checked (shape, dtype, finite values) before it is fed. No TensorFlow here.

Files:
- ``FILE.npy``: one array, its first axis split into batches of ``batch_size`` rows (the last
  batch may be smaller). Read batch by batch, so memory holds one batch.
- ``FILE.npz``: every array, in the file's order, is one batch (arrays may have different numbers
  of rows); with ``batch_size`` each array is split into batches of that many rows.
- ``FILE.npz:NAME``: only the array NAME, split into batches as a ``.npy`` (also read batch by
  batch, compressed or not).
"""
from __future__ import annotations

import contextlib
import os
import zipfile
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional, Sequence, Tuple

import numpy as np

from ..errors import DataError, ProbeConfigError

DEFAULT_BATCH_SIZE = 32
_FORMATS = "a .npy file (split into batches of --batch-size rows), a .npz file (one batch per " \
           "array) or FILE.npz:NAME (that array, split into batches)"


@dataclass(frozen=True)
class ArrayInfo:
    name: str  # "" for a .npy
    shape: Tuple[int, ...]
    dtype: str
    fortran_order: bool = False


@dataclass(frozen=True)
class DataFile:
    """A data file, checked from its headers only (nothing is loaded until :meth:`batches`)."""

    path: str
    arrays: Tuple[ArrayInfo, ...]  # the arrays that will be read, in order
    split_arrays: bool  # .npy or a named .npz array: split into batches even without batch_size

    def batch_count(self, batch_size: Optional[int], max_batches: Optional[int] = None) -> int:
        count = sum(_chunks(info.shape[0], self._size(info, batch_size)) for info in self.arrays)
        return count if max_batches is None else min(count, max_batches)

    def _size(self, info: ArrayInfo, batch_size: Optional[int]) -> int:
        if batch_size is not None:
            return batch_size
        return DEFAULT_BATCH_SIZE if self.split_arrays else max(info.shape[0], 1)

    def batches(self, batch_size: Optional[int] = None,
                max_batches: Optional[int] = None) -> Iterator[np.ndarray]:
        """The batches in order, each read from the file when it is asked for: memory holds one
        batch, however many the file has."""
        produced = 0
        for info in self.arrays:
            size = self._size(info, batch_size)
            for batch in _read_rows(self.path, info, size):
                if max_batches is not None and produced >= max_batches:
                    return
                produced += 1
                yield batch


def _chunks(rows: int, size: int) -> int:
    return max(-(-rows // size), 1)


def _shape_text(shape: Sequence[Optional[int]]) -> str:
    return "(%s)" % ", ".join("?" if d is None else str(d) for d in shape)


def check_batch_size(value: Any, name: str = "batch_size") -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < 1:
        raise ProbeConfigError("%s must be a positive integer, got %r" % (name, value))
    return int(value)


def open_data(spec: Any) -> DataFile:
    """Checks a data file (``FILE.npy``, ``FILE.npz`` or ``FILE.npz:NAME``) from its headers."""
    if not isinstance(spec, (str, os.PathLike)) or not os.fspath(spec):
        raise DataError("data must be a file path: %s, got %r" % (_FORMATS, spec))
    spec = os.fspath(spec)
    path, name = spec, None
    if not os.path.exists(spec) and ":" in spec:
        path, _, name = spec.rpartition(":")
        if not path.lower().endswith(".npz") or not name:
            path, name = spec, None
    if not os.path.isfile(path):
        raise DataError("data %s not found; give %s" % (path, _FORMATS))
    lower = path.lower()
    try:
        if lower.endswith(".npy"):
            if name is not None:
                raise DataError("data %s: only a .npz has named arrays" % spec)
            arrays = (_npy_info(path),)
        elif lower.endswith(".npz"):
            arrays = _npz_infos(path, name)
        else:
            raise DataError("data %s: unknown file type; give %s" % (path, _FORMATS))
    except ProbeConfigError:
        raise
    except Exception as exc:  # pylint: disable=broad-except  (a damaged header or archive:
        # OSError, ValueError, zipfile's BadZipFile, EOFError, SyntaxError, tokenize's TokenError)
        raise DataError("data %s is not a readable numpy file (%s)"
                        % (path, _reason(exc))) from None
    for info in arrays:
        _check_array(path, info)
    return DataFile(path, arrays, split_arrays=lower.endswith(".npy") or name is not None)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _npy_info(path: str) -> ArrayInfo:
    with open(path, "rb") as handle:
        return ArrayInfo("", *_header(handle))


def _header(handle: Any) -> Tuple[Tuple[int, ...], str, bool]:
    """(shape, dtype, Fortran order) from a .npy header; ``handle`` is left at the data."""
    version = np.lib.format.read_magic(handle)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
        np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read(handle)
    return (tuple(int(d) for d in shape), dtype.str if dtype.fields is None else "structured",
            bool(fortran_order))


def _npz_infos(path: str, name: Optional[str]) -> Tuple[ArrayInfo, ...]:
    with zipfile.ZipFile(path) as archive:
        names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
        if name is not None:
            if name not in names:
                raise DataError("data %s has no array %r; it holds %s"
                                % (path, name, ", ".join(names) or "no array"))
            names = [name]
        infos = []
        for member in names:
            with archive.open(member + ".npy") as handle:
                infos.append(ArrayInfo(member, *_header(handle)))
    if not infos:
        raise DataError("data %s holds no array" % path)
    return tuple(infos)


def _check_array(path: str, info: ArrayInfo) -> None:
    where = "data %s%s" % (path, " array %r" % info.name if info.name else "")
    kind = np.dtype(info.dtype).kind if info.dtype != "structured" else "V"
    if kind not in "fiub":
        raise DataError("%s has dtype %s; give numbers (float, int or bool)"
                        % (where, info.dtype))
    if not info.shape:
        raise DataError("%s is a scalar; give an array whose first axis is the batch"
                        % where)
    if info.shape[0] == 0:
        raise DataError("%s has no rows (shape %s)" % (where, _shape_text(info.shape)))


@contextlib.contextmanager
def _stream(path: str, info: ArrayInfo) -> Iterator[Any]:
    """The file (a .npy, or an .npz member) opened and read past its header."""
    with contextlib.ExitStack() as stack:
        def opened() -> Any:
            if info.name:
                archive = stack.enter_context(zipfile.ZipFile(path))
                handle = stack.enter_context(archive.open(info.name + ".npy"))
            else:
                handle = stack.enter_context(open(path, "rb"))
            _header(handle)
            return handle

        yield _reading(path, opened)


def _reading(path: str, read: Any) -> Any:
    """``read()``, with what a damaged or vanished file raises (OSError, zipfile's BadZipFile
    and CRC errors, zlib.error, EOFError, a changed header's ValueError) as one DataError."""
    try:
        return read()
    except ProbeConfigError:
        raise
    except Exception as exc:  # pylint: disable=broad-except
        raise DataError("data %s cannot be read (%s): the file is damaged or changed while "
                        "read" % (path, _reason(exc))) from None


def _read_rows(path: str, info: ArrayInfo, size: int) -> Iterator[np.ndarray]:
    """Consecutive pieces of ``size`` rows, read in sequence (a .npy is not memory-mapped: the
    pages of a mapping stay in the process's resident memory as it reads on). An array stored
    in Fortran order has no contiguous rows: it is read whole."""
    dtype = np.dtype(info.dtype)
    rows = info.shape[0]
    with _stream(path, info) as handle:
        if info.fortran_order and len(info.shape) > 1:
            whole = np.frombuffer(_read_exactly(path, handle, rows * _row_bytes(info)),
                                  dtype).reshape(info.shape, order="F")
            for start in range(0, rows, size):
                yield whole[start:start + size]
            return
        for start in range(0, rows, size):
            count = min(size, rows - start)
            batch = np.empty((count,) + info.shape[1:], dtype)
            view = memoryview(batch.reshape(-1).view(np.uint8))
            got = _reading(path, lambda: handle.readinto(view))
            if got != view.nbytes:
                raise DataError("data %s ends early: rows %d to %d are missing"
                                % (path, start, rows))
            yield batch


def _row_bytes(info: ArrayInfo) -> int:
    return int(np.prod(info.shape[1:], dtype=np.int64)) * np.dtype(info.dtype).itemsize


def _read_exactly(path: str, handle: Any, size: int) -> bytes:
    data = _reading(path, lambda: handle.read(size))
    if len(data) != size:
        raise DataError("data %s ends early (%d of %d bytes)" % (path, len(data), size))
    return data


# ------------------------------------------------------------------------------ batch checks

@dataclass(frozen=True)
class InputSpec:
    """What an input tensor takes: its name, static shape (None: any) and numpy dtype."""

    name: str
    shape: Optional[Tuple[Optional[int], ...]]  # None: unknown rank
    dtype: str


def prepare_batch(batch: Any, index: int, spec: InputSpec) -> np.ndarray:
    """``batch`` as a C-contiguous array of the input's dtype, after checking that it fits the
    input and holds only finite values; one-line DataError otherwise."""
    where = "batch %d" % index
    try:
        array = np.asarray(batch)
    except Exception as exc:  # e.g. ragged lists
        raise DataError("%s is not an array (%s)" % (where, _reason(exc))) from None
    if array.dtype.kind not in "fiub":
        raise DataError("%s has dtype %s; the input %s takes %s numbers"
                        % (where, array.dtype, spec.name, spec.dtype))
    shape = spec.shape
    if shape is not None and (array.ndim != len(shape) or any(
            d is not None and d != a for d, a in zip(shape, array.shape))):
        raise DataError("%s has shape %s; the input %s takes %s"
                        % (where, _shape_text(array.shape), spec.name, _shape_text(shape)))
    if array.ndim == 0 or array.shape[0] == 0:
        raise DataError("%s has no rows (shape %s)" % (where, _shape_text(array.shape)))
    fed = np.ascontiguousarray(array, dtype=spec.dtype)
    if fed.dtype.kind == "f" and not np.isfinite(fed).all():
        bad = int(np.count_nonzero(~np.isfinite(fed)))
        raise DataError("%s holds %d NaN or infinite value(s) (of %d); batch statistics "
                        "would be NaN: clean the data" % (where, bad, fed.size))
    return fed


def input_batches(batches: Iterable[Any], count: int) -> Iterator[Tuple[Any, ...]]:
    """Each item of ``batches`` as a tuple of ``count`` arrays (one per input tensor)."""
    if isinstance(batches, (np.ndarray, str, bytes)) or not hasattr(batches, "__iter__"):
        raise DataError("batches must be an iterable of arrays (a list, a generator, a "
                        "tf.data numpy iterator), got %s" % type(batches).__name__)
    for index, item in enumerate(batches):
        if count == 1:
            if isinstance(item, (tuple, list)) and len(item) != 1 and _arrays(item):
                raise DataError(
                    "batch %d is a tuple of %d arrays, the graph has one input; give the input "
                    "arrays alone, e.g. (x for x, _ in dataset.as_numpy_iterator())"
                    % (index, len(item)))
            yield (item[0] if isinstance(item, (tuple, list)) and len(item) == 1
                   and _arrays(item) else item,)
        else:
            if not isinstance(item, (tuple, list)) or len(item) != count:
                raise DataError("batch %d must be a tuple of %d arrays, one per input, "
                                "got %s" % (index, count, type(item).__name__))
            yield tuple(item)


def _arrays(items: Sequence[Any]) -> bool:
    return all(hasattr(item, "shape") for item in items)


def rereadable(batches: Any) -> bool:
    """A list can be read again; a generator or an iterator (iter() gives itself) cannot."""
    return hasattr(batches, "__iter__") and iter(batches) is not batches
