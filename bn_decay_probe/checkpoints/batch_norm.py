"""A saved model's batch-norm layers as plain records, the same for every format a reader knows
(TF checkpoints, PyTorch state dicts, safetensors, ONNX models): per layer its name, statistics,
scale and offset, epsilon and momentum as the file holds them (None where it holds none).

A reader is a function of a path returning a :class:`LayerFile`; formats differ in what they
store, and the record says which: ``None`` is "not in this file", and ``defaults`` names the
fields that hold the format's default because the file leaves them out (ONNX's momentum 0.9).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..values import frozen_array, to_json_values

# How a layer's momentum relates to the decay d of ``moving = d * moving + (1 - d) * batch``:
DECAY = "decay"  # TensorFlow, Keras, ONNX, Flax: momentum = d
ONE_MINUS_DECAY = "1 - decay"  # PyTorch: momentum = 1 - d
NO_DECAY = "none: cumulative"  # PyTorch momentum=None: the mean of all batches, no decay


@dataclass(frozen=True)
class BatchNormRecord:
    """One batch-norm layer as a file holds it."""

    name: str  # unique within the file: the layer's scope, module path or node name
    mean: np.ndarray  # the moving (running) mean, float64 [C]
    variance: np.ndarray  # the moving variance, as stored
    gamma: Optional[np.ndarray] = None  # None: not read (a layer without scale has ones)
    beta: Optional[np.ndarray] = None  # None: not read (a layer without offset has zeros)
    epsilon: Optional[float] = None  # None: the file does not store it
    momentum: Optional[float] = None  # as the format spells it; None: not stored
    convention: str = ""  # DECAY, ONE_MINUS_DECAY or NO_DECAY; "" when nothing is stored
    keys: Tuple[str, ...] = ()  # where the file keeps the values (names --map may use)
    defaults: Tuple[str, ...] = ()  # "epsilon" / "momentum": the format's default, not stored

    @property
    def channels(self) -> int:
        return int(np.size(self.mean))

    @property
    def decay(self) -> Optional[float]:
        """The decay in TensorFlow's sense, from momentum and convention (None: unknown, or a
        cumulative average)."""
        if self.momentum is None or self.convention not in (DECAY, ONE_MINUS_DECAY):
            return None
        return self.momentum if self.convention == DECAY else 1.0 - self.momentum

    def to_dict(self) -> Dict[str, Any]:
        optional = lambda v: None if v is None else to_json_values(v)  # noqa: E731
        return {"name": self.name, "channels": self.channels,
                "moving_mean": to_json_values(self.mean),
                "moving_variance": to_json_values(self.variance),
                "gamma": optional(self.gamma), "beta": optional(self.beta),
                "epsilon": self.epsilon, "momentum": self.momentum,
                "convention": self.convention, "keys": list(self.keys),
                "defaults": list(self.defaults)}


def record(name: str, mean: Any, variance: Any, **fields: Any) -> BatchNormRecord:
    """A record with its arrays as read-only float64 vectors (gamma, beta too when given)."""
    for key in ("gamma", "beta"):
        if fields.get(key) is not None:
            fields[key] = _vector(fields[key])
    return BatchNormRecord(name, _vector(mean), _vector(variance), **fields)


def _vector(values: Any) -> np.ndarray:
    return frozen_array(np.asarray(values, np.float64).reshape(-1), np.float64)


@dataclass(frozen=True)
class LayerFile:
    """What a reader found: the layers, whether their order is the network's, and what the
    reader could not take as read (one line each)."""

    path: str
    format: str  # "TF checkpoint", "PyTorch state dict", "safetensors", "ONNX model", ...
    layers: Tuple[BatchNormRecord, ...]
    ordered: bool  # layers in network order (else in the file's key order)
    notes: Tuple[str, ...] = ()
