"""The same arguments and seed give byte-identical JSON (``--json -``) in two separate
processes, started with different hash seeds so that no set or dict order can leak in."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "run_experiment.py")

CONFIGURATIONS = [
    ("--decay", "0.9", "--decay", "0.999", "--fused", "--steps", "3", "--shape", "2,3,5,3"),
    ("--decay", "0", "--decay", "1", "--no-fused", "--steps", "2", "--seed", "7"),
    ("--decay", "0.99", "--api", "keras", "--steps", "5", "--shape", "4,4,4,2"),
    ("--decay", "0.7", "--api", "layers", "--no-fused", "--batches", "3", "--steps", "2"),
    ("--decay", "0.3", "--api", "nn", "--updates", "update_ops", "--shape", "8,16,16,4"),
]


@pytest.mark.parametrize("args", CONFIGURATIONS, ids=" ".join)
def test_same_arguments_same_bytes_in_two_processes(args):
    runs = [subprocess.Popen([sys.executable, SCRIPT, *args, "--json", "-"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, PYTHONHASHSEED=str(hash_seed)))
            for hash_seed in (1, 2)]  # at the same time: two cores
    (first, error), (second, _) = [run.communicate() for run in runs]
    assert [run.returncode for run in runs] == [0, 0], error.decode()
    assert first == second
    # ...and it is the measurement asked for, not an empty document.
    results = json.loads(first)["results"]
    assert [r["config"]["decay"] for r in results] == \
        [float(v) for k, v in zip(args, args[1:]) if k == "--decay"]
    assert all(r["trajectory"]["moving_mean"] for r in results)
