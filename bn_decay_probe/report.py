"""Renders ProbeResults: a text report in the blog experiment's spirit, an HTML table, a JSON
document, and the notes the runner stores in each result (measured_notes). Text fits the
terminal (output_width): tables fold, long lines wrap.

Every number shown is either read from the result (a measurement) or computed by ``theory``
from the result's inputs and labelled as the rule's prediction.
"""
from __future__ import annotations

import html
import json
import re
import shutil
import sys
import textwrap
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import __version__, theory
from .result import SNAPSHOTS, ProbeResult, short_name

SNAPSHOT_TITLES = ("before train", "after train", "before test", "after test")
RULE_TITLE = "rule after train"
RULE_LEGEND = ("rule after train = decay * moving + (1 - decay) * batch statistic at every "
               "step (numpy, float64; variance biased, or x n/(n-1) when fused)")
DEFAULT_TOL = 0.01  # in output units: the train output has unit variance per channel
_FULL_ARRAYS_UP_TO = 64  # elements: small inputs are printed whole, as the blog experiment did
_TRAJECTORY_ROWS = 12
PIPE_WIDTH = 100  # columns of text output when stdout is not a terminal (pipes, files, CI logs)
_MIN_WIDTH = 40  # a narrower terminal still gets tables this wide
_VECTOR_LINE = re.compile(r"^[a-z][a-z0-9 ()]*:\s{2,}\[")  # "input:      [1, 2, ...]"


def output_width(stream: Any = None) -> int:
    """Columns text output may use: the terminal's width when ``stream`` (default stdout) is a
    terminal, else 100."""
    stream = sys.stdout if stream is None else stream
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        terminal = False
    if not terminal:
        return PIPE_WIDTH
    return max(_MIN_WIDTH, shutil.get_terminal_size((PIPE_WIDTH, 24)).columns)


def _width(width: Optional[int]) -> int:
    """``width`` of a render_* call: None is output_width(), 0 means no limit."""
    return output_width() if width is None else width


def _wrap(line: str, width: int) -> List[str]:
    """``line`` in lines of at most ``width`` columns, broken at spaces: a vector continues
    under its '[', anything else two columns right of the line's own indentation."""
    if not width or len(line) <= width:
        return [line]
    vector = _VECTOR_LINE.match(line)
    indent = " " * (vector.end() if vector else len(line) - len(line.lstrip(" ")) + 2)
    if len(indent) > width // 2:
        indent = "  "
    if " | " in line:  # "decay 0.9 | fused yes | ...": break between the fields first
        lines = [""]
        for field in line.split(" | "):
            joined = lines[-1] + " | " + field if lines[-1].strip() else lines[-1] + field
            if len(joined) <= width:
                lines[-1] = joined
            elif len(indent + field) <= width and lines[-1].strip():
                lines[-1] += " |"
                lines.append(indent + field)
            else:
                break
        else:
            return lines
    glued = line.replace(" = ", "\0=\0")  # "n = 16" stays on one line
    return [part.replace("\0", " ") for part in textwrap.wrap(
        glued, width, subsequent_indent=indent, break_long_words=False,
        break_on_hyphens=False)] or [line]


def fit_lines(lines: Sequence[str], width: int) -> str:
    return "\n".join(wrapped for line in lines for wrapped in _wrap(line, width))


def _paragraph(text: str, width: int, indent: str = "") -> List[str]:
    """Prose (legends, footnotes) filled to ``width``, continuation lines under ``indent``."""
    if not width:
        return [text]
    return textwrap.wrap(text, width, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)


def _num(value: float) -> str:
    return "%.7g" % value  # float32 carries about 7 significant digits


def _vector(values: np.ndarray) -> str:
    return "[" + ", ".join(_num(v) for v in np.ravel(values)) + "]"


