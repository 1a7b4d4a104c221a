"""The command line's manners, end to end as subprocesses: --help lists the subcommands, a
reader that closes the pipe early gets no BrokenPipeError in any command, and the progress bar
starts once TensorFlow is loaded, so its first ETA is the run's."""
import os
import subprocess
import sys

import pytest

from test_cli import ROOT, SCRIPT


def closed_pipe(*args):
    """Runs the CLI with its stdout a pipe whose reader has already gone."""
    process = subprocess.Popen([sys.executable, SCRIPT, *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True, cwd=ROOT)
    process.stdout.close()
    stderr = process.stderr.read()
    process.wait()
    return process.returncode, stderr


def test_usage_lists_the_subcommands():
    out = subprocess.run([sys.executable, SCRIPT, "--help"], stdout=subprocess.PIPE,
                         universal_newlines=True)
    usage = out.stdout[:out.stdout.index("\n\n")]
    assert usage.startswith("usage: run_experiment.py [-h] [--decay D | --decays START:STOP:NUM]")
    assert "\n       run_experiment.py doctor [-h]" in usage and "PATH" in usage
    assert "\n       run_experiment.py repair [-h]" in usage and "--data FILE" in usage


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint with one batch-norm layer's moving statistics at their initial values."""
    from bn_decay_probe import backend

    tf1 = backend.tensorflow().compat.v1
    prefix = str(tmp_path_factory.mktemp("ckpt") / "model.ckpt")
    with tf1.Graph().as_default():
        tf1.Variable([0.0, 0.0], name="bn/moving_mean")
        tf1.Variable([1.0, 1.0], name="bn/moving_variance")
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            tf1.train.Saver().save(session, prefix)
    return prefix


@pytest.mark.parametrize("args", [
    ("--decay", "0.5", "--json", "-"),
    ("--decays", "0.1:0.9:20", "--steps", "5"),
    ("--help",),
    ("doctor", "--help"),
    ("doctor", "CHECKPOINT", "--json", "-"),
    ("doctor", "CHECKPOINT"),
    ("repair", "--help"),
], ids=" ".join)
def test_a_closed_pipe_ends_quietly(args, checkpoint):
    status, stderr = closed_pipe(*[checkpoint if a == "CHECKPOINT" else a for a in args])
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert "Exception ignored" not in stderr
    if "--help" in args:  # argparse itself drops a failed write of the help on Python >= 3.9
        assert status in (0, 141)
    elif args[0] == "doctor":  # the doctor keeps its verdict's status: 1, findings
        assert status == 1
    else:
        assert status == 141  # 128 + SIGPIPE, as a shell reports a filter that a pipe ended


def test_head_reads_what_it_wants_and_the_pipeline_ends_cleanly():
    out = subprocess.run("%s %s --decay 0.5 --json - | head -c 16" % (sys.executable, SCRIPT),
                         shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, cwd=ROOT)
    assert out.stdout == '{"bn_decay_probe' and "Error" not in out.stderr


PROGRESS_PROBE = """
import contextlib, sys
from bn_decay_probe import cli, progress

seen, real = [], progress.bar

@contextlib.contextmanager
def bar(total, enabled):
    seen.append("tensorflow" in sys.modules)  # what the bar's clock starts after
    with real(total, False) as update:
        yield update

progress.bar = bar
cli.main(%r)
print(seen)
"""


@pytest.mark.parametrize("args", [["--decays", "0.1:0.2:2"], ["--decay", "0.5", "--api", "nn"]],
                         ids=["sweep", "probe per decay"])
def test_the_progress_bar_starts_after_tensorflow_is_loaded(args):
    out = subprocess.run([sys.executable, "-c", PROGRESS_PROBE % args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "[True]"
