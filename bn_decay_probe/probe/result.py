"""ProbeResult: what one probe measured, as plain immutable values (no live TF objects)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from ..names import MOVING, short_name
from ..values import FrozenDict, from_json_values, to_json_values
from . import explain, frameworks, theory
from .config import ProbeConfig, check_tol


@dataclass(frozen=True)
class VariableInfo:
    name: str  # full name, e.g. "probe/BatchNorm/moving_mean:0"
    short_name: str  # "moving_mean"
    shape: Tuple[int, ...]
    dtype: str

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "short_name": self.short_name, "shape": list(self.shape),
                "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "VariableInfo":
        return cls(data["name"], data["short_name"], tuple(data["shape"]), data["dtype"])


@dataclass(frozen=True)
class DeviceReport:
    requested: str  # auto | cpu | gpu
    target: str  # the device the graph was built under, e.g. "/device:GPU:0"
    visible_gpus: Tuple[str, ...]
    notice: Optional[str]  # e.g. why "auto" ran on the CPU
    ops: Mapping[str, Mapping[str, str]]  # phase -> batch-norm op name -> device it ran on

    @property
    def ran_on(self) -> Tuple[str, ...]:
        """Every device on which an op of either batch-norm branch actually ran."""
        return tuple(sorted({d for phase in self.ops.values() for d in phase.values()}))

    def to_dict(self) -> Dict[str, Any]:
        return {"requested": self.requested, "target": self.target,
                "visible_gpus": list(self.visible_gpus), "notice": self.notice,
                "ran_on": list(self.ran_on),
                "ops": {phase: dict(ops) for phase, ops in self.ops.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DeviceReport":
        return cls(data["requested"], data["target"], tuple(data["visible_gpus"]),
                   data["notice"],
                   FrozenDict((p, FrozenDict(ops)) for p, ops in data["ops"].items()))


@dataclass(frozen=True)
class Convergence:
    """When max |test output - train output| first got within ``tol``: measured, and predicted
    by the closed form (None: not within the steps run / never)."""

    tol: float
    measured: Optional[int]
    predicted: Optional[int]
    steps_run: int
    stopped: str = ""  # why a measurement ended without converging, when it did
    # Why it can never get within tol, with the value and what to change (explain.why_never);
    # "" when it converged or nothing rules it out.
    why_never: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return {"tol": self.tol, "measured": self.measured, "predicted": self.predicted,
                "steps_run": self.steps_run, "stopped": self.stopped,
                "why_never": self.why_never}

    def describe(self) -> str:
        measured = ("step %d" % self.measured if self.measured is not None
                    else "not within %d step(s)%s" % (self.steps_run,
                                                       ": " + self.stopped if self.stopped else ""))
        predicted = "step %d" % self.predicted if self.predicted is not None else "never"
        text = "measured %s, predicted %s (tol %g)" % (measured, predicted, self.tol)
        return text + ("; never, because " + self.why_never if self.why_never else "")


@dataclass(frozen=True, eq=False)
class ProbeResult:
    """One probe: snapshots of every batch-norm variable around the train and test runs.

    ``before[phase]`` / ``after[phase]`` map the short names of the variables that phase's
    branch reads to arrays of shape [C]; ``outputs[phase]`` has the input's shape (NHWC).
    ``trajectory`` holds, per train step, the train branch's variables, the batch statistics
    fed to the moving averages and (one input) the test/train output gap. Every number was read
    from TensorFlow.
    """

    config: ProbeConfig
    inputs: np.ndarray  # the test input (and the train input without batches), NHWC float32
    outputs: Mapping[str, np.ndarray]  # the train output is the last train step's
    snapshots: Mapping[str, Mapping[str, np.ndarray]]  # SNAPSHOTS label -> full name -> values
    trajectory: Mapping[str, np.ndarray]  # name -> [steps, ...]
    # moving variable -> statistic fed (last step) / (1 - decay) as the graph holds it; empty
    # when the train branch has no moving-average update op.
    batch_statistics: Mapping[str, np.ndarray]
    update_factor: Mapping[str, float]
    fused_by_phase: Mapping[str, bool]  # phase -> a FusedBatchNorm kernel ran in that branch
    epsilon: Mapping[str, float]  # phase -> epsilon as the graph holds it
    variables: Tuple[VariableInfo, ...]
    branch_variables: Mapping[str, Tuple[str, ...]]  # phase -> full names that branch reads
    update_ops: Tuple[str, ...]  # what the graph's UPDATE_OPS collection holds
    device: DeviceReport
    versions: Mapping[str, Any]
    # What a reader could miss in the numbers (n = 1, variance below epsilon, float32 overflow,
    # update ops that did not run, what the float32 cast changed), derived from the
    # measurements by notes.measured_notes.
    notes: Tuple[str, ...] = ()

    @property
    def decay(self) -> float:
        return self.config.decay

    @property
    def batches(self) -> Optional[np.ndarray]:
        return self.config.batches

    @property
    def fused(self) -> bool:
        """Whether the train branch, whose statistics feed the moving averages, was fused."""
        return self.fused_by_phase["train"]

    @property
    def unbiased_variance(self) -> bool:
        """Whether the layer feeds its moving variance n/(n-1) times the biased batch variance:
        TensorFlow's fused kernel, and PyTorch, do."""
        return frameworks.unbiased_variance(self.config.api, self.fused)

    def _view(self, label: str, phase: str) -> Mapping[str, np.ndarray]:
        return FrozenDict((short_name(name), self.snapshots[label][name])
                          for name in self.branch_variables[phase])

    @property
    def before(self) -> Mapping[str, Mapping[str, np.ndarray]]:
        return FrozenDict(train=self._view("before_train", "train"),
                          test=self._view("before_test", "test"))

    @property
    def after(self) -> Mapping[str, Mapping[str, np.ndarray]]:
        return FrozenDict(train=self._view("after_train", "train"),
                          test=self._view("after_test", "test"))

    @property
    def labels(self) -> Dict[str, str]:
        """Full name -> short name where that is unambiguous, else the full name without ':0'
        (unshared branches have two of each)."""
        shorts = [v.short_name for v in self.variables]
        return {v.name: v.short_name if shorts.count(v.short_name) == 1 else v.name.split(":")[0]
                for v in self.variables}

    @property
    def shared_variables(self) -> Tuple[str, ...]:
        """Variables both branches read."""
        return tuple(sorted(set(self.branch_variables["train"])
                            & set(self.branch_variables["test"])))

    @property
    def branches_share_variables(self) -> bool:
        """The test branch normalizes with variables the train branch updates (it reads no
        variable of its own)."""
        return set(self.branch_variables["test"]) <= set(self.branch_variables["train"])

    @property
    def moving_statistics_updated(self) -> bool:
        """Did the train phase change a bit of moving_mean or moving_variance?"""
        before, after = self.before["train"], self.after["train"]
        return any(before[n].tobytes() != after[n].tobytes()
                   for n in MOVING)

    def steps_to_converge(self, tol: float) -> Convergence:
        """The first train step after which max |test output - train output| <= tol, measured
        on this probe's steps, and predicted by the closed form (:mod:`theory`)."""
        if self.batches is not None:
            raise ValueError("steps_to_converge compares the test and train outputs of one "
                             "input; with batches the train steps see other inputs")
        tol = check_tol(tol)
        gaps = self.trajectory["gap"]
        hits = np.nonzero(gaps <= tol)[0]
        convergence = Convergence(tol, int(hits[0]) + 1 if len(hits) else None,
                                  self.predicted_steps_to_converge(tol), len(gaps))
        return explain.with_reason(convergence, **self._convergence_facts())

    def _convergence_facts(self) -> Dict[str, Any]:
        """What decides whether the gap can ever get within a tol (explain.why_never)."""
        return {"decay": self.decay, "fused": self.unbiased_variance,
                "api": self.config.api,
                "n": theory.elements_per_channel(self.inputs.shape),
                "floor": theory.gap_floor(self.inputs, self.unbiased_variance,
                                          self.epsilon["train"]),
                "has_update_op": "moving_variance" in self.batch_statistics,
                "updated": self.moving_statistics_updated,
                "shared": self.branches_share_variables, "trainable": self.config.trainable}

    def predicted_trajectory(self) -> Dict[str, np.ndarray]:
        """What the update rule predicts for moving_mean / moving_variance after each train
        step [steps, C], from the numpy batch statistics of each step's input (see theory)."""
        return theory.predicted_trajectory(self.config.train_inputs(), self.before["train"],
                                           self.decay, self.unbiased_variance,
                                           self.config.zero_debias,
                                           frameworks.average_of(self.config.api))

    def predicted_gaps(self, steps: int) -> np.ndarray:
        """max |test output - train output| after each of ``steps`` train steps on the input,
        by the closed form of the layer's rule (see theory.predicted_gaps)."""
        return theory.predicted_gaps(self.inputs, self.decay, self.unbiased_variance,
                                     self.epsilon["train"], steps, self.config.zero_debias,
                                     frameworks.average_of(self.config.api))

    def predicted_steps_to_converge(self, tol: float) -> Optional[int]:
        return theory.predicted_steps_to_converge(self.inputs, self.decay,
                                                  self.unbiased_variance, self.epsilon["train"],
                                                  tol, self.config.zero_debias,
                                                  frameworks.average_of(self.config.api))

    def to_dict(self) -> Dict[str, Any]:
        """Everything, JSON-serializable; float32 values become the exact Python floats."""
        arrays = lambda mapping: {k: to_json_values(v) for k, v in mapping.items()}  # noqa: E731
        return {
            "config": self.config.to_dict(),
            "fused": self.fused,
            "fused_by_phase": dict(self.fused_by_phase),
            "epsilon": dict(self.epsilon),
            "update_factor": dict(self.update_factor),
            "inputs": to_json_values(self.inputs),
            "batches": None if self.batches is None else to_json_values(self.batches),
            "outputs": arrays(self.outputs),
            "snapshots": {label: arrays(values) for label, values in self.snapshots.items()},
            "trajectory": arrays(self.trajectory),
            "batch_statistics": arrays(self.batch_statistics),
            "variables": [v.to_dict() for v in self.variables],
            "branch_variables": {phase: list(names)
                                 for phase, names in self.branch_variables.items()},
            "branches_share_variables": self.branches_share_variables,
            "update_ops": list(self.update_ops),
            "moving_statistics_updated": self.moving_statistics_updated,
            "device": self.device.to_dict(),
            "versions": dict(self.versions),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ProbeResult":
        """Rebuilds a result from :meth:`to_dict` output (e.g. JSON written by the CLI)."""
        arrays = lambda mapping: FrozenDict(  # noqa: E731
            (k, from_json_values(v)) for k, v in mapping.items())
        batches = data.get("batches")
        config = ProbeConfig.from_dict(data["config"], from_json_values(data["inputs"]),
                                       None if batches is None else from_json_values(batches))
        return cls(
            config=config,
            inputs=config.inputs,
            outputs=arrays(data["outputs"]),
            snapshots=FrozenDict((label, arrays(values))
                                 for label, values in data["snapshots"].items()),
            trajectory=FrozenDict((k, from_json_values(v, np.float64 if k == "gap" else np.float32))
                                  for k, v in data["trajectory"].items()),
            batch_statistics=arrays(data["batch_statistics"]),
            update_factor=FrozenDict(data["update_factor"]),
            fused_by_phase=FrozenDict(data["fused_by_phase"]),
            epsilon=FrozenDict(data["epsilon"]),
            variables=tuple(VariableInfo.from_dict(v) for v in data["variables"]),
            branch_variables=FrozenDict((p, tuple(n)) for p, n in data["branch_variables"].items()),
            update_ops=tuple(data["update_ops"]),
            device=DeviceReport.from_dict(data["device"]),
            versions=FrozenDict(data["versions"]),
            notes=tuple(data.get("notes", ())),  # absent from older JSON
        )

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ProbeResult) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        def short(values: np.ndarray) -> str:
            return np.array2string(values, precision=4, threshold=4, edgeitems=2,
                                   max_line_width=10 ** 6)
        after = self.after["train"]
        api = "" if self.config.api == "contrib" else " api=%s" % self.config.api
        updates = "" if self.config.updates == "inplace" else " updates=%s" % self.config.updates
        return ("<ProbeResult decay=%g fused=%s%s%s shape=%s steps=%d on %s: after train "
                "moving_mean=%s moving_variance=%s>"
                % (self.decay, self.fused, api, updates, self.config.shape,
                   self.config.train_steps,
                   ",".join(self.device.ran_on) or self.device.target,
                   short(after["moving_mean"]), short(after["moving_variance"])))

    def _repr_html_(self) -> str:
        from ..report.html import render_html
        return render_html(self)
