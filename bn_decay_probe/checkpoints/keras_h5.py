"""The legacy Keras HDF5 layout: tf_keras (Keras 2) ``model.save("x.h5")`` and
``save_weights("x.h5")``, also written by Keras 3's ``model.save("x.h5")``; read with h5py.

A model file holds ``model_config`` (JSON) in its root attributes and its weights under
``model_weights``; a weights file holds them at the root, without a config or an optimizer. The
weights group lists ``layer_names`` (``model.layers`` order); each layer's group lists its
``weight_names`` ("bn_Conv1/moving_mean:0"). A nested model is one layer whose group holds every
inner layer's weights under the inner names. The optimizer's weights (``optimizer_weights``)
include its iteration counter: ``iteration:0`` (tf_keras 2.11+ optimizers) or ``Adam/iter:0``
(legacy optimizers)."""
from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .keras_v3 import ConfigLayer, FoundLayer, config_layers, text_value

_COUNTER = re.compile(r"(^|/)(iter|iteration|iterations)(:0)?$")
_MEAN = re.compile(r"(^|/)moving_mean(:0)?$")


def model_config(handle: Any) -> Optional[Dict[str, Any]]:
    """The ``model_config`` root attribute as a dict; None when absent or not JSON."""
    raw = handle.attrs.get("model_config")
    if raw is None:
        return None
    try:
        config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
    except ValueError:
        return None
    return config if isinstance(config, dict) else None


def read_layers(handle: Any, config: Optional[Dict[str, Any]]
                ) -> Tuple[List[FoundLayer], List[str]]:
    """The batch-norm layers in ``layer_names`` order (network order), with what the config
    says of each, and warnings (groups listed but missing: a half-written file)."""
    weights = handle["model_weights"] if "model_weights" in handle else handle
    configured = (config_layers(config, tf_keras=True) or []) if config else []
    warnings: List[str] = []
    layers: List[FoundLayer] = []
    for outer in [text_value(name) for name in weights.attrs.get("layer_names", [])]:
        if outer not in weights:
            warnings.append("layer %s is listed in the file but has no group (a half-written "
                            "file?)" % outer)
            continue
        group = weights[outer]
        names = [text_value(name) for name in group.attrs.get("weight_names", [])]
        for weight in names:
            match = _MEAN.search(weight)
            if not match:
                continue
            prefix = weight[:match.start()]
            variance = "%s%smoving_variance%s" % (prefix, match.group(1), match.group(2) or "")
            if weight not in group or variance not in group:
                warnings.append("%s/%s is listed in the file but missing (a half-written file?)"
                                % (group.name.lstrip("/"), weight))
                continue
            inner = prefix.rpartition("/")[2] or outer
            described = _configured(configured, outer, inner, warnings)
            name = described.name if described else inner
            path = described.path if described else (
                inner if inner == outer else "%s/%s" % (outer, inner))
            layers.append(FoundLayer(
                name, path, group.name.lstrip("/"), "%s/%s" % (group.name.lstrip("/"), weight),
                "%s/%s" % (group.name.lstrip("/"), variance), np.asarray(group[weight][()]),
                np.asarray(group[variance][()]), described))
    return layers, warnings


def _configured(configured: List[ConfigLayer], outer: str, inner: str,
                warnings: List[str]) -> Optional[ConfigLayer]:
    """The config's layer for weights of group ``outer`` whose variables are named ``inner``:
    the layer itself, or a layer of that name inside the nested model ``outer``."""
    matches = [layer for layer in configured if layer.path == outer and inner == outer] or \
        [layer for layer in configured
         if layer.path.startswith(outer + "/") and layer.name == inner] or \
        [layer for layer in configured if layer.path == outer]
    if len(matches) > 1:
        warnings.append("layer name %s is not unique in the model config; took %s"
                        % (inner, matches[0].path))
    return matches[0] if matches else None


def step_counters(handle: Any) -> Dict[str, int]:
    """The optimizer's iteration counter among ``optimizer_weights`` ("iteration:0",
    "Adam/iter:0"), named as in the file without ":0"."""
    if "optimizer_weights" not in handle:
        return {}
    group = handle["optimizer_weights"]
    counters = {}
    for weight in [text_value(name) for name in group.attrs.get("weight_names", [])]:
        if _COUNTER.search(weight) and weight in group:
            dataset = group[weight]
            if dataset.shape == () and dataset.dtype.kind in "iu":
                counters["optimizer_weights/" + weight.rsplit(":", 1)[0]] = int(dataset[()])
    return counters


def version(handle: Any) -> Optional[str]:
    return text_value(handle.attrs.get("keras_version")) if "keras_version" in handle.attrs else None
