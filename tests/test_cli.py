"""The CLI end to end, as subprocesses: reports, JSON, quietness. Every bad input and its
message is in test_bad_inputs.py."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from bn_decay_probe import ProbeResult

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "run_experiment.py")
SEED_INPUT = np.random.RandomState(0).uniform(0, 255, (1, 4, 4, 1)).astype(np.float64)


def run(*args, env=None):
    return subprocess.run([sys.executable, SCRIPT, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, env=env, cwd=ROOT)


def row(text, variable):
    """The numbers of a variable's row (channel 0) in the first table of a text report."""
    for line in text.splitlines():
        if line.startswith(variable + " "):
            return [float(v) for v in line.split()[2:]]
    raise AssertionError("no row for %s in:\n%s" % (variable, text))


@pytest.fixture(scope="module")
def default_run():
    return run("--no-fused")


def test_default_run_is_the_seed_experiment(default_run):
    assert default_run.returncode == 0, default_run.stderr
    decay0, decay1 = default_run.stdout.split("=" * 72)
    assert decay0.startswith("decay 0 | fused no (requested) | steps 1 |")
    assert decay1.strip().startswith("decay 1 | fused no (requested) | steps 1 |")
    # decay 0 takes the batch statistics (biased on the non-fused path); decay 1 keeps (0, 1).
    before, after, before_test, after_test, rule = row(decay0, "moving_mean")
    assert before == 0 and after == pytest.approx(SEED_INPUT.mean(), rel=1e-6)
    assert before_test == after_test == after
    assert row(decay0, "moving_variance")[1] == pytest.approx(SEED_INPUT.var(), rel=1e-6)
    assert row(decay1, "moving_mean")[:4] == [0, 0, 0, 0]
    assert row(decay1, "moving_variance")[:4] == [1, 1, 1, 1]


def test_default_run_is_quiet(default_run):
    # At most the one-line CPU notice; none of TF's C++ logs or deprecation warnings.
    lines = default_run.stderr.splitlines()
    assert lines in ([], ["note: no GPU visible to TensorFlow; running on the CPU"])


def test_verbose_lets_tensorflow_speak():
    verbose = run("--decay", "0.5", "--verbose")
    assert verbose.returncode == 0
    # TF's C++ log lines (e.g. cpu_feature_guard.cc): up to TF 2.15 "<date> <time>: I
    # tensorflow/<source>", from TF 2.16 absl's "I<mmdd> <time> <thread> <source>:<line>]".
    assert re.search(r"^(\S+ \S+: [IWE] tensorflow/|[IWE]\d{4} [\d:.]+ +\d+ \S+:\d+\] )",
                     verbose.stderr, re.M), verbose.stderr


def test_json_to_stdout_round_trips():
    out = run("--decay", "0", "--decay", "0.999", "--fused", "--steps", "2", "--seed", "3",
              "--shape", "2,2,3,2", "--json", "-")
    assert out.returncode == 0, out.stderr
    document = json.loads(out.stdout)  # stdout is only JSON
    results = [ProbeResult.from_dict(d) for d in document["results"]]
    assert [r.decay for r in results] == [0.0, 0.999]
    x = np.random.RandomState(3).uniform(0, 255, (2, 2, 3, 2)).astype(np.float32)
    for r in results:
        np.testing.assert_array_equal(r.inputs, x)
        assert r.fused and r.config.steps == 2 and r.config.shape == (2, 2, 3, 2)
        weight = r.decay ** 2
        x64 = x.astype(np.float64)
        np.testing.assert_allclose(r.after["train"]["moving_variance"],
                                   weight + (1 - weight) * x64.var(axis=(0, 1, 2), ddof=1),
                                   rtol=1e-5)
        assert r.to_dict() == document["results"][results.index(r)]


