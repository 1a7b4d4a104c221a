"""A diagnosis as text for a terminal: the verdict and what was not checked first, then one
block per group of identical findings (one explanation and fix, the count, the layers compactly),
then notes; ``verbose`` adds the per-layer table. Lines fit the width (text.output_width)."""
from __future__ import annotations

import functools
import os
from collections import Counter, OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

from ..text import resolve_width, wrap
from .diagnosis import (CODES, DECAY_FROM_CONFIG, DECAY_FROM_GRAPH, DECAY_GIVEN, Diagnosis,
                        Finding, LayerSummary)

_LIST_LINES = 3  # layer-list lines per group before "... and N more"


def render_diagnosis(diagnosis: Diagnosis, verbose: bool = False,
                     width: Optional[int] = None) -> str:
    """The diagnosis as text in lines of at most ``width`` columns (None: the terminal's width,
    100 when not a terminal)."""
    d, width = diagnosis, resolve_width(width)
    _wrap = functools.partial(wrap, width=width)
    lines = _wrap(verdict(d), first="", rest="  ")
    for reason in d.not_checked:
        lines += _wrap(reason, first="not checked: ", rest="  ")
    lines += _join_wrapped(_context(d), " | ", width)
    for (code, severity, explanation, fix), group in group_findings(d.findings).items():
        lines.append("")
        names = [f.layer for f in group]
        lines += _wrap(compact_layers(names, [s.name for s in d.layers], width),
                       first="%s (%s), %d layer(s): " % (code, severity, len(group)), rest="  ")
        lines += _wrap(explanation, first="  ", rest="  ")
        details = [f for f in group if f.detail]
        if details and not verbose:
            lines += _wrap("%s: %s%s" % (details[0].layer, details[0].detail,
                                         " (and %d more: --verbose)" % (len(details) - 1)
                                         if len(details) > 1 else ""),
                           first="  e.g. ", rest="    ")
        lines += _wrap(fix, first="  fix: ", rest="    ")
    if verbose:
        lines += [""] + layer_table(d, width)
        details = [f for f in d.findings if f.detail]
        if details:
            lines.append("")
            for f in details:
                lines += _wrap(f.detail, first="%s %s: " % (f.layer, f.code), rest="    ")
    if d.notes:
        lines.append("")
        for note in d.notes:
            lines += _wrap(note, first="note: ", rest="  ")
    return "\n".join(lines)


def verdict(d: Diagnosis) -> str:
    """The first line: what the user may act on."""
    layers = "%d batch-norm layer(s)" % len(d.layers)
    if d.findings:
        counts = Counter(f.code for f in d.findings)
        by_code = ", ".join("%s x%d" % (code, counts[code]) for code in CODES if counts[code])
        text = "FINDINGS: %d finding(s) in %s: %s" % (len(d.findings), layers, by_code)
        return text + ("; and not everything was checked" if d.not_checked else "")
    if d.not_checked:
        return "INCOMPLETE: no finding in %s, but not everything was checked" % layers
    return "clean: no finding in %s" % layers


def _context(d: Diagnosis) -> List[str]:
    where = ("%s %s" % (d.file_format, d.path) if d.file_format else
             "checkpoint %s" % d.path if d.source == "checkpoint" else "graph") + \
        (" (with its .meta graph)" if d.graph_source else "")
    return [where, d.steps.text(), _decay_text(d.layers), "threshold %g" % d.threshold]


def _join_wrapped(parts: Sequence[str], separator: str, width: int) -> List[str]:
    """The parts joined by ``separator``, a new line where the next part would not fit."""
    lines = [""]
    for part in parts:
        candidate = lines[-1] + (separator if lines[-1] else "") + part
        if not width or len(candidate) <= width or not lines[-1]:
            lines[-1] = candidate
        else:
            lines.append(part)
    return [line for chunk in lines for line in wrap(chunk, width, "", "  ")]


def _decay_text(layers: Sequence[LayerSummary]) -> str:
    """"decay 0.999 from the graph" or a count per (decay, source)."""
    counts: "OrderedDict[Tuple, int]" = OrderedDict()
    for layer in layers:
        key = (layer.decay_source, layer.decay)
        counts[key] = counts.get(key, 0) + 1
    words = {DECAY_GIVEN: "given", DECAY_FROM_GRAPH: "from the graph",
             DECAY_FROM_CONFIG: "(momentum) from the model config"}
    parts = []
    for (source, decay), count in counts.items():
        text = ("decay %.6g %s" % (decay, words[source]) if decay is not None
                else "decay unknown")
        parts.append(text if len(counts) == 1 else "%s (%d)" % (text, count))
    return ", ".join(parts) or "decay unknown"


