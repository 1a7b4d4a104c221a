"""What every text report of probe results shares: the settings lines, the variables table's
rows, the notes, a steps-to-converge cell and its footnotes. Reads results only through their
public attributes (no import of the result classes)."""
from __future__ import annotations

from typing import Any, List, Sequence

import numpy as np

from ..names import SNAPSHOTS, short_name
from ..probe.frameworks import FRAMEWORKS
from ..text import number, paragraph

SNAPSHOT_TITLES = ("before train", "after train", "before test", "after test")
RULE_TITLE = "rule after train"
RULE_LEGEND = ("rule after train = decay * moving + (1 - decay) * batch statistic at every "
               "step (numpy, float64; variance biased, or x n/(n-1) when fused)")


def rule_legend(result: Any) -> str:
    """RULE_LEGEND, or the rule of the framework the result measured."""
    framework = FRAMEWORKS.get(result.config.api)
    if framework is None:
        return RULE_LEGEND
    return "rule after train = %s (numpy, float64)" % framework.rule()


def variable_rows(result: Any) -> List[List[str]]:
    predicted = {name: values[-1] for name, values in result.predicted_trajectory().items()}
    train_variables = result.branch_variables["train"]
    rows = []
    for full, label in result.labels.items():
        rule = predicted.get(short_name(full)) if full in train_variables else None
        for channel in range(np.size(result.snapshots["before_train"][full])):
            row = [label, str(channel)]
            row += [number(np.ravel(result.snapshots[s][full])[channel]) for s in SNAPSHOTS]
            row.append("" if rule is None else number(rule[channel]))
            rows.append(row)
    return rows


def describe(result: Any, decays: str = "") -> List[str]:
    """The settings, the devices and the variables; ``decays`` stands in for the decay when
    the lines head a sweep."""
    c = result.config
    source = ("uniform(0, 255) drawn with seed %d" % c.seed if c.input_source == "seed"
              else "given (%s, held as float32)" % c.input_dtype)
    requested = "TF default" if c.fused is None else "requested"
    options = "" if (c.api, c.updates) == ("contrib", "inplace") else \
        " | api %s, updates %s" % (c.api, c.updates)
    options += "" if c.data_format == "NHWC" else " | %s" % c.data_format
    options += " | zero_debias" if c.zero_debias else ""
    options += " | trainable=False" if not c.trainable else ""
    steps = "steps %d" % c.steps if c.batches is None else \
        "steps %d x %d batches %s" % (c.steps, len(c.batches), list(c.batches.shape[1:]))
    framework = FRAMEWORKS.get(c.api)
    device = ", ".join(result.device.ran_on) or (
        "(no op traced)" if framework is None else result.device.target)
    kernel = ("fused %s (%s)" % ("yes" if result.fused else "no", requested) if framework is None
              else framework.layer)
    lines = [
        "%s%s | %s | %s | epsilon %g (%s: %s) | input %s %s"
        % (decays or "decay %g" % c.decay, options, kernel, steps, c.epsilon,
           "graph" if framework is None else "layer", number(result.epsilon["train"]),
           list(c.shape), source),
        "ran on %s (device %s%s) | %s"
        % (device, c.device, ": " + result.device.notice if result.device.notice else "",
           result.versions.get("framework") or "TensorFlow %s" % result.versions["tensorflow"]),
    ]
    if result.device.ran_on and set(result.device.ran_on) != {result.device.target}:
        lines.append("note: built for %s, but soft placement ran ops on %s"
                     % (result.device.target, device))
    shapes = {v.name: list(v.shape) for v in result.variables}
    if result.branches_share_variables:
        lines.append("variables shared by train and test: %s"
                     % ", ".join("%s %s" % (n, shapes[n]) for n in result.shared_variables))
        only_train = sorted(set(result.branch_variables["train"]) - set(result.shared_variables))
        if only_train:
            lines.append("train branch only: %s" % ", ".join(only_train))
    else:
        lines.append("train and test do NOT share variables: train reads %s, test reads %s"
                     % (list(result.branch_variables["train"]),
                        list(result.branch_variables["test"])))
    return lines


def note_lines(result: Any) -> List[str]:
    return ["note: " + note for note in result.notes]


def convergence_line(result: Any, tol: float) -> str:
    return ("test output within %g of train output: %s"
            % (tol, result.steps_to_converge(tol).describe()))


def convergence_cell(convergence: Any, reasons: List[str]) -> str:
    """"measured (predicted)", with a footnote number [n] into ``reasons`` (appended to when
    new) when it can never converge."""
    predicted = "never" if convergence.predicted is None else str(convergence.predicted)
    if convergence.measured is not None:
        measured = str(convergence.measured)
    elif convergence.stopped.startswith("the variables stopped") or convergence.why_never:
        measured = "never"
    else:
        measured = ">%d" % convergence.steps_run
    cell = "%s (%s)" % (measured, predicted)
    if convergence.why_never:
        if convergence.why_never not in reasons:
            reasons.append(convergence.why_never)
        cell += " [%d]" % (reasons.index(convergence.why_never) + 1)
    return cell


def footnotes(reasons: Sequence[str], title: str, width: int, first: int = 1) -> List[str]:
    if not reasons:
        return []
    lines = [title]
    for index, reason in enumerate(reasons, first):
        lines += paragraph("  [%d] %s" % (index, reason), width, "      ")
    return lines
