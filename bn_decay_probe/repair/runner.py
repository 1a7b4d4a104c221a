"""The runs of a repair, in one session, with every variable left as it was:

1. read the moving statistics (and any variable the runs below could change);
2. the check, before: the checked batches (all, read again; or those kept in memory when the
   batches can be read only once) in inference mode, the mean and variance of each layer's
   input pooled in float64;
3. each batch once in training mode, no update op run: each layer's batch mean and variance
   (and the number of values they cover) come out of the run and are pooled in float64; the
   first run also checks that every cond took its training branch;
4. the variables the runs changed (in-place update ops) get their values back, and the layers'
   moving statistics get the pooled values;
5. the check, after: the checked batches again in inference mode (and 4 again, when those runs
   may move variables).

In training mode every batch-norm layer normalizes with its batch statistics, so what a layer
sees does not depend on the moving statistics being replaced (precise BN, as fvcore's
update_bn_stats runs the model in train mode). The check (check.py) compares each layer's
moving statistics with what inference mode really feeds it.
"""
from __future__ import annotations

import itertools
import re
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..checkpoints.graphwalk import Condition, Walker
from ..errors import ProbeConfigError, first_line
from .data import InputSpec, prepare_batch
from .discover import Layer, Statistic, mutated_variables
from .plan import Plan
from .pooled import PooledMoments, unbessel

SCOPE = "bn_decay_probe_repair"
# graph -> {values tensor name: (its Size, and its per-channel mean and variance)}: a second
# repair of a live graph reuses them.
_ADDED: "weakref.WeakKeyDictionary[Any, Dict[str, Tuple[Any, Any, Any]]]" = \
    weakref.WeakKeyDictionary()
# How many batches the check keeps in memory when the batches can be read only once.
ONE_SHOT_CHECK = 16
_UNFED = re.compile(r"You must feed a value for placeholder tensor '([^']+)' with dtype (\w+)")

Batches = Iterable[Tuple[np.ndarray, ...]]


@dataclass
class Measured:
    before: Dict[str, Tuple[np.ndarray, np.ndarray]]  # layer -> (mean, variance) at the start
    pooled: Dict[str, PooledMoments]  # active layers
    batches: int
    rows: int
    written: Dict[str, Tuple[np.ndarray, np.ndarray]]  # layer -> values given to the variables
    # the check: each active layer's input in inference mode, with the statistics before and
    # after; empty when not checked (``unchecked`` says why)
    seen_before: Dict[str, PooledMoments] = field(default_factory=dict)
    seen_after: Dict[str, PooledMoments] = field(default_factory=dict)
    checked_batches: int = 0
    checked_rows: int = 0
    checked_all: bool = False  # every batch of the data was checked
    one_shot: bool = False  # the batches could be read only once (the check kept some)
    unchecked: Optional[str] = None


def spec_of(tensor: Any) -> InputSpec:
    shape = None if tensor.shape.ndims is None else tuple(tensor.shape.as_list())
    return InputSpec(tensor.name, shape, tensor.dtype.base_dtype.as_numpy_dtype().dtype.name)


def input_tensors(tf1: Any, graph: Any, statistics: Sequence[Statistic]
                  ) -> Dict[str, Tuple[Any, Any, Any]]:
    """Per layer input: a Size op (the values per channel are its size / channels) and its
    per-channel mean and variance over the other axes (for the check). The only ops a repair
    adds to a graph; made once per graph."""
    cache = _ADDED.setdefault(graph, {})
    missing = [s for s in statistics if s.values.name not in cache]
    if missing:
        if graph.finalized:
            raise ProbeConfigError("the graph is finalized (e.g. by a MonitoredSession), and "
                                   "the repair needs to add %d op(s) to it; run the repair "
                                   "before finalizing, or repair the checkpoint instead"
                                   % (3 * len(missing)))
        with graph.as_default(), tf1.name_scope(SCOPE + "/"):
            for statistic in missing:
                values = statistic.values
                rank = values.shape.ndims
                axes = [a for a in range(rank) if a != statistic.channel_axis % rank] \
                    if rank else [0]
                mean, variance = tf1.nn.moments(tf1.cast(values, tf1.float32), axes)
                cache.setdefault(values.name, (tf1.size(values, out_type=tf1.int64), mean,
                                               variance))
    return {s.values.name: cache[s.values.name] for s in statistics}


