"""What keeps probe() lean on large inputs without changing a number: inputs held in aligned,
read-only buffers TensorFlow feeds without a copy, and the output gap computed in chunks with
the float64 result of the plain formula."""
import numpy as np
import pytest

from bn_decay_probe import ProbeConfig, probe
from bn_decay_probe.values import ALIGNMENT
from bn_decay_probe.probe.measure import GAP_CHUNK, gap as measure_gap


def plain_gap(test, train):
    return float(np.max(np.abs(test.astype(np.float64) - train)))


@pytest.mark.parametrize("size", [7, GAP_CHUNK, 3 * GAP_CHUNK + 11])
@pytest.mark.parametrize("case", ["noise", "ties", "nan", "inf", "overflow", "equal"])
def test_gap_is_the_plain_float64_formula(size, case):
    rs = np.random.RandomState(size)
    train = (rs.standard_normal(size) * 50).astype(np.float32)
    test = train + (rs.standard_normal(size) * 1e-3).astype(np.float32)
    if case == "ties":  # the largest difference, or nearly, in many chunks
        test[::5000] = train[::5000] + np.float32(0.5)
    elif case == "nan":
        test[size // 2] = np.nan
    elif case == "inf":
        train[-1] = np.inf
    elif case == "overflow":  # finite in float64, inf in float32
        test[0], train[0] = np.float32(3e38), np.float32(-3e38)
    elif case == "equal":
        test = train.copy()
    # assert_equal: exactly equal, NaN equal to NaN
    np.testing.assert_equal(measure_gap(test.reshape(1, -1, 1, 1), train.reshape(1, -1, 1, 1)),
                            plain_gap(test, train))


def test_held_inputs_are_aligned_read_only_copies():
    x = np.random.RandomState(1).uniform(0, 9, (2, 3, 4, 5))
    for config in (ProbeConfig.create(inputs=x), ProbeConfig.create(shape=(2, 3, 4, 5)),
                   ProbeConfig.create(batches=[x, x])):
        held = config.inputs if config.batches is None else config.batches
        assert held.ctypes.data % ALIGNMENT == 0 and held.dtype == np.float32
        assert not held.flags.writeable and held.flags.c_contiguous
    np.testing.assert_array_equal(ProbeConfig.create(inputs=x).inputs, x.astype(np.float32))


def test_outputs_are_read_only_and_match_the_reference():
    x = np.random.RandomState(2).uniform(0, 255, (2, 64, 64, 8)).astype(np.float32)
    r = probe(decay=0.0, inputs=x, fused=False, device="cpu")
    x64 = x.astype(np.float64)
    expected = (x64 - x64.mean(axis=(0, 1, 2))) / np.sqrt(x64.var(axis=(0, 1, 2)) + 1e-3)
    for phase in ("train", "test"):
        assert not r.outputs[phase].flags.writeable
        np.testing.assert_allclose(r.outputs[phase], expected, rtol=1e-4, atol=1e-4)
    assert r.trajectory["gap"][-1] == plain_gap(r.outputs["test"], r.outputs["train"])
