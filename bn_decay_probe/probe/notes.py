"""The notes of a ProbeResult: measured facts a reader could miss in the numbers (what the float32
cast of the inputs changed, update ops that did not run, one value per channel, batch variance
below epsilon, float32 overflow in the batch statistics, non-finite values), each derived from
the result's measurements and numpy (theory)."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from ..text import number, vector
from . import theory
from .frameworks import FRAMEWORKS
from .result import ProbeResult


def measured_notes(result: ProbeResult) -> Tuple[str, ...]:
    """Measured facts a reader could miss in the table, for ``ProbeResult.notes``: what the
    float32 cast of the inputs changed, update ops that did not run, one value per channel,
    batch variance below epsilon, float32 overflow in the batch statistics, non-finite values.
    """
    notes = list(result.config.cast_notes)
    if "moving_variance" not in result.batch_statistics:
        notes.append("the train branch has no moving-average update op: nothing updates "
                     "moving_mean or moving_variance (api %r, trainable=%s)"
                     % (result.config.api, result.config.trainable))
        return tuple(notes + list(_non_finite(result)))
    if result.decay < 1 and not result.moving_statistics_updated:
        notes.append("the train phase did not change moving_mean or moving_variance: their "
                     "update ops did not run (updates %r, api %r)"
                     % (result.config.updates, result.config.api))
    last = result.config.train_inputs()[-1]
    fed = result.batch_statistics["moving_variance"]
    if theory.elements_per_channel(last.shape) == 1:
        notes.append("one value per channel (N*H*W = 1): the biased batch variance is 0 and "
                     "Bessel's n/(n-1) is undefined; the %s fed moving_variance %s on %s"
                     % (_feeder(result),
                        vector(fed), ", ".join(result.device.ran_on) or result.device.target))
    train = result.outputs["train"]
    beta = result.after["train"]["beta"]
    low = [c for c, v in enumerate(fed) if np.isfinite(v) and v < result.epsilon["train"]]
    if low:
        notes.append("batch variance below epsilon (%s) in channel(s) %s: fed %s, so epsilon "
                     "dominates sqrt(variance + epsilon) and the train output there stays "
                     "within %s of beta instead of having unit variance"
                     % (number(result.epsilon["train"]), _channels(low), vector(fed[low]),
                        number(np.abs(train[..., low] - beta[low]).max())))
    for name, statistic in (("moving_mean", "mean"), ("moving_variance", "variance")):
        bad = [c for c, v in enumerate(result.batch_statistics[name]) if not np.isfinite(v)]
        if bad:
            reference = (theory.batch_mean(last) if name == "moving_mean"
                         else theory.fed_variance(last, result.unbiased_variance))
            values = train[..., bad]
            notes.append("float32 overflow: the batch %s fed to %s is %s in channel(s) %s, where "
                         "numpy in float64 gives %s (float32 ends at %.4g); of the %d train "
                         "output values there, %d are 0 and %d NaN or inf"
                         % (statistic, name, vector(result.batch_statistics[name][bad]),
                            _channels(bad), vector(reference[bad]),
                            np.finfo(np.float32).max, values.size,
                            np.count_nonzero(values == 0), np.count_nonzero(~np.isfinite(values))))
    return tuple(notes + list(_non_finite(result)))


def _feeder(result: ProbeResult) -> str:
    """What computed the batch statistics fed: TF's fused kernel or tf.nn.moments, or the
    framework's layer."""
    framework = FRAMEWORKS.get(result.config.api)
    if framework is not None:
        return "%s layer" % framework.name
    return "fused kernel" if result.fused else "non-fused path (tf.nn.moments)"


def _non_finite(result: ProbeResult) -> List[str]:
    labels = result.labels
    bad = sorted({labels[n] for values in result.snapshots.values()
                  for n, v in values.items() if not np.all(np.isfinite(v))})
    bad += ["%s output" % phase for phase, values in result.outputs.items()
            if not np.all(np.isfinite(values))]
    return ["non-finite values (NaN or inf) in %s" % ", ".join(bad)] if bad else []


def _channels(channels: Sequence[int]) -> str:
    return ", ".join(map(str, channels))
