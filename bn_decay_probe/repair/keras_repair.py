"""The repair of a Keras model: :func:`recalibrate_keras` on a live model (Keras 3 on any
backend, or Keras 2 eagerly), assigning in place, and :func:`recalibrate_keras_file` on a
``.keras`` or legacy ``.h5`` model file, writing a repaired copy.

Each batch runs once through the model with every batch-norm layer in training mode and every
other layer in inference mode (:class:`~.keras_live.LayerInputPass`); each layer's batch
statistics are pooled in float64 as the TF1 repair pools them (:mod:`.pooled`: population mean
and variance of every value of every batch), and assigned at the end, so a failure leaves the
model as it was. The check (:mod:`.check`, as the TF1 repair's) runs the checked batches in
inference mode before and after the statistics are assigned, pooling each batch-norm layer's
input, and compares the layer's statistics with them."""
from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .. import progress as progress_bar
from .._version import __version__
from ..checkpoints import sniff
from ..checkpoints.keras_files import KerasModelFile, read_keras_file
from ..errors import CheckpointError, DataError, ProbeConfigError, first_line
from . import keras_writer
from .check import normalization_error
from .data import (DEFAULT_BATCH_SIZE, DataFile, InputSpec, check_batch_size, open_data,
                   prepare_batch, rereadable)
from .images import ImageFolder, check_preprocess, load_preprocess, open_images
from .keras_live import (Flavour, LayerInputPass, LiveLayer, batch_norm_layers, flavour_of,
                         unchanged_on_error)
from .pooled import PooledMoments
from .result import REPAIRED, SKIPPED, Check, LayerRepair, RepairResult, frozen_or_none
from .runner import ONE_SHOT_CHECK

# What a Keras repair reads its layers' batch statistics with.
PRODUCERS = {"Keras 3": "keras.ops.moments", "Keras 2": "tf.nn.moments"}


@dataclass
class KerasMeasured:
    layers: List[LiveLayer]  # the model's batch-norm layers
    active: List[int]  # indices of the layers asked for
    before: Dict[int, Tuple[np.ndarray, np.ndarray]]
    pooled: Dict[int, PooledMoments]
    skipped: Dict[int, str]  # layer index -> why left as it was
    batches: int
    rows: int
    inputs: Tuple[str, ...]
    # the check: each repaired layer's input in inference mode, with the statistics before and
    # after (empty when not checked)
    seen_before: Dict[int, PooledMoments]
    seen_after: Dict[int, PooledMoments]
    checking: bool = True  # False: the check was turned off
    checked_batches: int = 0
    checked_rows: int = 0
    one_shot: bool = False  # the batches could be read once: the check kept its own


def recalibrate_keras(model: Any, batches: Iterable[Any], layers: Optional[Sequence[str]] = None,
                      check_batches: Optional[int] = None, progress: bool = False
                      ) -> RepairResult:
    """Recalibrates a live Keras model's batch-norm statistics from ``batches`` and assigns
    them to its layers (see :func:`bn_decay_probe.repair.recalibrate`)."""
    started = time.perf_counter()
    flavour = flavour_of(model)
    again = (lambda: _stream(model, batches, None)) if rereadable(batches) else None
    measured = _measure(flavour, model, _stream(model, batches, None), again, layers,
                        check_batches, None, progress)
    return _result("keras", None, None, flavour, measured, [], time.perf_counter() - started)


