"""The runs of a repair, in one session, with every variable left as it was:

1. read the moving statistics (and any variable the runs below could change);
2. the first ``gap_batches`` batches, run as one batch, in inference mode (the outputs before)
   and in training mode (the outputs inference should come close to);
3. training mode on every batch, one forward pass each, no update op run: each layer's batch
   mean and variance (and the number of values they cover) come out of the same run, and are
   pooled in float64; the first run also checks that every cond took its training branch;
4. the variables the runs changed (in-place update ops) get their values back, and the layers'
   moving statistics get the pooled values;
5. the gap batch in inference mode again: the outputs after.

In training mode every batch-norm layer normalizes with its batch statistics, so what a layer
sees does not depend on the moving statistics being replaced (precise BN, as fvcore's
update_bn_stats runs the model in train mode).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..checkpoints.graphwalk import Condition, Walker
from ..errors import ProbeConfigError, first_line
from .data import InputSpec, prepare_batch
from .discover import Layer, Statistic, mutated_variables
from .plan import Plan
from .pooled import PooledMoments, unbessel

SCOPE = "bn_decay_probe_repair"
# graph -> {values tensor name: its Size tensor}: a second repair of a live graph reuses them.
_SIZES: "weakref.WeakKeyDictionary[Any, Dict[str, Any]]" = weakref.WeakKeyDictionary()


@dataclass
class GapSums:
    """Running sums for one output's gap (float64)."""

    batches: int = 0  # data batches the gap is measured on
    runs: int = 0  # runs they took (one, unless the input's batch size is fixed)
    rows: int = 0
    values: int = 0
    square_train: float = 0.0
    square_before: float = 0.0
    square_after: float = 0.0
    max_before: float = 0.0
    max_after: float = 0.0


@dataclass
class Measured:
    before: Dict[str, Tuple[np.ndarray, np.ndarray]]  # layer -> (mean, variance) at the start
    pooled: Dict[str, PooledMoments]  # active layers
    gaps: Dict[str, GapSums]  # output name -> sums; empty when not measured
    batches: int
    rows: int
    written: Dict[str, Tuple[np.ndarray, np.ndarray]]  # layer -> values given to the variables


def spec_of(tensor: Any) -> InputSpec:
    shape = None if tensor.shape.ndims is None else tuple(tensor.shape.as_list())
    return InputSpec(tensor.name, shape, tensor.dtype.base_dtype.as_numpy_dtype().dtype.name)


def size_tensors(tf1: Any, graph: Any, statistics: Sequence[Statistic]) -> Dict[str, Any]:
    """A Size op per layer input (the values per channel are its size / channels). The only ops
    a repair adds to a graph; made once per graph."""
    cache = _SIZES.setdefault(graph, {})
    missing = [s.values for s in statistics if s.values.name not in cache]
    if missing:
        if graph.finalized:
            raise ProbeConfigError("the graph is finalized (e.g. by a MonitoredSession), and "
                                   "the repair needs to add %d Size op(s) to it; run the repair "
                                   "before finalizing, or repair the checkpoint instead"
                                   % len(missing))
        with graph.as_default(), tf1.name_scope(SCOPE + "/"):
            for values in missing:
                cache.setdefault(values.name, tf1.size(values, out_type=tf1.int64))
    return {s.values.name: cache[s.values.name] for s in statistics}


