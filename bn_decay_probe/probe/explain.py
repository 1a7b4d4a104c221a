"""Why a test output never gets within ``tol`` of the train output: the cause, with its value,
and what to change (no TensorFlow).

``steps_to_converge``, the reports and the semantics matrix put this beside a "never", so a
reader learns the reason from the output itself: the fused kernel's n/(n-1) floor above tol,
decay 1, update ops that never ran or do not exist, unshared train and test variables, one
value per channel.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from .frameworks import FRAMEWORKS
from .theory import CUMULATIVE, DEBIASED


def _g(value: float) -> str:
    return "%.4g" % value


def why_never(*, decay: float, fused: bool, n: int, floor: float, tol: float,
              has_update_op: bool, updated: bool, shared: bool, trainable: bool = True,
              stopped: str = "", api: str = "contrib") -> str:
    """The reason the gap can never get within ``tol``, with what to change, or "" when nothing
    rules it out.

    Args:
      decay, tol: as probed. fused: the layer feeds n/(n-1) times the biased variance (TF's
        fused kernel; PyTorch). api: the probe's api. n: values per channel (N*H*W). floor:
        the closed form's
        gap once the moving statistics hold the batch's (decay 0 after one step: the limit
        for any decay below 1). has_update_op: the train branch has a moving-average update.
        updated: a train step changed the moving statistics. shared: the test branch reads only
        variables the train branch updates. stopped: why a measurement ended early, if it did.
    """
    if not shared:
        return ("the test branch reads its own copy of the variables, which training never "
                "updates: build train and test with one layer (the same scope with reuse, "
                "the same name, or the same tf.keras object; share_variables=True)")
    if not has_update_op:
        return ("the train branch has no moving-average update op%s, so moving_mean and "
                "moving_variance keep their initial 0 and 1: use a layer that updates them"
                % ("" if trainable else " (trainable=False)"))
    framework = FRAMEWORKS.get(api)
    average = framework.average if framework else ""
    if decay >= 1 and average == DEBIASED:
        return ("decay 1: Haiku's zero-debiased average divides by 1 - decay**k = 0, so it is "
                "0/0 (NaN): use a decay below 1 (Haiku requires decay_rate < 1)")
    if decay >= 1 and average != CUMULATIVE:
        return ("decay 1 keeps moving_mean at 0 and moving_variance at 1 (moving = 1 * moving "
                "+ 0 * batch), so the test output stays the input / sqrt(1 + epsilon): use a "
                "decay below 1 (TF's default is 0.999)")
    if not updated:
        return ("the update ops never ran, so moving_mean and moving_variance keep their "
                "initial 0 and 1: run them with every train step (updates='inplace', or the "
                "train op under tf.control_dependencies(UPDATE_OPS), or layer.updates for "
                "tf.keras)")
    if n == 1:
        return ("one value per channel (N*H*W = 1): the batch variance is 0 and the fused "
                "kernel's n/(n-1) is undefined: use more than one value per channel")
    if floor > tol:
        if fused and framework is not None:
            return ("%s feeds its running variance n/(n-1) = %d/%d times the biased batch "
                    "variance that normalizes the train output, so the gap cannot fall below "
                    "%s (n = N*H*W = %d), above tol %s: use more values per channel, or a tol of "
                    "at least %s" % (framework.name, n, n - 1, _g(floor), n, _g(tol), _g(floor)))
        if fused:
            return ("the fused kernel feeds moving_variance n/(n-1) = %d/%d times the biased "
                    "batch variance that normalizes the train output, so the gap cannot fall "
                    "below %s (n = N*H*W = %d), above tol %s: use fused=False (--no-fused), "
                    "more values per channel, or a tol of at least %s"
                    % (n, n - 1, _g(floor), n, _g(tol), _g(floor)))
        return ("the gap cannot fall below %s, the closed form's limit, above tol %s: use a tol "
                "of at least %s" % (_g(floor), _g(tol), _g(floor)))
    if stopped.startswith("the variables stopped"):
        return ("%s: each update (1 - decay) * (batch - moving) rounds to nothing in float32, "
                "so the gap cannot shrink: use a smaller decay" % stopped)
    return ""


def with_reason(convergence: Any, **facts: Any) -> Any:
    """``convergence`` (a Convergence) with ``why_never`` filled from ``facts`` (why_never's
    arguments) when it did not converge; unchanged when it did."""
    if convergence.measured is not None:
        return convergence
    reason = why_never(tol=convergence.tol, stopped=convergence.stopped, **facts)
    return dataclasses.replace(convergence, why_never=reason)
