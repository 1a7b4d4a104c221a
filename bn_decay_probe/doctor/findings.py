"""From what was read to findings: one value finding per layer at most (inference-mode training,
never updated, unshared copy, broken values, not converged), plus the graph's wiring findings.
Explanations and fixes do not name the layer (identical causes group); ``detail`` does.
No TensorFlow here: graph facts arrive as plain values in :class:`LayerFacts`."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .diagnosis import (BAD_VARIANCE, ERROR, KERAS_UPDATES_NOT_COLLECTED,
                        MISSING_UPDATE_DEPENDENCY, NEVER_UPDATED, PARTLY_CONVERGED,
                        TRAINED_IN_INFERENCE_MODE, UNSHARED_BRANCHES, WARNING, Finding)

# The initial values weigh decay**steps; 0.05 ~ e**-3 is reached after 3 / (1 - decay) steps,
# three time constants of the moving average, when the statistics are 95% the data's.
DEFAULT_THRESHOLD = 0.05
# The initial 0 and 1 are exact in float32; 1e-6 (about 8 float32 steps at 1.0) allows for
# rounding. One update moves them by (1 - decay) * (batch statistic - initial value): more than
# 1e-6 at decay 0.999 unless the batch statistics are within 1e-3 of 0 and 1.
INITIAL_ATOL = 1e-6
_COPY_SUFFIX = re.compile(r"_\d+$")  # what TF appends to a scope name that is already taken

# How the graph runs a layer's updates, as far as it is known.
RUN, NOT_RUN, UNKNOWN = "run", "not run", "unknown"


@dataclass
class LayerFacts:
    """One layer as the doctor knows it: values, decay, and what a graph (if any) says."""

    name: str  # shown name (the Keras layer name where known)
    channels: Optional[int]
    mean: Optional[np.ndarray] = None
    variance: Optional[np.ndarray] = None
    decay: Optional[float] = None
    kind: Optional[str] = None  # "contrib", "tf.layers", "tf.keras"; None without a graph
    mode: Optional[str] = None  # graph_reader.TRAINING / INFERENCE / SWITCHED
    update_ops: Tuple[str, ...] = ()  # names of the graph's ops that run the updates
    updates: str = UNKNOWN  # RUN / NOT_RUN by the train step, or UNKNOWN
    missing_updates: Tuple[str, ...] = ()  # names of update ops the train step does not run
    missing_outside_collection: bool = False  # and none of them is in UPDATE_OPS
    # the train step runs this layer's inference-mode normalization (and no update of it)
    inference_in_train_step: bool = False
    switch: Optional[str] = None  # name of the training switch tensor
    switch_default: Optional[bool] = None
    keras_learning_phase: bool = False
    switch_fed_true: bool = False  # the train step feeds the switch True (Model.fit)
    sort_key: Tuple = field(default_factory=tuple)
    # recomputed from data by `bn-decay-probe repair`: the values are the data's, not the
    # outcome of training steps, so NEVER_UPDATED and PARTLY_CONVERGED do not apply
    recalibrated: bool = False
    # Keras: the layer's trainable flag and its enclosing models' (None: not known). TF 2.x
    # Keras runs a frozen batch-norm layer in inference mode: its statistics never change.
    trainable: Optional[bool] = None

    @property
    def read(self) -> bool:
        return self.mean is not None and self.variance is not None

    @property
    def judged_by_steps(self) -> bool:
        """Whether step count x decay says how far the statistics converged: not for
        statistics the repair recomputed from data, nor for a Keras layer frozen after they
        trained (fine-tuning), which keeps those from before the freeze."""
        frozen_after_training = self.trainable is False and self.read and not is_initial(self)
        return not self.recalibrated and not frozen_after_training


def value_findings(layers: Sequence[LayerFacts], steps: Optional[int],
                   threshold: float) -> List[Finding]:
    """At most one per layer, by precedence: trained in inference mode (not when the step
    counter says no step ran), broken values, never updated (or an unshared copy), not
    converged."""
    trained = [layer for layer in layers if layer.read and not is_initial(layer)
               and _finite(layer)]
    findings = []
    for layer in layers:
        if not layer.read:
            continue
        finding = ((_inference_mode(layer) if steps != 0 else None) or _bad_variance(layer)
                   or (_never_updated(layer, trained)
                       if is_initial(layer) and not layer.recalibrated else None)
                   or (_partly_converged(layer, steps, threshold)
                       if can_check_convergence(layer, steps) else None))
        if finding is not None:
            findings.append(finding)
    return findings


def can_check_convergence(layer: LayerFacts, steps: Optional[int]) -> bool:
    # A step counter at 0 with moved statistics means the optimizer did not count steps.
    return (steps is not None and steps > 0 and layer.decay is not None
            and layer.judged_by_steps)


def is_initial(layer: LayerFacts) -> bool:
    with np.errstate(invalid="ignore"):  # NaN compares False, which is the answer wanted
        return (layer.read and bool(np.all(np.abs(layer.mean) <= INITIAL_ATOL))
                and bool(np.all(np.abs(layer.variance - 1.0) <= INITIAL_ATOL)))


def _finite(layer: LayerFacts) -> bool:
    return bool(np.all(np.isfinite(layer.mean)) and np.all(np.isfinite(layer.variance)))


def _initial_or_broken(layer: LayerFacts) -> bool:
    """What updates in inference mode leave: (0, 1), or NaN where TF 1.15's fused kernel fed
    uninitialized batch statistics, (v - garbage) * 0."""
    return is_initial(layer) or not _finite(layer)


def _inference_mode(layer: LayerFacts) -> Optional[Finding]:
    if not _initial_or_broken(layer):
        return None
    if layer.inference_in_train_step and layer.updates != RUN:
        fix = {"contrib": "build the training net with is_training=True (or a boolean tensor "
                          "fed True in training), then train again",
               "tf.layers": "call tf.layers.batch_normalization with training=True (or a "
                            "boolean tensor fed True in training), then train again",
               "tf.keras": "call the layer or model with training=True in the training graph "
                           "(training=False only for inference), then train again"}
        return Finding(layer.name, TRAINED_IN_INFERENCE_MODE, ERROR,
                       "the train step runs this layer in inference mode (is_training=False or "
                       "training=False): it normalizes with the moving statistics and never "
                       "updates them, so they stay at their initial (0, 1)",
                       fix.get(layer.kind or "", fix["contrib"]), _value_detail(layer))
    if (layer.switch and layer.updates == RUN and layer.switch_default is False
            and not layer.switch_fed_true):
        if layer.keras_learning_phase:
            return Finding(layer.name, TRAINED_IN_INFERENCE_MODE, ERROR,
                           "the update ops ran in inference mode: the Keras learning phase was "
                           "never set, so it kept its default 0 and every update used momentum "
                           "1 (no change); the statistics stayed at (0, 1), or became NaN "
                           "where TF's fused kernel fed uninitialized batch statistics",
                           "set the learning phase in the training loop: feed "
                           "{K.learning_phase(): 1} to session.run (or call "
                           "K.set_learning_phase(1) before building the model), or train with "
                           "Model.fit; then train again", _value_detail(layer))
        return Finding(layer.name, TRAINED_IN_INFERENCE_MODE, ERROR,
                       "the update ops ran in inference mode: they update only when the "
                       "training switch %s is True, and it kept its default False, so every "
                       "update used decay 1 (no change)" % layer.switch,
                       "feed the training switch True in every train step (is_training / "
                       "training as a placeholder), then train again", _value_detail(layer))
    return None


def _value_detail(layer: LayerFacts) -> str:
    if is_initial(layer):
        return ""
    return _nonfinite_counts(layer)


def _counts(values: np.ndarray, tests: Sequence[Tuple[str, object]]) -> List[str]:
    with np.errstate(invalid="ignore"):  # NaN compares False; NaNs are counted on their own
        counted = [(label, int(np.count_nonzero(test(values)))) for label, test in tests]
    return ["%d %s" % (count, label) for label, count in counted if count]


def _nonfinite_counts(layer: LayerFacts) -> str:
    variance = _counts(layer.variance, [("negative", lambda v: np.isfinite(v) & (v < 0)),
                                        ("zero", lambda v: v == 0), ("NaN", np.isnan),
                                        ("inf", np.isinf)])
    mean = _counts(layer.mean, [("NaN", np.isnan), ("inf", np.isinf)])
    parts = (["moving_variance has %s" % ", ".join(variance)] if variance else []) + \
            (["moving_mean has %s" % ", ".join(mean)] if mean else [])
    return "; ".join(parts) + " of %d channels" % layer.variance.size if parts else ""


def _bad_variance(layer: LayerFacts) -> Optional[Finding]:
    detail = _nonfinite_counts(layer)
    if not detail:
        return None
    zeros_only = (bool(np.all(np.isfinite(layer.mean))) and bool(np.all(np.isfinite(
        layer.variance))) and not bool(np.any(layer.variance < 0)))
    if zeros_only:
        return Finding(layer.name, BAD_VARIANCE, WARNING,
                       "moving_variance is exactly 0 for some channels: they were constant in "
                       "training, so inference divides them by sqrt(epsilon) alone",
                       "harmless if the channels are dead (e.g. after ReLU); otherwise check "
                       "the layer's input", detail)
    return Finding(layer.name, BAD_VARIANCE, ERROR,
                   "moving statistics hold NaN, inf or negative variances: inference output is "
                   "NaN, inf or wrong for those channels",
                   "such values come from training in inference mode on TF 1.15's fused CPU "
                   "kernel (Keras learning phase never set: it feeds uninitialized batch "
                   "statistics), from NaN/inf in the inputs or the loss (e.g. too high a "
                   "learning rate), or from code that assigns the variables; remove the cause, "
                   "then restore an earlier checkpoint or recompute the statistics from data "
                   "(bn-decay-probe repair)", detail)


def _never_updated(layer: LayerFacts, trained: Sequence[LayerFacts]) -> Finding:
    family = _family(layer)
    siblings = [other for other in trained if _related(_family(other), family)]
    if siblings:
        return Finding(layer.name, UNSHARED_BRANCHES, ERROR,
                       "moving statistics still at their initial 0 and 1 while a layer with the "
                       "same name (up to TF's _N suffixes or an outer scope) and as many "
                       "channels was trained: a second copy of the layer (e.g. the test "
                       "branch) that never shared the trained variables",
                       "build train and test branches with one layer: the same tf.keras layer "
                       "object, or the same name / scope with reuse=tf.AUTO_REUSE (slim: "
                       "reuse=True), or restore the trained variables into the copy",
                       "trained copy: %s" % siblings[0].name)
    if layer.kind == "tf.keras":
        how = ("run model.updates at every train step (tf.control_dependencies(model.updates)) "
               "with the learning phase set to 1, or train with Model.fit")
    elif layer.kind in ("contrib", "tf.layers"):
        how = ("build the train op under tf.control_dependencies(tf.get_collection("
               "tf.GraphKeys.UPDATE_OPS)), or give contrib/slim batch_norm "
               "updates_collections=None")
    else:
        how = ("build the train op under tf.control_dependencies(tf.get_collection("
               "tf.GraphKeys.UPDATE_OPS)); tf.keras: run model.updates with the learning phase "
               "set to 1, or train with Model.fit")
    why = {RUN: "the update ops are run by the train step, so the train step never ran or was "
                "not saved",
           NOT_RUN: "the train step does not run the update ops",
           UNKNOWN: "the update ops never ran (or ran in inference mode)"}[layer.updates]
    if layer.mode == "inference":  # graph_reader.INFERENCE: built without update ops
        why = ("the layer was built in inference mode (is_training=False or training=False: no "
               "update op), and the train step does not run it")
    return Finding(layer.name, NEVER_UPDATED, ERROR,
                   "moving_mean is all 0 and moving_variance all 1, their initial values: %s, "
                   "so inference normalizes with (0, 1)" % why,
                   how + ("; then train again" if layer.mode == "inference" else _REPAIR), "")


# The weights are good when only the statistics are wrong: no need to train again
# (docs/repair.md). Not for layers built in inference mode, which have no training mode to read.
_REPAIR = ("; for the weights already trained, recompute the statistics from data instead of "
           "training again (bn-decay-probe repair, given the .meta graph; or recalibrate() on "
           "a live session)")


def _family(layer: LayerFacts) -> Tuple[Tuple[str, ...], Optional[int]]:
    """Scopes with TF's uniquifying _N suffixes removed, plus channels."""
    return tuple(_COPY_SUFFIX.sub("", part) for part in layer.name.split("/")), layer.channels