def run(tf1: Any, session: Any, walker: Walker, plan: Plan, batches: Iterable[Tuple[Any, ...]],
        gap_batches: int, update: Optional[Callable[[int], Any]] = None) -> Measured:
    active = plan.active
    statistics = [(layer, s) for layer in active for s in layer.statistics]
    sizes = size_tensors(tf1, session.graph, [s for _, s in statistics])
    specs = [spec_of(t) for t in plan.inputs]
    stream = (tuple(prepare_batch(array, index, spec) for array, spec in zip(batch, specs))
              for index, batch in enumerate(batches))
    measure_gap = bool(plan.switches and plan.outputs and gap_batches > 0)
    kept: List[Tuple[np.ndarray, ...]] = []
    if measure_gap:
        for batch in stream:
            kept.append(batch)
            if len(kept) == gap_batches:
                break

    stat_fetches = [(s.mean, s.variance, sizes[s.values.name]) for _, s in statistics]
    conditions = _conditions(plan)
    variables = session.graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES) + \
        session.graph.get_collection(tf1.GraphKeys.LOCAL_VARIABLES)
    fetched = [t for triple in stat_fetches for t in triple] + list(plan.outputs)
    changed = mutated_variables(walker, fetched, variables)
    moving = [v for layer in plan.layers for v in (layer.mean_variable, layer.variance_variable)]
    start = _run(tf1, session, {"moving": moving, "changed": changed}, {}, "read the variables")
    before = {layer.name: (np.asarray(m, np.float64).reshape(-1),
                           np.asarray(v, np.float64).reshape(-1))
              for layer, m, v in zip(plan.layers, start["moving"][::2], start["moving"][1::2])}

    gap_feeds = _gap_batches(plan, kept)
    outputs_before = [_run(tf1, session, plan.outputs, _feed(plan, batch, False),
                           "run the gap batch in inference mode") for batch in gap_feeds]
    outputs_train = [_run(tf1, session, plan.outputs, _feed(plan, batch, True),
                          "run the gap batch in training mode") for batch in gap_feeds]

    pooled = {layer.name: PooledMoments(layer.channels) for layer in active}
    count, rows = 0, 0
    for batch in _chain(kept, stream):
        fetches: Dict[str, Any] = {"stats": stat_fetches}
        if count == 0 and conditions:
            fetches["conditions"] = [_fetchable(c.predicate) for c, _ in conditions]
        values = _run(tf1, session, fetches, _feed(plan, batch, True),
                      "run batch %d in training mode" % count)
        if count == 0 and conditions:
            _check_conditions(conditions, values["conditions"], plan.switches)
        for (layer, statistic), (mean, variance, size) in zip(statistics, values["stats"]):
            _pool(pooled[layer.name], layer, statistic, mean, variance, int(size), count)
        count += 1
        rows += int(batch[0].shape[0])
        if update:
            update(1)
    if count == 0:
        raise ProbeConfigError("batches: no batch to run (the data is empty)")

    written = {layer.name: (pooled[layer.name].mean, pooled[layer.name].variance)
               for layer in active}
    assignments = list(zip(changed, start["changed"])) + [
        (variable, value) for layer in active
        for variable, value in zip((layer.mean_variable, layer.variance_variable),
                                   written[layer.name])]
    values = _assign(tf1, session, assignments)
    written = {layer.name: (values[layer.mean_variable.op.name],
                            values[layer.variance_variable.op.name]) for layer in active}

    gaps: Dict[str, GapSums] = {}
    for index, batch in enumerate(gap_feeds):
        after = _run(tf1, session, plan.outputs, _feed(plan, batch, False),
                     "run the gap batch in inference mode")
        for output, train, old, new in zip(plan.outputs, outputs_train[index],
                                           outputs_before[index], after):
            add_gap(gaps.setdefault(output.name, GapSums(batches=len(kept))), train, old, new)
    return Measured(before, pooled, gaps, count, rows, written)


def _assign(tf1: Any, session: Any, assignments: Sequence[Tuple[Any, np.ndarray]]
            ) -> Dict[str, np.ndarray]:
    """Writes each value (cast to its variable's dtype and shape) through the variable's own
    initializer, fed -- what Variable.load does, without adding an op or depending on eager
    mode being off -- all in one run (each distinct run costs a pass over the whole graph).
    Returns the values written by variable name (for a variable given twice, the last)."""
    feeds: Dict[Any, np.ndarray] = {}
    initializers: Dict[str, Any] = {}
    written: Dict[str, np.ndarray] = {}
    for variable, value in assignments:
        value = np.asarray(value).astype(variable.dtype.base_dtype.as_numpy_dtype).reshape(
            variable.shape.as_list())
        feeds[variable.initializer.inputs[1]] = value
        initializers[variable.op.name] = variable.initializer
        written[variable.op.name] = value
    if assignments:
        _run(tf1, session, list(initializers.values()), feeds, "assign the statistics")
    return written


