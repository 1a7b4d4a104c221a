"""ProbeConfig: what one probe measures, validated before TensorFlow is imported."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..errors import ProbeConfigError
from ..values import aligned_empty
from .frameworks import FRAMEWORK_APIS, FRAMEWORKS

DEVICES = ("auto", "cpu", "gpu")
GRAPH_APIS = ("contrib", "layers", "keras", "nn")  # TF1-style graphs (engines/tf_graph.py)
# keras3 runs eagerly (engines/keras3.py); the other frameworks' apis (frameworks.py) run in
# their own framework.
APIS = GRAPH_APIS + ("keras3",) + FRAMEWORK_APIS
# The apis whose layer has a trainable flag that changes what it does (Keras: inference mode;
# PyTorch: requires_grad only).
_TRAINABLE_APIS = ("contrib", "layers", "keras", "keras3", "torch", "torch-cumulative",
                   "keras3-jax", "keras3-torch")
UPDATES = ("inplace", "update_ops", "forgotten")
DATA_FORMATS = ("NHWC", "NCHW")
DEFAULT_SHAPE = (1, 4, 4, 1)
DEFAULT_DECAY = 0.9
DEFAULT_EPSILON = 1e-3
DEFAULT_TOL = 0.01  # in output units: the train output has unit variance per channel
# The blog experiment filled its input with np.random.uniform(0, 255); a seeded RandomState
# keeps that distribution and makes every probe reproducible.
INPUT_LOW, INPUT_HIGH = 0.0, 255.0
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# A drawn input is held as float32: 2**26 values take 256 MiB, well within a workstation, where
# a typo such as 1000,1000,1000,3 would ask for 12 GB.
MAX_DRAWN_VALUES = 2 ** 26
_CHUNK = 1 << 16  # values a large input is copied, checked or drawn by: they stay in cache


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def shown(value: Any) -> str:
    """repr of a value in a message, numpy scalars as the Python value (numpy 2 writes
    np.float32(nan) where numpy 1 wrote nan)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def check_decay(decay: Any) -> float:
    if not _is_real(decay) or math.isnan(float(decay)) or not 0.0 <= float(decay) <= 1.0:
        raise ProbeConfigError("decay must be a number in [0, 1], got %s" % shown(decay))
    return float(decay)


def check_epsilon(epsilon: Any) -> float:
    if not _is_real(epsilon) or not math.isfinite(float(epsilon)) or float(epsilon) <= 0.0:
        raise ProbeConfigError("epsilon must be a finite number > 0, got %s" % shown(epsilon))
    return float(epsilon)


def check_steps(steps: Any) -> int:
    if not _is_int(steps) or steps < 1:
        raise ProbeConfigError("steps must be an integer >= 1, got %s" % shown(steps))
    return int(steps)


def check_seed(seed: Any) -> int:
    if not _is_int(seed) or not 0 <= seed < 2 ** 32:
        raise ProbeConfigError("seed must be an integer in [0, 2**32 - 1], got %s" % shown(seed))
    return int(seed)


def check_tol(tol: Any, name: str = "tol") -> float:
    """A tolerance in output units (the train output has unit variance)."""
    if not _is_real(tol) or not math.isfinite(float(tol)) or float(tol) <= 0.0:
        raise ProbeConfigError("%s must be a finite number > 0, got %s" % (name, shown(tol)))
    return float(tol)


def check_fused(fused: Any) -> Optional[bool]:
    if fused is None or isinstance(fused, (bool, np.bool_)):
        return None if fused is None else bool(fused)
    raise ProbeConfigError("fused must be None (TensorFlow's default), True or False, got %s"
                           % shown(fused))


