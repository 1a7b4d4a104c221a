"""ProbeResult: what one probe measured, as plain immutable values (no live TF objects)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from .config import ProbeConfig, check_inputs
from .frozen import FrozenDict, frozen_array

PHASES = ("train", "test")
SNAPSHOTS = ("before_train", "after_train", "before_test", "after_test")


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


@dataclass(frozen=True, eq=False)
class ProbeResult:
    """One probe: snapshots of every batch-norm variable around the train and test runs.

    ``before[phase]`` / ``after[phase]`` map short variable names to arrays of shape [C];
    ``outputs[phase]`` has the input's shape. Every number was read from TensorFlow.
    """

    config: ProbeConfig
    inputs: np.ndarray
    outputs: Mapping[str, np.ndarray]
    snapshots: Mapping[str, Mapping[str, np.ndarray]]  # SNAPSHOTS label -> variables
    batch_statistics: Mapping[str, np.ndarray]  # moving variable -> statistic fed to it (last step)
    update_factor: Mapping[str, float]  # moving variable -> (1 - decay) as the graph holds it
    fused_by_phase: Mapping[str, bool]  # phase -> a FusedBatchNorm kernel ran in that branch
    epsilon: Mapping[str, float]  # phase -> epsilon as the graph holds it
    variables: Tuple[VariableInfo, ...]
    branch_variables: Mapping[str, Tuple[str, ...]]  # phase -> variables that branch reads
    device: DeviceReport
    versions: Mapping[str, Any]

    @property
    def decay(self) -> float:
        return self.config.decay

    @property
    def fused(self) -> bool:
        """Whether the train branch, whose statistics feed the moving averages, was fused."""
        return self.fused_by_phase["train"]

    @property
    def before(self) -> Mapping[str, Mapping[str, np.ndarray]]:
        return FrozenDict(train=self.snapshots["before_train"], test=self.snapshots["before_test"])

    @property
    def after(self) -> Mapping[str, Mapping[str, np.ndarray]]:
        return FrozenDict(train=self.snapshots["after_train"], test=self.snapshots["after_test"])

    @property
    def branches_share_variables(self) -> bool:
        return self.branch_variables["train"] == self.branch_variables["test"]

    @property
    def shared_variables(self) -> Tuple[str, ...]:
        return tuple(sorted(set(self.branch_variables["train"])
                            & set(self.branch_variables["test"])))

    def to_dict(self) -> Dict[str, Any]:
        """Everything, JSON-serializable; float32 values become the exact Python floats."""
        return {
            "config": self.config.to_dict(),
            "fused": self.fused,
            "fused_by_phase": dict(self.fused_by_phase),
            "epsilon": dict(self.epsilon),
            "update_factor": dict(self.update_factor),
            "inputs": self.inputs.tolist(),
            "outputs": {phase: array.tolist() for phase, array in self.outputs.items()},
            "snapshots": {label: {name: array.tolist() for name, array in values.items()}
                          for label, values in self.snapshots.items()},
            "batch_statistics": {name: array.tolist()
                                 for name, array in self.batch_statistics.items()},
            "variables": [v.to_dict() for v in self.variables],
            "branch_variables": {phase: list(names)
                                 for phase, names in self.branch_variables.items()},
            "branches_share_variables": self.branches_share_variables,
            "device": self.device.to_dict(),
            "versions": dict(self.versions),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ProbeResult":
        """Rebuilds a result from :meth:`to_dict` output (e.g. JSON written by the CLI)."""
        c = data["config"]
        inputs = frozen_array(data["inputs"], np.float32)
        config = ProbeConfig(c["decay"], tuple(c["shape"]), c["seed"], c["fused"], c["steps"],
                             c["epsilon"], c["device"], c["input_source"], c["input_dtype"],
                             check_inputs(inputs))
        f32 = np.float32
        return cls(
            config=config,
            inputs=inputs,
            outputs=FrozenDict((p, frozen_array(v, f32)) for p, v in data["outputs"].items()),
            snapshots=FrozenDict((label, FrozenDict((n, frozen_array(v, f32)) for n, v in s.items()))
                                 for label, s in data["snapshots"].items()),
            batch_statistics=FrozenDict((n, frozen_array(v, f32))
                                        for n, v in data["batch_statistics"].items()),
            update_factor=FrozenDict(data["update_factor"]),
            fused_by_phase=FrozenDict(data["fused_by_phase"]),
            epsilon=FrozenDict(data["epsilon"]),
            variables=tuple(VariableInfo.from_dict(v) for v in data["variables"]),
            branch_variables=FrozenDict((p, tuple(n)) for p, n in data["branch_variables"].items()),
            device=DeviceReport.from_dict(data["device"]),
            versions=FrozenDict(data["versions"]),
        )

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ProbeResult) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        def short(values: np.ndarray) -> str:
            return np.array2string(values, precision=4, threshold=4, edgeitems=2,
                                   max_line_width=10 ** 6)
        after = self.snapshots["after_train"]
        return ("<ProbeResult decay=%g fused=%s shape=%s steps=%d on %s: after train "
                "moving_mean=%s moving_variance=%s>"
                % (self.decay, self.fused, self.config.shape, self.config.steps,
                   ",".join(self.device.ran_on) or self.device.target,
                   short(after["moving_mean"]), short(after["moving_variance"])))

    def _repr_html_(self) -> str:
        from .report import render_html
        return render_html(self)
