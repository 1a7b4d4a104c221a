"""A live Keras model run for a repair: Keras 3 on any of its backends (TensorFlow, JAX,
PyTorch), or Keras 2 (tf_keras; tf.keras before TF 2.16) eagerly on TensorFlow.

:func:`batch_norm_layers` lists the model's batch-norm layers with their paths (the names of
the enclosing models and the layer's, as a saved model's config names them). A
:class:`LayerInputPass` then runs the model with every other layer in inference mode (no
dropout) and the batch-norm layers in training mode (normalizing with the batch's statistics:
the repair's pass) or in inference mode (with their moving statistics: the repair's check), and
returns each batch-norm layer's input mean, biased variance and values per channel, computed
with ``keras.ops.moments`` (Keras 3; ``torch.var_mean`` on its PyTorch backend) or
``tf.nn.moments`` (Keras 2) in float32. No variable changes: Keras 3 runs the pass in a
``StatelessScope`` (its updates are recorded, never applied); Keras 2 runs it with momentum 1
(each update writes back the value it read). The pass is compiled once (``tf.function``,
``jax.jit``); PyTorch runs eagerly under ``no_grad``.

A frozen layer (``trainable=False``) runs in inference mode in TF 2.x Keras even with
``training=True``, so the pass makes each layer trainable while it runs; the layers' own
``call``, ``trainable`` and ``momentum`` are put back afterwards, whatever happens."""
from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ProbeConfigError, first_line

KERAS_3, KERAS_2 = "Keras 3", "Keras 2"


def is_keras_model(obj: Any) -> bool:
    """A Keras model of any version, told by what it has (no Keras import)."""
    return all(hasattr(obj, name) for name in ("layers", "weights", "get_config")) and \
        callable(obj)


@dataclass(frozen=True)
class LiveLayer:
    """A batch-norm layer of a live model (for the repair's own use; results hold its path)."""

    layer: Any
    path: str  # "stem/block_a/bn": enclosing models' names and the layer's
    channels: int
    axis: int  # the channel axis, >= 0, of the layer's inputs' rank
    rank: int


class Flavour:
    """What differs between Keras 3 (and its backends) and Keras 2 for the pass."""

    def __init__(self, keras: Any, name: str) -> None:
        self.keras, self.name = keras, name
        self.backend = keras.backend.backend() if name == KERAS_3 else "tensorflow"
        self.version = str(getattr(keras, "__version__", ""))
        if self.backend == "tensorflow":
            from .. import backend

            self.tf = backend.tensorflow()
        elif self.backend == "torch":  # Keras on PyTorch has imported it
            self.torch = importlib.import_module("torch")

    @property
    def what(self) -> str:
        return "Keras %s (%s backend)" % (self.version, self.backend)

    def moments(self, values: Any, axes: Sequence[int]) -> Tuple[Any, Any, Any]:
        """(mean, biased variance, number of values) of ``values`` over ``axes``, float32."""
        if self.backend == "torch":
            # One fused reduction: keras.ops.moments dispatches several eager ops per call, per
            # layer and batch (36% over bare calls on MobileNetV2; benchmarks/RESULTS.md).
            torch = self.torch
            if values.dtype not in (torch.float32, torch.float64):
                values = values.float()
            variance, mean = torch.var_mean(values, dim=tuple(axes), correction=0)
            return mean, variance, values.numel()
        if self.name == KERAS_3:
            ops = self.keras.ops
            if self.keras.backend.standardize_dtype(values.dtype) not in ("float32", "float64"):
                values = ops.cast(values, "float32")
            mean, variance = ops.moments(values, axes=list(axes))
            return mean, variance, ops.size(values)
        tf = self.tf
        if values.dtype not in (tf.float32, tf.float64):
            values = tf.cast(values, tf.float32)
        mean, variance = tf.nn.moments(values, axes=list(axes))
        return mean, variance, tf.size(values)

    def numpy(self, value: Any) -> np.ndarray:
        if self.name == KERAS_3:
            return np.asarray(self.keras.ops.convert_to_numpy(value))
        return np.asarray(value.numpy() if hasattr(value, "numpy") else value)

    def stateless(self) -> Any:
        """Keras 3 records variable updates in the scope instead of applying them."""
        return self.keras.StatelessScope() if self.name == KERAS_3 else contextlib.nullcontext()

    def compiled(self, function: Callable[[Any], Any], example: Any) -> Callable[[Any], Any]:
        """``function`` compiled for the backend, for inputs shaped as ``example`` with any
        number of rows."""
        if self.backend == "tensorflow":
            tf = self.tf
            spec = tf.nest.map_structure(
                lambda a: tf.TensorSpec((None,) + tuple(np.shape(a))[1:], tf.as_dtype(
                    np.asarray(a).dtype)), example)
            # Keras 3 runs its own steps unconverted (do_not_convert), so does the pass.
            return tf.function(function, input_signature=[spec],
                               autograph=self.name != KERAS_3)
        if self.backend == "jax":
            jax = importlib.import_module("jax")
            return jax.jit(function)
        if self.backend == "torch":
            torch = self.torch

            def without_gradients(values: Any) -> Any:
                with torch.no_grad():
                    return function(values)

            return without_gradients
        return function