def _check_choice(name: str, value: Any, allowed: Tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ProbeConfigError("%s must be one of %s, got %s"
                               % (name, ", ".join(allowed), shown(value)))
    return value


def check_device(device: Any) -> str:
    return _check_choice("device", device, DEVICES)


def check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ProbeConfigError("%s must be True or False, got %s" % (name, shown(value)))
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
    return _held(_float_array(inputs, name), name)


def _float_array(inputs: Any, name: str) -> np.ndarray:
    """The caller's array, checked, in its own dtype."""
    if isinstance(inputs, np.ma.MaskedArray):  # np.asarray would drop the mask silently
        raise ProbeConfigError("%s must be a plain float array, got a masked array: fill the "
                               "masked values first (x.filled(...))" % name)
    try:
        array = np.asarray(inputs)
    except ValueError:  # numpy >= 1.24 refuses ragged sequences; older ones make objects
        array = np.array(inputs, dtype=object)
    except Exception as exc:  # numpy's own message says why
        raise ProbeConfigError("%s must be a float array [N, H, W, C]: %s"
                               % (name, str(exc).splitlines()[0])) from None
    if array.dtype == object or (array.ndim == 0 and array.dtype.kind not in "biufc"):
        raise ProbeConfigError("%s must be a float array [N, H, W, C], got %s"
                               % (name, _not_numbers(inputs, array)))
    if not np.issubdtype(array.dtype, np.floating):
        raise ProbeConfigError("%s must be a float array (float16, float32 or float64), "
                               "got dtype %s" % (name, array.dtype))
    if array.ndim != 4:
        raise ProbeConfigError("%s must be 4-D [N, H, W, C], got %d-D with shape %s"
                               % (name, array.ndim, tuple(array.shape)))
    if array.size == 0:
        raise ProbeConfigError("%s must not be empty, got shape %s"
                               % (name, tuple(array.shape)))
    return array


def _not_numbers(inputs: Any, array: np.ndarray) -> str:
    if array.ndim == 0:  # not array-like at all: a dict, a string, a tf.Tensor, ...
        return "a value of type %s" % type(inputs).__name__
    if any(isinstance(item, (list, tuple, np.ndarray)) for item in array.flat):
        return "a ragged nested sequence (its rows differ in length)"
    return "an array of Python objects (%s)" % ", ".join(
        sorted({type(item).__name__ for item in array.flat}))


def _held(array: np.ndarray, name: str) -> np.ndarray:
    """The float32 copy the graph holds, read-only, refusing NaN, inf and values beyond
    float32. The probe's graph is float32, like the models it stands for; float16 and float64
    values are cast once here so the result records exactly what TensorFlow saw (cast_note
    says what the cast changed). Copied and checked a chunk at a time, while it is in cache,
    into an aligned buffer TensorFlow can hold without copying again."""
    held = aligned_empty(array.shape, np.float32)
    source, flat = np.ascontiguousarray(array).reshape(-1), held.reshape(-1)
    wide = array.dtype.itemsize > 4  # float64 and up may not fit in float32
    for start in range(0, flat.size, _CHUNK):
        chunk = slice(start, start + _CHUNK)
        if wide:  # before the cast, which would overflow (min and max propagate NaN and inf)
            low, high = source[chunk].min(), source[chunk].max()
            if not (np.isfinite(low) and np.isfinite(high) and max(-low, high) <= _FLOAT32_MAX):
                _refuse(array, name)
        flat[chunk] = source[chunk]
        if not wide and not np.isfinite(flat[chunk]).all():
            _refuse(array, name)
    held.flags.writeable = False
    return held


def _refuse(array: np.ndarray, name: str) -> None:
    """The error for inputs with NaN, inf, or values float32 cannot hold."""
    finite = np.isfinite(array)
    if not np.all(finite):
        bad = int(np.size(array) - np.count_nonzero(finite))
        raise ProbeConfigError("%s must be finite, got %d NaN or inf value(s)" % (name, bad))
    raise ProbeConfigError("%s must fit in float32 (|x| <= %.4g), got max |x| = %.4g"
                           % (name, _FLOAT32_MAX, float(np.max(np.abs(array)))))


def cast_note(name: str, original: np.ndarray, held: np.ndarray) -> Optional[str]:
    """One line on what holding ``original`` as float32 changed; None when nothing did (float32
    and float16 values, and float64 values that float32 represents exactly)."""
    if original.dtype.itemsize <= 4:  # float16 and float32 are exact: no float64 copy needed
        return None
    wide = np.asarray(original, np.float64)
    changed = wide != held
    if not changed.any():
        return None
    nonzero = wide != 0
    relative = np.abs(held[nonzero] - wide[nonzero]) / np.abs(wide[nonzero])
    parts = ["%s: %s values held as float32 (the graph's dtype): %d of %d changed, by up to "
             "%.2g relative" % (name, original.dtype, np.count_nonzero(changed), changed.size,
                                relative.max())]
    flushed = np.count_nonzero(nonzero & (held == 0))
    if flushed:
        parts.append("%d nonzero value(s) became 0" % flushed)
    channels = wide.shape[-1]
    before = wide.reshape(-1, channels).var(axis=0)
    after = held.astype(np.float64).reshape(-1, channels).var(axis=0)
    moved = np.nonzero(np.abs(after - before) > 1e-3 * before)[0]
    if len(moved):
        parts.append("the variance of channel(s) %s changes from %s to %s (numpy, float64)"
                     % (", ".join(map(str, moved)), _numbers(before[moved]),
                        _numbers(after[moved])))
    return "; ".join(parts)


def _numbers(values: np.ndarray) -> str:
    return "[%s]" % ", ".join("%.4g" % v for v in values)


def check_batches(batches: Any) -> np.ndarray:
    """Stacks the train batches into one read-only float32 array [B, N, H, W, C]."""
    return _held(_batch_arrays(batches), "batches")


def _batch_arrays(batches: Any) -> np.ndarray:
    """The batches, checked, stacked in their common dtype (float32 and float64 batches stack
    as float64, which holds both exactly)."""
    if isinstance(batches, np.ndarray) and batches.ndim != 5:
        raise ProbeConfigError("batches must be a sequence of float arrays [N, H, W, C] or one "
                               "array [B, N, H, W, C], got one array of shape %s; for one "
                               "batch x, pass [x]" % (tuple(batches.shape),))
    if (isinstance(batches, (str, bytes, Mapping)) or not hasattr(batches, "__len__")
            or not len(batches)):
        raise ProbeConfigError("batches must be a non-empty sequence of float arrays "
                               "[N, H, W, C], got %s" % _describe(batches))
    arrays = [_float_array(b, "batches[%d]" % i) for i, b in enumerate(batches)]  # 5-D: by B
    for i, b in enumerate(arrays):
        if b.shape != arrays[0].shape:
            raise ProbeConfigError("batches must all have one shape: batches[0] is %s, "
                                   "batches[%d] is %s" % (arrays[0].shape, i, b.shape))
    return np.stack(arrays)


def _describe(value: Any) -> str:
    if isinstance(value, (numbers.Number, str, bytes)):
        return repr(value)
    if isinstance(value, np.ndarray):
        return "an array of shape %s" % (tuple(value.shape),)
    if hasattr(value, "__len__") and not len(value):
        return "an empty %s" % type(value).__name__
    return "a value of type %s" % type(value).__name__


def _check_eager(options: Dict[str, Any]) -> None:
    """Keras 3 and the other frameworks: no fused kernel to ask for, no update ops."""
    api = options["api"]
    framework = FRAMEWORKS.get(api)
    name = "Keras 3" if framework is None else framework.name
    if options["fused"]:
        layer = ("Keras 3's BatchNormalization" if framework is None else framework.layer)
        raise ProbeConfigError("fused=True is not available with api=%r: %s has no fused "
                               "argument%s; use fused=None or False"
                               % (api, layer, " (it builds the non-fused ops)"
                                  if framework is None else ""))
    if options["updates"] != "inplace":
        raise ProbeConfigError("api=%r updates the moving statistics as the layer runs (%s has "
                               "no update ops to collect or forget); updates must be "
                               "'inplace', got %r" % (api, name, options["updates"]))


def seeded_inputs(shape: Tuple[int, ...], seed: int) -> np.ndarray:
    """uniform(INPUT_LOW, INPUT_HIGH) values of ``shape`` (a leading B for batches)."""
    values = float(np.prod(np.asarray(shape, np.float64)))  # float64: no integer overflow
    if values > MAX_DRAWN_VALUES:
        raise ProbeConfigError("shape %s would draw %.3g values; the probe draws at most %d "
                               "(2**26): use a smaller shape" % (tuple(shape), values,
                                                                 MAX_DRAWN_VALUES))
    # Drawn in chunks into the held buffer: the numbers of one draw of the whole shape, without
    # a float64 copy of a large input.
    draws = np.random.RandomState(seed)
    held = aligned_empty(shape, np.float32)
    flat = held.reshape(-1)
    for start in range(0, flat.size, _CHUNK):
        chunk = flat[start:start + _CHUNK]
        chunk[...] = draws.uniform(INPUT_LOW, INPUT_HIGH, size=chunk.size)
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
    # What the float32 cast changed in the inputs and batches (cast_note); the result notes it.
    cast_notes: Tuple[str, ...] = field(default=(), repr=False, compare=False)
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
        if options["api"] not in GRAPH_APIS:
            _check_eager(options)
        if not options["trainable"] and options["api"] == "nn":
            raise ProbeConfigError("trainable is an argument of the contrib, layers, keras and "
                                   "keras3 layers; api='nn' has no layer to pass it to")
        if not options["trainable"] and options["api"] not in _TRAINABLE_APIS:
            raise ProbeConfigError("%s has no trainable flag; trainable=False is for api %s"
                                   % (FRAMEWORKS[options["api"]].layer,
                                      ", ".join(_TRAINABLE_APIS)))
        notes: List[Optional[str]] = []
        stacked = None
        if batches is not None:
            original = _batch_arrays(batches)
            stacked = _held(original, "batches")
            notes.append(cast_note("batches", original, stacked))
        if inputs is None:
            if shape is not None:
                shape = check_shape(shape)
            else:  # the test input looks like the train batches unless told otherwise
                shape = DEFAULT_SHAPE if stacked is None else stacked.shape[1:]
            held, source, dtype = seeded_inputs(shape, options["seed"]), "seed", "float32"
        else:
            original = _float_array(inputs, "inputs")
            held, source, dtype = _held(original, "inputs"), "given", str(original.dtype)
            notes.insert(0, cast_note("inputs", original, held))
            if shape is not None and check_shape(shape) != held.shape:
                raise ProbeConfigError("shape %s conflicts with inputs of shape %s; pass one or "
                                       "the other" % (tuple(shape), held.shape))
        if stacked is not None and stacked.shape[-1] != held.shape[-1]:
            raise ProbeConfigError("batches have %d channel(s) but inputs have %d; the train "
                                   "and test inputs must share C"
                                   % (stacked.shape[-1], held.shape[-1]))
        return cls(shape=held.shape, input_source=source, input_dtype=dtype,
                   cast_notes=tuple(n for n in notes if n), inputs=held, batches=stacked,
                   **options)

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
                "input_source": self.input_source, "input_dtype": self.input_dtype,
                "cast_notes": list(self.cast_notes)}

    @classmethod
    def from_dict(cls, data: Dict[str, Any], inputs: Any,
                  batches: Any = None) -> "ProbeConfig":
        options = dict(data)
        options["shape"] = tuple(options["shape"])
        options["cast_notes"] = tuple(options.get("cast_notes", ()))  # absent from older JSON
        return cls(inputs=check_inputs(inputs),
                   batches=None if batches is None else check_batches(batches),
                   **options)


def check_decays(decays: Any) -> Tuple[float, ...]:
    """A non-empty sequence of numbers in [0, 1]; raises ProbeConfigError naming the first bad
    one."""
    if isinstance(decays, np.ndarray) and decays.ndim != 1:
        raise ProbeConfigError("decays must be a 1-D sequence of numbers in [0, 1], got an "
                               "array of shape %s" % (decays.shape,))
    if isinstance(decays, (str, bytes, Mapping)) or not hasattr(decays, "__iter__"):
        raise ProbeConfigError("decays must be a non-empty sequence of numbers in [0, 1], "
                               "got %r" % (decays,))
    values = list(decays)
    if not values:
        raise ProbeConfigError("decays must be a non-empty sequence of numbers in [0, 1], "
                               "got an empty %s" % type(decays).__name__)
    checked = []
    for index, decay in enumerate(values):
        try:
            checked.append(check_decay(decay))
        except ProbeConfigError:
            raise ProbeConfigError("decays[%d] must be a number in [0, 1], got %r"
                                   % (index, decay)) from None
    return tuple(checked)
