"""Numeric edges, measured on the CPU and stated in ``result.notes``: one value per channel,
constant input, a variance below epsilon, float32 overflow, and the float32 cast of float16 and
float64 inputs. Expectations are worked out by hand or with the float64 reference."""
import html
import json
import re
import warnings

import numpy as np
import pytest

from bn_decay_probe import ProbeResult, probe
from bn_decay_probe.report import json_document, render_text
from bn_decay_probe.values import to_json
from conftest import EPSILON, Reference, channel_inputs, flat

FUSED = [True, False]


def run(**kwargs):
    # Edges must not make numpy warn (0/0, NaN compared, ...) in the probe or the reports.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        r = probe(device="cpu", **kwargs)
        text, page = render_text(r), r._repr_html_()
    for note in r.notes:
        assert flat("note: " + note) in flat(text) and html.escape(note) in page
    rebuilt = ProbeResult.from_dict(json.loads(to_json(json_document([r])))["results"][0])
    assert rebuilt == r and rebuilt.notes == r.notes
    return r


def path(fused):
    return "fused kernel" if fused else "non-fused path (tf.nn.moments)"


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("api", ["contrib", "layers", "keras", "nn"])
def test_one_value_per_channel(api, fused):
    """N*H*W = 1: the biased variance is 0 and n/(n-1) is 1/0. Measured: TF 1.15's CPU kernels,
    fused (which computes n / max(n - 1, 1)) and non-fused alike, feed 0; none gives NaN."""
    x = np.array([3.0, -7.0], np.float32).reshape(1, 1, 1, 2)
    r = run(decay=0.5, inputs=x, fused=fused, api=api)
    assert r.fused is fused
    np.testing.assert_array_equal(r.batch_statistics["moving_mean"], [3.0, -7.0])
    np.testing.assert_array_equal(r.batch_statistics["moving_variance"], [0.0, 0.0])
    # 0.5 * (0, 1) + 0.5 * (x, 0), exact in float32
    np.testing.assert_array_equal(r.after["train"]["moving_mean"], [1.5, -3.5])
    np.testing.assert_array_equal(r.after["train"]["moving_variance"], [0.5, 0.5])
    np.testing.assert_array_equal(r.outputs["train"], np.zeros((1, 1, 1, 2)))  # beta
    np.testing.assert_allclose(r.outputs["test"].ravel(),
                               [1.5 / np.sqrt(0.5 + EPSILON), -3.5 / np.sqrt(0.5 + EPSILON)],
                               rtol=1e-6)
    assert r.notes == (
        "one value per channel (N*H*W = 1): the biased batch variance is 0 and Bessel's "
        "n/(n-1) is undefined; the %s fed moving_variance [0, 0] on /device:CPU:0" % path(fused),
        "batch variance below epsilon (0.001) in channel(s) 0, 1: fed [0, 0], so epsilon "
        "dominates sqrt(variance + epsilon) and the train output there stays within 0 of beta "
        "instead of having unit variance")


@pytest.mark.parametrize("fused", FUSED)
def test_constant_input_gives_beta(fused):
    """Zero variance: epsilon alone keeps rsqrt(variance + epsilon) finite, and x - mean is 0,
    so the train output is beta. 5 and -2.5 sum exactly in float32, so the mean is exact."""
    x = np.broadcast_to(np.array([5.0, -2.5], np.float32), (2, 3, 3, 2))
    r = run(decay=0.25, inputs=x, fused=fused)
    np.testing.assert_array_equal(r.batch_statistics["moving_variance"], [0.0, 0.0])
    np.testing.assert_array_equal(r.outputs["train"], np.zeros(x.shape))
    np.testing.assert_array_equal(r.after["train"]["moving_variance"], [0.25, 0.25])
    mean = 0.75 * np.array([5.0, -2.5])
    np.testing.assert_allclose(r.outputs["test"], (x - mean) / np.sqrt(0.25 + EPSILON), rtol=1e-6)
    assert r.notes == (
        "batch variance below epsilon (0.001) in channel(s) 0, 1: fed [0, 0], so epsilon "
        "dominates sqrt(variance + epsilon) and the train output there stays within 0 of beta "
        "instead of having unit variance",)


