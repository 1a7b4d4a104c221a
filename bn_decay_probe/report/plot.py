"""Figures of a sweep: moving statistics and the test/train gap against train steps, next to
the update rule's closed form, and steps to converge against decay.

matplotlib is an optional extra (``pip install 'bn-decay-probe[plot]'``). The figure is a
plain matplotlib Figure, made without pyplot, so no GUI backend is needed to save it.
"""
from __future__ import annotations

import importlib.util
from typing import Any, List

import numpy as np

from ..errors import PlotUnavailableError
from ..probe.frameworks import FRAMEWORKS

MISSING = "plotting needs matplotlib: pip install 'bn-decay-probe[plot]' (or matplotlib)"
FORMATS = (".png", ".pdf", ".svg")


def available() -> bool:
    """Whether matplotlib can be imported, without importing it."""
    return importlib.util.find_spec("matplotlib") is not None


def _figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailableError(MISSING) from None
    return Figure


def shown_indices(count: int, shown: int) -> List[int]:
    """Up to ``shown`` evenly spaced indices of ``count`` decays, the first and last included."""
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, min(count, shown))})


def sweep_figure(sweep: Any, channel: int = 0, tol: float = 0.01, shown: int = 6) -> Any:
    """Four panels for one channel of a SweepResult: moving_mean and moving_variance after each
    train step (step 0: before training) for up to ``shown`` decays, measured (solid) and by the
    closed form (dashed); max |test - train| after each step with the closed form's, and ``tol``;
    steps until that gap is within ``tol`` against decay, measured within the steps run and
    predicted."""
    results = sweep.results
    first = results[0]
    if not 0 <= channel < first.config.channels:
        raise ValueError("channel must be in [0, %d), got %r" % (first.config.channels, channel))
    if first.batches is not None:
        raise ValueError("the gap panels compare train and test on one input; a sweep with "
                         "batches has no such gap")
    figure = _figure_class()(figsize=(13, 9), dpi=100, constrained_layout=True)
    means, variances, gaps, converge = figure.subplots(2, 2).ravel()
    steps = np.arange(first.config.train_steps + 1)
    colors = [c["color"] for c in _color_cycle()]
    measured = dict(linewidth=3, alpha=0.55, marker="o" if len(steps) <= 30 else None)
    closed = dict(color="black", linewidth=1, linestyle="--")  # on top: overlap is agreement
    picked = shown_indices(len(results), shown)
    for n, index in enumerate(picked):
        r, color = results[index], colors[n % len(colors)]
        rule = r.predicted_trajectory()
        label = "closed form" if n == len(picked) - 1 else "_nolegend_"  # last in the legend
        for axes, name in ((means, "moving_mean"), (variances, "moving_variance")):
            start = r.before["train"][name][channel]
            axes.plot(steps, np.r_[start, r.trajectory[name][:, channel]], color=color,
                      label="decay %.4g" % r.decay, **measured)
            axes.plot(steps, np.r_[start, rule[name][:, channel]], label=label, **closed)
        gaps.plot(steps[1:], r.trajectory["gap"], color=color, label="decay %.4g" % r.decay,
                  **measured)
        gaps.plot(steps[1:], r.predicted_gaps(len(steps) - 1), label=label, **closed)
    gaps.axhline(tol, color="gray", linestyle=":", label="tol %g" % tol)
    convergence = [r.steps_to_converge(tol) for r in results]
    found = np.array([np.nan if c.measured is None else c.measured for c in convergence])
    predicted = np.array([np.nan if c.predicted is None else c.predicted for c in convergence])
    converge.plot(sweep.decays, found, linestyle="none", marker="o",
                  label="measured (within %d steps)" % first.config.train_steps)
    converge.plot(sweep.decays, predicted, label="closed form", **closed)
    if np.isnan(found).all() and np.isnan(predicted).all():
        converge.text(0.5, 0.5, "no decay gets within %g\n(fused: the n/(n-1) variance keeps "
                      "a gap)" % tol, transform=converge.transAxes, ha="center")
    _label(means, "moving_mean after each train step", "moving_mean")
    _label(variances, "moving_variance after each train step", "moving_variance")
    _label(gaps, "test output vs train output", "max |test - train|")
    gaps.set_yscale("log", nonpositive="mask")
    converge.set_title("steps until max |test - train| <= %g" % tol)
    converge.set_xlabel("decay")
    converge.set_ylabel("train steps")
    converge.set_yscale("log", nonpositive="mask")
    converge.grid(True, alpha=0.3)
    converge.legend()
    c = first.config
    framework = FRAMEWORKS.get(c.api)
    layer = ("tf.contrib.layers.batch_norm, %s" % ("fused" if first.fused else "non-fused")
             if framework is None else framework.layer)
    figure.suptitle("%s, input %s, epsilon %g, channel %d"
                    % (layer, list(c.shape), c.epsilon, channel))
    return figure


def _color_cycle() -> Any:
    from matplotlib import rcParams

    return rcParams["axes.prop_cycle"]


def _label(axes: Any, title: str, ylabel: str) -> None:
    axes.set_title(title)
    axes.set_xlabel("train step")
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
