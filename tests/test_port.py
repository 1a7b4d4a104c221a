"""``bn-decay-probe port`` on both backends: the name map's formats, the pairing rules, the
numbers of one pair's check against hand computations, bad input in one line before any
framework loads, and a TF checkpoint ported to another TF checkpoint (TensorFlow only: this runs
on TF 1.15 too), clean, with a variance converted by n/(n-1), and without the .meta that holds
epsilon and decay (exit 3). The real conversions to PyTorch and ONNX: test_port_real.py.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bn_decay_probe import ProbeConfigError, check_port
from bn_decay_probe.checkpoints.batch_norm import DECAY, ONE_MINUS_DECAY, LayerFile, record
from bn_decay_probe.port import checks, mapping, pairing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
    script = os.path.join(os.path.dirname(sys.executable), "bn-decay-probe")
    return subprocess.run([script, "port"] + list(args), cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          env=dict(os.environ, PYTHONPATH=ROOT))


# ------------------------------------------------------------------------------- the map

@pytest.mark.parametrize("text", [
    '{"net/conv1/BatchNorm/gamma": "bn1.weight", "net/fc/weights": "fc.weight"}',
    '[["net/conv1/BatchNorm/gamma", "bn1.weight"], ["net/fc/weights", "fc.weight"]]',
    "# slim -> torchvision\nnet/conv1/BatchNorm/gamma  bn1.weight\n\n"
    "net/fc/weights fc.weight  # fc\n",
])
def test_map_files_json_or_two_columns(tmp_path, text):
    path = tmp_path / "map"
    path.write_text(text)
    assert mapping.load(str(path)) == [("net/conv1/BatchNorm/gamma", "bn1.weight"),
                                      ("net/fc/weights", "fc.weight")]


@pytest.mark.parametrize("text, message", [
    ("a b c\n", "line 1: expected two names (source target), got 3"),
    ("{not json", "is not valid JSON"),
    ('{"a": 1}', "entry 1 is not a pair of two names: ('a', 1)"),
    ("# nothing\n", "holds no name pair"),
])
def test_bad_map_files_are_one_line(tmp_path, text, message):
    path = tmp_path / "map"
    path.write_text(text)
    with pytest.raises(ProbeConfigError) as error:
        mapping.load(str(path))
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("name, layer", [
    ("resnet_v1_50/conv1/BatchNorm/moving_variance", "resnet_v1_50/conv1/BatchNorm"),
    ("resnet_v1_50/conv1/BatchNorm/moving_variance:0", "resnet_v1_50/conv1/BatchNorm"),
    ("layer_with_weights-3/gamma/.ATTRIBUTES/VARIABLE_VALUE", "layer_with_weights-3"),
    ("layer1.0.bn1.running_var", "layer1.0.bn1"), ("bn1.num_batches_tracked", "bn1"),
    ("layer1.0.bn1", "layer1.0.bn1"), ("conv1.weights", "conv1.weights"),
])
def test_a_variables_name_gives_its_layer(name, layer):
    assert mapping.layer_name(name) == layer


# --------------------------------------------------------------------------- the pairing

def _file(names_channels, ordered=True):
    layers = tuple(record(name, np.arange(c, dtype=float) + i, np.ones(c))
                   for i, (name, c) in enumerate(names_channels))
    return LayerFile("f", "test", layers, ordered)


def _pairs(found, source, target):
    return [(source.layers[s].name, target.layers[t].name, how) for s, t, how in found.pairs]


def test_pairing_by_distinctive_name_then_order():
    source = _file([("bn_Conv1", 16), ("block_1_expand_BN", 48), ("a", 8), ("b", 24)])
    target = _file([("net/bn_Conv1/FusedBatchNormV3", 16), ("net/block_1_expand_BN/BN", 48),
                    ("x.0", 8), ("x.1", 24)])
    found = pairing.pair(source, target, None)
    assert _pairs(found, source, target) == [
        ("bn_Conv1", "net/bn_Conv1/FusedBatchNormV3", "name"),
        ("block_1_expand_BN", "net/block_1_expand_BN/BN", "name"),
        ("a", "x.0", "order"), ("b", "x.1", "order")]
    assert found.unpaired == ()


def test_a_layer_missing_by_order_is_unpaired_when_unambiguous():
    source = _file([("a", 16), ("b", 32), ("c", 64), ("d", 32)])
    target = _file([("w", 16), ("x", 32), ("y", 32)])  # c (64) is the one missing
    found = pairing.pair(source, target, None)
    assert _pairs(found, source, target) == [("a", "w", "order"), ("b", "x", "order"),
                                             ("d", "y", "order")]
    assert found.unpaired == (("source", 2, "no layer of the target pairs with it"),)


@pytest.mark.parametrize("source, target, message", [
    ([("a", 64), ("b", 64), ("c", 64)], [("x", 64), ("y", 64)],
     "the source has 1 batch-norm layer(s) more than the other side, and which one is "
     "ambiguous (c has as many channels as its neighbours)"),
    ([("a", 256), ("b", 64), ("c", 64), ("d", 256)], [("w", 64), ("x", 64), ("y", 256),
                                                      ("z", 256)],
     "have channel counts in another order ([256, 64, 64, 256] in the source, "
     "[64, 64, 256, 256] in the target)"),
])
def test_ambiguous_pairing_is_refused_asking_for_a_map(source, target, message):
    with pytest.raises(ProbeConfigError) as error:
        pairing.pair(_file(source), _file(target), None)
    assert message in str(error.value)
    assert str(error.value).endswith("give --map FILE with their names in pairs")


def test_unordered_sides_pair_by_name_or_ask_for_a_map():
    source = _file([("net/b/BatchNorm", 8), ("net/a/BatchNorm", 8)], ordered=False)
    same = _file([("net/a/BatchNorm", 8), ("net/b/BatchNorm", 8)], ordered=False)
    assert _pairs(pairing.pair(source, same, None), source, same) == [
        ("net/b/BatchNorm", "net/b/BatchNorm", "name"),
        ("net/a/BatchNorm", "net/a/BatchNorm", "name")]
    other = _file([("x", 8), ("y", 8)])
    with pytest.raises(ProbeConfigError, match="keeps no network order"):
        pairing.pair(source, other, None)


def test_the_map_pairs_by_layer_or_variable_names():
    source = _file([("net/conv1/BatchNorm", 8), ("net/conv2/BatchNorm", 8)])
    target = _file([("bn2", 8), ("bn1", 8)])
    given = [("net/conv1/BatchNorm/gamma", "bn1.weight"),
             ("net/conv1/BatchNorm/moving_mean", "bn1.running_mean"),
             ("net/conv2/BatchNorm", "bn9"), ("net/conv1/weights", "conv1.weight")]
    found = pairing.pair(source, target, given)
    assert _pairs(found, source, target) == [("net/conv1/BatchNorm", "bn1", "map")]
    assert found.unpaired == (
        ("source", 1, "the map pairs it with bn9, which the target does not have"),
        ("target", 0, "no layer of the source pairs with it"))
    assert found.ignored == 1
    with pytest.raises(ProbeConfigError, match="pairs source layer net/conv1/BatchNorm with "
                                               "both bn1 and bn2"):
        pairing.pair(source, target, [("net/conv1/BatchNorm", "bn1"),
                                      ("net/conv1/BatchNorm", "bn2")])


# --------------------------------------------------------------------- one pair's numbers

def _layer(name, mean, variance, **fields):
    return record(name, np.asarray(mean, float), np.asarray(variance, float), **fields)


def test_epsilon_and_momentum_findings_with_their_numbers():
    variance = np.array([1e-4, 1.0, 100.0])
    source = _layer("s", [0.5, -1.0, 2.0], variance, gamma=np.ones(3), beta=np.zeros(3),
                    epsilon=1e-3, momentum=0.997, convention=DECAY)
    target = _layer("t", [0.5, -1.0, 2.0], variance, gamma=np.ones(3), beta=np.zeros(3),
                    epsilon=1e-5, momentum=0.997, convention=ONE_MINUS_DECAY)
    pair, found = checks.check_pair(source, target, "name", [source])
    assert [f.code for f in found] == ["EPSILON_MISMATCH", "MOMENTUM_NOT_INVERTED"]
    # Only epsilon differs: the output is x-mean over sqrt(v + eps) times gamma, so per channel
    # it changes by the factor sqrt((v + 1e-3) / (v + 1e-5)) - 1, largest in channel 0 (on the
    # channel whose outputs are largest: all are normal draws here).
    factor = np.sqrt((variance + 1e-3) / (variance + 1e-5)) - 1
    assert dict(pair.differences)["epsilon"] == pytest.approx(
        dict(pair.differences)["inference"])
    assert 0.5 * factor[0] < dict(pair.differences)["epsilon"] <= factor[0]
    assert found[1].detail == "source decay 0.997: expected momentum 0.003, got 0.997"


def test_a_variance_converted_by_n_over_n_minus_1_is_named():
    source = _layer("s", [1.0, 2.0], [3.0, 4.0], epsilon=1e-3, gamma=np.ones(2),
                    beta=np.zeros(2))
    target = _layer("t", [1.0, 2.0], np.array([3.0, 4.0]) * 256 / 255, epsilon=1e-3,
                    gamma=np.ones(2), beta=np.zeros(2))
    _, found = checks.check_pair(source, target, "name", [source])
    assert [f.code for f in found] == ["STATISTICS_MISMATCH"]
    assert "x 1.00392 = n/(n-1) for n = 256: a biased <-> unbiased conversion" in found[0].detail


def test_statistics_not_copied_and_kept_ones_within_float32():
    source = _layer("s", [1.0, 2.0], [3.0, 4.0], epsilon=1e-3, gamma=np.ones(2),
                    beta=np.zeros(2))
    fresh = _layer("t", [0.0, 0.0], [1.0, 1.0], epsilon=1e-3, gamma=np.ones(2),
                   beta=np.zeros(2))
    assert [f.code for f in checks.check_pair(source, fresh, "name", [source])[1]] == [
        "STATISTICS_NOT_COPIED"]
    copied = _layer("t", np.float32([1.0, 2.0]), np.float32([3.0, 4.0]),
                    epsilon=float(np.float32(1e-3)), gamma=np.ones(2), beta=np.zeros(2))
    pair, found = checks.check_pair(source, copied, "name", [source])
    assert found == [] and pair.inference_difference < 1e-7


# ------------------------------------------------------------------- bad input, one line

@pytest.mark.parametrize("args, message", [
    (["missing.ckpt", "missing.pt"], "checkpoint missing.ckpt not found"),
    (["README.md", "missing.pt"], "target missing.pt not found"),
    (["README.md", "model.keras"], "target model.keras not found"),
    (["README.md", "README.md", "--target-momentum", "1.5"],
     "target momentum must be a number in [0, 1], got 1.5"),
    (["README.md", "README.md", "--target-eps", "0"],
     "epsilon must be a finite number > 0, got 0.0"),
    (["README.md", "README.md", "--map", "missing.json"], "--map missing.json cannot be read"),
])
def test_bad_input_is_one_line_before_any_framework(args, message):
    out = subprocess.run([sys.executable, "-c", (
        "import sys\nfor m in ('tensorflow', 'torch', 'onnx'):\n    sys.modules[m] = None\n"
        "from bn_decay_probe.cli import main\nsys.exit(main(%r, 'bn-decay-probe'))"
        % (["port"] + args,))], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("bn-decay-probe port: error: ") and message in out.stderr
    assert out.stderr.count("\n") == 1


# --------------------------------------------------------- a TF checkpoint to a TF checkpoint

def _save_copy(source, target, meta, change=None):
    """The checkpoint ``source`` written again under ``target`` (a TF-to-TF port), with
    ``change(tensors)`` applied; with ``meta`` the .meta beside it is copied too."""
    from bn_decay_probe import backend

    with backend.quiet() as tf1:
        reader = tf1.train.NewCheckpointReader(source)
        tensors = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}
        if change:
            change(tensors)
        graph = tf1.Graph()
        with graph.as_default():
            variables = [tf1.Variable(v, name=k) for k, v in sorted(tensors.items())]
            saver = tf1.train.Saver(variables)
            with tf1.Session(graph=graph) as session:
                session.run(tf1.global_variables_initializer())
                saver.save(session, target, write_meta_graph=False)
    if meta:
        shutil.copy(source + ".meta", target + ".meta")
    return target


@pytest.fixture(scope="module")
def slim(real_model):
    return real_model("slim_resnet_v1_50", "too_few_steps")


def test_tf_to_tf_clean_converted_and_without_meta(slim, tmp_path):
    layer = "resnet_v1_50/block1/unit_1/bottleneck_v1/conv2/BatchNorm"
    copy = _save_copy(slim.saver_prefix, str(tmp_path / "copy"), meta=True)
    check = check_port(slim.saver_prefix, copy)
    assert check.clean and len(check.pairs) == 53
    assert {p.paired_by for p in check.pairs} == {"name"}

    def bessel(tensors):
        tensors[layer + "/moving_variance"] = tensors[layer + "/moving_variance"] * 32 / 31.0

    converted = _save_copy(slim.saver_prefix, str(tmp_path / "converted"), True, bessel)
    check = check_port(slim.saver_prefix, converted)
    assert [(f.code, f.layer) for f in check.findings] == [("STATISTICS_MISMATCH", layer)]
    assert "= n/(n-1) for n = 32: a biased <-> unbiased conversion" in check.findings[0].detail
    # Without the .meta: epsilon and decay are nowhere, so the verdict cannot be "clean".
    bare = _save_copy(slim.saver_prefix, str(tmp_path / "bare"), meta=False)
    out = _cli(slim.saver_prefix, bare, "--json", str(tmp_path / "check.json"))
    assert out.returncode == 3, out.stderr
    text = " ".join(out.stdout.split())
    assert text.startswith("INCOMPLETE: no finding in 53 batch-norm layer pair(s)")
    assert ("not checked: epsilon of 53 layer pair(s): the target (TF checkpoint) stores none "
            "(a TF checkpoint keeps them in its .meta graph, and it has none)") in text
    data = json.loads((tmp_path / "check.json").read_text())
    assert data["status"] == "incomplete" and data["target"]["epsilon"] == "none"
