"""The doctor on the files TF 2.x Keras users have (tests/keras_models.py): Keras 3 and tf_keras,
each case (correct fit, a GradientTape loop without training=True, too few steps, batch norm
frozen from the start and after training) in every format each writes, plus keras.applications
models. Expected verdicts follow from what was done and from what each format keeps (a model
config: momentum and trainable; an optimizer: the step count), never from the doctor's output.
TF 2.21 only."""
import json
import os

import numpy as np
import pytest

from conftest import backend_name, doctor_cli, flat

pytestmark = pytest.mark.skipif(
    backend_name() != "tf2", reason="Keras 3 and tf_keras files need TensorFlow 2.16+ (the "
    "reader itself runs on TF 1.15 too: test_keras_files.py)")

from bn_decay_probe import diagnose_checkpoint  # noqa: E402
from bn_decay_probe.checkpoints.keras_files import read_keras_file  # noqa: E402
from bn_decay_probe.doctor import (NEVER_UPDATED, PARTLY_CONVERGED,  # noqa: E402
                                   TRAINED_IN_INFERENCE_MODE)
import keras_models  # noqa: E402
from keras_models import CASES, FORMATS, FRAMEWORKS  # noqa: E402

# Formats that keep the model config (momentum, trainable).
CONFIG = {"keras", "h5", "keras savedmodel"}
MATRIX = [(framework, case, fmt) for framework in FRAMEWORKS for case in CASES
          for fmt in FORMATS[framework]]


@pytest.fixture(scope="session")
def keras_saved(tmp_path_factory):
    return keras_models.Cache(str(tmp_path_factory.mktemp("keras_models")))


def has_counter(case, fmt):
    """The optimizer is saved with a compiled model (fit) in every format but .h5 weights and
    exports; a GradientTape loop's optimizer only by tf.train.Checkpoint(optimizer=...)."""
    if fmt in ("h5 weights", "export"):
        return False
    return fmt == "checkpoint" if case == "tape" else True


def expected(case, fmt, decay_given=False):
    """(status, the one code every layer gets or None)."""
    counter, momentum = has_counter(case, fmt), fmt in CONFIG or decay_given
    if case in ("tape", "frozen_start"):  # statistics at (0, 1)
        return "findings", TRAINED_IN_INFERENCE_MODE if counter else NEVER_UPDATED
    if case == "few_steps":
        return ("findings", PARTLY_CONVERGED) if counter and momentum else ("incomplete", None)
    return ("clean", None) if counter and momentum else ("incomplete", None)


def codes(d):
    return {f.code for f in d.findings}


@pytest.mark.parametrize("framework, case, fmt", MATRIX)
def test_verdict_in_every_format(keras_saved, framework, case, fmt):
    saved = keras_saved(framework, "tiny", case)
    d = diagnose_checkpoint(saved.files[fmt])
    status, code = expected(case, fmt)
    assert (d.status, codes(d)) == (status, {code} if code else set())
    assert sorted(layer.name.rpartition("/")[2] for layer in d.layers) == ["bn1", "bn2"]
    if has_counter(case, fmt):
        assert d.steps.value == saved.steps
    if fmt in CONFIG:
        assert [layer.decay for layer in d.layers] == [pytest.approx(saved.momentum)] * 2
    given = diagnose_checkpoint(saved.files[fmt], decay=saved.momentum)
    status, code = expected(case, fmt, decay_given=True)
    assert (given.status, codes(given)) == (status, {code} if code else set())


@pytest.mark.parametrize("framework, case, fmt", [
    (framework, case, fmt) for framework, case, fmt in MATRIX
    if fmt in ("keras", "weights.h5", "h5", "h5 weights")])
def test_the_reader_gives_the_saved_values(keras_saved, framework, case, fmt):
    """Bit for bit the live model's statistics, in network order, with the config's momentum
    and trainable flag, and the optimizer's counter where the file keeps it."""
    saved = keras_saved(framework, "tiny", case)
    read = read_keras_file(saved.files[fmt])
    names = [layer.name for layer in read.layers]
    assert names in (["bn1", "bn2"], ["layers/batch_normalization", "layers/batch_normalization_1"],
                     ["batch_normalization", "batch_normalization_1"])
    for layer, (mean, variance) in zip(read.layers, saved.statistics.values()):
        assert layer.mean.dtype == mean.dtype and layer.mean.tobytes() == mean.tobytes()
        assert layer.variance.tobytes() == variance.tobytes() and layer.channels == 8
    if fmt in CONFIG:
        frozen = case in ("frozen_start", "frozen_after")
        assert [(l.momentum, l.trainable) for l in read.layers] == \
            [(pytest.approx(saved.momentum), not frozen)] * 2
    else:
        assert [(l.momentum, l.trainable) for l in read.layers] == [(None, None)] * 2
    assert read.steps.value == (saved.steps if has_counter(case, fmt) else None)


def test_frozen_after_training_is_a_note(keras_saved):
    d = diagnose_checkpoint(keras_saved("keras3", "tiny", "frozen_after").files["keras"])
    assert d.status == "clean" and d.steps.value == keras_models.CONVERGED_STEPS + 2
    assert any(note.startswith("2 layer(s) frozen (trainable=False) after their statistics "
                               "trained") for note in d.notes)


