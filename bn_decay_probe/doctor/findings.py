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
    # the train step runs this layer's inference-mode normalization outside any cond (and no
    # update of it): training=False in its path
    inference_in_train_step: bool = False
    switch: Optional[str] = None  # name of the training switch tensor
    switch_default: Optional[bool] = None
    keras_learning_phase: bool = False
    switch_fed_true: bool = False  # the train step feeds the switch True (Model.fit)
    sort_key: Tuple = field(default_factory=tuple)
    # recomputed from data by `bn-decay-probe repair`: the values are the data's, not the
    # outcome of training steps, so NEVER_UPDATED and PARTLY_CONVERGED do not apply, and a
    # variance of 0 is a channel constant on the data
    recalibrated: bool = False
    # Keras: the layer's trainable flag and its enclosing models' (None: not known). TF 2.x
    # Keras runs a frozen batch-norm layer in inference mode: its statistics never change.
    trainable: Optional[bool] = None
    # the layer in training mode this one is a copy of: built in inference mode in the other
    # branch of the same cond (tf.cond(is_training, train_net, test_net)), sharing no variable
    copy_of: Optional[str] = None
    # the graph has several train steps and does not show which one ran: this layer's facts
    # under each of them (``train_step`` names it), for a finding that names each cause
    alternatives: Tuple["LayerFacts", ...] = ()
    train_step: Optional[str] = None

    @property
    def read(self) -> bool:
        return self.mean is not None and self.variance is not None

    @property
    def judged_by_steps(self) -> bool:
        """Whether step count x decay says how far the statistics converged: not for
        statistics the repair recomputed from data, nor for a layer frozen after they trained
        (a Keras layer with trainable=False, or one the train step runs in inference mode),
        which keeps those from before the freeze."""
        frozen_after_training = self.trainable is False and self.read and not is_initial(self)
        return not self.recalibrated and not frozen_after_training and not frozen(self)


def value_findings(layers: Sequence[LayerFacts], steps: Optional[int],
                   threshold: float) -> List[Finding]:
    """At most one per layer, by precedence: trained in inference mode (only where the graph
    shows it, and not when the step counter says no step ran), broken values, never updated
    (or a copy that shares no variable), not converged (not for a frozen layer)."""
    trained = [layer for layer in layers if layer.read and not is_initial(layer)
               and _finite(layer)]
    findings = []
    for layer in layers:
        if layer.read:
            finding = _value_finding(layer, trained, steps, threshold)
            if finding is not None:
                findings.append(finding)
    return findings


def _value_finding(layer: LayerFacts, trained: Sequence[LayerFacts], steps: Optional[int],
                   threshold: float) -> Optional[Finding]:
    if steps != 0 and untouched(layer):
        cause = (_several_train_steps(layer, trained) if layer.alternatives else
                 _inference_mode(layer))
        if cause is not None:
            return cause
    finding = _bad_variance(layer)
    if finding is None and is_initial(layer) and not layer.recalibrated:
        finding = _never_updated(layer, trained)
    if finding is None and can_check_convergence(layer, steps):
        finding = _partly_converged(layer, steps, threshold)  # type: ignore[arg-type]
    return finding


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


def untouched(layer: LayerFacts) -> bool:
    """What updates in inference mode leave: every value at its initial 0 or 1, or NaN where
    TF 1.15's fused CPU kernel fed uninitialized batch statistics ((v - garbage) * 0). A NaN
    or inf next to trained values is no such trace."""
    if not layer.read:
        return False
    with np.errstate(invalid="ignore"):
        return (bool(np.all(np.isnan(layer.mean) | (np.abs(layer.mean) <= INITIAL_ATOL)))
                and bool(np.all(np.isnan(layer.variance) |
                                (np.abs(layer.variance - 1.0) <= INITIAL_ATOL))))


def switch_left_off(layer: LayerFacts) -> bool:
    """The train step runs the update ops, behind a training switch it does not feed and whose
    default is False (the Keras learning phase in a hand-written loop): in inference mode."""
    return bool(layer.switch and layer.updates == RUN and layer.switch_default is False
                and not layer.switch_fed_true)


