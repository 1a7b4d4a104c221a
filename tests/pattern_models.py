"""The cases users hit beyond tests/real_models.py's planted problems, each built the way the
code users copy builds it, trained a few steps and saved with tf.train.Saver (and its .meta):

- ``blog(api, directory)``: the blog's ``tf.cond(is_training, lambda: net(x, True),
  lambda: net(x, False))`` with no reuse, so the test branch builds a second, untrained copy of
  every layer; ``api`` is each TF1 batch-norm API: ``contrib`` (tf.contrib.layers.batch_norm,
  unnamed, in-place updates), ``slim`` (slim.conv2d with normalizer_fn=slim.batch_norm, updates
  in UPDATE_OPS), ``layers`` (unnamed tf.layers.batch_normalization) and ``keras``
  (tf.keras.layers.BatchNormalization in graph mode, its layer.updates run). ``share=True``
  builds the same with reuse (one set of variables).
- ``frozen(model, ...)``: fine-tuning with batch norm frozen on purpose: the net (trained first
  as real_models' ``correct`` case) built again in inference mode (slim ``is_training=False``;
  Keras: the model called with ``training=False``), its weights restored, a few more steps.
- ``two_train_ops(directory)``: Keras MobileNetV2 with two train ops in its graph, one without
  the update ops and one with them; the loop runs the second without feeding the learning phase.
- ``slim_create_train_op(directory)``: tf-slim resnet_v1_50 trained by slim's create_train_op
  (which runs UPDATE_OPS itself).
- ``estimator(directory, forgot)``: a tf.estimator model_fn with tf.layers batch norm (TF 1.15
  only: TF 2.16 removed tf.estimator).
- ``plain_switch(directory)``: a small contrib net whose training switch is a plain
  ``tf.placeholder(tf.bool)`` (no default), its update ops in UPDATE_OPS and forgotten.
- ``plant(prefix, directory, values)``: a copy of a checkpoint with some tensors' values
  replaced (NaN / inf after correct training), written as tf.train.Saver writes it.

Importing this module does not import TensorFlow.
"""
import os
from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

import real_models

APIS = ("contrib", "slim", "layers", "keras")
SIDE = 8  # blog nets: 8x8 inputs, two conv + batch-norm blocks
CHANNELS = (4, 6)
BLOG_DECAY = 0.5
BLOG_STEPS = 6


@dataclass(frozen=True)
class Built:
    prefix: str
    trained: Tuple[str, ...]  # layers (variable prefixes) that training updates
    copies: Tuple[str, ...]  # the untrained copies, in the order of ``trained``
    image_tensor: str = ""
    switch: str = ""  # the training switch placeholder, "" if none


def images(side, rows=8, seed=0):
    return np.random.RandomState(seed).normal(2.0, 3.0, (rows, side, side, 3)).astype(np.float32)


def _moving(tf1, graph):
    return tuple(v.op.name[:-len("/moving_mean")] if v.op.name.endswith("/moving_mean") else
                 v.op.name[:-len("moving_mean_1")] + "_1"
                 for v in graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES)
                 if v.op.name.endswith(("/moving_mean", "/moving_mean_1")))


# ------------------------------------------------------------------------------ the blog's cond

