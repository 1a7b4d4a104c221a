"""Damaged Keras and port files, on every command that reads them (TF 2.21 with the frameworks
installed): a Keras 3 ``.keras`` and ``.weights.h5``, a tf_keras ``.h5`` model, a PyTorch state
dict, a ``.safetensors`` file and an ONNX model, each damaged as tests/test_fault_injection.py
damages checkpoints (cut at 1 byte, at half, by its last byte; emptied; seeded bit flips; a
directory in its place) and read by ``doctor``, ``repair`` and ``port`` through
``bn_decay_probe.cli.main`` (an exception escaping it is a traceback, which fails the case).

Each case ends in exit 2 with one line naming the damaged file and nothing on stdout -- or,
where a flipped bit leaves the file readable (a byte in a zip entry's date, an unused HDF5
byte), in the command's normal outcome without a word on stderr; the input files are
byte-identical afterwards and nothing is left at --out unless the repair succeeded."""
import contextlib
import io
import os
import shutil

import numpy as np
import pytest

from conftest import backend_name
from test_fault_injection import FAULTS, _content, _files, damage

pytestmark = pytest.mark.skipif(
    backend_name() != "tf2", reason="Keras files and the port's formats are read on TF 2.x")

ALWAYS_FOUND = ("cut at 1 byte", "cut at half", "cut by 1 byte", "empty", "a directory")
NORMAL = {"doctor": (0, 1, 3), "repair": (0,), "port": (0, 1, 3)}
# (command, damaged file, the command's arguments; {d}: the case's directory)
COMMANDS = [
    ("doctor", "model.keras", ["doctor", "{d}/model.keras"]),
    ("doctor", "model.weights.h5", ["doctor", "{d}/model.weights.h5", "--decay", "0.99",
                                    "--steps", "2"]),
    ("doctor", "legacy.h5", ["doctor", "{d}/legacy.h5"]),
    ("repair", "model.keras", ["repair", "{d}/model.keras", "--data", "{d}/data.npy", "--out",
                               "{d}/fixed.keras", "--quiet"]),
    ("repair", "legacy.h5", ["repair", "{d}/legacy.h5", "--data", "{d}/data.npy", "--out",
                             "{d}/fixed.h5", "--quiet"]),
    ("repair", "data.npy", ["repair", "{d}/model.keras", "--data", "{d}/data.npy", "--out",
                            "{d}/fixed.keras", "--quiet"]),
    ("port", "model.keras", ["port", "{d}/model.keras", "{d}/model.pt"]),
    ("port", "model.pt", ["port", "{d}/model.keras", "{d}/model.pt"]),
    ("port", "model.safetensors", ["port", "{d}/model.keras", "{d}/model.safetensors"]),
    ("port", "model.onnx", ["port", "{d}/model.keras", "{d}/model.onnx"]),
]
CASES = [(command, name, fault) for command, name, _ in COMMANDS for fault in FAULTS]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A conv + batch-norm model trained one epoch by Keras 3 and by tf_keras, and its port
    to PyTorch written three ways."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("safetensors")
    import keras
    import tf_keras
    from safetensors.torch import save_file

    directory = str(tmp_path_factory.mktemp("source"))
    rng = np.random.RandomState(3)
    x, y = rng.rand(16, 8, 8, 3).astype("float32"), rng.rand(16, 4).astype("float32")
    for module in (keras, tf_keras):
        inputs = module.Input((8, 8, 3))
        hidden = module.layers.Conv2D(4, 3, name="conv")(inputs)
        hidden = module.layers.BatchNormalization(name="bn")(hidden)
        model = module.Model(inputs, module.layers.GlobalAveragePooling2D()(hidden))
        model.compile("sgd", "mse")
        model.fit(x, y, epochs=1, verbose=0)
        if module is keras:
            model.save(os.path.join(directory, "model.keras"))
            model.save_weights(os.path.join(directory, "model.weights.h5"))
        else:
            model.save(os.path.join(directory, "legacy.h5"))
    np.save(os.path.join(directory, "data.npy"), rng.rand(8, 8, 8, 3).astype("float32"))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4, eps=1e-3,
                                                                            momentum=0.01))
    torch.save(net.state_dict(), os.path.join(directory, "model.pt"))
    save_file(dict(net.state_dict()), os.path.join(directory, "model.safetensors"))
    torch.onnx.export(net.eval(), torch.randn(1, 3, 8, 8), os.path.join(directory, "model.onnx"),
                      dynamo=False)
    return directory


@pytest.mark.parametrize("command, name, fault", CASES,
                         ids=["%s-%s-%s" % case for case in CASES])
def test_damaged_file(source, tmp_path, command, name, fault):
    from bn_decay_probe.cli import main

    case = str(tmp_path / "case")
    shutil.copytree(source, case)
    target = os.path.join(case, name)
    damage(target, fault)
    before = {path: _content(path) for path in _files(case)}
    argv = [arg.format(d=case) for arg in dict(((c, n), a) for c, n, a in COMMANDS)[
        command, name]]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(argv, prog="bn-decay-probe")  # an exception fails the test
    left = sorted(os.listdir(case))
    after = {path: _content(path) for path in _files(case) if "fixed" not in path}
    assert before == after, "an input file changed"
    if status == 2:
        lines = stderr.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bn-decay-probe"), stderr.getvalue()
        assert name in lines[0]
        assert stdout.getvalue() == ""
    else:
        assert fault not in ALWAYS_FOUND, "damage not found: exit %s, %r" % (
            status, stdout.getvalue()[:200])
        assert status in NORMAL[command] and stderr.getvalue() == ""
    if command == "repair" and status != 0:
        assert sorted(os.listdir(source)) == left  # no copy, no temporary
