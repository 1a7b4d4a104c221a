"""What batch norm and its moving averages should give, in numpy (float64), without TensorFlow.

Tests and reports compare the probe's measurements against these functions, never against the
probe's own output.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

import numpy as np

REDUCTION_AXES = (0, 1, 2)  # NHWC: one statistic per channel over N, H, W


def elements_per_channel(shape: Tuple[int, ...]) -> int:
    """n in the Bessel factor n / (n - 1): the number of values each channel averages over."""
    return int(np.prod([shape[axis] for axis in REDUCTION_AXES]))


def bessel_factor(n: int) -> float:
    """n / (n - 1); undefined (inf) for n == 1."""
    return float("inf") if n == 1 else n / (n - 1.0)


def batch_mean(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).mean(axis=REDUCTION_AXES)


def batch_variance(x: np.ndarray, unbiased: bool = False) -> np.ndarray:
    """Biased (divide by n) or, with ``unbiased``, Bessel-corrected (divide by n - 1)."""
    return np.asarray(x, dtype=np.float64).var(axis=REDUCTION_AXES, ddof=1 if unbiased else 0)


def fed_variance(x: np.ndarray, fused: bool) -> np.ndarray:
    """The variance TF 1.x feeds the moving average: biased when not fused, n/(n-1) when fused."""
    return batch_variance(x, unbiased=fused)


def moving_average_update(moving: np.ndarray, value: np.ndarray, decay: float) -> np.ndarray:
    """One update: ``moving = decay * moving + (1 - decay) * value``."""
    return decay * np.asarray(moving, np.float64) + (1.0 - decay) * np.asarray(value, np.float64)


def moving_after_steps(initial: np.ndarray, value: np.ndarray, decay: float,
                       steps: int) -> np.ndarray:
    """Closed form after ``steps`` updates toward the same value:
    ``decay**k * initial + (1 - decay**k) * value``."""
    weight = float(decay) ** steps
    return weight * np.asarray(initial, np.float64) + (1.0 - weight) * np.asarray(value, np.float64)


def normalize(x: np.ndarray, mean: np.ndarray, variance: np.ndarray, epsilon: float,
              beta: Optional[np.ndarray] = None, gamma: Optional[np.ndarray] = None) -> np.ndarray:
    """``gamma * (x - mean) / sqrt(variance + epsilon) + beta``, per channel (last axis)."""
    y = (np.asarray(x, np.float64) - mean) / np.sqrt(np.asarray(variance, np.float64) + epsilon)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y


def train_output(x: np.ndarray, epsilon: float, beta: Optional[np.ndarray] = None,
                 gamma: Optional[np.ndarray] = None) -> np.ndarray:
    """Training mode normalizes with the batch's own mean and biased variance."""
    return normalize(x, batch_mean(x), batch_variance(x), epsilon, beta, gamma)


def predicted_after_train(x: np.ndarray, before: Mapping[str, np.ndarray], decay: float,
                          steps: int, fused: bool) -> Dict[str, np.ndarray]:
    """moving_mean / moving_variance after ``steps`` train runs on ``x``, from ``before``: the
    closed form with the batch mean and the variance the (non-)fused path feeds."""
    statistics = {"moving_mean": batch_mean(x), "moving_variance": fed_variance(x, fused)}
    return {name: moving_after_steps(before[name], value, decay, steps)
            for name, value in statistics.items()}