def _rows(result: ProbeResult) -> List[List[str]]:
    predicted = {name: values[-1] for name, values in result.predicted_trajectory().items()}
    train_variables = result.branch_variables["train"]
    rows = []
    for full, label in result.labels.items():
        rule = predicted.get(short_name(full)) if full in train_variables else None
        for channel in range(np.size(result.snapshots["before_train"][full])):
            row = [label, str(channel)]
            row += [_num(np.ravel(result.snapshots[s][full])[channel]) for s in SNAPSHOTS]
            row.append("" if rule is None else _num(rule[channel]))
            rows.append(row)
    return rows


def fold_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 2,
           width: int = 0, keep: int = 1, pairs: bool = False) -> List[str]:
    """Columns aligned (the first ``left`` to the left, numbers to the right). A table wider
    than ``width`` folds into several, one under the other, each repeating the first ``keep``
    columns (the row's key) with as many of the others as fit; with ``pairs``, a measured
    column and the "rule" column after it stay together."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: Sequence[str], columns: Sequence[int]) -> str:
        return "  ".join(r[i].ljust(widths[i]) if i < left else r[i].rjust(widths[i])
                         for i in columns).rstrip()

    units: List[List[int]] = []
    for column in range(keep, len(header)):
        if pairs and header[column] == "rule" and units:
            units[-1].append(column)
        else:
            units.append([column])
    parts: List[List[int]] = [[]]
    used = sum(widths[:keep]) + 2 * keep
    for unit in units:
        size = sum(widths[c] + 2 for c in unit)
        if width and parts[-1] and used + size - 2 > width:
            parts.append([])
            used = sum(widths[:keep]) + 2 * keep
        parts[-1] += unit
        used += size
    lines: List[str] = []
    for part in parts:
        columns = list(range(keep)) + part
        lines += ([""] if lines else []) + [line(header, columns)]
        lines += [line(r, columns) for r in rows]
    return lines


def _describe(result: ProbeResult, decays: str = "") -> List[str]:
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
    device = ", ".join(result.device.ran_on) or "(no op traced)"
    lines = [
        "%s%s | fused %s (%s) | %s | epsilon %g (graph: %s) | input %s %s"
        % (decays or "decay %g" % c.decay, options, "yes" if result.fused else "no",
           requested, steps, c.epsilon, _num(result.epsilon["train"]), list(c.shape), source),
        "ran on %s (device %s%s) | TensorFlow %s"
        % (device, c.device, ": " + result.device.notice if result.device.notice else "",
           result.versions["tensorflow"]),
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


def measured_notes(result: ProbeResult) -> Tuple[str, ...]:
    """Measured facts a reader could miss in the table, for ``ProbeResult.notes``: what the
    float32 cast of the inputs changed, update ops that did not run, one value per channel,
    batch variance below epsilon, float32 overflow in the batch statistics, non-finite values.
    """
    notes = list(result.config.cast_notes)
    if "moving_variance" not in result.batch_statistics:
        notes.append("the train branch has no moving-average update op: nothing updates "
                     "moving_mean or moving_variance (api %r, trainable=%s)"
                     % (result.config.api, result.config.trainable))
        return tuple(notes + list(_non_finite(result)))
    if result.decay < 1 and not result.moving_statistics_updated:
        notes.append("the train phase did not change moving_mean or moving_variance: their "
                     "update ops did not run (updates %r, api %r)"
                     % (result.config.updates, result.config.api))
    last = result.config.train_inputs()[-1]
    fed = result.batch_statistics["moving_variance"]
    if theory.elements_per_channel(last.shape) == 1:
        notes.append("one value per channel (N*H*W = 1): the biased batch variance is 0 and "
                     "Bessel's n/(n-1) is undefined; the %s fed moving_variance %s on %s"
                     % ("fused kernel" if result.fused else "non-fused path (tf.nn.moments)",
                        _vector(fed), ", ".join(result.device.ran_on) or result.device.target))
    train = result.outputs["train"]
    beta = result.after["train"]["beta"]
    low = [c for c, v in enumerate(fed) if np.isfinite(v) and v < result.epsilon["train"]]
    if low:
        notes.append("batch variance below epsilon (%s) in channel(s) %s: fed %s, so epsilon "
                     "dominates sqrt(variance + epsilon) and the train output there stays "
                     "within %s of beta instead of having unit variance"
                     % (_num(result.epsilon["train"]), _channels(low), _vector(fed[low]),
                        _num(np.abs(train[..., low] - beta[low]).max())))
    for name, statistic in (("moving_mean", "mean"), ("moving_variance", "variance")):
        bad = [c for c, v in enumerate(result.batch_statistics[name]) if not np.isfinite(v)]
        if bad:
            reference = (theory.batch_mean(last) if name == "moving_mean"
                         else theory.fed_variance(last, result.fused))
            values = train[..., bad]
            notes.append("float32 overflow: the batch %s fed to %s is %s in channel(s) %s, where "
                         "numpy in float64 gives %s (float32 ends at %.4g); of the %d train "
                         "output values there, %d are 0 and %d NaN or inf"
                         % (statistic, name, _vector(result.batch_statistics[name][bad]),
                            _channels(bad), _vector(reference[bad]),
                            np.finfo(np.float32).max, values.size,
                            np.count_nonzero(values == 0), np.count_nonzero(~np.isfinite(values))))
    return tuple(notes + list(_non_finite(result)))


def _non_finite(result: ProbeResult) -> List[str]:
    labels = result.labels
    bad = sorted({labels[n] for values in result.snapshots.values()
                  for n, v in values.items() if not np.all(np.isfinite(v))})
    bad += ["%s output" % phase for phase, values in result.outputs.items()
            if not np.all(np.isfinite(values))]
    return ["non-finite values (NaN or inf) in %s" % ", ".join(bad)] if bad else []


def _channels(channels: Sequence[int]) -> str:
    return ", ".join(map(str, channels))


def _notes(result: ProbeResult) -> List[str]:
    return ["note: " + note for note in result.notes]


def _statistics(result: ProbeResult) -> List[str]:
    fed = result.batch_statistics
    if fed:
        lines = ["batch statistics fed to the moving averages (measured, last step): %s"
                 % ", ".join("%s %s" % (name.split("_")[1], _vector(values))
                             for name, values in fed.items())]
    else:
        lines = ["the train branch has no moving-average update op: nothing is fed to the "
                 "moving averages"]
    last = result.config.train_inputs()[-1]
    n = theory.elements_per_channel(last.shape)
    lines.append("numpy on that step's input: mean %s, biased variance %s, x n/(n-1) %s (n = %d)"
                 % (_vector(theory.batch_mean(last)), _vector(theory.batch_variance(last)),
                    _vector(theory.batch_variance(last, unbiased=True)) if n > 1
                    else "undefined", n))
    if result.batches is not None:
        population = theory.population_statistics(result.batches)
        after = result.after["train"]
        lines += [
            "over all %d batches (numpy): population mean %s, variance %s; the BN paper's "
            "estimate E[batch mean] %s, m/(m-1) E[batch variance] %s"
            % (len(result.batches), _vector(population["mean"]), _vector(population["variance"]),
               _vector(population["paper_mean"]), _vector(population["paper_variance"])),
            "moving averages after training (measured): mean %s, variance %s"
            % (_vector(after["moving_mean"]), _vector(after["moving_variance"]))]
    return lines


def _trajectory(result: ProbeResult, tol: float, width: int) -> List[str]:
    steps = result.config.train_steps
    if steps < 2 and result.batches is None:
        return [_convergence_line(result, tol)]
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
            row += [_vector(result.trajectory[name][step - 1]), _vector(predicted[name][step - 1])]
        if has_gap:
            row.append(_num(result.trajectory["gap"][step - 1]))
        rows.append(row)
    lines = ["", "after each train step (measured; rule = numpy):"]
    lines += fold_table(header, rows, 1, width, pairs=True)
    return lines + ([_convergence_line(result, tol)] if has_gap else [])


def _convergence_line(result: ProbeResult, tol: float) -> str:
    return ("test output within %g of train output: %s"
            % (tol, result.steps_to_converge(tol).describe()))


def _outputs(result: ProbeResult) -> List[str]:
    x, train, test = result.inputs, result.outputs["train"], result.outputs["test"]
    lines = []
    if x.size <= _FULL_ARRAYS_UP_TO and result.batches is None:
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
    if train.shape == test.shape:
        gap = np.abs(test.astype(np.float64) - train)
        lines.append("max |test output - train output| = %s" % _num(gap.max()))
    return lines


def render_text(result: ProbeResult, tol: float = DEFAULT_TOL,
                width: Optional[int] = None) -> str:
    """The blog experiment's printout, tidied: each variable before and after each phase, then
    outputs. ``width``: columns to fit (None: the terminal's, or 100 when stdout is not a
    terminal; 0: no limit); tables fold, long lines wrap."""
    width = _width(width)
    header = ["variable", "ch", *SNAPSHOT_TITLES, RULE_TITLE]
    lines = _describe(result) + [""] + fold_table(header, _rows(result), 2, width, keep=2)
    lines += [RULE_LEGEND] + _notes(result) + [""] + _statistics(result)
    lines += _trajectory(result, tol, width)
    return fit_lines(lines + [""] + _outputs(result), width)


def render_sweep(sweep: Any, tol: float = DEFAULT_TOL, width: Optional[int] = None) -> str:
    """A SweepResult as one table, a row per decay: the moving statistics after the last train
    step, measured and by the rule, and (one input) the test/train gap, measured and by the
    closed form, with the steps it took to get within ``tol`` and, as numbered footnotes, why
    a decay never gets there. ``width`` as for render_text."""
    width = _width(width)
    results = sweep.results
    first = results[0]
    steps = first.config.train_steps
    span = "%d decays from %g to %g" % (len(results), sweep.decays[0], sweep.decays[-1])
    lines = _describe(first, span if len(results) > 1 else "")
    lines += sorted({note for r in results for note in _notes(r)})
    header = ["decay", "moving_mean", "rule", "moving_variance", "rule"]
    if sweep.gap is not None:
        header += ["max |test - train|", "rule", "steps to %g" % tol]
    rows, reasons = [], []  # type: ignore[var-annotated]
    for r in results:
        rule = r.predicted_trajectory()
        after = r.after["train"]
        row = ["%g" % r.decay]
        for name in ("moving_mean", "moving_variance"):
            row += [_vector(after[name]), _vector(rule[name][-1])]
        if sweep.gap is not None:
            predicted = theory.predicted_gaps(r.inputs, r.decay, r.fused, r.epsilon["train"],
                                              steps, r.config.zero_debias)
            convergence = r.steps_to_converge(tol)
            row += [_num(r.trajectory["gap"][-1]), _num(predicted[-1]),
                    _convergence_cell(convergence, reasons)]
        rows.append(row)
    lines += ["", "after %d train step(s) (measured; rule = numpy):" % steps]
    lines += fold_table(header, rows, 1, width, pairs=True)
    if sweep.gap is not None:
        lines += _paragraph(
            "steps to %g: train steps until max |test - train| <= %g, measured (predicted by "
            "the closed form); '>%d': not within the steps run%s."
            % (tol, tol, steps, "; [n]: never, for the reason below" if reasons else ""),
            width, "  ")
        lines += _footnotes(reasons, "never within %g:" % tol, width)
    return fit_lines(lines, width)


def render_html(result: ProbeResult, tol: float = DEFAULT_TOL) -> str:
    """The variables table for Jupyter (ProbeResult._repr_html_), with the settings, notes and
    (one input) the steps to get within ``tol`` above it."""
    header = ["variable", "ch", *SNAPSHOT_TITLES, RULE_TITLE]
    head = "".join("<th>%s</th>" % html.escape(h) for h in header)
    body = "".join("<tr>%s</tr>" % "".join("<td>%s</td>" % html.escape(c) for c in row)
                   for row in _rows(result))
    caption = _describe(result) + _notes(result)
    if result.batches is None:
        caption.append(_convergence_line(result, tol))
    return ("<table><caption style='text-align:left'>%s</caption><thead><tr>%s</tr></thead>"
            "<tbody>%s</tbody></table><p><small>%s</small></p>"
            % ("<br>".join(html.escape(line) for line in caption), head, body,
               html.escape(RULE_LEGEND)))


def json_document(results: Sequence[ProbeResult],
                  tol: Optional[float] = None) -> Dict[str, Any]:
    """The CLI's --json: every result's to_dict() under "results"; with ``tol``, also "tol" and
    "steps_to_converge", one per result at that tol (with "why_never"; None for a result
    trained on batches)."""
    document: Dict[str, Any] = {"bn_decay_probe": __version__,
                                "results": [r.to_dict() for r in results]}
    if tol is not None:
        document["tol"] = tol
        document["steps_to_converge"] = [None if r.batches is not None
                                         else r.steps_to_converge(tol).to_dict()
                                         for r in results]
    return document


def to_json(document: Dict[str, Any]) -> str:
    # allow_nan=False: results encode NaN/inf as strings; anything else non-finite is a bug.
    return json.dumps(document, separators=(",", ":"), allow_nan=False)


def _convergence_cell(convergence: Any, reasons: List[str]) -> str:
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


def _footnotes(reasons: Sequence[str], title: str, width: int, first: int = 1) -> List[str]:
    if not reasons:
        return []
    lines = [title]
    for number, reason in enumerate(reasons, first):
        lines += _paragraph("  [%d] %s" % (number, reason), width, "      ")
    return lines


def render_matrix(matrix: Any, width: Optional[int] = None) -> str:
    """The semantics matrix as a table; each cell measured in the run that made ``matrix``.
    Footnotes say why a row is unavailable and why a "never" never converges. ``width`` as for
    render_text."""
    width = _width(width)
    header = ["api", "fused", "updates", "kernel", "updated", "variance fed",
              "test==train @decay 0", "shared"]
    header += ["steps @%g" % d for d in matrix.decays]
    rows, unavailable, reasons = [], [], []  # type: ignore[var-annotated]
    for row in matrix.rows:
        cells = [row.api, "yes" if row.fused_requested else "no",
                 row.updates + ("" if row.share_variables else " (unshared)")
                 + ("" if row.trainable else " (trainable=False)")]
        m = row.measured
        if m is None:  # one footnote per distinct reason
            if row.unavailable not in unavailable:
                unavailable.append(row.unavailable)
            cells += ["unavailable [u%d]" % (unavailable.index(row.unavailable) + 1)]
            cells += [""] * (len(header) - 4)
        else:
            cells += ["fused" if m.fused else "non-fused", "yes" if m.updated else "NO",
                      m.variance,
                      "%s (%s)" % ("yes" if m.test_equals_train else "no",
                                   _num(m.gap_at_decay_0)),
                      "yes" if m.branches_share_variables else "NO"]
            cells += [_convergence_cell(m.convergence[d], reasons) for d in matrix.decays]
        rows.append(cells)
    versions = matrix.versions
    lines = ["semantics matrix: input %s uniform(0, 255) seed %d | TensorFlow %s"
             % (list(matrix.shape), matrix.seed, versions["tensorflow"]), ""]
    lines += fold_table(header, rows, 4, width, keep=3)
    lines.append("")
    for legend in (
            "updated: moving statistics changed by one train step at decay 0. variance fed: "
            "the variance that step fed to moving_variance, compared with numpy's biased and "
            "n/(n-1) values. test==train: max |test output - train output| after that step, "
            "'yes' within 1e-4. shared: the test branch reads only variables the train branch "
            "updates.",
            "steps @d: train steps until max |test - train| <= %g (output units), measured "
            "(predicted by the closed form); 'never': it cannot get there, for the reason "
            "[n] below; '>N': not within N = 3x the prediction." % matrix.tol):
        lines += _paragraph(legend, width, "  ")
    lines += _footnotes(reasons, "never within %g:" % matrix.tol, width)
    if unavailable:
        lines += ["unavailable with this TensorFlow:"]
        for number, reason in enumerate(unavailable, 1):
            lines += _paragraph("  [u%d] %s" % (number, reason), width, "       ")
    return fit_lines(lines, width)
