"""Which device a probe asks for, and which device each op actually ran on (no TF import)."""
from __future__ import annotations

import re
from typing import Any, Dict, Iterable, NamedTuple, Optional, Sequence

from ..errors import ProbeConfigError

CPU = "/device:CPU:0"
GPU = "/device:GPU:0"
_DEVICE = re.compile(r"device:([A-Za-z_]+):(\d+)")


class Placement(NamedTuple):
    target: str  # the device the graph is built under
    notice: Optional[str]  # one line for the user when "auto" had to fall back


def resolve(requested: str, gpus: Sequence[str], framework: str = "TensorFlow") -> Placement:
    """Maps device auto|cpu|gpu onto a device (named as TF names them), given the GPUs
    ``framework`` sees."""
    if requested == "cpu":
        return Placement(CPU, None)
    if gpus:
        return Placement(GPU, None)
    if requested == "gpu":
        raise ProbeConfigError("device 'gpu' was requested but %s sees no GPU; use device "
                               "'cpu' or 'auto'" % framework)
    return Placement(CPU, "no GPU visible to %s; running on the CPU" % framework)


def canonical(device: str) -> str:
    """'/job:localhost/replica:0/task:0/device:CPU:0' (or a '/stream:all' trace) ->
    '/device:CPU:0'."""
    match = _DEVICE.search(device)
    return "/device:%s:%s" % (match.group(1).upper(), match.group(2)) if match else device


def executed_on(run_metadata: Any, op_names: Iterable[str]) -> Dict[str, str]:
    """Op name -> device, for the ops among ``op_names`` that ran in a traced ``Session.run``.

    Read from the run's step stats, which the executor of each device fills in for the nodes
    it actually executed, so this is where the op ran, not where it was asked to run.
    """
    wanted = set(op_names)
    ran: Dict[str, str] = {}
    for device_stats in run_metadata.step_stats.dev_stats:
        for node in device_stats.node_stats:
            name = node.node_name.split(":")[0]  # GPU stream traces append ":<op type>"
            if name in wanted:
                ran[name] = canonical(device_stats.device)
    return dict(sorted(ran.items()))
