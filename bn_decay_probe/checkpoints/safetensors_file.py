"""Reading a ``.safetensors`` file as batch-norm records: its tensors (as numpy arrays, without
PyTorch; bfloat16, which numpy lacks, through PyTorch where it is installed) grouped into layers
as a state dict's are (:func:`.state_dict.layers_of`), in the file's order. safetensors stores
neither epsilon nor momentum."""
from __future__ import annotations

import os
from typing import Any, Dict

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

    try:
        arrays = _tensors(safe_open, os.fspath(path), "numpy")
    except Exception as exc:  # safetensors' SafetensorError, OSError, a dtype numpy lacks
        if not imports.installed("torch"):
            raise CheckpointError("%s is not a safetensors file this reader can read (%s)"
                                  % (path, first_line(exc))) from None
        try:
            imports.torch("reading %s" % path)
            arrays = {k: v.double().numpy()
                      for k, v in _tensors(safe_open, os.fspath(path), "pt").items()}
        except Exception as retried:  # pylint: disable=broad-except
            raise CheckpointError("%s is not a safetensors file this reader can read (%s)"
                                  % (path, first_line(retried))) from None
    layers = layers_of({k: np.asarray(v, np.float64) for k, v in arrays.items()
                        if np.issubdtype(np.asarray(v).dtype, np.floating)})
    if not layers:
        raise CheckpointError("%s has no batch-norm layer: no pair of tensors named "
                              "<layer>.running_mean and <layer>.running_var" % path)
    return LayerFile(os.fspath(path), "safetensors", tuple(layers), True)


def _tensors(safe_open: Any, path: str, framework: str) -> Dict[str, Any]:
    """Every tensor of the file, in its order, as ``framework`` gives them."""
    with safe_open(path, framework=framework) as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}
