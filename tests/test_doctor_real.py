"""The doctor on real model code (tests/real_models.py: tf-slim resnet_v1_50 and Keras
MobileNetV2 trained a few steps with a planted problem), with and without --decay, on the
tf.train.Saver checkpoint (with its .meta graph) and on Keras's save_weights checkpoint. The
expected verdicts come from what each case did (the table below), the expected numbers from the
update rule; never from the doctor's own output."""
import functools
import json
import re

import pytest

from bn_decay_probe.doctor import (NEVER_UPDATED, PARTLY_CONVERGED, TRAINED_IN_INFERENCE_MODE,
                                   UNSHARED_BRANCHES, diagnose_checkpoint, render_diagnosis)
from conftest import doctor_cli, too_wide
from real_models import CASES, CI_MODELS
from test_terminal_width import on_a_terminal

THRESHOLD = 0.05

# What each case must give on a Saver checkpoint with its .meta graph, with or without --decay:
# the code every trained layer gets (None: no finding), and the code of the untrained copy.
SAVER_EXPECTED = {"correct": None, "forgot_update_ops": NEVER_UPDATED,
                  "too_few_steps": PARTLY_CONVERGED, "inference_mode": TRAINED_IN_INFERENCE_MODE,
                  "unshared_copy": None}


@functools.lru_cache(maxsize=None)
def diagnosed(prefix, decay):
    return diagnose_checkpoint(prefix, decay=decay)


def by_layer(diagnosis):
    found = {}
    for finding in diagnosis.findings:
        found.setdefault(finding.layer, set()).add(finding.code)
    return found


