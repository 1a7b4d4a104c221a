"""The sweep engine's converge: steps to converge for many decays in one graph, every column
stopping as soon as its answer is decided; against the brute-force closed form, the per-decay
session engine's converge, and the sweep's own measured gaps; and the semantics matrix built on
it against the per-decay machinery."""
import dataclasses

import numpy as np
import pytest

from bn_decay_probe import sweep
from bn_decay_probe.probe import matrix
from bn_decay_probe.probe.engines import session as runner
from bn_decay_probe.probe.engines import sweep as sweep_runner
from bn_decay_probe.probe.engines.base import Engine
from bn_decay_probe.probe.engines.tf_graph import TFGraphEngine
from bn_decay_probe.probe.config import ProbeConfig
from conftest import channel_inputs, first_step_within

X = channel_inputs((4, 8, 8, 3))  # n = 256: the fused n/(n-1) gap stays below TOL
TOL = 0.01


def _config(**options):
    return ProbeConfig.create(decay=0.0, inputs=X, device="cpu", **options)


@pytest.mark.parametrize("options", [
    dict(api="nn"), dict(api="keras", fused=False), dict(api="layers", updates="update_ops"),
    dict(fused=False)], ids=lambda o: ",".join("%s=%s" % i for i in sorted(o.items())))
def test_converging_columns_stop_at_their_first_step_within_tol(options):
    decays = (0.0, 0.5, 0.9, 0.95)
    config = _config(**options)
    first, converged = sweep_runner.converge(config, decays, TOL, budget_factor=3)
    fused = first.fused
    for decay, c in zip(decays, converged):
        expected = first_step_within(X, decay, fused, TOL, 1000)
        assert abs(c.measured - expected) <= 1
        assert (c.steps_run, c.stopped, c.tol) == (c.measured, "", TOL)
        # The same measurement, one graph and one run per step per decay (runner.converge).
        alone = runner.converge(dataclasses.replace(config, decay=decay), TOL, 1000)
        assert (c.measured, c.predicted) == (alone.measured, alone.predicted)


def test_a_column_that_stops_changing_stops():
    """decay 1: the update multiplies by 1 - decay = 0, so the first step changes nothing; the
    column stops right there while the others run on."""
    first, converged = sweep_runner.converge(_config(), (1.0, 0.9), TOL, budget_factor=3)
    never, nine = converged
    assert (never.measured, never.steps_run) == (None, 1)
    assert never.stopped == "the variables stopped changing after step 0"
    assert nine.measured == nine.steps_run > 1
    assert first.updated == (False, True)


@pytest.mark.parametrize("options, message", [
    (dict(updates="forgotten"), "the variables stopped changing after step 0"),
    (dict(api="keras", updates="update_ops"), "the variables stopped changing after step 0"),
    (dict(share_variables=False), "the variables stopped changing after step 0 for the outputs: "
                                  "a train step writes no variable either output reads"),
    # TF 2.x Keras wires the moving statistics into its fused training kernel, which ignores
    # them (graph.variables_feeding): still nothing the outputs read changes.
    (dict(api="keras", share_variables=False), "the variables stopped changing after step 0 "
                                               "for the outputs: a train step writes no "
                                               "variable either output reads")])
def test_a_gap_that_cannot_change_is_decided_after_one_step(options, message):
    """Updates that never run change nothing; unshared branches keep updating the train
    branch's statistics, which neither output reads: the gap after step 1 is every step's."""
    first, converged = sweep_runner.converge(_config(**options), (0.0, 0.9, 0.999), TOL, 3)
    for c in converged:
        assert (c.measured, c.steps_run, c.stopped) == (None, 1, message)
    # Measured at step 1: the unshared train branch did update (decay 0 moved it).
    assert first.updated[0] is ("share_variables" in options)
    assert first.branches_share_variables is ("share_variables" not in options)


def test_the_budget_ends_a_column():
    predicted = sweep_runner.converge(_config(), (0.99,), TOL, 3)[1][0].predicted
    c = sweep_runner.converge(_config(), (0.99,), TOL, budget_factor=0.5)[1][0]
    assert (c.measured, c.stopped, c.steps_run) == (None, "limit reached",
                                                    int(np.ceil(0.5 * predicted)))


