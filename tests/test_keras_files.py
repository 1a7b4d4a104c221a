"""Reading Keras files without TensorFlow or Keras (h5py, zipfile), and telling what a path is
(sniff): on both backends, with files written here by hand in the layouts Keras 3 and tf_keras
write (docs/doctor.md; real files: test_doctor_keras_files.py on TF 2.21). Nothing here imports
TensorFlow."""
import io
import json
import os
import pickle
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest

from bn_decay_probe import CheckpointError, diagnose_checkpoint
from bn_decay_probe.checkpoints import sniff
from bn_decay_probe.checkpoints.keras_files import read_keras_file
from bn_decay_probe.doctor import NEVER_UPDATED, TRAINED_IN_INFERENCE_MODE
from conftest import doctor_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stats(channels, seed):
    rs = np.random.RandomState(seed)
    return (rs.normal(size=channels).astype(np.float32),
            rs.uniform(0.5, 2.0, channels).astype(np.float32))


def bn_config(name, momentum=0.99, trainable=True, center=True, scale=True):
    return {"class_name": "BatchNormalization", "name": name,
            "config": {"name": name, "trainable": trainable, "momentum": momentum,
                       "epsilon": 0.001, "center": center, "scale": scale, "axis": -1,
                       "moving_mean_initializer": {}, "moving_variance_initializer": {}}}


def model_config():
    """A functional model: conv, bn (frozen), a nested Sequential 'block' (trainable=False as a
    whole) with a BN named like the outer one and one without center, then a BN of its own
    counter number 1 (the nested model counts its own)."""
    block = {"class_name": "Sequential", "name": "block", "config": {
        "name": "block", "trainable": False, "layers": [
            {"class_name": "InputLayer", "config": {"name": "block_input"}},
            bn_config("bn", momentum=0.9), bn_config("bn_nc", center=False)]}}
    return {"class_name": "Functional", "config": {
        "name": "net", "trainable": True, "layers": [
            {"class_name": "InputLayer", "config": {"name": "images"}},
            {"class_name": "Conv2D", "config": {"name": "conv"}},
            bn_config("bn", momentum=0.999, trainable=False), block,
            bn_config("last", momentum=0.5)]}}


# group in the weights -> (number of variables, statistics) in network order
V3_LAYERS = [("layers/batch_normalization", 4, stats(3, 1)),
             ("layers/sequential/layers/batch_normalization", 4, stats(3, 2)),
             ("layers/sequential/layers/batch_normalization_1", 3, stats(3, 3)),
             ("layers/batch_normalization_1", 4, stats(3, 4))]


def write_v3_weights(handle, names=True, inner_steps=None, steps=7):
    handle.create_group("vars").attrs["name"] = "net"
    handle.create_dataset("layers/conv/vars/0", data=np.ones((3, 3, 3, 3), np.float32))
    display = ["bn", "bn", "bn_nc", "last"]
    for (group, count, (mean, variance)), name in zip(V3_LAYERS, display):
        holder = handle.create_group(group + "/vars")
        if names:
            holder.attrs["name"] = name
        for index in range(count - 2):
            holder.create_dataset(str(index), data=np.full(3, 0.5, np.float32))
        holder.create_dataset(str(count - 2), data=mean)
        holder.create_dataset(str(count - 1), data=variance)
    optimizer = handle.create_group("optimizer/vars")
    optimizer.create_dataset("0", data=np.int64(steps))
    optimizer.create_dataset("1", data=np.float32(0.01))
    if inner_steps is not None:
        handle.create_dataset("optimizer/inner_optimizer/vars/0", data=np.int64(inner_steps))


def write_keras(path, compression=zipfile.ZIP_STORED, version="3.12.4", **options):
    weights = io.BytesIO()
    with h5py.File(weights, "w") as handle:
        write_v3_weights(handle, **options)
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": version}))
        archive.writestr("config.json", json.dumps(model_config()))
        archive.writestr("model.weights.h5", weights.getvalue())


