"""Damaged input of every kind, on every command, on this backend: each case copies a small
checkpoint (tests/pattern_models.plain_switch, with its .meta) and its data files, damages one
file -- cut at 1 byte, at half, by its last byte; emptied; seeded bit flips; a directory in its
place -- and runs the command. Generated over command x file x fault, driven through
``bn_decay_probe.cli.main`` in this process (TensorFlow loads once; main returns the exit
status, and an exception escaping it is a traceback, which fails the case), plus true
subprocesses for Ctrl-C and the console script.

Each case must end in exit 2 with one line on stderr naming the damaged file and nothing on
stdout -- or, where a flipped bit leaves a file valid to its reader (a .meta, a data array, the
checkpoint state file), in the command's normal outcome without a word on stderr; the input
files are byte-identical afterwards, and nothing is left at --out (no copy, no temporary file,
no state file) unless the repair succeeded. ``python tests/test_fault_injection.py`` prints the
counts table of docs/errors.md."""
import collections
import contextlib
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import pattern_models
from bn_decay_probe.cli import main
from conftest import doctor_cli

FAULTS = ("cut at 1 byte", "cut at half", "cut by 1 byte", "empty", "bits flipped (seed 1)",
          "bits flipped (seed 2)", "bits flipped (seed 3)", "a directory")
# Files each command reads: a checkpoint's (by suffix), the data files, the state file.
FILES = {"doctor": (".index", ".data-00000-of-00001", ".meta", "checkpoint"),
         "repair": (".index", ".data-00000-of-00001", ".meta", "data.npy", "data.npz"),
         "probe --batches": ("batches.npy",)}
# Faults always found: in files whose readers verify every byte (TF's checksums on the
# checkpoint's index and data), every fault; in the others, those that leave no valid file
# (a flipped bit may leave a valid .meta, array or state file, and the text state file stays
# valid without its last bytes).
FOUND = {".index": FAULTS, ".data-00000-of-00001": FAULTS,
         "checkpoint": ("cut at 1 byte", "empty", "a directory")}
ALWAYS_FOUND = ("cut at 1 byte", "cut at half", "cut by 1 byte", "empty", "a directory")
NORMAL = {"doctor": (0, 1, 3), "repair": (0,), "probe --batches": (0,)}
CASES = [(command, name, fault) for command, names in FILES.items() for name in names
         for fault in FAULTS]


def make_source(directory):
    """The checkpoint, its data files; -> (directory, checkpoint prefix's name)."""
    built = pattern_models.plain_switch(str(directory))
    name = os.path.basename(built.prefix)
    with open(os.path.join(str(directory), "checkpoint"), "w") as handle:  # relative: copies
        handle.write('model_checkpoint_path: "%s"\nall_model_checkpoint_paths: "%s"\n'
                     % (name, name))
    images = pattern_models.images(pattern_models.SIDE, 24, seed=4)
    np.save(os.path.join(str(directory), "data.npy"), images)
    np.savez(os.path.join(str(directory), "data.npz"), first=images[:16], second=images[16:])
    np.save(os.path.join(str(directory), "batches.npy"), pattern_models.images(
        4, 6, seed=5).reshape(2, 3, 4, 4, 3))
    return str(directory), name


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_source(tmp_path_factory.mktemp("source"))


def damage(path, fault):
    if fault == "a directory":
        os.remove(path)
        os.mkdir(path)
        return
    with open(path, "rb") as handle:
        content = bytearray(handle.read())
    if fault.startswith("cut"):
        content = content[:{"cut at 1 byte": 1, "cut at half": len(content) // 2,
                            "cut by 1 byte": len(content) - 1}[fault]]
    elif fault == "empty":
        content = bytearray()
    else:
        rng = random.Random(int(fault[-2]))
        for _ in range(4):
            content[rng.randrange(len(content))] ^= 1 << rng.randrange(8)
    with open(path, "wb") as handle:
        handle.write(bytes(content))


