"""The two entry points: :func:`recalibrate` on a live graph and session, and
:func:`recalibrate_checkpoint` on a checkpoint with its .meta, writing a repaired copy."""
from __future__ import annotations

import itertools
import numbers
import os
import time
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .. import progress as progress_bar
from .._version import __version__
from ..checkpoints import meta, paths, reader
from ..checkpoints.graphwalk import Walker
from ..errors import ProbeConfigError
from . import writer
from .check import normalization_error
from .data import DataFile, input_batches, open_data, rereadable
from .keras_live import is_keras_model
from .keras_repair import (keras_data, keras_file_kind, no_tensor_names, recalibrate_keras,
                           recalibrate_keras_file)
from .plan import AUTO, Plan, make_plan
from .result import REPAIRED, SKIPPED, Check, LayerRepair, RepairResult, frozen_or_none
from .runner import Measured, run

_FLAGS = ("inputs", "training")


def recalibrate(session: Any, batches: Iterable[Any], inputs: Any = None, training: Any = None,
                layers: Optional[Sequence[str]] = None, check_batches: Optional[int] = None,
                progress: bool = False) -> RepairResult:
    """Recalibrates the moving statistics of the batch-norm layers of ``session``'s graph from
    ``batches``, assigning the new values to the variables in the session; or, when ``session``
    is a live Keras model (Keras 3 on any backend, or Keras 2 running eagerly), to the model's
    layers: ``recalibrate(model, batches)``, where ``inputs``, ``training`` and ``outputs`` do
    not apply (docs/repair.md).

    ``batches``: any iterable of arrays (a list, a generator, a tf.data numpy iterator; for a
    Keras model also a tf.data.Dataset, whose (x, y) items give x), read one at a time; with
    several input tensors, each item is a tuple of arrays. ``inputs``: the input tensor(s)
    (tensors or names) of the session's graph. ``training``: the boolean training switch(es);
    None finds the one boolean placeholder the layers (or their batch statistics) depend on,
    such as Keras's learning phase. ``layers``: names of the layers to recalibrate (default
    all). ``check_batches``: how many batches the check runs on in inference mode (None: all of
    them, read again, or the first 16 when ``batches`` can be read only once, as a generator;
    0: no check).

    Every layer is run in training mode, so each normalizes with its batch statistics; each
    layer's population mean and variance over every value of every batch are pooled in float64
    and written (population variance, divide by the count; see docs/repair.md). No update op
    runs and no other variable changes.
    """
    _check_options(check_batches)
    if is_keras_model(session):
        no_tensor_names(inputs, training, _FLAGS)
        return recalibrate_keras(session, batches, layers, check_batches, progress)
    if not hasattr(session, "run") or getattr(session, "graph", None) is None:
        raise ProbeConfigError("session must be a tf.compat.v1.Session, got %r" % (session,))
    if inputs is None:
        raise ProbeConfigError("inputs: give the input tensor(s) the batches feed")
    from .. import backend
    started = time.perf_counter()
    with backend.quiet() as tf1:
        walker = Walker()
        plan = make_plan(tf1, session.graph, walker, inputs=inputs,
                         training=AUTO if training is None else training, layers=layers,
                         flags=_FLAGS)
        count = len(plan.inputs)
        again = (lambda: input_batches(batches, count)) if rereadable(batches) else None
        measured = _measure(tf1, session, walker, plan, input_batches(batches, count), again,
                            check_batches, None, progress)
    return _result("session", None, None, plan, measured, [], time.perf_counter() - started)


