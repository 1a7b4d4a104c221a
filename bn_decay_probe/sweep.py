"""sweep(): many decays through one graph, and SweepResult, what they measured.

Importing this module does not import TensorFlow; running a sweep does.
"""
from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import apis, theory
from .arguments import check_not_a_shape, positional_up_to
from .config import DEFAULT_EPSILON, ProbeConfig, check_decay, check_flag
from .errors import ProbeConfigError
from .frozen import frozen_array
from .jsonable import to_json_values
from .report import DEFAULT_TOL
from .result import ProbeResult

CSV_COLUMNS = ("decay", "step", "channel", "moving_mean", "moving_variance", "rule_moving_mean",
               "rule_moving_variance", "batch_mean", "batch_variance", "gap", "rule_gap")


def check_decays(decays: Any) -> Tuple[float, ...]:
    """A non-empty sequence of numbers in [0, 1]; raises ProbeConfigError naming the first bad
    one."""
    if isinstance(decays, np.ndarray) and decays.ndim != 1:
        raise ProbeConfigError("decays must be a 1-D sequence of numbers in [0, 1], got an "
                               "array of shape %s" % (decays.shape,))
    if isinstance(decays, (str, bytes, Mapping)) or not hasattr(decays, "__iter__"):
        raise ProbeConfigError("decays must be a non-empty sequence of numbers in [0, 1], "
                               "got %r" % (decays,))
    values = list(decays)
    if not values:
        raise ProbeConfigError("decays must be a non-empty sequence of numbers in [0, 1], "
                               "got an empty %s" % type(decays).__name__)
    checked = []
    for index, decay in enumerate(values):
        try:
            checked.append(check_decay(decay))
        except ProbeConfigError:
            raise ProbeConfigError("decays[%d] must be a number in [0, 1], got %r"
                                   % (index, decay)) from None
    return tuple(checked)


def sweepable(config: ProbeConfig) -> bool:
    """Whether sweep() runs the decays of this layer through one graph: every API built as a
    TF1-style graph does, whatever its updates, data format, sharing or batches. Others (an
    eager layer) take one probe() per decay."""
    return config.api in apis.BUILDERS


@positional_up_to(("decays", "steps", "inputs"))
def sweep(decays: Sequence[float], steps: int = 1, inputs: Any = None, *,
          shape: Optional[Sequence[int]] = None, seed: int = 0, fused: Optional[bool] = None,
          epsilon: float = DEFAULT_EPSILON, device: str = "auto",
          progress: Optional[Callable[[int], Any]] = None, api: str = "contrib",
          updates: str = "inplace", data_format: str = "NHWC", zero_debias: bool = False,
          share_variables: bool = True, batches: Any = None, trainable: bool = True,
          exact: bool = False) -> "SweepResult":
    """Runs a batch-norm layer in train then test mode for every decay and returns what probe()
    would return for each. The decays share one graph: the input is tiled along the channel
    axis, one copy of its channels per decay, and the decay is a per-channel tensor, so each
    train step is one ``Session.run`` for all of them (in chunks that keep a tiled tensor under
    4 MiB; an input larger than that runs one decay per chunk).

    Args:
      decays: a non-empty sequence of numbers in [0, 1].
      steps, inputs, shape, seed, fused, epsilon, device, api, updates, data_format,
        zero_debias, share_variables, batches, trainable: as for probe().
      progress: called with 1 for each decay as it finishes (e.g. a tqdm bar's ``update``).
      exact: run one decay at a time (a ``Session.run`` per decay per step) through the same
        graph, so that every number is bit-identical to probe()'s on every backend.
      Arguments after ``inputs`` are keyword-only.

    Returns:
      A SweepResult: ``result[i]`` is the ProbeResult of ``decays[i]``, equal to
      probe(decay=decays[i], ...) but for the op names in its device report and, where
      TensorFlow's CPU kernels round a channel differently in the longer tiled vectors, a few
      float32 ulps (docs/sweeps.md has the bounds; C a multiple of 8, or ``exact``: none);
      ``moving_mean`` / ``moving_variance`` are [len(decays), steps, C].

    Raises:
      ProbeConfigError: for any invalid argument, with a one-line message, before TensorFlow is
        imported; also for a fourth positional argument or a shape passed as ``inputs``.
    """
    checked = check_decays(decays)
    check_not_a_shape(inputs)
    config = ProbeConfig.create(
        decay=checked[0], inputs=inputs, shape=shape, seed=seed, fused=fused, steps=steps,
        epsilon=epsilon, device=device, api=api, updates=updates, data_format=data_format,
        zero_debias=zero_debias, share_variables=share_variables, batches=batches,
        trainable=trainable)
    return SweepResult(measure(config, checked, progress, check_flag("exact", exact)))