def test_a_keras_file_in_network_order_with_its_config(tmp_path):
    path = str(tmp_path / "m.keras")
    write_keras(path, inner_steps=5, steps=0)  # a LossScaleOptimizer's own stays 0
    read = read_keras_file(path)
    assert (read.format, read.keras_version, read.framework, read.model_class,
            read.model_name) == ("keras", "3.12.4", "Keras 3", "Functional", "net")
    assert [(l.name, l.path, l.momentum, l.trainable) for l in read.layers] == [
        ("bn", "bn", 0.999, False), ("bn", "block/bn", 0.9, False),
        ("bn_nc", "block/bn_nc", 0.99, False), ("last", "last", 0.5, True)]
    for layer, (group, count, (mean, variance)) in zip(read.layers, V3_LAYERS):
        assert layer.mean.tobytes() == mean.tobytes() and layer.channels == 3
        assert layer.variance.tobytes() == variance.tobytes()
        assert layer.variance_key == "%s/vars/%d" % (group, count - 1)
    # The LossScaleOptimizer's counter is its inner optimizer's.
    assert (read.steps.value, read.steps.source) == (5, "optimizer/inner_optimizer/iterations")
    assert read.config and read.network_order and read.warnings == ()
    # A re-zipped (deflated) file reads the same.
    deflated = str(tmp_path / "d.keras")
    write_keras(deflated, zipfile.ZIP_DEFLATED)
    assert [l.mean.tobytes() for l in read_keras_file(deflated).layers] == \
        [l.mean.tobytes() for l in read.layers]


def test_weights_only_files_are_keyed_by_class(tmp_path):
    path = str(tmp_path / "m.weights.h5")
    with h5py.File(path, "w") as handle:
        write_v3_weights(handle, names=False)
        for number in (2, 10):  # h5py lists _10 before _2: numbers are ordered as numbers
            for index, value in enumerate(stats(3, number)):
                handle.create_dataset("layers/batch_normalization_%d/vars/%d" % (number, index),
                                      data=value)
    read = read_keras_file(path)
    assert [l.path for l in read.layers] == [
        "layers/batch_normalization", "layers/batch_normalization_1",
        "layers/batch_normalization_2", "layers/batch_normalization_10",
        "layers/sequential/layers/batch_normalization",
        "layers/sequential/layers/batch_normalization_1"]
    assert {(l.momentum, l.trainable) for l in read.layers} == {(None, None)}
    assert not read.config and not read.network_order  # a nested container: order unknown
    assert read.steps.value == 7


def test_legacy_h5_model_and_weights(tmp_path):
    config = {"class_name": "Functional", "config": {"name": "net", "layers": [
        bn_config("bn_a", momentum=0.9), {"class_name": "Functional", "name": "base", "config": {
            "name": "base", "trainable": False, "layers": [bn_config("bn_b")]}}]}}
    path = str(tmp_path / "m.h5")
    values = {"bn_a": stats(4, 5), "bn_b": stats(4, 6)}
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = json.dumps(config)
        handle.attrs["keras_version"] = "2.21.0"
        weights = handle.create_group("model_weights")
        weights.attrs["layer_names"] = [b"bn_a", b"base"]
        for group, layer in (("bn_a", "bn_a"), ("base", "bn_b")):
            names = ["%s/%s:0" % (layer, short) for short in ("moving_mean", "moving_variance")]
            weights.create_group(group).attrs["weight_names"] = [n.encode() for n in names]
            for name, value in zip(names, values[layer]):
                weights[group].create_dataset(name, data=value)
        optimizer = handle.create_group("optimizer_weights")
        optimizer.attrs["weight_names"] = [b"iteration:0"]
        optimizer.create_dataset("iteration:0", data=np.int64(4))
    read = read_keras_file(path)
    assert read.format == "h5" and read.framework == "tf_keras"
    assert [(l.name, l.path, l.momentum, l.trainable) for l in read.layers] == [
        ("bn_a", "bn_a", 0.9, True), ("bn_b", "base/bn_b", 0.99, False)]
    assert read.layers[1].mean_key == "model_weights/base/bn_b/moving_mean:0"
    assert read.layers[1].variance.tobytes() == values["bn_b"][1].tobytes()
    assert (read.steps.value, read.steps.source) == (4, "optimizer_weights/iteration")


def test_the_doctor_on_a_keras_file_needs_no_tensorflow(tmp_path):
    """Statistics at (0, 1) after 7 counted steps: frozen layers and the rest alike were
    trained in inference mode; the doctor reads it without importing TensorFlow."""
    path = str(tmp_path / "m.keras")
    weights = io.BytesIO()
    with h5py.File(weights, "w") as handle:
        write_v3_weights(handle)
        for group, count, _ in V3_LAYERS:
            handle[group + "/vars/%d" % (count - 2)][...] = 0.0
            handle[group + "/vars/%d" % (count - 1)][...] = 1.0
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.12.4"}))
        archive.writestr("config.json", json.dumps(model_config()))
        archive.writestr("model.weights.h5", weights.getvalue())
    code = ("import sys; from bn_decay_probe import diagnose_checkpoint as d; r = d(%r); "
            "print(r.status, sorted({f.code for f in r.findings}), len(r.layers), "
            "'tensorflow' in sys.modules)" % path)
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         universal_newlines=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.stdout.split() == ["findings", "['%s']" % TRAINED_IN_INFERENCE_MODE, "4",
                                  "False"]
    d = diagnose_checkpoint(path, steps=0)
    assert {f.code for f in d.findings} == {NEVER_UPDATED}