def recalibrate_checkpoint(checkpoint: Any, batches: Any, out: Any, inputs: Any = None,
                           training: Any = None, layers: Optional[Sequence[str]] = None,
                           batch_size: Optional[int] = None,
                           max_batches: Optional[int] = None,
                           check_batches: Optional[int] = None, overwrite: bool = False,
                           progress: bool = False, flags: Sequence[str] = _FLAGS,
                           preprocess: Any = None) -> RepairResult:
    """Recalibrates the batch-norm statistics of ``checkpoint`` (a prefix with .index, data and
    .meta) and writes the repaired copy at the prefix ``out``; the input is never written. A
    Keras ``.keras`` or ``.h5`` model file is repaired by :func:`~.keras_repair.
    recalibrate_keras_file` (``out`` a file of the same format; ``batches`` also a directory of
    images; ``preprocess``: MODULE:FUNCTION, "none" or a function, applied to each batch).

    ``batches``: a data file (``FILE.npy``, split into batches of ``batch_size`` rows; ``FILE.npz``,
    one batch per array; ``FILE.npz:NAME``, that array split; or an opened
    :class:`~bn_decay_probe.repair.data.DataFile`) or any iterable of arrays.
    ``inputs`` / ``training``: tensor names; None finds them in the graph (one float
    placeholder; one boolean switch) and fails listing the candidates when there are several.
    ``max_batches``: stop after that many. Every tensor of the copy but the repaired moving
    statistics is bit-identical to the input's; the copy also holds a string tensor
    ``bn_decay_probe/repair`` saying what was recalibrated, and its directory a ``checkpoint``
    file naming it (as tf.train.Saver writes one). See :func:`recalibrate`.
    """
    _check_options(check_batches)
    if keras_file_kind(checkpoint) is not None:
        no_tensor_names(inputs, training, flags)
        return recalibrate_keras_file(
            os.fspath(checkpoint), keras_data(batches), out, layers, batch_size, max_batches,
            check_batches, overwrite, progress, preprocess)
    if preprocess is not None:
        raise ProbeConfigError("preprocess applies to Keras model files; a checkpoint's graph "
                               "takes the data as it is")
    prefix = paths.input_prefix(checkpoint)
    out = paths.output_prefix(out, prefix, overwrite)
    from .data import check_batch_size

    batch_size = check_batch_size(batch_size, "batch_size")
    max_batches = check_batch_size(max_batches, "max_batches")
    data = open_data(batches) if isinstance(batches, (str, os.PathLike)) else \
        batches if isinstance(batches, DataFile) else None
    from .. import backend
    started = time.perf_counter()
    with backend.quiet() as tf1:
        # A damaged file is named before the graph is blamed for it.
        reader.verify(tf1, prefix)
        graph, saver = meta.import_graph(tf1, prefix)
        if meta.partitioned(graph):
            raise ProbeConfigError("checkpoint %s saves partitioned variables (slices), which "
                                   "the repair cannot copy key for key" % prefix)
        with tf1.Session(graph=graph) as session:
            meta.restore(tf1, session, saver, graph, prefix)
            walker = Walker()
            plan = make_plan(tf1, graph, walker,
                             inputs=AUTO if inputs is None else inputs,
                             training=AUTO if training is None else training, layers=layers,
                             flags=flags)
            notes: List[str] = []
            again: Optional[Callable[[], Iterable[Any]]] = None
            if data is not None:
                stream, total = _file_batches(data, plan, batch_size, max_batches, notes,
                                              flags[0])
                again = lambda: _file_batches(data, plan, batch_size, max_batches, [],
                                              flags[0])[0]  # noqa: E731
            else:
                if rereadable(batches):
                    again = lambda: input_batches(  # noqa: E731
                        batches if max_batches is None else
                        itertools.islice(batches, max_batches), len(plan.inputs))
                stream = input_batches(batches if max_batches is None else
                                       itertools.islice(batches, max_batches),
                                       len(plan.inputs))
                total = None
            measured = _measure(tf1, session, walker, plan, stream, again, check_batches,
                                total, progress)
        keys = meta.variable_keys(graph)
        replacements = {}
        for layer in plan.active:
            mean, variance = measured.written[layer.name]
            for variable, value in ((layer.mean_variable, mean),
                                    (layer.variance_variable, variance)):
                key = keys.get(variable.op.name, variable.op.name)
                replacements[key] = value.reshape(variable.shape.as_list())
        marker = {"bn_decay_probe": __version__, "layers": [l.name for l in plan.active],
                  "batches": measured.batches, "rows": measured.rows,
                  "variance": "population", "keys": sorted(replacements)}
        state_note = writer.write_copy(tf1, prefix, out, replacements, marker, overwrite)
        notes += [state_note] if state_note else []
    return _result("checkpoint", prefix, out, plan, measured, notes,
                   time.perf_counter() - started)


