"""ProbeConfig: defaults, how inputs are held, and no TensorFlow at import. Every bad input and
its message is in test_bad_inputs.py."""
import subprocess
import sys

import numpy as np
import pytest

from bn_decay_probe import ProbeConfig

def test_defaults_draw_the_seed_input():
    config = ProbeConfig.create()
    assert (config.decay, config.shape, config.seed, config.fused, config.steps,
            config.epsilon, config.device) == (0.9, (1, 4, 4, 1), 0, None, 1, 1e-3, "auto")
    expected = np.random.RandomState(0).uniform(0, 255, (1, 4, 4, 1)).astype(np.float32)
    np.testing.assert_array_equal(config.inputs, expected)
    assert config.input_source == "seed"


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_inputs_are_held_as_float32(dtype):
    x = np.linspace(-3, 3, 8, dtype=np.float64).reshape(1, 2, 2, 2).astype(dtype)
    config = ProbeConfig.create(inputs=x)
    assert config.inputs.dtype == np.float32
    assert config.input_dtype == np.dtype(dtype).name
    np.testing.assert_array_equal(config.inputs, x.astype(np.float32))
    assert config.shape == (1, 2, 2, 2) and config.input_source == "given"


def test_inputs_are_copied_and_read_only():
    x = np.ones((1, 2, 2, 1), np.float32)
    config = ProbeConfig.create(inputs=x, shape=(1, 2, 2, 1))
    x[0, 0, 0, 0] = 5.0
    assert config.inputs[0, 0, 0, 0] == 1.0
    with pytest.raises(ValueError):
        config.inputs[0, 0, 0, 0] = 2.0


def test_importing_the_package_does_not_import_tensorflow():
    code = ("import sys, bn_decay_probe, bn_decay_probe.cli, bn_decay_probe.testing, "
            "bn_decay_probe.pytest_plugin; print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True)
    assert out.stdout.strip() == b"False"
