"""What a repair did, as plain immutable values (no live TF objects): per layer the statistics
before and after and how much data they come from; per model output the gap between inference
and training mode before and after."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..values import frozen_array, json_number, to_json_values

REPAIRED, SKIPPED = "repaired", "skipped"
# Which variance is written: the population variance of every value seen (divide by the count),
# as fvcore's precise BN writes; see docs/repair.md for why not the fused kernel's n/(n-1).
VARIANCE_CONVENTION = "population"


@dataclass(frozen=True)
class LayerRepair:
    name: str  # the variables' common prefix, e.g. "resnet_v1_50/conv1/BatchNorm"
    channels: int
    status: str  # REPAIRED | SKIPPED
    reason: Optional[str]  # why skipped
    batches: int  # batches that reached the layer
    values: int  # values per channel pooled (batch rows times spatial positions)
    producers: Tuple[str, ...]  # ops whose batch statistics were pooled
    bessel: bool  # the kernel's variance carried n/(n-1), undone before pooling
    mean_before: np.ndarray
    variance_before: np.ndarray
    mean_after: Optional[np.ndarray]  # float64 pooled; the variable gets it in its own dtype
    variance_after: Optional[np.ndarray]

    @property
    def repaired(self) -> bool:
        return self.status == REPAIRED

    def to_dict(self) -> Dict[str, Any]:
        def values(array: Optional[np.ndarray]) -> Any:
            return None if array is None else to_json_values(array)

        return {"name": self.name, "channels": self.channels, "status": self.status,
                "reason": self.reason, "batches": self.batches, "values": self.values,
                "producers": list(self.producers), "bessel_corrected_kernel": self.bessel,
                "mean_before": values(self.mean_before),
                "variance_before": values(self.variance_before),
                "mean_after": values(self.mean_after),
                "variance_after": values(self.variance_after)}


@dataclass(frozen=True)
class OutputGap:
    """How far inference-mode outputs are from training-mode outputs on the same rows: root
    mean square of the difference, relative to the RMS of the training-mode output, and the
    largest absolute difference; before and after the repair. The rows are the first batches
    of the data, run as one batch (``together``; one by one for an input of fixed batch size),
    so that training mode normalizes them with the statistics of all of them."""

    output: str
    batches: int
    rows: int
    together: bool
    values: int
    rms_before: float
    rms_after: float
    relative_before: float
    relative_after: float
    max_before: float
    max_after: float

    @staticmethod
    def of(output: str, sums: Any) -> "OutputGap":
        """The gap of ``output`` from the repair's running sums (runner.GapSums)."""
        count = max(sums.values, 1)
        scale = np.sqrt(sums.square_train / count)
        before = float(np.sqrt(sums.square_before / count))
        after = float(np.sqrt(sums.square_after / count))

        def relative(value: float) -> float:
            return float(value / scale) if scale > 0 else (0.0 if value == 0 else math.inf)

        return OutputGap(output, sums.batches, sums.rows, sums.runs == 1, sums.values, before,
                         after, relative(before), relative(after), sums.max_before,
                         sums.max_after)

    @property
    def ratio(self) -> float:
        """after / before of the RMS gap (0 when the repair closed it, 1 when nothing changed)."""
        if self.rms_before == 0:
            return math.nan if self.rms_after == 0 else math.inf
        return self.rms_after / self.rms_before

    def to_dict(self) -> Dict[str, Any]:
        return {"output": self.output, "batches": self.batches, "rows": self.rows,
                "together": self.together, "values": self.values,
                "rms_before": json_number(self.rms_before),
                "rms_after": json_number(self.rms_after),
                "relative_before": json_number(self.relative_before),
                "relative_after": json_number(self.relative_after),
                "max_before": json_number(self.max_before),
                "max_after": json_number(self.max_after), "ratio": json_number(self.ratio)}


@dataclass(frozen=True)
class RepairResult:
    # "checkpoint" | "session" | "keras file" (a .keras / .h5 model) | "keras" (a live model)
    source: str
    checkpoint: Optional[str]  # the input checkpoint prefix, or Keras file
    out: Optional[str]  # the written checkpoint prefix, or Keras file
    inputs: Tuple[str, ...]
    switches: Tuple[str, ...]
    batches: int
    rows: int
    layers: Tuple[LayerRepair, ...]
    gaps: Tuple[OutputGap, ...]
    notes: Tuple[str, ...]  # what was not done or not checked, and why
    seconds: float
    variance_convention: str = VARIANCE_CONVENTION

    @property
    def repaired(self) -> Tuple[LayerRepair, ...]:
        return tuple(layer for layer in self.layers if layer.repaired)

    @property
    def skipped(self) -> Tuple[LayerRepair, ...]:
        return tuple(layer for layer in self.layers if not layer.repaired)

    def layer(self, name: str) -> LayerRepair:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def verdict(self) -> str:
        """One line: what was recalibrated, and everything that was not done or checked."""
        where = (" into %s" % self.out if self.out else
                 " in the model" if self.source == "keras" else " in the session")
        text = "done: recalibrated %d of %d batch-norm layer(s) from %d batch(es), %d row(s)%s" % (
            len(self.repaired), len(self.layers), self.batches, self.rows, where)
        if self.skipped:
            text += "; %d layer(s) left as they were (see below)" % len(self.skipped)
        if self.gaps:
            text += "; inference/training gap %s" % ", ".join(
                "%s %.3g -> %.3g (x%.3g)" % (g.output, g.relative_before, g.relative_after,
                                             g.ratio) for g in self.gaps)
        else:
            text += "; inference/training gap not measured (see notes)"
        return text

    def to_dict(self) -> Dict[str, Any]:
        return {"source": self.source, "checkpoint": self.checkpoint, "out": self.out,
                "inputs": list(self.inputs), "switches": list(self.switches),
                "batches": self.batches, "rows": self.rows,
                "variance_convention": self.variance_convention,
                "layers": [layer.to_dict() for layer in self.layers],
                "gaps": [gap.to_dict() for gap in self.gaps], "notes": list(self.notes),
                "seconds": self.seconds, "verdict": self.verdict}


def frozen_or_none(values: Optional[np.ndarray]) -> Optional[np.ndarray]:
    return None if values is None else frozen_array(values, np.float64)