def _blog_net(api, tf1, x, training, share):
    from bn_decay_probe import backend

    made, before = [], len(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS))
    reuse = tf1.AUTO_REUSE if share else None
    for i, channels in enumerate(CHANNELS):
        name = "block%d" % i if share else None
        if api == "slim":
            slim = real_models._slim()[1]
            x = slim.conv2d(x, channels, 3, normalizer_fn=slim.batch_norm,
                            normalizer_params={"is_training": training, "decay": BLOG_DECAY},
                            scope=name, reuse=reuse)
            continue
        x = backend.v1_layers().conv2d(x, channels, 3, padding="same", reuse=reuse,
                                       name=name and name + "/conv")
        if api == "contrib":
            x = backend.batch_norm()(x, is_training=training, decay=BLOG_DECAY,
                                     updates_collections=None, reuse=reuse,
                                     scope=name and name + "/bn")
        elif api == "layers":
            x = backend.layers_batch_normalization()(x, training=training, momentum=BLOG_DECAY,
                                                     reuse=reuse, name=name and name + "/bn")
        else:
            layer = _keras_layer(i, share)
            made.append(layer)
            x = layer(x, training=training)
        x = tf1.nn.relu(x)
    out = tf1.reduce_mean(x, axis=[1, 2])
    # The branch's own updates, run inside it (a control flow v2 branch's ops cannot be run
    # from outside it).
    graph = tf1.get_default_graph()  # (a shared Keras layer lists both branches' updates)
    updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)[before:] + [
        update for layer in made for update in layer.updates
        if getattr(update, "graph", None) is graph]
    with tf1.control_dependencies(updates):
        return tf1.identity(out)


_SHARED_KERAS: Dict[int, object] = {}


def _keras_layer(index, share):
    from bn_decay_probe import backend

    if not share:
        return backend.keras().layers.BatchNormalization(momentum=BLOG_DECAY)
    if index not in _SHARED_KERAS:
        _SHARED_KERAS[index] = backend.keras().layers.BatchNormalization(momentum=BLOG_DECAY)
    return _SHARED_KERAS[index]


def blog(api, directory, share=False):
    from bn_decay_probe import backend

    os.makedirs(directory, exist_ok=True)
    with backend.quiet() as tf1:
        graph = tf1.Graph()
        with graph.as_default(), tf1.Session(graph=graph).as_default() as session:
            _SHARED_KERAS.clear()
            tf1.set_random_seed(0)
            x = tf1.placeholder(tf1.float32, (None, SIDE, SIDE, 3), name="x")
            is_training = tf1.placeholder(tf1.bool, (), name="is_training")
            out = tf1.cond(is_training, lambda: _blog_net(api, tf1, x, True, share),
                           lambda: _blog_net(api, tf1, x, False, share))
            loss = tf1.reduce_mean(tf1.square(out - 1.0))
            step = tf1.train.get_or_create_global_step()
            train = tf1.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=step)
            session.run(tf1.global_variables_initializer())
            for _ in range(BLOG_STEPS):
                session.run(train, {x: images(SIDE), is_training: True})
            prefix = tf1.train.Saver().save(session, os.path.join(directory, "model.ckpt"),
                                            global_step=step)
            layers = _moving(tf1, graph)
    half = len(layers) // 2
    if share:
        return Built(prefix, layers, (), x.name, is_training.name)
    return Built(prefix, layers[:half], layers[half:], x.name, is_training.name)


# ------------------------------------------------------------------- real nets, frozen on purpose

def frozen(model, pretrained, directory, steps=real_models.FEW_STEPS):
    """``pretrained``: real_models.Trained of ``model``'s correct case. The net built in inference
    mode, its weights restored from it, a new optimizer trains ``steps`` steps."""
    os.makedirs(directory, exist_ok=True)
    images_, labels = real_models.data(model)
    if model.startswith("slim"):
        tf1, slim, nets = real_models._slim()
        graph = tf1.Graph()
        with graph.as_default():
            x = tf1.placeholder(tf1.float32, (None,) + images_.shape[1:], name="images")
            y = tf1.placeholder(tf1.int64, (None,), name="labels")
            logits = real_models._slim_net(tf1, slim, nets, model, x, pretrained.decay, False,
                                           "resnet_v1_50" if "resnet" in model else
                                           "InceptionV3")
            restore = tf1.train.Saver(tf1.global_variables())
            step = tf1.train.get_or_create_global_step()
            loss = tf1.losses.sparse_softmax_cross_entropy(y, logits)
            train = tf1.train.MomentumOptimizer(0.01, 0.9).minimize(loss, global_step=step)
            with tf1.Session(graph=graph) as session:
                session.run(tf1.global_variables_initializer())
                restore.restore(session, pretrained.saver_prefix)
                for _ in range(steps):
                    session.run(train, {x: images_, y: labels})
                return tf1.train.Saver().save(session, os.path.join(directory, "model.ckpt"),
                                              global_step=step)
    tf1, keras = real_models._keras()
    K = keras.backend
    graph = tf1.Graph()
    with graph.as_default(), tf1.Session(graph=graph).as_default() as session:
        net = real_models._keras_model(tf1, keras, model, pretrained.decay)
        x = tf1.placeholder(tf1.float32, (None,) + images_.shape[1:], name="images")
        y = tf1.placeholder(tf1.int64, (None,), name="labels")
        out = net(x, training=False)  # batch norm in inference mode, as fine-tuning guides say
        step = tf1.train.get_or_create_global_step()
        loss = tf1.reduce_mean(K.sparse_categorical_crossentropy(y, out))
        train = tf1.train.GradientDescentOptimizer(0.01).minimize(loss, global_step=step)
        session.run(tf1.global_variables_initializer())
        net.load_weights(pretrained.weights_prefix)
        for _ in range(steps):
            session.run(train, {x: images_, y: labels})
        return tf1.train.Saver().save(session, os.path.join(directory, "model.ckpt"),
                                      global_step=step)


