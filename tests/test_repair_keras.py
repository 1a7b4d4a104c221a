"""The repair of Keras models (tests/keras_models.py): a .keras (Keras 3) and an .h5 (tf_keras)
MobileNetV2 trained by a GradientTape loop that forgot training=True, repaired from the command
line and from Python; live models repaired in place (Keras 3 and tf_keras, a list and a
tf.data.Dataset), batch norm frozen with trainable=False, a directory of images with
--preprocess, and what the repair refuses. Checked against independent expectations:

- each layer's pooled statistics equal numpy's mean and population variance of its input,
  fetched by a Keras sub-model of the original file run with training=True (first and last
  batch-norm layer; unequal batches pooled);
- every other weight is bit-identical after reloading the copy with Keras, and the input file is
  byte-identical;
- the check's error of a layer before and after equals the one computed here from the layer's
  input in inference mode (a Keras sub-model run with training=False) and its statistics, and
  is at least 10x smaller after;
- the doctor is clean on the copy.
TF 2.21 only."""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import backend_name, flat

pytestmark = pytest.mark.skipif(
    backend_name() != "tf2", reason="repairing Keras 3 and tf_keras models needs TensorFlow "
    "2.16+; the TF 1.15 repair is tested by test_repair_*.py")

from bn_decay_probe import DataError, ProbeConfigError, diagnose_checkpoint  # noqa: E402
from bn_decay_probe.repair import recalibrate, recalibrate_checkpoint  # noqa: E402
from bn_decay_probe.repair.images import open_images  # noqa: E402
import keras_models  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = 64


def images(rows=ROWS, seed=7):
    return keras_models.data(rows, seed)[0]


def digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest(), os.stat(path).st_mtime_ns


def repair_cli(*args):
    script = os.path.join(os.path.dirname(sys.executable), "bn-decay-probe")
    return subprocess.run([script, "repair", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT))


def load(framework, path):
    return keras_models.keras_module(framework).models.load_model(path, compile=False)


def layer_inputs(framework, model, layer, batches):
    """The inputs of ``layer``, each batch through a Keras sub-model of ``model`` run with
    training=True (the batch-norm layers before it normalize with the batch's statistics)."""
    keras = keras_models.keras_module(framework)
    probe = keras.Model(model.inputs, layer.input)
    return [np.asarray(probe(batch, training=True), np.float64) for batch in batches]


def inference_error(framework, model, layer, batch):
    """The check's measure computed from values: the layer's input in inference mode (the
    layers before it normalizing with their moving statistics), normalized with the layer's
    moving statistics and with the input's own; the RMS over channels of each channel's RMS
    difference."""
    keras = keras_models.keras_module(framework)
    x = np.asarray(keras.Model(model.inputs, layer.input)(batch, training=False), np.float64)
    x = x.reshape(-1, x.shape[-1])
    epsilon = float(layer.epsilon)
    own = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + epsilon)
    moving = (x - np.asarray(layer.moving_mean, np.float64)) / np.sqrt(
        np.asarray(layer.moving_variance, np.float64) + epsilon)
    return float(np.sqrt(np.mean(np.mean((moving - own) ** 2, axis=0))))


def population(values):
    """numpy's mean and population variance per channel over every value of every batch."""
    flat_values = np.concatenate([v.reshape(-1, v.shape[-1]) for v in values])
    return flat_values.mean(axis=0), flat_values.var(axis=0)


def assert_only_statistics_differ(framework, original, repaired):
    """After reloading: every variable but the moving statistics bit-identical, those all
    different (they were at (0, 1))."""
    before, after = load(framework, original), load(framework, repaired)
    assert len(before.weights) == len(after.weights)
    changed = []
    for old, new in zip(before.weights, after.weights):
        old, new_value, name = np.asarray(old), np.asarray(new), getattr(new, "path", new.name)
        if old.tobytes() != new_value.tobytes():
            changed.append(name.split(":")[0].rpartition("/")[2])
    assert sorted(set(changed)) == ["moving_mean", "moving_variance"]
    assert len(changed) == 2 * len(keras_models.batch_norm_layers(before))
    return after


