"""Real model code, trained a few steps in TF1 graph mode with a planted problem, saved as users
save it. Shared by the doctor's and the repair's tests and by scripts/doctor_matrix.py.

Models (nobody here wrote them; ``weights=None``, small inputs, random data):

| model | code | batch-norm layers | decay as built |
|---|---|---|---|
| ``slim_resnet_v1_50`` | tf-slim ``nets.resnet_v1.resnet_v1_50`` | 53 | 0.997 (resnet_arg_scope) |
| ``slim_inception_v3`` | tf-slim ``nets.inception_v3.inception_v3`` | 96 | 0.9997 |
| ``keras_mobilenet_v2`` | ``applications.MobileNetV2(alpha=0.35)`` | 52 | 0.999 |
| ``keras_resnet50`` | ``applications.ResNet50`` | 53 | 0.99 |

tf-slim is ``tf.contrib.slim`` on TF 1.15 and the ``tf_slim`` package on TF 2.x; Keras is
``tf.keras`` (``tf_keras`` where TF's own tf.keras is Keras 3). Keras models are trained with
``Model.fit`` where the case allows, and with a hand-written ``session.run`` loop where the bug is
in such a loop.

Cases (what the user did):

- ``correct``: updates run in training mode, decay ``CONVERGED_DECAY`` and ``CONVERGED_STEPS``
  steps, so ``decay**steps`` = 0.0156 is below the doctor's threshold 0.05.
- ``forgot_update_ops``: slim: a train op not under ``UPDATE_OPS``; Keras: a hand-written loop
  that feeds the learning phase 1 but does not run ``model.updates``.
- ``too_few_steps``: correct wiring, the model's own decay, ``FEW_STEPS`` steps.
- ``inference_mode``: Keras: a hand-written loop that runs ``model.updates`` but never sets the
  learning phase (so it is 0, inference); slim: the net built with ``is_training=False``.
- ``unshared_copy``: as ``correct``, plus a second, ``is_training=False`` copy of the net for
  evaluation that got its own variables (slim: built in an ``eval`` variable scope; Keras: a
  second model instance), saved with the rest and never trained.

Every case writes a ``tf.train.Saver`` checkpoint with its ``.meta`` graph (``saver_prefix``);
Keras cases also write ``model.save_weights`` (``weights_prefix``, an object-based checkpoint).
Importing this module does not import TensorFlow.
"""
import copy
import os
import types
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

MODELS = ("slim_resnet_v1_50", "slim_inception_v3", "keras_mobilenet_v2", "keras_resnet50")
# The two the test suites train; the other two run in scripts/doctor_matrix.py.
CI_MODELS = ("slim_resnet_v1_50", "keras_mobilenet_v2")
CASES = ("correct", "forgot_update_ops", "too_few_steps", "inference_mode", "unshared_copy")

CONVERGED_DECAY = 0.5
CONVERGED_STEPS = 6  # 0.5**6 = 0.0156
FEW_STEPS = 4
BATCH = 4
CLASSES = 4
# name -> (input side, decay the model's code builds, number of batch-norm layers); inception_v3's
# auxiliary head (TF 1.15's contrib cannot leave it out) needs inputs of at least 139 pixels.
SPECS = {"slim_resnet_v1_50": (32, 0.997, 53), "slim_inception_v3": (139, 0.9997, 96),
         "keras_mobilenet_v2": (32, 0.999, 52), "keras_resnet50": (32, 0.99, 53)}


@dataclass(frozen=True)
class Trained:
    """One (model, case): where its checkpoints are and what was done, for independent
    expectations (never read back from the doctor)."""

    model: str
    case: str
    saver_prefix: str  # tf.train.Saver checkpoint; saver_prefix + ".meta" is its graph
    weights_prefix: Optional[str]  # Keras model.save_weights checkpoint; None for slim
    steps: int  # train steps run
    decay: float  # the decay (momentum) the trained layers were built with
    step_variable: str  # the checkpoint variable that counts the steps
    bn_layers: Tuple[str, ...]  # trained layers' variable prefixes, in network order
    copy_layers: Tuple[str, ...]  # unshared_copy: the untrained copy's layers; else ()
    keras_names: Dict[str, str] = field(default_factory=dict)  # variable prefix -> Keras layer
    images: Optional[np.ndarray] = None  # the training batch (the repair recomputes from it)
    labels: Optional[np.ndarray] = None
    image_tensor: str = ""  # the placeholder it was fed to, in the .meta graph
    label_tensor: str = ""


