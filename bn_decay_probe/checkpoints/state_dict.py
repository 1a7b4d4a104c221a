"""Reading a PyTorch state dict (``.pt``, ``.pth``, ``.bin``: ``torch.save`` of a dict of
tensors) as batch-norm records, with ``torch.load(weights_only=True)``: the file's code is never
run. A batch-norm layer is a prefix with ``running_mean`` and ``running_var`` (``weight`` and
``bias`` its gamma and beta; without them the layer has none: ones and zeros). State dicts keep
neither epsilon nor momentum. The layers come in the dict's order, which is the order the
modules were registered in: the network's order for models written layer after layer.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from .. import imports
from ..errors import CheckpointError, first_line
from .batch_norm import BatchNormRecord, LayerFile, record

# The fields of a batch-norm layer in a flat dict of arrays, by naming scheme: PyTorch's, and
# Keras's / TensorFlow's (which some converters write to safetensors):
# (mean, variance, gamma, beta) suffixes after the layer's prefix and a separator.
SCHEMES = ((".", ("running_mean", "running_var", "weight", "bias")),
           ("/", ("moving_mean", "moving_variance", "gamma", "beta")),
           (".", ("moving_mean", "moving_variance", "gamma", "beta")))
# Keys that hold the model's state dict inside a training checkpoint.
_WRAPPERS = ("state_dict", "model_state_dict", "model", "module")


def layers_of(arrays: Mapping[str, np.ndarray]) -> List[BatchNormRecord]:
    """The batch-norm layers among ``arrays`` (key -> array, in the file's order), in the order
    of their mean's key."""
    found: List[Tuple[int, BatchNormRecord]] = []
    order = {key: i for i, key in enumerate(arrays)}
    for separator, (mean, variance, gamma, beta) in SCHEMES:
        suffix = separator + mean
        for key in arrays:
            if not key.endswith(suffix):
                continue
            prefix = key[:-len(suffix)]
            names = [prefix + separator + field for field in (mean, variance, gamma, beta)]
            if names[1] not in arrays:
                continue
            channels = np.size(arrays[key])
            scale, offset = (arrays.get(name) for name in names[2:])
            found.append((order[key], record(
                prefix, arrays[key], arrays[names[1]],
                gamma=np.ones(channels) if scale is None else scale,
                beta=np.zeros(channels) if offset is None else offset,
                keys=tuple(name for name in names if name in arrays))))
    return [layer for _, layer in sorted(found, key=lambda item: item[0])]


def read_state_dict(path: str) -> LayerFile:
    """The batch-norm layers of a ``torch.save``\\ d state dict; CheckpointError (one line) for a
    file that is none, or holds no batch-norm layer."""
    torch = imports.torch("reading the PyTorch state dict %s" % path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle's and torch's many errors, OSError
        raise CheckpointError("%s is not a PyTorch state dict torch.load(weights_only=True) "
                              "can read (%s); save model.state_dict(), not the model object"
                              % (path, first_line(exc))) from None
    tensors = _tensors(loaded)
    if tensors is None:
        raise CheckpointError("%s holds %s, not a state dict (a dict of tensor names to "
                              "tensors)" % (path, type(loaded).__name__))
    arrays = {key: value.detach().double().cpu().numpy() for key, value in tensors.items()
              if value.is_floating_point()}
    layers = layers_of(arrays)
    if not layers:
        raise CheckpointError("%s has no batch-norm layer: no pair of tensors named "
                              "<layer>.running_mean and <layer>.running_var" % path)
    return LayerFile(os.fspath(path), "PyTorch state dict", tuple(layers), True)


def _tensors(loaded: Any) -> Optional[Dict[str, Any]]:
    """The dict of tensors in what torch.load returned (itself, or the model's state dict
    inside a training checkpoint)."""
    if not isinstance(loaded, Mapping):
        return None
    tensors = {k: v for k, v in loaded.items() if hasattr(v, "is_floating_point")}
    if tensors:
        return tensors
    for key in _WRAPPERS:
        if isinstance(loaded.get(key), Mapping):
            return _tensors(loaded[key])
    return None
