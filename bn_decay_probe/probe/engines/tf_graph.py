"""The engine of the TF1-style graph APIs (contrib / tf-slim, tf.layers, tf.keras in graph mode,
tf.nn).

One decay runs in a session of its own (session), many decays and the matrix's rows in one sweep
graph, each train step one ``Session.run`` for all of them (sweep)."""
from __future__ import annotations

from typing import List, Sequence, Tuple

from ..config import ProbeConfig
from ..result import Convergence, ProbeResult
from . import session, sweep
from .base import AtDecay0, Engine, RowMeasured, Progress


class TFGraphEngine(Engine):
    name = "tf-graph"

    def run(self, config: ProbeConfig) -> ProbeResult:
        return session.run(config)

    def converge(self, config: ProbeConfig, tol: float, max_steps: int) -> Convergence:
        return session.converge(config, tol, max_steps)

    def run_decays(self, config: ProbeConfig, decays: Sequence[float], progress: Progress = None,
                   exact: bool = False) -> Tuple[ProbeResult, ...]:
        """Through the sweep graph; with ``exact``, one decay per chunk (bit-identical to
        run()'s numbers on every backend)."""
        return sweep.run(config, decays, progress, 1 if exact else None)

    def matrix_rows(self, configs: Sequence[ProbeConfig], decays: Sequence[float], tol: float,
                    budget_factor: float) -> List[RowMeasured]:
        """Every row and decay in one graph (sweep.converge_rows), each step one run of the
        rows still running; decay 0 is one more column."""
        columns = tuple(dict.fromkeys((0.0,) + tuple(decays)))  # decay 0 first, each once
        rows: List[RowMeasured] = []
        for row in sweep.converge_rows(configs, columns, tol, budget_factor):
            if isinstance(row, Exception):
                rows.append(row)
                continue
            first, converged = row
            rows.append((AtDecay0(first.fused, first.updated[0],
                                  None if first.fed_variance is None else first.fed_variance[0],
                                  float(first.gap[0]), first.branches_share_variables),
                         {d: converged[columns.index(d)] for d in decays}))
        return rows


ENGINE = TFGraphEngine()
