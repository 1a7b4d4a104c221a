"""How many train steps ran: read from the step counters a checkpoint or a graph holds.

Counters, by preference: ``global_step`` (tf.train, Estimator, slim), then an optimizer's
iteration counter (Keras: ``training/SGD/iter`` in a TF1 graph, ``optimizer/iter`` in an
object-based checkpoint, ``.../iterations`` for Keras's older optimizers; Keras 2.11+ and Keras 3
optimizers: ``optimizer/_iterations`` in object checkpoints and SavedModels), then a ``step`` that a ``tf.train.Checkpoint(step=...)`` keeps. Never
``save_counter``, which counts saves. A counter that is 0 loses to one that counted (a
mixed-precision LossScaleOptimizer's own ``_iterations`` stays 0; its inner optimizer's counts).
No TensorFlow here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple


@dataclass(frozen=True)
class StepCount:
    """The number of train steps the convergence check assumes, and where it came from."""

    value: Optional[int]
    source: Optional[str]  # a variable's name, "given" (--steps), or None when not found
    candidates: Tuple[Tuple[str, int], ...] = ()  # every step counter found, (name, value)

    def text(self) -> str:
        if self.value is None:
            return "steps unknown"
        if self.source == "given":
            return "steps %d (given)" % self.value
        return "steps %d (from %s)" % (self.value, self.source)

    def to_dict(self) -> Dict[str, Any]:
        return {"value": self.value, "source": self.source,
                "candidates": [list(c) for c in self.candidates]}


# Last name component -> preference (lower first).
_COUNTERS = {"global_step": 0, "iter": 1, "iterations": 1, "_iterations": 1, "step": 2}


def is_step_counter_name(name: str) -> bool:
    """Whether a variable of this name may count train steps; ``step`` only at the root of an
    object-based checkpoint, where tf.train.Checkpoint(step=...) puts it."""
    last = name.rpartition("/")[2]
    return last in _COUNTERS and (last != "step" or name == "step")


def choose_step_count(counters: Dict[str, int], given: Optional[int] = None) -> StepCount:
    """The step count: ``given`` (the user's --steps) if not None; else the preferred counter
    that counted (value > 0), the largest value among equally preferred ones; else a counter at 0
    (the convergence check then says why it is skipped); else unknown."""
    candidates = tuple(sorted(counters.items(), key=lambda item: (_rank(item[0]), item[0])))
    if given is not None:
        return StepCount(given, "given", candidates)
    if not candidates:
        return StepCount(None, None, ())
    counted = [item for item in candidates if item[1] > 0] or list(candidates)
    best = min(_rank(name) for name, _ in counted)
    name, value = max((item for item in counted if _rank(item[0]) == best),
                      key=lambda item: (item[1], item[0]))
    return StepCount(value, name, candidates)


def _rank(name: str) -> int:
    # A name the readers of Keras files give an optimizer's counter ("iteration" in a tf_keras
    # .h5) ranks as an optimizer's.
    return _COUNTERS.get(name.rpartition("/")[2], _COUNTERS["iter"])