def flavour_of(model: Any) -> Flavour:
    """The Keras the model belongs to, checked to run eagerly (Keras 2 in a TF1 graph has its
    repair in the session form)."""
    packages = [cls.__module__.split(".")[0] for cls in type(model).__mro__]
    package = next((name for name in packages if name in ("keras", "tf_keras", "tensorflow")),
                   None)
    if package is None:
        raise ProbeConfigError("%s is not a Keras model" % type(model).__name__)
    if package == "tensorflow":  # tf.keras of TF 1.15 and 2.x up to 2.15 (Keras 2)
        from .. import backend

        keras = backend.tensorflow().keras
    else:
        keras = importlib.import_module(package)
    if str(getattr(keras, "__version__", "")).startswith("3.") and hasattr(keras, "ops"):
        return Flavour(keras, KERAS_3)
    flavour = Flavour(keras, KERAS_2)
    if not model.weights:
        return flavour
    try:
        model.weights[0].numpy()
    except (NotImplementedError, AttributeError, ValueError):
        raise ProbeConfigError("the Keras model lives in a TF1 graph (graph mode): recalibrate "
                               "its session instead, e.g. recalibrate(K.get_session(), batches, "
                               "inputs=model.input)") from None
    return flavour


def batch_norm_layers(model: Any) -> List[LiveLayer]:
    """Every batch-norm layer reached from the model (nested models, layers inside custom
    layers), each once, in the model's layer order."""
    if not model.weights:
        raise ProbeConfigError("the Keras model has no weights yet: build it (call it on a "
                               "batch, or give it an Input) first")
    found: List[LiveLayer] = []
    seen: Dict[int, bool] = {}
    _walk(model, [], found, seen)
    return found


def _walk(container: Any, names: List[str], found: List[LiveLayer], seen: Dict[int, bool]
          ) -> None:
    for layer in _children(container):
        if id(layer) in seen:
            continue
        seen[id(layer)] = True
        if _is_batch_norm(layer):
            channels = int(np.prod(layer.moving_mean.shape))
            axis = layer.axis[0] if isinstance(layer.axis, (list, tuple)) else layer.axis
            rank = _rank(layer)
            found.append(LiveLayer(layer, "/".join(names + [layer.name]), channels,
                                   int(axis) % rank, rank))
        else:
            _walk(layer, names + [layer.name], found, seen)


def _children(container: Any) -> List[Any]:
    flatten = getattr(container, "_flatten_layers", None)
    if flatten is not None:
        return list(flatten(include_self=False, recursive=False))
    return list(getattr(container, "layers", ()))


def _is_batch_norm(layer: Any) -> bool:
    return all(hasattr(layer, name) for name in ("moving_mean", "moving_variance", "momentum",
                                                 "axis"))


def _rank(layer: Any) -> int:
    """The rank of the inputs the layer was built for (its input spec, which both Keras set
    when they build a batch-norm layer)."""
    spec = getattr(layer, "input_spec", None)
    spec = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    if spec is None or not getattr(spec, "ndim", None):
        raise ProbeConfigError("batch-norm layer %s: the rank of its inputs is unknown (is it "
                               "built?)" % layer.name)
    return int(spec.ndim)


