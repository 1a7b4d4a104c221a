"""The Keras v3 weights layout: a ``.keras`` file's ``model.weights.h5`` and a ``.weights.h5``
(Keras 3, and tf_keras 2.13+ for ``.keras``), read with h5py.

The file keys a layer by its class, not its name: ``layers/batch_normalization_17/vars/0..n``,
``snake_case(class name)`` numbered per container in ``model.layers`` order (nested models have
``layers/functional/layers/...`` of their own). So the layers' names, network order, momentum,
epsilon and trainable flag come from the model config (``config.json``), walked here the way
Keras's saving code walks the model. Without a config (a ``.weights.h5``), batch-norm layers are
found by their key (``batch_normalization[_N]``), or failing that by their variables (four 1-D
float vectors of one length), named by the ``name`` attribute Keras 3.12 writes on ``vars``, or
by the key. A batch-norm layer's variables are ``[gamma] [beta] moving_mean moving_variance``:
the moving statistics are always the last two (gamma or beta are left out with ``scale=False``
/ ``center=False``). The optimizer's ``vars/0`` is its iteration counter (a mixed-precision
LossScaleOptimizer counts in ``optimizer/inner_optimizer/vars/0``; its own stays 0)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

BATCH_NORM_CLASSES = frozenset({"BatchNormalization", "SyncBatchNormalization",
                                "BatchNormalizationV1", "BatchNormalizationV2"})
BATCH_NORM_KEYS = ("batch_normalization", "sync_batch_normalization")
# Groups of a weights file that hold no layer.
_NOT_LAYERS = frozenset({"vars", "optimizer", "metrics"})
# The optimizer groups whose vars/0 count iterations, and the counter names given to them.
OPTIMIZER_COUNTERS = (("optimizer/inner_optimizer", "optimizer/inner_optimizer/iterations"),
                      ("optimizer", "optimizer/iterations"))


@dataclass(frozen=True)
class ConfigLayer:
    """A batch-norm layer as the model config describes it."""

    name: str
    path: str  # names of the enclosing models and the layer's: "stem/block_a/bn"
    group: str  # its group in the weights file: "layers/functional/layers/batch_normalization"
    momentum: Optional[float]
    epsilon: Optional[float]
    trainable: bool  # its own flag and every enclosing model's
    variables: Optional[int]  # 2 + center + scale, as configured


@dataclass(frozen=True)
class FoundLayer:
    """A batch-norm layer's group in the weights file, and what the config says of it."""

    name: str
    path: str
    group: str
    mean_key: str
    variance_key: str
    mean: np.ndarray
    variance: np.ndarray
    config: Optional[ConfigLayer]