def run_case(source, tmp_path, command, name, fault):
    directory, prefix_name = source
    case = tmp_path / "case"
    shutil.copytree(directory, str(case))
    prefix = str(case / prefix_name)
    target = prefix + name if name.startswith(".") else str(case / name)
    damage(target, fault)
    before = {path: _content(path) for path in _files(case)}
    out = str(case / "fixed")
    argv = {"doctor": ["doctor", str(case) if name == "checkpoint" else prefix],
            "repair": ["repair", prefix, "--data", str(case / "data.npz") if name == "data.npz"
                       else str(case / "data.npy"), "--batch-size", "8", "--out", out,
                       "--quiet"],
            "probe --batches": ["--batches", str(case / "batches.npy"), "--decay", "0.9"]}
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(argv[command], prog="bn-decay-probe")  # an exception fails the test
    after = {path: _content(path) for path in _files(case) if not path.startswith(out)}
    left = sorted(os.listdir(str(case)))
    return status, stdout.getvalue(), stderr.getvalue(), before == after, target, left


def _files(directory):
    """Every file under ``directory`` (a damaged file may be a directory now: its files)."""
    return sorted(os.path.join(root, name) for root, _, names in os.walk(str(directory))
                  for name in names)


def _content(path):
    with open(path, "rb") as handle:
        return handle.read()


def expected_line(stderr, target):
    """The one line names the damaged file (or, for the state file, the checkpoint's
    directory when the damage leaves it naming nothing)."""
    return os.path.basename(target) in stderr or os.path.dirname(target) in stderr


@pytest.mark.parametrize("command, name, fault", CASES,
                         ids=["%s-%s-%s" % case for case in CASES])
def test_damaged_file(source, tmp_path, command, name, fault):
    status, stdout, stderr, untouched, target, left = run_case(source, tmp_path, command,
                                                                name, fault)
    assert untouched, "an input file changed"
    verified = fault in FOUND.get(name, ALWAYS_FOUND)
    if status == 2:
        lines = stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("bn-decay-probe"), stderr
        assert expected_line(stderr, target), stderr
        assert stdout == ""
    else:
        assert not verified, "damage not found: exit %s, %r" % (status, stdout[:200])
        assert status in NORMAL[command] and "Traceback" not in stderr
        if command != "probe --batches":  # (the probe's note on the CPU it runs on)
            assert stderr == ""
    if command == "repair" and status != 0:
        assert not [entry for entry in left if entry.startswith("fixed")]
        assert sorted(os.listdir(source[0])) == left  # no state file, no temporary


def test_console_script_on_a_damaged_data_file(source, tmp_path):
    directory, prefix_name = source
    shutil.copytree(directory, str(tmp_path / "case"))
    prefix = str(tmp_path / "case" / prefix_name)
    damage(prefix + ".data-00000-of-00001", "cut at half")
    out = doctor_cli(prefix)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == ("bn-decay-probe doctor: error: checkpoint %s cannot be read: its data "
                          "file %s.data-00000-of-00001 is damaged or does not match its index "
                          "(Read less bytes than requested)\n" % (prefix, prefix))


INTERRUPTED_IMPORT = r"""
import os, signal, sys

fired = []


class Trap:  # Ctrl-C at a fixed point inside TensorFlow's import: when it imports its ops
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow.python.framework.ops" and not fired:
            fired.append(name)
            os.kill(os.getpid(), signal.SIGINT)
        return None


sys.meta_path.insert(0, Trap())
from bn_decay_probe import backend

try:
    backend.tensorflow()
    print("no KeyboardInterrupt")
except KeyboardInterrupt:
    tf = sys.modules["tensorflow"]
    print("KeyboardInterrupt after the import:", fired, backend.tensorflow() is tf,
          tf.zeros([2, 3]).shape.as_list())
"""


