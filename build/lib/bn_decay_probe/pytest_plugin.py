"""pytest plugin (entry point ``pytest11: bn_decay_probe``): the ``bn_probe`` fixture.

    def test_decay_moves_the_mean(bn_probe):
        r = bn_probe(decay=0.5, steps=2)          # keyword arguments of bn_decay_probe.probe
        assert_moved_as_decay_predicts(r, "moving_mean", "train")

When such a test fails, its report gets a "bn_decay_probe" section with the text report of every
probe the test ran. Importing this plugin does not import TensorFlow.
"""
from __future__ import annotations

from typing import Any, Callable, List

import pytest

_RESULTS = pytest.StashKey[List[Any]]()


@pytest.fixture
def bn_probe(request: Any) -> Callable[..., Any]:
    """Calls ``bn_decay_probe.probe(**kwargs)`` and keeps the result for the failure report."""
    from .api import probe

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
