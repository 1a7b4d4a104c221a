"""The repair on real model code (tests/real_models.py: tf-slim resnet_v1_50 and Keras
MobileNetV2, weights=None, 32x32 inputs) trained with the update ops forgotten and with too few
steps, repaired from their checkpoint and .meta:

- the pooled statistics equal numpy's mean and population variance over each layer's input (the
  output of the conv before it), fetched in training mode batch by batch, over unequal batches;
- inference-mode outputs come to the training-mode outputs (ratio measured here: Keras through
  its learning phase in the .meta graph, tf-slim by building the net again with
  is_training=False, as an evaluation script does);
- the doctor finds nothing in the copy, every other tensor is bit-identical, and the input
  files are byte-identical afterwards.
"""
import hashlib
import os

import numpy as np
import pytest

from bn_decay_probe import backend, diagnose_checkpoint
from bn_decay_probe.repair import checkpoint as files
from bn_decay_probe.repair import recalibrate_checkpoint
import real_models
from real_models import CI_MODELS, SPECS

CASES = ("forgot_update_ops", "too_few_steps")
ROWS = 16  # the gap's data: one batch, so that training mode normalizes with all of it
UNEQUAL = (6, 4, 6)


def images(model, rows, seed):
    side = SPECS[model][0]
    return np.random.RandomState(seed).normal(2.0, 3.0, (rows, side, side, 3)).astype(
        np.float32)


def digest(prefix):
    directory = os.path.dirname(prefix)
    found = {}
    for name in sorted(os.listdir(directory)):
        if name.startswith(os.path.basename(prefix) + "."):
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                found[name] = (hashlib.sha256(handle.read()).hexdigest(),
                               os.stat(path).st_mtime_ns)
    return found


def tensors(prefix):
    with backend.quiet() as tf1:
        reader = tf1.train.NewCheckpointReader(prefix)
        return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()}


@pytest.fixture(scope="module")
def repaired(real_model, tmp_path_factory):
    """(model, case) -> (trained, copy prefix, input digest before, result), one batch."""
    cache = {}

    def get(model, case):
        if (model, case) not in cache:
            trained = real_model(model, case)
            before = digest(trained.saver_prefix)
            out = str(tmp_path_factory.mktemp("repaired") / "model.ckpt")
            result = recalibrate_checkpoint(trained.saver_prefix, [images(model, ROWS, 7)],
                                            out)
            cache[model, case] = (trained, out, before, result)
        return cache[model, case]

    return get


def layer_inputs(model, graph, layer):
    """The tensor a layer normalizes: the output of the conv before it (named by each model's
    own convention, not found the way the repair finds it)."""
    if model.startswith("slim"):
        return graph.get_tensor_by_name(layer[:-len("/BatchNorm")] + "/Conv2D:0")
    conv = {"bn_Conv1": "Conv1", "Conv_1_bn": "Conv_1"}.get(layer, layer[:-len("_BN")])
    for op in ("Conv2D", "depthwise"):
        try:
            return graph.get_tensor_by_name("%s/%s:0" % (conv, op))
        except KeyError:
            continue
    raise KeyError(layer)


def meta_session(tf1, prefix):
    """The .meta's graph (imported as the repair does, so that TF 2.x reads TF 1.15 files too)
    and a session restored from ``prefix``."""
    graph, saver = files.import_graph(tf1, prefix)
    session = tf1.Session(graph=graph)
    with graph.as_default():  # TF 2.x restores eagerly outside a graph
        saver.restore(session, prefix)
    return graph, session