def recalibrate_keras_file(path: str, batches: Any, out: Any,
                           layers: Optional[Sequence[str]] = None,
                           batch_size: Optional[int] = None, max_batches: Optional[int] = None,
                           check_batches: Optional[int] = None, overwrite: bool = False,
                           progress: bool = False,
                           preprocess: Any = None) -> RepairResult:
    """Recalibrates a ``.keras`` or ``.h5`` model file and writes the repaired copy at ``out``
    (the same format); the input file is only read. ``batches``: a :class:`DataFile`, an
    :class:`ImageFolder` (resized to the model's input), or an iterable; ``preprocess`` (a
    function, or MODULE:FUNCTION imported once the model is loaded) is applied to each batch.
    Every value of the copy but the moving statistics is bit-identical; its weights carry the
    repair's marker (the root attribute ``bn_decay_probe_repair``)."""
    started = time.perf_counter()
    out = keras_writer.output_path(out, path, overwrite)
    batch_size = check_batch_size(batch_size, "batch_size")
    max_batches = check_batch_size(max_batches, "max_batches")
    check_preprocess(None if callable(preprocess) else preprocess)
    saved = read_keras_file(path)
    model = load_model(saved)
    flavour = flavour_of(model)
    _check_places(saved, batch_norm_layers(model))
    preprocess = preprocess if callable(preprocess) else load_preprocess(preprocess)
    stream, total = _file_batches(model, batches, batch_size, max_batches, preprocess)
    again = ((lambda: _file_batches(model, batches, batch_size, max_batches, preprocess)[0])
             if isinstance(batches, (DataFile, ImageFolder)) or rereadable(batches) else None)
    measured = _measure(flavour, model, stream, again, layers, check_batches, total, progress)
    replacements, recalibrated = _replacements(saved, measured)
    marker = {"bn_decay_probe": __version__, "layers": recalibrated,
              "batches": measured.batches, "rows": measured.rows, "variance": "population",
              "keys": sorted(replacements)}
    keras_writer.write_copy(saved, out, replacements, marker, overwrite)
    return _result("keras file", path, out, flavour, measured, [],
                   time.perf_counter() - started)


# What the repair reads, for the message on anything else.
READS = ("TensorFlow checkpoints with their .meta graph (tf.train.Saver), and Keras .keras and "
         ".h5 model files")


def keras_file_kind(path: Any) -> Optional[sniff.PathKind]:
    """What ``path`` is when it is a Keras model file the repair takes; None for a TensorFlow
    checkpoint (or a path that is none of these: the checkpoint's checks say why). One line for
    weights-only files, SavedModels and files of other kinds."""
    if not isinstance(path, (str, os.PathLike)) or not os.path.exists(os.fspath(path)):
        return None
    kind = sniff.sniff(os.fspath(path))
    if kind.kind in (sniff.KERAS_ZIP, sniff.KERAS_H5):
        return kind
    if kind.keras or kind.kind == sniff.SAVED_MODEL:
        raise CheckpointError(refusal(os.fspath(path), kind.kind))
    if kind.kind == sniff.OTHER:
        raise CheckpointError("%s is %s; the repair reads %s" % (os.fspath(path), kind.what,
                                                                 READS))
    return None


def keras_data(spec: Any) -> Any:
    """A data path opened for a Keras model: a directory of images, or a .npy / .npz; anything
    else (a DataFile, an iterable) as it is."""
    if isinstance(spec, (str, os.PathLike)):
        return open_images(os.fspath(spec)) if os.path.isdir(spec) else open_data(spec)
    return spec


def no_tensor_names(inputs: Any, training: Any, flags: Sequence[str]) -> None:
    """A Keras model is called on its batches: tensor names of a TF1 graph do not apply."""
    given = [flag for flag, value in zip(flags, (inputs, training)) if value is not None]
    if given:
        raise ProbeConfigError("%s: tensor names of a TF1 graph do not apply to a Keras "
                               "model, which takes its batches as model(x): leave them out"
                               % ", ".join(given))


def load_model(saved: KerasModelFile) -> Any:
    """The model of a ``.keras`` / ``.h5`` file, loaded by the Keras that wrote it, without
    its optimizer (compile=False)."""
    if saved.format not in (sniff.KERAS_ZIP, sniff.KERAS_H5):
        raise CheckpointError(refusal(saved.path, saved.format))
    from .. import backend

    keras = backend.keras_of_file(saved.keras_version)
    try:
        with backend.quiet():
            return keras.models.load_model(saved.path, compile=False)
    except Exception as exc:  # custom objects, safe mode, a file Keras cannot read
        raise CheckpointError("%s could not be loaded by %s %s (%s); a model with custom "
                              "layers needs them importable: load it in Python and use "
                              "recalibrate(model, batches)"
                              % (saved.path, "Keras" if str(saved.keras_version).startswith(
                                  "3.") else "tf_keras", getattr(keras, "__version__", ""),
                                 first_line(exc))) from None


