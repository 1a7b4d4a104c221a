"""What a repair did, as plain immutable values (no live TF objects): per layer the statistics
before and after, how much data they come from, and the check (check.py): how far inference
mode's normalization is from the layer's input, before and after."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..values import frozen_array, json_number, to_json_values
from .check import mean, worst

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
    # the check (check.py): inference mode's normalization error with the statistics before /
    # after, None when not checked
    error_before: Optional[float] = None
    error_after: Optional[float] = None
    notes: Tuple[str, ...] = ()  # what else of the layer stays as it was, and why

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
                "variance_after": values(self.variance_after),
                "error_before": _number(self.error_before),
                "error_after": _number(self.error_after), "notes": list(self.notes)}


def _number(value: Optional[float]) -> Any:
    return None if value is None else json_number(value)


@dataclass(frozen=True)
class Check:
    """Which rows the check ran on in inference mode: every batch of the data (``all_data``),
    or the first ``batches``."""

    batches: int
    rows: int
    all_data: bool

    def to_dict(self) -> Dict[str, Any]:
        return {"batches": self.batches, "rows": self.rows, "all_data": self.all_data}


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
    check: Optional[Check]  # None: not checked (the notes say why)
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

    def worst_error(self, after: bool) -> Tuple[Optional[str], float]:
        """The recalibrated layer with the largest normalization error (NaN counts as the
        largest) and that error, before or ``after`` the repair."""
        return worst([(layer.name, layer.error_after if after else layer.error_before)
                      for layer in self.repaired if layer.error_before is not None])

    def mean_error(self, after: bool) -> float:
        return mean([layer.error_after if after else layer.error_before
                     for layer in self.repaired if layer.error_before is not None])

    @property
    def verdict(self) -> str:
        """One line: what was recalibrated, and everything that was not done or checked."""
        where = (" into %s" % self.out if self.out else
                 " in the model" if self.source == "keras" else " in the session")
        text = "done: recalibrated %d of %d batch-norm layer(s) from %d batch(es), %d row(s)%s" % (
            len(self.repaired), len(self.layers), self.batches, self.rows, where)
        if self.skipped:
            text += "; %d layer(s) left as they were (see below)" % len(self.skipped)
        if self.check is not None:
            text += "; statistics error in inference mode: worst %s -> %s, mean %s -> %s" % (
                error_text(self.worst_error(False)[1]), error_text(self.worst_error(True)[1]),
                error_text(self.mean_error(False)), error_text(self.mean_error(True)))
        else:
            text += "; statistics not checked (see notes)"
        return text

    def to_dict(self) -> Dict[str, Any]:
        worst_before, worst_after = self.worst_error(False), self.worst_error(True)
        check = None if self.check is None else dict(
            self.check.to_dict(), worst_before=_number(worst_before[1]),
            worst_layer_before=worst_before[0], worst_after=_number(worst_after[1]),
            worst_layer_after=worst_after[0], mean_before=_number(self.mean_error(False)),
            mean_after=_number(self.mean_error(True)))
        return {"source": self.source, "checkpoint": self.checkpoint, "out": self.out,
                "inputs": list(self.inputs), "switches": list(self.switches),
                "batches": self.batches, "rows": self.rows,
                "variance_convention": self.variance_convention,
                "layers": [layer.to_dict() for layer in self.layers], "check": check,
                "notes": list(self.notes), "seconds": self.seconds, "verdict": self.verdict}


def error_text(value: Optional[float]) -> str:
    """An error as printed: 3 significant digits; NaN as NaN, inf as inf."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf"
    return "%.3g" % value


def frozen_or_none(values: Optional[np.ndarray]) -> Optional[np.ndarray]:
    return None if values is None else frozen_array(values, np.float64)
