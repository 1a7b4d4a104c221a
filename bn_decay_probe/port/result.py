"""What a port check returns: plain, immutable results with ``to_dict()`` for JSON (no
framework objects)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from ..values import json_number

UNPAIRED_LAYER = "UNPAIRED_LAYER"
STATISTICS_NOT_COPIED = "STATISTICS_NOT_COPIED"
STATISTICS_MISMATCH = "STATISTICS_MISMATCH"
AFFINE_MISMATCH = "AFFINE_MISMATCH"
EPSILON_MISMATCH = "EPSILON_MISMATCH"
MOMENTUM_NOT_INVERTED = "MOMENTUM_NOT_INVERTED"
MOMENTUM_MISMATCH = "MOMENTUM_MISMATCH"
# The order findings are listed in: what changes inference first, then what changes training.
CODES = (UNPAIRED_LAYER, STATISTICS_NOT_COPIED, STATISTICS_MISMATCH, AFFINE_MISMATCH,
         EPSILON_MISMATCH, MOMENTUM_NOT_INVERTED, MOMENTUM_MISMATCH)
ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class PortFinding:
    """One problem of one layer pair (or of one unpaired layer). ``explanation`` and ``fix``
    are the same for every layer with the same cause; ``detail`` is this layer's own."""

    layer: str  # "source name -> target name", or the unpaired layer's name
    code: str  # one of CODES
    severity: str  # ERROR: inference changes; WARNING: only training after the port does
    explanation: str
    fix: str
    detail: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return {"layer": self.layer, "code": self.code, "severity": self.severity,
                "explanation": self.explanation, "fix": self.fix, "detail": self.detail}


@dataclass(frozen=True)
class PortSide:
    """One side of the port as read: what it is and where its epsilon and momentum came from."""

    role: str  # "source" or "target"
    path: str  # the file, checkpoint prefix, or the live model's description
    format: str  # "TF checkpoint", "PyTorch state dict", "ONNX model", "PyTorch module", ...
    layers: int
    ordered: bool  # its layers' order is the network's
    epsilon: str  # where the epsilons come from: "stored", "graph", "given", "default", "none"
    momentum: str  # the same for momentum / decay
    graph: Optional[str] = None  # the .meta read for a TF checkpoint

    def to_dict(self) -> Dict[str, Any]:
        return {"role": self.role, "path": self.path, "format": self.format,
                "layers": self.layers, "ordered": self.ordered, "epsilon": self.epsilon,
                "momentum": self.momentum, "graph": self.graph}


def _number(value: Optional[float]) -> Any:
    return None if value is None else json_number(value)


@dataclass(frozen=True)
class LayerPair:
    """A source layer and its target (either may be None: unpaired), and what was measured."""

    source: Optional[str]
    target: Optional[str]
    channels: int
    paired_by: str  # "map", "name", "order", or "" (unpaired)
    source_epsilon: Optional[float] = None
    target_epsilon: Optional[float] = None
    source_decay: Optional[float] = None  # in TF's sense
    target_momentum: Optional[float] = None  # as the target spells it
    target_convention: str = ""  # "decay", "1 - decay", "cumulative", "" (not known)
    # Largest |output difference| / largest |source output| on the seeded input, all values
    # the target's ("inference"), or only one of them ("mean", "variance", "epsilon", "gamma",
    # "beta"); None: not measured.
    differences: Tuple[Tuple[str, float], ...] = ()
    codes: Tuple[str, ...] = ()

    @property
    def label(self) -> str:
        if self.source is None or self.target is None:
            return self.source or self.target or ""
        return self.source if self.source == self.target else "%s -> %s" % (self.source,
                                                                             self.target)

    @property
    def inference_difference(self) -> Optional[float]:
        return dict(self.differences).get("inference")

    def to_dict(self) -> Dict[str, Any]:
        return {"source": self.source, "target": self.target, "channels": self.channels,
                "paired_by": self.paired_by, "source_epsilon": _number(self.source_epsilon),
                "target_epsilon": _number(self.target_epsilon),
                "source_decay": _number(self.source_decay),
                "target_momentum": _number(self.target_momentum),
                "target_convention": self.target_convention,
                "differences": {k: json_number(v) for k, v in self.differences},
                "findings": list(self.codes)}


@dataclass(frozen=True)
class PortCheck:
    """A port's batch norm, checked layer pair by layer pair."""

    source: PortSide
    target: PortSide
    pairs: Tuple[LayerPair, ...]  # in the source's order, unpaired target layers last
    findings: Tuple[PortFinding, ...]
    not_checked: Tuple[str, ...]  # checks that could not be made, and why (in the verdict)
    notes: Tuple[str, ...]
    tolerance: float  # the largest relative output difference a kept layer may show

    @property
    def complete(self) -> bool:
        return not self.not_checked

    @property
    def clean(self) -> bool:
        """No finding, and every check made: the port keeps every layer's inference output and
        its momentum."""
        return not self.findings and self.complete

    @property
    def status(self) -> str:
        """"findings", "incomplete" (no finding, but something not checked) or "clean"."""
        return "findings" if self.findings else "incomplete" if self.not_checked else "clean"

    @property
    def largest_difference(self) -> Optional[float]:
        """The largest inference difference over the pairs measured."""
        values = [p.inference_difference for p in self.pairs
                  if p.inference_difference is not None]
        return max(values) if values else None

    def to_dict(self) -> Dict[str, Any]:
        return {"status": self.status, "clean": self.clean,
                "source": self.source.to_dict(), "target": self.target.to_dict(),
                "tolerance": self.tolerance,
                "largest_difference": _number(self.largest_difference),
                "pairs": [p.to_dict() for p in self.pairs],
                "findings": [f.to_dict() for f in self.findings],
                "not_checked": list(self.not_checked), "notes": list(self.notes)}