@pytest.mark.parametrize("framework, fmt", [("keras3", "keras"), ("tf_keras", "h5")])
def test_repair_a_file(keras_saved, tmp_path, framework, fmt):
    saved = keras_saved(framework, "mobilenet_v2", "tape")
    source = saved.files[fmt]
    data = tmp_path / "images.npy"
    np.save(str(data), images())
    out = str(tmp_path / ("fixed." + fmt))
    before = digest(source)
    assert diagnose_checkpoint(source).status == "findings"
    if framework == "keras3":  # from the shell
        run = repair_cli(source, "--data", str(data), "--batch-size", str(ROWS), "--out", out,
                         "--json", str(tmp_path / "r.json"))
        assert (run.returncode, run.stderr) == (0, "")
        assert flat(run.stdout).startswith("%s -> %s | input " % (source, out))
        result = json.loads((tmp_path / "r.json").read_text())
    else:
        result = recalibrate_checkpoint(source, str(data), out, batch_size=ROWS).to_dict()
    assert digest(source) == before and not [
        name for name in os.listdir(str(tmp_path)) if ".tmp-" in name]
    check = result["check"]
    assert result["batches"] == 1 and (check["rows"], check["all_data"]) == (ROWS, True)
    assert check["worst_after"] <= check["worst_before"] / 10
    repaired = assert_only_statistics_differ(framework, source, out)
    original = load(framework, source)
    layers = keras_models.batch_norm_layers(original)
    fixed = {layer.name: layer for layer in keras_models.batch_norm_layers(repaired)}
    reported = {layer["name"].rpartition("/")[2]: layer for layer in result["layers"]}
    x = images()
    # Inference mode first: a Keras 3 call with training=True moves the original's statistics.
    expected = {layer.name: (inference_error(framework, original, layer, x),
                             inference_error(framework, repaired, fixed[layer.name], x))
                for layer in (layers[0], layers[-1])}
    inference_before = np.asarray(original(x, training=False), np.float64)
    inference_after = np.asarray(repaired(x, training=False), np.float64)
    for layer in (layers[0], layers[-1]):
        found = reported[layer.name]
        assert (found["error_before"], found["error_after"]) == pytest.approx(
            expected[layer.name], rel=1e-3, abs=1e-4)
        # (a deep layer's input may vanish in inference mode with the initial statistics
        # above it: an error near 0 before and after)
        assert expected[layer.name][1] <= max(expected[layer.name][0] / 10, 1e-4)
        mean, variance = population(layer_inputs(framework, original, layer, [x]))
        np.testing.assert_allclose(np.asarray(fixed[layer.name].moving_mean), mean,
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(fixed[layer.name].moving_variance), variance,
                                   rtol=1e-4, atol=1e-6)
    # The data as one batch: inference mode against training mode (which does not read the
    # moving statistics), before and after.
    training = np.asarray(original(x, training=True), np.float64)

    def relative_gap(inference):
        return np.sqrt(np.mean((inference - training) ** 2) / np.mean(training ** 2))

    assert relative_gap(inference_after) <= relative_gap(inference_before) / 10
    d = diagnose_checkpoint(out)
    assert d.clean and any(note.startswith("52 layer(s) recalibrated from data")
                           for note in d.notes)


