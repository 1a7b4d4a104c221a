"""The semantics matrix as text: a row per api x fused x updates, with footnotes."""
from __future__ import annotations

from typing import Any, Optional

from ..probe.frameworks import FRAMEWORKS
from ..text import fit_lines, fold_table, number, paragraph, resolve_width
from .cells import convergence_cell, footnotes


def render_matrix(matrix: Any, width: Optional[int] = None) -> str:
    """The semantics matrix as a table; each cell measured in the run that made ``matrix``.
    Footnotes say why a row is unavailable and why a "never" never converges. ``width`` as for
    render_text."""
    width = resolve_width(width)
    header = ["api", "fused", "updates", "kernel", "updated", "variance fed",
              "test==train @decay 0", "shared"]
    header += ["steps @%g" % d for d in matrix.decays]
    rows, unavailable, reasons = [], [], []  # type: ignore[var-annotated]
    for row in matrix.rows:
        other = row.api in FRAMEWORKS  # no fused kernel to ask for or to run
        cells = [row.api, "-" if other else "yes" if row.fused_requested else "no",
                 row.updates + ("" if row.share_variables else " (unshared)")
                 + ("" if row.trainable else " (trainable=False)")]
        m = row.measured
        if m is None:  # one footnote per distinct reason
            if row.unavailable not in unavailable:
                unavailable.append(row.unavailable)
            cells += ["unavailable [u%d]" % (unavailable.index(row.unavailable) + 1)]
            cells += [""] * (len(header) - 4)
        else:
            cells += ["-" if other else "fused" if m.fused else "non-fused",
                      "yes" if m.updated else "NO",
                      m.variance,
                      "%s (%s)" % ("yes" if m.test_equals_train else "no",
                                   number(m.gap_at_decay_0)),
                      "yes" if m.branches_share_variables else "NO"]
            cells += [convergence_cell(m.convergence[d], reasons) for d in matrix.decays]
        rows.append(cells)
    versions = matrix.versions
    lines = ["semantics matrix: input %s uniform(0, 255) seed %d | %s"
             % (list(matrix.shape), matrix.seed, ", ".join(
                 ["TensorFlow %s" % versions["tensorflow"]]
                 + ["%s %s" % item for item in versions.get("frameworks", {}).items()])), ""]
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
            "[n] below; '>N': not within N = 3x the prediction." % matrix.tol,
            "fused, kernel: TensorFlow's fused kernel asked for, and the kernel that ran; '-' "
            "for the frameworks beside TensorFlow, which have no such choice (PyTorch's kernel "
            "feeds n/(n-1) as TF's fused one does; the variance fed column shows it). updates: "
            "'inplace' is the only kind there: the layer updates as it runs. The other "
            "frameworks take the same NHWC input (PyTorch in channels_last memory); decay is "
            "spelled as each spells it (api torch: momentum = 1 - decay; torch-cumulative "
            "ignores it)."):
        lines += paragraph(legend, width, "  ")
    lines += footnotes(reasons, "never within %g:" % matrix.tol, width)
    if unavailable:
        lines += ["unavailable here:"]
        for index, reason in enumerate(unavailable, 1):
            lines += paragraph("  [u%d] %s" % (index, reason), width, "       ")
    return fit_lines(lines, width)