def data(model: str) -> Tuple[np.ndarray, np.ndarray]:
    """One fixed batch: normal(2, 3) images (far from the initial statistics 0 and 1, so moving
    statistics that moved are told apart from ones that did not) and labels 0..BATCH-1."""
    side = SPECS[model][0]
    images = np.random.RandomState(0).normal(2.0, 3.0, (BATCH, side, side, 3))
    return images.astype(np.float32), (np.arange(BATCH) % CLASSES).astype(np.int64)


def train(model: str, case: str, directory: str) -> Trained:
    """Builds ``model`` in a fresh graph, trains it with the problem of ``case``, and writes its
    checkpoints under ``directory``."""
    if model not in MODELS or case not in CASES:
        raise ValueError("model must be one of %s and case one of %s, got %r, %r"
                         % (MODELS, CASES, model, case))
    os.makedirs(directory, exist_ok=True)
    build = _train_slim if model.startswith("slim") else _train_keras
    return build(model, case, directory)


class Cache:
    """train() once per (model, case) for the life of this object (a pytest session)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._done: Dict[Tuple[str, str], Trained] = {}

    def __call__(self, model: str, case: str) -> Trained:
        key = (model, case)
        if key not in self._done:
            self._done[key] = train(model, case, os.path.join(self.root, model, case))
        return self._done[key]


# ------------------------------------------------------------------------------------ tf-slim

def _slim() -> Tuple[object, object, object]:
    """(tf.compat.v1, slim, nets module) of the installed TF, through the project's backend (its
    compat shims included)."""
    from bn_decay_probe import backend

    tf = backend.tensorflow()
    if backend.name() == "tf1":
        from tensorflow.contrib import slim
        from tensorflow.contrib.slim.python.slim.nets import inception_v3, resnet_v1
    else:
        import tf_slim as slim
        from tf_slim.nets import inception_v3, resnet_v1
    return tf.compat.v1, slim, types.SimpleNamespace(inception_v3=inception_v3,
                                                     resnet_v1=resnet_v1)


def _slim_net(tf1, slim, nets, model, images, decay, is_training, scope=None):
    if model == "slim_resnet_v1_50":
        arg_scope = nets.resnet_v1.resnet_arg_scope(batch_norm_decay=decay)
        net = nets.resnet_v1.resnet_v1_50
    else:
        arg_scope = nets.inception_v3.inception_v3_arg_scope(batch_norm_decay=decay)
        net = nets.inception_v3.inception_v3
    with slim.arg_scope(arg_scope):
        logits, _ = net(images, num_classes=CLASSES, is_training=is_training, scope=scope)
    return tf1.reshape(logits, [-1, CLASSES])


def _train_slim(model: str, case: str, directory: str) -> Trained:
    tf1, slim, nets = _slim()
    side, own_decay, _ = SPECS[model]
    converged = case in ("correct", "unshared_copy")
    decay = CONVERGED_DECAY if converged else own_decay
    steps = CONVERGED_STEPS if converged else FEW_STEPS
    default_scope = "resnet_v1_50" if model == "slim_resnet_v1_50" else "InceptionV3"
    images, labels = data(model)
    graph = tf1.Graph()
    with graph.as_default():
        tf1.set_random_seed(0)
        x = tf1.placeholder(tf1.float32, (None, side, side, 3), name="images")
        y = tf1.placeholder(tf1.int64, (None,), name="labels")
        logits = _slim_net(tf1, slim, nets, model, x, decay, case != "inference_mode",
                           default_scope)
        if case == "unshared_copy":
            with tf1.variable_scope("eval"):
                _slim_net(tf1, slim, nets, model, x, decay, False, default_scope)
        step = tf1.train.get_or_create_global_step()
        loss = tf1.losses.sparse_softmax_cross_entropy(y, logits)
        updates = ([] if case == "forgot_update_ops"
                   else tf1.get_collection(tf1.GraphKeys.UPDATE_OPS))
        with tf1.control_dependencies(updates):
            train_op = tf1.train.MomentumOptimizer(0.01, 0.9).minimize(loss, global_step=step)
        layers = _moving_prefixes(tf1, graph)
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as session:
            session.run(tf1.global_variables_initializer())
            for _ in range(steps):
                session.run(train_op, {x: images, y: labels})
            prefix = saver.save(session, os.path.join(directory, "model.ckpt"), global_step=step)
    own = tuple(name for name in layers if not name.startswith("eval/"))
    return Trained(model, case, prefix, None, steps, decay, "global_step", own,
                   tuple(name for name in layers if name.startswith("eval/")),
                   images=images, labels=labels, image_tensor=x.name, label_tensor=y.name)


def _moving_prefixes(tf1, graph) -> Tuple[str, ...]:
    """Variable prefixes of the graph's moving means, in the order the graph made them."""
    return tuple(v.op.name[:-len("/moving_mean")] for v in graph.get_collection(
        tf1.GraphKeys.GLOBAL_VARIABLES) if v.op.name.endswith("/moving_mean"))


