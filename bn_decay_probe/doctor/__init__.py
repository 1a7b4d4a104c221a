"""BN doctor: finds the usual reasons a model's batch norm is bad at inference (TF1 graphs and
checkpoints, and the files of TF 2.x Keras).

Two entry points: :func:`diagnose_checkpoint` reads the moving statistics (and step counters) a
checkpoint holds, with the ``.meta`` graph beside it when there is one, or a SavedModel or Keras
file (``.keras``, ``.weights.h5``, ``.h5``) with its model config; :func:`diagnose_graph`
checks how a live graph (or a Keras model) wires its moving-average update ops, and with a
session also the values. Both return a :class:`Diagnosis`; :func:`render_diagnosis` writes it
for a terminal. Importing this package does not import TensorFlow.

Modules, one job each: ``graph_reader`` (batch-norm layers of a graph, their variables, update
ops, decay, training switch, the cond branches they run in, copies in a cond's other branch),
``train_step`` (the train steps of a graph), ``keras_support`` (Keras models and train functions),
``findings`` (the codes' rules), ``keras_facts`` (a saved TF 2.x Keras model as the rules take
it), ``keras_findings`` (Keras's rules for statistics at their initial values), ``diagnose`` (the
entry points), ``diagnosis`` (result types), ``render`` (grouped text). Files, step counters and
graph walks are read by
:mod:`bn_decay_probe.checkpoints`, which the repair shares.

Finding codes (stable), at most one of the first five per layer, in this precedence:

- ``TRAINED_IN_INFERENCE_MODE``: every value at (0, 1) or NaN, and the graph shows the train step
  ran the layer in inference mode: ``is_training=False`` / ``training=False`` in its path outside
  any cond, or update ops behind a training switch left at its default False (the Keras
  learning phase, which Model.fit's train function feeds).
- ``BAD_VARIANCE``: moving_variance negative, zero, NaN or inf, or moving_mean NaN or inf
  (zeros in a layer the repair recalibrated are the data's).
- ``NEVER_UPDATED``: moving_mean all 0 and moving_variance all 1, within ``INITIAL_ATOL``; with
  several train steps that leave different causes, each named with its fix.
- ``UNSHARED_BRANCHES``: a never-updated copy of a layer in training mode: in the other branch of
  the same cond, or with the same name up to ``_N`` suffixes or outer scopes, and the same
  number of channels.

A layer the train step runs in inference mode whose statistics moved is frozen (restored from
elsewhere): a note, and no convergence check.
- ``PARTLY_CONVERGED``: ``decay**steps`` (the weight still on the initial values) above the
  threshold.
- ``MISSING_UPDATE_DEPENDENCY`` (graph): update ops neither in place nor run by the train step.
- ``KERAS_UPDATES_NOT_COLLECTED`` (graph): the same for tf.keras update ops outside
  ``UPDATE_OPS``.
"""
from .diagnose import check_steps, check_threshold, diagnose_checkpoint, diagnose_graph
from .diagnosis import (BAD_VARIANCE, CODES, ERROR, KERAS_UPDATES_NOT_COLLECTED,
                        MISSING_UPDATE_DEPENDENCY, NEVER_UPDATED, PARTLY_CONVERGED,
                        TRAINED_IN_INFERENCE_MODE, UNSHARED_BRANCHES, WARNING, Diagnosis,
                        Finding, LayerSummary, Statistic, StepCount)
from .findings import DEFAULT_THRESHOLD, INITIAL_ATOL
from .render import render_diagnosis

__all__ = ["diagnose_checkpoint", "diagnose_graph", "render_diagnosis", "Diagnosis", "Finding",
           "LayerSummary", "Statistic", "StepCount", "check_threshold", "check_steps",
           "DEFAULT_THRESHOLD", "INITIAL_ATOL", "CODES", "ERROR", "WARNING", "NEVER_UPDATED",
           "TRAINED_IN_INFERENCE_MODE", "UNSHARED_BRANCHES", "BAD_VARIANCE", "PARTLY_CONVERGED",
           "MISSING_UPDATE_DEPENDENCY", "KERAS_UPDATES_NOT_COLLECTED"]
