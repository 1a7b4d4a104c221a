"""What an engine is: how one kind of batch-norm layer is measured.

An engine gives :meth:`Engine.run` (one decay, a ProbeResult) and :meth:`Engine.converge` (train
steps until the test output is within ``tol`` of the train output). Many decays
(:meth:`Engine.run_decays`) and the semantics matrix's rows (:meth:`Engine.matrix_rows`) default
to one decay at a time; an engine that can do better (the TF graph engine runs every decay in
one graph) overrides them.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ...errors import ProbeConfigError
from .. import theory
from ..config import ProbeConfig
from ..result import Convergence, ProbeResult

Progress = Optional[Callable[[int], Any]]


class AtDecay0(NamedTuple):
    """What one train step at decay 0 measured (the semantics matrix's first columns)."""

    fused: bool  # a FusedBatchNorm kernel in the train branch
    updated: bool  # a bit of moving_mean or moving_variance changed
    fed_variance: Optional[np.ndarray]  # fed to moving_variance; None: no update op
    gap: float  # max |test output - train output| after the step
    shared: bool  # the test branch reads only variables of the train branch


# One matrix row: what decay 0's step measured and each decay's Convergence, or the
# ProbeConfigError that says why this installation cannot build the row.
RowMeasured = Union[Tuple[AtDecay0, Dict[float, Convergence]], ProbeConfigError]


class Engine:
    """Measures the layer of a ProbeConfig; see the module docstring."""

    name = ""

    def run(self, config: ProbeConfig) -> ProbeResult:
        raise NotImplementedError

    def converge(self, config: ProbeConfig, tol: float, max_steps: int) -> Convergence:
        raise NotImplementedError

    def run_decays(self, config: ProbeConfig, decays: Sequence[float], progress: Progress = None,
                   exact: bool = False) -> Tuple[ProbeResult, ...]:
        """Each decay's ProbeResult, as run() gives it; ``progress(1)`` after each. One decay
        at a time, so ``exact`` changes nothing here."""
        results = []
        for decay in decays:
            results.append(self.run(dataclasses.replace(config, decay=decay)))
            if progress:
                progress(1)
        return tuple(results)

    def matrix_rows(self, configs: Sequence[ProbeConfig], decays: Sequence[float], tol: float,
                    budget_factor: float) -> List[RowMeasured]:
        """Per config (at decay 0, one input): its first train step, then per decay train steps
        until within ``tol``, at most ``budget_factor`` times the closed form's predicted step
        (or, predicted never, the step after which the closed form no longer changes)."""
        rows: List[RowMeasured] = []
        for config in configs:
            try:
                zero = self.run(config)
                convergence = {}
                for decay in decays:
                    predicted = theory.predicted_steps_to_converge(
                        zero.inputs, decay, zero.fused, zero.epsilon["train"], tol)
                    budget = int(budget_factor * (predicted or theory.settled_after(decay)))
                    convergence[decay] = self.converge(dataclasses.replace(config, decay=decay),
                                                       tol, budget)
            except ProbeConfigError as exc:
                rows.append(exc)
                continue
            rows.append((AtDecay0(zero.fused, zero.moving_statistics_updated,
                                  zero.batch_statistics.get("moving_variance"),
                                  float(zero.trajectory["gap"][-1]),
                                  zero.branches_share_variables), convergence))
        return rows
