"""The frameworks beside TensorFlow (api torch, torch-cumulative, flax, haiku, keras3-jax,
keras3-torch), each measured against its own rule, written here in numpy from the frameworks'
documentation (independently of bn_decay_probe.probe.theory, which is checked against it too):

- PyTorch ``BatchNorm2d(momentum=m)``: ``running = (1 - m) * running + m * batch`` with the
  unbiased (n - 1) batch variance; ``momentum=None``: the mean of every step's statistics.
- Flax ``BatchNorm(momentum=d)``, Keras 3 ``BatchNormalization(momentum=d)``: ``running =
  d * running + (1 - d) * batch``, biased variance.
- Haiku ``BatchNorm(decay_rate=d)``: ``hidden = d * hidden + (1 - d) * batch`` from 0, and the
  average is ``hidden / (1 - d**k)`` (zero-debiased), biased variance.

Where a framework is not installed (the TF 1.15 environment has none) its tests are skipped with
the line that names the extra, and the probe's own one-line refusal is tested instead.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from bn_decay_probe import probe, sweep
from bn_decay_probe.probe.frameworks import FRAMEWORKS
from conftest import SHAPES, channel_inputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APIS = tuple(FRAMEWORKS)
DECAYS = (0.0, 0.5, 0.9, 0.999, 1.0)
EPSILON = 1e-3
UNBIASED = ("torch", "torch-cumulative")


def available(api):
    return pytest.param(api, marks=pytest.mark.skipif(
        FRAMEWORKS[api].unavailable() is not None,
        reason=str(FRAMEWORKS[api].unavailable())))


INSTALLED = [available(api) for api in APIS]
# The apis measured in this process (Keras 3 on JAX / PyTorch runs in a child process, a few
# seconds each: its tests take one shape, and the unshared and NCHW layouts, which are Keras's
# own code on every backend, are tested with api keras3 in test_keras3.py).
IN_PROCESS = [available(api) for api in APIS if not FRAMEWORKS[api].subprocess]


def batches_of(shape):
    """Three different batches, each channel with its own mean and variance."""
    return [channel_inputs(shape, seed) for seed in (1, 2, 3)]


def expected(api, batches, decay, steps):
    """moving_mean, moving_variance [steps, C] by the framework's rule, from its initial
    statistics (0 and 1; Haiku's averages start at 0)."""
    channels = batches[0].shape[-1]
    mean, variance = np.zeros(channels), np.ones(channels)
    hidden_mean, hidden_variance = np.zeros(channels), np.zeros(channels)
    found = []
    for k in range(1, steps + 1):
        flat = batches[(k - 1) % len(batches)].astype(np.float64).reshape(-1, channels)
        n = flat.shape[0]
        batch_mean = flat.sum(axis=0) / n
        squares = ((flat - batch_mean) ** 2).sum(axis=0)
        batch_variance = squares / (n - 1) if api in UNBIASED else squares / n
        if api == "torch-cumulative":
            mean = mean + (batch_mean - mean) / k
            variance = variance + (batch_variance - variance) / k
        elif api == "haiku":
            hidden_mean = decay * hidden_mean + (1 - decay) * batch_mean
            hidden_variance = decay * hidden_variance + (1 - decay) * batch_variance
            with np.errstate(invalid="ignore"):  # decay 1: 0 / 0, as Haiku computes it
                mean = hidden_mean / (1 - decay ** k)
                variance = hidden_variance / (1 - decay ** k)
        else:
            mean = decay * mean + (1 - decay) * batch_mean
            variance = decay * variance + (1 - decay) * batch_variance
        found.append((mean, variance))
    return np.array([m for m, _ in found]), np.array([v for _, v in found])


@pytest.fixture(scope="module")
def swept():
    """api, shape -> the SweepResult over DECAYS, trained on three batches, one pass."""
    cache = {}

    def run(api, shape):
        if (api, shape) not in cache:
            cache[api, shape] = sweep(DECAYS, 1, api=api, batches=batches_of(shape),
                                      epsilon=EPSILON, device="cpu")
        return cache[api, shape]

    return run


@pytest.mark.parametrize("api, shape", [
    pytest.param(*available(api).values, shape, marks=available(api).marks)
    for api in APIS for shape in (SHAPES[1:] if FRAMEWORKS[api].subprocess else SHAPES)])
def test_moving_statistics_follow_the_frameworks_rule(swept, api, shape):
    result = swept(api, shape)
    for decay, r in zip(DECAYS, result):
        mean, variance = expected(api, batches_of(shape), decay, 3)
        for name, values in (("moving_mean", mean), ("moving_variance", variance)):
            measured = np.asarray(r.trajectory[name], np.float64)
            np.testing.assert_allclose(measured, values, rtol=2e-5, atol=1e-6, equal_nan=True,
                                       err_msg="%s %s decay %g" % (api, name, decay))
            # The package's numpy rule (theory) says the same.
            np.testing.assert_allclose(r.predicted_trajectory()[name], values, rtol=1e-12,
                                       atol=1e-9, equal_nan=True)


@pytest.mark.parametrize("api", INSTALLED)
def test_what_is_fed_and_how_much_of_it(swept, api):
    shape = SHAPES[1]
    r = swept(api, shape)[2]  # decay 0.9
    last = batches_of(shape)[-1].astype(np.float64).reshape(-1, shape[-1])
    fed = last.var(axis=0, ddof=1 if api in UNBIASED else 0)
    np.testing.assert_allclose(r.batch_statistics["moving_variance"], fed, rtol=2e-5)
    np.testing.assert_allclose(r.batch_statistics["moving_mean"], last.mean(axis=0), rtol=1e-5)
    assert r.unbiased_variance is (api in UNBIASED)
    factor = r.update_factor["moving_variance"]
    if api == "torch-cumulative":
        assert factor == pytest.approx(1 / 3)  # the third step's weight
    else:  # 1 - decay as the framework computes it (Haiku: in float32)
        assert factor == pytest.approx(0.1, rel=1e-6)
    assert r.fused is False and r.update_ops == ()
    assert r.versions["framework"].startswith(FRAMEWORKS[api].name)


@pytest.mark.parametrize("api", INSTALLED)
def test_train_output_uses_the_batch_test_output_the_stored_statistics(swept, api):
    shape = SHAPES[1]
    for r in swept(api, shape):
        x = np.asarray(r.inputs, np.float64)  # the test input
        train_x = batches_of(shape)[-1].astype(np.float64)
        flat = train_x.reshape(-1, shape[-1])
        train = (train_x - flat.mean(axis=0)) / np.sqrt(flat.var(axis=0) + EPSILON)
        np.testing.assert_allclose(r.outputs["train"], train, atol=2e-5)
        after = r.after["test"]
        test = (x - after["moving_mean"]) / np.sqrt(np.asarray(after["moving_variance"],
                                                               np.float64) + EPSILON)
        np.testing.assert_allclose(r.outputs["test"], test, rtol=1e-5, atol=1e-5,
                                   equal_nan=True)
        assert r.epsilon["train"] == pytest.approx(EPSILON)


@pytest.mark.parametrize("api", IN_PROCESS)
def test_an_unshared_test_layer_is_never_trained_and_nchw_changes_nothing(api):
    x = channel_inputs((2, 3, 5, 3))
    shared = probe(0.9, x, steps=2, api=api, device="cpu")
    unshared = probe(0.9, x, steps=2, api=api, device="cpu", share_variables=False)
    nchw = probe(0.9, x, steps=2, api=api, device="cpu", data_format="NCHW")
    assert not unshared.branches_share_variables and shared.branches_share_variables
    start = 0.0 if api == "haiku" else 1.0  # Haiku's averages start at 0
    np.testing.assert_allclose(unshared.outputs["test"], x / np.sqrt(start + 1e-3), rtol=1e-5)
    np.testing.assert_allclose(unshared.after["train"]["moving_mean"],
                               shared.after["train"]["moving_mean"], rtol=1e-6)
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(nchw.after["train"][name], shared.after["train"][name],
                                   rtol=1e-5)
    np.testing.assert_allclose(nchw.outputs["test"], shared.outputs["test"], rtol=1e-5,
                               atol=1e-5)


def _without(modules, code):
    """``code`` in a child process where ``modules`` cannot be imported."""
    block = "import sys\n" + "".join("sys.modules[%r] = None\n" % m for m in modules)
    return subprocess.run([sys.executable, "-c", block + code], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


def test_a_missing_framework_is_one_line_naming_its_extra():
    out = _without(["torch", "jax", "flax", "haiku"], (
        "from bn_decay_probe import probe\n"
        "for api in %r:\n"
        "    try:\n        probe(0.9, api=api)\n"
        "    except Exception as exc:\n        print(type(exc).__name__, exc)\n" % (APIS,)))
    needs = {"torch": "PyTorch, which is not installed: pip install 'bn-decay-probe[torch]'",
             "flax": "JAX and Flax, which are not installed: pip install 'bn-decay-probe[jax]'",
             "haiku": "JAX and dm-haiku, which are not installed: pip install "
                      "'bn-decay-probe[jax]'",
             "keras3-jax": "JAX, which is not installed: pip install 'bn-decay-probe[jax]'"}
    needs["torch-cumulative"] = needs["keras3-torch"] = needs["torch"]
    if FRAMEWORKS["keras3-jax"].unavailable() and "Keras 3" in FRAMEWORKS[
            "keras3-jax"].unavailable():  # no Keras 3 here at all (TF 1.15)
        needs["keras3-jax"] = "Keras 3 and JAX, which are not installed: pip install " \
                              "'bn-decay-probe[jax,tf2]'"
        needs["keras3-torch"] = "Keras 3 and PyTorch, which are not installed: pip install " \
                                "'bn-decay-probe[tf2,torch]'"
    assert out.stdout.splitlines() == [
        "BackendUnavailableError api %r needs %s (Python 3.10 to 3.13)" % (api, needs[api])
        for api in APIS], out.stderr
    # The command line: the same line, exit status 2, no TensorFlow imported.
    out = _without(["torch"], "from bn_decay_probe.cli import main\n"
                              "status = main(['--decay', '0.9', '--api', 'torch'], 'probe')\n"
                              "print(status, 'tensorflow' in sys.modules)")
    assert out.stdout.split() == ["2", "False"]
    assert out.stderr == "probe: error: api 'torch' needs %s (Python 3.10 to 3.13)\n" % (
        needs["torch"],)


def test_bad_options_fail_before_any_framework_is_imported():
    out = subprocess.run([sys.executable, "-c", (
        "import sys\nfrom bn_decay_probe import probe, ProbeConfigError\n"
        "for kwargs in ({'api': 'torch', 'decay': 2}, {'api': 'flax', 'fused': True},\n"
        "               {'api': 'keras3-jax', 'updates': 'forgotten'}):\n"
        "    try:\n        probe(**kwargs)\n    except ProbeConfigError:\n        pass\n"
        "print(sorted(m for m in ('torch', 'jax', 'keras', 'tensorflow') if m in sys.modules))")],
        cwd=ROOT, stdout=subprocess.PIPE, universal_newlines=True)
    assert out.stdout.strip() == "[]"