@pytest.mark.parametrize("with_decay", [False, True], ids=["graph-decay", "given-decay"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("model", CI_MODELS)
def test_saver_checkpoint_verdict(real_model, model, case, with_decay):
    trained = real_model(model, case)
    d = diagnosed(trained.saver_prefix, trained.decay if with_decay else None)
    expected = SAVER_EXPECTED[case]
    found = by_layer(d)
    assert {name: found.get(name, set()) for name in trained.bn_layers} == {
        name: {expected} if expected else set() for name in trained.bn_layers}
    assert {name: found.get(name) for name in trained.copy_layers} == {
        name: {UNSHARED_BRANCHES} for name in trained.copy_layers}
    assert d.status == ("clean" if expected is None and not trained.copy_layers else "findings")
    assert d.not_checked == ()
    # Step count from the checkpoint's own counter; layers in network order (the graph's).
    assert (d.steps.value, d.steps.source) == (trained.steps, trained.step_variable)
    assert [s.name for s in d.layers] == list(trained.bn_layers + trained.copy_layers)
    trained_summaries = [s for s in d.layers if s.name in trained.bn_layers]
    if with_decay:
        assert {(s.decay, s.decay_source) for s in trained_summaries} == {(trained.decay,
                                                                           "given")}
    elif case == "inference_mode" and model.startswith("slim"):
        # is_training=False builds no update op, so the graph holds no decay.
        assert {(s.decay, s.decay_source) for s in trained_summaries} == {(None, "unknown")}
    else:
        assert {s.decay_source for s in trained_summaries} == {"graph"}
        for s in trained_summaries:
            assert s.decay == pytest.approx(trained.decay, abs=1e-6)
    if case == "too_few_steps":
        weight = trained.decay ** trained.steps  # e.g. 0.999**4 = 0.996
        assert weight > THRESHOLD
        assert d.findings[0].explanation.startswith(
            "%.6g**%d = %.4g of each moving statistic" % (trained.decay, trained.steps, weight))
    if case == "inference_mode" and model.startswith("keras"):
        assert "learning phase was never set" in d.findings[0].explanation
        assert "K.learning_phase(): 1" in d.findings[0].fix


@pytest.mark.parametrize("with_decay", [False, True], ids=["no-decay", "given-decay"])
@pytest.mark.parametrize("case", CASES)
def test_keras_save_weights_verdict(real_model, case, with_decay):
    """save_weights writes no graph: without --decay convergence cannot be checked, and the
    verdict must say so instead of "clean"."""
    trained = real_model("keras_mobilenet_v2", case)
    d = diagnosed(trained.weights_prefix, trained.decay if with_decay else None)
    keras_names = [trained.keras_names[name] for name in trained.bn_layers]
    # Object-checkpoint keys mapped back to the layers' names, in network order.
    assert [s.name for s in d.layers] == keras_names
    assert all(s.checkpoint_name.startswith("layer_with_weights-") for s in d.layers)
    fit = case in ("correct", "too_few_steps", "unshared_copy")  # Model.fit counts steps
    assert (d.steps.value, d.steps.source) == ((trained.steps, "optimizer/iter") if fit
                                               else (None, None))
    codes = {code for found in by_layer(d).values() for code in found}
    if case == "forgot_update_ops":
        assert codes == {NEVER_UPDATED} and len(d.findings) == len(keras_names)
    elif case == "inference_mode":
        # Without the graph the cause is not known; every layer is still flagged: (0, 1), or NaN
        # where TF 1.15's fused kernel fed uninitialized batch statistics.
        assert codes <= {NEVER_UPDATED, "BAD_VARIANCE"} and len(d.findings) == len(keras_names)
    elif case == "too_few_steps" and with_decay:
        assert codes == {PARTLY_CONVERGED} and len(d.findings) == len(keras_names)
    elif with_decay:
        assert d.status == "clean"
    else:
        assert d.status == "incomplete" and d.findings == ()
        assert d.not_checked == ("convergence (PARTLY_CONVERGED) of %d layer(s): decay unknown "
                                 "(no .meta graph beside the checkpoint); give --decay D"
                                 % len(keras_names),)
        assert render_diagnosis(d).splitlines()[0] == (
            "INCOMPLETE: no finding in %d batch-norm layer(s), but not everything was checked"
            % len(keras_names))


@pytest.mark.parametrize("model", CI_MODELS)
def test_grouped_output_of_a_real_model(real_model, model):
    trained = real_model(model, "forgot_update_ops")
    text = render_diagnosis(diagnosed(trained.saver_prefix, None))
    lines = text.splitlines()
    count = len(trained.bn_layers)
    assert lines[0] == "FINDINGS: %d finding(s) in %d batch-norm layer(s): NEVER_UPDATED x%d" % (
        count, count, count)
    assert "NEVER_UPDATED (error), %d layer(s): all" % count in lines
    assert text.count("fix: ") == 1  # one explanation and one fix for the whole group
    assert len(lines) < 15 and too_wide(text) == []
    verbose = render_diagnosis(diagnosed(trained.saver_prefix, None), verbose=True).splitlines()
    assert len(verbose) > count and too_wide("\n".join(verbose)) == []


def test_cli_on_real_checkpoints(real_model, tmp_path):
    few = real_model("keras_mobilenet_v2", "too_few_steps")
    out = doctor_cli(few.saver_prefix, "--json", str(tmp_path / "d.json"))
    assert (out.returncode, out.stderr) == (1, "")
    assert out.stdout.splitlines()[0] == ("FINDINGS: 52 finding(s) in 52 batch-norm layer(s): "
                                          "PARTLY_CONVERGED x52")
    assert too_wide(out.stdout) == []
    document = json.loads((tmp_path / "d.json").read_text())
    assert len(document["layers"]) == 52 and len(document["findings"]) == 52
    assert document["layers"][0]["decay_source"] == "graph"
    assert document["steps"] == {"value": 4, "source": "training/SGD/iter",
                                 "candidates": [["training/SGD/iter", 4]]}
    # save_weights: no graph, no decay -> exit 3, "not checked" right under the verdict.
    out = doctor_cli(real_model("keras_mobilenet_v2", "correct").weights_prefix)
    assert out.returncode == 3 and out.stdout.splitlines()[1].startswith("not checked: ")
    out = doctor_cli(real_model("slim_resnet_v1_50", "correct").saver_prefix, "--steps", "2")
    assert out.returncode == 1 and "0.5**2 = 0.25 " in out.stdout  # --steps overrides


@pytest.mark.parametrize("model, case, mode, switch", [
    ("slim_resnet_v1_50", "correct", "training", None),
    ("slim_resnet_v1_50", "inference_mode", "inference", None),
    ("keras_mobilenet_v2", "correct", "switched", ("keras_learning_phase:0", False, True)),
])
def test_graph_reader_on_an_imported_meta_graph(real_model, model, case, mode, switch):
    """What the repair builds on: the layers of a .meta graph, their variables, and the switch
    their conds test."""
    from bn_decay_probe import backend
    from bn_decay_probe.doctor import graph_reader

    trained = real_model(model, case)
    with backend.quiet() as tf1:
        graph = tf1.Graph()
        with graph.as_default():
            tf1.train.import_meta_graph(trained.saver_prefix + ".meta")
        layers = graph_reader.find_batch_norm_layers(tf1, graph)
        roots = graph_reader.train_roots(tf1, graph)
    assert [layer.name for layer in layers] == list(trained.bn_layers)
    assert {layer.mode for layer in layers} == {mode}
    assert all(layer.variables["moving_mean"].op.name == layer.name + "/moving_mean"
               for layer in layers)
    assert {None if layer.switch is None else (layer.switch.name, layer.switch.default,
                                               layer.switch.keras_learning_phase)
            for layer in layers} == {switch}
    expected_kind = "tf.keras" if model.startswith("keras") else "contrib"
    assert {layer.kind for layer in layers} == {expected_kind}
    assert roots and all(layer.update_ops for layer in layers) == (mode != "inference")


def missing_whole(names, text):
    """The names that ``text`` does not hold whole (as a token: not inside a longer name)."""
    return [name for name in names
            if not re.search(r"(?<![\w/.-])%s(?![\w/.-])" % re.escape(name), text)]


@pytest.mark.parametrize("case", ["forgot_update_ops", "unshared_copy"])
@pytest.mark.parametrize("model", CI_MODELS)
def test_the_layer_table_holds_every_name_and_code_whole_at_every_width(real_model, model,
                                                                        case):
    """--verbose's table never cuts a layer name, a checkpoint key or a finding code: at 60,
    100 (a pipe) and 200 columns, on the Saver checkpoint and on Keras's save_weights one."""
    trained = real_model(model, case)
    # save_weights saves the one model it is called on, not the unshared copy.
    for prefix, names, codes in [
            (trained.saver_prefix, trained.bn_layers + trained.copy_layers,
             [NEVER_UPDATED if case == "forgot_update_ops" else UNSHARED_BRANCHES]),
            (trained.weights_prefix, trained.bn_layers, [])][:2 if trained.weights_prefix else 1]:
        d = diagnosed(prefix, None)
        keys = [s.checkpoint_name for s in d.layers if s.checkpoint_name]
        for width in (60, 100, 200):
            text = render_diagnosis(d, verbose=True, width=width)
            table = text[re.search(r"^layer\b", text, re.M).start():]
            assert missing_whole(list(names) + keys, table) == [], (prefix, width)
            assert missing_whole(codes, table) == []


def test_the_cli_table_follows_the_terminal_and_cuts_no_name(real_model):
    trained = real_model("slim_resnet_v1_50", "forgot_update_ops")
    piped = doctor_cli(trained.saver_prefix, "--verbose")
    assert piped.returncode == 1 and missing_whole(trained.bn_layers, piped.stdout) == []
    for columns in (60, 200):
        status, text = on_a_terminal(columns, "doctor", trained.saver_prefix, "--verbose")
        assert status == 1 and missing_whole(trained.bn_layers, text) == []
        rows = [line for line in text.splitlines() if line.startswith("resnet_v1_50/")]
        # 200 columns hold a row whole; 60 fold it, the name alone on its line.
        assert (rows[0].split()[-1] == NEVER_UPDATED) is (columns == 200)
