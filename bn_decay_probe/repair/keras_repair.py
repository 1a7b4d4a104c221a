"""The repair of a Keras model: :func:`recalibrate_keras` on a live model (Keras 3 on any
backend, or Keras 2 eagerly), assigning in place, and :func:`recalibrate_keras_file` on a
``.keras`` or legacy ``.h5`` model file, writing a repaired copy.

Each batch runs once through the model with every batch-norm layer in training mode and every
other layer in inference mode (:class:`~.keras_live.TrainingModePass`); each layer's batch
statistics are pooled in float64 as the TF1 repair pools them (:mod:`.pooled`: population mean
and variance of every value of every batch), and assigned at the end, so a failure leaves the
model as it was. The gap is measured on the first ``gap_batches`` batches run as one batch:
inference mode (``model(x, training=False)``) before and after, against the pass's output."""
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
from .data import (DEFAULT_BATCH_SIZE, DataFile, InputSpec, check_batch_size, open_data,
                   prepare_batch)
from .images import ImageFolder, check_preprocess, load_preprocess, open_images
from .keras_live import (Flavour, LiveLayer, TrainingModePass, batch_norm_layers, flavour_of,
                         unchanged_on_error)
from .pooled import PooledMoments
from .result import REPAIRED, SKIPPED, LayerRepair, OutputGap, RepairResult, frozen_or_none
from .runner import GapSums, add_gap

# What a Keras repair reads its layers' batch statistics with.
PRODUCERS = {"Keras 3": "keras.ops.moments", "Keras 2": "tf.nn.moments"}


@dataclass
class KerasMeasured:
    layers: List[LiveLayer]  # the model's batch-norm layers
    active: List[int]  # indices of the layers asked for
    before: Dict[int, Tuple[np.ndarray, np.ndarray]]
    pooled: Dict[int, PooledMoments]
    skipped: Dict[int, str]  # layer index -> why left as it was
    gaps: Dict[str, GapSums]
    batches: int
    rows: int
    inputs: Tuple[str, ...]


def recalibrate_keras(model: Any, batches: Iterable[Any], layers: Optional[Sequence[str]] = None,
                      gap_batches: int = 1, progress: bool = False) -> RepairResult:
    """Recalibrates a live Keras model's batch-norm statistics from ``batches`` and assigns
    them to its layers (see :func:`bn_decay_probe.repair.recalibrate`)."""
    started = time.perf_counter()
    flavour = flavour_of(model)
    measured = _measure(flavour, model, _stream(model, batches, None), layers, gap_batches,
                        None, progress)
    return _result("keras", None, None, flavour, measured, [], time.perf_counter() - started)


