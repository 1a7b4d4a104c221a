"""recalibrate_checkpoint() and `bn-decay-probe repair` on small checkpoints written by
tf.compat.v1.train.Saver (with their .meta): the copy's statistics equal numpy over the layers'
inputs, every other tensor is bit-identical, the input files are byte-identical afterwards, the
doctor is clean on the copy; bad inputs fail in one line with exit status 2 and write nothing."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from bn_decay_probe import ProbeConfigError, backend, diagnose_checkpoint
from bn_decay_probe.checkpoints import meta
from bn_decay_probe.repair import writer
from bn_decay_probe.checkpoints.reader import MARKER_KEY
from bn_decay_probe.repair import recalibrate_checkpoint
from checkpoint_files import digest, tensors
from conftest import too_wide

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (6, 6, 3)


def build_and_save(directory, inputs=1, switches=1, batch=None, norm=True, saver_keys=None):
    """conv nets trained 3 SGD steps on seeded data with the update ops forgotten (moving
    statistics stay 0 and 1), saved with a Saver and its .meta; returns the prefix."""
    with backend.quiet() as tf1:
        layers = backend.v1_layers()
        graph = tf1.Graph()
        with graph.as_default():
            tf1.set_random_seed(0)
            xs = [tf1.placeholder("float32", (batch,) + SHAPE, name="x%d" % i if i else "x")
                  for i in range(inputs)]
            flags = [tf1.placeholder_with_default(False, [], name="is_training%s" % (i or ""))
                     for i in range(switches)]
            labels = tf1.placeholder("float32", (batch, 1), name="labels")
            h = sum(xs[1:], xs[0])
            for index in range(2):
                if norm:
                    h = backend.batch_norm()(
                        h, is_training=flags[index % len(flags)] if flags else True,
                        scope="block%d/BatchNorm" % index, updates_collections=None
                        if not flags else tf1.GraphKeys.UPDATE_OPS, scale=True)
                h = tf1.nn.relu(layers.conv2d(h, 4, 3, padding="same",
                                              name="block%d/conv" % index),
                                name="block%d/relu" % index)
            logits = layers.dense(layers.flatten(h), 1, name="logits")
            loss = tf1.losses.mean_squared_error(labels, logits)
            step = tf1.train.get_or_create_global_step()
            train = tf1.train.GradientDescentOptimizer(0.01).minimize(loss, global_step=step)
            init = tf1.global_variables_initializer()
            saver = tf1.train.Saver(saver_keys(tf1) if saver_keys else None)
        with tf1.Session(graph=graph) as session:
            session.run(init)
            rs = np.random.RandomState(0)
            for _ in range(3):
                feed = {x: rs.normal(3.0, 2.0, (batch or 8,) + SHAPE) for x in xs}
                feed.update({f: True for f in flags})
                feed[labels] = rs.normal(size=(batch or 8, 1))
                session.run(train, feed)  # UPDATE_OPS forgotten
            return saver.save(session, os.path.join(str(directory), "model.ckpt"),
                              global_step=step)


def data(rows=40, seed=1):
    return np.random.RandomState(seed).normal(3.0, 2.0, (rows,) + SHAPE).astype(np.float32)


def layer_inputs_reference(prefix, batches, names=("block0/BatchNorm", "block1/BatchNorm")):
    """Mean and population variance of each layer's input over all batches, every layer in
    training mode: the graph imported anew, its BN input tensors fetched, numpy does the rest."""
    with backend.quiet() as tf1:
        graph = tf1.Graph()
        with graph.as_default():
            saver = tf1.train.import_meta_graph(prefix + ".meta")
        inputs = {"block0/BatchNorm": "x:0", "block1/BatchNorm": "block0/relu:0"}
        with tf1.Session(graph=graph) as session:
            saver.restore(session, prefix)
            fetched = [session.run([inputs[n] for n in names],
                                   {"x:0": b, "is_training:0": True}) for b in batches]
    result = {}
    for index, name in enumerate(names):
        flat = np.concatenate([np.float64(f[index]).reshape(-1, f[index].shape[-1])
                               for f in fetched])
        result[name] = (flat.mean(axis=0), flat.var(axis=0))
    return result


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_and_save(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def repaired(model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("repaired")
    np.save(directory / "data.npy", data())
    before = digest(model)
    out = str(directory / "fixed")
    result = recalibrate_checkpoint(model, str(directory / "data.npy"), out, batch_size=16)
    return model, out, before, result, directory


def test_statistics_equal_numpy_over_the_layer_inputs(repaired):
    model, out, _, result, _ = repaired
    rows = data()
    reference = layer_inputs_reference(model, [rows[:16], rows[16:32], rows[32:]])
    copy = tensors(out)
    for name, (mean, variance) in reference.items():
        np.testing.assert_allclose(copy[name + "/moving_mean"], mean, rtol=1e-5,
                                   atol=1e-6 * np.sqrt(variance.max()))
        np.testing.assert_allclose(copy[name + "/moving_variance"], variance, rtol=1e-5)
        assert result.layer(name).values == 40 * 6 * 6 and result.layer(name).batches == 3
    assert (result.batches, result.rows) == (3, 40)
    assert result.inputs == ("x:0",) and result.switches == ("is_training:0",)


def test_every_other_tensor_is_bit_identical(repaired):
    model, out, _, result, _ = repaired
    original, copy = tensors(model), tensors(out)
    assert set(copy) == set(original) | {MARKER_KEY}
    stats = {"%s/%s" % (layer.name, short) for layer in result.repaired
             for short in ("moving_mean", "moving_variance")}
    assert len(stats) == 4
    for key, value in original.items():
        if key in stats:
            assert not np.array_equal(copy[key], value)
        else:
            assert copy[key].dtype == value.dtype and copy[key].tobytes() == value.tobytes(), key
    marker = json.loads(np.asarray(copy[MARKER_KEY]).item())
    assert marker["layers"] == ["block0/BatchNorm", "block1/BatchNorm"]
    assert marker["batches"] == 3 and marker["variance"] == "population"


def test_input_files_untouched_and_copy_complete(repaired):
    model, out, before, _, directory = repaired
    assert digest(model) == before  # same bytes, same modification times
    names = sorted(os.listdir(str(directory)))
    assert names == ["checkpoint", "data.npy", "fixed.data-00000-of-00001", "fixed.index",
                     "fixed.meta"]
    # The state file names the copy, as tf.train.Saver writes one: its directory is a
    # checkpoint directory.
    with backend.quiet() as tf1:
        assert tf1.train.latest_checkpoint(str(directory)) == out
    assert diagnose_checkpoint(str(directory)).path == out
    with open(model + ".meta", "rb") as a, open(out + ".meta", "rb") as b:
        assert a.read() == b.read()


def test_doctor_finds_nothing_after_repair(repaired):
    model, out, _, _, _ = repaired
    codes = {f.code for f in diagnose_checkpoint(model).findings}
    assert codes == {"NEVER_UPDATED"}
    after = diagnose_checkpoint(out)
    # 3 steps at decay 0.999 would be PARTLY_CONVERGED by step count, but the repair's marker
    # says the statistics are the data's
    assert after.clean, after.findings
    assert any("2 layer(s) recalibrated from data" in note for note in after.notes)
    assert after.not_checked == ()


def test_doctor_still_judges_the_layers_a_repair_left_out(model, tmp_path):
    np.save(tmp_path / "d.npy", data(16))
    out = str(tmp_path / "half")
    recalibrate_checkpoint(model, str(tmp_path / "d.npy"), out, layers=["block1/BatchNorm"])
    findings = {(f.layer, f.code) for f in diagnose_checkpoint(out).findings}
    assert findings == {("block0/BatchNorm", "NEVER_UPDATED")}
    copy = tensors(out)
    marker = json.loads(np.asarray(copy[MARKER_KEY]).item())
    assert marker["keys"] == ["block1/BatchNorm/moving_mean", "block1/BatchNorm/moving_variance"]


def test_check_says_the_statistics_now_fit(repaired):
    """The check ran on all 40 rows; each layer's error equals the formula of check.py applied
    to numpy's statistics of its input in inference mode (the graph imported anew, the copy
    restored), and the repair brought it down."""
    model, out, _, result, _ = repaired
    assert (result.check.batches, result.check.rows, result.check.all_data) == (3, 40, True)
    inputs = {"block0/BatchNorm": "x:0", "block1/BatchNorm": "block0/relu:0"}
    with backend.quiet() as tf1:
        graph, saver = meta.import_graph(tf1, out)
        with tf1.Session(graph=graph) as session:
            saver.restore(session, out)
            fetched = session.run(inputs, {"x:0": data(), "is_training:0": False})
    copy = tensors(out)
    for name, values in fetched.items():
        flat = np.float64(values).reshape(-1, values.shape[-1])
        own_mean, own_variance = flat.mean(axis=0), flat.var(axis=0)
        mean, variance = copy[name + "/moving_mean"], copy[name + "/moving_variance"]
        scale, own_scale = np.sqrt(variance + 1e-3), np.sqrt(own_variance + 1e-3)
        expected = np.sqrt(np.mean(((own_mean - mean) / scale) ** 2 +
                                   own_variance * (1 / scale - 1 / own_scale) ** 2))
        layer = result.layer(name)
        assert layer.error_after == pytest.approx(expected, rel=1e-3, abs=1e-6)
        assert layer.error_after < 0.01 * layer.error_before
    assert result.worst_error(True)[1] < 0.01 * result.worst_error(False)[1]


def test_saver_with_other_key_names(tmp_path):
    """A Saver that stores variables under other names: the copy replaces the right keys."""
    def renamed(tf1):
        return {"saved/" + v.op.name: v for v in tf1.global_variables()}

    model = build_and_save(tmp_path, saver_keys=renamed)
    np.save(tmp_path / "d.npy", data(24))
    result = recalibrate_checkpoint(model, str(tmp_path / "d.npy"), str(tmp_path / "out"))
    copy, original = tensors(str(tmp_path / "out")), tensors(model)
    assert "saved/block0/BatchNorm/moving_mean" in copy
    assert not np.array_equal(copy["saved/block0/BatchNorm/moving_mean"],
                              original["saved/block0/BatchNorm/moving_mean"])
    np.testing.assert_allclose(copy["saved/block1/BatchNorm/moving_variance"],
                               result.layer("block1/BatchNorm").variance_after, rtol=1e-6)


def test_fixed_batch_input_leaves_the_remainder_out(tmp_path):
    model = build_and_save(tmp_path, batch=8)
    np.save(tmp_path / "d.npy", data(20))
    result = recalibrate_checkpoint(model, str(tmp_path / "d.npy"), str(tmp_path / "out"))
    assert (result.batches, result.rows) == (2, 16)
    assert any("4 row(s) at the end of the data left out" in note for note in result.notes)
    with pytest.raises(ProbeConfigError, match="takes batches of exactly 8 rows"):
        recalibrate_checkpoint(model, str(tmp_path / "d.npy"), str(tmp_path / "out2"),
                               batch_size=5)


def test_a_failed_write_leaves_nothing(repaired, monkeypatch, tmp_path):
    model = repaired[0]
    np.save(tmp_path / "d.npy", data(16))

    def broken(*args):
        raise ProbeConfigError("simulated failure while checking the copy")

    monkeypatch.setattr(writer, "_verify", broken)
    with pytest.raises(ProbeConfigError, match="simulated failure"):
        recalibrate_checkpoint(model, str(tmp_path / "d.npy"), str(tmp_path / "out"))
    assert sorted(os.listdir(str(tmp_path))) == ["d.npy"]


def test_output_shapes_hints_are_dropped_when_refused(tmp_path, monkeypatch):
    """The fallback import: a .meta whose _output_shapes an importer refuses is imported again
    without those hints (they are hints only: TF infers shapes itself)."""
    model = build_and_save(tmp_path)
    calls = []
    real = meta._import

    def picky(tf1, meta):
        shapes = sum("_output_shapes" in node.attr for node in meta.graph_def.node)
        calls.append(shapes)
        if shapes:
            raise ValueError("Node 'gradients/x' has an _output_shapes attribute inconsistent "
                             "with the GraphDef for output #0")
        return real(tf1, meta)

    monkeypatch.setattr(meta, "_import", picky)
    with backend.quiet() as tf1:
        graph, saver = meta.import_graph(tf1, model)
    assert calls[0] > 0 and calls[1] == 0
    assert graph.get_tensor_by_name("x:0") is not None and saver is not None


# ------------------------------------------------------------------------------------ CLI

def cli(*args):
    return subprocess.run([sys.executable, "-m", "bn_decay_probe", "repair", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, cwd=ROOT)


def test_cli_writes_the_copy_and_reports(model, tmp_path):
    np.savez(tmp_path / "d.npz", a=data(10, 3), b=data(7, 4), c=data(12, 5))
    before = digest(model)
    done = cli(model, "--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "fixed"),
               "--json", str(tmp_path / "r.json"), "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert too_wide(done.stdout) == []  # not a terminal: 100 columns, long lines wrapped
    head = " ".join(line.strip() for line in lines[:lines.index("")])
    assert head.startswith("checkpoint %s -> %s | input x:0 | switch is_training:0 | 3 batch(es), "
                           "29 row(s) done: recalibrated 2 of 2 batch-norm layer(s) from 3 "
                           "batch(es)" % (model, tmp_path / "fixed"))
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["out"] == str(tmp_path / "fixed") and document["rows"] == 29
    assert [l["values"] for l in document["layers"]] == [29 * 36, 29 * 36]
    assert digest(model) == before
    reference = layer_inputs_reference(model, [data(10, 3), data(7, 4), data(12, 5)])
    np.testing.assert_allclose(tensors(str(tmp_path / "fixed"))["block1/BatchNorm/moving_variance"],
                               reference["block1/BatchNorm"][1], rtol=1e-5)


def test_cli_json_to_stdout(model, tmp_path):
    np.save(tmp_path / "d.npy", data(20))
    done = cli(model, "--data", str(tmp_path / "d.npy"), "--out", str(tmp_path / "o"),
               "--json", "-", "--max-batches", "1", "--batch-size", "8", "--check-batches",
               "0")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert (document["batches"], document["rows"], document["check"]) == (1, 8, None)
    assert "the check was turned off" in " ".join(document["notes"])
    assert "statistics not checked (see notes)" in document["verdict"]


@pytest.mark.parametrize("json_flag", [[], ["--json", "-"]], ids=["text", "json"])
def test_cli_a_closed_pipe_ends_quietly(model, tmp_path, json_flag):
    """A reader that has gone (``| head``) ends the repair with 141, as SIGPIPE ends a filter,
    and no traceback; the copy is complete, since the report is written after it."""
    np.save(tmp_path / "d.npy", data(16))
    process = subprocess.Popen(
        [sys.executable, "-m", "bn_decay_probe", "repair", model, "--data",
         str(tmp_path / "d.npy"), "--out", str(tmp_path / "o"), "--quiet"] + json_flag,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, cwd=ROOT)
    process.stdout.close()
    stderr = process.stderr.read()
    process.wait()
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert process.returncode == 141
    assert "block0/BatchNorm/moving_mean" in tensors(str(tmp_path / "o"))


@pytest.fixture(scope="module")
def odd_models(tmp_path_factory):
    """Checkpoints the repair must refuse: two inputs, two switches, no batch norm."""
    return {kind: build_and_save(tmp_path_factory.mktemp(kind), **kwargs)
            for kind, kwargs in (("two_inputs", {"inputs": 2}), ("two_switches",
                                                                   {"switches": 2}),
                                 ("no_norm", {"norm": False}))}


def test_cli_bad_inputs_fail_in_one_line(model, odd_models, tmp_path):
    """Each bad input: exit 2, one line on stderr, nothing on stdout, nothing written. Most fail
    before TensorFlow loads; the NaN batch and the ambiguous input after."""
    good = tmp_path / "d.npy"
    np.save(good, data(8))
    nan = data(8)
    nan[3, 1, 1, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    (tmp_path / "bare.index").write_bytes(b"")
    out = str(tmp_path / "out")
    cases = [
        ((model, "--data", str(good), "--out", model), "is the input checkpoint"),
        ((model + ".index", "--data", str(good), "--out", model), "is the input checkpoint"),
        ((str(tmp_path / "bare"), "--data", str(good), "--out", out), "has no .meta file"),
        ((str(tmp_path / "nothing"), "--data", str(good), "--out", out), "not found"),
        ((model, "--data", str(tmp_path / "missing.npy"), "--out", out), "data .* not found"),
        ((model, "--data", str(good), "--out", out, "--batch-size", "0"),
         "--batch-size must be a positive integer"),
        ((model, "--data", str(good), "--out", out, "--check-batches", "-1"),
         "--check-batches must be >= 0"),
        ((model, "--data", str(good), "--out", str(tmp_path / "no" / "out")),
         "does not exist"),
        ((model, "--data", str(good), "--out", str(tmp_path)), "is a directory"),
        ((model, "--data", str(good)), "the following arguments are required: --out"),
        ((model, "--data", str(tmp_path / "nan.npy"), "--out", out), "batch 0 holds 1 NaN"),
        ((odd_models["two_inputs"], "--data", str(good), "--out", out),
         r"depend on 2 float placeholders \(x1:0, x:0\); name the input with --input"),
    ]
    for args, message in cases:
        done = cli(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and " repair: error: " in lines[0], done.stderr
        assert re.search(message, lines[0]), (message, lines[0])
    assert sorted(os.listdir(str(tmp_path))) == ["bare.index", "d.npy", "nan.npy"]


def test_bad_graphs_and_data_are_refused(model, odd_models, tmp_path):
    good = tmp_path / "d.npy"
    np.save(good, data(8))
    np.save(tmp_path / "wrong.npy", np.zeros((8, 5, 5, 3), np.float32))
    out = str(tmp_path / "out")
    cases = [
        ((model, str(tmp_path / "wrong.npy")), {},
         r"batch 0 has shape \(8, 5, 5, 3\); the input x:0 takes \(\?, 6, 6, 3\)"),
        ((model, str(good)), {"inputs": "labels"},
         r"inputs labels:0 does not feed any batch-norm layer; the layers depend on x:0"),
        ((model, str(good)), {"training": "labels"}, "the training switch is a boolean scalar"),
        ((model, str(good)), {"inputs": "nope:3"}, "the graph has no tensor nope:3"),
        ((odd_models["two_switches"], str(good)), {},
         r"2 boolean placeholders \(is_training1:0, is_training:0\); name the training "
         r"switch with training"),
        ((odd_models["no_norm"], str(good)), {}, "has no batch-norm layer"),
        ((model, [np.zeros((2, 6, 6, 3))]), {"max_batches": 0}, "max_batches must be"),
    ]
    for (checkpoint, batches), kwargs, message in cases:
        with pytest.raises(ProbeConfigError, match=message):
            recalibrate_checkpoint(checkpoint, batches, out, **kwargs)
    assert sorted(os.listdir(str(tmp_path))) == ["d.npy", "wrong.npy"]


def test_cli_refuses_an_existing_output_unless_overwrite(model, tmp_path):
    np.save(tmp_path / "d.npy", data(8))
    recalibrate_checkpoint(model, str(tmp_path / "d.npy"), str(tmp_path / "o"))
    with pytest.raises(ProbeConfigError, match="already holds a checkpoint"):
        recalibrate_checkpoint(model, str(tmp_path / "d.npy"), str(tmp_path / "o"))
    again = cli(model, "--data", str(tmp_path / "d.npy"), "--out", str(tmp_path / "o"))
    assert again.returncode == 2 and "already holds a checkpoint" in again.stderr
    forced = cli(model, "--data", str(tmp_path / "d.npy"), "--out", str(tmp_path / "o"),
                 "--overwrite")
    assert forced.returncode == 0, forced.stderr
    assert sorted(os.listdir(str(tmp_path))) == ["checkpoint", "d.npy", "o.data-00000-of-00001",
                                                 "o.index", "o.meta"]
