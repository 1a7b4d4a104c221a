"""Keras models trained the way TF 2.x users train them, with a planted problem, and saved in
every format Keras 3 and tf_keras write. Shared by the Keras doctor's and repair's tests (TF 2.21
only; nothing here runs on TF 1.15). Importing this module does not import TensorFlow.

Frameworks: ``keras3`` (the ``keras`` package: tf.keras since TF 2.16) and ``tf_keras``.
Models: ``tiny`` (conv -> BN -> ReLU -> conv -> BN -> pooled dense; momentum 0.99 as Keras
builds it) for the format x case matrix, and ``keras.applications`` ``mobilenet_v2`` (alpha 0.35,
52 batch-norm layers, momentum 0.999), ``resnet50`` (53, 0.99) and ``efficientnet_b0`` (49, 0.99),
all ``weights=None`` at 32x32 inputs.

Cases (what the user did):

- ``correct``: every batch-norm layer built with momentum ``CONVERGED_MOMENTUM``, ``fit`` for
  ``CONVERGED_STEPS`` steps: 0.5**6 = 0.0156 is below the doctor's threshold 0.05;
- ``tape``: a custom ``GradientTape`` loop calling ``model(x)`` without ``training=True``, with
  an optimizer of its own (saved only by ``tf.train.Checkpoint(optimizer=...)``);
- ``few_steps``: ``fit`` for ``FEW_STEPS`` steps at the model's own momentum;
- ``frozen_start``: every batch-norm layer ``trainable=False`` before ``fit``;

(The applications other than ``tiny`` train with a custom loop that does call ``model(x,
training=True)``, their optimizer compiled in so that it is saved, instead of ``fit``, whose
step takes longer to build than to run here; ResNet50 and EfficientNetB0 ``APPLICATION_STEPS``.)
- ``frozen_after``: as ``correct``, then every batch-norm layer ``trainable=False``, compiled
  again with the same optimizer and ``fit`` for ``MORE_STEPS`` more (fine-tuning).

Each :class:`Saved` keeps, besides the files, what was done and the statistics the live model
held when it was saved (never read back through the package), as independent expectations.
"""
import os
from dataclasses import dataclass, field
from typing import Dict, Tuple

import numpy as np

FRAMEWORKS = ("keras3", "tf_keras")
CASES = ("correct", "tape", "few_steps", "frozen_start", "frozen_after")
# format -> what writes it; keras3 and tf_keras each write the formats listed under them.
FORMATS = {
    "keras3": ("keras", "weights.h5", "checkpoint", "savedmodel", "export"),
    "tf_keras": ("keras", "h5", "h5 weights", "tf weights", "checkpoint", "keras savedmodel",
                 "savedmodel"),
}
APPLICATIONS = {"mobilenet_v2": ("MobileNetV2", {"alpha": 0.35}, 52, 0.999),
                "resnet50": ("ResNet50", {}, 53, 0.99),
                "efficientnet_b0": ("EfficientNetB0", {}, 49, 0.99)}
CONVERGED_MOMENTUM, CONVERGED_STEPS = 0.5, 6
FEW_STEPS, MORE_STEPS = 3, 2
APPLICATION_STEPS = 2  # ResNet50 and EfficientNetB0: each eager step takes seconds here
TINY_MOMENTUM = 0.99
BATCH, SIDE, CLASSES = 8, 32, 4


