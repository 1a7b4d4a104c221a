"""A port check as text for a terminal, grouped as the doctor's: the verdict and what was not
checked first, the two sides, then one block per group of identical findings (explanation, fix,
the count, the layers, one example's detail), then notes; ``verbose`` adds the per-pair table.
Lines fit the width (text.output_width)."""
from __future__ import annotations

import functools
from collections import Counter, OrderedDict
from typing import List, Optional, Sequence, Tuple

from ..text import fold_table, resolve_width, wrap
from .result import CODES, PortCheck, PortFinding, PortSide

_SHOWN_LAYERS = 6  # layer names listed per group before "and N more"
_ORIGIN = {"stored": "stored", "graph": "from the .meta graph", "default": "the format's default",
           "none": "not stored", "partly": "partly stored"}


def render_port(check: PortCheck, verbose: bool = False, width: Optional[int] = None) -> str:
    """The check as text in lines of at most ``width`` columns (None: the terminal's width,
    100 when not a terminal)."""
    width = resolve_width(width)
    line = functools.partial(wrap, width=width)
    lines = line(verdict(check), rest="  ")
    for reason in check.not_checked:
        lines += line(reason, first="not checked: ", rest="  ")
    for side in (check.source, check.target):
        lines += line(_side(side), rest="  ")
    lines += line(_pairing(check), rest="  ")
    for (code, severity, explanation, fix), group in _groups(check.findings).items():
        lines.append("")
        lines += line(_layers([f.layer for f in group], len(check.pairs)),
                      first="%s (%s), %d layer(s): " % (code, severity, len(group)), rest="  ")
        lines += line(explanation, first="  ", rest="  ")
        if group[0].detail:
            more = " (and %d more: --verbose)" % (len(group) - 1) if len(group) > 1 else ""
            lines += line("%s: %s%s" % (group[0].layer, group[0].detail, more),
                          first="  e.g. ", rest="    ")
        lines += line(fix, first="  fix: ", rest="    ")
    if verbose:
        lines += [""] + _table(check, width)
        for f in check.findings:
            if f.detail:
                lines += line(f.detail, first="%s %s: " % (f.layer, f.code), rest="    ")
    if check.notes:
        lines.append("")
        for note in check.notes:
            lines += line(note, first="note: ", rest="  ")
    return "\n".join(lines)


def verdict(check: PortCheck) -> str:
    """The first line: what the user may act on."""
    pairs = "%d batch-norm layer pair(s)" % sum(1 for p in check.pairs if p.paired_by)
    if check.findings:
        counts = Counter(f.code for f in check.findings)
        return ("FINDINGS: %d finding(s) in %s: %s%s"
                % (len(check.findings), pairs,
                   ", ".join("%s x%d" % (c, counts[c]) for c in CODES if counts[c]),
                   "; and not everything was checked" if check.not_checked else ""))
    largest = check.largest_difference
    kept = "inference output kept within %g (largest relative difference %.3g)" % (
        check.tolerance, largest if largest is not None else 0.0)
    if check.not_checked:
        return "INCOMPLETE: no finding in %s, %s, but not everything was checked" % (pairs, kept)
    return "clean: no finding in %s, %s; epsilon and momentum match" % (pairs, kept)


def _side(side: PortSide) -> str:
    graph = " with its .meta graph" if side.graph else ""
    origins = [_ORIGIN.get(side.epsilon, side.epsilon), _ORIGIN.get(side.momentum,
                                                                     side.momentum)]
    values = ("epsilon and momentum %s" % origins[0] if origins[0] == origins[1]
              else "epsilon %s, momentum %s" % tuple(origins))
    return ("%s %s: %s%s, %d batch-norm layer(s); %s"
            % (side.role, side.path, side.format, graph, side.layers, values))


def _pairing(check: PortCheck) -> str:
    how = Counter(p.paired_by for p in check.pairs if p.paired_by)
    words = {"map": "by the map", "name": "by name", "order": "by network order and channels"}
    return "paired: %s" % (", ".join("%d %s" % (how[k], words[k]) for k in words if how[k])
                           or "none")


def _groups(findings: Sequence[PortFinding]
            ) -> "OrderedDict[Tuple[str, str, str, str], List[PortFinding]]":
    groups: "OrderedDict[Tuple[str, str, str, str], List[PortFinding]]" = OrderedDict()
    for f in sorted(findings, key=lambda f: CODES.index(f.code)):
        groups.setdefault((f.code, f.severity, f.explanation, f.fix), []).append(f)
    return groups


def _layers(names: Sequence[str], pairs: int) -> str:
    if len(names) == pairs and pairs > 1:
        return "all"
    shown = ", ".join(names[:_SHOWN_LAYERS])
    return shown + (", ... and %d more" % (len(names) - _SHOWN_LAYERS)
                    if len(names) > _SHOWN_LAYERS else "")


def _table(check: PortCheck, width: int) -> List[str]:
    """One row per pair: the names, channels, epsilons, decay and momentum, the inference
    difference and the finding codes."""
    header = ["source", "target", "ch", "eps s", "eps t", "decay s", "momentum t",
              "difference", "finding"]
    rows = []
    for p in check.pairs:
        rows.append([p.source or "-", p.target or "-", str(p.channels), _g(p.source_epsilon),
                     _g(p.target_epsilon), _g(p.source_decay), _g(p.target_momentum),
                     _g(p.inference_difference), ", ".join(p.codes) or "ok"])
    return fold_table(header, rows, 2, width, keep=2)


def _g(value: Optional[float]) -> str:
    return "?" if value is None else "%.4g" % value
