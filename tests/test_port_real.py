"""``bn-decay-probe port`` / check_port() on real conversions (tests/port_models.py): tf-slim
resnet_v1_50 mapped onto torchvision's resnet50 by a name map, and Keras MobileNetV2 through
tf2onnx and onnx2torch. Each correct port is clean (and really keeps the model's output); each
bug users shipped, planted one at a time, is caught with its code on the layers it touched.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bn_decay_probe import check_port, imports
from conftest import backend_name, too_wide
import port_models

pytestmark = [
    pytest.mark.skipif(backend_name() != "tf2", reason="the conversions need TensorFlow 2.x"),
    pytest.mark.skipif(bool(imports.missing(["torch", "onnx"], "the port's real conversions")),
                       reason=str(imports.missing(["torch", "onnx"],
                                                  "the port's real conversions"))),
]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE = {"momentum_not_inverted": "MOMENTUM_NOT_INVERTED",
        "epsilon_left_at_default": "EPSILON_MISMATCH",
        "statistics_not_copied": "STATISTICS_NOT_COPIED",
        "statistics_swapped": "STATISTICS_MISMATCH", "layer_missing": "UNPAIRED_LAYER"}


@pytest.fixture(scope="module")
def ports(real_model, tmp_path_factory):
    """name -> (Port, check_port's keyword arguments for it), with .pt/.safetensors files."""
    import safetensors.torch
    import torch

    directory = str(tmp_path_factory.mktemp("ports"))
    resnet = port_models.resnet_port(real_model("slim_resnet_v1_50", "too_few_steps"),
                                     directory)
    mobilenet = port_models.mobilenet_port(real_model("keras_mobilenet_v2", "too_few_steps"),
                                           directory)
    for name, port in (("resnet", resnet), ("mobilenet", mobilenet)):
        torch.save(port.state_dict, os.path.join(directory, name + ".pt"))
        safetensors.torch.save_file({k: v.contiguous() for k, v in port.state_dict.items()},
                                    os.path.join(directory, name + ".safetensors"))
    return {"resnet": (resnet, {"mapping": resnet.map_path}), "mobilenet": (mobilenet, {}),
            "directory": directory,
            "mobilenet_weights": real_model("keras_mobilenet_v2", "too_few_steps").weights_prefix}


def _findings(check):
    return {(f.code, f.layer) for f in check.findings}


@pytest.mark.parametrize("name", ["resnet", "mobilenet"])
def test_the_correct_port_is_clean(ports, name):
    port, kwargs = ports[name]
    check = check_port(port.source, port.module, **kwargs)
    assert check.status == "clean" and check.clean and not check.findings, _findings(check)
    assert len(check.pairs) == len(port.layers) == {"resnet": 53, "mobilenet": 52}[name]
    assert {p.paired_by for p in check.pairs} == {"map" if name == "resnet" else "name"}
    targets = [p.target for p in check.pairs]  # in the source's network order
    assert sorted(targets) == sorted(port.layers)
    if name == "mobilenet":  # the same order on both sides
        assert targets == list(port.layers)
    assert check.largest_difference <= 1e-7
    for pair in check.pairs:  # read from the .meta graph: the net's own values
        assert pair.source_decay == pytest.approx(port.decay, abs=1e-7)
        assert pair.source_epsilon == pytest.approx(port.epsilon, rel=1e-6)
    data = json.loads(json.dumps(check.to_dict(), allow_nan=False))
    assert data["status"] == "clean" and len(data["pairs"]) == len(port.layers)


def test_a_clean_port_keeps_the_models_output(ports):
    """What "clean" promises, measured on the models themselves: the onnx2torch module the port
    check finds clean gives the Keras model's output."""
    import torch

    port = ports["mobilenet"][0]
    x = np.random.RandomState(0).normal(0.5, 1.0, (4, 32, 32, 3)).astype(np.float32)
    keras = np.asarray(port.keras_model(x, training=False))
    with torch.no_grad():
        ported = port.module(torch.from_numpy(x)).numpy()
    assert np.abs(ported - keras).max() / np.abs(keras).max() < 1e-5


@pytest.mark.parametrize("bug", port_models.BUGS)
@pytest.mark.parametrize("name", ["resnet", "mobilenet"])
def test_each_planted_bug_is_caught_with_its_code(ports, name, bug):
    port, kwargs = ports[name]
    module, _, touched = port_models.planted(port, bug)
    check = check_port(port.source, module, **kwargs)
    assert check.status == "findings"
    assert {f.code for f in check.findings} == {CODE[bug]}
    pairs = {p.target: p for p in check.pairs if p.target}
    if bug == "layer_missing":
        missing = [p for p in check.pairs if p.target is None]
        assert len(missing) == 1 and missing[0].codes == ("UNPAIRED_LAYER",)
        assert len(pairs) == len(port.layers) - 1 and touched[0] not in pairs
        return
    flagged = sorted(name for name, p in pairs.items() if p.codes)
    assert flagged == sorted(touched)
    severity = {f.severity for f in check.findings}
    assert severity == ({"warning"} if bug == "momentum_not_inverted" else {"error"})
    if bug == "statistics_swapped":  # each says whose statistics it holds
        details = " ".join(f.detail for f in check.findings)
        assert details.count("holds source layer") == 2


def test_the_onnx_export_keeps_everything_but_the_momentum(ports):
    """tf2onnx writes no momentum attribute, so ONNX's default 0.9 stands for Keras's 0.999;
    the statistics and epsilon are kept."""
    port = ports["mobilenet"][0]
    check = check_port(port.source, port.onnx_path)
    assert {f.code for f in check.findings} == {"MOMENTUM_MISMATCH"}
    assert len(check.findings) == 52 and check.target.momentum == "default"
    assert check.largest_difference <= 1e-7
    assert "got 0.9 (the format's default" in check.findings[0].detail
    # onnx2torch's module as it comes: momentum 0.1, 1 - ONNX's default
    fresh = port_models.planted(port, "statistics_not_copied")[0]
    for m in fresh.modules():
        if hasattr(m, "momentum") and hasattr(m, "running_var"):
            m.momentum = 0.1
    codes = {f.code for f in check_port(port.source, fresh).findings}
    assert codes == {"MOMENTUM_MISMATCH", "STATISTICS_NOT_COPIED"}


def test_files_of_the_port(ports):
    """The state dict and safetensors files hold no epsilon or momentum: given, the port is
    clean; not given, epsilon is PyTorch's default and momentum is not checked (exit 3)."""
    directory = ports["directory"]
    resnet, kwargs = ports["resnet"]
    for suffix in (".pt", ".safetensors"):
        target = os.path.join(directory, "resnet" + suffix)
        check = check_port(resnet.source, target, target_eps=1e-5, target_momentum=0.003,
                           **kwargs)
        assert check.clean, _findings(check)
        check = check_port(resnet.source, target, **kwargs)
        assert check.status == "incomplete" and not check.findings
        assert check.not_checked[0].startswith("momentum of 53 layer pair(s): the target")
        assert check.target.epsilon == "assumed 1e-05 (PyTorch's default)"
    mobilenet = ports["mobilenet"][0]
    check = check_port(mobilenet.source, os.path.join(directory, "mobilenet.pt"),
                       target_momentum=0.001)
    assert {f.code for f in check.findings} == {"EPSILON_MISMATCH"}  # 1e-3 vs assumed 1e-5
    # A live Keras model as the source: its layers' own epsilon and momentum.
    assert check_port(mobilenet.keras_model, mobilenet.module).clean


def test_keras_files_and_keras_3_as_the_source(ports, tmp_path):
    """The Keras model saved as users save it (tf_keras .keras and .h5; Keras 3 .keras with the
    same weights), and its object checkpoint, against the onnx2torch port."""
    import keras

    port = ports["mobilenet"][0]
    paths = [str(tmp_path / "tf_keras.keras"), str(tmp_path / "tf_keras.h5")]
    for path in paths:
        port.keras_model.save(path)
    keras3 = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35,
                                            classes=port_models.CLASSES)
    keras3.set_weights(port.keras_model.get_weights())
    paths.append(str(tmp_path / "keras3.keras"))
    keras3.save(paths[-1])
    for path in paths:
        check = check_port(path, port.module)
        assert check.clean, (path, _findings(check), check.not_checked)
        assert {p.paired_by for p in check.pairs} == {"name"} and len(check.pairs) == 52
    planted = port_models.planted(port, "momentum_not_inverted")[0]
    assert {f.code for f in check_port(paths[0], planted).findings} == {
        "MOMENTUM_NOT_INVERTED"}
    # save_weights' object checkpoint holds no epsilon or momentum: the verdict says so.
    check = check_port(ports["mobilenet_weights"], port.module)
    assert check.status == "incomplete" and not check.findings
    assert "an object checkpoint keeps only variables" in check.not_checked[0]


