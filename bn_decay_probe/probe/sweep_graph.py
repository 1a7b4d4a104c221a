"""Builds the sweep's graph: the layer of a ProbeConfig for many decays at once.

Batch norm treats every channel on its own, so the input is tiled along the channel axis, one
copy of its C channels per decay, and the decay is a per-channel tensor (a constant, or fed at
each run when chunks of decays take turns in the graph): copy j of the channels is the layer at
decay j, and one ``Session.run`` steps every decay. The layer is the API's own, built by
``builders`` exactly as probe() builds it, in a graph built in the same order, so its variables
(of the same kind) and update ops have probe()'s names. Nothing writes a variable after the train
step within a run, so its reads, ordered by control dependencies, see the values the step left.

One run of a step is the chain train step -> read every variable -> test output -> read every
variable again.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import backend
from ..errors import ProbeConfigError, UnsharedVariablesError
from ..names import MOVING, PHASES
from . import builders, graph
from .config import ProbeConfig
from .measure import layout

# Float32 values of the inputs of one chunk of decays (4 MiB): a chunk's tiled tensors stay
# this small, so a sweep's working memory is bounded whatever the number of decays. An input
# larger than this runs one decay per chunk, as probe() runs it.
MAX_TILED_VALUES = 1 << 20


def copies_per_chunk(config: ProbeConfig, decays: int) -> int:
    """How many decays share one graph: as many as fit in MAX_TILED_VALUES, spread evenly over
    the chunks so that the last one is not mostly padding."""
    per_copy = int(np.prod(config.shape)) * (1 + (0 if config.batches is None
                                                  else len(config.batches)))
    most = max(1, min(decays, MAX_TILED_VALUES // per_copy))
    chunks = -(-decays // most)
    return -(-decays // chunks)


@dataclasses.dataclass
class SweepGraph:
    """The built graph and what the runner fetches. Internal: holds live TF objects."""

    graph: Any
    ops: Any  # the ops of this layer (graph's helpers scan them for a branch's ops)
    feeds: Dict[Any, np.ndarray]  # placeholder -> the array it initializes (fed once)
    holders: List[Any]  # initialize the held inputs (once)
    initializers: List[Any]  # set every layer variable to its initial value (per chunk)
    initial: List[Any]  # the values those initializers assign, in ``variables`` order
    # float64 placeholder [copies * C] (decay j in channels j*C .. (j+1)*C - 1), fed each run;
    # None when the graph holds its decays as a constant (then folded into 1 - decay)
    decay: Optional[Any]
    batch_index: Optional[Any]  # int32 placeholder choosing the train batch, with batches
    copies: int
    channels: int  # C of one copy
    variables: List[Any]  # every layer variable, sorted by name
    train_output: Any
    test_output: Any
    after_train: List[Any]  # a read of each variable, after the train step
    after_test: List[Any]  # a read of each variable, after the test output
    # float32 max |test - train| of each channel [copies * C], and a sum that is NaN where a
    # difference is: a cheap screen for converge, which takes the exact (float64) gap from the
    # outputs when it is near tol.
    screen: Tuple[Any, Any]
    fed: Dict[str, Any]  # "moving_mean"/"moving_variance" -> statistic fed [copies * C]
    factors: Dict[str, Any]  # the same -> 1 - decay as the graph holds it [copies * C]
    branch_ops: Dict[str, frozenset]
    branch_variables: Dict[str, Tuple[str, ...]]
    fused: Dict[str, bool]
    epsilon: Dict[str, float]
    update_ops: Tuple[str, ...]
    # True when no variable either output reads is written by a train step: then the gap after
    # every step is the gap after the first (unshared branches, updates that never run).
    gap_is_constant: bool
    # Which decay values to feed: the API turns a Python decay into 1 - decay in float32 on
    # this path (builders.decay_in_float32), so the fed float64 decay is rounded to float32 first.
    decay_in_float32: bool
    data_format: str  # of the graph's tensors: "NHWC" (channels last) or "NCHW"

    def decay_values(self, decays: Sequence[float]) -> np.ndarray:
        """The fed tensor for at most ``copies`` decays (the rest of the chunk repeats the
        last): each repeated over its C channels."""
        return _decay_values(decays, self.copies, self.channels, self.decay_in_float32)


def _decay_values(decays: Sequence[float], copies: int, channels: int,
                  in_float32: bool) -> np.ndarray:
    values = np.asarray(tuple(decays) + (decays[-1],) * (copies - len(decays)), np.float64)
    if in_float32:
        values = values.astype(np.float32).astype(np.float64)
    return np.repeat(values, channels)


def _hold_tiled(tf1: Any, feeds: Dict[Any, np.ndarray], name: str, array: np.ndarray,
                copies: int, channel_axis: int) -> Any:
    """graph.hold_input for ``copies`` copies of ``array`` side by side along ``channel_axis``:
    the variable is initialized with the tiled array, computed in the graph from the fed one,
    so a step reads it instead of tiling it again."""
    if copies == 1:
        return graph.hold_input(tf1, feeds, name, array)
    placeholder = tf1.placeholder(tf1.float32, array.shape, name=name + "/value")
    feeds[placeholder] = array
    multiples = [1] * array.ndim
    multiples[channel_axis] = copies
    held = tf1.Variable(tf1.tile(placeholder, multiples), trainable=False,
                        collections=[graph.HELD], name=name + "/held", use_resource=True)
    return held.read_value()


def build(config: ProbeConfig, copies: int, target: str,
          decays: Optional[Sequence[float]] = None) -> SweepGraph:
    """A fresh tf.Graph running the layer of ``config`` for ``copies`` decays, under the device
    ``target``: ``decays`` held as a constant (TensorFlow then computes 1 - decay once, not at
    every run), or, without them, fed at each run. Raises UnsharedVariablesError as
    graph.build does."""
    with backend.quiet() as tf1:
        g = tf1.Graph()
        with g.as_default(), tf1.device(target):
            built = _row(tf1, g, config, copies, decays)
        g.finalize()
    return built


def build_rows(configs: Sequence[ProbeConfig], copies: int, target: str,
               decays: Sequence[float]) -> Tuple[Any, List[Union[SweepGraph, ProbeConfigError]]]:
    """One tf.Graph holding the layer of each config (a row, in its own scope) for the same
    ``decays``, so that one run steps every row: the graph, and each row's SweepGraph, or the
    ProbeConfigError that says why this TensorFlow cannot build it. Each row sees only its own
    UPDATE_OPS, as in a graph of its own. Not finalized: the runner joins the rows' screens of
    each run it makes into one tensor."""
    rows: List[Union[SweepGraph, ProbeConfigError]] = []
    with backend.quiet() as tf1:
        g = tf1.Graph()
        with g.as_default(), tf1.device(target):
            for index, config in enumerate(configs):
                g.clear_collection(tf1.GraphKeys.UPDATE_OPS)
                with tf1.variable_scope("row%d" % index):
                    try:
                        rows.append(_row(tf1, g, config, copies, decays))
                    except ProbeConfigError as exc:
                        rows.append(exc)
    return g, rows


class _Ops:
    """The ops one row added to a graph, where graph's helpers look for a branch's ops (they
    scan ``get_operations()``): a row's analysis then reads only its own."""

    def __init__(self, ops: List[Any]):
        self.ops = ops

    def get_operations(self) -> List[Any]:
        return self.ops