def run(tf1: Any, session: Any, walker: Walker, plan: Plan, batches: Batches,
        again: Optional[Callable[[], Batches]], check_batches: Optional[int],
        update: Optional[Callable[[int], Any]] = None) -> Measured:
    """``again``: the same batches read anew (None: they can be read only once);
    ``check_batches``: how many to check (None: all; 0: none)."""
    active = plan.active
    statistics = [(layer, s) for layer in active for s in layer.statistics]
    added = input_tensors(tf1, session.graph, [s for _, s in statistics])
    specs = [spec_of(t) for t in plan.inputs]

    def prepared(source: Batches) -> Iterator[Tuple[np.ndarray, ...]]:
        return (tuple(prepare_batch(array, index, spec) for array, spec in zip(batch, specs))
                for index, batch in enumerate(source))

    stat_fetches = [(s.mean, s.variance, added[s.values.name][0]) for _, s in statistics]
    seen_fetches = [added[s.values.name] for _, s in statistics]
    conditions = _conditions(plan)
    variables = session.graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES) + \
        session.graph.get_collection(tf1.GraphKeys.LOCAL_VARIABLES)
    fetched = [t for triple in stat_fetches + seen_fetches for t in triple]
    changed = mutated_variables(walker, fetched, variables)
    moving = [v for layer in plan.layers for v in (layer.mean_variable, layer.variance_variable)]
    start = _run(tf1, session, plan, {"moving": moving, "changed": changed}, {},
                 "read the variables")
    before = {layer.name: (np.asarray(m, np.float64).reshape(-1),
                           np.asarray(v, np.float64).reshape(-1))
              for layer, m, v in zip(plan.layers, start["moving"][::2], start["moving"][1::2])}

    measured = Measured(before, {layer.name: PooledMoments(layer.channels) for layer in active},
                        0, 0, {})
    checking = _Check(plan, statistics, seen_fetches, check_batches, measured)
    stream = prepared(batches)
    # The check's batches, read before any training run: training runs of a graph with in-place
    # updates move the moving statistics (given back below), and the check "before" must see
    # the statistics as they were.
    kept = checking.read_ahead(stream) if again is None else []
    checking.run(tf1, session, kept if again is None else prepared(again()),
                 measured.seen_before)
    for batch in itertools.chain(kept, stream):
        fetches: Dict[str, Any] = {"stats": stat_fetches}
        if measured.batches == 0 and conditions:
            fetches["conditions"] = [_fetchable(c.predicate) for c, _ in conditions]
        values = _run(tf1, session, plan, fetches, _feed(plan, batch, True),
                      "run batch %d in training mode" % measured.batches)
        if measured.batches == 0 and conditions:
            _check_conditions(conditions, values["conditions"], plan)
        for (layer, statistic), (mean, variance, size) in zip(statistics, values["stats"]):
            _pool(measured.pooled[layer.name], layer, statistic, mean, variance, int(size),
                  measured.batches)
        measured.batches += 1
        measured.rows += int(batch[0].shape[0])
        if update:
            update(1)
    if measured.batches == 0:
        raise ProbeConfigError("batches: no batch to run (the data is empty)")

    written = {layer.name: (measured.pooled[layer.name].mean,
                            measured.pooled[layer.name].variance) for layer in active}
    assignments = list(zip(changed, start["changed"])) + [
        (variable, value) for layer in active
        for variable, value in zip((layer.mean_variable, layer.variance_variable),
                                   written[layer.name])]
    assigned = _assign(tf1, session, plan, assignments)
    measured.written = {layer.name: (assigned[layer.mean_variable.op.name],
                                     assigned[layer.variance_variable.op.name])
                        for layer in active}
    if checking.run(tf1, session, kept if again is None else prepared(again()),
                    measured.seen_after) and changed:
        _assign(tf1, session, plan, assignments)  # what the check's runs moved, back
    checking.finish()
    return measured