def group_findings(findings: Sequence[Finding]
                   ) -> "OrderedDict[Tuple[str, str, str, str], List[Finding]]":
    """Findings with the same code, severity, explanation and fix, in CODES order, each group in
    the findings' (network) order."""
    groups: "OrderedDict[Tuple[str, str, str, str], List[Finding]]" = OrderedDict()
    for f in sorted(findings, key=lambda f: CODES.index(f.code)):
        groups.setdefault((f.code, f.severity, f.explanation, f.fix), []).append(f)
    return groups


def compact_layers(names: Sequence[str], every: Sequence[str], width: int = 100) -> str:
    """"all 53" when ``names`` are all layers; else the names, their common scope prefix and
    suffix written once ("net/{a, b/c}/BatchNorm"), cut after a few lines."""
    if len(names) == len(every) and set(names) == set(every):
        return "all"
    prefix, suffix, middles = _factor(names)
    limit = _LIST_LINES * (width or 100) - 60
    shown: List[str] = []
    for middle in middles:
        if sum(len(m) + 2 for m in shown) + len(middle) > limit:
            break
        shown.append(middle)
    rest = len(middles) - len(shown)
    body = ", ".join(shown) + (", ... and %d more" % rest if rest else "")
    if prefix or suffix:
        return "%s{%s}%s" % (prefix, body, suffix) if len(middles) > 1 else names[0]
    return body


def _factor(names: Sequence[str]) -> Tuple[str, str, List[str]]:
    """Common leading and trailing whole scopes of the names, and what is left of each."""
    if len(names) < 2:
        return "", "", list(names)
    parts = [name.split("/") for name in names]
    shortest = min(len(p) for p in parts)
    head = 0
    while head < shortest - 1 and all(p[head] == parts[0][head] for p in parts):
        head += 1
    tail = 0
    while tail < shortest - 1 - head and all(p[-1 - tail] == parts[0][-1 - tail] for p in parts):
        tail += 1
    prefix = "".join(part + "/" for part in parts[0][:head])
    suffix = "".join("/" + part for part in parts[0][len(parts[0]) - tail:])
    middles = ["/".join(p[head:len(p) - tail]) for p in parts]
    return prefix, suffix, middles


def layer_table(d: Diagnosis, width: int = 100) -> List[str]:
    """One row per layer: name, checkpoint key (object checkpoints), channels, decay (g: graph,
    c: a Keras model config, d: given), each moving statistic's range with its NaN / inf count, and the finding codes."""
    codes: Dict[str, List[str]] = {}
    for f in d.findings:
        codes.setdefault(f.layer, []).append(f.code)
    prefix, suffix, middles = _factor([s.name for s in d.layers])
    lines = []
    if prefix or suffix:
        lines.append("layer names below without their common %s" % " and ".join(
            part for part in ("prefix %s" % prefix if prefix else "",
                              "suffix %s" % suffix if suffix else "") if part))
    keys = [s.checkpoint_name or "" for s in d.layers]
    key_prefix = os.path.commonprefix(keys).rstrip("0123456789") if any(keys) else ""
    if key_prefix:
        lines.append("checkpoint keys: %s<key>/..." % key_prefix)
    mark = {DECAY_GIVEN: " d", DECAY_FROM_GRAPH: " g", DECAY_FROM_CONFIG: " c"}
    header = ["layer"] + (["key"] if any(keys) else []) + [
        "ch", "decay", "moving_mean", "moving_variance", "finding"]
    rows = [[middle] + ([key[len(key_prefix):]] if any(keys) else []) + [
             "?" if s.channels is None else str(s.channels),
             "?" if s.decay is None else "%.6g%s" % (s.decay, mark.get(s.decay_source, "")),
             "-" if s.mean is None else s.mean.text(),
             "-" if s.variance is None else s.variance.text(),
             ", ".join(codes.get(s.name, [])) or "ok"]
            for s, middle, key in zip(d.layers, middles, keys)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    spare = width - (sum(widths) + 2 * (len(widths) - 1))
    if width and spare < 0:
        widths[0] = max(len(header[0]), widths[0] + spare)
        rows = [[_elide(r[0], widths[0])] + r[1:] for r in rows]
    for row in [header, *rows]:
        line = "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
        lines.append(line[:width] if width else line)
    return lines


def _elide(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    keep = width - 2
    return text[:keep // 2] + ".." + text[len(text) - (keep - keep // 2):]
