"""The doctor's verdicts on the cases users hit (tests/pattern_models.py), on real model code and
on each backend:

- the blog's ``tf.cond(is_training, ...)`` with no reuse, built with each TF1 batch-norm API:
  each test-branch copy is UNSHARED_BRANCHES naming the layer it copies, the trained layers
  have no finding; built with reuse, clean;
- batch norm frozen on purpose (fine-tuning tf-slim resnet_v1_50 and Keras MobileNetV2 in
  inference mode from a trained checkpoint): clean, exit 0, a note saying where the statistics
  come from, with --decay too (never PARTLY_CONVERGED, never "incomplete");
- two train ops in one graph (one without the update ops, one with them and the learning
  phase unfed): one finding per layer naming both train ops, each cause and each fix;
- an Estimator (TF 1.15: TF 2.16 removed tf.estimator): clean, or NEVER_UPDATED;
- NaN / inf planted after correct training (Model.fit; slim's create_train_op): BAD_VARIANCE on
  exactly the planted layers, never TRAINED_IN_INFERENCE_MODE (issue 21). The learning-phase bug
  itself stays TRAINED_IN_INFERENCE_MODE (test_doctor_real.py).

The expected verdicts come from what each case did, and the expected values from the
checkpoints' own tensors, never from the doctor."""
import math

import numpy as np
import pytest

import pattern_models
from bn_decay_probe.doctor import (BAD_VARIANCE, NEVER_UPDATED, TRAINED_IN_INFERENCE_MODE,
                                   UNSHARED_BRANCHES, diagnose_checkpoint)
from checkpoint_files import tensors
from conftest import backend_name, doctor_cli


def by_layer(diagnosis):
    found = {}
    for finding in diagnosis.findings:
        found.setdefault(finding.layer, []).append(finding)
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory, real_model):
    """name -> what pattern_models built, once per module."""
    cache = {}

    def get(name, *args, **options):
        key = (name,) + args + tuple(sorted(options.items()))
        if key not in cache:
            directory = str(tmp_path_factory.mktemp(name))
            if name == "frozen":
                cache[key] = pattern_models.frozen(args[0], real_model(args[0], "correct"),
                                                   directory)
            else:
                cache[key] = getattr(pattern_models, name)(*args, directory=directory,
                                                           **options)
        return cache[key]

    return get


# ---------------------------------------------------------------------------- the blog's cond

@pytest.mark.parametrize("api", pattern_models.APIS)
def test_unshared_test_branch_of_the_blogs_cond(built, api):
    case = built("blog", api)
    d = diagnose_checkpoint(case.prefix)
    assert len(case.copies) == len(case.trained) == len(pattern_models.CHANNELS)
    assert {name: [(f.code, f.detail) for f in found] for name, found in by_layer(d).items()} \
        == {copy: [(UNSHARED_BRANCHES, "copy of: %s" % trained)]
            for copy, trained in zip(case.copies, case.trained)}
    assert d.status == "findings" and d.not_checked == ()
    fix = d.findings[0].fix
    assert "reuse=tf.AUTO_REUSE" in fix and "the same tf.keras layer object" in fix


@pytest.mark.parametrize("api", pattern_models.APIS)
def test_the_blogs_cond_with_reuse_is_clean(built, api):
    case = built("blog", api, share=True)
    d = diagnose_checkpoint(case.prefix)
    assert (d.status, d.findings, d.not_checked) == ("clean", (), ())
    assert [s.name for s in d.layers] == list(case.trained)


# ---------------------------------------------------------------------------- frozen on purpose

@pytest.mark.parametrize("model", ["slim_resnet_v1_50", "keras_mobilenet_v2"])
def test_frozen_batch_norm_is_clean_with_a_note(built, real_model, model):
    prefix = built("frozen", model)
    pretrained = tensors(real_model(model, "correct").saver_prefix)
    stored = tensors(prefix)
    statistics = [key for key in stored if key.endswith(("/moving_mean", "/moving_variance"))]
    # The premise: inference mode left the pretrained statistics as they were, away from (0, 1).
    assert statistics and all(np.array_equal(stored[key], pretrained[key]) for key in statistics)
    layers = {key.rpartition("/")[0] for key in statistics}
    assert not any(np.abs(stored[layer + "/moving_mean"]).max() <= 1e-6 and
                   np.abs(stored[layer + "/moving_variance"] - 1).max() <= 1e-6
                   for layer in layers)
    for decay in (None, 0.999):
        d = diagnose_checkpoint(prefix, decay=decay)
        assert (d.status, d.findings, d.not_checked) == ("clean", (), ())
        assert all(s.frozen for s in d.layers)
        (note,) = [n for n in d.notes if "frozen" in n]
        assert note.startswith("%d layer(s) frozen: the train step runs them in inference mode"
                               % len(layers))
        assert "restored from" in note and "PARTLY_CONVERGED" in note


