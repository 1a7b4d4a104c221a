"""The checks of one layer pair, in numpy: what each of the target's values does to the layer's
inference output, and the findings that follow.

Every framework's inference normalizes with the stored statistics as they are:
``gamma * (x - mean) / sqrt(variance + epsilon) + beta``. Which variance a framework *feeds*
its running average (PyTorch and TF's fused kernel n/(n-1) times the batch's, Keras 3 and Flax
the batch's own) changes what the next training step adds, not what the stored number means; so
a port keeps a layer's inference output when it copies the numbers unchanged and epsilon with
them. The check runs one seeded input (per channel the source's mean plus its standard deviation
times normal draws) through the source's formula and through the target's, and reports the
largest |difference| over the largest |source output|; then again with only one value (mean,
variance, epsilon, gamma, beta) taken from the target, which says which value changed it.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..checkpoints.batch_norm import NO_DECAY, ONE_MINUS_DECAY, BatchNormRecord
from . import result as codes
from .result import ERROR, WARNING, LayerPair, PortFinding

TOLERANCE = 1e-5  # largest relative output difference of a layer the port keeps
EPSILON_RATIO = 0.01  # epsilons further apart than 1% differ, whatever their effect here
DECAY_TOLERANCE = 1e-6  # decays equal up to float32 storage (0.999 as float32: 0.99900001)
SAMPLES = 64  # seeded input values per channel
FACTORS = ("mean", "variance", "epsilon", "gamma", "beta")

_TEXT = {
    codes.UNPAIRED_LAYER: (
        ERROR, "a batch-norm layer of one side has no partner on the other: the port lost it "
        "(or added one), so its statistics are not where the other side has them",
        "port the layer's gamma, beta, moving mean and variance; if it is there under another "
        "name, pair the two in --map FILE"),
    codes.STATISTICS_NOT_COPIED: (
        ERROR, "the target's running statistics are a new layer's (mean 0, variance 1, or none "
        "kept): the source's were not copied, so inference normalizes with the wrong numbers",
        "copy moving_mean to running_mean and moving_variance to running_var for this layer"),
    codes.STATISTICS_MISMATCH: (
        ERROR, "the target's running statistics differ from the source's, so inference "
        "normalizes with other numbers",
        "copy the source's moving mean and variance unchanged (no n/(n-1) conversion: every "
        "framework normalizes with the stored variance) and check the name map for layers it "
        "swaps"),
    codes.AFFINE_MISMATCH: (
        ERROR, "the target's gamma or beta differ from the source's, so the layer scales or "
        "shifts its output otherwise",
        "copy gamma to the scale (PyTorch: weight) and beta to the offset (PyTorch: bias)"),
    codes.EPSILON_MISMATCH: (
        ERROR, "the target adds another epsilon to the variance than the source (TF's 1e-3 "
        "against PyTorch's 1e-5 is the usual one), which changes the inference output most "
        "where the variance is small",
        "give the target layer the source's epsilon (PyTorch: BatchNorm2d(eps=E) or "
        "module.eps = E)"),
    codes.MOMENTUM_NOT_INVERTED: (
        WARNING, "PyTorch's momentum is 1 - decay, but the target's is the source's decay: "
        "fine-tuning would keep only 1 - decay of the running statistics per step (inference "
        "is unaffected)",
        "set momentum = 1 - decay (TF decay 0.997 is PyTorch momentum 0.003)"),
    codes.MOMENTUM_MISMATCH: (
        WARNING, "the target's momentum stands for another decay than the source's: "
        "fine-tuning would average the statistics otherwise (inference is unaffected)",
        "set the target's momentum to the source's decay as the target spells it (PyTorch: "
        "1 - decay; ONNX, Keras, Flax: the decay)"),
}


def finding(code: str, layer: str, detail: str = "") -> PortFinding:
    severity, explanation, fix = _TEXT[code]
    return PortFinding(layer, code, severity, explanation, fix, detail)


def _normalized(x: np.ndarray, values: Dict[str, np.ndarray]) -> np.ndarray:
    return (values["gamma"] * (x - values["mean"]) / np.sqrt(values["variance"]
                                                             + values["epsilon"])
            + values["beta"])


def _values(layer: BatchNormRecord, other: BatchNormRecord) -> Dict[str, np.ndarray]:
    """The layer's inference values; what it does not hold (epsilon, gamma, beta not read)
    taken from ``other``, so that only what both hold is compared."""
    def pick(field: str) -> np.ndarray:
        own = getattr(layer, field)
        if own is None:
            own = getattr(other, field)
        return np.asarray(own if own is not None else (0.0 if field == "beta" else 1.0),
                          np.float64)

    return {"mean": np.asarray(layer.mean), "variance": np.asarray(layer.variance),
            "epsilon": pick("epsilon"), "gamma": pick("gamma"), "beta": pick("beta")}


def differences(source: BatchNormRecord, target: BatchNormRecord) -> Dict[str, float]:
    """"inference": the largest |target output - source output| / largest |source output| on
    the seeded input; each factor's: the same with only that value taken from the target."""
    ours, theirs = _values(source, target), _values(target, source)
    z = np.random.RandomState(0).standard_normal((SAMPLES, source.channels))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        x = ours["mean"] + np.sqrt(np.abs(ours["variance"]) + ours["epsilon"]) * z
        base = _normalized(x, ours)
        scale = np.max(np.abs(base)) if np.all(np.isfinite(base)) else np.nan
        scale = scale if scale > 0 else 1.0

        def difference(values: Dict[str, np.ndarray]) -> float:
            return float(np.max(np.abs(_normalized(x, values) - base)) / scale)

        found = {"inference": difference(theirs)}
        for factor in FACTORS:
            found[factor] = difference(dict(ours, **{factor: theirs[factor]}))
    return found


