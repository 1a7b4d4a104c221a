"""Live models as a port's side, read from their layers' attributes: a ``torch.nn.Module``
(every BatchNorm1d/2d/3d and SyncBatchNorm module: running statistics, weight and bias, eps,
momentum) and a Keras model, Keras 3 or tf_keras in eager mode (every BatchNormalization layer,
nested models too: moving statistics, gamma and beta, epsilon, momentum)."""
from __future__ import annotations

import sys
from typing import Any, Iterator, List, Optional, Tuple

import numpy as np

from ..checkpoints.batch_norm import (NO_DECAY, DECAY, ONE_MINUS_DECAY, BatchNormRecord,
                                      LayerFile, record)

_KERAS_BATCH_NORMS = ("BatchNormalization", "SyncBatchNormalization")


def kind_of(model: Any) -> Optional[str]:
    """"torch" or "keras" for a live model of either, else None (nothing is imported: a torch
    module exists only where torch was imported)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return "torch"
    if any(cls.__module__.split(".")[0] in ("keras", "tf_keras") and cls.__name__ in
           ("Model", "Layer", "Functional", "Sequential") for cls in type(model).__mro__):
        return "keras"
    return None


def torch_layers(model: Any) -> LayerFile:
    torch = sys.modules["torch"]
    kinds = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d,
             torch.nn.SyncBatchNorm)
    layers: List[BatchNormRecord] = []
    for name, module in model.named_modules():
        if not isinstance(module, kinds):
            continue
        channels = module.num_features
        tracked = module.running_mean is not None

        def array(tensor: Any, default: float) -> np.ndarray:
            if tensor is None:
                return np.full(channels, default)
            return tensor.detach().double().cpu().numpy()

        layers.append(record(
            name, array(module.running_mean, np.nan), array(module.running_var, np.nan),
            gamma=array(module.weight, 1.0), beta=array(module.bias, 0.0),
            epsilon=float(module.eps),
            momentum=None if module.momentum is None else float(module.momentum),
            convention=NO_DECAY if module.momentum is None else ONE_MINUS_DECAY,
            keys=tuple("%s.%s" % (name, field) for field in (
                "running_mean", "running_var", "weight", "bias") if tracked
                or field in ("weight", "bias"))))
    return LayerFile("%s (torch.nn.Module)" % type(model).__name__, "PyTorch module",
                     tuple(layers), True)


def keras_layers(model: Any) -> LayerFile:
    layers: List[BatchNormRecord] = []
    for path, layer in _keras_walk(model, ()):
        if type(layer).__name__ not in _KERAS_BATCH_NORMS or not hasattr(layer, "moving_mean"):
            continue
        channels = int(np.size(_value(layer.moving_mean)))
        name = "/".join(path)
        layers.append(record(
            name, _value(layer.moving_mean), _value(layer.moving_variance),
            gamma=np.ones(channels) if layer.gamma is None else _value(layer.gamma),
            beta=np.zeros(channels) if layer.beta is None else _value(layer.beta),
            epsilon=float(layer.epsilon), momentum=float(layer.momentum), convention=DECAY,
            keys=(layer.name,) if layer.name != name else ()))
    return LayerFile("%s (Keras model)" % getattr(model, "name", type(model).__name__),
                     "Keras model", tuple(layers), True)


def _keras_walk(layer: Any, path: Tuple[str, ...]) -> Iterator[Tuple[Tuple[str, ...], Any]]:
    """Every layer under ``layer`` with its path of names (a nested model's name first)."""
    for child in getattr(layer, "layers", ()):
        inner = path + (child.name,)
        yield inner, child
        yield from _keras_walk(child, inner)


def _value(variable: Any) -> np.ndarray:
    numpy = getattr(variable, "numpy", None)
    return np.asarray(numpy() if callable(numpy) else variable, np.float64)