def frozen(layer: LayerFacts) -> bool:
    """Trained values in a layer the graph never trains: run in inference mode by the train
    step (training=False in its path), or built in inference mode only. Its statistics come
    from where its weights were restored from (e.g. pre-training), not from training steps. (A
    switch left at a default False is not shown unfed: moved statistics say it was fed.)"""
    return (layer.read and not untouched(layer) and layer.updates != RUN and
            (layer.mode == "inference" or layer.inference_in_train_step))


def _inference_mode(layer: LayerFacts) -> Optional[Finding]:
    """TRAINED_IN_INFERENCE_MODE, when the graph shows the train step running the layer in
    inference mode (for a layer whose values are what that leaves)."""
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
    if switch_left_off(layer):
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


def _several_train_steps(layer: LayerFacts, trained: Sequence[LayerFacts]
                         ) -> Optional[Finding]:
    """The graph has several train steps: the causes of untouched statistics each could have
    left (a train step that trains the layer would have moved them, so it is not the one that
    ran). One cause: its finding; several: one finding naming each with its fix."""
    causes: List[Tuple[str, Finding]] = []
    for alternative in layer.alternatives:
        alternative.mean, alternative.variance = layer.mean, layer.variance
        finding = _inference_mode(alternative)
        if finding is None and alternative.updates != RUN and is_initial(layer):
            # (update ops that never ran leave exactly 0 and 1, no NaN)
            finding = _never_updated(alternative, trained)
        if finding is not None:
            causes.append((alternative.train_step or "?", finding))
    distinct = list(dict.fromkeys((f.code, f.explanation, f.fix) for _, f in causes))
    if not distinct:
        return None
    if len(distinct) == 1:
        code, explanation, fix = distinct[0]
        steps = ", ".join(step for step, _ in causes)
        detail = "; ".join(part for part in (causes[0][1].detail, "train step: " + steps)
                           if part)
        return Finding(layer.name, code, ERROR, explanation, fix, detail)
    steps = [step for step, _ in causes]
    # Every cause left training in inference mode: the graph shows that much.
    code = (TRAINED_IN_INFERENCE_MODE if all(f.code == TRAINED_IN_INFERENCE_MODE
                                             for _, f in causes) else NEVER_UPDATED)
    return Finding(
        layer.name, code, ERROR,
        "moving statistics at their initial 0 and 1 (or NaN), and the graph has %d train steps "
        "(%s) without showing which one ran: %s" % (
            len(steps), ", ".join(steps),
            "; ".join("with %s, %s" % (step, f.explanation) for step, f in causes)),
        "; ".join("if you run %s: %s" % (step, f.fix) for step, f in causes),
        "; ".join(f.detail for _, f in causes if f.detail))


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
    if zeros_only and layer.recalibrated:
        return None  # the repair measured those channels constant on the data
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
    siblings = [other.name for other in trained if _related(_family(other), family)]
    if layer.copy_of or siblings:
        return Finding(layer.name, UNSHARED_BRANCHES, ERROR,
                       "moving statistics still at their initial 0 and 1: the layer is a "
                       "second copy of a layer in training mode (built in inference mode in "
                       "the other branch of the same cond, or named the same up to TF's _N "
                       "suffixes or an outer scope, with as many channels and trained values) "
                       "that never shared its variables, so inference uses the copy's "
                       "untrained statistics",
                       "build train and test branches with one layer: the same tf.keras layer "
                       "object, or the same name / scope with reuse=tf.AUTO_REUSE (slim: "
                       "reuse=True), or restore the trained variables into the copy",
                       "copy of: %s" % (layer.copy_of or siblings[0]))
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
        why = ("the layer was built in inference mode only (is_training=False or "
               "training=False: no update op), so no train step updates it")
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
    """Scopes with TF's uniquifying _N suffixes removed (a suffixed variable pair's layer
    "bn/_1" is "bn"), plus channels."""
    parts = (_COPY_SUFFIX.sub("", part) for part in layer.name.split("/"))
    return tuple(part for part in parts if part), layer.channels


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
    layer whose statistics moved had its updates run by something else (e.g. Model.fit). Not
    for a layer the train step runs in inference mode (training=False): its update ops belong
    to another call of it, which training does not use."""
    findings = []
    for layer in layers:
        if (layer.updates != NOT_RUN or not layer.missing_updates
                or layer.inference_in_train_step or (layer.read and not untouched(layer))):
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
