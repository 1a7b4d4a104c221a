"""What batch norm and its moving averages should give, in numpy (float64), without TensorFlow.

Tests and reports compare the probe's measurements against these functions, never against the
probe's own output.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

REDUCTION_AXES = (0, 1, 2)  # NHWC: one statistic per channel over N, H, W
# How a layer averages its batch statistics (frameworks.py says which framework does which):
EMA = "ema"  # moving = decay * moving + (1 - decay) * batch (TensorFlow, PyTorch, Flax, Keras)
# Haiku: hidden = decay * hidden + (1 - decay) * batch from hidden = 0, and the average used is
# hidden / (1 - decay**k) after k steps (Adam's zero-debiasing), for the mean and the variance
DEBIASED = "debiased"
CUMULATIVE = "cumulative"  # PyTorch momentum=None: the mean of every step's batch statistics


def elements_per_channel(shape: Tuple[int, ...]) -> int:
    """n in the Bessel factor n / (n - 1): the number of values each channel averages over."""
    return int(np.prod([shape[axis] for axis in REDUCTION_AXES]))


def bessel_factor(n: int) -> float:
    """n / (n - 1); undefined (NaN) for n == 1."""
    return float("nan") if n == 1 else n / (n - 1.0)


def batch_mean(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).mean(axis=REDUCTION_AXES)


def batch_variance(x: np.ndarray, unbiased: bool = False) -> np.ndarray:
    """Biased (divide by n) or, with ``unbiased``, Bessel-corrected (divide by n - 1; NaN, as
    undefined, for n == 1)."""
    x = np.asarray(x, dtype=np.float64)
    if unbiased and elements_per_channel(x.shape) == 1:
        return np.full(x.shape[-1], np.nan)
    return x.var(axis=REDUCTION_AXES, ddof=1 if unbiased else 0)


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


def predicted_trajectory(train_inputs: Sequence[np.ndarray], before: Mapping[str, np.ndarray],
                         decay: float, fused: bool, zero_debias: bool = False,
                         average: str = EMA) -> Dict[str, np.ndarray]:
    """moving_mean / moving_variance [K, C] after each of the K train steps, the k-th on
    ``train_inputs[k]``, from ``before``: the update rule with each batch's mean and the
    variance the layer feeds (``fused``: n/(n-1) times the biased one). zero_debias:
    contrib's debiased mean, a zero-started average divided by 1 - decay**k. ``average``:
    EMA, DEBIASED (both statistics zero-debiased, ``before`` unused) or CUMULATIVE (the mean
    of the statistics of steps 1..k, ``before`` and ``decay`` unused)."""
    # A probe trains K steps on one input (or cycles a few batches): each distinct array's
    # statistics once, not once per step.
    statistics: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
    for x in train_inputs:
        if id(x) not in statistics:
            statistics[id(x)] = (batch_mean(x), fed_variance(x, fused))
    means = np.array([statistics[id(x)][0] for x in train_inputs])
    variances = np.array([statistics[id(x)][1] for x in train_inputs])
    k = np.arange(1, len(means) + 1, dtype=np.float64)[:, None]
    if average == CUMULATIVE:
        return {"moving_mean": np.cumsum(means, axis=0) / k,
                "moving_variance": np.cumsum(variances, axis=0) / k}
    if average == DEBIASED:
        with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 at decay 1, as Haiku
            return {name: moving_after_sequence(np.zeros_like(values[0]), values, decay)
                    / (1.0 - float(decay) ** k)
                    for name, values in (("moving_mean", means), ("moving_variance", variances))}
    predicted = {"moving_variance": moving_after_sequence(before["moving_variance"], variances,
                                                          decay)}
    if zero_debias:
        biased = moving_after_sequence(np.zeros_like(means[0]), means, decay)
        with np.errstate(invalid="ignore", divide="ignore"):
            predicted["moving_mean"] = biased / (1.0 - float(decay) ** k)
    else:
        predicted["moving_mean"] = moving_after_sequence(before["moving_mean"], means, decay)
    return predicted


def moving_after_sequence(initial: np.ndarray, values: np.ndarray, decay: float) -> np.ndarray:
    """The trajectory [K, C] of updates toward a different value [C] at each of K steps:
    ``m_k = decay**k * initial + (1 - decay) * sum_j decay**(k - j) * values_j``."""
    moving = np.asarray(initial, np.float64)
    trajectory = []
    for value in np.asarray(values, np.float64):
        moving = moving_average_update(moving, value, decay)
        trajectory.append(moving)
    return np.array(trajectory)


def population_statistics(batches: np.ndarray) -> Dict[str, np.ndarray]:
    """Over all batches [B, N, H, W, C]: the true mean and (biased) variance of every value, and
    the BN paper's inference estimate (Ioffe & Szegedy 2015, Algorithm 2): E[batch mean] and
    m/(m-1) * E[batch variance], m being the values per channel in one batch."""
    x = np.asarray(batches, np.float64)
    values = x.reshape(-1, x.shape[-1])
    m = elements_per_channel(x.shape[1:])
    return {"mean": values.mean(axis=0), "variance": values.var(axis=0),
            "paper_mean": x.mean(axis=(1, 2, 3)).mean(axis=0),
            "paper_variance": bessel_factor(m) * x.var(axis=(1, 2, 3)).mean(axis=0)}


def predicted_gaps(x: np.ndarray, decay: float, fused: bool, epsilon: float, steps: int,
                   zero_debias: bool = False, average: str = EMA) -> np.ndarray:
    """max |test output - train output| after each of ``steps`` train steps on ``x``, from the
    closed form, starting from (0, 1), gamma 1 (beta cancels out); ``average`` as for
    predicted_trajectory.

    The difference is affine in x within a channel, so its largest size is at the channel's
    smallest or largest value.
    """
    return _gaps_at(x, decay, fused, epsilon, np.arange(1, steps + 1), zero_debias, average)


def _gaps_at(x: np.ndarray, decay: float, fused: bool, epsilon: float, steps: np.ndarray,
             zero_debias: bool, average: str = EMA) -> np.ndarray:
    """predicted_gaps after each train step of ``steps`` (1-based)."""
    x = np.asarray(x, np.float64)
    mean, biased = batch_mean(x), batch_variance(x)
    k = np.asarray(steps, np.float64)[:, None]
    weight = float(decay) ** k
    if average == CUMULATIVE or (average == DEBIASED and decay < 1):
        weight = np.zeros_like(weight)  # the batch's own statistics from the first step on
    elif average == DEBIASED:  # 0/0 at decay 1, as Haiku computes it
        weight = np.full_like(weight, np.nan)
    if zero_debias:  # the batch mean itself from the first step on; 0/0 at decay 1
        debiased = mean if decay < 1 else np.full_like(mean, np.nan)
        moving_mean = np.broadcast_to(debiased, weight.shape)
    else:
        moving_mean = (1.0 - weight) * mean
    moving_var = weight + (1.0 - weight) * fed_variance(x, fused)
    train_scale = 1.0 / np.sqrt(biased + epsilon)
    test_scale = 1.0 / np.sqrt(moving_var + epsilon)
    gaps = [np.abs((test_scale - train_scale) * x.min(axis=REDUCTION_AXES)
                   - test_scale * moving_mean + train_scale * mean),
            np.abs((test_scale - train_scale) * x.max(axis=REDUCTION_AXES)
                   - test_scale * moving_mean + train_scale * mean)]
    return np.max(np.maximum(*gaps), axis=1)


def gap_floor(x: np.ndarray, fused: bool, epsilon: float) -> float:
    """The smallest max |test - train| the closed form reaches on ``x`` at any decay below 1:
    the gap once the moving statistics hold the batch's own (decay 0 after one step). 0 up to
    rounding without the fused kernel; with it, the n/(n-1) variance leaves about
    max |train output| * (1 - sqrt((n-1)/n)). NaN for one value per channel when fused."""
    return float(predicted_gaps(x, 0.0, fused, epsilon, 1)[-1])


def settled_after(decay: float, cap: int = 10 ** 6) -> int:
    """Steps after which decay**k < 1e-16: the closed form no longer changes in float64."""
    if decay <= 0.0 or decay >= 1.0:
        return 1
    return int(min(cap, np.ceil(np.log(1e-16) / np.log(decay))))


def predicted_steps_to_converge(x: np.ndarray, decay: float, fused: bool, epsilon: float,
                                tol: float, zero_debias: bool = False,
                                average: str = EMA) -> Optional[int]:
    """The first train step after which max |test - train| <= tol by the closed form, or None
    when it never gets there (decay 1, or a fused kernel's n/(n-1) gap larger than tol);
    ``average`` as for predicted_trajectory."""
    last = 1 if average != EMA else settled_after(decay)
    start, width = 1, 1024
    while start <= last:  # in growing windows: the first hit ends the search
        steps = np.arange(start, min(start + width, last + 1))
        gaps = _gaps_at(x, decay, fused, epsilon, steps, zero_debias, average)
        hits = np.nonzero(np.nan_to_num(gaps, nan=np.inf) <= tol)[0]  # NaN: never within
        if len(hits):
            return int(steps[hits[0]])
        start, width = start + width, width * 4
    return None
