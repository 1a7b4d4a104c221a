"""The CLI's sweeps end to end, as subprocesses: --decays, --csv, --plot, --quiet, which path
runs, the progress bar, and bad input."""
import csv
import json
import os
import pty
import subprocess
import sys
import threading

import numpy as np
import pytest

from bn_decay_probe import ProbeResult, progress
from conftest import Reference, flat
from test_cli import SCRIPT, SEED_INPUT, run

ENV = dict(os.environ, MPLBACKEND="Agg")
NOTE = "note: no GPU visible to TensorFlow; running on the CPU\n"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    paths = {"csv": folder / "sweep.csv", "plot": folder / "sweep.png",
             "json": folder / "sweep.json"}
    out = run("--decays", "0:1:3", "--steps", "2", "--no-fused", "--csv", str(paths["csv"]),
              "--plot", str(paths["plot"]), "--json", str(paths["json"]), env=ENV)
    return out, paths


def test_decays_print_one_table_row_per_decay(outputs):
    out, _ = outputs
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("3 decays from 0 to 1 | fused no (requested) | steps 2 |")
    table = lines[lines.index("after 2 train step(s) (measured; rule = numpy):") + 1:]
    assert table[0].split()[:5] == ["decay", "moving_mean", "rule", "moving_variance", "rule"]
    x = SEED_INPUT
    for row, decay in zip(table[1:4], (0.0, 0.5, 1.0)):
        cells = row.replace("[", "").replace("]", "").split()
        weight = decay ** 2
        assert float(cells[0]) == decay
        assert float(cells[1]) == pytest.approx((1 - weight) * x.mean(), rel=1e-6, abs=1e-6)
        assert float(cells[3]) == pytest.approx(weight + (1 - weight) * x.var(), rel=1e-6)


def test_csv_plot_and_json_files(outputs):
    out, paths = outputs
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [(float(r["decay"]), int(r["step"])) for r in rows] == [
        (d, k) for d in (0.0, 0.5, 1.0) for k in (1, 2)]
    ref = Reference(SEED_INPUT)
    for r in rows:
        mean, var = ref.moving(float(r["decay"]), int(r["step"]), fused=False)
        assert float(r["moving_mean"]) == pytest.approx(mean[0], rel=1e-6, abs=1e-6)
        assert float(r["moving_variance"]) == pytest.approx(var[0], rel=1e-6)
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG" and paths["plot"].stat().st_size > 20000
    results = [ProbeResult.from_dict(d) for d in json.loads(paths["json"].read_text())["results"]]
    assert [r.decay for r in results] == [0.0, 0.5, 1.0]
    for r, row in zip(results, rows[1::2]):
        assert np.float32(row["moving_variance"]) == r.after["train"]["moving_variance"][0]


def test_repeated_decay_keeps_todays_reports_through_the_sweep():
    out = run("--decay", "0.5", "--decay", "0.9", "--steps", "3")
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.split("=" * 72)
    assert first.startswith("decay 0.5 | fused yes (TF default) | steps 3 |")
    assert second.strip().startswith("decay 0.9 | fused yes (TF default) | steps 3 |")
    assert "moving_mean" in first and "after each train step" in first


def test_settings_sweep_does_not_run_take_one_probe_per_decay(tmp_path):
    path = tmp_path / "keras.csv"
    out = run("--decays", "0.5:0.9:2", "--api", "keras", "--updates", "update_ops",
              "--steps", "2", "--csv", str(path), "--quiet")
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.startswith("2 decays from 0.5 to 0.9 | api keras, updates update_ops |")
    # tf.keras in a TF1 graph: UPDATE_OPS never gets the updates, so nothing moves.
    assert ("note: the train phase did not change moving_mean or moving_variance: their update "
            "ops did not run (updates 'update_ops', api 'keras')") in flat(out.stdout)
    assert {(r["moving_mean"], r["moving_variance"]) for r in csv.DictReader(path.open())} == \
        {("0.0", "1.0")}


def test_quiet_says_nothing_on_stderr():
    out = run("--decays", "0.1:0.2:2", "--quiet")
    assert (out.returncode, out.stderr) == (0, "")
    out = run("--decays", "0.1:0.2:2")
    assert out.stderr in ("", NOTE)