def _related(a: Tuple[Tuple[str, ...], Optional[int]],
             b: Tuple[Tuple[str, ...], Optional[int]]) -> bool:
    """Same channels, and one name equals the other or ends with it after whole scopes
    ("eval/net/conv1/BatchNorm" and "net/conv1/BatchNorm")."""
    (x, cx), (y, cy) = a, b
    if cx != cy:
        return False
    short, long_ = sorted((x, y), key=len)
    return long_[len(long_) - len(short):] == short


def _partly_converged(layer: LayerFacts, steps: int, threshold: float) -> Optional[Finding]:
    decay = float(layer.decay)  # type: ignore[arg-type]
    weight = decay ** steps
    if weight <= threshold:
        return None
    # Rounded down, so that the suggested decay really meets the threshold.
    lower = "a decay of at most %g for %d steps" % (
        math.floor(threshold ** (1.0 / steps) * 1e4) / 1e4, steps)
    if decay < 1.0:
        fix = "train to at least %d steps at decay %.6g (decay**steps <= %g), or use %s" % (
            math.ceil(math.log(threshold) / math.log(decay)), decay, threshold, lower)
    else:
        fix = "at decay 1 the moving statistics never move: use " + lower
    fix += "; or recompute the statistics from data without training (bn-decay-probe repair)"
    return Finding(layer.name, PARTLY_CONVERGED, WARNING,
                   "%.6g**%d = %.4g of each moving statistic is still its initial value (mean 0, "
                   "variance 1), above the threshold %g" % (decay, steps, weight, threshold), fix)