@pytest.mark.parametrize("framework", keras_models.FRAMEWORKS)
def test_recalibrate_a_live_model_from_unequal_batches(keras_saved, framework):
    """Pooled over batches of 24 and 16 rows: the first layer equals numpy over all 40 rows
    of its input; the last over its inputs batch by batch (the layer before it normalized
    each batch with that batch's statistics)."""
    saved = keras_saved(framework, "tiny", "tape")
    model = load(framework, saved.files["keras"])
    reference = load(framework, saved.files["keras"])
    data = images(40)
    batches = [data[:24], data[24:]]
    kernel_before = np.asarray(model.get_layer("conv2").kernel).copy()
    result = recalibrate(model, batches, check_batches=0)
    assert result.source == "keras" and result.batches == 2 and result.rows == 40
    assert result.verdict.startswith("done: recalibrated 2 of 2 batch-norm layer(s) from 2 "
                                     "batch(es), 40 row(s) in the model")
    for name in ("bn1", "bn2"):
        layer = reference.get_layer(name)
        mean, variance = population(layer_inputs(framework, reference, layer, batches))
        repaired = result.layer(name)
        np.testing.assert_allclose(repaired.mean_after, mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(repaired.variance_after, variance, rtol=1e-5, atol=1e-6)
        assert repaired.values == 40 * (30 * 30 if name == "bn1" else 28 * 28)
        live = model.get_layer(name)
        assert np.asarray(live.moving_mean).tobytes() == \
            repaired.mean_after.astype(np.float32).tobytes()
    assert np.asarray(model.get_layer("conv2").kernel).tobytes() == kernel_before.tobytes()


def test_a_tf_data_dataset_of_pairs(keras_saved):
    """tf.data yields (x, y): x is taken, as model.fit does; the check runs on all rows."""
    import tensorflow as tf

    saved = keras_saved("tf_keras", "tiny", "tape")
    model = load("tf_keras", saved.files["h5"])
    x, y = keras_models.data(32, seed=3)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    result = recalibrate(model, dataset)
    assert (result.batches, result.check.rows, result.check.all_data) == (1, 32, True)
    assert result.worst_error(True)[1] <= result.worst_error(False)[1] / 10


@pytest.mark.parametrize("framework, fmt", [("keras3", "keras"), ("tf_keras", "keras"),
                                            ("tf_keras", "h5")])
def test_frozen_batch_norm_is_recalibrated_and_stays_frozen(keras_saved, tmp_path, framework,
                                                            fmt):
    saved = keras_saved(framework, "tiny", "frozen_start")
    assert diagnose_checkpoint(saved.files[fmt]).status == "findings"
    out = str(tmp_path / ("fixed." + fmt))
    result = recalibrate_checkpoint(saved.files[fmt], [images(32)], out)
    assert [layer.status for layer in result.layers] == ["repaired"] * 2
    assert result.worst_error(True)[1] <= result.worst_error(False)[1] / 10
    repaired = assert_only_statistics_differ(framework, saved.files[fmt], out)
    assert [layer.trainable for layer in keras_models.batch_norm_layers(repaired)] == [False] * 2
    d = diagnose_checkpoint(out)
    assert d.clean and d.findings == ()


def test_a_directory_of_images_with_preprocess(keras_saved, tmp_path):
    """Images are resized to the model's input and preprocessed: the first layer's statistics
    equal numpy over conv1 of the same pixels, preprocessed by the same function."""
    from PIL import Image

    saved = keras_saved("keras3", "tiny", "tape")
    folder = tmp_path / "images"
    pixels = np.random.RandomState(5).randint(0, 256, (6, 32, 32, 3)).astype(np.uint8)
    for index, image in enumerate(pixels):
        (folder / ("class_%d" % (index % 2))).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(str(folder / ("class_%d" % (index % 2)) / ("%d.png" % index)))
    Image.fromarray(pixels[0]).resize((48, 40)).save(str(folder / "other.png"))
    found = open_images(str(folder))
    assert found.files[:2] == ("class_0/0.png", "class_0/2.png") and len(found.files) == 7
    read = np.concatenate(list(found.batches(4, (None, 32, 32, 3))))
    order = [0, 2, 4, 1, 3, 5]
    assert read.dtype == np.float32 and read.shape == (7, 32, 32, 3)
    assert np.array_equal(read[:6], pixels[order].astype(np.float32))
    out = str(tmp_path / "fixed.keras")
    run = repair_cli(saved.files["keras"], "--data", str(folder), "--out", out, "--preprocess",
                     "keras.applications.mobilenet_v2:preprocess_input", "--batch-size", "7")
    assert (run.returncode, run.stderr) == (0, "")
    model = load("keras3", saved.files["keras"])
    fed = read / 127.5 - 1.0  # what mobilenet_v2.preprocess_input does
    mean, variance = population(layer_inputs("keras3", model, model.get_layer("bn1"), [fed]))
    fixed = load("keras3", out).get_layer("bn1")
    np.testing.assert_allclose(np.asarray(fixed.moving_mean), mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(fixed.moving_variance), variance, rtol=1e-4)


def test_the_model_is_left_as_it_was_on_bad_data(keras_saved):
    saved = keras_saved("keras3", "tiny", "tape")
    model = load("keras3", saved.files["keras"])
    bad = images(8)
    bad[3, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match=r"^batch 1 holds 1 NaN or infinite value\(s\)"):
        recalibrate(model, [images(8), bad])
    with pytest.raises(DataError, match=r"^batch 0 has shape \(8, 16, 16, 3\); the input "):
        recalibrate(model, [images(8)[:, :16, :16]])
    layer = model.get_layer("bn1")
    assert not np.asarray(layer.moving_mean).any() and layer.trainable
    assert "call" not in vars(layer)  # the layer's own call again
    with pytest.raises(ProbeConfigError, match=r"^inputs, training: tensor names of a TF1 graph "
                                               r"do not apply"):
        recalibrate(model, [images(8)], inputs="x", training="t")


def test_a_keras_model_in_a_tf1_graph_goes_to_the_session_form():
    from bn_decay_probe import backend

    tf1, keras = backend.tensorflow().compat.v1, backend.keras()
    with tf1.Graph().as_default():
        model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
        with pytest.raises(ProbeConfigError, match=r"^the Keras model lives in a TF1 graph "
                                                   r"\(graph mode\): recalibrate its session"):
            recalibrate(model, [np.ones((2, 4), np.float32)])


def test_refusals_in_one_line(keras_saved, tmp_path):
    tiny = keras_saved("keras3", "tiny", "tape").files
    tf_keras = keras_saved("tf_keras", "tiny", "tape").files
    data = str(tmp_path / "x.npy")
    np.save(data, images(8))
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(b"")
    cases = [
        ([tiny["weights.h5"], "--out", str(tmp_path / "o.weights.h5")],
         "%s holds weights only, no model to run: build the model in Python, load_weights, "
         "recalibrate(model, batches), then save_weights" % tiny["weights.h5"]),
        ([tf_keras["keras savedmodel"], "--out", str(tmp_path / "o")],
         "%s is a SavedModel, which the repair does not rewrite" % tf_keras["keras savedmodel"]),
        ([tiny["keras"], "--out", str(tmp_path / "o.h5")],
         "out %s: the repaired copy of %s keeps its format; give a path ending in .keras"
         % (tmp_path / "o.h5", tiny["keras"])),
        ([tiny["keras"], "--out", tiny["keras"]],
         "out %s is the input file; the repair never writes over its input" % tiny["keras"]),
        ([tiny["keras"], "--out", str(tmp_path / "o.keras"), "--input", "x"],
         "--input: tensor names of a TF1 graph do not apply to a Keras model"),
        ([tiny["keras"], "--out", str(tmp_path / "o.keras"), "--data", str(tmp_path / "pics")],
         "data %s is a directory of images: say how the model's inputs were scaled with "
         "--preprocess" % (tmp_path / "pics")),
        ([tiny["keras"], "--out", str(tmp_path / "o.keras"), "--preprocess", "no-module"],
         "--preprocess must be MODULE:FUNCTION"),
    ]
    for args, message in cases:
        if "--data" not in args:
            args = args + ["--data", data]
        run = repair_cli(*args)
        assert (run.returncode, run.stdout) == (2, ""), args
        assert run.stderr.startswith("bn-decay-probe repair: error: " + message), run.stderr
        assert run.stderr.count("\n") == 1
    assert sorted(os.listdir(str(tmp_path))) == ["pics", "x.npy"]


def test_batch_renormalization_is_left_as_it_was():
    """tf_keras's renorm=True normalizes with corrected statistics in training mode: no
    population of batch statistics to write; its neighbour is repaired."""
    keras = keras_models.keras_module("tf_keras")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.BatchNormalization(renorm=True, name="renorm")(inputs)
    x = keras.layers.BatchNormalization(name="plain")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    result = recalibrate(model, [images(8)[:, :8, :8]], check_batches=0)
    assert [(l.name, l.status) for l in result.layers] == [("renorm", "skipped"),
                                                           ("plain", "repaired")]
    assert result.layer("renorm").reason.startswith("batch renormalization (renorm=True)")
    assert not np.asarray(model.get_layer("renorm").moving_mean).any()