def onnx_bytes():
    # ModelProto: ir_version 8, producer_name "pytorch", graph {...}
    return b"\x08\x08\x12\x07pytorch\x1a\x032.1:\x0a\x0a\x04main\x12\x00"


def graphdef_bytes():
    node = b"\x0a\x01x\x12\x05Const"  # NodeDef: name "x", op "Const"
    return b"\x0a" + bytes([len(node)]) + node + b"\x22\x02\x08\x01"


@pytest.mark.parametrize("name, content, kind, what", [
    ("model.onnx", onnx_bytes(), sniff.OTHER, "an ONNX model"),
    ("frozen.pb", graphdef_bytes(), sniff.OTHER, "a frozen TensorFlow graph"),
    ("saved_model.pb", b"\x08\x01\x12\x04\x0a\x02\x08\x01", sniff.OTHER,
     "a SavedModel's saved_model.pb (give its directory)"),
    ("keras_metadata.pb", b"\x0a\x0a\x1a\x04root\x22\x02ab", sniff.OTHER,
     "a tf_keras SavedModel's keras_metadata.pb"),
    ("graph.pbtxt", b'node {\n  name: "x"\n}\n', sniff.OTHER, "a text GraphDef (.pbtxt)"),
    ("legacy.pt", b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little"),
     sniff.OTHER, "a PyTorch file (legacy torch.save)"),
    ("data.pkl", pickle.dumps({"a": 1}, protocol=2), sniff.OTHER, "a Python pickle"),
    ("broken.keras", b"PK\x03\x04" + b"\x00" * 40, sniff.OTHER, "a damaged zip file ("),
    ("model.tflite", b"\x1c\x00\x00\x00TFL3" + b"\x00" * 20, sniff.OTHER,
     "a TensorFlow Lite model"),
    ("notes.txt", b"hello\n", sniff.UNKNOWN, "a file of unknown kind"),
    ("model.keras", b"hello\n", sniff.OTHER, "neither a zip nor an HDF5 file"),
])
def test_sniff(tmp_path, name, content, kind, what):
    path = tmp_path / name
    path.write_bytes(content)
    found = sniff.sniff(str(path))
    assert found.kind == kind and found.what.startswith(what)


def test_sniff_zips_hdf5_numpy_and_directories(tmp_path):
    with zipfile.ZipFile(str(tmp_path / "model.pt"), "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("archive/version", b"3")
    np.save(str(tmp_path / "x.npy"), np.zeros(2))
    np.savez(str(tmp_path / "x.npz"), a=np.zeros(2))
    with h5py.File(str(tmp_path / "other.h5"), "w") as handle:
        handle.create_dataset("x", data=np.zeros(2))
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "saved_model.pb").write_bytes(b"\x08\x01")
    expected = {"model.pt": (sniff.OTHER, "a PyTorch file (torch.save)"),
                "x.npy": (sniff.OTHER, "a numpy array"),
                "x.npz": (sniff.OTHER, "a numpy .npz archive"),
                "other.h5": (sniff.OTHER, "an HDF5 file without Keras weights"),
                "saved": (sniff.SAVED_MODEL, "a SavedModel directory")}
    for name, (kind, what) in expected.items():
        found = sniff.sniff(str(tmp_path / name))
        assert found.kind == kind and found.what.startswith(what), name


def test_the_doctor_names_what_it_does_not_read(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_bytes())
    out = doctor_cli(str(path))
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == (
        "bn-decay-probe doctor: error: %s is an ONNX model; the doctor reads TensorFlow "
        "checkpoints (tf.train.Saver, tf.train.Checkpoint, save_weights), SavedModel "
        "directories, and Keras .keras, .weights.h5 and .h5 files\n" % path)
    truncated = tmp_path / "cut.keras"
    write_keras(str(truncated))
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(CheckpointError, match=r"cut.keras is a damaged zip file \("):
        diagnose_checkpoint(str(truncated))