def _row(tf1: Any, g: Any, config: ProbeConfig, copies: int,
         decays: Optional[Sequence[float]]) -> SweepGraph:
    """The layer of ``config`` for ``copies`` decays, added to the default graph ``g``."""
    in_float32 = builders.decay_in_float32(config, config.fused is not False)
    built = _add(tf1, g, config, copies, decays, in_float32)
    if decays is not None and built.decay_in_float32 != in_float32:  # the layer chose
        built = _add(tf1, g, config, copies, decays, built.decay_in_float32)
    return built


def _add(tf1: Any, g: Any, config: ProbeConfig, copies: int, decays: Optional[Sequence[float]],
         in_float32: bool) -> SweepGraph:
    channels = config.channels
    tiled_shape = config.shape[:3] + (channels * copies,)
    first_op = len(g.get_operations())
    others = {id(v) for v in tf1.global_variables() + graph.held_variables(g)}

    def own(variables: List[Any]) -> List[Any]:
        return [v for v in variables if id(v) not in others]

    # The same construction order as graph.build: the same names.
    feeds: Dict[Any, np.ndarray] = {}
    axis = 3 if config.data_format == "NHWC" else 1
    test_input = _hold_tiled(tf1, feeds, "input", layout(config, config.inputs), copies,
                             axis)
    batch_index = None
    train_input = test_input
    if config.batches is not None:
        batches = _hold_tiled(tf1, feeds, "batches", layout(config, config.batches),
                              copies, axis + 1)
        batch_index = tf1.placeholder(tf1.int32, [], name="batch_index")
        train_input = tf1.gather(batches, batch_index, name="train_input")
    if decays is None:
        decay_feed = decay = tf1.placeholder(tf1.float64, [channels * copies], name="decay")
    else:
        decay_feed, decay = None, tf1.constant(
            _decay_values(decays, copies, channels, in_float32), name="decay")
    inputs = {"train": train_input, "test": test_input}
    # ProbeConfig does not validate on construction; this one carries the tensor and the tiled
    # channels the builders size their variables by.
    layer = builders.builder(tf1, dataclasses.replace(config, decay=decay, shape=tiled_shape))
    branches, branch_ops = {}, {}
    start = len(g.get_operations())
    branches["train"] = layer.branch(inputs["train"], "train")
    branch_ops["train"] = frozenset(op.name for op in g.get_operations()[start:])
    train_step = graph.train_step(tf1, config, branches["train"])
    reads: Dict[str, Any] = {}
    with tf1.control_dependencies([train_step]):
        for v in own(tf1.global_variables()):
            reads[v.name] = v.read_value()
    start = len(g.get_operations())
    with tf1.control_dependencies(list(reads.values())):
        branches["test"] = layer.branch(inputs["test"], "test")
    branch_ops["test"] = frozenset(op.name for op in g.get_operations()[start:])
    variables = sorted(own(tf1.global_variables()), key=lambda v: v.name)
    with tf1.control_dependencies([train_step]):  # unshared: the test branch's own
        for v in variables:
            if v.name not in reads:
                reads[v.name] = v.read_value()
    after_train = [reads[v.name] for v in variables]
    update_ops = tuple(u.name for u in tf1.get_collection(tf1.GraphKeys.UPDATE_OPS))
    test_output = branches["test"].output
    with tf1.control_dependencies([test_output]):
        after_test = [v.read_value() for v in variables]
    screen = _screen(tf1, test_output, train_step, config)
    holders = [v.initializer for v in own(graph.held_variables(g))]
    initial = [v.initial_value for v in variables]
    initializers = [v.initializer for v in variables]

    ops = _Ops(g.get_operations()[first_op:])
    by_name = {v.name: v for v in variables}
    by_op = {v.op.name: v for v in variables}
    branch_variables = {phase: graph.variables_read(ops, branch_ops[phase], by_op)
                        for phase in PHASES}
    if config.share_variables and not graph.shares_variables(branch_variables):
        raise UnsharedVariablesError(
            "train and test branches do not share their variables: train reads %s, test reads %s"
            % (list(branch_variables["train"]), list(branch_variables["test"])))
    fed, factors = {}, {}
    for name in MOVING:
        variable = graph.find_variable(by_name, branch_variables["train"], name)
        found = graph.moving_average_inputs(ops, branch_ops["train"], variable)
        if found:
            fed[name], factors[name] = found
    fused = {p: graph.is_fused(ops, branch_ops[p]) for p in PHASES}
    written = graph.written_variables(train_step)
    read = graph.variables_feeding([branches["train"].output, test_output])
    return SweepGraph(
        g, ops, feeds, holders, initializers, initial, decay_feed, batch_index, copies, channels,
        variables, train_step, test_output, after_train, after_test, screen, fed, factors,
        branch_ops, branch_variables, fused,
        {p: graph.epsilon_of(ops, branch_ops[p]) for p in PHASES}, update_ops,
        not (written & read), builders.decay_in_float32(config, fused["train"]), config.data_format)


def _screen(tf1: Any, test: Any, train: Any, config: ProbeConfig) -> Tuple[Any, Any]:
    """max |test - train| of each channel in float32, and the sum of those differences, NaN
    where one of them is (TensorFlow's reduce_max skips NaN, numpy's max returns it; a sum of
    non-negative numbers can overflow to inf, never to NaN). Per channel: a reduction over
    every axis but the channels' is the kernels' fast one; the runner takes each copy's
    largest."""
    axes = [0, 1, 2] if config.data_format == "NHWC" else [0, 2, 3]
    difference = tf1.abs(test - train)
    return tf1.reduce_max(difference, axes), tf1.reduce_sum(difference, axes)
