"""Real ports for the port tests, made as users make them, from tests/real_models.py's trained
checkpoints:

- ``resnet``: tf-slim ``resnet_v1_50`` (decay 0.997, epsilon 1e-5) mapped onto torchvision's
  ``resnet50(weights=None)`` by a name map (slim variable -> state-dict key: conv kernels
  HWIO -> OIHW, the logits' 1x1 conv -> ``fc``), as TF ports (timm's, for one) are written: a
  ``.pt`` state dict, a ``.safetensors`` file, the map as JSON, and the live module with eps and
  momentum set as a correct port sets them.
- ``mobilenet``: Keras ``MobileNetV2(alpha=0.35)`` (decay 0.999, epsilon 1e-3) loaded from its
  ``save_weights`` checkpoint into an eager tf_keras model, exported to ONNX by tf2onnx (every
  optimizer but ``remove_back_to_back``, so the BatchNormalization nodes stay), and on to
  PyTorch by onnx2torch, whose momentum 0.1 (1 - ONNX's default 0.9) a correct port replaces by
  1 - 0.999.

And the bugs users shipped, planted one at a time into a copy (:func:`planted`).
Importing this module imports no framework.
"""
import copy
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, Tuple

import numpy as np

CLASSES = 4  # as real_models
BUGS = ("momentum_not_inverted", "epsilon_left_at_default", "statistics_not_copied",
        "statistics_swapped", "layer_missing")
_BN_FIELD = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
             "moving_variance": "running_var"}


def slim_to_torchvision(name: str) -> str:
    """'resnet_v1_50/block2/unit_1/bottleneck_v1/shortcut/BatchNorm/moving_mean' ->
    'layer2.0.downsample.1.running_mean'; KeyError for a name it does not know."""
    parts = name.split("/")
    if parts[0] != "resnet_v1_50":
        raise KeyError(name)
    rest = parts[1:]
    if rest[0] == "logits":
        return {"weights": "fc.weight", "biases": "fc.bias"}[rest[1]]
    if rest[0] == "conv1":
        return "conv1.weight" if rest[1] == "weights" else "bn1." + _BN_FIELD[rest[2]]
    block, unit = re.fullmatch(r"block(\d)", rest[0]), re.fullmatch(r"unit_(\d+)", rest[1])
    if not (block and unit and rest[2] == "bottleneck_v1"):
        raise KeyError(name)
    prefix = "layer%s.%d." % (block.group(1), int(unit.group(1)) - 1)
    if rest[3] == "shortcut":
        conv, bn = "downsample.0", "downsample.1"
    else:
        conv, bn = rest[3], "bn" + rest[3][-1]
    if rest[4] == "weights":
        return prefix + conv + ".weight"
    return prefix + bn + "." + _BN_FIELD[rest[5]]


def _torch_value(name: str, value: np.ndarray) -> np.ndarray:
    if value.ndim == 4:  # HWIO -> OIHW; the logits' 1x1 conv -> Linear (out, in)
        return value[0, 0].T.copy() if "/logits/" in name else value.transpose(3, 2, 0, 1)
    return value


@dataclass
class Port:
    """A port: the source checkpoint, the target files and live module, what it should be."""

    source: str  # the TF checkpoint prefix (with its .meta)
    state_dict: Dict[str, Any]  # the target's state dict (torch tensors)
    module: Any  # the live torch module, eps and momentum as the correct port sets them
    decay: float
    epsilon: float  # the source's
    layers: Tuple[str, ...]  # the target's batch-norm modules, in network order
    map_path: str = ""  # resnet: the name map (JSON)
    onnx_path: str = ""  # mobilenet: tf2onnx's model
    keras_model: Any = None  # mobilenet: the eager tf_keras model the port started from


def _batch_norms(torch, module) -> Tuple[str, ...]:
    return tuple(name for name, m in module.named_modules()
                 if isinstance(m, torch.nn.BatchNorm2d))


