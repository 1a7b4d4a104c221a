"""Reading a ``.safetensors`` file as batch-norm records: its tensors (as numpy arrays, without
PyTorch) grouped into layers as a state dict's are (:func:`.state_dict.layers_of`), in the
file's order. safetensors stores neither epsilon nor momentum."""
from __future__ import annotations

import os
from typing import Dict

import numpy as np

from .. import imports
from ..errors import CheckpointError, first_line
from .batch_norm import LayerFile
from .state_dict import layers_of


def read_safetensors(path: str) -> LayerFile:
    """The batch-norm layers of a safetensors file; CheckpointError (one line) for a file that
    is none, or holds no batch-norm layer."""
    imports.require(["safetensors"], "reading the safetensors file %s" % path)
    from safetensors import safe_open

    arrays: Dict[str, np.ndarray] = {}
    try:
        with safe_open(os.fspath(path), framework="numpy") as handle:
            for key in handle.keys():  # the file's order
                arrays[key] = handle.get_tensor(key)
    except Exception as exc:  # safetensors' SafetensorError, OSError, a dtype numpy lacks
        raise CheckpointError("%s is not a safetensors file this reader can read (%s)"
                              % (path, first_line(exc))) from None
    layers = layers_of({k: np.asarray(v, np.float64) for k, v in arrays.items()
                        if np.issubdtype(v.dtype, np.floating)})
    if not layers:
        raise CheckpointError("%s has no batch-norm layer: no pair of tensors named "
                              "<layer>.running_mean and <layer>.running_var" % path)
    return LayerFile(os.fspath(path), "safetensors", tuple(layers), True)