def test_json_to_a_file_keeps_the_text_report(tmp_path):
    path = tmp_path / "out.json"
    out = run("--decay", "0.5", "--json", str(path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("decay 0.5 | ")
    document = json.loads(path.read_text())
    assert document["results"][0]["config"]["decay"] == 0.5
    assert set(document["results"][0]) >= {"config", "inputs", "outputs", "snapshots",
                                            "batch_statistics", "device", "versions"}


def test_keras_update_ops_run_shows_the_classic_bug():
    out = run("--decay", "0.9", "--api", "keras", "--updates", "update_ops", "--steps", "3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("decay 0.9 | api keras, updates update_ops | fused yes (TF "
                                 "default) | steps 3 |")
    assert ("note: the train phase did not change moving_mean or moving_variance: their update "
            "ops did not run (updates 'update_ops', api 'keras')") in out.stdout
    assert row(out.stdout, "moving_mean")[:4] == [0, 0, 0, 0]


def test_batches_from_a_file(tmp_path):
    batches = np.random.RandomState(5).uniform(0, 9, (3, 1, 2, 2, 1)).astype(np.float32)
    path = tmp_path / "batches.npy"
    np.save(str(path), batches)
    out = run("--decay", "0", "--batches", str(path), "--no-fused", "--json", "-")
    assert out.returncode == 0, out.stderr
    r = ProbeResult.from_dict(json.loads(out.stdout)["results"][0])
    np.testing.assert_array_equal(r.batches, batches)
    # decay 0: the moving statistics are the last batch's.
    last = batches[-1].astype(np.float64)
    np.testing.assert_allclose(r.after["train"]["moving_mean"], [last.mean()], rtol=1e-6)
    np.testing.assert_allclose(r.after["train"]["moving_variance"], [last.var()], rtol=1e-6)


@pytest.mark.parametrize("content, message", [
    (b"1,2,3\n", "--batches {} is not a .npy file (numpy.save writes one)"),
    (None, "batches must be a sequence of float arrays [N, H, W, C] or one array "
           "[B, N, H, W, C], got one array of shape (1, 2, 2, 1); for one batch x, pass [x]"),
])
def test_batches_file_that_cannot_serve(tmp_path, content, message):
    path = tmp_path / "b.npy"
    if content is None:  # a single batch saved without its leading B axis
        np.save(str(path), np.zeros((1, 2, 2, 1), np.float32))
    else:
        path.write_bytes(content)
    out = run("--batches", str(path))
    assert (out.returncode, out.stderr, out.stdout) == (
        2, "run_experiment.py: error: %s\n" % message.format(path), "")


# The batches come from the next seed; after the largest seed, that is 0.
@pytest.mark.parametrize("seed, batch_seed", [(3, 4), (2 ** 32 - 1, 0)])
def test_batches_drawn_from_the_seed(seed, batch_seed):
    out = run("--decay", "0.5", "--batches", "4", "--steps", "2", "--shape", "2,2,2,1",
              "--seed", str(seed), "--json", "-")
    assert out.returncode == 0, out.stderr
    r = ProbeResult.from_dict(json.loads(out.stdout)["results"][0])
    drawn = np.random.RandomState(batch_seed).uniform(0, 255, (4, 2, 2, 2, 1)).astype(np.float32)
    np.testing.assert_array_equal(r.batches, drawn)
    assert r.trajectory["moving_mean"].shape == (8, 1)


def test_console_script_and_module_entry_points():
    script = os.path.join(os.path.dirname(sys.executable), "bn-decay-probe")
    version = subprocess.run([script, "--version"], stdout=subprocess.PIPE,
                             universal_newlines=True)
    assert version.returncode == 0 and version.stdout.startswith("bn-decay-probe 0.")
    usage = subprocess.run([sys.executable, "-m", "bn_decay_probe", "--help"],
                           stdout=subprocess.PIPE, universal_newlines=True, cwd=ROOT)
    assert usage.returncode == 0 and "--decay D" in usage.stdout