def recalibrate_keras_file(path: str, batches: Any, out: Any,
                           layers: Optional[Sequence[str]] = None,
                           batch_size: Optional[int] = None, max_batches: Optional[int] = None,
                           gap_batches: int = 1, overwrite: bool = False, progress: bool = False,
                           preprocess: Any = None) -> RepairResult:
    """Recalibrates a ``.keras`` or ``.h5`` model file and writes the repaired copy at ``out``
    (the same format); the input file is only read. ``batches``: a :class:`DataFile`, an
    :class:`ImageFolder` (resized to the model's input), or an iterable; ``preprocess`` (a
    function, or MODULE:FUNCTION imported once the model is loaded) is applied to each batch. Every value of the copy but the moving statistics is bit-identical;
    its weights carry the repair's marker (the root attribute ``bn_decay_probe_repair``)."""
    started = time.perf_counter()
    out = keras_writer.output_path(out, path, overwrite)
    batch_size = check_batch_size(batch_size, "batch_size")
    max_batches = check_batch_size(max_batches, "max_batches")
    check_preprocess(None if callable(preprocess) else preprocess)
    saved = read_keras_file(path)
    model = load_model(saved)
    flavour = flavour_of(model)
    preprocess = preprocess if callable(preprocess) else load_preprocess(preprocess)
    notes: List[str] = []
    stream, total = _file_batches(model, batches, batch_size, max_batches, preprocess)
    measured = _measure(flavour, model, stream, layers, gap_batches, total, progress)
    replacements, recalibrated = _replacements(saved, measured)
    marker = {"bn_decay_probe": __version__, "layers": recalibrated,
              "batches": measured.batches, "rows": measured.rows, "variance": "population",
              "keys": sorted(replacements)}
    keras_writer.write_copy(saved, out, replacements, marker, overwrite)
    return _result("keras file", path, out, flavour, measured, notes,
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


def no_tensor_names(inputs: Any, training: Any, outputs: Any, flags: Sequence[str]) -> None:
    """A Keras model is called on its batches: tensor names of a TF1 graph do not apply."""
    given = [flag for flag, value in zip(flags, (inputs, training, outputs)) if value is not None]
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


def _replacements(saved: KerasModelFile, measured: KerasMeasured
                  ) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """Dataset path -> value for each recalibrated layer, matched to the file's layers by
    path; the layers' paths."""
    by_path = {layer.path: layer for layer in saved.layers}
    replacements: Dict[str, np.ndarray] = {}
    recalibrated = []
    for index in measured.active:
        live = measured.layers[index]
        pooled = measured.pooled[index]
        if index in measured.skipped:
            continue
        stored = by_path.get(live.path)
        if stored is None:
            raise CheckpointError("layer %s of the loaded model has no place in %s (the file "
                                  "keeps its batch-norm layers as %s); use recalibrate(model, "
                                  "batches) in Python" % (live.path, saved.path, ", ".join(
                                      layer.path for layer in saved.layers[:3])))
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
             names: Optional[Sequence[str]], gap_batches: int, total: Optional[int],
             show: bool) -> KerasMeasured:
    layers = batch_norm_layers(model)
    active = _chosen(layers, names)
    chosen = [layers[i] for i in active]
    before = {i: (flavour.numpy(live.layer.moving_mean).astype(np.float64).reshape(-1),
                  flavour.numpy(live.layer.moving_variance).astype(np.float64).reshape(-1))
              for i, live in enumerate(layers)}
    kept = list(itertools.islice(stream, gap_batches))
    gap_input = _together(kept)
    outputs_before = flavour.inference(model, gap_input) if gap_input is not None else None
    pooled = {i: PooledMoments(layers[i].channels) for i in active}
    with TrainingModePass(flavour, model, chosen) as run:
        outputs_train = run.run(gap_input)[0] if gap_input is not None else None
        count, rows = _pool(run, itertools.chain(kept, stream), [pooled[i] for i in active],
                            total, show)
        skipped = {active[position]: "called with a mask, which the repair does not pool"
                   for position in run.masked}
    skipped.update({i: "not run by the model's forward pass" for i in active
                    if not pooled[i].count and i not in skipped})
    with unchanged_on_error(flavour, chosen):
        for i in active:
            if i not in skipped:
                variables = (layers[i].layer.moving_mean, layers[i].layer.moving_variance)
                for variable, value in zip(variables, (pooled[i].mean, pooled[i].variance)):
                    variable.assign(value.astype(flavour.numpy(variable).dtype))
        gaps: Dict[str, GapSums] = {}
        if gap_input is not None:
            after = flavour.inference(model, gap_input)
            for name, train, old, new in zip(_output_names(model, outputs_before),
                                              _flat(outputs_train), _flat(outputs_before),
                                              _flat(after)):
                add_gap(gaps.setdefault(name, GapSums(batches=len(kept))),
                        flavour.numpy(train), flavour.numpy(old), flavour.numpy(new))
    return KerasMeasured(layers, active, before, pooled, skipped, gaps, count, rows,
                         tuple(spec.name for spec in input_specs(model)))


def _pool(run: TrainingModePass, batches: Iterable[Any], pooled: List[PooledMoments],
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


def _together(kept: List[Any]) -> Any:
    """The kept batches as one batch (so that training mode normalizes with the statistics of
    all of them)."""
    if not kept:
        return None
    if len(kept) == 1:
        return kept[0]
    if isinstance(kept[0], dict):
        return {key: np.concatenate([batch[key] for batch in kept]) for key in kept[0]}
    if isinstance(kept[0], tuple):
        return tuple(np.concatenate(arrays) for arrays in zip(*kept))
    return np.concatenate(kept)


def _rows(batch: Any) -> int:
    first = next(iter(batch.values())) if isinstance(batch, dict) else \
        batch[0] if isinstance(batch, tuple) else batch
    return int(np.shape(first)[0])


def _flat(outputs: Any) -> List[Any]:
    if isinstance(outputs, dict):
        return [value for key in sorted(outputs) for value in _flat(outputs[key])]
    if isinstance(outputs, (list, tuple)):
        return [value for item in outputs for value in _flat(item)]
    return [outputs]


def _output_names(model: Any, outputs: Any) -> List[str]:
    count = len(_flat(outputs))
    names = list(getattr(model, "output_names", None) or ())
    if isinstance(outputs, dict):
        names = sorted(outputs)
    return names if len(names) == count else ["output_%d" % i for i in range(count)]


def _result(source: str, path: Optional[str], out: Optional[str], flavour: Flavour,
            measured: KerasMeasured, notes: List[str], seconds: float) -> RepairResult:
    layers = []
    for index in measured.active:
        live = measured.layers[index]
        pooled = measured.pooled[index]
        mean, variance = measured.before[index]
        repaired = index not in measured.skipped
        layers.append(LayerRepair(
            live.path, live.channels, REPAIRED if repaired else SKIPPED,
            measured.skipped.get(index), pooled.batches, pooled.count,
            (PRODUCERS[flavour.name],), False, frozen_or_none(mean), frozen_or_none(variance),
            frozen_or_none(pooled.mean if repaired else None),
            frozen_or_none(pooled.variance if repaired else None)))
    gaps = tuple(OutputGap.of(name, sums) for name, sums in measured.gaps.items())
    if not gaps:
        notes.append("gap_batches is 0: the inference/training gap was not measured")
    notes.insert(0, "%s: batch norm in training mode, every other layer in inference mode"
                 % flavour.what)
    return RepairResult(source, path, out, measured.inputs, (), measured.batches,
                        measured.rows, tuple(layers), gaps, tuple(notes), round(seconds, 3))
