"""TensorFlow and PyTorch in one process: importing triton (torchvision, onnx2torch and
torch.optim load it) after TensorFlow >= 2.20 kills the process (tensorflow/tensorflow#124205).
The package imports each of them so that this cannot happen whichever comes first
(bn_decay_probe/imports.py), and a pytest run mixing TF tests and torchvision tests, as this
suite is, does not crash."""
import os
import subprocess
import sys

import pytest

from bn_decay_probe import imports
from conftest import backend_name

pytestmark = pytest.mark.skipif(
    backend_name() != "tf2" or not imports.installed("torch")
    or not imports.installed("torchvision"), reason="needs TensorFlow 2.x, torch, torchvision")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCHVISION = ("import torch, torchvision\n"
               "torch.optim.SGD([torch.zeros(1, requires_grad=True)], 0.1)\n"
               "torchvision.models.resnet18(weights=None)\n")


def _run(code):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)


@pytest.mark.parametrize("first", [
    "from bn_decay_probe import backend\nbackend.tensorflow()\n",  # TF through the package
    # TF by the user, then the package's PyTorch
    "import tensorflow\nfrom bn_decay_probe import probe\nprobe(0.9, api='torch')\n",
    # the package's PyTorch first, then TF through the package
    "from bn_decay_probe import probe\nprobe(0.9, api='torch')\nprobe(0.9)\n",
])
def test_either_order_through_the_package_survives_torchvision(first):
    out = _run(first + TORCHVISION + "print('alive')")
    assert out.returncode == 0 and out.stdout.strip().endswith("alive"), out.stderr[-2000:]


def test_a_pytest_run_mixing_tensorflow_and_torchvision_tests(pytester):
    """Collected in this order, a TF test and then a torchvision test: the package's TF import
    keeps the run alive; the same run importing TF directly dies (the bug this guards against,
    skipped where the installed TensorFlow no longer has it)."""
    pytester.makepyfile(test_a_tf="""
        from bn_decay_probe import probe

        def test_tf():
            assert probe(0.9).config.api == "contrib"
        """, test_b_torch="""
        def test_torchvision():
            %s
        """ % TORCHVISION.replace("\n", "\n            "))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    assert result.ret == 0, result.outlines[-20:]
    result.assert_outcomes(passed=2)
    (pytester.path / "test_a_tf.py").write_text(
        "import tensorflow\n\ndef test_tf():\n    assert tensorflow.constant(1).numpy() == 1\n")
    crashed = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    if crashed.ret == 0:
        pytest.skip("this TensorFlow no longer crashes when triton loads after it")
    assert crashed.ret < 0 or crashed.ret > 128  # killed by a signal (SIGSEGV)
