"""Plain values for results: read-only containers and arrays (immutable, picklable), and arrays
to JSON and back, keeping NaN and infinities (strict JSON has no such numbers)."""
from __future__ import annotations

import json
from typing import Any, Dict, Mapping

import numpy as np


class FrozenDict(dict):
    """A dict that refuses changes after construction (and still pickles and compares)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("%s is read-only" % type(self).__name__)

    __setitem__ = __delitem__ = _refuse  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]
    __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self):  # dict's default pickling would call the refused __setitem__
        return (type(self), (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        raise TypeError("FrozenDict holds arrays and is not hashable")


def frozen_array(values: Any, dtype: Any = None) -> np.ndarray:
    """A read-only copy, so nothing outside can change what a result holds."""
    array = np.array(values, dtype=dtype)
    array.flags.writeable = False
    return array


def freeze(array: np.ndarray) -> np.ndarray:
    """Marks an array that nothing else holds (one just fetched from a session) read-only in
    place: the copy frozen_array makes would double a large output."""
    array.flags.writeable = False
    return array


# TensorFlow feeds an array this aligned without copying it (EIGEN_MAX_ALIGN_BYTES), and a
# resource variable initialized from that feed keeps the same buffer: a held input then costs
# its size once, not three times.
ALIGNMENT = 64


def aligned_empty(shape: Any, dtype: Any) -> np.ndarray:
    """A writable, uninitialized array in a buffer aligned for TensorFlow."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(size + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + size].view(dtype).reshape(shape)


def frozen_arrays(mapping: Mapping[str, Any]) -> FrozenDict:
    return FrozenDict((key, frozen_array(value)) for key, value in mapping.items())


_WORDS = {np.inf: "Infinity", -np.inf: "-Infinity"}


def json_number(value: float) -> Any:
    """A float, or "NaN" / "Infinity" / "-Infinity" (what numpy and float() read back)."""
    value = float(value)
    if np.isfinite(value):
        return value
    return "NaN" if np.isnan(value) else _WORDS[value]


def to_json_values(array: np.ndarray) -> Any:
    """Nested lists of exact floats; NaN and +-inf become the strings "NaN", "Infinity",
    "-Infinity" (strict JSON has no such numbers, and the probe must be able to show them)."""
    array = np.asarray(array)
    if np.all(np.isfinite(array)):
        return array.tolist()
    objects = array.astype(object)
    for index in zip(*np.nonzero(~np.isfinite(array))):
        objects[index] = json_number(array[index])
    return objects.tolist()


def from_json_values(values: Any, dtype: Any = np.float32) -> np.ndarray:
    """Inverse of :func:`to_json_values` (numpy parses "NaN" and "Infinity")."""
    return frozen_array(np.array(values, dtype=object).astype(np.float64).astype(dtype))


def to_json(document: Dict[str, Any]) -> str:
    """Compact JSON of a ``to_dict()`` document. allow_nan=False: results encode NaN and inf as
    strings (to_json_values); anything else non-finite is a bug."""
    return json.dumps(document, separators=(",", ":"), allow_nan=False)
