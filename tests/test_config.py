"""Argument validation: every bad input gives ProbeConfigError with one exact line, before
TensorFlow is involved."""
import subprocess
import sys

import numpy as np
import pytest

from bn_decay_probe import ProbeConfig, ProbeConfigError

BAD = [
    (dict(decay=1.5), "decay must be a number in [0, 1], got 1.5"),
    (dict(decay=-0.1), "decay must be a number in [0, 1], got -0.1"),
    (dict(decay=float("nan")), "decay must be a number in [0, 1], got nan"),
    (dict(decay="0.9"), "decay must be a number in [0, 1], got '0.9'"),
    (dict(decay=True), "decay must be a number in [0, 1], got True"),
    (dict(inputs=np.zeros((4, 4, 1), np.float32)),
     "inputs must be 4-D [N, H, W, C], got 3-D with shape (4, 4, 1)"),
    (dict(inputs=np.zeros((1, 2, 2, 1), np.int32)),
     "inputs must be a float array (float16, float32 or float64), got dtype int32"),
    (dict(inputs=np.array([[[[1.0], [np.nan]]]])), "inputs must be finite, got 1 NaN or inf value(s)"),
    (dict(inputs=np.full((1, 1, 2, 1), np.inf)), "inputs must be finite, got 2 NaN or inf value(s)"),
    (dict(inputs=np.zeros((0, 2, 2, 1))), "inputs must not be empty, got shape (0, 2, 2, 1)"),
    (dict(inputs=np.full((1, 1, 1, 1), 1e39)),
     "inputs must fit in float32 (|x| <= 3.403e+38), got max |x| = 1e+39"),
    (dict(inputs=np.zeros((1, 2, 2, 1)), shape=(1, 4, 4, 1)),
     "shape (1, 4, 4, 1) conflicts with inputs of shape (1, 2, 2, 1); pass one or the other"),
    (dict(shape=(1, 0, 4, 1)), "shape must be 4 positive integers (N, H, W, C), got (1, 0, 4, 1)"),
    (dict(shape=(1, -4, 4, 1)), "shape must be 4 positive integers (N, H, W, C), got (1, -4, 4, 1)"),
    (dict(shape=(4, 4, 1)), "shape must be 4 positive integers (N, H, W, C), got (4, 4, 1)"),
    (dict(shape=(1, 4.0, 4, 1)), "shape must be 4 positive integers (N, H, W, C), got (1, 4.0, 4, 1)"),
    (dict(shape=4), "shape must be 4 positive integers (N, H, W, C), got 4"),
    (dict(steps=0), "steps must be an integer >= 1, got 0"),
    (dict(steps=1.5), "steps must be an integer >= 1, got 1.5"),
    (dict(seed=-1), "seed must be an integer in [0, 2**32 - 1], got -1"),
    (dict(fused="yes"), "fused must be None (TensorFlow's default), True or False, got 'yes'"),
    (dict(epsilon=0.0), "epsilon must be a finite number > 0, got 0.0"),
    (dict(epsilon=float("inf")), "epsilon must be a finite number > 0, got inf"),
    (dict(device="tpu"), "device must be one of auto, cpu, gpu, got 'tpu'"),
]


@pytest.mark.parametrize("kwargs, message", BAD, ids=[m.split(" ")[0] + str(i)
                                                      for i, (_, m) in enumerate(BAD)])
def test_bad_input_raises_one_exact_line(kwargs, message):
    with pytest.raises(ProbeConfigError) as info:
        ProbeConfig.create(**kwargs)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("kwargs, message", BAD[:3])
def test_probe_raises_the_same_error_without_running(kwargs, message):
    from bn_decay_probe import probe

    with pytest.raises(ProbeConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        probe(**kwargs)


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
