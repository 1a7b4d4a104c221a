"""Renders ProbeResults: a text report in the seed's spirit, an HTML table, a JSON document.

Every number shown is either read from the result (a measurement) or computed by ``theory``
from the result's inputs, and then labelled as the rule's prediction.
"""
from __future__ import annotations

import html
import json
from typing import Any, Dict, List, Sequence

import numpy as np

from . import __version__, theory
from .result import SNAPSHOTS, ProbeResult

SNAPSHOT_TITLES = ("before train", "after train", "before test", "after test")
RULE_TITLE = "rule after train"
RULE_LEGEND = ("rule after train = decay**steps * before + (1 - decay**steps) * batch statistic "
               "(numpy, float64; variance biased, or x n/(n-1) when fused)")
_FULL_ARRAYS_UP_TO = 64  # elements: small inputs are printed whole, as the seed did


def _num(value: float) -> str:
    return "%.7g" % value  # float32 carries about 7 significant digits


def _rows(result: ProbeResult) -> List[List[str]]:
    predicted = theory.predicted_after_train(result.inputs, result.before["train"], result.decay,
                                             result.config.steps, result.fused)
    rows = []
    for name in result.snapshots["before_train"]:
        for channel in range(result.config.channels):
            row = [name, str(channel)]
            row += [_num(result.snapshots[label][name][channel]) for label in SNAPSHOTS]
            row.append(_num(predicted[name][channel]) if name in predicted else "")
            rows.append(row)
    return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)  # noqa: E731
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return [line(header)] + [line(r) for r in rows]


def _describe(result: ProbeResult) -> List[str]:
    c = result.config
    source = ("uniform(0, 255) drawn with seed %d" % c.seed if c.input_source == "seed"
              else "given (%s, held as float32)" % c.input_dtype)
    requested = {None: "TF default", True: "requested", False: "requested"}[c.fused]
    device = ", ".join(result.device.ran_on) or "(no op traced)"
    lines = [
        "decay %g | fused %s (%s) | steps %d | epsilon %g (graph: %s) | input %s %s"
        % (c.decay, "yes" if result.fused else "no", requested, c.steps, c.epsilon,
           _num(result.epsilon["train"]), list(c.shape), source),
        "ran on %s (device %s%s) | TensorFlow %s"
        % (device, c.device, ": " + result.device.notice if result.device.notice else "",
           result.versions["tensorflow"]),
    ]
    if result.device.ran_on and set(result.device.ran_on) != {result.device.target}:
        lines.append("note: built for %s, but soft placement ran ops on %s"
                     % (result.device.target, device))
    if result.branches_share_variables:
        lines.append("variables shared by train and test: %s"
                     % ", ".join("%s %s" % (v.name, list(v.shape)) for v in result.variables))
    else:
        lines.append("train and test do NOT share variables: train reads %s, test reads %s"
                     % (list(result.branch_variables["train"]),
                        list(result.branch_variables["test"])))
    return lines


def _statistics(result: ProbeResult) -> List[str]:
    x = result.inputs
    n = theory.elements_per_channel(x.shape)
    fed = result.batch_statistics
    return [
        "batch statistics fed to the moving averages (measured): mean %s, variance %s"
        % (_vector(fed["moving_mean"]), _vector(fed["moving_variance"])),
        "numpy on the same input: mean %s, biased variance %s, x n/(n-1) %s (n = %d)"
        % (_vector(theory.batch_mean(x)), _vector(theory.batch_variance(x)),
           _vector(theory.batch_variance(x, unbiased=True)) if n > 1 else "undefined", n),
    ]


def _vector(values: np.ndarray) -> str:
    return "[" + ", ".join(_num(v) for v in np.ravel(values)) + "]"


def _outputs(result: ProbeResult) -> List[str]:
    x, train, test = result.inputs, result.outputs["train"], result.outputs["test"]
    gap = np.abs(test.astype(np.float64) - train)
    lines = []
    if x.size <= _FULL_ARRAYS_UP_TO:
        for channel in range(result.config.channels):
            suffix = " (channel %d)" % channel if result.config.channels > 1 else ""
            for title, values in (("input", x), ("train output", train), ("test output", test)):
                lines.append("%-26s %s" % (title + suffix + ":", _vector(values[..., channel])))
    else:
        for channel in range(result.config.channels):
            lines.append("channel %d: train output mean %s std %s | test output mean %s std %s"
                         % (channel, _num(train[..., channel].mean()),
                            _num(train[..., channel].std()), _num(test[..., channel].mean()),
                            _num(test[..., channel].std())))
    lines.append("max |test output - train output| = %s" % _num(gap.max()))
    return lines


def render_text(result: ProbeResult) -> str:
    """The seed's printout, tidied: each variable before and after each phase, then outputs."""
    header = ["variable", "ch", *SNAPSHOT_TITLES, RULE_TITLE]
    lines = _describe(result) + [""] + _table(header, _rows(result)) + [RULE_LEGEND, ""]
    return "\n".join(lines + _statistics(result) + [""] + _outputs(result))


def render_html(result: ProbeResult) -> str:
    """The variables table for Jupyter (ProbeResult._repr_html_)."""
    header = ["variable", "ch", *SNAPSHOT_TITLES, RULE_TITLE]
    head = "".join("<th>%s</th>" % html.escape(h) for h in header)
    body = "".join("<tr>%s</tr>" % "".join("<td>%s</td>" % html.escape(c) for c in row)
                   for row in _rows(result))
    caption = "<br>".join(html.escape(line) for line in _describe(result))
    return ("<table><caption style='text-align:left'>%s</caption><thead><tr>%s</tr></thead>"
            "<tbody>%s</tbody></table><p><small>%s</small></p>"
            % (caption, head, body, html.escape(RULE_LEGEND)))


def json_document(results: Sequence[ProbeResult]) -> Dict[str, Any]:
    return {"bn_decay_probe": __version__, "results": [r.to_dict() for r in results]}


def to_json(results: Sequence[ProbeResult]) -> str:
    # allow_nan=False: a non-finite number must fail loudly here, never become invalid JSON.
    return json.dumps(json_document(results), separators=(",", ":"), allow_nan=False)