def refusal(path: str, kind: str) -> str:
    """Why the repair does not take this kind of Keras file or directory."""
    if kind in (sniff.KERAS_WEIGHTS, sniff.KERAS_H5_WEIGHTS):
        return ("%s holds weights only, no model to run: build the model in Python, "
                "load_weights, recalibrate(model, batches), then save_weights" % path)
    return ("%s is a SavedModel, which the repair does not rewrite (its functions are traced "
            "graphs, not a Keras model to run in training mode): load the Keras model in "
            "Python, recalibrate(model, batches), then save or export it again" % path)


def _check_places(saved: KerasModelFile, layers: Sequence[LiveLayer]) -> None:
    """Each batch-norm layer of the loaded model is one of the file's, by its path (a layer
    inside a custom layer is not in the model config: the file keeps it by its key)."""
    stored = {layer.path for layer in saved.layers}
    missing = [live.path for live in layers if live.path not in stored]
    if missing:
        raise CheckpointError("layer %s of the loaded model has no place in %s (the file keeps "
                              "its batch-norm layers as %s, ...); use recalibrate(model, "
                              "batches) in Python" % (missing[0], saved.path, ", ".join(
                                  layer.path for layer in saved.layers[:3])))


def _replacements(saved: KerasModelFile, measured: KerasMeasured
                  ) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """Dataset path -> value for each recalibrated layer, matched to the file's layers by
    path (:func:`_check_places`); the layers' paths."""
    by_path = {layer.path: layer for layer in saved.layers}
    replacements: Dict[str, np.ndarray] = {}
    recalibrated = []
    for index in measured.active:
        live = measured.layers[index]
        pooled = measured.pooled[index]
        if index in measured.skipped:
            continue
        stored = by_path[live.path]
        replacements[stored.mean_key] = pooled.mean.astype(stored.mean.dtype).reshape(
            stored.mean.shape)
        replacements[stored.variance_key] = pooled.variance.astype(
            stored.variance.dtype).reshape(stored.variance.shape)
        recalibrated.append(live.path)
    return replacements, recalibrated


# ------------------------------------------------------------------------------------- data

def input_specs(model: Any) -> List[InputSpec]:
    """What each model input takes (shape without the batch size checked, dtype); a model
    without symbolic inputs (subclassed) gets no shape check."""
    try:
        inputs = list(model.inputs or ())
    except (AttributeError, ValueError):
        inputs = []
    specs = []
    for index, tensor in enumerate(inputs):
        shape = getattr(tensor, "shape", None)
        dims = None if shape is None else tuple(
            None if d is None else int(d) for d in (shape.as_list() if hasattr(
                shape, "as_list") else shape))
        dtype = getattr(getattr(tensor, "dtype", None), "name", None) or \
            str(getattr(tensor, "dtype", "float32"))
        name = str(getattr(tensor, "name", "") or "input_%d" % index).split(":")[0]
        specs.append(InputSpec(name, dims, dtype if dtype.startswith(("float", "int", "uint",
                                                                      "bool")) else "float32"))
    return specs


def _stream(model: Any, batches: Iterable[Any], preprocess: Optional[Callable[[Any], Any]]
            ) -> Iterator[Any]:
    """Each item as the model's input (an array, or a tuple of arrays for several inputs),
    checked; an item (x, y) or (x, y, weights) gives its x, as model.fit reads a dataset."""
    if isinstance(batches, (np.ndarray, str, bytes)) or not hasattr(batches, "__iter__"):
        raise DataError("batches must be an iterable of arrays (a list, a generator, a "
                        "tf.data.Dataset), got %s" % type(batches).__name__)
    specs = input_specs(model)
    count = max(len(specs), 1)
    for index, item in enumerate(batches):
        x = _inputs_of(item, count)
        if preprocess is not None:
            x = preprocess(x)
        if count == 1:
            spec = specs[0] if specs else InputSpec("input", None, "float32")
            yield prepare_batch(x, index, spec)
        elif isinstance(x, dict):
            yield {key: prepare_batch(value, index, InputSpec(str(key), None, "float32"))
                   for key, value in x.items()}
        else:
            if not isinstance(x, (tuple, list)) or len(x) != count:
                raise DataError("batch %d must hold %d arrays, one per model input, got %s"
                                % (index, count, type(x).__name__))
            yield tuple(prepare_batch(value, index, spec) for value, spec in zip(x, specs))


def _inputs_of(item: Any, count: int) -> Any:
    if isinstance(item, (tuple, list)) and item and 1 <= len(item) <= 3:
        first = item[0]
        if count == 1 and hasattr(first, "shape"):
            return first
        if count > 1 and isinstance(first, (tuple, list, dict)):
            return first
    return item


