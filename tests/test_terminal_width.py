"""Text output fits the terminal: 100 columns when stdout is not a terminal (pipes, files, CI
logs), the terminal's own width when it is one. Tables fold (each part repeats the row's key),
long lines wrap at spaces, and nothing is lost on the way."""
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest

from bn_decay_probe import text as report
from conftest import flat
from test_cli import SCRIPT, SEED_INPUT, run


def widest(text):
    return max(len(line) for line in text.splitlines())


def test_a_piped_report_fits_100_columns_and_keeps_every_value():
    out = run("--decay", "0.9", "--steps", "60")  # 205 columns before
    assert out.returncode == 0, out.stderr
    assert widest(out.stdout) <= 100
    text = flat(out.stdout)
    # Every input value is still there, in order, once wrapped lines are joined.
    values = ", ".join("%.7g" % v for v in SEED_INPUT.astype(np.float32).ravel())
    assert "input: [%s]" % values in text
    assert "tol 0.01); never, because the fused kernel" in text


def test_a_piped_sweep_table_folds_under_its_decay_column():
    out = run("--decays", "0.5:0.99:12", "--steps", "60", "--shape", "4,8,8,3")  # 180 before
    assert out.returncode == 0, out.stderr
    assert widest(out.stdout) <= 100
    lines = out.stdout.splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith("decay  ")]
    assert len(headers) >= 2  # folded
    columns = " ".join(lines[i] for i in headers).split()
    for name in ("moving_mean", "moving_variance", "max", "steps"):
        assert name in columns
    for i in headers:  # each part: the header, then the 12 decays in order
        rows = lines[i + 1:i + 13]
        assert [row.split()[0] for row in rows] == ["%g" % d for d in np.linspace(0.5, 0.99, 12)]


def on_a_terminal(columns, *args):
    """(exit status, stdout) of the CLI on a pseudo-terminal ``columns`` wide (stderr piped)."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen([sys.executable, SCRIPT, *args], stdout=child,
                               stderr=subprocess.PIPE, env=env)
    os.close(child)
    chunks = []
    try:
        while True:
            chunk = os.read(main, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:  # the terminal closes with the process
        pass
    process.wait()
    os.close(main)
    assert process.returncode in (0, 1), process.stderr.read()
    return process.returncode, b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.mark.parametrize("columns", [72, 160])
def test_a_terminal_gets_its_own_width(columns):
    status, text = on_a_terminal(columns, "--decays", "0.5:0.9:3", "--steps", "4",
                                 "--shape", "2,2,2,2")
    assert status == 0
    assert widest(text) <= columns
    headers = [line for line in text.splitlines() if line.startswith("decay  ")]
    if columns == 160:  # wide enough for the whole table: one part, wider than a pipe's 100
        assert len(headers) == 1 and widest(text) > 100
    else:
        assert len(headers) > 1


def test_tables_fold_repeating_their_key_and_pairs_stay_together():
    header = ["key", "a", "rule", "b", "rule"]
    rows = [["k%d" % i, "x" * 20, "y" * 20, "z" * 20, "w" * 20] for i in range(3)]
    whole = report.fold_table(header, rows, 1)
    assert len(whole) == 4 and widest("\n".join(whole)) > 60
    folded = report.fold_table(header, rows, 1, width=60, pairs=True)
    assert widest("\n".join(folded)) <= 60
    parts = "\n".join(folded).split("\n\n")
    assert [p.splitlines()[0].split() for p in parts] == [["key", "a", "rule"],
                                                          ["key", "b", "rule"]]
    for part in parts:
        assert [line.split()[0] for line in part.splitlines()[1:]] == ["k0", "k1", "k2"]


def test_lines_wrap_at_spaces_and_vectors_continue_under_their_bracket():
    vector = "input:      [" + ", ".join(str(1000 + i) for i in range(30)) + "]"
    lines = report.wrap_line(vector, 50)
    assert all(len(line) <= 50 for line in lines) and len(lines) > 1
    assert all(line.startswith(" " * len("input:      [")) for line in lines[1:])
    assert " ".join(lines).split() == vector.split()  # no value cut or lost
    header = "decay 0.9 | fused yes (TF default) | steps 60 | epsilon 0.001 | input [1, 4, 4, 1]"
    assert report.wrap_line(header, 50) == ["decay 0.9 | fused yes (TF default) | steps 60 |",
                                        "  epsilon 0.001 | input [1, 4, 4, 1]"]
    assert report.wrap_line(vector, 0) == [vector]  # width 0: no limit


def test_the_width_is_the_terminals_or_100(monkeypatch):
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.setenv("COLUMNS", "123")  # what shutil.get_terminal_size reads first
    assert report.output_width(Stream(False)) == 100
    assert report.output_width(Stream(True)) == 123
    monkeypatch.setenv("COLUMNS", "10")
    assert report.output_width(Stream(True)) == 40  # a floor for very narrow terminals


def test_a_key_too_wide_to_repeat_folds_its_rows_and_cuts_nothing():
    name = "net/" + "a_long_scope/" * 5 + "BatchNorm"  # 78 columns
    header = ["layer", "ch", "moving_mean", "finding"]
    rows = [[name, "16", "[-0.1, 0.2]", "NEVER_UPDATED"], ["bn", "8", "[0, 0]", "ok"]]
    assert report.fold_table(header, rows, 4, width=60) == [
        "layer",
        "    ch  moving_mean  finding",
        name,
        "    16  [-0.1, 0.2]  NEVER_UPDATED",
        "bn",
        "    8   [0, 0]       ok"]
    # Wide enough: one table; no width: one table, whatever its width.
    assert report.fold_table(header, rows, 4, width=120)[1] == \
        name + "  16  [-0.1, 0.2]  NEVER_UPDATED"
    assert len(report.fold_table(header, rows, 4)) == 3


@pytest.mark.parametrize("width", [60, 100, 200])
def test_the_probe_report_cuts_no_variable_name(width):
    """Unshared branches label each variable by its full name: every one stays whole."""
    from bn_decay_probe import probe
    from bn_decay_probe.report import render_text

    r = probe(0.9, shape=(2, 2, 2, 3), api="layers", share_variables=False, device="cpu")
    names = [v.name.split(":")[0] for v in r.variables]
    assert len(set(names)) == len(names) >= 8
    text = render_text(r, width=width)
    assert [n for n in names if n not in text.split()] == []