@pytest.mark.parametrize("model", CI_MODELS)
def test_pooled_statistics_equal_numpy_over_the_layer_inputs(real_model, model, tmp_path):
    trained = real_model(model, "forgot_update_ops")
    batches = [images(model, rows, 10 + i) for i, rows in enumerate(UNEQUAL)]
    out = str(tmp_path / "model.ckpt")
    result = recalibrate_checkpoint(trained.saver_prefix, batches, out, gap_batches=0)
    copy = tensors(out)
    with backend.quiet() as tf1:
        graph, session = meta_session(tf1, trained.saver_prefix)
        with session:
            fetches = [layer_inputs(model, graph, layer) for layer in trained.bn_layers]
            feed = {} if model.startswith("slim") else {"keras_learning_phase:0": True}
            fetched = [session.run(fetches, dict(feed, **{trained.image_tensor: b}))
                       for b in batches]
    assert len(result.repaired) == len(trained.bn_layers) == SPECS[model][2]
    for index, layer in enumerate(trained.bn_layers):
        values = np.concatenate([np.float64(f[index]).reshape(-1, f[index].shape[-1])
                                 for f in fetched])
        mean, variance = values.mean(axis=0), values.var(axis=0)
        assert result.layer(layer).values == values.shape[0]
        spread = np.sqrt(variance.max())
        np.testing.assert_allclose(copy[layer + "/moving_mean"], mean, rtol=1e-4,
                                   atol=1e-5 * spread, err_msg=layer)
        np.testing.assert_allclose(copy[layer + "/moving_variance"], variance, rtol=1e-4,
                                   atol=1e-6 * spread ** 2, err_msg=layer)


def slim_outputs(trained, prefix, data, is_training):
    """The net built again from its code in a fresh graph (as an evaluation script does),
    restored from ``prefix``: its logits on ``data``."""
    tf1, slim, nets = real_models._slim()
    graph = tf1.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf1.float32, (None,) + data.shape[1:])
        logits = real_models._slim_net(tf1, slim, nets, trained.model, x, trained.decay,
                                       is_training, "resnet_v1_50")
        saver = tf1.train.Saver()
    with tf1.Session(graph=graph) as session:
        saver.restore(session, prefix)
        return session.run(logits, {x: data})


def keras_outputs(trained, prefix, data, is_training):
    with backend.quiet() as tf1:
        graph, session = meta_session(tf1, prefix)
        with session:
            output = graph.get_tensor_by_name("Logits/Softmax:0")
            return session.run(output, {trained.image_tensor: data,
                                        "keras_learning_phase:0": is_training})


def relative_gap(inference, training):
    """RMS of the difference relative to the training output's; infinite when the inference
    output is not finite (the (0, 1) statistics let activations overflow)."""
    inference, training = np.float64(inference), np.float64(training)
    if not np.isfinite(inference).all():
        return np.inf
    return np.sqrt(np.square(inference - training).sum() / np.square(training).sum())


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("model", CI_MODELS)
def test_inference_comes_to_training_mode(repaired, model, case):
    trained, out, _, result = repaired(model, case)
    data = images(model, ROWS, 7)
    outputs = slim_outputs if model.startswith("slim") else keras_outputs
    with backend.quiet():
        training = outputs(trained, trained.saver_prefix, data, True)
        before = relative_gap(outputs(trained, trained.saver_prefix, data, False), training)
        after = relative_gap(outputs(trained, out, data, False), training)
    assert after < 1e-3 * before, (before, after)
    assert after < 1e-3
    if model.startswith("slim"):  # trained with is_training=True: no switch in its graph
        assert result.gaps == () and result.switches == ()
    else:
        (gap,) = result.gaps
        assert gap.output == "Logits/Softmax:0" and gap.rows == ROWS
        assert gap.relative_before == pytest.approx(before, rel=1e-4)
        assert gap.relative_after == pytest.approx(after, rel=0.05, abs=1e-6)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("model", CI_MODELS)
def test_doctor_clean_and_nothing_else_changed(repaired, model, case):
    trained, out, before, result = repaired(model, case)
    assert digest(trained.saver_prefix) == before
    if case == "forgot_update_ops":
        assert not diagnose_checkpoint(trained.saver_prefix).clean
    diagnosis = diagnose_checkpoint(out)
    assert diagnosis.clean, [(f.layer, f.code) for f in diagnosis.findings]
    original, copy = tensors(trained.saver_prefix), tensors(out)
    assert set(copy) == set(original) | {files.MARKER_KEY}
    statistics = {layer + suffix for layer in trained.bn_layers
                  for suffix in ("/moving_mean", "/moving_variance")}
    for key, value in original.items():
        if key not in statistics:
            assert copy[key].dtype == value.dtype and copy[key].tobytes() == value.tobytes(), key
    assert sorted(layer.name for layer in result.repaired) == sorted(trained.bn_layers)
