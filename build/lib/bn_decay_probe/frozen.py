"""Read-only containers so results stay immutable, picklable and JSON-friendly."""
from __future__ import annotations

from typing import Any, Mapping

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


def frozen_arrays(mapping: Mapping[str, Any]) -> FrozenDict:
    return FrozenDict((key, frozen_array(value)) for key, value in mapping.items())