def test_frozen_cli_exits_0(built):
    out = doctor_cli(built("frozen", "keras_mobilenet_v2"))
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.startswith("clean: no finding in 52 batch-norm layer(s)")


# ------------------------------------------------------------------------------ two train ops

def test_two_train_ops_name_each_cause_and_fix(built):
    prefix = built("two_train_ops")
    values = tensors(prefix)
    d = diagnose_checkpoint(prefix)
    found = by_layer(d)
    assert len(d.layers) == 52 and set(found) == {s.name for s in d.layers}
    assert all(len(findings) == 1 for findings in found.values())
    for summary in d.layers:
        (finding,) = found[summary.name]
        stored = [values[summary.name + "/moving_mean"], values[summary.name + "/moving_variance"]]
        if any(np.isnan(v).any() for v in stored):
            # TF 1.15's fused kernel fed uninitialized batch statistics in inference mode: only
            # the train op that runs the updates with the learning phase unset leaves NaN.
            assert finding.code == TRAINED_IN_INFERENCE_MODE
            assert "train step: GradientDescent_1" in finding.detail
        else:
            assert np.array_equal(stored[0], 0 * stored[0]) and np.all(stored[1] == 1)
            assert finding.code == NEVER_UPDATED
            assert "2 train steps (GradientDescent, GradientDescent_1)" in finding.explanation
            assert "with GradientDescent, " in finding.explanation
            assert "the Keras learning phase was never set" in finding.explanation
            assert finding.fix.startswith("if you run GradientDescent: run model.updates")
            assert "if you run GradientDescent_1: set the learning phase" in finding.fix
    if backend_name() == "tf2":  # no NaN there: one group, one explanation
        assert {f.code for f in d.findings} == {NEVER_UPDATED}


# ---------------------------------------------------------------------------------- estimator

@pytest.mark.skipif(backend_name() == "tf2", reason="TF 2.16 removed tf.estimator")
@pytest.mark.parametrize("forgot", [False, True], ids=["correct", "forgot_update_ops"])
def test_estimator(built, forgot):
    d = diagnose_checkpoint(built("estimator", forgot=forgot))
    assert d.steps.source == "global_step" and d.steps.value == 6
    if forgot:
        assert [(f.layer, f.code) for f in d.findings] == [("batch_normalization",
                                                             NEVER_UPDATED)]
        assert "the train step does not run the update ops" in d.findings[0].explanation
    else:  # decay 0.5 over 6 steps: 0.0156 of the initial values left, below 0.05
        assert (d.status, d.not_checked) == ("clean", ())


# ------------------------------------------------------------------- NaN planted after training

PLANTED = {"keras_mobilenet_v2": {"bn_Conv1/moving_variance": {0: math.nan, 3: math.nan},
                                  "block_1_expand_BN/moving_mean": {5: math.inf}},
           "slim_resnet_v1_50": {
               "resnet_v1_50/conv1/BatchNorm/moving_variance": {0: math.nan, 3: math.nan},
               "resnet_v1_50/block1/unit_1/bottleneck_v1/conv1/BatchNorm/moving_mean":
                   {5: math.inf}}}


@pytest.mark.parametrize("model, how", [("keras_mobilenet_v2", "Model.fit"),
                                        ("slim_resnet_v1_50", "create_train_op")])
def test_non_finite_values_after_correct_training_are_bad_variance(built, real_model,
                                                                   tmp_path, model, how):
    source = (real_model(model, "correct").saver_prefix if how == "Model.fit" else
              built("slim_create_train_op"))
    assert diagnose_checkpoint(source).clean
    prefix = pattern_models.plant(source, str(tmp_path), PLANTED[model])
    d = diagnose_checkpoint(prefix)
    layers = {key.rpartition("/")[0]: key for key in PLANTED[model]}
    assert [(f.layer, f.code, f.severity) for f in d.findings] == [
        (layer, BAD_VARIANCE, "error") for layer in layers]
    details = {f.layer: f.detail for f in d.findings}
    channels = {s.name: s.channels for s in d.layers}
    mean_layer, variance_layer = (key.rpartition("/")[0] for key in sorted(
        PLANTED[model], key=lambda k: k.endswith("moving_variance")))
    assert details[variance_layer] == "moving_variance has 2 NaN of %d channels" % channels[
        variance_layer]
    assert details[mean_layer] == "moving_mean has 1 inf of %d channels" % channels[mean_layer]
    assert "training in inference mode" in d.findings[0].fix  # the causes that remain