def measure(config: ProbeConfig, decays: Sequence[float],
            progress: Optional[Callable[[int], Any]] = None,
            exact: bool = False) -> Tuple[ProbeResult, ...]:
    """Every decay of ``decays`` with ``config``: through the sweep graph when sweepable (one
    decay at a time with ``exact``), else one probe() per decay. Imports TensorFlow."""
    if sweepable(config):
        from . import sweep_runner

        return sweep_runner.run(config, decays, progress, 1 if exact else None)
    from . import runner

    results = []
    for decay in decays:
        results.append(runner.run(dataclasses.replace(config, decay=decay)))
        if progress:
            progress(1)
    return tuple(results)


def _stacked(results: Sequence[ProbeResult], name: str) -> np.ndarray:
    return frozen_array([r.trajectory[name] for r in results])


@dataclass(frozen=True, eq=False)
class SweepResult:
    """ProbeResults that differ only in decay, and their trajectories stacked over decays.

    ``moving_mean`` / ``moving_variance``: [decays, train steps, C] after each train step;
    ``gap``: [decays, train steps] max |test output - train output| after each step (None
    with batches, where the train steps see other inputs). Build it from any such results,
    sweep()'s or probe()'s.
    """

    results: Tuple[ProbeResult, ...]
    decays: np.ndarray = field(init=False, repr=False)
    moving_mean: np.ndarray = field(init=False, repr=False)
    moving_variance: np.ndarray = field(init=False, repr=False)
    gap: Optional[np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        results = tuple(self.results)
        if not results:
            raise ValueError("a SweepResult needs at least one ProbeResult")
        first = results[0].config
        for r in results:
            if (r.config.train_steps, r.config.shape) != (first.train_steps, first.shape):
                raise ValueError("the results of a sweep must share steps and shape: %s has "
                                 "%d step(s) and shape %s, the first %d and %s"
                                 % (r, r.config.train_steps, r.config.shape,
                                    first.train_steps, first.shape))
        set_ = object.__setattr__  # frozen: the derived arrays are set once, here
        set_(self, "results", results)
        set_(self, "decays", frozen_array([r.decay for r in results], np.float64))
        set_(self, "moving_mean", _stacked(results, "moving_mean"))
        set_(self, "moving_variance", _stacked(results, "moving_variance"))
        set_(self, "gap", _stacked(results, "gap") if "gap" in results[0].trajectory else None)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> ProbeResult:
        return self.results[index]

    def __iter__(self) -> Iterator[ProbeResult]:
        return iter(self.results)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, SweepResult) and self.results == other.results

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        c = self.results[0].config
        return ("<SweepResult %d decay(s) from %g to %g fused=%s shape=%s steps=%d>"
                % (len(self), self.decays[0], self.decays[-1], self.results[0].fused, c.shape,
                   c.train_steps))

    def to_dict(self) -> Dict[str, Any]:
        """The stacked arrays, then every decay's full result (ProbeResult.to_dict)."""
        return {"decays": self.decays.tolist(),
                "moving_mean": to_json_values(self.moving_mean),
                "moving_variance": to_json_values(self.moving_variance),
                "gap": None if self.gap is None else to_json_values(self.gap),
                "results": [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SweepResult":
        return cls(tuple(ProbeResult.from_dict(r) for r in data["results"]))

    def to_csv(self) -> str:
        """One row per decay, train step and channel: the measured moving statistics, the
        update rule's (numpy, float64), the batch statistics fed, and the test/train gap with
        the closed form's (empty with batches). Values are written exactly (repr)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in self.results:
            rule = r.predicted_trajectory()
            steps = r.config.train_steps
            gaps = r.trajectory.get("gap")
            predicted = None if gaps is None else theory.predicted_gaps(
                r.inputs, r.decay, r.fused, r.epsilon["train"], steps, r.config.zero_debias)
            for k in range(steps):
                gap = "" if gaps is None else repr(float(gaps[k]))
                rule_gap = "" if predicted is None else repr(float(predicted[k]))
                for channel in range(r.config.channels):
                    writer.writerow([repr(r.decay), k + 1, channel] + [
                        repr(float(values[k][channel])) for values in (
                            r.trajectory["moving_mean"], r.trajectory["moving_variance"],
                            rule["moving_mean"], rule["moving_variance"],
                            r.trajectory["batch_mean"], r.trajectory["batch_variance"])]
                        + [gap, rule_gap])
        return out.getvalue()

    def plot(self, path: Optional[str] = None, channel: int = 0, tol: float = DEFAULT_TOL,
             shown: int = 6) -> Any:
        """A matplotlib Figure (see plot.sweep_figure); saved to ``path`` when given."""
        from .plot import sweep_figure

        figure = sweep_figure(self, channel=channel, tol=tol, shown=shown)
        if path:
            figure.savefig(path)
        return figure
