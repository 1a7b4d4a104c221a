"""The text report of a repair: the verdict, a row per layer (with the check's error), what was
left and why, what the check compares, the notes."""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from ..text import fit_lines, fold_table, output_width
from .result import RepairResult, error_text


def _num(value: float) -> str:
    return "%.4g" % value


def _range(values: Optional[np.ndarray]) -> str:
    if values is None or not np.size(values):
        return "-"
    return "[%s, %s]" % (_num(np.nanmin(values)), _num(np.nanmax(values)))


def render_repair(result: RepairResult, width: Optional[int] = None) -> str:
    """Human-readable report (what ``bn-decay-probe repair`` prints), in lines of at most
    ``width`` columns (None: the terminal's width, 100 when not a terminal; 0: no limit); a
    layer table wider than that folds, each part repeating the layer column."""
    width = output_width() if width is None else width
    r = result
    where = {"checkpoint": "checkpoint %s -> %s" % (r.checkpoint, r.out),
             "keras file": "%s -> %s" % (r.checkpoint, r.out), "keras": "Keras model"}
    head = where.get(r.source, "session graph") + " | input %s | %s | %d batch(es), %d row(s)" % (
        ", ".join(r.inputs) or "?",
        "batch norm in training mode" if r.source in ("keras", "keras file") else
        "switch %s" % (", ".join(r.switches) or "none (training mode only)"), r.batches, r.rows)
    header = ["layer", "ch", "values/ch", "moving_mean before -> after",
              "moving_variance before -> after"] + (["error before -> after"] if r.check else [])
    rows = []
    for layer in r.layers:
        if layer.repaired:
            rows.append([layer.name, str(layer.channels), str(layer.values),
                         "%s -> %s" % (_range(layer.mean_before), _range(layer.mean_after)),
                         "%s -> %s" % (_range(layer.variance_before),
                                       _range(layer.variance_after))])
            if r.check:
                rows[-1].append("%s -> %s" % (error_text(layer.error_before),
                                              error_text(layer.error_after)))
        else:
            rows.append([layer.name, str(layer.channels), "-",
                         "%s (left as it was)" % _range(layer.mean_before),
                         "%s (left as it was)" % _range(layer.variance_before)])
            if r.check:
                rows[-1].append("-")
    lines: List[str] = [head, r.verdict, ""] + fold_table(header, rows, len(header), width)
    skipped = r.skipped
    if skipped:
        lines.append("")
        lines += ["%s left as it was: %s" % (layer.name, layer.reason) for layer in skipped]
    noted = [layer for layer in r.layers if layer.notes]
    if noted:
        lines.append("")
        lines += ["%s: %s" % (layer.name, note) for layer in noted for note in layer.notes]
    if r.check:
        rows_checked = ("all %d row(s) of the data" % r.check.rows if r.check.all_data else
                        "the first %d batch(es), %d row(s)" % (r.check.batches, r.check.rows))
        (before_layer, before), (after_layer, after) = r.worst_error(False), \
            r.worst_error(True)
        lines += ["", "statistics error: %s run in inference mode with the statistics before, "
                  "then after; per layer, the RMS of its input normalized with its moving "
                  "statistics minus the same normalized with the input's own mean and "
                  "variance (the data through the layers above it, as inference runs them), "
                  "in units of the normalized output (0: the statistics are the data's); "
                  "worst before %s (%s), after %s (%s)"
                  % (rows_checked, error_text(before), before_layer, error_text(after),
                     after_layer)]
    lines += ["", "variance written: %s (every value of every batch pooled, divided by their "
              "number)" % r.variance_convention]
    lines += ["note: %s" % note for note in r.notes]
    return fit_lines(lines, width)