class LayerInputPass:
    """The repair's pass (``training``: batch norm in training mode) or its check's (inference
    mode), as a context manager: inside it, :meth:`run` takes one batch."""

    def __init__(self, flavour: Flavour, model: Any, layers: Sequence[LiveLayer],
                 training: bool = True) -> None:
        self.flavour, self.model, self.layers = flavour, model, list(layers)
        self.training = training
        self._captured: Optional[List[Tuple[int, Any, Any, Any]]] = None
        self._order: List[int] = []  # the layer of each capture, as the pass calls them
        self.masked: Dict[int, bool] = {}  # layers called with a mask: not pooled
        self._saved: List[Tuple[Any, bool, Any]] = []
        self._compiled: Optional[Callable[[Any], Any]] = None

    def __enter__(self) -> "LayerInputPass":
        try:
            for index, live in enumerate(self.layers):
                layer = live.layer
                self._saved.append((layer, layer.trainable, layer.momentum))
                layer.call = self._wrapped(index, live, layer.call)
                if self.training:
                    layer.trainable = True
                    if self.flavour.name == KERAS_2:
                        layer.momentum = 1.0
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._restore()

    def _restore(self) -> None:
        for layer, trainable, momentum in self._saved:
            if "call" in vars(layer):
                delattr(layer, "call")  # the class's call again
            layer.trainable = trainable
            layer.momentum = momentum
        self._saved = []

    def _wrapped(self, index: int, live: LiveLayer, call: Callable[..., Any]
                 ) -> Callable[..., Any]:
        axes = [axis for axis in range(live.rank) if axis != live.axis]

        def batch_statistics(inputs: Any, *args: Any, **kwargs: Any) -> Any:
            kwargs["training"] = self.training
            if self._captured is not None:
                if kwargs.get("mask") is not None:
                    self.masked[index] = True
                else:
                    self._captured.append((index,) + self.flavour.moments(inputs, axes))
            return call(inputs, *args, **kwargs)

        return batch_statistics

    def _forward(self, values: Any) -> Tuple[Any, List[Any], List[Any], List[Any]]:
        captured: List[Tuple[int, Any, Any, Any]] = []
        self._captured = captured
        try:
            with self.flavour.stateless():
                outputs = self.model(values, training=False)
        finally:
            self._captured = None
        self._order = [entry[0] for entry in captured]
        return (outputs, [entry[1] for entry in captured], [entry[2] for entry in captured],
                [entry[3] for entry in captured])

    def run(self, values: Any) -> Tuple[Any, List[Tuple[int, np.ndarray, np.ndarray, int]]]:
        """One batch: the model's outputs, and per call of a batch-norm layer (index in
        ``layers``, its input's mean, variance, values per channel)."""
        if self._compiled is None:
            self._compiled = self.flavour.compiled(self._forward, values)
        try:
            outputs, means, variances, sizes = self._compiled(values)
        except Exception as exc:  # the model's own error, on this data
            raise ProbeConfigError("the model could not run in %s mode on this batch: %s"
                                   % ("training" if self.training else "inference",
                                      _reason(exc))) from None
        numpy = self.flavour.numpy
        statistics = []
        for index, mean, variance, size in zip(self._order, means, variances, sizes):
            channels = self.layers[index].channels
            statistics.append((index, numpy(mean).reshape(-1), numpy(variance).reshape(-1),
                               int(numpy(size)) // channels))
        return outputs, statistics


def _reason(exc: BaseException) -> str:
    """The line that says why: an error raised inside a tf.function says "in user code:",
    then the stack, then the reason."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if lines and lines[0] == "in user code:":
        return lines[-1]
    return first_line(exc)


@contextlib.contextmanager
def unchanged_on_error(flavour: Flavour, layers: Sequence[LiveLayer]) -> Iterator[None]:
    """Puts the layers' moving statistics back if the body fails after assigning some."""
    saved = [(live.layer, flavour.numpy(live.layer.moving_mean),
              flavour.numpy(live.layer.moving_variance)) for live in layers]
    try:
        yield
    except BaseException:
        for layer, mean, variance in saved:
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
        raise
