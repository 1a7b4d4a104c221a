"""The repair on real model code (tests/real_models.py: tf-slim resnet_v1_50 and Keras
MobileNetV2, weights=None, 32x32 inputs) trained with the update ops forgotten and with too few
steps, repaired from their checkpoint and .meta:

- the pooled statistics equal numpy's mean and population variance over each layer's input (the
  output of the conv before it) fetched in training mode (unequal batches are covered on every
  API in test_repair_graphs.py; one batch here, so that the gap below has an exact target);
- inference-mode outputs come to the training-mode outputs (ratio measured here: Keras through
  its learning phase in the .meta graph, tf-slim by building the net again with
  is_training=False, as an evaluation script does), and the repair's check says so;
- the doctor finds nothing in the copy (a channel constant on the data has variance 0, which
  the repair's marker vouches for: checked against the layer's input), every other tensor is
  bit-identical, and the input files are byte-identical afterwards.
"""

import numpy as np
import pytest

from bn_decay_probe import backend, diagnose_checkpoint
from bn_decay_probe.checkpoints import meta
from bn_decay_probe.repair import recalibrate_checkpoint, render_repair
from checkpoint_files import assert_only_statistics_differ, digest, tensors
import real_models
from test_doctor_real import missing_whole
from real_models import CI_MODELS, SPECS

CASES = ("forgot_update_ops", "too_few_steps")
ROWS = 16  # one batch: training mode then normalizes with the statistics of all the data


def images(model, rows, seed):
    side = SPECS[model][0]
    return np.random.RandomState(seed).normal(2.0, 3.0, (rows, side, side, 3)).astype(
        np.float32)


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
    graph, saver = meta.import_graph(tf1, prefix)
    session = tf1.Session(graph=graph)
    with graph.as_default():  # TF 2.x restores eagerly outside a graph
        saver.restore(session, prefix)
    return graph, session


@pytest.mark.parametrize("model, case", [("slim_resnet_v1_50", "forgot_update_ops"),
                                         ("keras_mobilenet_v2", "too_few_steps")])
def test_pooled_statistics_equal_numpy_over_the_layer_inputs(repaired, model, case):
    trained, out, _, result = repaired(model, case)
    copy = tensors(out)
    data = images(model, ROWS, 7)
    with backend.quiet() as tf1:
        graph, session = meta_session(tf1, trained.saver_prefix)
        with session:
            fetches = [layer_inputs(model, graph, layer) for layer in trained.bn_layers]
            feed = {} if model.startswith("slim") else {"keras_learning_phase:0": True}
            fetched = session.run(fetches, dict(feed, **{trained.image_tensor: data}))
    assert len(result.repaired) == len(trained.bn_layers) == SPECS[model][2]
    for layer, values in zip(trained.bn_layers, fetched):
        values = np.float64(values).reshape(-1, values.shape[-1])
        mean, variance = values.mean(axis=0), values.var(axis=0)
        assert result.layer(layer).values == values.shape[0]
        spread = np.sqrt(variance.max())
        np.testing.assert_allclose(copy[layer + "/moving_mean"], mean, rtol=1e-4,
                                   atol=1e-5 * spread, err_msg=layer)
        np.testing.assert_allclose(copy[layer + "/moving_variance"], variance, rtol=1e-4,
                                   atol=1e-6 * spread ** 2, err_msg=layer)


def slim_outputs(trained, data, prefixes, is_training):
    """The net built again from its code in a fresh graph (as an evaluation script does): its
    logits on ``data`` restored from each of ``prefixes``."""
    tf1, slim, nets = real_models._slim()
    graph = tf1.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf1.float32, (None,) + data.shape[1:])
        logits = real_models._slim_net(tf1, slim, nets, trained.model, x, trained.decay,
                                       is_training, "resnet_v1_50")
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as session:
            found = []
            for prefix in prefixes:
                saver.restore(session, prefix)
                found.append(session.run(logits, {x: data}))
    return found


def keras_output(graph):
    """MobileNetV2's softmax: layer "Logits" in TF 1.15's tf.keras, "predictions" later."""
    names = [op.name for op in graph.get_operations() if op.type == "Softmax"]
    assert len(names) == 1 and names[0] in ("Logits/Softmax", "predictions/Softmax"), names
    return graph.get_tensor_by_name(names[0] + ":0")


def keras_outputs(trained, data, prefix, modes):
    """The .meta graph restored from ``prefix``: its softmax on ``data`` with the learning phase
    set to each of ``modes``."""
    with backend.quiet() as tf1:
        graph, session = meta_session(tf1, prefix)
        with session:
            output = keras_output(graph)
            return [session.run(output, {trained.image_tensor: data,
                                         "keras_learning_phase:0": mode}) for mode in modes]


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
    with backend.quiet():
        if model.startswith("slim"):
            (training,) = slim_outputs(trained, data, [trained.saver_prefix], True)
            old, new = slim_outputs(trained, data, [trained.saver_prefix, out], False)
        else:
            training, old = keras_outputs(trained, data, trained.saver_prefix, (True, False))
            (new,) = keras_outputs(trained, data, out, (False,))
    before, after = relative_gap(old, training), relative_gap(new, training)
    assert after < 1e-3 * before, (before, after)
    assert after < 1e-3
    if model.startswith("slim"):  # trained with is_training=True: no switch in its graph
        assert result.check is None and result.switches == ()
    else:
        # One batch: inference mode with the written statistics sees exactly them (the
        # check's error is float32 rounding), where the statistics before were far off.
        assert (result.check.rows, result.check.all_data) == (ROWS, True)
        assert result.worst_error(True)[1] < 1e-3 < result.worst_error(False)[1]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("model", CI_MODELS)
def test_doctor_clean_and_nothing_else_changed(repaired, model, case):
    trained, out, before, result = repaired(model, case)
    assert digest(trained.saver_prefix) == before
    if case == "forgot_update_ops":
        assert not diagnose_checkpoint(trained.saver_prefix).clean
    original, copy = tensors(trained.saver_prefix), tensors(out)
    # Clean, also where a channel is constant on the data (a dead channel): its variance is 0,
    # and the repair's marker says it was measured so; checked against the layer's input.
    assert diagnose_checkpoint(out).clean
    for layer in trained.bn_layers:
        zero = copy[layer + "/moving_variance"] == 0
        if not zero.any():
            continue
        with backend.quiet() as tf1:
            graph, session = meta_session(tf1, trained.saver_prefix)
            with session:
                feed = {} if model.startswith("slim") else {"keras_learning_phase:0": True}
                feed[trained.image_tensor] = images(model, ROWS, 7)
                values = session.run(layer_inputs(model, graph, layer), feed)
        values = values.reshape(-1, values.shape[-1])
        assert np.all(values[:, zero] == values[:1, zero]), layer
    assert_only_statistics_differ(original, copy, trained.bn_layers)
    assert sorted(layer.name for layer in result.repaired) == sorted(trained.bn_layers)


@pytest.mark.parametrize("model, case", [("slim_resnet_v1_50", "forgot_update_ops"),
                                         ("keras_mobilenet_v2", "too_few_steps")])
def test_the_report_holds_every_layer_name_whole_at_every_width(repaired, model, case):
    trained, _, _, result = repaired(model, case)
    for width in (60, 100, 200):
        text = render_repair(result, width=width)
        assert missing_whole(trained.bn_layers, text) == [], width