def test_a_state_dict_missing_a_layer_and_with_swapped_names(ports, tmp_path):
    import torch

    resnet, kwargs = ports["resnet"]
    state = dict(resnet.state_dict)
    for key in [k for k in state if k.startswith("layer2.1.bn2.")]:
        del state[key]
    state["layer1.0.bn1.running_var"], state["layer1.1.bn1.running_var"] = \
        state["layer1.1.bn1.running_var"], state["layer1.0.bn1.running_var"]
    path = str(tmp_path / "broken.pt")
    torch.save(state, path)
    check = check_port(resnet.source, path, target_eps=1e-5, target_momentum=0.003, **kwargs)
    assert sorted((f.code, f.layer) for f in check.findings) == [
        ("STATISTICS_MISMATCH",
         "resnet_v1_50/block1/unit_1/bottleneck_v1/conv1/BatchNorm -> layer1.0.bn1"),
        ("STATISTICS_MISMATCH",
         "resnet_v1_50/block1/unit_2/bottleneck_v1/conv1/BatchNorm -> layer1.1.bn1"),
        ("UNPAIRED_LAYER", "resnet_v1_50/block2/unit_2/bottleneck_v1/conv2/BatchNorm")]


def _cli(*args):
    """The installed console script, as users run it."""
    script = os.path.join(os.path.dirname(sys.executable), "bn-decay-probe")
    return subprocess.run([script, "port"] + list(args), cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          env=dict(os.environ, PYTHONPATH=ROOT))


def test_cli_end_to_end(ports):
    resnet, _ = ports["resnet"]
    target = os.path.join(ports["directory"], "resnet.pt")
    common = [resnet.source, target, "--map", resnet.map_path, "--target-eps", "1e-5"]
    out = _cli(*common, "--target-momentum", "0.997")
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == ("FINDINGS: 53 finding(s) in 53 batch-norm layer pair(s): "
                        "MOMENTUM_NOT_INVERTED x53")
    assert "MOMENTUM_NOT_INVERTED (warning), 53 layer(s): all" in lines
    assert too_wide(out.stdout) == []
    out = _cli(*common, "--target-momentum", "0.003", "--json", "-")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["status"] == "clean"
    assert data["target"]["momentum"] == "given 0.003 (PyTorch's: 1 - decay)"
    out = _cli(resnet.source, target, "--target-momentum", "0.003")  # no map
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("bn-decay-probe port: error: cannot pair by network order and "
                                 "channel counts: ")
    assert out.stderr.rstrip().endswith("give --map FILE with their names in pairs")