def two_train_ops(directory, steps=real_models.FEW_STEPS):
    model = "keras_mobilenet_v2"
    os.makedirs(directory, exist_ok=True)
    tf1, keras = real_models._keras()
    K = keras.backend
    images_, labels = real_models.data(model)
    graph = tf1.Graph()
    with graph.as_default(), tf1.Session(graph=graph).as_default() as session:
        tf1.set_random_seed(0)
        net = real_models._keras_model(tf1, keras, model, None)
        step = tf1.train.get_or_create_global_step()
        y = tf1.placeholder(tf1.int64, (None,), name="labels")
        loss = tf1.reduce_mean(K.sparse_categorical_crossentropy(y, net.output))
        tf1.train.GradientDescentOptimizer(0.01).minimize(loss, global_step=step)
        with tf1.control_dependencies(net.updates):
            with_updates = tf1.train.GradientDescentOptimizer(0.01).minimize(
                loss, global_step=step)
        session.run(tf1.global_variables_initializer())
        for _ in range(steps):
            session.run(with_updates, {net.input: images_, y: labels})  # learning phase unfed
        return tf1.train.Saver().save(session, os.path.join(directory, "model.ckpt"))


def slim_create_train_op(directory, steps=real_models.CONVERGED_STEPS):
    """resnet_v1_50 at decay CONVERGED_DECAY, trained by slim.learning.create_train_op."""
    model = "slim_resnet_v1_50"
    os.makedirs(directory, exist_ok=True)
    tf1, slim, nets = real_models._slim()
    images_, labels = real_models.data(model)
    graph = tf1.Graph()
    with graph.as_default():
        tf1.set_random_seed(0)
        x = tf1.placeholder(tf1.float32, (None,) + images_.shape[1:], name="images")
        y = tf1.placeholder(tf1.int64, (None,), name="labels")
        logits = real_models._slim_net(tf1, slim, nets, model, x, real_models.CONVERGED_DECAY,
                                       True, "resnet_v1_50")
        tf1.train.get_or_create_global_step()
        loss = tf1.losses.sparse_softmax_cross_entropy(y, logits)
        train = slim.learning.create_train_op(loss, tf1.train.MomentumOptimizer(0.01, 0.9))
        with tf1.Session(graph=graph) as session:
            session.run(tf1.global_variables_initializer())
            for _ in range(steps):
                session.run(train, {x: images_, y: labels})
            return tf1.train.Saver().save(session, os.path.join(directory, "model.ckpt"),
                                          global_step=tf1.train.get_global_step())


