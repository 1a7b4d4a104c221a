"""pytest plugin (entry point ``pytest11: bn_decay_probe``): the ``bn_probe`` fixture.

    def test_decay_moves_the_mean(bn_probe):
        r = bn_probe(decay=0.5, steps=2)          # keyword arguments of bn_decay_probe.probe
        assert_moved_as_decay_predicts(r, "moving_mean", "train")

When such a test fails, its report gets a "bn_decay_probe" section with the text report of every
probe the test ran. Importing this plugin does not import TensorFlow.

On a machine without a GPU every probe runs on the CPU and warns once with a
DeviceFallbackWarning; the plugin keeps that warning out of the warnings summary unless
``--bn-probe-device-warnings`` or the ini option ``bn_probe_device_warnings = true`` asks for it.
"""
from __future__ import annotations

from typing import Any, Callable, List

import pytest

_RESULTS = pytest.StashKey[List[Any]]()


DEVICE_WARNINGS = "bn_probe_device_warnings"


def pytest_addoption(parser: Any) -> None:
    help = ("show bn_decay_probe's DeviceFallbackWarning (no GPU: probes run on the CPU) in the "
            "warnings summary")
    parser.addoption("--bn-probe-device-warnings", action="store_true", dest=DEVICE_WARNINGS,
                     default=None, help=help)
    parser.addini(DEVICE_WARNINGS, help=help, type="bool", default=False)


def pytest_configure(config: Any) -> None:
    shown = config.getoption(DEVICE_WARNINGS)
    if not (config.getini(DEVICE_WARNINGS) if shown is None else shown):
        # An ini-level filter: -W and @pytest.mark.filterwarnings still override it.
        config.addinivalue_line("filterwarnings",
                                "ignore::bn_decay_probe.errors.DeviceFallbackWarning")


@pytest.fixture
def bn_probe(request: Any) -> Callable[..., Any]:
    """Calls ``bn_decay_probe.probe(**kwargs)`` and keeps the result for the failure report."""
    from .probe.api import probe

    results: List[Any] = []
    request.node.stash[_RESULTS] = results

    def run(**kwargs: Any) -> Any:
        result = probe(**kwargs)
        results.append(result)
        return result

    return run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Any:
    outcome = yield
    report = outcome.get_result()
    results = item.stash.get(_RESULTS, None)
    if report.failed and results:
        from .report import render_text

        report.sections.append(("bn_decay_probe", "\n\n".join(render_text(r) for r in results)))
