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

from . import explain, theory
from .config import (GRAPH_APIS, UPDATES, ProbeConfig, check_decay, check_device, check_seed,
                     check_shape, check_tol)
from .errors import ProbeConfigError
from .frozen import FrozenDict
from .result import Convergence, ProbeResult

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

    def __post_init__(self) -> None:
        # Every "never" gets its reason (explain.why_never), however the rows were measured.
        object.__setattr__(self, "rows", tuple(_explained(row, self.shape) for row in self.rows))

    def to_dict(self) -> Dict[str, Any]:
        return {"decays": list(self.decays), "tol": self.tol, "equal_tol": EQUAL_TOL,
                "shape": list(self.shape), "seed": self.seed, "versions": dict(self.versions),
                "rows": [row.to_dict() for row in self.rows]}


def _explained(row: MatrixRow, shape: Tuple[int, ...]) -> MatrixRow:
    """``row`` with why_never filled in each convergence that did not converge, from what the
    row measured at decay 0: after that step the gap is the floor any decay below 1 reaches."""
    m = row.measured
    if m is None:
        return row
    facts = dict(fused=m.fused, n=theory.elements_per_channel(shape), floor=m.gap_at_decay_0,
                 has_update_op=m.variance != "none", updated=m.updated,
                 shared=m.branches_share_variables, trainable=row.trainable)
    convergence = FrozenDict((d, explain.with_reason(c, decay=d, **facts))
                             for d, c in m.convergence.items())
    return dataclasses.replace(row, measured=dataclasses.replace(m, convergence=convergence))


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
    unshared, then each layer API with trainable=False (inference mode in TF 2.x tf.keras);
    last Keras 3 (TF >= 2.16; non-fused, updating as it runs) shared, unshared, untrainable."""
    grid = [(api, fused, updates, True, True)
            for api in GRAPH_APIS for fused in FUSED for updates in UPDATES]
    grid += [(api, True, "inplace", False, True) for api in GRAPH_APIS]
    grid += [(api, True, "inplace", True, False) for api in GRAPH_APIS if api != "nn"]
    return tuple(grid + [("keras3", False, "inplace", share, trainable)
                         for share, trainable in ((True, True), (False, True), (True, False))])


def measure_row(api: str, fused: bool, updates: str, share: bool, trainable: bool,
                decays: Sequence[float], tol: float, shape: Tuple[int, ...], seed: int,
                device: str) -> MatrixRow:
    from . import runner

    def config(decay: float) -> ProbeConfig:
        return ProbeConfig.create(decay=decay, shape=shape, seed=seed, fused=fused,
                                  device=device, api=api, updates=updates,
                                  share_variables=share, trainable=trainable)

    key = (api, fused, updates, share, trainable)
    try:
        zero: ProbeResult = runner.run(config(0.0))
    except ProbeConfigError as exc:
        return MatrixRow(*key, None, str(exc))
    convergence = {}
    for decay in decays:
        predicted = theory.predicted_steps_to_converge(zero.inputs, decay, zero.fused,
                                                       zero.epsilon["train"], tol)
        budget = MAX_STEPS_FACTOR * (predicted or theory.settled_after(decay))
        convergence[decay] = runner.converge(config(decay), tol, budget)
    gap = float(zero.trajectory["gap"][-1])
    return MatrixRow(*key, RowMeasurement(
        zero.fused, zero.moving_statistics_updated,
        variance_kind(zero.batch_statistics.get("moving_variance"), zero.inputs),
        gap <= EQUAL_TOL,
        gap, zero.branches_share_variables, FrozenDict(convergence)))


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
