"""Arrays to JSON and back, keeping NaN and infinities (strict JSON has no such numbers)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .frozen import frozen_array

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
