"""Reading the batch norm in Keras files, with h5py only (no TensorFlow, no Keras, no model
built): ``.keras`` (Keras 3; tf_keras 2.13+), ``.weights.h5`` (Keras 3), and the legacy HDF5
``.h5`` (tf_keras ``model.save`` / ``save_weights``).

:func:`read_keras_file` returns a :class:`KerasModelFile`: per batch-norm layer, in network order
where the file tells it, a :class:`KerasBatchNorm` (name, path in the model, channels, momentum,
epsilon, trainable, moving statistics, and where the file stores them); and the file's format,
Keras version, step counters and the repair's marker. SavedModels and TF 2 object checkpoints
come in the same form from :mod:`.tf2_objects`. Plain values only, for the doctor, the repair and
the port alike."""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import CheckpointError, first_line
from ..values import FrozenDict, frozen_array, to_json_values
from . import keras_h5, keras_v3
from .keras_v3 import text_value
from .sniff import KERAS_H5, KERAS_WEIGHTS, KERAS_ZIP, import_h5py, sniff
from .step_counter import StepCount, choose_step_count
from .zip_member import open_member

# The repair's marker in a repaired Keras file: a root attribute of its (inner) HDF5 weights,
# JSON naming the layers and datasets recalibrated and the data (docs/repair.md).
MARKER_ATTRIBUTE = "bn_decay_probe_repair"
WEIGHTS_MEMBER = "model.weights.h5"


@dataclass(frozen=True)
class KerasBatchNorm:
    """One batch-norm layer of a saved Keras model."""

    name: str  # the layer's name ("bn_Conv1"); a key where the file keeps no name
    path: str  # unique within the model: enclosing models' names and the layer's ("stem/bn"),
    # or where the file keeps it when there is no config ("layers/batch_normalization_3")
    channels: int
    momentum: Optional[float]  # None: the file holds no config
    epsilon: Optional[float]
    trainable: Optional[bool]  # its own flag and every enclosing model's; None: no config
    mean: np.ndarray  # moving_mean as stored (read-only)
    variance: np.ndarray  # moving_variance
    mean_key: str  # where the file stores them: an HDF5 dataset path, or a checkpoint key
    variance_key: str

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "path": self.path, "channels": self.channels,
                "momentum": self.momentum, "epsilon": self.epsilon, "trainable": self.trainable,
                "moving_mean": to_json_values(self.mean),
                "moving_variance": to_json_values(self.variance),
                "mean_key": self.mean_key, "variance_key": self.variance_key}


@dataclass(frozen=True)
class KerasModelFile:
    """What a saved Keras model holds of its batch norm."""

    path: str  # the file, directory or checkpoint prefix read
    format: str  # sniff's kind: "keras", "weights.h5", "h5", "h5 weights", "savedmodel", ...
    keras_version: Optional[str]  # "3.12.4", "2.21.0" (tf_keras); None when the file says not
    model_class: Optional[str]  # "Functional", "Sequential", ...
    model_name: Optional[str]
    layers: Tuple[KerasBatchNorm, ...]
    step_counters: FrozenDict  # counter name -> value ("optimizer/iterations": 3)
    config: bool  # momentum, epsilon and trainable come from a model config
    network_order: bool  # layers in network order (else in the file's key order)
    warnings: Tuple[str, ...]  # what could not be read as expected
    repair: Optional[FrozenDict] = None  # the repair's marker, if this is a repaired copy

    @property
    def framework(self) -> Optional[str]:
        """"Keras 3" or "tf_keras" (Keras 2), by the version the file records."""
        if not self.keras_version:
            return None
        return "Keras 3" if self.keras_version.startswith("3.") else "tf_keras"

    @property
    def steps(self) -> StepCount:
        """The train steps the optimizer counted (the counter that counted, when several)."""
        return choose_step_count(dict(self.step_counters))

    def layer(self, path: str) -> KerasBatchNorm:
        for layer in self.layers:
            if layer.path == path:
                return layer
        raise KeyError(path)

    def to_dict(self) -> Dict[str, Any]:
        return {"path": self.path, "format": self.format, "keras_version": self.keras_version,
                "framework": self.framework, "model_class": self.model_class,
                "model_name": self.model_name, "layers": [l.to_dict() for l in self.layers],
                "step_counters": dict(self.step_counters), "steps": self.steps.to_dict(),
                "config": self.config, "network_order": self.network_order,
                "warnings": list(self.warnings),
                "repair": None if self.repair is None else dict(self.repair)}