def _on_a_terminal(*args):
    """Runs the CLI with stdout on a pseudo-terminal (read as it comes, so it never fills);
    returns (exit status, stderr)."""
    main, child = pty.openpty()
    process = subprocess.Popen([sys.executable, SCRIPT, *args], stdout=child,
                               stderr=subprocess.PIPE, universal_newlines=True)
    os.close(child)

    def drain():
        try:
            while os.read(main, 65536):
                pass
        except OSError:  # the terminal closes with the process
            pass

    reader = threading.Thread(target=drain)
    reader.start()
    stderr = process.stderr.read()
    process.wait()
    reader.join()
    os.close(main)
    return process.returncode, stderr


def test_progress_bar_on_a_terminal_for_a_long_sweep():
    # About 2 s of sweeping, past the 1 s before the bar shows: a sweep reports the decays of
    # each chunk as it finishes, and this input takes two chunks (a tiled tensor <= 4 MiB).
    status, stderr = _on_a_terminal("--decays", "0:1:64", "--shape", "8,32,32,16", "--steps",
                                    "30")
    assert status == 0
    assert "decay/s" in stderr and "/64" in stderr


def test_progress_bar_rules(monkeypatch, capsys):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert progress.wanted(quiet=False) and not progress.wanted(quiet=True)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert not progress.wanted(quiet=False)
    with progress.bar(3, enabled=False) as update:
        assert update is None
    monkeypatch.setattr(progress, "SHOW_AFTER", 0)
    with progress.bar(3, enabled=True) as update:
        update(3)
    shown = capsys.readouterr().err
    assert "0/3" in shown and "decay/s" in shown and shown.endswith("\r")  # cleared at the end


BAD = [
    (["--decays", "0:2:3"], "argument --decays: must be START:STOP:NUM with START and STOP in "
                            "[0, 1] and NUM >= 1, got '0:2:3' (see --help)"),
    (["--decays", "0:1:0"], "argument --decays: must be START:STOP:NUM with START and STOP in "
                            "[0, 1] and NUM >= 1, got '0:1:0' (see --help)"),
    (["--decays", "0:1"], "argument --decays: must be START:STOP:NUM such as 0.9:0.999:50, got "
                          "'0:1' (see --help)"),
    (["--decays", "a:b:c"], "argument --decays: must be START:STOP:NUM such as 0.9:0.999:50, "
                            "got 'a:b:c' (see --help)"),
    (["--decays", "0:1:3:4"], "argument --decays: must be START:STOP:NUM with START and STOP in "
                              "[0, 1] and NUM >= 1, got '0:1:3:4' (see --help)"),
    (["--decay", "0.5", "--decays", "0:1:2"],
     "argument --decays: not allowed with argument --decay (see --help)"),
    (["--plot", "out.jpg"], "--plot out.jpg must end in .png, .pdf, .svg"),
    (["--plot", "out.png", "--batches", "2"],
     "--plot compares the train and test outputs of one input; it cannot be combined with "
     "--batches"),
    (["--csv", "/nonexistent-dir/out.csv"],
     "--csv /nonexistent-dir/out.csv cannot be written: No such file or directory"),
    (["--csv", "/"], "--csv / is a directory; give a file path"),
    (["--matrix", "--csv", "m.csv"], "--matrix measures its own grid of api, fused and updates; "
                                     "it cannot be combined with --csv"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(args) for args, _ in BAD])
def test_bad_input_exits_2_with_one_line(args, message):
    out = run(*args)
    assert (out.returncode, out.stderr, out.stdout) == (
        2, "run_experiment.py: error: %s\n" % message, "")


def test_plot_without_matplotlib_exits_2_before_tensorflow():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from bn_decay_probe.cli import main\n"
            "status = main(['--decays', '0:1:3', '--plot', 'out.png'], 'run_experiment.py')\n"
            "print(status, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True)
    assert out.stdout.split() == ["2", "False"]
    assert out.stderr == ("run_experiment.py: error: plotting needs matplotlib: pip install "
                          "'bn-decay-probe[plot]' (or matplotlib)\n")
