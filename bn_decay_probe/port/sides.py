"""A port's two sides, read into batch-norm records: a path by its kind (a TF checkpoint, a
PyTorch state dict, a safetensors file, an ONNX model) or a live model (torch.nn.Module, Keras
model), and where each side's epsilon and momentum come from.

Each file format is one reader in ``READERS``: a function of a path returning a
:class:`~..checkpoints.batch_norm.LayerFile`; a new format is one line there. Paths are checked
(kind, existence) before any framework is imported.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..checkpoints import paths
from ..checkpoints.batch_norm import DECAY, NO_DECAY, ONE_MINUS_DECAY, LayerFile, record
from ..checkpoints.keras_files import KerasModelFile, read_keras_file
from ..checkpoints.onnx_model import read_onnx
from ..checkpoints.safetensors_file import read_safetensors
from ..checkpoints.state_dict import read_state_dict
from ..errors import CheckpointError, ProbeConfigError
from ..probe.config import check_decay, check_epsilon
from . import live
from .result import PortSide

TORCH_EPSILON = 1e-5  # BatchNorm2d's default, assumed for a state dict (--target-eps)


# checkpoints.sniff's kinds, as the port's output names them
_KERAS_FORMATS = {"keras": "Keras .keras file", "weights.h5": "Keras .weights.h5 file",
                  "h5": "Keras .h5 file", "h5 weights": "Keras .h5 weights file",
                  "savedmodel": "SavedModel", "tf checkpoint": "TF object checkpoint (Keras)"}


def keras_file(model: KerasModelFile) -> LayerFile:
    """A Keras file's layers (checkpoints.keras_files) as records: moving statistics, epsilon
    and momentum (Keras's: the decay) from its config; gamma and beta are not read."""
    layers = tuple(record(layer.path, layer.mean, layer.variance, epsilon=layer.epsilon,
                          momentum=layer.momentum,
                          convention=DECAY if layer.momentum is not None else "",
                          keys=tuple(k for k in (layer.name, layer.mean_key,
                                                 layer.variance_key) if k != layer.path))
                   for layer in model.layers)
    return LayerFile(model.path, _KERAS_FORMATS.get(model.format, model.format), layers,
                     model.network_order, model.warnings)


# file name endings -> the reader of that format
READERS: List[Tuple[Tuple[str, ...], Callable[[str], LayerFile]]] = [
    ((".pt", ".pth", ".bin"), read_state_dict),
    ((".safetensors",), read_safetensors),
    ((".onnx",), read_onnx),
    ((".keras", ".h5", ".hdf5"), lambda path: keras_file(read_keras_file(path))),
]
SAVED_MODEL = "SavedModel"
# The formats that store no epsilon and no momentum, for PyTorch modules to load: the target's
# epsilon defaults to PyTorch's, and --target-eps / --target-momentum may say them.
UNSTORED = ("PyTorch state dict", "safetensors")
TF_CHECKPOINT = "TF checkpoint"


def kind(side: Any, role: str) -> str:
    """What ``side`` is: a reader's first suffix, TF_CHECKPOINT, or a live model's kind
    ("torch", "keras"); ProbeConfigError (one line, no framework imported) when it is none or
    a file that does not exist."""
    if not isinstance(side, (str, os.PathLike)):
        found = live.kind_of(side)
        if found is None:
            raise ProbeConfigError("%s must be a path (TF checkpoint, .pt/.pth/.bin, "
                                   ".safetensors, .onnx) or a live torch.nn.Module or Keras "
                                   "model, got %s" % (role, type(side).__name__))
        return found
    path = os.fspath(side)
    lower = path.lower()
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return SAVED_MODEL
    for suffixes, _ in READERS:
        if lower.endswith(suffixes):
            if not os.path.isfile(path):
                raise CheckpointError("%s %s not found" % (role, path))
            return suffixes[0]
    paths.existing_prefix(path)  # a TF checkpoint: a prefix, one of its files, a directory
    return TF_CHECKPOINT


def read(side: Any, found: str) -> Tuple[LayerFile, Optional[str]]:
    """The layers of ``side`` (of kind ``found``), and the .meta read for a TF checkpoint."""
    if found == "torch":
        return live.torch_layers(side), None
    if found == "keras":
        return live.keras_layers(side), None
    if found == TF_CHECKPOINT:
        return _tf_checkpoint(side)
    if found == SAVED_MODEL:
        return _saved_model(os.fspath(side)), None
    reader = next(r for suffixes, r in READERS if suffixes[0] == found)
    return reader(os.fspath(side)), None


def _tf_checkpoint(path: Any) -> Tuple[LayerFile, Optional[str]]:
    """A tf.train.Saver checkpoint (with its .meta where there is one), or an object-based
    one: a Keras model's (tf_keras save_weights, tf.train.Checkpoint) is read with the Keras
    reader, which knows its layers' names and order."""
    from .. import backend
    from ..checkpoints.tf2_objects import read_object_checkpoint
    from ..checkpoints.tf_batch_norm import read_tf_checkpoint
    from .tf_graph import with_graph

    prefix = paths.existing_prefix(path)
    backend.silence_native_logs()
    with backend.quiet() as tf1:
        if os.path.isdir(prefix):
            prefix = paths.latest_checkpoint(tf1, prefix)
        layers, graph = with_graph(tf1, read_tf_checkpoint(tf1, prefix))
        if graph is None and layers.format == "TF object checkpoint":
            keras = read_object_checkpoint(tf1, prefix)
            if keras is not None:
                return keras_file(keras), None
        return layers, graph


def _saved_model(directory: str) -> LayerFile:
    from .. import backend
    from ..checkpoints.tf2_objects import read_saved_model

    backend.silence_native_logs()
    with backend.quiet() as tf1:
        return keras_file(read_saved_model(tf1, directory))


def check_target_values(target_eps: Any, target_momentum: Any) -> Tuple[Optional[float],
                                                                          Optional[float]]:
    """--target-eps and --target-momentum, checked (no framework import)."""
    eps = None if target_eps is None else check_epsilon(target_eps)
    try:
        momentum = None if target_momentum is None else check_decay(target_momentum)
    except ProbeConfigError:
        raise ProbeConfigError("target momentum must be a number in [0, 1], got %r"
                               % (target_momentum,)) from None
    return eps, momentum


def describe(role: str, layers: LayerFile, graph: Optional[str],
             origins: Optional[Dict[str, str]] = None) -> PortSide:
    """Where the side's epsilons and momenta came from (``origins``: what with_target_values
    filled in, by field)."""
    origins = origins or {}

    def where(field: str) -> str:
        if field in origins:
            return origins[field]
        values = [getattr(r, field) for r in layers.layers]
        if any(v is None for v in values) and not (
                field == "momentum" and all(r.convention == NO_DECAY for r in layers.layers
                                            if r.momentum is None)):
            return "none" if all(v is None for v in values) else "partly"
        if any(field in r.defaults for r in layers.layers):
            return "default"
        return "graph" if graph else "stored"

    return PortSide(role, layers.path, layers.format, len(layers.layers), layers.ordered,
                    where("epsilon"), where("momentum"), graph)


def with_target_values(layers: LayerFile, eps: Optional[float], momentum: Optional[float]
                       ) -> Tuple[LayerFile, List[str], Dict[str, str]]:
    """The target's records with --target-eps (else PyTorch's default, for a format that
    stores none) and --target-momentum (PyTorch's convention, 1 - decay) filled in, the notes
    that say so, and where the values filled in came from ("given", "assumed"). Given for a
    target that stores them: ProbeConfigError."""
    notes = []
    origins: Dict[str, str] = {}
    for given, flag in ((eps, "--target-eps"), (momentum, "--target-momentum")):
        if given is not None and layers.format not in UNSTORED:
            raise ProbeConfigError("%s is for a target that stores no epsilon or momentum (a "
                                   "PyTorch state dict or a safetensors file); %s is a %s"
                                   % (flag, layers.path, layers.format))
    records = list(layers.layers)
    if layers.format in UNSTORED:
        value = TORCH_EPSILON if eps is None else eps
        records = [dataclasses.replace(r, epsilon=value) for r in records]
        origins["epsilon"] = "assumed %g (PyTorch's default)" % value if eps is None \
            else "given %g" % value
        if eps is None:
            notes.append("a %s stores no epsilon: PyTorch's default %g is assumed; "
                         "--target-eps E if your modules use another"
                         % (layers.format, TORCH_EPSILON))
    if momentum is not None:
        records = [dataclasses.replace(r, momentum=momentum, convention=ONE_MINUS_DECAY)
                   for r in records]
        origins["momentum"] = "given %g (PyTorch's: 1 - decay)" % momentum
    return dataclasses.replace(layers, layers=tuple(records)), notes, origins
