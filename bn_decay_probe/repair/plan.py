"""Choosing what a repair runs: the layers (and which it leaves, kinds.py), the input tensor(s)
and the training switch(es) -- given by the caller, or found in the graph when there is one
obvious candidate. Ambiguity is an error that lists the candidates."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

from ..checkpoints.graphwalk import Walker, ancestors
from ..errors import ProbeConfigError
from . import discover, kinds


class _Auto:
    """Find it in the graph (the default of inputs and training)."""

    def __repr__(self) -> str:
        return "AUTO"


AUTO = _Auto()


@dataclass
class Plan:
    """Live TF objects for one repair (internal)."""

    layers: List[discover.Layer]  # every layer of the graph; .skipped says why one is not run
    inputs: List[Any]
    switches: List[Any]
    notes: List[str]
    flags: Sequence[str] = ("inputs", "training")  # how the caller names inputs and training

    @property
    def active(self) -> List[discover.Layer]:
        return [layer for layer in self.layers if layer.skipped is None]


def make_plan(tf1: Any, graph: Any, walker: Walker, inputs: Any = AUTO, training: Any = AUTO,
              layers: Optional[Sequence[str]] = None,
              flags: Sequence[str] = ("inputs", "training")) -> Plan:
    """``flags``: how the caller names inputs and training in errors (the CLI's --input,
    --training)."""
    input_flag, training_flag = flags
    found = discover.find_layers(tf1, graph, walker)
    kinds.classify(tf1, graph, found)
    _select(found, layers)
    active = [layer for layer in found if layer.skipped is None]
    if not active:
        reasons = sorted({layer.skipped for layer in found if layer.skipped})
        raise ProbeConfigError("none of the graph's %d batch-norm layer(s) can be recalibrated "
                               "from it: %s" % (len(found), "; ".join(reasons)))
    notes: List[str] = []
    chosen_inputs = _inputs(graph, walker, active, inputs, input_flag)
    switches = _switches(graph, walker, active, training, training_flag)
    if not switches:
        notes.append("no training switch: the graph runs its batch norm in training mode only "
                     "(built with training=True), so the statistics cannot be checked in "
                     "inference mode")
    return Plan(found, chosen_inputs, switches, notes, tuple(flags))


def _as_list(value: Any) -> List[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _select(found: Sequence[discover.Layer], names: Optional[Sequence[str]]) -> None:
    if names is None:
        return
    if isinstance(names, str):
        names = [names]
    known = {layer.name for layer in found}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ProbeConfigError("layers: the graph has no batch-norm layer %s; its layers are %s"
                               % (", ".join(map(repr, unknown)),
                                  ", ".join(sorted(known))))
    for layer in found:
        if layer.name not in names and layer.skipped is None:
            layer.skipped = "not among the layers asked for"


def _inputs(graph: Any, walker: Walker, active: Sequence[discover.Layer], given: Any,
            flag: str) -> List[Any]:
    if given is not AUTO:
        tensors = [discover.resolve_tensor(graph, name, flag) for name in _as_list(given)]
        if not tensors:
            raise ProbeConfigError("%s: give at least one input tensor" % flag)
        for tensor in tensors:
            if tensor.dtype.base_dtype.name not in ("float16", "bfloat16", "float32", "float64"):
                raise ProbeConfigError("%s %s has dtype %s; the input must be a float tensor"
                                       % (flag, tensor.name, tensor.dtype.base_dtype.name))
        feeding = ancestors([t.op for t in discover.statistic_tensors(active)],
                                   control=False)
        for tensor in tensors:
            if tensor.op not in feeding:
                raise ProbeConfigError("%s %s does not feed any batch-norm layer; the layers "
                                       "depend on %s" % (flag, tensor.name, discover.names(
                                           discover.input_candidates(walker, active))))
        return tensors
    candidates = discover.input_candidates(walker, active)
    if len(candidates) == 1:
        return candidates
    if not candidates:
        raise ProbeConfigError("no float placeholder feeds the batch-norm layers (an input "
                               "pipeline inside the graph?); name the input tensor with %s"
                               % flag)
    raise ProbeConfigError("the batch-norm layers depend on %d float placeholders (%s); name "
                           "the input with %s" % (len(candidates), discover.names(candidates),
                                                  flag))


def _switches(graph: Any, walker: Walker, active: Sequence[discover.Layer], given: Any,
              flag: str) -> List[Any]:
    if given is not AUTO:
        tensors = [discover.resolve_tensor(graph, name, flag) for name in _as_list(given)]
        for tensor in tensors:
            if tensor.dtype.base_dtype.name != "bool" or tensor.shape.ndims not in (None, 0):
                raise ProbeConfigError("%s %s is a %s tensor of shape %s; the training switch "
                                       "is a boolean scalar (True: training mode)"
                                       % (flag, tensor.name, tensor.dtype.base_dtype.name,
                                          tensor.shape))
        return tensors
    candidates = discover.switch_candidates(walker, active)
    if len(candidates) > 1:
        raise ProbeConfigError("the batch-norm layers' conds depend on %d boolean placeholders "
                               "(%s); name the training switch with %s"
                               % (len(candidates), discover.names(candidates), flag))
    return candidates