def _file_batches(model: Any, batches: Any, batch_size: Optional[int],
                  max_batches: Optional[int], preprocess: Optional[Callable[[Any], Any]]
                  ) -> Tuple[Iterator[Any], Optional[int]]:
    specs = input_specs(model)
    if isinstance(batches, (DataFile, ImageFolder)) and len(specs) > 1:
        raise ProbeConfigError("a data file feeds one input; the model takes %d (%s): use "
                               "recalibrate(model, batches) in Python"
                               % (len(specs), ", ".join(spec.name for spec in specs)))
    if isinstance(batches, DataFile):
        size = batch_size or DEFAULT_BATCH_SIZE
        return (_stream(model, batches.batches(size, max_batches), preprocess),
                batches.batch_count(size, max_batches))
    if isinstance(batches, ImageFolder):
        size = batch_size or DEFAULT_BATCH_SIZE
        shape = specs[0].shape if specs else None
        return (_stream(model, batches.batches(size, shape, max_batches), preprocess),
                batches.batch_count(size, max_batches))
    limited = batches if max_batches is None else itertools.islice(batches, max_batches)
    return _stream(model, limited, preprocess), None


# -------------------------------------------------------------------------------- the pass

def _measure(flavour: Flavour, model: Any, stream: Iterator[Any],
             again: Optional[Callable[[], Iterator[Any]]], names: Optional[Sequence[str]],
             check_batches: Optional[int], total: Optional[int], show: bool) -> KerasMeasured:
    """``again``: the same batches read anew for the check (None: they can be read once)."""
    layers = batch_norm_layers(model)
    active = _chosen(layers, names)
    # Batch renormalization normalizes with corrected statistics in training mode, not the
    # batch's: what inference should reproduce is not the batch statistics' population.
    skipped = {i: "batch renormalization (renorm=True): its training mode does not normalize "
                  "with the batch's statistics" for i in active
               if getattr(layers[i].layer, "renorm", False)}
    running = [i for i in active if i not in skipped]  # the pass's layers, in its order
    chosen = [layers[i] for i in running]
    before = {i: (flavour.numpy(live.layer.moving_mean).astype(np.float64).reshape(-1),
                  flavour.numpy(live.layer.moving_variance).astype(np.float64).reshape(-1))
              for i, live in enumerate(layers)}
    kept: List[Any] = []
    if check_batches != 0 and again is None:
        kept = list(itertools.islice(stream, ONE_SHOT_CHECK if check_batches is None
                                     else check_batches))

    def checked() -> Iterator[Any]:
        batches = kept if again is None else again()
        return batches if check_batches is None else itertools.islice(batches, check_batches)

    measured = KerasMeasured(layers, active, before, {}, skipped, 0, 0,
                             tuple(spec.name for spec in input_specs(model)), {}, {},
                             checking=check_batches != 0, one_shot=again is None)
    if check_batches != 0:
        measured.seen_before = _check(flavour, model, running, layers, checked(), measured)
    measured.pooled = {i: PooledMoments(layers[i].channels) for i in active}
    with LayerInputPass(flavour, model, chosen) as run:
        measured.batches, measured.rows = _pool(
            run, itertools.chain(kept, stream), [measured.pooled[i] for i in running], total,
            show)
        skipped.update({running[position]: "called with a mask, which the repair does not pool"
                        for position in run.masked})
    skipped.update({i: "not run by the model's forward pass" for i in active
                    if not measured.pooled[i].count and i not in skipped})
    with unchanged_on_error(flavour, chosen):
        for i in active:
            if i not in skipped:
                variables = (layers[i].layer.moving_mean, layers[i].layer.moving_variance)
                pooled = measured.pooled[i]
                for variable, value in zip(variables, (pooled.mean, pooled.variance)):
                    variable.assign(value.astype(flavour.numpy(variable).dtype))
        if check_batches != 0:
            measured.seen_after = _check(flavour, model, running, layers, checked(), measured)
    return measured


