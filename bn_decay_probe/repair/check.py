"""The repair's check, in numpy: for each layer, how far inference mode's normalization is from
what the layer's input really is in inference mode.

Inference normalizes a layer's input x with its moving statistics, ``(x - mean) / sqrt(variance
+ epsilon)``. What it should normalize with are the input's own mean ``m`` and population
variance ``v`` -- the data as it reaches the layer through the layers above it, each of those
normalizing with its own moving statistics, as inference runs them. Over the data, per channel,
the difference of the two normalizations has mean square

    ((m - mean) / s)**2 + v * (1 / s - 1 / sqrt(v + epsilon))**2,    s = sqrt(variance + epsilon)

and the layer's error is its root mean over the channels: in units of the normalized output
(whose own spread is 1), 0 when the statistics are the data's. Measured before the repair (with
the old statistics, and the old statistics above) and after, on every row checked. It does not
depend on how the data was split into batches, and with more data it only comes closer to the
data's own value. NaN statistics give NaN."""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np

from .pooled import PooledMoments


def normalization_error(mean: np.ndarray, variance: np.ndarray, seen: PooledMoments,
                        epsilon: float) -> float:
    """The RMS difference, over the input values ``seen`` summarizes, between normalizing with
    (``mean``, ``variance``) and with the input's own statistics."""
    if seen.mean is None or seen.variance is None:
        return math.nan
    mean = np.asarray(mean, np.float64).reshape(-1)
    variance = np.asarray(variance, np.float64).reshape(-1)
    own_mean, own_variance = seen.mean, seen.variance
    with np.errstate(all="ignore"):  # NaN and negative variances give NaN, as they should
        scale = np.sqrt(variance + epsilon)
        square = (((own_mean - mean) / scale) ** 2
                  + own_variance * (1.0 / scale - 1.0 / np.sqrt(own_variance + epsilon)) ** 2)
        return float(np.sqrt(np.mean(square)))


def worst(errors: Sequence[Tuple[str, float]]) -> Tuple[Optional[str], float]:
    """The layer with the largest error (a NaN error counts as the largest); (None, NaN) when
    there is none."""
    if not errors:
        return None, math.nan
    nan = [item for item in errors if math.isnan(item[1])]
    return nan[0] if nan else max(errors, key=lambda item: item[1])


def mean(errors: Sequence[float]) -> float:
    return float(np.mean(errors)) if len(errors) else math.nan
