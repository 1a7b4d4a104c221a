"""Sweep plots: written, non-empty PNGs; the lines drawn are the measurements and the closed
form, checked against the numpy reference; matplotlib missing is one clear error."""
import sys

import numpy as np
import pytest

from bn_decay_probe import sweep
from bn_decay_probe.errors import PlotUnavailableError
from bn_decay_probe.report.plot import shown_indices
from conftest import Reference, channel_inputs

DECAYS = (0.3, 0.5, 0.7, 0.8, 0.9)
STEPS = 6
SHAPE = (4, 8, 8, 2)  # n = 256: the fused gap gets within tol, so steps to converge exist


@pytest.fixture(scope="module")
def swept():
    return sweep(DECAYS, steps=STEPS, inputs=channel_inputs(SHAPE), device="cpu")


@pytest.mark.parametrize("shown", [3, 10])
def test_png_is_written_with_the_expected_lines(swept, tmp_path, shown):
    path = tmp_path / "sweep.png"
    figure = swept.plot(str(path), shown=shown)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20000
    drawn = min(shown, len(DECAYS))
    means, variances, gaps, converge = figure.axes
    # Per decay shown: measured and closed form; the gap panel adds the tol line; the last
    # panel: measured and predicted steps over every decay.
    assert [len(a.get_lines()) for a in figure.axes] == [2 * drawn, 2 * drawn, 2 * drawn + 1, 2]
    for axes in figure.axes:
        assert axes.get_xlabel() and axes.get_ylabel() and axes.get_legend() is not None
    assert converge.get_xlabel() == "decay"
    labels = [t.get_text() for t in means.get_legend().get_texts()]
    assert labels == ["decay %g" % DECAYS[i] for i in shown_indices(len(DECAYS), shown)] + [
        "closed form"]


def test_lines_are_the_measurements_and_the_reference(swept):
    figure = swept.plot(channel=1)
    means, variances, gaps, converge = figure.axes
    ref = Reference(channel_inputs(SHAPE))
    for n, index in enumerate(shown_indices(len(DECAYS), 6)):
        decay = DECAYS[index]
        measured, closed = means.get_lines()[2 * n:2 * n + 2]
        np.testing.assert_array_equal(measured.get_xdata(), np.arange(STEPS + 1))
        np.testing.assert_array_equal(measured.get_ydata()[1:], swept.moving_mean[index, :, 1])
        assert measured.get_ydata()[0] == 0.0
        expected = [ref.moving(decay, k, fused=True) for k in range(STEPS + 1)]
        np.testing.assert_allclose(closed.get_ydata(), [m[1] for m, _ in expected], rtol=1e-12)
        closed_var = variances.get_lines()[2 * n + 1]
        np.testing.assert_allclose(closed_var.get_ydata(), [v[1] for _, v in expected],
                                   rtol=1e-12)
        assert closed.get_linestyle() == "--"
        np.testing.assert_array_equal(gaps.get_lines()[2 * n].get_ydata(), swept.gap[index])
    measured_steps, predicted_steps = converge.get_lines()
    np.testing.assert_array_equal(measured_steps.get_xdata(), DECAYS)
    assert not np.isnan(predicted_steps.get_ydata()).any()


def test_shown_decays_include_both_ends():
    assert shown_indices(5, 3) == [0, 2, 4]
    assert shown_indices(2, 6) == [0, 1]
    assert shown_indices(100, 6)[0] == 0 and shown_indices(100, 6)[-1] == 99


def test_a_bad_channel_is_refused(swept):
    with pytest.raises(ValueError, match=r"channel must be in \[0, 2\), got 2"):
        swept.plot(channel=2)


def test_without_matplotlib_the_message_says_how_to_get_it(swept, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(PlotUnavailableError) as info:
        swept.plot()
    assert str(info.value) == ("plotting needs matplotlib: pip install "
                               "'bn-decay-probe[plot]' (or matplotlib)")