# -------------------------------------------------------------------------------------- Keras

def _keras():
    """(tf.compat.v1, Keras 2: tf.keras, or tf_keras where tf.keras is Keras 3)."""
    from bn_decay_probe import backend

    return backend.tensorflow().compat.v1, backend.keras()


def _keras_application(keras, model: str):
    side = SPECS[model][0]
    if model == "keras_mobilenet_v2":
        return keras.applications.MobileNetV2(weights=None, input_shape=(side, side, 3),
                                              alpha=0.35, classes=CLASSES)
    return keras.applications.ResNet50(weights=None, input_shape=(side, side, 3),
                                       classes=CLASSES)


_CONFIGS: Dict[str, dict] = {}


def _keras_model(tf1, keras, model: str, momentum: Optional[float]):
    """The application as built, or (momentum given) rebuilt from its config with that momentum,
    as a user changes the momentum the application hard-codes. The config comes from a copy
    built in a graph of its own, so the user's graph holds one model."""
    if momentum is None:
        return _keras_application(keras, model)
    if model not in _CONFIGS:
        with tf1.Graph().as_default():
            _CONFIGS[model] = _keras_application(keras, model).get_config()
    config = copy.deepcopy(_CONFIGS[model])
    for layer in config["layers"]:
        if layer["class_name"] == "BatchNormalization":
            layer["config"]["momentum"] = momentum
    return keras.Model.from_config(config)


def _train_keras(model: str, case: str, directory: str) -> Trained:
    tf1, keras = _keras()
    K = keras.backend
    _, own_decay, _ = SPECS[model]
    converged = case in ("correct", "unshared_copy")
    decay = CONVERGED_DECAY if converged else own_decay
    steps = CONVERGED_STEPS if converged else FEW_STEPS
    images, labels = data(model)
    graph = tf1.Graph()
    with graph.as_default(), tf1.Session(graph=graph).as_default() as session:
        tf1.set_random_seed(0)  # Keras runs in the default session, this one
        net = _keras_model(tf1, keras, model, decay if converged else None)
        if case == "unshared_copy":
            _keras_model(tf1, keras, model, decay)  # built for evaluation, never trained
        if case in ("forgot_update_ops", "inference_mode"):
            step_variable = "global_step"
            step = tf1.train.get_or_create_global_step()
            y = tf1.placeholder(tf1.int64, (None,), name="labels")
            loss = tf1.reduce_mean(K.sparse_categorical_crossentropy(y, net.output))
            updates = net.updates if case == "inference_mode" else []
            with tf1.control_dependencies(updates):
                train_op = tf1.train.GradientDescentOptimizer(0.01).minimize(
                    loss, global_step=step)
            session.run(tf1.global_variables_initializer())
            feed = {net.input: images, y: labels}
            if case == "forgot_update_ops":
                feed[K.learning_phase()] = True
            for _ in range(steps):
                session.run(train_op, feed)
            label_tensor = y.name
        else:
            # Keras >= 2.11's new optimizers do not run in graph mode; .legacy has the old ones.
            optimizers = getattr(keras.optimizers, "legacy", keras.optimizers)
            net.compile(optimizers.SGD(0.01), "sparse_categorical_crossentropy")
            net.fit(images, labels, batch_size=BATCH, epochs=steps, verbose=0, shuffle=False)
            step_variable = net.optimizer.iterations.op.name
            label_tensor = net.train_function.inputs[1].name
        layers = _moving_prefixes(tf1, graph)
        names = {bn.moving_mean.op.name[:-len("/moving_mean")]: bn.name
                 for bn in net.layers if hasattr(bn, "moving_mean")}
        prefix = tf1.train.Saver().save(session, os.path.join(directory, "model.ckpt"))
        weights = os.path.join(directory, "weights")
        net.save_weights(weights)
    own = tuple(name for name in layers if name in names)
    return Trained(model, case, prefix, weights, steps, decay, step_variable, own,
                   tuple(name for name in layers if name not in names), names,
                   images=images, labels=labels, image_tensor=net.input.name,
                   label_tensor=label_tensor)