def _check_options(check_batches: Any) -> None:
    if check_batches is None:
        return
    if isinstance(check_batches, (bool, np.bool_)) or \
            not isinstance(check_batches, numbers.Integral) or check_batches < 0:
        raise ProbeConfigError("check_batches must be None (all batches), or a whole number "
                               ">= 0 (0: no check), got %r" % (check_batches,))


def _file_batches(data: DataFile, plan: Plan, batch_size: Optional[int],
                  max_batches: Optional[int], notes: List[str],
                  input_flag: str) -> Tuple[Iterator[Tuple[Any, ...]], int]:
    """The file's batches for the one input; an input with a fixed batch dimension takes
    batches of exactly that many rows (the remainder is left out, and said so)."""
    if len(plan.inputs) != 1:
        raise ProbeConfigError("a data file feeds one input; the graph takes %d (%s): name one "
                               "with %s" % (len(plan.inputs),
                                            ", ".join(t.name for t in plan.inputs), input_flag))
    tensor = plan.inputs[0]
    fixed = None if tensor.shape.ndims is None else tensor.shape.as_list()[0]
    if fixed is not None:
        if batch_size is not None and batch_size != fixed:
            raise ProbeConfigError("batch size %d: the input %s takes batches of exactly %d rows"
                                   % (batch_size, tensor.name, fixed))
        batch_size = fixed
    total = data.batch_count(batch_size, max_batches)

    def batches() -> Iterator[Tuple[Any, ...]]:
        left_out = 0
        for batch in data.batches(batch_size, max_batches):
            if fixed is not None and batch.shape[0] != fixed and data.split_arrays:
                left_out += batch.shape[0]
                continue
            yield (batch,)
        if left_out:
            notes.append("%d row(s) at the end of the data left out: the input %s takes batches "
                         "of exactly %d rows" % (left_out, tensor.name, fixed))

    return batches(), total


def _measure(tf1: Any, session: Any, walker: Any, plan: Plan, stream: Iterable[Any],
             again: Optional[Callable[[], Iterable[Any]]], check_batches: Optional[int],
             total: Optional[int], show: bool) -> Measured:
    with progress_bar.bar(total, show, unit="batch") as update:
        return run(tf1, session, walker, plan, stream, again, check_batches, update)


def _result(source: str, checkpoint: Optional[str], out: Optional[str], plan: Plan,
            measured: Measured, notes: List[str], seconds: float) -> RepairResult:
    layers = []
    checked = measured.unchecked is None and bool(measured.seen_after)
    for layer in plan.layers:
        mean, variance = measured.before[layer.name]
        pooled = measured.pooled.get(layer.name)
        errors: Tuple[Optional[float], Optional[float]] = (None, None)
        if checked and pooled is not None:
            epsilon = layer.statistics[0].epsilon
            written = measured.written[layer.name]
            errors = (normalization_error(mean, variance, measured.seen_before[layer.name],
                                          epsilon),
                      normalization_error(written[0], written[1],
                                          measured.seen_after[layer.name], epsilon))
        layers.append(LayerRepair(
            layer.name, layer.channels, REPAIRED if pooled is not None else SKIPPED,
            layer.skipped, pooled.batches if pooled else 0, pooled.count if pooled else 0,
            tuple(s.producer for s in layer.statistics),
            any(s.bessel for s in layer.statistics), frozen_or_none(mean),
            frozen_or_none(variance), frozen_or_none(pooled.mean if pooled else None),
            frozen_or_none(pooled.variance if pooled else None), errors[0], errors[1],
            tuple(layer.notes)))
    all_notes = list(plan.notes) + notes
    check = None
    if checked:
        check = Check(measured.checked_batches, measured.checked_rows, measured.checked_all)
        if not measured.checked_all:
            all_notes.append("the statistics were checked on the first %d of %d batch(es)%s"
                             % (measured.checked_batches, measured.batches,
                                " (the batches can be read only once: the check keeps those "
                                "in memory)" if measured.one_shot else ""))
    elif measured.unchecked and plan.switches:
        all_notes.append("the statistics were not checked in inference mode: %s"
                         % measured.unchecked)
    return RepairResult(source, checkpoint, out, tuple(t.name for t in plan.inputs),
                        tuple(t.name for t in plan.switches), measured.batches, measured.rows,
                        tuple(layers), check, tuple(all_notes), round(seconds, 3))
