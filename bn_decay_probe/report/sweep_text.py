"""A SweepResult as text: one table, a row per decay."""
from __future__ import annotations

from typing import Any, Optional

from ..probe.config import DEFAULT_TOL
from ..text import fit_lines, fold_table, number, paragraph, resolve_width, vector
from .cells import convergence_cell, describe, footnotes, note_lines


def render_sweep(sweep: Any, tol: float = DEFAULT_TOL, width: Optional[int] = None) -> str:
    """A SweepResult as one table, a row per decay: the moving statistics after the last train
    step, measured and by the rule, and (one input) the test/train gap, measured and by the
    closed form, with the steps it took to get within ``tol`` and, as numbered footnotes, why
    a decay never gets there. ``width`` as for render_text."""
    width = resolve_width(width)
    results = sweep.results
    first = results[0]
    steps = first.config.train_steps
    span = "%d decays from %g to %g" % (len(results), sweep.decays[0], sweep.decays[-1])
    lines = describe(first, span if len(results) > 1 else "")
    lines += sorted({note for r in results for note in note_lines(r)})
    header = ["decay", "moving_mean", "rule", "moving_variance", "rule"]
    if sweep.gap is not None:
        header += ["max |test - train|", "rule", "steps to %g" % tol]
    rows, reasons = [], []  # type: ignore[var-annotated]
    for r in results:
        rule = r.predicted_trajectory()
        after = r.after["train"]
        row = ["%g" % r.decay]
        for name in ("moving_mean", "moving_variance"):
            row += [vector(after[name]), vector(rule[name][-1])]
        if sweep.gap is not None:
            predicted = r.predicted_gaps(steps)
            convergence = r.steps_to_converge(tol)
            row += [number(r.trajectory["gap"][-1]), number(predicted[-1]),
                    convergence_cell(convergence, reasons)]
        rows.append(row)
    lines += ["", "after %d train step(s) (measured; rule = numpy):" % steps]
    lines += fold_table(header, rows, 1, width, pairs=True)
    if sweep.gap is not None:
        lines += paragraph(
            "steps to %g: train steps until max |test - train| <= %g, measured (predicted by "
            "the closed form); '>%d': not within the steps run%s."
            % (tol, tol, steps, "; [n]: never, for the reason below" if reasons else ""),
            width, "  ")
        lines += footnotes(reasons, "never within %g:" % tol, width)
    return fit_lines(lines, width)