def _beyond(value: float) -> bool:
    return not value <= TOLERANCE  # NaN is beyond


def check_pair(source: BatchNormRecord, target: BatchNormRecord, paired_by: str,
               sources: Sequence[BatchNormRecord]) -> Tuple[LayerPair, List[PortFinding]]:
    """The pair's measurements and findings; ``sources``: every source layer (for swaps)."""
    found = differences(source, target)
    pair = LayerPair(source.name, target.name, source.channels, paired_by, source.epsilon,
                     target.epsilon, source.decay, target.momentum, target.convention,
                     tuple(found.items()))
    findings: List[PortFinding] = []
    label = pair.label
    if _beyond(found["mean"]) or _beyond(found["variance"]):
        if _fresh(target) and not _fresh(source):
            findings.append(finding(codes.STATISTICS_NOT_COPIED, label, _fresh_detail(target)))
        else:
            findings.append(finding(codes.STATISTICS_MISMATCH, label,
                                    _mismatch_detail(source, target, found, sources)))
    if source.gamma is not None and target.gamma is not None and (
            _beyond(found["gamma"]) or _beyond(found["beta"])):
        findings.append(finding(codes.AFFINE_MISMATCH, label,
                                "output changed by up to %.3g (gamma), %.3g (beta)"
                                % (found["gamma"], found["beta"])))
    if source.epsilon is not None and target.epsilon is not None and (
            _beyond(found["epsilon"])
            or abs(target.epsilon / source.epsilon - 1.0) > EPSILON_RATIO):
        findings.append(finding(codes.EPSILON_MISMATCH, label,
                                "source %g, target %g; output changed by up to %.3g"
                                % (source.epsilon, target.epsilon, found["epsilon"])))
    momentum = _momentum_finding(source, target, label)
    if momentum:
        findings.append(momentum)
    return dataclasses.replace(pair, codes=tuple(f.code for f in findings)), findings


def _fresh(layer: BatchNormRecord) -> bool:
    """Statistics a new layer has: mean 0 and variance 1 (or 0, Haiku's start), or none."""
    mean, variance = np.asarray(layer.mean), np.asarray(layer.variance)
    if np.all(np.isnan(mean)) and np.all(np.isnan(variance)):
        return True
    return bool(np.all(mean == 0) and (np.all(variance == 1) or np.all(variance == 0)))


def _fresh_detail(target: BatchNormRecord) -> str:
    if np.all(np.isnan(target.mean)):
        return ("the target keeps no running statistics (a torch module with "
                "track_running_stats=False normalizes with each batch's, even in eval())")
    return "target mean all 0, variance all %g" % float(np.asarray(target.variance)[0])


def _mismatch_detail(source: BatchNormRecord, target: BatchNormRecord,
                     found: Dict[str, float], sources: Sequence[BatchNormRecord]) -> str:
    parts = ["output changed by up to %.3g (mean), %.3g (variance)"
             % (found["mean"], found["variance"])]
    for other in sources:
        if other.name != source.name and other.channels == target.channels:
            copied = differences(other, target)
            if not _beyond(copied["mean"]) and not _beyond(copied["variance"]):
                parts.append("the target holds source layer %s's statistics (layers swapped, "
                             "or a wrong name in the map)" % other.name)
                break
    ratio = _constant_ratio(source, target)
    if ratio is not None:
        parts.append(ratio)
    return "; ".join(parts)


def _constant_ratio(source: BatchNormRecord, target: BatchNormRecord) -> Optional[str]:
    """"variance x n/(n-1) ..." when the target's variance is the source's times one factor
    n/(n-1) or (n-1)/n for a whole n: a biased <-> unbiased conversion."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.asarray(target.variance) / np.asarray(source.variance)
    ratios = ratios[np.isfinite(ratios)]
    if not ratios.size or np.ptp(ratios) > 1e-5 * abs(ratios.mean()):
        return None
    ratio = float(ratios.mean())
    if not np.array_equal(np.asarray(source.mean), np.asarray(target.mean)) or ratio == 1.0:
        return None
    for factor, form in ((ratio, "n/(n-1)"), (1.0 / ratio, "(n-1)/n")):
        if factor > 1.0:
            n = factor / (factor - 1.0)
            if n >= 2 and abs(n - round(n)) < 1e-3 * n:
                return ("the target's variance is the source's x %.6g = %s for n = %d: a "
                        "biased <-> unbiased conversion, which no framework's inference wants"
                        % (ratio, form, round(n)))
    return None


def _momentum_finding(source: BatchNormRecord, target: BatchNormRecord,
                      label: str) -> Optional[PortFinding]:
    decay = source.decay
    if decay is None or (target.momentum is None and target.convention != NO_DECAY):
        return None  # not checked: said by the caller
    if target.convention == NO_DECAY:
        return finding(codes.MOMENTUM_MISMATCH, label,
                       "the target's momentum is None: a cumulative average of every batch, no "
                       "decay; the source's decay is %g" % decay)
    if abs(target.decay - decay) <= DECAY_TOLERANCE:  # type: ignore[operator]
        return None
    expected = 1.0 - decay if target.convention == ONE_MINUS_DECAY else decay
    detail = "source decay %.6g: expected momentum %.4g, got %.6g" % (
        decay, expected, target.momentum)
    if "momentum" in target.defaults:
        detail += " (the format's default: the file stores no momentum)"
    if target.convention == ONE_MINUS_DECAY and abs(target.momentum - decay) <= DECAY_TOLERANCE:
        return finding(codes.MOMENTUM_NOT_INVERTED, label, detail)
    return finding(codes.MOMENTUM_MISMATCH, label, detail)