def estimator(directory, forgot=False, steps=6):
    """A tf.estimator.Estimator whose model_fn uses tf.layers batch norm, its train op under
    UPDATE_OPS unless ``forgot``; -> the latest checkpoint's prefix."""
    from bn_decay_probe import backend

    tf = backend.tensorflow()
    tf1 = tf.compat.v1

    def model_fn(features, labels, mode):
        training = mode == tf.estimator.ModeKeys.TRAIN
        x = tf1.layers.conv2d(features, 4, 3, padding="same")
        x = tf1.nn.relu(tf1.layers.batch_normalization(x, training=training,
                                                       momentum=BLOG_DECAY))
        out = tf1.layers.dense(tf1.reduce_mean(x, axis=[1, 2]), 1)
        loss = tf1.reduce_mean(tf1.square(out - labels))
        updates = [] if forgot else tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        with tf1.control_dependencies(updates):
            train = tf1.train.GradientDescentOptimizer(0.01).minimize(
                loss, tf1.train.get_global_step())
        return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train)

    data = images(SIDE)
    target = np.ones((len(data), 1), np.float32)
    with backend.quiet():
        runner = tf.estimator.Estimator(model_fn, model_dir=directory)
        runner.train(lambda: tf1.data.Dataset.from_tensors((data, target)).repeat(),
                     steps=steps)
    return runner.latest_checkpoint()


def plain_switch(directory, steps=3):
    from bn_decay_probe import backend

    os.makedirs(directory, exist_ok=True)
    with backend.quiet() as tf1:
        graph = tf1.Graph()
        with graph.as_default():
            tf1.set_random_seed(0)
            x = tf1.placeholder(tf1.float32, (None, SIDE, SIDE, 3), name="x")
            is_training = tf1.placeholder(tf1.bool, (), name="is_training")
            h = x
            for i, channels in enumerate(CHANNELS):
                h = backend.v1_layers().conv2d(h, channels, 3, padding="same",
                                               name="block%d/conv" % i)
                h = tf1.nn.relu(backend.batch_norm()(h, is_training=is_training,
                                                     scope="block%d/bn" % i))
            loss = tf1.reduce_mean(tf1.square(tf1.reduce_mean(h, axis=[1, 2]) - 1.0))
            step = tf1.train.get_or_create_global_step()
            train = tf1.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=step)
            with tf1.Session(graph=graph) as session:
                session.run(tf1.global_variables_initializer())
                for _ in range(steps):  # UPDATE_OPS forgotten
                    session.run(train, {x: images(SIDE), is_training: True})
                prefix = tf1.train.Saver().save(session, os.path.join(directory, "model.ckpt"),
                                                global_step=step)
    return Built(prefix, tuple("block%d/bn" % i for i in range(len(CHANNELS))), (),
                 x.name, is_training.name)


# ------------------------------------------------------------------------------ planted values

def plant(prefix, directory, values):
    """A copy of the checkpoint ``prefix`` in ``directory`` (its .meta too) where each key of
    ``values`` maps to {channel index: value} written over the stored tensor; -> its prefix."""
    from bn_decay_probe import backend

    os.makedirs(directory, exist_ok=True)
    out = os.path.join(directory, os.path.basename(prefix))
    with backend.quiet() as tf1:
        reader = tf1.train.NewCheckpointReader(prefix)
        dtypes = reader.get_variable_to_dtype_map()
        tensors = {key: reader.get_tensor(key) for key in dtypes}
        for key, changes in values.items():
            array = np.array(tensors[key])
            for index, value in changes.items():
                array.reshape(-1)[index] = value
            tensors[key] = array
        graph = tf1.Graph()
        keys = sorted(tensors)
        with graph.as_default():
            feeds = [tf1.placeholder(dtypes[key]) for key in keys]
            save = tf1.raw_ops.SaveV2(prefix=out, tensor_names=keys,
                                      shape_and_slices=[""] * len(keys), tensors=feeds)
        with tf1.Session(graph=graph) as session:
            session.run(save, dict(zip(feeds, (tensors[key] for key in keys))))
    if os.path.exists(prefix + ".meta"):
        with open(prefix + ".meta", "rb") as source, open(out + ".meta", "wb") as target:
            target.write(source.read())
    return out
