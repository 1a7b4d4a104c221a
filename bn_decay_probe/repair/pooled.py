"""Population mean and variance of a layer's input, pooled over batches (numpy only, no TF).

Each batch contributes its per-channel count ``n``, mean and biased (divide-by-``n``) variance;
the pool merges them with Chan, Golub and LeVeque's pairwise update in float64:

    delta = mean_b - mean;  total = count + n
    mean += delta * n / total
    M2   += n * var_b + delta**2 * count * n / total

so that after the last batch ``mean`` and ``M2 / count`` are the mean and the population
variance of every value of every batch, whatever the batch sizes, with no sum of squares (which
loses the variance to cancellation when the mean is large against the spread).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def unbessel(variance: np.ndarray, count: int) -> np.ndarray:
    """The biased variance behind a Bessel-corrected one (``var * n/(n-1)``, what the fused
    kernel outputs). With ``count`` 1 the correction is undefined; TF's CPU kernel then returns
    the biased variance (0), which a single value has anyway, so 0 is returned."""
    variance = np.asarray(variance, np.float64)
    if count <= 1:
        return np.zeros_like(variance)
    return variance * ((count - 1) / count)


def batch_moments(values: np.ndarray, axis: int = -1) -> Tuple[int, np.ndarray, np.ndarray]:
    """(count per channel, mean, biased variance) of ``values`` in float64, ``axis`` being the
    channel axis: every other axis is reduced."""
    values = np.asarray(values)
    moved = np.moveaxis(values, axis, -1).reshape(-1, values.shape[axis])
    mean = moved.mean(axis=0, dtype=np.float64)
    centered = moved.astype(np.float64) - mean
    return moved.shape[0], mean, np.einsum("ij,ij->j", centered, centered) / max(moved.shape[0], 1)


class PooledMoments:
    """Running count, mean and sum of squared deviations (M2) of one layer's channels."""

    def __init__(self, channels: int) -> None:
        self.channels = int(channels)
        self.count = 0  # values per channel
        self.batches = 0
        self._mean = np.zeros(self.channels, np.float64)
        self._m2 = np.zeros(self.channels, np.float64)

    def add(self, count: int, mean: np.ndarray, variance: np.ndarray) -> None:
        """Merges a batch of ``count`` values per channel with this ``mean`` and biased
        ``variance`` (per channel)."""
        count = int(count)
        mean = np.asarray(mean, np.float64).reshape(-1)
        variance = np.asarray(variance, np.float64).reshape(-1)
        if mean.size != self.channels or variance.size != self.channels:
            raise ValueError("batch statistics have %d and %d channels, the layer %d"
                             % (mean.size, variance.size, self.channels))
        if count <= 0:
            return  # an empty batch adds nothing (and its statistics are NaN)
        self.batches += 1
        total = self.count + count
        delta = mean - self._mean
        self._mean = self._mean + delta * (count / total)
        self._m2 = self._m2 + variance * count + delta * delta * (self.count * count / total)
        self.count = total

    def add_values(self, values: np.ndarray, axis: int = -1) -> None:
        """Merges raw values of one batch, ``axis`` being the channel axis."""
        self.add(*batch_moments(values, axis))

    @property
    def mean(self) -> Optional[np.ndarray]:
        """Population mean per channel, None before any value."""
        return self._mean.copy() if self.count else None

    @property
    def variance(self) -> Optional[np.ndarray]:
        """Population (biased, divide-by-count) variance per channel, None before any value."""
        # Rounding can leave M2 a hair below 0 for a constant channel.
        return np.maximum(self._m2 / self.count, 0.0) if self.count else None