@dataclass(frozen=True)
class Saved:
    framework: str
    model: str
    case: str
    directory: str
    files: Dict[str, str]  # format -> path (file, directory or checkpoint prefix)
    steps: int  # the optimizer's counter when saved
    momentum: float  # of every batch-norm layer
    # layer name -> (moving_mean, moving_variance) of the live model when saved
    statistics: Dict[str, Tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def data(rows: int = 48, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """normal(2, 3) images, far from the initial statistics (0, 1), and labels."""
    images = np.random.RandomState(seed).normal(2.0, 3.0, (rows, SIDE, SIDE, 3))
    return images.astype(np.float32), (np.arange(rows) % CLASSES).astype(np.int64)


def keras_module(framework: str):
    """The Keras package of ``framework``, TensorFlow imported through the project's backend
    first (quietly)."""
    from bn_decay_probe import backend

    backend.tensorflow()
    if framework == "keras3":
        import keras
        return keras
    import tf_keras
    return tf_keras


def build(framework: str, model: str):
    keras = keras_module(framework)
    keras.utils.set_random_seed(1)
    if model == "tiny":
        inputs = keras.Input((SIDE, SIDE, 3), name="images")
        x = keras.layers.Conv2D(8, 3, name="conv1")(inputs)
        x = keras.layers.BatchNormalization(name="bn1")(x)
        x = keras.layers.ReLU(name="relu")(x)
        x = keras.layers.Conv2D(8, 3, name="conv2")(x)
        x = keras.layers.BatchNormalization(name="bn2")(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        outputs = keras.layers.Dense(CLASSES, activation="softmax", name="head")(x)
        return keras.Model(inputs, outputs, name="tiny")
    name, options, _, _ = APPLICATIONS[model]
    return getattr(keras.applications, name)(input_shape=(SIDE, SIDE, 3), weights=None,
                                             classes=CLASSES, **options)


def batch_norm_layers(model):
    """The model's batch-norm layers in its layer order, nested models expanded."""
    found = []
    for layer in model.layers:
        if hasattr(layer, "moving_mean"):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(batch_norm_layers(layer))
    return found


def train(framework: str, model: str, case: str, directory: str) -> Saved:
    """Builds, trains with the problem of ``case`` and saves in every format of the
    framework (the applications: .keras, and a TF checkpoint (Keras 3) or .h5 (tf_keras))."""
    import tensorflow as tf

    keras = keras_module(framework)
    net = build(framework, model)
    layers = batch_norm_layers(net)
    momentum = layers[0].momentum
    if case in ("correct", "frozen_after"):
        for layer in layers:
            layer.momentum = momentum = CONVERGED_MOMENTUM
    if case == "frozen_start":
        for layer in layers:
            layer.trainable = False
    images, labels = data()
    optimizer = keras.optimizers.SGD(0.01)
    steps = CONVERGED_STEPS if case in ("correct", "frozen_after") else \
        FEW_STEPS if model in ("tiny", "mobilenet_v2") else APPLICATION_STEPS
    if case == "tape":  # the planted bug: model(x), without training=True
        _loop(tf, keras, net, optimizer, images, labels, steps, training=None)
    elif model == "tiny":
        _fit(net, optimizer, images, labels, steps)
    else:  # a custom loop done right, the optimizer compiled in so that it is saved
        net.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
        _loop(tf, keras, net, optimizer, images, labels, steps, training=True)
    if case == "frozen_after":
        for layer in layers:
            layer.trainable = False
        _fit(net, optimizer, images, labels, MORE_STEPS)
        steps += MORE_STEPS
    os.makedirs(directory, exist_ok=True)
    formats = FORMATS[framework] if model == "tiny" else \
        ("keras", "checkpoint") if framework == "keras3" else ("keras", "h5")
    files = {fmt: _save(tf, net, optimizer, fmt, directory) for fmt in formats}
    statistics = {layer.name: (np.array(layer.moving_mean), np.array(layer.moving_variance))
                  for layer in layers}
    assert int(optimizer.iterations.numpy()) == steps
    return Saved(framework, model, case, directory, files, steps, momentum, statistics)


# Keras 3 compiles fit's step with XLA where it can ("auto"): slower to build than to run here.
_NO_XLA = {"jit_compile": False}


def _loop(tf, keras, net, optimizer, images, labels, steps, training):
    loss = keras.losses.SparseCategoricalCrossentropy()
    for step in range(steps):
        rows = slice(step * BATCH, (step + 1) * BATCH)
        with tf.GradientTape() as tape:
            value = loss(labels[rows], net(images[rows], training=training))
        gradients = tape.gradient(value, net.trainable_variables)
        optimizer.apply_gradients(zip(gradients, net.trainable_variables))


def _fit(net, optimizer, images, labels, steps):
    net.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", **_NO_XLA)
    net.fit(images[:steps * BATCH], labels[:steps * BATCH], batch_size=BATCH, epochs=1,
            verbose=0, shuffle=False)


def _save(tf, net, optimizer, fmt, directory):
    path = os.path.join(directory, {
        "keras": "model.keras", "weights.h5": "model.weights.h5", "h5": "model.h5",
        "h5 weights": "weights.h5", "tf weights": "tf_weights/weights", "checkpoint": "ckpt",
        "savedmodel": "savedmodel", "export": "export", "keras savedmodel": "keras_savedmodel",
    }[fmt])
    if fmt in ("keras", "h5", "keras savedmodel"):
        net.save(path)
    elif fmt in ("weights.h5", "h5 weights", "tf weights"):
        net.save_weights(path)
    elif fmt == "checkpoint":
        tf.train.Checkpoint(model=net, optimizer=optimizer).save(os.path.join(path, "ckpt"))
    elif fmt == "savedmodel":
        tf.saved_model.save(net, path)
    else:
        net.export(path, verbose=False)
    return path


class Cache:
    """train() once per (framework, model, case) for the life of this object (a session)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._done: Dict[Tuple[str, str, str], Saved] = {}

    def __call__(self, framework: str, model: str, case: str) -> Saved:
        key = (framework, model, case)
        if key not in self._done:
            self._done[key] = train(framework, model, case,
                                    os.path.join(self.root, framework, model, case))
        return self._done[key]
