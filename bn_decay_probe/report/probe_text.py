"""A ProbeResult as text for a terminal, in the blog experiment's spirit: each variable before
and after each phase next to the update rule's value, the notes, the batch statistics fed, the
trajectory and the outputs. Tables fold and long lines wrap to the width (text.output_width).

Every number shown is either read from the result (a measurement) or computed by ``theory``
from the result's inputs and labelled as the rule's prediction.
"""
from __future__ import annotations

from typing import Any, List, Optional

import numpy as np

from ..probe import theory
from ..probe.config import DEFAULT_TOL
from ..text import fit_lines, fold_table, number, resolve_width, vector
from .cells import (RULE_TITLE, SNAPSHOT_TITLES, convergence_line, describe,
                    note_lines, rule_legend, variable_rows)

_FULL_ARRAYS_UP_TO = 64  # elements: small inputs are printed whole, as the blog experiment did
_TRAJECTORY_ROWS = 12


def _statistics(result: Any) -> List[str]:
    fed = result.batch_statistics
    if fed:
        lines = ["batch statistics fed to the moving averages (measured, last step): %s"
                 % ", ".join("%s %s" % (name.split("_")[1], vector(values))
                             for name, values in fed.items())]
    else:
        lines = ["the train branch has no moving-average update op: nothing is fed to the "
                 "moving averages"]
    last = result.config.train_inputs()[-1]
    n = theory.elements_per_channel(last.shape)
    lines.append("numpy on that step's input: mean %s, biased variance %s, x n/(n-1) %s (n = %d)"
                 % (vector(theory.batch_mean(last)), vector(theory.batch_variance(last)),
                    vector(theory.batch_variance(last, unbiased=True)) if n > 1
                    else "undefined", n))
    if result.batches is not None:
        population = theory.population_statistics(result.batches)
        after = result.after["train"]
        lines += [
            "over all %d batches (numpy): population mean %s, variance %s; the BN paper's "
            "estimate E[batch mean] %s, m/(m-1) E[batch variance] %s"
            % (len(result.batches), vector(population["mean"]), vector(population["variance"]),
               vector(population["paper_mean"]), vector(population["paper_variance"])),
            "moving averages after training (measured): mean %s, variance %s"
            % (vector(after["moving_mean"]), vector(after["moving_variance"]))]
    return lines


def _trajectory(result: Any, tol: float, width: int) -> List[str]:
    steps = result.config.train_steps
    if steps < 2 and result.batches is None:
        return [convergence_line(result, tol)]
    picks = sorted({k for k in (1, 2, 3) if k <= steps} | {steps} |
                   {int(round(k)) for k in np.geomspace(1, steps, _TRAJECTORY_ROWS - 4)})
    predicted = result.predicted_trajectory()
    header = ["step", "moving_mean", "rule", "moving_variance", "rule"]
    has_gap = "gap" in result.trajectory
    if has_gap:
        header.append("max |test - train|")
    rows = []
    for step in picks:
        row = [str(step)]
        for name in ("moving_mean", "moving_variance"):
            row += [vector(result.trajectory[name][step - 1]), vector(predicted[name][step - 1])]
        if has_gap:
            row.append(number(result.trajectory["gap"][step - 1]))
        rows.append(row)
    lines = ["", "after each train step (measured; rule = numpy):"]
    lines += fold_table(header, rows, 1, width, pairs=True)
    return lines + ([convergence_line(result, tol)] if has_gap else [])


def _outputs(result: Any) -> List[str]:
    x, train, test = result.inputs, result.outputs["train"], result.outputs["test"]
    lines = []
    if x.size <= _FULL_ARRAYS_UP_TO and result.batches is None:
        for channel in range(result.config.channels):
            suffix = " (channel %d)" % channel if result.config.channels > 1 else ""
            for title, values in (("input", x), ("train output", train), ("test output", test)):
                lines.append("%-26s %s" % (title + suffix + ":", vector(values[..., channel])))
    else:
        for channel in range(result.config.channels):
            lines.append("channel %d: train output mean %s std %s | test output mean %s std %s"
                         % (channel, number(train[..., channel].mean()),
                            number(train[..., channel].std()), number(test[..., channel].mean()),
                            number(test[..., channel].std())))
    if train.shape == test.shape:
        gap = np.abs(test.astype(np.float64) - train)
        lines.append("max |test output - train output| = %s" % number(gap.max()))
    return lines


def render_text(result: Any, tol: float = DEFAULT_TOL,
                width: Optional[int] = None) -> str:
    """The blog experiment's printout, tidied: each variable before and after each phase, then
    outputs. ``width``: columns to fit (None: the terminal's, or 100 when stdout is not a
    terminal; 0: no limit); tables fold, long lines wrap."""
    width = resolve_width(width)
    header = ["variable", "ch", *SNAPSHOT_TITLES, RULE_TITLE]
    lines = describe(result) + [""] + fold_table(header, variable_rows(result), 2, width, keep=2)
    lines += [rule_legend(result)] + note_lines(result) + [""] + _statistics(result)
    lines += _trajectory(result, tol, width)
    return fit_lines(lines + [""] + _outputs(result), width)