def test_ctrl_c_inside_tensorflows_import_is_answered_after_it():
    """A KeyboardInterrupt inside TensorFlow's import is swallowed by it or leaves it
    half-initialized (measured), so Ctrl-C waits for the import to finish: TensorFlow is then
    whole, and the KeyboardInterrupt comes once."""
    out = subprocess.run([sys.executable, "-c", INTERRUPTED_IMPORT], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=300,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert out.stdout == ("KeyboardInterrupt after the import: "
                          "['tensorflow.python.framework.ops'] True [2, 3]\n"), out.stderr


def _loaded(pid, names):
    """Whether the process has mapped a shared library whose path holds one of ``names``."""
    try:
        with open("/proc/%d/maps" % pid) as handle:
            return any(name in handle.read() for name in names)
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("when", ["while importing", "while TensorFlow imports",
                                  "during TensorFlow's work"])
@pytest.mark.parametrize("command", ["doctor", "repair"])
def test_ctrl_c(real_model, tmp_path, command, when):
    """SIGINT, as Ctrl-C sends it: one line, exit 130, nothing written (no --json file, nothing
    at --out)."""
    trained = real_model("keras_mobilenet_v2", "forgot_update_ops")
    data = str(tmp_path / "data.npy")
    np.save(data, np.random.RandomState(0).normal(2, 3, (1024, 32, 32, 3)).astype(np.float32))
    report, out = str(tmp_path / "report.json"), str(tmp_path / "fixed")
    args = {"doctor": ["doctor", trained.saver_prefix, "--json", report],
            "repair": ["repair", trained.saver_prefix, "--data", data, "--batch-size", "16",
                       "--out", out, "--json", report, "--quiet"]}[command]
    script = os.path.join(os.path.dirname(sys.executable), "bn-decay-probe")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p))
    before = sorted(os.listdir(str(tmp_path)))
    # As from a terminal: a job a script starts in the background (CI's `make test &`) inherits
    # SIGINT ignored, and Python then leaves it ignored.
    process = subprocess.Popen([script] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True, env=env, cwd=root,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # While importing: once numpy's extension is mapped, bn_decay_probe is loading. While
    # TensorFlow imports: just after its libraries are mapped (its import takes seconds; a
    # KeyboardInterrupt inside it was swallowed, or left TF half-initialized: a traceback). During
    # TensorFlow's work: a while after they are mapped.
    names = ("_multiarray_umath",) if when == "while importing" else (
        "_pywrap_tensorflow", "libtensorflow_framework")
    deadline = time.time() + 120
    while not _loaded(process.pid, names) and time.time() < deadline:
        time.sleep(0.01)
    if when == "while TensorFlow imports":
        time.sleep(0.3)
    elif when != "while importing":
        time.sleep(1.0 if command == "doctor" else 3.0)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=300)
    assert (process.returncode, stdout) == (130, ""), stderr
    assert stderr in ("bn-decay-probe %s: interrupted\n" % command,
                      "bn-decay-probe: interrupted\n")
    assert sorted(os.listdir(str(tmp_path))) == before


def table():
    """Counts: command x file -> how many faults gave each outcome (docs/errors.md)."""
    import pathlib
    import tempfile

    from bn_decay_probe import backend

    root = pathlib.Path(tempfile.mkdtemp(prefix="faults_"))
    (root / "source").mkdir()
    built = make_source(root / "source")
    counts = collections.OrderedDict()
    for index, (command, name, fault) in enumerate(CASES):
        case = root / str(index)
        case.mkdir()
        status, _, stderr, _, _, _ = run_case(built, case, command, name, fault)
        outcome = ("exit 2, one line" if status == 2 and len(stderr.splitlines()) == 1 else
                   "exit %s (file still valid)" % status)
        counts.setdefault((command, name), collections.Counter())[outcome] += 1
    shutil.rmtree(str(root))
    print("TensorFlow %s: %d faults per file (%s)\n" % (
        backend.tensorflow().__version__, len(FAULTS), ", ".join(FAULTS)))
    print("| command | damaged file | outcome |")
    print("|---|---|---|")
    for (command, name), counter in counts.items():
        print("| %s | %s | %s |" % (command, name, ", ".join(
            "%s x%d" % item for item in sorted(counter.items()))))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    table()