def resnet_port(trained, directory: str) -> Port:
    """torchvision resnet50 from the slim checkpoint ``trained`` (real_models.Trained)."""
    import tensorflow as tf
    import torch
    import torchvision

    reader = tf.train.load_checkpoint(trained.saver_prefix)
    names = [n for n in reader.get_variable_to_shape_map()
             if n.startswith("resnet_v1_50/") and "Momentum" not in n]
    mapping = {n: slim_to_torchvision(n) for n in names}
    model = torchvision.models.resnet50(weights=None, num_classes=CLASSES)
    state = model.state_dict()
    for name, key in mapping.items():
        state[key] = torch.from_numpy(_torch_value(name, reader.get_tensor(name)).copy())
    model.load_state_dict(state)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # as the slim net: eps 1e-5, decay 0.997
            m.eps, m.momentum = 1e-5, 1.0 - trained.decay
    map_path = os.path.join(directory, "slim_to_torchvision.json")
    with open(map_path, "w") as handle:
        json.dump(mapping, handle, indent=1)
    return Port(trained.saver_prefix, model.state_dict(), model.eval(), trained.decay, 1e-5,
                _batch_norms(torch, model), map_path=map_path)


def mobilenet_port(trained, directory: str) -> Port:
    """onnx2torch's module from tf2onnx's export of the Keras checkpoint ``trained``."""
    import onnx2torch  # imports torchvision
    import tensorflow as tf
    import tf2onnx
    import tf_keras
    import torch
    from tf2onnx import optimizer as tf2onnx_optimizer

    side = 32
    model = tf_keras.applications.MobileNetV2(weights=None, input_shape=(side, side, 3),
                                              alpha=0.35, classes=CLASSES)
    model.load_weights(trained.weights_prefix).expect_partial()
    optimizers = {name: o for name, o in tf2onnx_optimizer._get_optimizers().items()
                  if name != "remove_back_to_back"}  # keeps the BatchNormalization nodes
    proto, _ = tf2onnx.convert.from_keras(
        model, input_signature=(tf.TensorSpec((None, side, side, 3), tf.float32, "input"),),
        optimizers=optimizers)
    onnx_path = os.path.join(directory, "mobilenet_v2.onnx")
    with open(onnx_path, "wb") as handle:
        handle.write(proto.SerializeToString())
    module = onnx2torch.convert(onnx_path).eval()
    momentum = 1.0 - trained.decay
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = momentum  # onnx2torch gives 0.1: 1 - ONNX's default 0.9
    return Port(trained.saver_prefix, module.state_dict(), module, trained.decay, 1e-3,
                _batch_norms(torch, module), onnx_path=onnx_path, keras_model=model)


def planted(port: Port, bug: str) -> Tuple[Any, Dict[str, Any], Tuple[str, ...]]:
    """A copy of the port's module and state dict with ``bug``, and the target layers it
    touched (all, for momentum and epsilon)."""
    import torch

    module = copy.deepcopy(port.module)
    modules = dict(module.named_modules())
    layers = port.layers
    if bug == "momentum_not_inverted":
        for name in layers:
            modules[name].momentum = port.decay
        touched = layers
    elif bug == "epsilon_left_at_default":  # the other framework's default epsilon
        for name in layers:
            modules[name].eps = 1e-5 if port.epsilon == 1e-3 else 1e-3
        touched = layers
    elif bug == "statistics_not_copied":
        touched = (layers[len(layers) // 2],)
        modules[touched[0]].reset_running_stats()
    elif bug == "statistics_swapped":
        touched = _two_alike(modules, layers)
        a, b = (modules[name] for name in touched)
        for field in ("running_mean", "running_var"):
            first = getattr(a, field).clone()
            getattr(a, field).copy_(getattr(b, field))
            getattr(b, field).copy_(first)
    elif bug == "layer_missing":
        touched = (layers[len(layers) // 2],)
        parent, _, child = touched[0].rpartition(".")
        setattr(modules[parent] if parent else module, child, torch.nn.Identity())
    else:
        raise ValueError(bug)
    return module, module.state_dict(), touched


def _two_alike(modules, layers) -> Tuple[str, str]:
    """Two layers with as many channels and different statistics (so the swap shows)."""
    for i, a in enumerate(layers):
        for b in layers[i + 1:]:
            if modules[a].num_features == modules[b].num_features and not np.allclose(
                    modules[a].running_mean.numpy(), modules[b].running_mean.numpy()):
                return a, b
    raise AssertionError("no two layers alike")
