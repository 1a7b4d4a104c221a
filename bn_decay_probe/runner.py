"""Runs a built probe graph in its own session and returns a ProbeResult.

Sequence: snapshot -> ``steps`` train runs -> snapshot -> snapshot -> test run -> snapshot, each
snapshot one ``Session.run`` of all variables. The last train run and the test run are traced so
the result can say which device every batch-norm op actually ran on.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, Set

from . import backend, devices, graph
from .config import ProbeConfig
from .errors import DeviceFallbackWarning
from .frozen import FrozenDict, frozen_array, frozen_arrays
from .result import DeviceReport, ProbeResult, VariableInfo


def run(config: ProbeConfig) -> ProbeResult:
    with backend.quiet() as tf1:
        gpus = backend.visible_gpus()
        placement = devices.resolve(config.device, gpus)
        if placement.notice:
            _notify(placement.notice)
        built = graph.build(config, placement.target)
        # Not `with Session(...)`: entering a session makes it the caller's default session.
        session = tf1.Session(graph=built.graph, config=backend.session_config(placement.target))
        try:
            measured = _measure(tf1, session, built, config)
        finally:
            session.close()
    device = DeviceReport(config.device, placement.target, gpus, placement.notice,
                          FrozenDict((phase, FrozenDict(devices.executed_on(
                              measured["metadata"][phase], built.branch_ops[phase])))
                                     for phase in graph.PHASES))
    return ProbeResult(
        config=config,
        inputs=config.inputs,
        outputs=frozen_arrays(measured["outputs"]),
        snapshots=FrozenDict((label, frozen_arrays(values))
                             for label, values in measured["snapshots"].items()),
        batch_statistics=frozen_arrays(measured["fed"]),
        update_factor=FrozenDict((name, float(value))
                                 for name, value in measured["factor"].items()),
        fused_by_phase=FrozenDict(built.fused),
        epsilon=FrozenDict(built.epsilon),
        variables=tuple(VariableInfo(v.name, short, tuple(v.shape.as_list()),
                                     v.dtype.base_dtype.name)
                        for short, v in built.variables.items()),
        branch_variables=FrozenDict(built.branch_variables),
        device=device,
        versions=FrozenDict(backend.versions()),
    )


_notified: Set[str] = set()


def _notify(notice: str) -> None:
    """Warns once per process: a notebook calling probe() hundreds of times wants one line.
    (The warnings module's own once-per-call-site registry is reset by every
    catch_warnings(), which TF's quiet import uses.) Every result still records the notice."""
    if notice not in _notified:
        _notified.add(notice)
        warnings.warn(notice, DeviceFallbackWarning, stacklevel=4)


def _measure(tf1: Any, session: Any, built: graph.ProbeGraph,
             config: ProbeConfig) -> Dict[str, Any]:
    session.run(built.initializers, feed_dict={built.input_placeholder: config.inputs})
    trace = tf1.RunOptions(trace_level=tf1.RunOptions.SOFTWARE_TRACE)
    metadata = {phase: tf1.RunMetadata() for phase in graph.PHASES}

    def snapshot() -> Dict[str, Any]:
        return session.run(built.variables)

    snapshots = {"before_train": snapshot()}
    train = {"output": built.outputs["train"], "fed": built.fed, "factor": built.factors}
    for step in range(config.steps):
        last = step == config.steps - 1
        trained = session.run(train, options=trace if last else None,
                              run_metadata=metadata["train"] if last else None)
    snapshots["after_train"] = snapshot()
    snapshots["before_test"] = snapshot()
    tested = session.run(built.outputs["test"], options=trace, run_metadata=metadata["test"])
    snapshots["after_test"] = snapshot()
    return {"snapshots": snapshots, "outputs": {"train": trained["output"], "test": tested},
            "fed": trained["fed"], "factor": trained["factor"], "metadata": metadata}
