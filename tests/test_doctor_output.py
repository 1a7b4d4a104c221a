"""The doctor's pure parts, no TensorFlow: choosing the step counter, grouping and rendering a
100-layer diagnosis within 100 columns, natural order, NaN / inf in the table."""
import math

import numpy as np
import pytest

from bn_decay_probe.doctor import (NEVER_UPDATED, PARTLY_CONVERGED, Diagnosis, Finding,
                                   LayerSummary, Statistic, StepCount, render_diagnosis)
from bn_decay_probe.doctor.diagnose import natural_key
from bn_decay_probe.doctor.render import compact_layers, group_findings
from bn_decay_probe.checkpoints.step_counter import choose_step_count, is_step_counter_name


@pytest.mark.parametrize("name, expected", [
    ("global_step", True), ("tower_0/global_step", True), ("training/SGD/iter", True),
    ("optimizer/iter", True), ("training/Adam/iterations", True), ("step", True),
    ("model/step", False), ("iteration", False), ("conv/kernel", False)])
def test_step_counter_names(name, expected):
    assert is_step_counter_name(name) is expected


@pytest.mark.parametrize("counters, given, expected", [
    ({}, None, (None, None)),
    ({}, 7, (7, "given")),
    ({"global_step": 30, "training/SGD/iter": 4}, None, (30, "global_step")),
    ({"global_step": 30}, 12, (12, "given")),
    # global_step created but never passed to minimize(): the Keras counter counted.
    ({"global_step": 0, "training/SGD/iter": 4}, None, (4, "training/SGD/iter")),
    ({"global_step": 0}, None, (0, "global_step")),
    # Two optimizers (e.g. a GAN): the larger count, stated.
    ({"training/Adam/iter": 3, "training_1/Adam/iter": 5}, None, (5, "training_1/Adam/iter")),
    ({"step": 9, "optimizer/iter": 8}, None, (8, "optimizer/iter")),
])
def test_choose_step_count(counters, given, expected):
    count = choose_step_count(counters, given)
    assert (count.value, count.source) == expected
    assert dict(count.candidates) == counters


def test_natural_order():
    names = ["block_10_project_BN", "block_1_project_BN", "bn_Conv1", "block_2_project_BN"]
    assert sorted(names, key=natural_key) == ["block_1_project_BN", "block_2_project_BN",
                                              "block_10_project_BN", "bn_Conv1"]


def test_statistic_shows_nan_and_inf():
    assert Statistic.of(np.array([0.5, np.nan, 2.0, np.inf])).text() == "[0.5, 2] 1 NaN 1 inf"
    assert Statistic.of(np.array([np.nan, np.nan])).text() == "all NaN"
    assert Statistic.of(np.array([-np.inf, 1.0])).text() == "[1, 1] 1 -inf"
    stat = Statistic.of(np.array([np.nan]))
    assert math.isnan(stat.minimum) and stat.to_dict() == {"min": "NaN", "max": "NaN", "nan": 1,
                                                           "inf": 0, "-inf": 0}


def layer(name, decay=0.997):
    return LayerSummary(name, 64, "contrib", decay, "graph", (), Statistic.of(np.zeros(64)),
                        Statistic.of(np.ones(64)))


def big_diagnosis(count=100, findings_for=None):
    """``count`` layers with long slim-style names; NEVER_UPDATED on ``findings_for``."""
    names = ["resnet_v1_101/block%d/unit_%d/bottleneck_v1/conv%d/BatchNorm" % (b, u, c)
             for b in range(1, 5) for u in range(1, 10) for c in range(1, 4)][:count]
    chosen = names if findings_for is None else [names[i] for i in findings_for]
    findings = tuple(Finding(n, NEVER_UPDATED, "error", "same explanation " * 8,
                             "same fix " * 12) for n in chosen)
    return Diagnosis("checkpoint", "/data/runs/model.ckpt-4", StepCount(4, "global_step"), None,
                     0.05, tuple(layer(n) for n in names), findings, (), ())


def test_100_layers_one_cause_is_one_group():
    d = big_diagnosis()
    lines = render_diagnosis(d).splitlines()
    assert lines[0] == "FINDINGS: 100 finding(s) in 100 batch-norm layer(s): NEVER_UPDATED x100"
    assert "NEVER_UPDATED (error), 100 layer(s): all" in lines
    assert len(lines) < 15 and max(len(line) for line in lines) <= 100
    verbose = render_diagnosis(d, verbose=True).splitlines()
    assert max(len(line) for line in verbose) <= 100
    assert len(verbose) > 100  # the per-layer table
    # Every name whole (the table folds its columns instead), each with its code.
    table = verbose[[line.split() for line in verbose].index(
        ["layer", "ch", "decay", "moving_mean", "moving_variance"]):]
    assert [line.split()[0] for line in table[1:101]] == [s.name for s in d.layers]
    assert [line.split()[-1] for line in table[table.index("") + 2:]] == ["NEVER_UPDATED"] * 100


def test_a_subset_is_listed_compactly():
    d = big_diagnosis(findings_for=range(0, 100, 2))
    text = render_diagnosis(d)
    assert "NEVER_UPDATED (error), 50 layer(s): resnet_v1_101/{block1/unit_1/bottleneck_v1/" \
           "conv1," in text
    assert "... and " in text and "more}/BatchNorm" in text
    assert max(len(line) for line in text.splitlines()) <= 100
    assert compact_layers(["a/x/b", "a/y/b"], ["a/x/b", "a/y/b", "a/z/b"]) == "a/{x, y}/b"
    assert compact_layers(["bn_Conv1", "block_1_BN"], ["bn_Conv1", "block_1_BN", "x"]) == \
        "bn_Conv1, block_1_BN"


def test_groups_split_by_explanation():
    one = Finding("a", PARTLY_CONVERGED, "warning", "0.99**4 = 0.96 ...", "fix")
    two = Finding("b", PARTLY_CONVERGED, "warning", "0.999**4 = 0.996 ...", "fix")
    three = Finding("c", NEVER_UPDATED, "error", "never", "fix")
    groups = group_findings([one, two, three, Finding("d", PARTLY_CONVERGED, "warning",
                                                      "0.99**4 = 0.96 ...", "fix")])
    assert [[f.layer for f in g] for g in groups.values()] == [["c"], ["a", "d"], ["b"]]


def test_not_checked_comes_right_after_the_verdict():
    d = Diagnosis("checkpoint", "w", StepCount(None, None), None, 0.05, (layer("x", None),), (),
                  ("convergence (PARTLY_CONVERGED) of 1 layer(s): step count unknown",), ())
    lines = render_diagnosis(d).splitlines()
    assert lines[:2] == [
        "INCOMPLETE: no finding in 1 batch-norm layer(s), but not everything was checked",
        "not checked: convergence (PARTLY_CONVERGED) of 1 layer(s): step count unknown"]
    assert d.status == "incomplete" and not d.clean