class _Check:
    """The check's runs: inference mode on the checked batches, with the statistics before and
    after they are written."""

    def __init__(self, plan: Plan, statistics: Sequence[Tuple[Layer, Statistic]],
                 fetches: Sequence[Any], check_batches: Optional[int],
                 measured: Measured) -> None:
        self.plan, self.statistics, self.fetches = plan, statistics, fetches
        self.measured, self.limit = measured, check_batches
        if not plan.switches:
            measured.unchecked = ("the graph has no training switch, so it has no inference "
                                  "mode to check the statistics in")
        elif check_batches == 0:
            measured.unchecked = "the check was turned off (0 batches)"

    def read_ahead(self, stream: Iterator[Tuple[np.ndarray, ...]]
                   ) -> List[Tuple[np.ndarray, ...]]:
        """Batches that can be read only once: the check's, kept in memory (the first 16
        unless a number was given)."""
        self.measured.one_shot = True
        if self.measured.unchecked is not None:
            return []
        return list(itertools.islice(stream, ONE_SHOT_CHECK if self.limit is None
                                     else self.limit))

    def run(self, tf1: Any, session: Any, batches: Iterable[Tuple[np.ndarray, ...]],
            into: Dict[str, PooledMoments]) -> bool:
        """One inference-mode run per checked batch, its layer inputs' moments pooled into
        ``into``; False when the check is off or was given up."""
        measured = self.measured
        if measured.unchecked is not None:
            return False
        count, rows = 0, 0
        for batch in batches:
            if self.limit is not None and count >= self.limit:
                break
            if not self._pool(tf1, session, batch, into):
                return False
            count, rows = count + 1, rows + int(batch[0].shape[0])
        measured.checked_batches, measured.checked_rows = count, rows
        return True

    def finish(self) -> None:
        measured = self.measured
        if measured.unchecked is not None:
            measured.seen_before.clear()
            measured.seen_after.clear()
        measured.checked_all = (measured.unchecked is None and
                                measured.checked_batches == measured.batches)

    def _pool(self, tf1: Any, session: Any, batch: Tuple[np.ndarray, ...],
              into: Dict[str, PooledMoments]) -> bool:
        """One inference-mode run of ``batch``; False (and the check given up, with the
        reason) when inference mode cannot compute the layers' inputs."""
        try:
            values = session.run(self.fetches, _feed(self.plan, batch, False))
        except tf1.errors.OpError as exc:
            # e.g. a layer inside tf.cond(is_training, train_net, test_net): in inference mode
            # the test branch runs, and this layer's input is not computed.
            self.measured.unchecked = ("the layers' inputs cannot be computed in inference mode "
                                       "(%s)" % first_line(exc))
            return False
        for (layer, statistic), (size, mean, variance) in zip(self.statistics, values):
            moments = into.setdefault(layer.name, PooledMoments(layer.channels))
            moments.add(int(size) // max(layer.channels, 1), mean, variance)
        return True


def _assign(tf1: Any, session: Any, plan: Plan, assignments: Sequence[Tuple[Any, np.ndarray]]
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
        _run(tf1, session, plan, list(initializers.values()), feeds, "assign the statistics")
    return written


def _feed(plan: Plan, batch: Tuple[np.ndarray, ...], training: bool) -> Dict[Any, Any]:
    feed: Dict[Any, Any] = dict(zip(plan.inputs, batch))
    feed.update((switch, training) for switch in plan.switches)
    return feed


def _run(tf1: Any, session: Any, plan: Plan, fetches: Any, feed: Dict[Any, Any],
         what: str) -> Any:
    try:
        return session.run(fetches, feed)
    except tf1.errors.OpError as exc:
        unfed = _UNFED.search(str(getattr(exc, "message", exc)))
        if unfed:
            raise ProbeConfigError(_unfed(session.graph, plan, unfed.group(1),
                                          unfed.group(2))) from None
        raise ProbeConfigError("the graph could not %s: %s" % (what, first_line(exc))) from None


def _unfed(graph: Any, plan: Plan, name: str, dtype: str) -> str:
    """The one line for a placeholder the runs need but nobody feeds: the option that names it,
    and the graph's candidates."""
    input_flag, training_flag = plan.flags
    boolean = dtype == "bool"
    candidates = [op.outputs[0].name for op in graph.get_operations()
                  if op.type in ("Placeholder", "PlaceholderWithDefault")
                  and op.outputs[0].dtype.base_dtype.name in
                  (("bool",) if boolean else ("float16", "bfloat16", "float32", "float64"))]
    return ("the graph needs a value for the placeholder %s:0 (%s), which the repair does not "
            "feed: name it with %s (the graph's %s placeholders: %s)"
            % (name, dtype, training_flag if boolean else input_flag,
               "boolean" if boolean else "float", ", ".join(candidates) or "none"))


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
                      plan: Plan) -> None:
    for (condition, layer), value in zip(conditions, values):
        if bool(value) != condition.required:
            fed = ", ".join("%s=True" % s.name for s in plan.switches) or "no switch"
            raise ProbeConfigError(
                "with %s, layer %s does not run in training mode (%s takes its %s branch); "
                "name the training switch with %s"
                % (fed, layer, condition.where, "true" if bool(value) else "false",
                   plan.flags[1]))


def _pool(moments: PooledMoments, layer: Layer, statistic: Statistic, mean: np.ndarray,
          variance: np.ndarray, size: int, index: int) -> None:
    mean = np.asarray(mean, np.float64).reshape(-1)
    variance = np.asarray(variance, np.float64).reshape(-1)
    if size % layer.channels or mean.size != layer.channels or variance.size != layer.channels:
        raise ProbeConfigError("layer %s: its batch statistics (%d and %d values) and its input "
                               "%s (%d values) do not fit its %d channels"
                               % (layer.name, mean.size, variance.size, statistic.values.name,
                                  size, layer.channels))
    count = size // layer.channels
    if count and not (np.isfinite(mean).all() and np.isfinite(variance).all()):
        raise ProbeConfigError("layer %s: the batch statistics of batch %d are NaN or infinite "
                               "(the activations overflow on this data?)" % (layer.name, index))
    moments.add(count, mean, unbessel(variance, count) if statistic.bessel else variance)
