"""What the doctor knows of a TF 2.x Keras model saved without a graph -- a Keras file, a
SavedModel, a TF 2 object checkpoint, all read by :mod:`bn_decay_probe.checkpoints` into a
:class:`~bn_decay_probe.checkpoints.keras_files.KerasModelFile` -- as the doctor's
:class:`~.findings.LayerFacts`, with the notes and the words its report needs."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import numpy as np

from ..checkpoints import sniff, tf2_objects
from ..checkpoints.keras_files import KerasModelFile, read_keras_file
from .diagnosis import DECAY_FROM_CONFIG, DECAY_GIVEN, recalibration_note
from .findings import LayerFacts, is_initial
from .keras_findings import KERAS

# How each kind of file is named in the report, and why it has no momentum when it has none.
_FORMATS = {sniff.KERAS_ZIP: ".keras file", sniff.KERAS_WEIGHTS: ".weights.h5 file",
            sniff.KERAS_H5: ".h5 model", sniff.KERAS_H5_WEIGHTS: ".h5 weights file",
            sniff.SAVED_MODEL: "SavedModel", sniff.TF_CHECKPOINT: "TF 2 object checkpoint"}
_NO_CONFIG = {sniff.KERAS_WEIGHTS: "a .weights.h5 file holds no model config",
              sniff.KERAS_H5_WEIGHTS: "an .h5 weights file holds no model config",
              sniff.SAVED_MODEL: "only a tf_keras model.save(dir) SavedModel holds the layers' "
                                 "configs (keras_metadata.pb)",
              sniff.TF_CHECKPOINT: "a checkpoint holds no layer config"}
_SOURCES = {sniff.SAVED_MODEL: "savedmodel", sniff.TF_CHECKPOINT: "checkpoint"}


@dataclass
class KerasFacts:
    """A saved Keras model as the doctor's diagnosis takes it."""

    source: str  # Diagnosis.source: "keras", "savedmodel" or "checkpoint"
    path: str
    file_format: str  # "Keras 3.12.4 .keras file"
    layers: List[Tuple[LayerFacts, Optional[str]]]  # (facts, key in the file if shown)
    decay_found: str  # the decay source of a layer whose momentum was read
    counters: Any  # step counter name -> value
    notes: List[str]
    step_hint: str  # why the step count is unknown when it is
    decay_hint: str  # why a momentum is unknown when one is


def read_saved_keras(path: str, kind: sniff.PathKind) -> KerasModelFile:
    """A Keras file (h5py only) or a SavedModel directory (TensorFlow's checkpoint reader)."""
    if kind.keras:
        return read_keras_file(path)
    from .. import backend

    with backend.quiet() as tf1:
        return tf2_objects.read_saved_model(tf1, path)


def keras_facts(model: KerasModelFile, decay: Optional[float]) -> KerasFacts:
    """Each batch-norm layer's facts in the file's order (network order where it tells it);
    the layers shown by name, or by path where names repeat (nested models)."""
    names = Counter(layer.name for layer in model.layers)
    recalibrated = set((model.repair or {}).get("layers", ()))
    facts: List[Tuple[LayerFacts, Optional[str]]] = []
    for index, layer in enumerate(model.layers):
        name = layer.name if names[layer.name] == 1 else layer.path
        fact = LayerFacts(name, layer.channels, kind=KERAS,
                          decay=decay if decay is not None else layer.momentum,
                          trainable=layer.trainable)
        fact.mean = np.asarray(layer.mean, np.float64).reshape(-1)
        fact.variance = np.asarray(layer.variance, np.float64).reshape(-1)
        fact.recalibrated = layer.path in recalibrated
        fact.sort_key = (False, index, ())
        facts.append((fact, layer.path if layer.path != name else None))
    notes = _notes(model, [fact for fact, _ in facts])
    where = _FORMATS.get(model.format, model.format)
    version = ("%s %s " % ("Keras" if model.framework == "Keras 3" else model.framework,
                            model.keras_version) if model.framework else "")
    configless = [layer for layer in model.layers if layer.momentum is None]
    decay_hint = (_NO_CONFIG.get(model.format, "no model config") if not model.config else
                  "%d layer(s) not in the model config (inside custom layers?)"
                  % len(configless))
    return KerasFacts(_SOURCES.get(model.format, "keras"), model.path, version + where, facts,
                      DECAY_GIVEN if decay is not None else DECAY_FROM_CONFIG,
                      dict(model.step_counters), notes,
                      "no optimizer iteration counter in the %s: saved without its optimizer "
                      "(not compiled, or trained by a custom loop, whose optimizer is not part "
                      "of the model)" % where, decay_hint)


def _notes(model: KerasModelFile, facts: List[LayerFacts]) -> List[str]:
    notes = []
    frozen = [fact for fact in facts if fact.trainable is False and fact.read
              and not is_initial(fact) and not fact.recalibrated]
    if frozen:
        notes.append("%d layer(s) frozen (trainable=False) after their statistics trained "
                     "(e.g. a pretrained base being fine-tuned): frozen batch norm runs in "
                     "inference mode and keeps its statistics, as meant; the step count does not "
                     "apply to them" % len(frozen))
    recalibrated = sum(fact.recalibrated for fact in facts)
    if recalibrated:
        notes.append(recalibration_note(recalibrated, dict(model.repair or {})))
    if not model.network_order:
        notes.append("layers in the order the file stores them, which may not be the "
                     "network's (nested or subclassed models without a config)")
    notes += ["the file: %s" % warning for warning in model.warnings]
    return notes