@pytest.mark.parametrize("fused", [True, False])
def test_a_tol_on_a_measured_gap_is_decided_by_the_exact_gap(fused):
    """tol set to the very gap a step measured (float64, from the outputs): the column
    converges at that step, or at an earlier one within it, as the sweep's gaps say; the
    float32 screen alone could not tell."""
    decays = (0.5, 0.8)
    swept = sweep(decays, steps=12, inputs=X, fused=fused, device="cpu")
    for k in (2, 5, 11):
        tol = float(swept[1].trajectory["gap"][k])
        expected = [int(np.nonzero(r.trajectory["gap"] <= tol)[0][0]) + 1 for r in swept]
        converged = sweep_runner.converge(_config(fused=fused), decays, tol, 3)[1]
        assert [c.measured for c in converged] == expected


def test_the_screen_defers_to_the_exact_gaps_only_when_unsure():
    screen = sweep_runner._Screen(0.01)
    calls = []

    def exact():
        calls.append(1)
        return np.array([1.0, 2.0, 3.0])

    f32 = lambda *v: np.array(v, np.float32)  # noqa: E731
    # the sums of the differences: NaN where a difference is NaN
    flags = lambda *nan: np.array([np.nan if n else 1.0 for n in nan], np.float32)  # noqa: E731
    assert screen.gaps(f32(0.5, 0.001, 1e30), flags(0, 0, 0), {}, exact) == pytest.approx(
        [0.5, 0.001, 1e30]) and not calls
    nan = screen.gaps(f32(0.5, 0.0, 0.2), flags(0, 1, 0), {}, exact)
    assert np.isnan(nan[1]) and not calls  # NaN is NaN, exactly known
    for unsure in (0.01, np.nextafter(np.float32(0.01), 1), 0.0, np.inf, 1e-40):
        calls.clear()
        assert screen.gaps(f32(0.5, unsure, 0.2), flags(0, 0, 0), {}, exact) == [1, 2, 3]
        assert calls == [1]
    calls.clear()  # a decided column's gap no longer matters
    assert screen.gaps(f32(0.5, 0.01, 0.2), flags(0, 0, 0), {1: None}, exact)[0] == 0.5
    assert not calls


ROWS = [("contrib", True, "inplace", True, True), ("keras", False, "update_ops", True, True),
        ("nn", True, "forgotten", True, True), ("layers", True, "inplace", False, True),
        ("keras", True, "inplace", True, False), ("contrib", False, "update_ops", True, True)]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: "-".join(map(str, r)))
def test_a_matrix_row_equals_the_per_decay_machinery(row, monkeypatch):
    """The same row measured by the sweep graph and by a probe and a convergence run per
    decay (the path for layers the sweep does not run)."""
    arguments = (row + ((0.5, 0.9), TOL, (4, 8, 8, 3), 0, "cpu"))
    swept = matrix.measure_row(*arguments)
    monkeypatch.setattr(TFGraphEngine, "matrix_rows", Engine.matrix_rows)
    alone = matrix.measure_row(*arguments)
    if alone.measured is None:
        assert swept == alone
        return
    a, b = swept.measured, alone.measured
    assert (a.fused, a.updated, a.variance, a.test_equals_train, a.branches_share_variables) \
        == (b.fused, b.updated, b.variance, b.test_equals_train, b.branches_share_variables)
    assert a.gap_at_decay_0 == pytest.approx(b.gap_at_decay_0, rel=1e-6, abs=1e-6)
    for decay in (0.5, 0.9):
        c, d = a.convergence[decay], b.convergence[decay]
        assert (c.measured, c.predicted) == (d.measured, d.predicted)
        # The sweep also stops a gap nothing can change (unshared), which the per-decay run
        # only stops once the train branch's own statistics stop changing, or at its budget.
        if d.stopped.startswith("the variables stopped"):
            assert c.stopped.startswith("the variables stopped")
        if c.stopped.endswith("either output reads"):
            assert d.stopped == "limit reached" or d.stopped.startswith("the variables stopped")
