"""Reports of probe results: text for a terminal (a probe, a sweep, the semantics matrix), an
HTML table for Jupyter, the JSON document of the probe command, and plots. Reports only read
results; every number they show is a measurement or the numpy rule's (theory), labelled so."""
from .document import json_document
from .html import render_html
from .matrix_text import render_matrix
from .probe_text import render_text
from .sweep_text import render_sweep

__all__ = ["render_text", "render_sweep", "render_matrix", "render_html", "json_document"]
