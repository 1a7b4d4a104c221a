"""The text report of a repair: the verdict, a row per layer, the gap per output, the notes."""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from ..text import fit_lines, fold_table, output_width
from .result import RepairResult


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
              "moving_variance before -> after"]
    rows = []
    for layer in r.layers:
        if layer.repaired:
            rows.append([layer.name, str(layer.channels), str(layer.values),
                         "%s -> %s" % (_range(layer.mean_before), _range(layer.mean_after)),
                         "%s -> %s" % (_range(layer.variance_before),
                                       _range(layer.variance_after))])
        else:
            rows.append([layer.name, str(layer.channels), "-",
                         "%s (left as it was)" % _range(layer.mean_before),
                         "%s (left as it was)" % _range(layer.variance_before)])
    lines: List[str] = [head, r.verdict, ""] + fold_table(header, rows, len(header), width)
    skipped = r.skipped
    if skipped:
        lines.append("")
        lines += ["%s left as it was: %s" % (layer.name, layer.reason) for layer in skipped]
    if r.gaps:
        first = r.gaps[0]
        lines += ["", "inference-mode minus training-mode output on the first %d batch(es) "
                  "(%d rows, run %s), RMS relative to the training-mode output's RMS (and "
                  "largest |difference|):" % (first.batches, first.rows, "as one batch"
                                              if first.together else "one by one")]
        for gap in r.gaps:
            lines.append("  %s: before %s, after %s (ratio %s); max %s -> %s" % (
                gap.output, _num(gap.relative_before), _num(gap.relative_after),
                _num(gap.ratio), _num(gap.max_before), _num(gap.max_after)))
    lines += ["", "variance written: %s (every value of every batch pooled, divided by their "
              "number)" % r.variance_convention]
    lines += ["note: %s" % note for note in r.notes]
    return fit_lines(lines, width)
