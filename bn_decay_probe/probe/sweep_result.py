"""SweepResult: what sweep() measured, ProbeResults that differ only in decay, with their
trajectories stacked over the decays, as CSV and as a plot."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..values import frozen_array, to_json_values
from .config import DEFAULT_TOL
from .result import ProbeResult

CSV_COLUMNS = ("decay", "step", "channel", "moving_mean", "moving_variance", "rule_moving_mean",
               "rule_moving_variance", "batch_mean", "batch_variance", "gap", "rule_gap")


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
            predicted = None if gaps is None else r.predicted_gaps(steps)
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
        from ..report.plot import sweep_figure

        figure = sweep_figure(self, channel=channel, tol=tol, shown=shown)
        if path:
            figure.savefig(path)
        return figure
