"""A "never" explains itself: steps_to_converge, the text report, the sweep table and the JSON
say why the test output can never get within tol of the train output (the fused n/(n-1) floor
with its value, decay 1, update ops that never ran, unshared variables, one value per channel)
and what to change. The floor is computed here from the numpy reference, not by the package."""
import json

import numpy as np
import pytest

from bn_decay_probe import SweepResult, probe
from bn_decay_probe.report import render_sweep, render_text
from conftest import Reference, flat
from test_cli import run

SEED_X = np.random.RandomState(0).uniform(0, 255, (1, 4, 4, 1)).astype(np.float32)


def fused_floor(x):
    """max |test - train| once the moving statistics hold the batch's mean and its n/(n-1)
    variance: the closest the fused kernel's test output gets to the train output."""
    ref = Reference(x)
    return np.abs(ref.normalize(ref.mean, ref.unbiased_var) - ref.train_output()).max()


@pytest.fixture(scope="module")
def default_layer():
    return probe(0.9, steps=60, device="cpu")  # the blog experiment's input, n = 16


def test_fused_floor_above_tol_is_named_with_its_value(default_layer):
    floor = fused_floor(SEED_X)
    assert 0.0627 < floor < 0.0629  # 0.0628: above the default tol of 0.01
    c = default_layer.steps_to_converge(0.01)
    assert (c.measured, c.predicted) == (None, None)
    assert "n/(n-1) = 16/15" in c.why_never and "cannot fall below %.4g" % floor in c.why_never
    assert "above tol 0.01" in c.why_never
    assert "fused=False (--no-fused)" in c.why_never and "tol of at least %.4g" % floor in \
        c.why_never
    # A tol above the floor converges, and then there is nothing to explain.
    above = default_layer.steps_to_converge(floor * 1.01)
    assert above.predicted is not None and above.why_never == ""


def test_the_text_report_says_why(default_layer):
    text = flat(render_text(default_layer))
    assert ("test output within 0.01 of train output: measured not within 60 step(s), "
            "predicted never (tol 0.01); never, because the fused kernel feeds") in text


@pytest.mark.parametrize("kwargs, reason", [
    (dict(decay=1.0), "decay 1 keeps moving_mean at 0 and moving_variance at 1"),
    (dict(decay=0.5, updates="forgotten", api="layers"), "the update ops never ran"),
    (dict(decay=0.5, share_variables=False), "the test branch reads its own copy"),
    (dict(decay=0.5, shape=(1, 1, 1, 2)), "one value per channel (N*H*W = 1)"),
])
def test_each_cause_is_named(kwargs, reason):
    r = probe(steps=3, device="cpu", **kwargs)
    c = r.steps_to_converge(0.01)
    assert c.measured is None and reason in c.why_never
    assert ": use " in c.why_never or ": run " in c.why_never or ": build " in c.why_never


def test_a_layer_that_converges_has_no_reason():
    r = probe(0.5, steps=10, fused=False, device="cpu")  # non-fused: no floor
    c = r.steps_to_converge(0.01)
    assert c.measured is not None and c.why_never == ""
    slow = probe(0.99, steps=3, fused=False, device="cpu").steps_to_converge(0.01)
    assert slow.measured is None and slow.predicted > 3 and slow.why_never == ""  # just slow


def test_json_holds_the_reason_as_a_field():
    out = run("--decay", "0.5", "--decay", "1", "--no-fused", "--steps", "30", "--json", "-")
    assert out.returncode == 0, out.stderr
    document = json.loads(out.stdout)
    assert document["tol"] == 0.01 and [r["config"]["decay"] for r in document["results"]] == [
        0.5, 1.0]
    converged, frozen = document["steps_to_converge"]
    assert converged["measured"] is not None and converged["why_never"] == ""
    assert frozen["measured"] is None and frozen["why_never"].startswith("decay 1 keeps")


def test_sweep_table_footnotes_each_reason_once():
    results = tuple(probe(d, steps=3, device="cpu") for d in (0.5, 0.9, 1.0))
    text = render_sweep(SweepResult(results), width=100)
    lines = text.splitlines()
    cells = [line for line in lines if line.startswith(("0.5 ", "0.9 ", "1 "))
             and "(" in line and "[" in line.split(")")[-1]]
    assert len(cells) == 3
    assert "never within 0.01:" in lines
    notes = flat(text[text.index("never within 0.01:"):])
    assert notes.count("[1] the fused kernel feeds") == 1 and "[2] decay 1 keeps" in notes
