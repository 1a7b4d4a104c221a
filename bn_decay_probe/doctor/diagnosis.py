"""What the doctor returns: plain, immutable results with ``to_dict()`` for JSON. No TensorFlow."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..checkpoints.step_counter import StepCount
from ..values import json_number

NEVER_UPDATED = "NEVER_UPDATED"
TRAINED_IN_INFERENCE_MODE = "TRAINED_IN_INFERENCE_MODE"
UNSHARED_BRANCHES = "UNSHARED_BRANCHES"
BAD_VARIANCE = "BAD_VARIANCE"
PARTLY_CONVERGED = "PARTLY_CONVERGED"
MISSING_UPDATE_DEPENDENCY = "MISSING_UPDATE_DEPENDENCY"
KERAS_UPDATES_NOT_COLLECTED = "KERAS_UPDATES_NOT_COLLECTED"
# The order findings are listed in: root causes first.
CODES = (TRAINED_IN_INFERENCE_MODE, NEVER_UPDATED, UNSHARED_BRANCHES, BAD_VARIANCE,
         PARTLY_CONVERGED, MISSING_UPDATE_DEPENDENCY, KERAS_UPDATES_NOT_COLLECTED)
ERROR, WARNING = "error", "warning"

# Where a layer's decay came from (Keras files and SavedModels: the momentum of the model config).
DECAY_GIVEN, DECAY_FROM_GRAPH, DECAY_FROM_CONFIG, DECAY_UNKNOWN = \
    "given", "graph", "config", "unknown"


@dataclass(frozen=True)
class Finding:
    """One problem of one layer. ``explanation`` and ``fix`` are the same for every layer with
    the same cause (so identical findings group); ``detail`` holds what is this layer's own."""

    layer: str
    code: str  # one of CODES
    severity: str  # "error" | "warning"
    explanation: str  # one sentence
    fix: str  # one sentence
    detail: str = ""  # this layer's numbers or names, "" if none

    def to_dict(self) -> Dict[str, Any]:
        return {"layer": self.layer, "code": self.code, "severity": self.severity,
                "explanation": self.explanation, "fix": self.fix, "detail": self.detail}


@dataclass(frozen=True)
class Statistic:
    """Summary of one moving statistic over its channels; NaN and inf are counted, not hidden."""

    minimum: float  # over the finite values; NaN when none is finite
    maximum: float
    nan: int
    posinf: int
    neginf: int

    @staticmethod
    def of(values: np.ndarray) -> "Statistic":
        values = np.asarray(values, np.float64).reshape(-1)
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (math.nan,) * 2
        return Statistic(low, high, int(np.isnan(values).sum()), int(np.isposinf(values).sum()),
                         int(np.isneginf(values).sum()))

    @property
    def finite(self) -> bool:
        return not (self.nan or self.posinf or self.neginf)

    def text(self) -> str:
        """"[min, max]", followed by the non-finite counts: "[0, 1] 3 NaN", "all NaN"."""
        extra = ["%d %s" % (n, word) for n, word in ((self.nan, "NaN"), (self.posinf, "inf"),
                                                      (self.neginf, "-inf")) if n]
        if math.isnan(self.minimum):
            return "all " + "/".join(word.split()[1] for word in extra) if extra else "-"
        bounds = "[%s, %s]" % (_number(self.minimum), _number(self.maximum))
        return " ".join([bounds] + extra)

    def to_dict(self) -> Dict[str, Any]:
        return {"min": json_number(self.minimum), "max": json_number(self.maximum),
                "nan": self.nan, "inf": self.posinf, "-inf": self.neginf}


def _number(value: float) -> str:
    return "%.4g" % value