def _check(flavour: Flavour, model: Any, running: List[int], layers: List[LiveLayer],
           batches: Iterable[Any], measured: KerasMeasured) -> Dict[int, PooledMoments]:
    """Each batch in inference mode; each layer's input pooled (by index in ``layers``)."""
    seen = {i: PooledMoments(layers[i].channels) for i in running}
    count, rows = 0, 0
    with LayerInputPass(flavour, model, [layers[i] for i in running], training=False) as run:
        for batch in batches:
            for position, mean, variance, values in run.run(batch)[1]:
                seen[running[position]].add(values, mean, variance)
            count, rows = count + 1, rows + _rows(batch)
    measured.checked_batches, measured.checked_rows = count, rows
    return seen


def _pool(run: LayerInputPass, batches: Iterable[Any], pooled: List[PooledMoments],
          total: Optional[int], show: bool) -> Tuple[int, int]:
    """Every batch through the pass, each layer's statistics into its pool (``pooled`` in the
    pass's layer order); (batches, rows)."""
    count, rows = 0, 0
    with progress_bar.bar(total, show, unit="batch") as update:
        for batch in batches:
            for position, mean, variance, values in run.run(batch)[1]:
                if not (np.isfinite(mean).all() and np.isfinite(variance).all()):
                    raise ProbeConfigError("layer %s: the batch statistics of batch %d are NaN "
                                           "or infinite (the activations overflow on this "
                                           "data?)" % (run.layers[position].path, count))
                pooled[position].add(values, mean, variance)
            count += 1
            rows += _rows(batch)
            if update:
                update(1)
    if count == 0:
        raise DataError("batches: no batch to run (the data is empty)")
    return count, rows


def _chosen(layers: List[LiveLayer], names: Optional[Sequence[str]]) -> List[int]:
    if names is None:
        return list(range(len(layers)))
    wanted = list(names)
    chosen = [i for i, live in enumerate(layers)
              if live.path in wanted or live.layer.name in wanted]
    known = {live.path for live in layers} | {live.layer.name for live in layers}
    unknown = [name for name in wanted if name not in known]
    if unknown or not chosen:
        raise ProbeConfigError("layers: no batch-norm layer %s; the model has %s"
                               % (", ".join(unknown) or "given",
                                  ", ".join(live.path for live in layers[:6]) +
                                  (", ..." if len(layers) > 6 else "")))
    return chosen


def _rows(batch: Any) -> int:
    first = next(iter(batch.values())) if isinstance(batch, dict) else \
        batch[0] if isinstance(batch, tuple) else batch
    return int(np.shape(first)[0])


def _result(source: str, path: Optional[str], out: Optional[str], flavour: Flavour,
            measured: KerasMeasured, notes: List[str], seconds: float) -> RepairResult:
    layers = []
    checked = measured.checking
    for index in measured.active:
        live = measured.layers[index]
        pooled = measured.pooled[index]
        mean, variance = measured.before[index]
        repaired = index not in measured.skipped
        errors: Tuple[Optional[float], Optional[float]] = (None, None)
        if checked and repaired:
            epsilon = float(live.layer.epsilon)
            errors = (normalization_error(mean, variance, measured.seen_before[index], epsilon),
                      normalization_error(pooled.mean, pooled.variance,
                                          measured.seen_after[index], epsilon))
        layers.append(LayerRepair(
            live.path, live.channels, REPAIRED if repaired else SKIPPED,
            measured.skipped.get(index), pooled.batches, pooled.count,
            (PRODUCERS[flavour.name],), False, frozen_or_none(mean), frozen_or_none(variance),
            frozen_or_none(pooled.mean if repaired else None),
            frozen_or_none(pooled.variance if repaired else None), errors[0], errors[1]))
    notes.insert(0, "%s: batch norm in training mode, every other layer in inference mode"
                 % flavour.what)
    check = None
    if checked:
        all_data = measured.checked_batches == measured.batches
        check = Check(measured.checked_batches, measured.checked_rows, all_data)
        if not all_data:
            notes.append("the statistics were checked on the first %d of %d batch(es)%s"
                         % (measured.checked_batches, measured.batches,
                            " (the batches can be read only once: the check keeps those in "
                            "memory)" if measured.one_shot else ""))
    else:
        notes.append("the statistics were not checked in inference mode: the check was "
                     "turned off (0 batches)")
    return RepairResult(source, path, out, measured.inputs, (), measured.batches,
                        measured.rows, tuple(layers), check, tuple(notes), round(seconds, 3))