def snake_case(name: str, tf_keras: bool) -> str:
    """Keras's key for a class name (keras.src.utils.naming.to_snake_case; tf_keras's
    generic_utils.to_snake_case differs in digits after a capital and private classes)."""
    if tf_keras:
        name = re.sub("(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
        name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
        return name if not name.startswith("_") else "private" + name
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def is_batch_norm(class_name: str, config: Dict[str, Any]) -> bool:
    """By class, or (a subclass) by the moving statistics' initializers in its config."""
    return class_name in BATCH_NORM_CLASSES or (
        "moving_mean_initializer" in config and "moving_variance_initializer" in config)


def config_layers(model_config: Dict[str, Any], tf_keras: bool) -> Optional[List[ConfigLayer]]:
    """The batch-norm layers of a ``config.json``, in network order, nested models expanded
    where they stand; None when the config lists no layers (a subclassed model)."""
    inner = model_config.get("config")
    if not isinstance(inner, dict) or not isinstance(inner.get("layers"), list):
        return None
    found: List[ConfigLayer] = []
    _walk(model_config, "", [], inner.get("trainable", True) is not False, tf_keras, found)
    return found


def _walk(model: Dict[str, Any], group: str, names: List[str], trainable: bool, tf_keras: bool,
          found: List[ConfigLayer]) -> None:
    """Keras's saving code keys each layer of ``model.layers`` by its class, counting per
    container ("batch_normalization", "batch_normalization_1", ...)."""
    used: Dict[str, int] = {}
    for entry in model["config"]["layers"]:
        class_name = str(entry.get("class_name", ""))
        config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
        key = snake_case(class_name, tf_keras)
        used[key] = used.get(key, -1) + 1
        if used[key]:
            key = "%s_%d" % (key, used[key])
        name = str(config.get("name", entry.get("name", key)))
        layer_group = "%slayers/%s" % (group, key)
        layer_trainable = trainable and config.get("trainable", True) is not False
        if is_batch_norm(class_name, config):
            found.append(ConfigLayer(
                name, "/".join(names + [name]), layer_group, number_or_none(config.get("momentum")),
                number_or_none(config.get("epsilon")), layer_trainable,
                2 + (config.get("center", True) is not False) +
                (config.get("scale", True) is not False)))
        elif isinstance(config.get("layers"), list):
            _walk(entry, layer_group + "/", names + [name], layer_trainable, tf_keras, found)


def number_or_none(value: Any) -> Optional[float]:
    """A config's number as a float; None for anything else (absent, null, a bool)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def read_layers(weights: Any, configured: Optional[List[ConfigLayer]]
                ) -> Tuple[List[FoundLayer], List[str], bool]:
    """(layers, warnings, in network order) of the weights file ``weights`` (an h5py File):
    the configured layers in config order, then any other group holding batch-norm variables
    (inside a custom layer, or every layer when there is no config)."""
    warnings: List[str] = []
    layers: List[FoundLayer] = []
    for layer in configured or ():
        variables = _variables(weights, layer.group)
        if variables is None:
            warnings.append("%s (%s): no variables at %s in the weights file"
                            % (layer.path, layer.name, layer.group))
            continue
        saved = text_value(weights[layer.group + "/vars"].attrs.get("name"))
        if saved is not None and saved != layer.name:
            warnings.append("%s: the weights file names it %r, the config %r"
                            % (layer.group, saved, layer.name))
        if layer.variables is not None and len(variables) != layer.variables:
            warnings.append("%s (%s): %d variables, the config's center/scale give %d"
                            % (layer.path, layer.name, len(variables), layer.variables))
        layers.append(_found(layer.name, layer.path, layer.group, variables, layer))
    known = {layer.group for layer in configured or ()}
    extra: List[Tuple[str, bool]] = []
    _search(weights, "", known, extra)
    by_shape = [group for group, keyed in extra if not keyed]
    if by_shape:
        warnings.append("batch-norm layer(s) found only by their variables (four 1-D vectors "
                        "of one length): %s" % ", ".join(by_shape))
    if extra and configured:
        warnings.append("%d batch-norm layer(s) in the weights file but not in the model config "
                        "(inside custom layers?): momentum and trainable unknown" % len(extra))
    for group, _ in extra:
        variables = _variables(weights, group)
        name = text_value(weights[group + "/vars"].attrs.get("name")) or group.rpartition("/")[2]
        layers.append(_found(name, group, group, variables or [], None))
    # Keys count in model.layers order within one container; across containers, or for a
    # subclassed model's attributes (stored by name), the order is not the network's.
    flat = all(re.match(r"^layers/[^/]+$", group) for group, _ in extra)
    return layers, warnings, flat and not (extra and configured)


def _found(name: str, path: str, group: str, variables: List[Any],
           config: Optional[ConfigLayer]) -> FoundLayer:
    mean, variance = variables[-2], variables[-1]
    return FoundLayer(name, path, group, mean.name.lstrip("/"), variance.name.lstrip("/"),
                      np.asarray(mean[()]), np.asarray(variance[()]), config)


def _variables(weights: Any, group: str) -> Optional[List[Any]]:
    """The datasets of ``group/vars`` in index order; None without at least two."""
    if group not in weights or "vars" not in weights[group]:
        return None
    holder = weights[group]["vars"]
    keys = sorted((key for key in holder.keys() if key.isdigit()), key=int)
    datasets = [holder[key] for key in keys]
    return datasets if len(datasets) >= 2 else None


def _search(group: Any, prefix: str, known: Any, found: List[Tuple[str, bool]]) -> None:
    """Groups below ``group`` that hold batch-norm variables, in key order with numeric
    suffixes in number order (h5py lists "_10" before "_2"); (path, found by its key)."""
    for key in sorted(group.keys(), key=_suffix_order):
        child = group[key]
        path = prefix + key
        if not hasattr(child, "keys") or key in _NOT_LAYERS and not prefix or path in known:
            continue
        keyed = _suffix_order(key)[0] in BATCH_NORM_KEYS
        if "vars" in child and (keyed and _variables(group, key) or _looks_like(child["vars"])):
            found.append((path, keyed))
        elif key != "vars":
            _search(child, path + "/", known, found)


def _suffix_order(key: str) -> Tuple[str, int]:
    match = re.match(r"^(.*?)(?:_(\d+))?$", key)
    return (match.group(1), int(match.group(2) or 0)) if match else (key, 0)


def _looks_like(holder: Any) -> bool:
    """Four 1-D float datasets of one length: gamma, beta and the two moving statistics."""
    datasets = [holder[key] for key in holder.keys()]
    return (len(datasets) == 4 and all(getattr(d, "ndim", 0) == 1 and d.dtype.kind == "f"
                                       for d in datasets)
            and len({d.shape for d in datasets}) == 1)


def step_counters(weights: Any) -> Dict[str, int]:
    """The optimizer's iteration counter(s): an integer scalar at ``vars/0`` of the optimizer
    group (and of a LossScaleOptimizer's inner optimizer)."""
    counters = {}
    for group, name in OPTIMIZER_COUNTERS:
        key = group + "/vars/0"
        if key in weights:
            dataset = weights[key]
            if dataset.shape == () and dataset.dtype.kind in "iu":
                counters[name] = int(dataset[()])
    return counters


def text_value(value: Any) -> Optional[str]:
    """An HDF5 attribute's text (h5py gives str or bytes, by version and string type)."""
    if value is None:
        return None
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
