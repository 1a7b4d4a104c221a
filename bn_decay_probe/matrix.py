"""The semantics matrix: one row per api x fused x updates, every cell measured in this run.

Per row: a probe at decay 0 (did the moving statistics move, which variance fed them, does the
test output equal the train output, do the branches share variables), then, per decay, train
steps until the test output is within ``tol`` of the train output (runner.converge), next to
the closed form's prediction. A few extra rows build each API without shared variables.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from . import theory
from .config import (APIS, UPDATES, ProbeConfig, check_decay, check_device, check_seed,
                     check_shape, check_tol)
from .errors import ProbeConfigError
from .frozen import FrozenDict
from .result import Convergence, ProbeResult
from .sweep import sweepable

MATRIX_DECAYS = (0.9, 0.99, 0.999)
MATRIX_SHAPE = (4, 8, 8, 3)  # n = 256 per channel: the fused n/(n-1) gap stays below tol
MATRIX_TOL = 0.01
EQUAL_TOL = 1e-4  # "test == train": within float32 noise, far below a fused n/(n-1) gap
MAX_STEPS_FACTOR = 3  # a convergence run stops at 3x the predicted step (or frozen state)
FUSED = (True, False)


@dataclass(frozen=True)
class RowMeasurement:
    fused: bool  # a FusedBatchNorm kernel ran in the train branch
    updated: bool  # moving statistics changed in the train phase (decay 0)
    variance: str  # "biased", "n/(n-1)" (which one the layer fed at decay 0) or "none"
    test_equals_train: bool  # at decay 0, within EQUAL_TOL
    gap_at_decay_0: float
    branches_share_variables: bool
    convergence: Dict[float, Convergence]  # decay -> steps to converge

    def to_dict(self) -> Dict[str, Any]:
        return {"fused": self.fused, "updated": self.updated, "variance": self.variance,
                "test_equals_train_at_decay_0": self.test_equals_train,
                "gap_at_decay_0": self.gap_at_decay_0,
                "branches_share_variables": self.branches_share_variables,
                "steps_to_converge": {repr(d): c.to_dict() for d, c in self.convergence.items()}}


@dataclass(frozen=True)
class MatrixRow:
    api: str
    fused_requested: bool
    updates: str
    share_variables: bool
    trainable: bool
    measured: Optional[RowMeasurement]  # None: the installed TensorFlow cannot build this row
    unavailable: str = ""  # why not, in TF's or the probe's words

    def to_dict(self) -> Dict[str, Any]:
        return {"api": self.api, "fused_requested": self.fused_requested,
                "updates": self.updates, "share_variables": self.share_variables,
                "trainable": self.trainable,
                "measured": None if self.measured is None else self.measured.to_dict(),
                "unavailable": self.unavailable}


@dataclass(frozen=True)
class SemanticsMatrix:
    rows: Tuple[MatrixRow, ...]
    decays: Tuple[float, ...]
    tol: float
    shape: Tuple[int, ...]
    seed: int
    versions: Dict[str, Any]

    def to_dict(self) -> Dict[str, Any]:
        return {"decays": list(self.decays), "tol": self.tol, "equal_tol": EQUAL_TOL,
                "shape": list(self.shape), "seed": self.seed, "versions": dict(self.versions),
                "rows": [row.to_dict() for row in self.rows]}


def variance_kind(fed: Optional[np.ndarray], x: np.ndarray) -> str:
    """Which variance the layer fed to its moving average: the nearer of numpy's biased and
    n/(n-1) values (they differ by 1/(n-1) relative, float32 noise by ~1e-6); "none" without
    an update op."""
    if fed is None:
        return "none"
    fed = np.asarray(fed, np.float64)
    biased = np.abs(fed - theory.batch_variance(x)).max()
    bessel = np.abs(fed - theory.batch_variance(x, unbiased=True)).max()
    # With n = 1, n/(n-1) is undefined (NaN) and only the biased value can match.
    return "n/(n-1)" if bessel < biased else "biased"


def combinations() -> Tuple[Tuple[str, bool, str, bool, bool], ...]:
    """(api, fused, updates, share_variables, trainable): the full grid, then each API
    unshared, then each layer API with trainable=False (inference mode in TF 2.x tf.keras)."""
    grid = [(api, fused, updates, True, True)
            for api in APIS for fused in FUSED for updates in UPDATES]
    grid += [(api, True, "inplace", False, True) for api in APIS]
    return tuple(grid + [(api, True, "inplace", True, False) for api in APIS if api != "nn"])


def measure_row(api: str, fused: bool, updates: str, share: bool, trainable: bool,
                decays: Sequence[float], tol: float, shape: Tuple[int, ...], seed: int,
                device: str) -> MatrixRow:
    """One row: its layer at decay 0 after one train step, and the steps to converge at each of
    ``decays``. A layer the sweep runs (sweep.sweepable) measures them all in one graph, decay 0
    being one more column; another takes a probe and a convergence run per decay."""
    config = ProbeConfig.create(decay=0.0, shape=shape, seed=seed, fused=fused, device=device,
                                api=api, updates=updates, share_variables=share,
                                trainable=trainable)
    key = (api, fused, updates, share, trainable)
    try:
        if sweepable(config):
            from . import sweep_runner

            columns = tuple(dict.fromkeys((0.0,) + tuple(decays)))  # decay 0 first, each once
            first, converged = sweep_runner.converge(config, columns, tol, MAX_STEPS_FACTOR)
            fed = first.fed_variance
            measured = (first.fused, first.updated[0], None if fed is None else fed[0],
                        float(first.gap[0]), first.branches_share_variables)
            convergence = {d: converged[columns.index(d)] for d in decays}
        else:
            zero, convergence = _one_by_one(config, decays, tol)
            measured = (zero.fused, zero.moving_statistics_updated,
                        zero.batch_statistics.get("moving_variance"),
                        float(zero.trajectory["gap"][-1]), zero.branches_share_variables)
    except ProbeConfigError as exc:
        return MatrixRow(*key, None, str(exc))
    fused_, updated, fed_variance, gap, shared = measured
    return MatrixRow(*key, RowMeasurement(
        fused_, updated, variance_kind(fed_variance, config.inputs), gap <= EQUAL_TOL, gap,
        shared, FrozenDict(convergence)))


def _one_by_one(config: ProbeConfig, decays: Sequence[float],
                tol: float) -> Tuple[ProbeResult, Dict[float, Convergence]]:
    from . import runner

    zero = runner.run(config)
    convergence = {}
    for decay in decays:
        predicted = theory.predicted_steps_to_converge(zero.inputs, decay, zero.fused,
                                                       zero.epsilon["train"], tol)
        budget = MAX_STEPS_FACTOR * (predicted or theory.settled_after(decay))
        convergence[decay] = runner.converge(dataclasses.replace(config, decay=decay), tol,
                                             budget)
    return zero, convergence


def semantics_matrix(decays: Sequence[float] = MATRIX_DECAYS, tol: float = MATRIX_TOL,
                     shape: Tuple[int, ...] = MATRIX_SHAPE, seed: int = 0,
                     device: str = "auto",
                     progress: Optional[Callable[[str], None]] = None) -> SemanticsMatrix:
    from . import backend

    # Checked here, before the first row runs (and before TensorFlow is imported).
    decays = tuple(check_decay(d) for d in decays)
    tol, shape, seed = check_tol(tol), check_shape(shape), check_seed(seed)
    device = check_device(device)
    rows = []
    for combination in combinations():
        if progress:
            progress("api=%s fused=%s updates=%s share_variables=%s trainable=%s" % combination)
        rows.append(measure_row(*combination, decays, tol, shape, seed, device))
    return SemanticsMatrix(tuple(rows), tuple(decays), tol, tuple(shape), seed,
                           backend.versions())
