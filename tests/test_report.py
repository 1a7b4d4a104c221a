"""The text and HTML reports show measured values and the rule's prediction (checked against
the independent reference)."""
import json

import numpy as np
import pytest

from bn_decay_probe import probe
from bn_decay_probe.report import json_document, render_html, render_text
from bn_decay_probe.values import to_json
from conftest import Reference, channel_inputs, tf_version

SHAPE = (2, 3, 5, 3)


@pytest.fixture(scope="module")
def result():
    return probe(decay=0.9, inputs=channel_inputs(SHAPE), fused=False, steps=4, device="cpu")


def rows(text, variable):
    return [[float(v) for v in line.split()[2:]] for line in text.splitlines()
            if line.startswith(variable + " ")]


def test_one_row_per_variable_and_channel_with_the_rules_prediction(result):
    text = render_text(result)
    ref = Reference(channel_inputs(SHAPE))
    mean, var = ref.moving(0.9, 4, fused=False)
    for name, expected in (("moving_mean", mean), ("moving_variance", var)):
        table = rows(text, name)
        assert len(table) == 3
        for channel, numbers in enumerate(table):
            measured = result.after["train"][name][channel]
            assert numbers[1] == pytest.approx(measured, rel=1e-6)  # "after train" column
            assert numbers[4] == pytest.approx(expected[channel], rel=1e-6)  # "rule" column
            assert numbers[1] == pytest.approx(numbers[4], rel=1e-5)
    assert [r[:4] for r in rows(text, "beta")] == [[0, 0, 0, 0]] * 3


def test_header_names_what_ran(result):
    first, second, shared = render_text(result, width=0).splitlines()[:3]  # lines unwrapped
    assert first == ("decay 0.9 | fused no (requested) | steps 4 | epsilon 0.001 (graph: 0.001) "
                     "| input [2, 3, 5, 3] given (float32, held as float32)")
    assert second == "ran on /device:CPU:0 (device cpu) | TensorFlow %s" % tf_version()
    assert shared.startswith("variables shared by train and test: probe/BatchNorm/beta:0 [3]")


def test_small_inputs_are_printed_whole_large_ones_summarized(result):
    def starts(text, prefix):
        return any(line.startswith(prefix) for line in text.splitlines())

    small = render_text(probe(decay=0.5, device="cpu"))
    assert starts(small, "train output:") and not starts(small, "channel 0: train output mean")
    large = render_text(result)  # 90 values
    assert starts(large, "channel 2: train output mean") and not starts(large, "train output:")
    gap = np.abs(result.outputs["test"].astype(np.float64) - result.outputs["train"]).max()
    assert "max |test output - train output| = %.7g" % gap in large


def test_html_table(result):
    page = render_html(result)
    assert page.startswith("<table>") and page.count("<tr>") == 1 + 3 * 3
    assert "<th>rule after train</th>" in page


def test_json_document_is_strict_json(result):
    document = json.loads(to_json(json_document([result, result])))
    assert len(document["results"]) == 2 and document["bn_decay_probe"]