@dataclass(frozen=True)
class LayerSummary:
    name: str  # the layer: its variables' common prefix (or Keras layer name, when mapped)
    channels: Optional[int]
    # "contrib" (slim), "tf.layers", "tf.keras"; "keras" (TF 2.x Keras: a Keras file, a
    # SavedModel, a TF 2 object checkpoint); None when no graph was read
    kind: Optional[str]
    decay: Optional[float]  # the decay used for PARTLY_CONVERGED
    decay_source: str  # DECAY_GIVEN, DECAY_FROM_GRAPH or DECAY_UNKNOWN
    # graph: names of the ops that run the moving-average updates (a control flow v2 If op
    # stands for the updates in its branch)
    update_ops: Tuple[str, ...]
    mean: Optional[Statistic]  # None when the values were not read
    variance: Optional[Statistic]
    # the name in the checkpoint when it differs from ``name`` (object-based checkpoints:
    # "layer_with_weights-3"), else None
    checkpoint_name: Optional[str] = None
    # graph: what switches the layer between training and inference ("constant training",
    # "constant inference", or the switch tensor's name and its default)
    mode: Optional[str] = None
    # trained values the graph never trains (run in inference mode by the train step): they
    # come from where the weights were restored from, and convergence is not judged
    frozen: bool = False

    @property
    def mean_range(self) -> Optional[Tuple[float, float]]:
        return None if self.mean is None else (self.mean.minimum, self.mean.maximum)

    @property
    def variance_range(self) -> Optional[Tuple[float, float]]:
        return None if self.variance is None else (self.variance.minimum, self.variance.maximum)

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "checkpoint_name": self.checkpoint_name,
                "channels": self.channels, "kind": self.kind, "decay": self.decay,
                "decay_source": self.decay_source, "mode": self.mode, "frozen": self.frozen,
                "update_ops": list(self.update_ops),
                "moving_mean": None if self.mean is None else self.mean.to_dict(),
                "moving_variance": None if self.variance is None else self.variance.to_dict()}


@dataclass(frozen=True)
class Diagnosis:
    source: str  # "checkpoint" | "graph" | "keras" (a Keras file) | "savedmodel"
    path: Optional[str]  # the checkpoint prefix, Keras file or SavedModel directory read
    steps: StepCount
    decay: Optional[float]  # as given by the caller
    threshold: float
    layers: Tuple[LayerSummary, ...]  # in network order where a graph tells it
    findings: Tuple[Finding, ...]
    not_checked: Tuple[str, ...]  # checks that could not be made, and why (in the verdict)
    notes: Tuple[str, ...]  # what else the reader should know
    graph_source: Optional[str] = None  # checkpoint: the .meta file read, else None
    # what the values were read as, when not a TF1 checkpoint or graph: "Keras 3.12.4 .keras
    # file", "SavedModel", "TF 2 object checkpoint"
    file_format: Optional[str] = None

    @property
    def global_step(self) -> Optional[int]:
        """The step count used (kept under its old name)."""
        return self.steps.value

    @property
    def complete(self) -> bool:
        return not self.not_checked

    @property
    def clean(self) -> bool:
        """No finding, and every check made: what a user may act on as "all good"."""
        return not self.findings and self.complete

    @property
    def status(self) -> str:
        """"findings", "incomplete" (no finding, but something not checked) or "clean"."""
        return "findings" if self.findings else "incomplete" if self.not_checked else "clean"

    def findings_for(self, layer: str) -> Tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.layer == layer)

    def to_dict(self) -> Dict[str, Any]:
        return {"source": self.source, "path": self.path, "graph_source": self.graph_source,
                "file_format": self.file_format,
                "status": self.status, "clean": self.clean, "global_step": self.steps.value,
                "steps": self.steps.to_dict(), "decay": self.decay, "threshold": self.threshold,
                "layers": [layer.to_dict() for layer in self.layers],
                "findings": [f.to_dict() for f in self.findings],
                "not_checked": list(self.not_checked), "notes": list(self.notes)}


def ordered_findings(findings: List[Finding], layer_order: List[str]) -> Tuple[Finding, ...]:
    """Network order of the layers, then CODES order within a layer."""
    position = {name: i for i, name in enumerate(layer_order)}
    return tuple(sorted(findings, key=lambda f: (position.get(f.layer, len(position)),
                                                 CODES.index(f.code))))


def recalibration_note(count: int, marker: Dict[str, Any]) -> str:
    """The note on layers whose statistics ``bn-decay-probe repair`` recomputed (its marker)."""
    return ("%d layer(s) recalibrated from data by bn-decay-probe repair (%s batch(es), %s "
            "row(s)): their statistics are the data's, so NEVER_UPDATED and PARTLY_CONVERGED "
            "(step count x decay) do not apply to them"
            % (count, marker.get("batches", "?"), marker.get("rows", "?")))
