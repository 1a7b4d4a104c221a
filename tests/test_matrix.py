"""The semantics matrix: every cell of every row against an independent expectation."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bn_decay_probe import backend
from bn_decay_probe.probe.frameworks import FRAMEWORKS
from bn_decay_probe.probe.matrix import MATRIX_SHAPE, combinations, semantics_matrix
from bn_decay_probe.report import render_matrix
from conftest import Reference, backend_name, first_step_within, updates_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X = np.random.RandomState(0).uniform(0, 255, MATRIX_SHAPE).astype(np.float32)
ROWS = combinations()


@pytest.fixture(scope="module")
def matrix():
    return semantics_matrix(decays=(0.9,), tol=0.01, device="cpu")


def test_one_row_per_api_fused_updates_plus_unshared_and_untrainable(matrix):
    keys = [(r.api, r.fused_requested, r.updates, r.share_variables, r.trainable)
            for r in matrix.rows]
    assert len(keys) == 4 * 2 * 3 + 4 + 3 + 3 + 6 == len(set(keys))
    assert {(a, f, u) for a, f, u, share, trainable in keys if share and trainable} == {
        (a, f, u) for a in ("contrib", "layers", "keras", "nn") for f in (True, False)
        for u in ("inplace", "update_ops", "forgotten")} | {
        (a, False, "inplace") for a in ("keras3",) + tuple(FRAMEWORKS)}
    # Keras 3: non-fused, updating as it runs; shared, unshared and trainable=False; then each
    # framework beside TensorFlow once.
    assert keys[-9:] == [("keras3", False, "inplace", True, True),
                         ("keras3", False, "inplace", False, True),
                         ("keras3", False, "inplace", True, False)] + [
        (api, False, "inplace", True, True) for api in FRAMEWORKS]


@pytest.mark.parametrize("api", list(FRAMEWORKS))
def test_framework_row_cells(matrix, api):
    """The frameworks beside TensorFlow, against their rules: PyTorch feeds n/(n-1), the others
    the biased variance; Haiku's zero-debiased average and PyTorch's cumulative one hold the
    batch's statistics from the first step, whatever the decay."""
    row = [r for r in matrix.rows if r.api == api][0]
    if FRAMEWORKS[api].unavailable():
        assert row.measured is None and row.unavailable == FRAMEWORKS[api].unavailable()
        return
    m, ref = row.measured, Reference(X)
    unbiased = api.startswith("torch")
    assert (m.fused, m.updated, m.branches_share_variables) == (False, True, True)
    assert m.variance == ("n/(n-1)" if unbiased else "biased")
    gap = np.abs(ref.normalize(ref.mean, ref.fed_var(unbiased)) - ref.train_output()).max()
    assert m.gap_at_decay_0 == pytest.approx(gap, rel=1e-3, abs=1e-4)
    assert m.test_equals_train is not unbiased
    convergence = m.convergence[0.9]
    assert convergence.predicted == (1 if api in ("haiku", "torch-cumulative") else
                                     first_step_within(X, 0.9, unbiased, 0.01, 1000))
    assert abs(convergence.measured - convergence.predicted) <= 1


TF_ROWS = [i for i, r in enumerate(ROWS) if r[0] not in FRAMEWORKS]  # the others: below


@pytest.mark.parametrize("index", TF_ROWS, ids=["-".join(map(str, ROWS[i])) for i in TF_ROWS])
def test_row_cells(matrix, index):
    row = matrix.rows[index]
    if row.api == "keras3" and "keras3" not in backend.versions():
        assert row.measured is None and row.unavailable == (
            "api='keras3' needs TensorFlow 2.16-2.21, where tf.keras is Keras 3; found "
            "TensorFlow %s" % backend.tensorflow().__version__)
        return
    m = row.measured
    ref = Reference(X)
    ran = updates_run(row.api, row.updates, row.trainable)
    # TF 2.x tf.keras and Keras 3 with trainable=False normalize with the moving statistics in
    # training too.
    inference = not row.trainable and row.api in ("keras", "keras3") and backend_name() == "tf2"
    assert m.fused is row.fused_requested
    assert m.updated is ran
    assert m.variance == ("none" if inference else  # no update op built, nothing fed
                          "n/(n-1)" if row.fused_requested else "biased")
    assert m.branches_share_variables is row.share_variables
    # The test output after one decay-0 step uses the batch's statistics only when the update
    # ran on variables the test branch reads; otherwise it still uses (0, 1).
    if ran and row.share_variables:
        expected = ref.normalize(ref.mean, ref.fed_var(row.fused_requested))
    else:
        expected = ref.normalize(np.zeros(3), np.ones(3))
    train = expected if inference else ref.train_output()
    gap = np.abs(expected - train).max()
    assert m.gap_at_decay_0 == pytest.approx(gap, rel=1e-3, abs=1e-4)
    assert m.test_equals_train is (inference or
                                   (ran and row.share_variables and not row.fused_requested))
    convergence = m.convergence[0.9]
    assert convergence.predicted == first_step_within(X, 0.9, row.fused_requested, 0.01, 1000)
    if inference:
        assert convergence.measured == 1  # test == train from the start: both inference mode
    elif ran and row.share_variables:
        assert abs(convergence.measured - convergence.predicted) <= 1
    else:
        assert convergence.measured is None
        assert convergence.stopped.startswith("the variables stopped changing after step")


def test_matrix_json_is_strict_and_complete(matrix):
    data = json.loads(json.dumps(matrix.to_dict(), allow_nan=False))
    assert data["tol"] == 0.01 and data["decays"] == [0.9] and len(data["rows"]) == len(ROWS)
    assert set(data["rows"][0]["measured"]["steps_to_converge"]["0.9"]) == {
        "tol", "measured", "predicted", "steps_run", "stopped", "why_never"}


def test_cli_matrix_end_to_end():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "run_experiment.py"), "--matrix",
                          "--decay", "0.5", "--device", "cpu"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("semantics matrix: input [4, 8, 8, 3] uniform(0, 255) seed 0")
    assert max(len(line) for line in lines) <= 100  # a pipe: the table folds
    # The row's parts, each after the row's key (api, fused, updates).
    keras = [line.split()[3:] for line in lines if line.split()[:3] == ["keras", "yes",
                                                                        "update_ops"]]
    assert sum(keras, []) == ["fused", "NO", "n/(n-1)", "no", "(253.0246)", "yes", "never", "(8)",
                              "[1]"]
    notes = " ".join(out.stdout[out.stdout.index("never within 0.01:"):].split())
    assert "[1] the update ops never ran" in notes


def test_every_never_says_why(matrix):
    for row in matrix.rows:
        if row.measured is None:
            continue
        m, reason = row.measured, row.measured.convergence[0.9].why_never
        if m.convergence[0.9].measured is not None:
            assert reason == ""
        elif not row.share_variables:
            assert reason.startswith("the test branch reads its own copy of the variables")
        else:
            assert not m.updated
            assert reason.startswith(("the update ops never ran",
                                      "the train branch has no moving-average update op"))
    text = render_matrix(matrix, width=100)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "never within 0.01:" in text