def wiring_findings(layers: Sequence[LayerFacts], have_train_op: bool) -> List[Finding]:
    """Update ops the train step does not run, for layers whose values (when read) agree: a
    layer whose statistics moved had its updates run by something else (e.g. Model.fit)."""
    findings = []
    for layer in layers:
        if (layer.updates != NOT_RUN or not layer.missing_updates
                or (layer.read and not _initial_or_broken(layer))):
            continue
        names = ", ".join(layer.missing_updates)
        step = "the train op" if have_train_op else "the graph's train step"
        if layer.kind == "tf.keras" and layer.missing_outside_collection:
            findings.append(Finding(
                layer.name, KERAS_UPDATES_NOT_COLLECTED, ERROR,
                "tf.keras BatchNormalization keeps its update ops in layer.updates, not in "
                "UPDATE_OPS, and %s does not run them, so the moving statistics never change"
                % step,
                "build the train op under tf.control_dependencies(model.updates) (or "
                "layer.updates), or add those ops to tf.GraphKeys.UPDATE_OPS; Model.fit runs "
                "them itself", "update ops: " + names))
        else:
            findings.append(Finding(
                layer.name, MISSING_UPDATE_DEPENDENCY, ERROR,
                "the update ops are neither in place (a control dependency of the layer's "
                "output) nor run by %s, so the moving statistics never change" % step,
                "build the train op under tf.control_dependencies(tf.get_collection("
                "tf.GraphKeys.UPDATE_OPS)), or give contrib batch_norm updates_collections=None",
                "update ops: " + names))
    return findings