def read_keras_file(path: str) -> KerasModelFile:
    """Reads a ``.keras``, ``.weights.h5`` or legacy ``.h5`` file. CheckpointError (one line)
    when it is none of them, is damaged, or holds no batch-norm layer."""
    kind = sniff(path)
    if not kind.keras:
        raise CheckpointError("%s is %s, not a Keras .keras, .weights.h5 or .h5 file"
                              % (path, kind.what))
    h5py = import_h5py()
    try:
        if kind.kind == KERAS_ZIP:
            result = _read_zip(path, h5py)
        else:
            with h5py.File(path, "r") as handle:
                result = _read_h5(path, kind.kind, handle)
    # h5py raises RuntimeError too, for a damaged B-tree or link (a flipped bit).
    except (OSError, ValueError, KeyError, RuntimeError, zipfile.BadZipFile) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError("%s is a damaged Keras file (%s)" % (path, first_line(exc))) \
            from None
    if not result.layers:
        raise CheckpointError("%s (%s) has no batch-norm layer: no BatchNormalization in its "
                              "config, and no group of batch-norm variables in its weights"
                              % (path, kind.what))
    return result


def _read_zip(path: str, h5py: Any) -> KerasModelFile:
    with zipfile.ZipFile(path) as archive:
        # config and metadata first: h5py reads the weights member through a file of its own
        names = archive.namelist()
        metadata = _json(archive.read("metadata.json")) if "metadata.json" in names else {}
        config = _json(archive.read("config.json"))
        version = metadata.get("keras_version")
        member = open_member(path, archive, WEIGHTS_MEMBER)
    try:
        with h5py.File(member, "r") as weights:
            configured = keras_v3.config_layers(config, tf_keras=str(version).startswith("2."))
            found, warnings, ordered = keras_v3.read_layers(weights, configured)
            counters = keras_v3.step_counters(weights)
            marker = _marker(weights)
    finally:
        member.close()
    optimizer = (config.get("compile_config") or {}).get("optimizer")
    if not counters and isinstance(optimizer, dict) and \
            (optimizer.get("config") or {}).get("is_legacy_optimizer"):
        warnings.append("the model was compiled with a legacy tf_keras optimizer, which .keras "
                        "files do not save: its step counter is lost")
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    return _result(path, KERAS_ZIP, str(version) if version else None,
                   config.get("class_name"), inner.get("name"), found, counters,
                   configured is not None, ordered, warnings, marker)


def _read_h5(path: str, kind: str, handle: Any) -> KerasModelFile:
    if kind == KERAS_WEIGHTS:
        found, warnings, ordered = keras_v3.read_layers(handle, None)
        name = handle["vars"].attrs.get("name") if "vars" in handle else None
        return _result(path, kind, None, None, text_value(name), found,
                       keras_v3.step_counters(handle), False, ordered, warnings,
                       _marker(handle))
    config = keras_h5.model_config(handle) if kind == KERAS_H5 else None
    found, warnings = keras_h5.read_layers(handle, config)
    inner = (config or {}).get("config") or {}
    return _result(path, kind, keras_h5.version(handle),
                   config.get("class_name") if config else None, inner.get("name"), found,
                   keras_h5.step_counters(handle), config is not None, True, warnings,
                   _marker(handle))


def _result(path: str, kind: str, version: Optional[str], model_class: Any, model_name: Any,
            found: List[keras_v3.FoundLayer], counters: Dict[str, int], configured: bool,
            ordered: bool, warnings: List[str], marker: Optional[FrozenDict]) -> KerasModelFile:
    layers = tuple(KerasBatchNorm(
        layer.name, layer.path, int(layer.mean.size),
        layer.config.momentum if layer.config else None,
        layer.config.epsilon if layer.config else None,
        layer.config.trainable if layer.config else None,
        frozen_array(layer.mean), frozen_array(layer.variance), layer.mean_key,
        layer.variance_key) for layer in found)
    return KerasModelFile(path, kind, version, text_value(model_class), text_value(model_name),
                          layers, FrozenDict(counters), configured, ordered, tuple(warnings),
                          marker)


def _marker(handle: Any) -> Optional[FrozenDict]:
    """The repair's JSON marker; None when absent or not a JSON object."""
    raw = handle.attrs.get(MARKER_ATTRIBUTE)
    if raw is None:
        return None
    try:
        marker = json.loads(text_value(raw) or "")
    except ValueError:
        return None
    return FrozenDict(marker) if isinstance(marker, dict) else None


def _json(raw: bytes) -> Dict[str, Any]:
    value = json.loads(raw.decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("a JSON member is not an object")
    return value
