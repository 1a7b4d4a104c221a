"""ProbeConfig: what one probe measures, validated before TensorFlow is imported."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .errors import ProbeConfigError

DEVICES = ("auto", "cpu", "gpu")
APIS = ("contrib", "layers", "keras", "nn")
UPDATES = ("inplace", "update_ops", "forgotten")
DATA_FORMATS = ("NHWC", "NCHW")
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


def _check_choice(name: str, value: Any, allowed: Tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ProbeConfigError("%s must be one of %s, got %r" % (name, ", ".join(allowed), value))
    return value


def check_device(device: Any) -> str:
    return _check_choice("device", device, DEVICES)


def check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ProbeConfigError("%s must be True or False, got %r" % (name, value))
    return bool(value)


def check_shape(shape: Any) -> Tuple[int, int, int, int]:
    message = "shape must be 4 positive integers (N, H, W, C), got %r" % (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise ProbeConfigError(message) from None
    if len(dims) != 4 or not all(_is_int(d) and d > 0 for d in dims):
        raise ProbeConfigError(message)
    return tuple(int(d) for d in dims)  # type: ignore[return-value]


def check_inputs(inputs: Any, name: str = "inputs") -> np.ndarray:
    """Returns the inputs as the float32 array the graph holds (read-only)."""
    try:
        array = np.asarray(inputs)
    except Exception as exc:  # ragged lists and the like: numpy's own message says why
        raise ProbeConfigError("%s must be a float array [N, H, W, C]: %s"
                               % (name, str(exc).splitlines()[0])) from None
    if not np.issubdtype(array.dtype, np.floating):
        raise ProbeConfigError("%s must be a float array (float16, float32 or float64), "
                               "got dtype %s" % (name, array.dtype))
    if array.ndim != 4:
        raise ProbeConfigError("%s must be 4-D [N, H, W, C], got %d-D with shape %s"
                               % (name, array.ndim, tuple(array.shape)))
    if array.size == 0:
        raise ProbeConfigError("%s must not be empty, got shape %s"
                               % (name, tuple(array.shape)))
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ProbeConfigError("%s must be finite, got %d NaN or inf value(s)" % (name, bad))
    largest = float(np.max(np.abs(array)))
    if largest > _FLOAT32_MAX:
        raise ProbeConfigError("%s must fit in float32 (|x| <= %.4g), got max |x| = %.4g"
                               % (name, _FLOAT32_MAX, largest))
    # The probe's graph is float32, like the models it stands for; float16 and float64 values are
    # cast once here so the result records exactly what TensorFlow saw.
    held = np.array(array, dtype=np.float32)
    held.flags.writeable = False
    return held


def check_batches(batches: Any) -> np.ndarray:
    """Stacks the train batches into one read-only float32 array [B, N, H, W, C]."""
    if isinstance(batches, np.ndarray) and batches.ndim == 5:
        batches = list(batches)
    if isinstance(batches, (str, bytes)) or not hasattr(batches, "__len__") or not len(batches):
        raise ProbeConfigError("batches must be a non-empty sequence of float arrays "
                               "[N, H, W, C], got %s" % _describe(batches))
    held = [check_inputs(b, "batches[%d]" % i) for i, b in enumerate(batches)]
    for i, b in enumerate(held):
        if b.shape != held[0].shape:
            raise ProbeConfigError("batches must all have one shape: batches[0] is %s, "
                                   "batches[%d] is %s" % (held[0].shape, i, b.shape))
    stacked = np.stack(held)
    stacked.flags.writeable = False
    return stacked


def _describe(value: Any) -> str:
    return ("an empty %s" % type(value).__name__ if hasattr(value, "__len__") and not
            isinstance(value, (str, bytes)) else repr(value))


def seeded_inputs(shape: Tuple[int, int, int, int], seed: int) -> np.ndarray:
    held = np.random.RandomState(seed).uniform(INPUT_LOW, INPUT_HIGH, size=shape)
    held = held.astype(np.float32)
    held.flags.writeable = False
    return held


@dataclass(frozen=True)
class ProbeConfig:
    """One probe, validated. Build it with :meth:`create`; the constructor does not validate."""

    decay: float = DEFAULT_DECAY
    shape: Tuple[int, int, int, int] = DEFAULT_SHAPE  # of the test input (and of the train input
    seed: int = 0                                      # when there are no batches)
    fused: Optional[bool] = None
    steps: int = 1  # passes over the train batches: ``steps * len(batches)`` train runs
    epsilon: float = DEFAULT_EPSILON
    device: str = "auto"
    api: str = "contrib"
    updates: str = "inplace"
    data_format: str = "NHWC"
    zero_debias: bool = False
    share_variables: bool = True
    trainable: bool = True
    input_source: str = "seed"  # "seed": uniform(0, 255) from `seed`; "given": the caller's array
    input_dtype: str = "float32"  # dtype of the caller's array before the float32 cast
    inputs: np.ndarray = field(default=None, repr=False, compare=False)  # type: ignore
    batches: Optional[np.ndarray] = field(default=None, repr=False, compare=False)  # [B,N,H,W,C]

    @classmethod
    def create(cls, decay: Any = DEFAULT_DECAY, inputs: Any = None, shape: Any = None,
               seed: Any = 0, fused: Any = None, steps: Any = 1,
               epsilon: Any = DEFAULT_EPSILON, device: Any = "auto", api: Any = "contrib",
               updates: Any = "inplace", data_format: Any = "NHWC", zero_debias: Any = False,
               share_variables: Any = True, batches: Any = None,
               trainable: Any = True) -> "ProbeConfig":
        """Validates every argument; raises ProbeConfigError with a one-line message."""
        options = dict(
            decay=check_decay(decay), seed=check_seed(seed), fused=check_fused(fused),
            steps=check_steps(steps), epsilon=check_epsilon(epsilon),
            device=check_device(device), api=_check_choice("api", api, APIS),
            updates=_check_choice("updates", updates, UPDATES),
            data_format=_check_choice("data_format", data_format, DATA_FORMATS),
            zero_debias=check_flag("zero_debias", zero_debias),
            share_variables=check_flag("share_variables", share_variables),
            trainable=check_flag("trainable", trainable))
        if options["zero_debias"] and options["api"] != "contrib":
            raise ProbeConfigError("zero_debias is tf.contrib.layers.batch_norm's "
                                   "zero_debias_moving_mean and needs api='contrib', got api=%r"
                                   % options["api"])
        if not options["trainable"] and options["api"] == "nn":
            raise ProbeConfigError("trainable is an argument of the contrib, layers and keras "
                                   "layers; api='nn' has no layer to pass it to")
        stacked = None if batches is None else check_batches(batches)
        if inputs is None:
            if shape is not None:
                shape = check_shape(shape)
            else:  # the test input looks like the train batches unless told otherwise
                shape = DEFAULT_SHAPE if stacked is None else stacked.shape[1:]
            held, source, dtype = seeded_inputs(shape, options["seed"]), "seed", "float32"
        else:
            held, source, dtype = check_inputs(inputs), "given", str(np.asarray(inputs).dtype)
            if shape is not None and check_shape(shape) != held.shape:
                raise ProbeConfigError("shape %s conflicts with inputs of shape %s; pass one or "
                                       "the other" % (tuple(shape), held.shape))
        if stacked is not None and stacked.shape[-1] != held.shape[-1]:
            raise ProbeConfigError("batches have %d channel(s) but inputs have %d; the train "
                                   "and test inputs must share C"
                                   % (stacked.shape[-1], held.shape[-1]))
        return cls(shape=held.shape, input_source=source, input_dtype=dtype, inputs=held,
                   batches=stacked, **options)

    @property
    def channels(self) -> int:
        return self.shape[-1]

    @property
    def train_steps(self) -> int:
        """Train runs in all: ``steps`` passes over the batches (one batch: the inputs)."""
        return self.steps * (1 if self.batches is None else len(self.batches))

    def train_inputs(self) -> List[np.ndarray]:
        """The input of every train step, in order."""
        if self.batches is None:
            return [self.inputs] * self.steps
        return list(self.batches) * self.steps

    def to_dict(self) -> Dict[str, Any]:
        """The options; the arrays (inputs, batches) are written by the result beside it."""
        return {"decay": self.decay, "shape": list(self.shape), "seed": self.seed,
                "fused": self.fused, "steps": self.steps, "epsilon": self.epsilon,
                "device": self.device, "api": self.api, "updates": self.updates,
                "data_format": self.data_format, "zero_debias": self.zero_debias,
                "share_variables": self.share_variables, "trainable": self.trainable,
                "input_source": self.input_source,
                "input_dtype": self.input_dtype}

    @classmethod
    def from_dict(cls, data: Dict[str, Any], inputs: Any,
                  batches: Any = None) -> "ProbeConfig":
        options = dict(data)
        options["shape"] = tuple(options["shape"])
        return cls(inputs=check_inputs(inputs),
                   batches=None if batches is None else check_batches(batches),
                   **options)
