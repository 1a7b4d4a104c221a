"""A ProbeResult as an HTML table, for Jupyter (ProbeResult._repr_html_)."""
from __future__ import annotations

import html
from typing import Any

from ..probe.config import DEFAULT_TOL
from .cells import (RULE_TITLE, SNAPSHOT_TITLES, convergence_line, describe,
                    note_lines, rule_legend, variable_rows)


def render_html(result: Any, tol: float = DEFAULT_TOL) -> str:
    """The variables table for Jupyter (ProbeResult._repr_html_), with the settings, notes and
    (one input) the steps to get within ``tol`` above it."""
    header = ["variable", "ch", *SNAPSHOT_TITLES, RULE_TITLE]
    head = "".join("<th>%s</th>" % html.escape(h) for h in header)
    body = "".join("<tr>%s</tr>" % "".join("<td>%s</td>" % html.escape(c) for c in row)
                   for row in variable_rows(result))
    caption = describe(result) + note_lines(result)
    if result.batches is None:
        caption.append(convergence_line(result, tol))
    return ("<table><caption style='text-align:left'>%s</caption><thead><tr>%s</tr></thead>"
            "<tbody>%s</tbody></table><p><small>%s</small></p>"
            % ("<br>".join(html.escape(line) for line in caption), head, body,
               html.escape(rule_legend(result))))