def test_fixes_in_keras_terms(keras_saved):
    """The tape loop's fix names training=True / fit and the repair, never UPDATE_OPS."""
    for fmt in ("keras", "checkpoint"):
        d = diagnose_checkpoint(keras_saved("tf_keras", "tiny", "tape").files[fmt])
        fix = d.findings[0].fix
        assert "model(x, training=True)" in fix and "model.fit" in fix
        assert "bn-decay-probe repair" in fix and "UPDATE_OPS" not in fix
    d = diagnose_checkpoint(keras_saved("keras3", "tiny", "frozen_start").files["keras"])
    assert "frozen with trainable=False before it trained" in d.findings[0].explanation
    assert "training=True" not in d.findings[0].fix and "trainable=True" in d.findings[0].fix


@pytest.mark.parametrize("framework, model, case, fmt, count, code", [
    ("keras3", "mobilenet_v2", "tape", "keras", 52, NEVER_UPDATED),
    ("keras3", "mobilenet_v2", "tape", "checkpoint", 52, TRAINED_IN_INFERENCE_MODE),
    ("keras3", "resnet50", "few_steps", "keras", 53, PARTLY_CONVERGED),
    ("keras3", "efficientnet_b0", "frozen_start", "keras", 49, TRAINED_IN_INFERENCE_MODE),
    ("tf_keras", "mobilenet_v2", "tape", "h5", 52, NEVER_UPDATED),
    ("tf_keras", "resnet50", "few_steps", "keras", 53, PARTLY_CONVERGED),
])
def test_keras_applications(keras_saved, framework, model, case, fmt, count, code):
    saved = keras_saved(framework, model, case)
    d = diagnose_checkpoint(saved.files[fmt])
    assert [(f.code, len(d.layers)) for f in d.findings] == [(code, count)] * count
    assert [layer.name for layer in d.layers] == list(saved.statistics)  # network order
    if code == PARTLY_CONVERGED:
        assert d.findings[0].explanation.startswith("%.6g**%d = %.4g of each" % (
            saved.momentum, saved.steps, saved.momentum ** saved.steps))


def test_cli_exit_status_and_json(keras_saved, tmp_path):
    tape = keras_saved("keras3", "tiny", "tape").files
    out = doctor_cli(tape["keras"])
    assert out.returncode == 1 and out.stderr == ""
    assert out.stdout.startswith("FINDINGS: 2 finding(s) in 2 batch-norm layer(s): "
                                 "NEVER_UPDATED x2\nKeras 3.")
    correct = keras_saved("keras3", "tiny", "correct").files
    assert doctor_cli(correct["keras"]).returncode == 0
    incomplete = doctor_cli(correct["weights.h5"])
    assert incomplete.returncode == 3
    assert "not checked: convergence (PARTLY_CONVERGED) of 2 layer(s): decay unknown (a " \
           ".weights.h5 file holds no model config); give --decay D" in flat(incomplete.stdout)
    report = tmp_path / "d.json"
    assert doctor_cli(tape["checkpoint"], "--json", str(report)).returncode == 1
    document = json.loads(report.read_text())
    assert document["source"] == "checkpoint" and document["file_format"] == \
        "TF 2 object checkpoint"
    assert document["steps"]["source"] == "optimizer/_iterations"
    assert [l["kind"] for l in document["layers"]] == ["keras", "keras"]


def test_a_savedmodel_by_its_variables_prefix(keras_saved):
    saved = keras_saved("tf_keras", "tiny", "few_steps").files["keras savedmodel"]
    d = diagnose_checkpoint(os.path.join(saved, "variables", "variables"))
    assert d.source == "savedmodel" and codes(d) == {PARTLY_CONVERGED}
    assert [layer.decay for layer in d.layers] == [pytest.approx(keras_models.TINY_MOMENTUM)] * 2


def test_loss_scale_optimizer_counts_in_its_inner_optimizer(tmp_path):
    """Mixed precision: the LossScaleOptimizer's own counter stays 0; the inner one counts."""
    keras = keras_models.keras_module("keras3")
    import tensorflow as tf

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        net = keras_models.build("keras3", "tiny")
        net.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
        images, labels = keras_models.data(16)
        net.fit(images, labels, batch_size=8, verbose=0, shuffle=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    net.save(str(tmp_path / "m.keras"))
    tf.train.Checkpoint(model=net, optimizer=net.optimizer).save(str(tmp_path / "ckpt" / "c"))
    for path, source in ((tmp_path / "m.keras", "optimizer/inner_optimizer/iterations"),
                         (tmp_path / "ckpt", "optimizer/inner_optimizer/_iterations")):
        d = diagnose_checkpoint(str(path))
        assert (d.steps.value, d.steps.source) == (2, source)
        assert dict(d.steps.candidates)[source.replace("inner_optimizer/", "")] == 0
    layer = read_keras_file(str(tmp_path / "m.keras")).layers[0]
    assert layer.mean.dtype == np.float32  # the statistics stay float32 under mixed_float16