def _gap_batches(plan: Plan, kept: List[Tuple[np.ndarray, ...]]
                 ) -> List[Tuple[np.ndarray, ...]]:
    """The kept batches as one batch, so that training mode normalizes them with the
    statistics of all their rows: with small batches (or small feature maps) each batch's own
    statistics are noisy, and the training-mode output of one batch is not what population
    statistics should reproduce. An input with a fixed batch size takes them one by one."""
    if len(kept) <= 1 or any(t.shape.ndims is None or t.shape.as_list()[0] is not None
                             for t in plan.inputs):
        return kept
    return [tuple(np.concatenate(arrays) for arrays in zip(*kept))]


def _chain(kept: List[Any], stream: Iterable[Any]) -> Iterable[Any]:
    yield from kept
    yield from stream


def _feed(plan: Plan, batch: Tuple[np.ndarray, ...], training: bool) -> Dict[Any, Any]:
    feed: Dict[Any, Any] = dict(zip(plan.inputs, batch))
    feed.update((switch, training) for switch in plan.switches)
    return feed


def _run(tf1: Any, session: Any, fetches: Any, feed: Dict[Any, Any], what: str) -> Any:
    try:
        return session.run(fetches, feed)
    except tf1.errors.OpError as exc:
        raise ProbeConfigError("the graph could not %s: %s" % (what, first_line(exc))) from None


def _conditions(plan: Plan) -> List[Tuple[Condition, str]]:
    """Each distinct (predicate, required) once, with a layer that needs it."""
    found: Dict[Tuple[str, bool], Tuple[Condition, str]] = {}
    for layer in plan.active:
        for statistic in layer.statistics:
            for condition in statistic.conditions:
                if condition.predicate is not None:
                    found.setdefault((condition.predicate.name, condition.required),
                                     (condition, layer.name))
    return list(found.values())


def _fetchable(tensor: Any) -> Any:
    """TF 1.x marks a cond's pred_id (an Identity of the predicate) unfetchable."""
    while not tensor.graph.is_fetchable(tensor.op) and tensor.op.type == "Identity":
        tensor = tensor.op.inputs[0]
    return tensor


def _check_conditions(conditions: Sequence[Tuple[Condition, str]], values: Sequence[Any],
                      switches: Sequence[Any]) -> None:
    for (condition, layer), value in zip(conditions, values):
        if bool(value) != condition.required:
            fed = ", ".join("%s=True" % s.name for s in switches) or "no switch"
            raise ProbeConfigError(
                "with %s, layer %s does not run in training mode (%s takes its %s branch); "
                "name the training switch with --training / training="
                % (fed, layer, condition.where, "true" if bool(value) else "false"))


def _pool(moments: PooledMoments, layer: Layer, statistic: Statistic, mean: np.ndarray,
          variance: np.ndarray, size: int, index: int) -> None:
    mean = np.asarray(mean, np.float64).reshape(-1)
    variance = np.asarray(variance, np.float64).reshape(-1)
    if size % layer.channels:
        raise ProbeConfigError("layer %s: its input %s has %d values, not a multiple of its %d "
                               "channels" % (layer.name, statistic.values.name, size,
                                             layer.channels))
    count = size // layer.channels
    if count and not (np.isfinite(mean).all() and np.isfinite(variance).all()):
        raise ProbeConfigError("layer %s: the batch statistics of batch %d are NaN or infinite "
                               "(the activations overflow on this data?)" % (layer.name, index))
    moments.add(count, mean, unbessel(variance, count) if statistic.bessel else variance)


def add_gap(sums: GapSums, train: np.ndarray, before: np.ndarray, after: np.ndarray) -> None:
    train = np.asarray(train, np.float64)
    old = np.asarray(before, np.float64) - train
    new = np.asarray(after, np.float64) - train
    sums.runs += 1
    sums.rows += train.shape[0] if train.ndim else 1
    sums.values += train.size
    sums.square_train += float(np.square(train).sum())
    with np.errstate(invalid="ignore", over="ignore"):
        # A NaN or infinite output (activations that overflow with wrong statistics) is as
        # far from the training-mode output as can be: an infinite gap, not NaN.
        old, new = (np.where(np.isfinite(d), d, np.inf) for d in (old, new))
        sums.square_before += float(np.square(old).sum())
        sums.square_after += float(np.square(new).sum())
    if train.size:
        sums.max_before = max(sums.max_before, float(np.abs(old).max()))
        sums.max_after = max(sums.max_after, float(np.abs(new).max()))
