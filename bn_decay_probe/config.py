"""ProbeConfig: what one probe measures, validated before TensorFlow is imported."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .errors import ProbeConfigError

DEVICES = ("auto", "cpu", "gpu")
DEFAULT_SHAPE = (1, 4, 4, 1)
DEFAULT_DECAY = 0.9
DEFAULT_EPSILON = 1e-3
# The seed filled its input with np.random.uniform(0, 255); a seeded RandomState keeps that
# distribution and makes every probe reproducible.
INPUT_LOW, INPUT_HIGH = 0.0, 255.0
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_decay(decay: Any) -> float:
    if not _is_real(decay) or math.isnan(float(decay)) or not 0.0 <= float(decay) <= 1.0:
        raise ProbeConfigError("decay must be a number in [0, 1], got %r" % (decay,))
    return float(decay)


def check_epsilon(epsilon: Any) -> float:
    if not _is_real(epsilon) or not math.isfinite(float(epsilon)) or float(epsilon) <= 0.0:
        raise ProbeConfigError("epsilon must be a finite number > 0, got %r" % (epsilon,))
    return float(epsilon)


def check_steps(steps: Any) -> int:
    if not _is_int(steps) or steps < 1:
        raise ProbeConfigError("steps must be an integer >= 1, got %r" % (steps,))
    return int(steps)


def check_seed(seed: Any) -> int:
    if not _is_int(seed) or not 0 <= seed < 2 ** 32:
        raise ProbeConfigError("seed must be an integer in [0, 2**32 - 1], got %r" % (seed,))
    return int(seed)


def check_fused(fused: Any) -> Optional[bool]:
    if fused is None or isinstance(fused, (bool, np.bool_)):
        return None if fused is None else bool(fused)
    raise ProbeConfigError("fused must be None (TensorFlow's default), True or False, got %r"
                           % (fused,))


def check_device(device: Any) -> str:
    if device not in DEVICES:
        raise ProbeConfigError("device must be one of %s, got %r" % (", ".join(DEVICES), device))
    return str(device)


def check_shape(shape: Any) -> Tuple[int, int, int, int]:
    message = "shape must be 4 positive integers (N, H, W, C), got %r" % (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise ProbeConfigError(message) from None
    if len(dims) != 4 or not all(_is_int(d) and d > 0 for d in dims):
        raise ProbeConfigError(message)
    return tuple(int(d) for d in dims)  # type: ignore[return-value]


def check_inputs(inputs: Any) -> np.ndarray:
    """Returns the inputs as the float32 array the graph holds (read-only)."""
    try:
        array = np.asarray(inputs)
    except Exception as exc:  # ragged lists and the like: numpy's own message says why
        raise ProbeConfigError("inputs must be a float array [N, H, W, C]: %s"
                               % str(exc).splitlines()[0]) from None
    if not np.issubdtype(array.dtype, np.floating):
        raise ProbeConfigError("inputs must be a float array (float16, float32 or float64), "
                               "got dtype %s" % array.dtype)
    if array.ndim != 4:
        raise ProbeConfigError("inputs must be 4-D [N, H, W, C], got %d-D with shape %s"
                               % (array.ndim, tuple(array.shape)))
    if array.size == 0:
        raise ProbeConfigError("inputs must not be empty, got shape %s" % (tuple(array.shape),))
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ProbeConfigError("inputs must be finite, got %d NaN or inf value(s)" % bad)
    largest = float(np.max(np.abs(array)))
    if largest > _FLOAT32_MAX:
        raise ProbeConfigError("inputs must fit in float32 (|x| <= %.4g), got max |x| = %.4g"
                               % (_FLOAT32_MAX, largest))
    # The probe's graph is float32, like the models it stands for; float16 and float64 values are
    # cast once here so the result records exactly what TensorFlow saw.
    held = np.array(array, dtype=np.float32)
    held.flags.writeable = False
    return held


def seeded_inputs(shape: Tuple[int, int, int, int], seed: int) -> np.ndarray:
    held = np.random.RandomState(seed).uniform(INPUT_LOW, INPUT_HIGH, size=shape)
    held = held.astype(np.float32)
    held.flags.writeable = False
    return held


@dataclass(frozen=True)
class ProbeConfig:
    """One probe, validated. Build it with :meth:`create`; the constructor does not validate."""

    decay: float = DEFAULT_DECAY
    shape: Tuple[int, int, int, int] = DEFAULT_SHAPE
    seed: int = 0
    fused: Optional[bool] = None
    steps: int = 1
    epsilon: float = DEFAULT_EPSILON
    device: str = "auto"
    input_source: str = "seed"  # "seed": uniform(0, 255) from `seed`; "given": the caller's array
    input_dtype: str = "float32"  # dtype of the caller's array before the float32 cast
    inputs: np.ndarray = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    @classmethod
    def create(cls, decay: Any = DEFAULT_DECAY, inputs: Any = None, shape: Any = None,
               seed: Any = 0, fused: Any = None, steps: Any = 1,
               epsilon: Any = DEFAULT_EPSILON, device: Any = "auto") -> "ProbeConfig":
        """Validates every argument; raises ProbeConfigError with a one-line message."""
        decay = check_decay(decay)
        seed = check_seed(seed)
        fused = check_fused(fused)
        steps = check_steps(steps)
        epsilon = check_epsilon(epsilon)
        device = check_device(device)
        if inputs is None:
            shape = DEFAULT_SHAPE if shape is None else check_shape(shape)
            return cls(decay, shape, seed, fused, steps, epsilon, device, "seed", "float32",
                       seeded_inputs(shape, seed))
        held = check_inputs(inputs)
        if shape is not None and check_shape(shape) != held.shape:
            raise ProbeConfigError("shape %s conflicts with inputs of shape %s; pass one or the "
                                   "other" % (tuple(shape), held.shape))
        return cls(decay, held.shape, seed, fused, steps, epsilon, device, "given",
                   str(np.asarray(inputs).dtype), held)

    @property
    def channels(self) -> int:
        return self.shape[-1]

    def to_dict(self) -> Dict[str, Any]:
        return {"decay": self.decay, "shape": list(self.shape), "seed": self.seed,
                "fused": self.fused, "steps": self.steps, "epsilon": self.epsilon,
                "device": self.device, "input_source": self.input_source,
                "input_dtype": self.input_dtype}