@pytest.mark.parametrize("fused", FUSED)
def test_a_variance_below_epsilon_is_named(fused):
    """Values of ~0.01: variance ~1e-4 < epsilon, so the train output's std per channel is
    sqrt(var / (var + eps)), well below 1; the note gives the largest |output - beta|."""
    x = channel_inputs((2, 4, 4, 2)) * 1e-4
    ref = Reference(x)
    assert np.all(ref.biased_var < EPSILON)
    r = run(decay=0.5, inputs=x, fused=fused)
    np.testing.assert_allclose(r.outputs["train"], ref.train_output(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r.outputs["train"].std(axis=(0, 1, 2)),
                               np.sqrt(ref.biased_var / (ref.biased_var + EPSILON)), rtol=1e-4)
    (note,) = r.notes
    assert note.startswith("batch variance below epsilon (0.001) in channel(s) 0, 1: fed [")
    within = float(re.search(r"within (\S+) of beta", note).group(1))
    assert within == pytest.approx(np.abs(ref.train_output()).max(), rel=1e-5)


@pytest.mark.parametrize("fused", FUSED)
def test_float32_overflow_in_the_variance_is_shown(fused):
    """|x| up to 1e19: the float64 variance, 2.6e37, fits in float32, but TF sums 16 squared
    deviations of up to ~1e38 in float32 first, and that sum (16 * var = 4e38) overflows past
    3.4e38. The variance fed is inf, so rsqrt(inf) = 0 zeroes the train output."""
    x = np.random.RandomState(0).uniform(-1, 1, (1, 4, 4, 1)) * 1e19
    held = x.astype(np.float32)
    ref = Reference(held)
    assert 16 * ref.biased_var[0] > np.finfo(np.float32).max > ref.unbiased_var[0]
    r = run(decay=0.5, inputs=x, fused=fused)
    assert np.isinf(r.batch_statistics["moving_variance"]).all()
    np.testing.assert_allclose(r.batch_statistics["moving_mean"], ref.mean, rtol=1e-6)
    assert np.isinf(r.after["train"]["moving_variance"]).all()
    np.testing.assert_array_equal(r.outputs["train"], np.zeros(x.shape))
    assert ("float32 overflow: the batch variance fed to moving_variance is [inf] in channel(s) "
            "0, where numpy in float64 gives [%.7g] (float32 ends at 3.403e+38); of the 16 train "
            "output values there, 16 are 0 and 0 NaN or inf" % ref.fed_var(fused)[0]) in r.notes
    assert "non-finite values (NaN or inf) in moving_variance" in r.notes
    document = json.loads(to_json(json_document([r])))["results"][0]
    assert document["batch_statistics"]["moving_variance"] == ["Infinity"]
    assert document["snapshots"]["after_train"]["probe/BatchNorm/moving_variance:0"] == \
        ["Infinity"]


@pytest.mark.parametrize("fused", FUSED)
def test_float32_overflow_in_the_mean_gives_nan_outputs(fused):
    """|x| up to 3e38: the float32 sum behind the mean overflows as well, and inf - inf makes
    every output NaN; JSON holds them as "NaN"."""
    x = np.random.RandomState(0).uniform(-1, 1, (1, 4, 4, 1)) * 3e38
    r = run(decay=0.5, inputs=x, fused=fused)
    assert np.isinf(r.batch_statistics["moving_mean"]).all()
    assert np.isnan(r.outputs["train"]).all() and np.isnan(r.outputs["test"]).all()
    assert r.notes[-1] == ("non-finite values (NaN or inf) in moving_mean, moving_variance, "
                           "train output, test output")
    assert any(n.startswith("float32 overflow: the batch mean fed to moving_mean is [inf]")
               for n in r.notes)
    document = json.loads(to_json(json_document([r])))["results"][0]
    assert set(np.ravel(document["outputs"]["train"])) == {"NaN"}


def test_float16_inputs_are_held_exactly():
    """Every float16 value is a float32 value: nothing changes, so no cast note."""
    x = channel_inputs((2, 3, 3, 2)).astype(np.float16)
    r = run(decay=0.5, inputs=x, fused=False)
    assert r.config.input_dtype == "float16" and r.notes == ()
    np.testing.assert_array_equal(r.inputs, x.astype(np.float64))
    np.testing.assert_allclose(r.batch_statistics["moving_variance"], Reference(x).biased_var,
                               rtol=1e-6)


def test_float64_inputs_are_rounded_to_float32_and_the_note_says_by_how_much():
    """1e8 + uniform(0, 1): float32's spacing near 1e8 is 8, so every value rounds to 1e8 and
    a float64 variance of 0.064 becomes 0. TF sees the float32 values; the note says so."""
    x = 1e8 + np.random.RandomState(0).uniform(0, 1, (1, 4, 4, 1))
    assert np.all(x.astype(np.float32) == 1e8)
    r = run(decay=0.5, inputs=x)
    assert r.config.input_dtype == "float64"
    np.testing.assert_array_equal(r.inputs, np.full(x.shape, 1e8))
    np.testing.assert_array_equal(r.batch_statistics["moving_variance"], [0.0])
    assert r.notes[0] == (
        "inputs: float64 values held as float32 (the graph's dtype): 16 of 16 changed, by up to "
        "%.2g relative; the variance of channel(s) 0 changes from [%.4g] to [0] (numpy, float64)"
        % ((np.abs(1e8 - x) / x).max(), x.var()))


def test_float64_values_below_float32_become_zero():
    x = np.random.RandomState(0).uniform(0.5, 1, (1, 2, 2, 1)) * 1e-50
    r = run(decay=0.5, inputs=x, fused=False)
    np.testing.assert_array_equal(r.inputs, np.zeros(x.shape))
    assert r.notes[0].startswith("inputs: float64 values held as float32 (the graph's dtype): 4 "
                                 "of 4 changed, by up to 1 relative; 4 nonzero value(s) became 0")


def test_float64_batches_that_float32_holds_exactly_need_no_note():
    batches = [np.full((1, 2, 2, 1), 0.5), np.arange(4, dtype=np.float64).reshape(1, 2, 2, 1)]
    r = run(decay=0.5, batches=batches, fused=False)
    assert r.notes == ()
    np.testing.assert_array_equal(r.batches, np.array(batches))
