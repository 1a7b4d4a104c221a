"""Text for a terminal, the same for every report (probe, sweep, matrix, doctor, repair): how
wide (the terminal's width, 100 columns when not a terminal), wrapping lines and prose, folding
tables that are too wide, and numbers as float32 shows them."""
from __future__ import annotations

import re
import shutil
import sys
import textwrap
from typing import Any, List, Optional, Sequence

import numpy as np

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


def resolve_width(width: Optional[int]) -> int:
    """``width`` of a render_* call: None is output_width(), 0 means no limit."""
    return output_width() if width is None else width


def wrap_line(line: str, width: int) -> List[str]:
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
    return "\n".join(wrapped for line in lines for wrapped in wrap_line(line, width))


def paragraph(text: str, width: int, indent: str = "") -> List[str]:
    """Prose (legends, footnotes) filled to ``width``, continuation lines under ``indent``."""
    if not width:
        return [text]
    return textwrap.wrap(text, width, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)


def number(value: float) -> str:
    return "%.7g" % value  # float32 carries about 7 significant digits


def vector(values: np.ndarray) -> str:
    return "[" + ", ".join(number(v) for v in np.ravel(values)) + "]"


def fold_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 2,
               width: int = 0, keep: int = 1, pairs: bool = False) -> List[str]:
    """Columns aligned (the first ``left`` to the left, numbers to the right); no cell is ever
    cut. A table wider than ``width`` (0: no limit) folds its columns: into several tables, one
    under the other, each repeating the first ``keep`` columns (the row's key) with as many of
    the others as fit; or, when the key is too wide for that, each row's key on a line of its
    own and its other columns on the lines below it, indented. With ``pairs``, a measured column
    and the "rule" column after it stay together."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: Sequence[str], columns: Sequence[int], indent: str = "") -> str:
        return indent + "  ".join(r[i].ljust(widths[i]) if i < left else r[i].rjust(widths[i])
                                  for i in columns).rstrip()

    units: List[List[int]] = []
    for column in range(keep, len(header)):
        if pairs and header[column] == "rule" and units:
            units[-1].append(column)
        else:
            units.append([column])
    key = list(range(keep))
    key_width = sum(widths[:keep]) + 2 * keep  # with the gap after it
    if not width or all(key_width + _span(unit, widths) <= width for unit in units):
        lines: List[str] = []
        for part in _pack(units, widths, width - key_width if width else 0):
            lines += ([""] if lines else []) + [line(header, key + part)]
            lines += [line(r, key + part) for r in rows]
        return lines
    # Rows folded: the key alone, then the other columns packed into lines under it.
    parts = _pack(units, widths, width - len(_ROW_INDENT))
    lines = []
    for r in [header, *rows]:
        lines.append(line(r, key))
        lines += [line(r, part, _ROW_INDENT) for part in parts]
    return lines


_ROW_INDENT = "    "


def _span(unit: Sequence[int], widths: Sequence[int]) -> int:
    """Columns a unit of columns takes, the gaps between its columns included."""
    return sum(widths[c] for c in unit) + 2 * (len(unit) - 1)


def _pack(units: Sequence[List[int]], widths: Sequence[int], room: int) -> List[List[int]]:
    """The units in order, as many to a part as fit in ``room`` columns (0: no limit); a unit
    wider than the room gets a part of its own."""
    parts: List[List[int]] = [[]]
    used = 0
    for unit in units:
        size = _span(unit, widths) + (2 if parts[-1] else 0)
        if room and parts[-1] and used + size > room:
            parts.append([])
            size -= 2
            used = 0
        parts[-1] += unit
        used += size
    return parts


def wrap(text: str, width: int, first: str = "", rest: str = "") -> List[str]:
    """Prose after a lead (``first``, e.g. "note: "), continuation lines under ``rest``; a word
    longer than the width (a layer's name) stays whole, on a line of its own."""
    return textwrap.wrap(text, width or len(first) + len(text), initial_indent=first,
                         subsequent_indent=rest, break_on_hyphens=False,
                         break_long_words=False) or [first.rstrip()]
