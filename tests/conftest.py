"""Shared fixtures. The numpy reference here is written out independently of
``bn_decay_probe.theory`` so that the tests do not check the package against itself."""
import functools
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from bn_decay_probe import imports

pytest_plugins = ["pytester"]
# One run imports TensorFlow (the probe, the doctor) and torchvision / onnx2torch (the port's
# real conversions), in whichever order pytest collects them; triton, which torchvision loads,
# crashes the process when it comes after TensorFlow (tensorflow/tensorflow#124205). So triton
# is off for the whole run, before anything imports either (tests/test_frameworks_together.py
# checks that the package alone is safe in both orders).
imports.block_triton(tensorflow_next=True)

DECAYS = (0.0, 0.5, 0.9, 0.999, 1.0)
FUSED = (True, False)
# C in {1, 3}; H != W and N > 1 in the second so a reduction over the wrong axes shows.
SHAPES = ((1, 4, 4, 1), (2, 3, 5, 3))
EPSILON = 1e-3


# A TensorFlow C++ log line. TF 1.15: "2026-12-01 11:00:43.485208: W tensorflow/...";
# TF >= 2.16 (absl): "I0000 00:00:1796130780.265581    6609 port.cc:153] ...".
TF_LOG_LINE = re.compile(r"^(\S+ \S+: [IWEF] tensorflow/"
                         r"|[IWEF]\d{4} \d\d:\d\d:[\d.]+ +\d+ \S+:\d+\] )", re.M)


def flat(text):
    """``text`` with each run of whitespace as one space: reports wrap long lines to the
    terminal's width (100 columns in a pipe), and what a test reads in them must not depend on
    where the lines break."""
    return " ".join(text.split())


def too_wide(text, width=100):
    """The lines of ``text`` wider than ``width``, but for a line that is one word (a file path
    under a long temporary directory): reports break lines at spaces and never cut a name."""
    return [line for line in text.splitlines()
            if len(line) > width and len(line.split()) > 1]


def channel_inputs(shape, seed=7):
    """uniform(0, 255) scaled and shifted per channel, so every channel has its own mean and
    variance and a statistic taken across channels cannot pass for a per-channel one."""
    x = np.random.RandomState(seed).uniform(0.0, 255.0, size=shape)
    channel = np.arange(shape[-1])
    return (x * (channel + 1) + 50.0 * channel).astype(np.float32)


class Reference:
    """Batch norm in float64 numpy, straight from the definitions."""

    def __init__(self, x, epsilon=EPSILON):
        self.x = np.asarray(x, np.float64)
        self.epsilon = epsilon
        self.n = self.x.shape[0] * self.x.shape[1] * self.x.shape[2]
        flat = self.x.reshape(-1, self.x.shape[-1])  # rows: every (n, h, w); columns: channels
        self.mean = flat.sum(axis=0) / self.n
        self.biased_var = ((flat - self.mean) ** 2).sum(axis=0) / self.n
        self.unbiased_var = (((flat - self.mean) ** 2).sum(axis=0) / (self.n - 1) if self.n > 1
                             else np.full_like(self.mean, np.nan))  # n/(n-1) is undefined

    def fed_var(self, fused):
        return self.unbiased_var if fused else self.biased_var

    def moving(self, decay, steps, fused):
        """From the initial (0, 1), ``steps`` updates v <- decay * v + (1 - decay) * value."""
        mean, var = np.zeros_like(self.mean), np.ones_like(self.mean)
        for _ in range(steps):
            mean = decay * mean + (1 - decay) * self.mean
            var = decay * var + (1 - decay) * self.fed_var(fused)
        return mean, var

    def normalize(self, mean, var):
        return (self.x - mean) / np.sqrt(var + self.epsilon)

    def train_output(self):
        return self.normalize(self.mean, self.biased_var)


def backend_name():
    """"tf1" or "tf2": where the two backends' documented semantics differ, tests expect each."""
    from bn_decay_probe import backend

    return backend.name()


def tf_version():
    from bn_decay_probe import backend

    return backend.tensorflow().__version__


def updates_run(api, updates, trainable=True):
    """As documented: in-place updates run; UPDATE_OPS holds the updates of every API except
    tf.keras, whose updates live in layer.updates; forgotten updates never run. A tf.layers or
    tf.keras layer with trainable=False publishes no updates (Keras's Layer.updates is empty for
    it; in TF 2.x tf.keras it even runs in inference mode and builds none)."""
    if not trainable and api in ("layers", "keras", "keras3"):
        return False
    return updates == "inplace" or (updates == "update_ops" and api != "keras")


def first_step_within(x, decay, fused, tol, limit):
    """Brute force in float64 over every element: the first train step k after which the test
    output (moving statistics by the closed form) is within tol of the train output."""
    ref = Reference(x)
    train = ref.train_output()
    for k in range(1, limit + 1):
        mean = (1 - decay ** k) * ref.mean
        var = decay ** k + (1 - decay ** k) * ref.fed_var(fused)
        if np.abs(ref.normalize(mean, var) - train).max() <= tol:
            return k
    return None


@pytest.fixture(scope="session")
def measured():
    """measured(decay, fused, shape, steps=1) -> ProbeResult on channel_inputs(shape), cached,
    so each configuration runs once however many claims look at it."""
    from bn_decay_probe import probe

    @functools.lru_cache(maxsize=None)
    def run(decay, fused, shape, steps=1):
        return probe(decay=decay, inputs=channel_inputs(shape), fused=fused, steps=steps,
                     epsilon=EPSILON, device="cpu")

    return run


@pytest.fixture(scope="session")
def real_model(tmp_path_factory):
    """real_model(model, case) -> real_models.Trained: real model code trained with a planted
    problem and saved (tests/real_models.py), each (model, case) once per test session."""
    import real_models

    return real_models.Cache(str(tmp_path_factory.mktemp("real_models")))


@pytest.fixture(scope="session")
def keras_saved(tmp_path_factory):
    """keras_saved(framework, model, case) -> keras_models.Saved: a Keras 3 or tf_keras model
    trained with a planted problem and saved in every format (tests/keras_models.py), each once
    per test session (TF 2.16+ only)."""
    import keras_models

    return keras_models.Cache(str(tmp_path_factory.mktemp("keras_models")))


def doctor_cli(*args):
    """`bn-decay-probe doctor ...`, the installed console script, as users run it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(os.path.dirname(sys.executable), "bn-decay-probe")
    # This checkout first on the path: the script of an editable install elsewhere would
    # otherwise import that other copy of the package.
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([script, "doctor", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, cwd=root,
                          env=dict(os.environ, PYTHONPATH=path))
