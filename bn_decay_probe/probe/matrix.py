"""The semantics matrix: one row per api x fused x updates, every cell measured in this run.

Per row: one train step at decay 0 (did the moving statistics move, which variance fed them,
does the test output equal the train output, do the branches share variables), then, per
decay, train steps until the test output is within ``tol`` of the train output, next to the
closed form's prediction. A few extra rows build each API without shared variables or with
trainable=False, and one row each measures the frameworks beside TensorFlow (PyTorch, Flax,
Haiku, Keras 3 on JAX and PyTorch) that are installed; the others' rows say which extra installs
them. Each row's engine measures it (engines.choose): the TF graph engine runs every
graph row and decay in one graph, decay 0 among them, each stopping as soon as its answer is
decided.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ProbeConfigError
from ..values import FrozenDict
from .. import imports
from . import engines, explain, frameworks, theory
from .config import (FRAMEWORK_APIS, GRAPH_APIS, UPDATES, ProbeConfig, check_decay,
                     check_device, check_seed, check_shape, check_tol)
from .result import Convergence

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
    facts = dict(fused=frameworks.unbiased_variance(row.api, m.fused),
                 n=theory.elements_per_channel(shape), floor=m.gap_at_decay_0,
                 has_update_op=m.variance != "none", updated=m.updated,
                 shared=m.branches_share_variables, trainable=row.trainable, api=row.api)
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
    then Keras 3 (TF >= 2.16; non-fused, updating as it runs) shared, unshared, untrainable;
    last each framework beside TensorFlow (frameworks.py) once (no fused kernel to ask for,
    updating as it runs)."""
    grid = [(api, fused, updates, True, True)
            for api in GRAPH_APIS for fused in FUSED for updates in UPDATES]
    grid += [(api, True, "inplace", False, True) for api in GRAPH_APIS]
    grid += [(api, True, "inplace", True, False) for api in GRAPH_APIS if api != "nn"]
    grid += [("keras3", False, "inplace", share, trainable)
             for share, trainable in ((True, True), (False, True), (True, False))]
    return tuple(grid + [(api, False, "inplace", True, True) for api in FRAMEWORK_APIS])


def measure_row(api: str, fused: bool, updates: str, share: bool, trainable: bool,
                decays: Sequence[float], tol: float, shape: Tuple[int, ...], seed: int,
                device: str) -> MatrixRow:
    """One row: its layer after one train step at decay 0, and the steps to converge at each
    of ``decays``."""
    return _measure_rows([(api, fused, updates, share, trainable)], decays, tol, shape, seed,
                         device)[0]


def _measure_rows(keys: Sequence[Tuple[str, bool, str, bool, bool]], decays: Sequence[float],
                  tol: float, shape: Tuple[int, ...], seed: int,
                  device: str) -> List[MatrixRow]:
    """The rows of ``keys``, each engine measuring its rows together (Engine.matrix_rows); a
    framework that is not installed gives its rows the line that says which extra to install."""
    configs = [ProbeConfig.create(decay=0.0, shape=shape, seed=seed, fused=fused,
                                  device=device, api=api, updates=updates,
                                  share_variables=share, trainable=trainable)
               for api, fused, updates, share, trainable in keys]
    by_engine: Dict[Any, List[int]] = {}
    found: Dict[int, Any] = {}
    for i, config in enumerate(configs):
        framework = frameworks.FRAMEWORKS.get(config.api)
        missing = framework.unavailable() if framework else None
        if missing:
            found[i] = ProbeConfigError(missing)
        else:
            by_engine.setdefault(engines.choose(config), []).append(i)
    for engine, indices in by_engine.items():
        measured = engine.matrix_rows([configs[i] for i in indices], decays, tol,
                                      MAX_STEPS_FACTOR)
        found.update(zip(indices, measured))
    rows = []
    for i, (key, config) in enumerate(zip(keys, configs)):
        if isinstance(found[i], Exception):
            rows.append(MatrixRow(*key, None, str(found[i])))
            continue
        zero, convergence = found[i]
        rows.append(MatrixRow(*key, RowMeasurement(
            zero.fused, zero.updated, variance_kind(zero.fed_variance, config.inputs),
            zero.gap <= EQUAL_TOL, zero.gap, zero.shared, FrozenDict(convergence))))
    return rows


def semantics_matrix(decays: Sequence[float] = MATRIX_DECAYS, tol: float = MATRIX_TOL,
                     shape: Tuple[int, ...] = MATRIX_SHAPE, seed: int = 0,
                     device: str = "auto",
                     progress: Optional[Callable[[str], None]] = None) -> SemanticsMatrix:
    """Every row of combinations(), measured in this run: the rows the sweep runs together,
    in one graph, the others one by one. ``progress`` is told what is being measured."""
    from .. import backend

    # Checked here, before the first row runs (and before TensorFlow is imported).
    decays = tuple(check_decay(d) for d in decays)
    tol, shape, seed = check_tol(tol), check_shape(shape), check_seed(seed)
    device = check_device(device)
    keys = combinations()
    if progress:
        progress("%d rows: api x fused x updates, unshared, trainable=False" % len(keys))
    rows = _measure_rows(keys, decays, tol, shape, seed, device)
    versions = backend.versions()
    measured = [frameworks.FRAMEWORKS[row.api] for row in rows
                if row.api in frameworks.FRAMEWORKS and row.measured is not None]
    if measured:  # the other frameworks' packages, of the rows measured
        versions["frameworks"] = {imports.distribution(module): imports.version(module)
                                  for framework in measured for module in framework.modules}
    return SemanticsMatrix(tuple(rows), tuple(decays), tol, tuple(shape), seed, versions)
