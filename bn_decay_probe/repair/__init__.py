"""Repair: recompute batch-norm moving statistics from data with every weight frozen (precise BN).

:func:`recalibrate` works on a live TF1-style graph and session, or a live Keras model (Keras 3
on any backend, tf_keras), and assigns the new values in place; :func:`recalibrate_checkpoint`
reads a checkpoint and its .meta, or a Keras ``.keras`` / ``.h5`` model file, and writes a
repaired copy.
Both run every batch-norm layer in training mode, pool each layer's batch statistics over every
value of every batch (float64, Chan's pairwise merge) and write the population mean and the
population variance (divide by the number of values, as fvcore's precise BN does; the fused
kernel's n/(n-1) is not applied: docs/repair.md says why). Importing this package does not import
TensorFlow.

<<<<<<< HEAD
Modules: ``data`` (files and batches), ``discover`` / ``graphwalk`` / ``plan`` (reading the graph:
layers, input, switch, outputs), ``pooled`` (the statistics, numpy only), ``runner`` (the session
runs), ``checkpoint`` (paths, .meta import, the repaired copy), ``result`` and ``render`` (the
report); for Keras: ``keras_live`` (a live model's batch-norm layers and the pass that reads
their batch statistics), ``keras_repair`` (the entry points), ``keras_writer`` (the repaired
copy of a Keras file) and ``images`` (a directory of images as data, and --preprocess).
=======
Modules: ``data`` (files and batches), ``discover`` / ``plan`` (reading the graph: layers, input,
switch), ``kinds`` (the layers left as they were, and why), ``pooled`` (the statistics, numpy
only), ``runner`` (the session runs), ``check`` (how far inference mode's normalization is from
each layer's input, before and after), ``writer`` (the repaired copy), ``result`` and ``render``
(the report).
>>>>>>> trust
"""
from .api import recalibrate, recalibrate_checkpoint
from .render import render_repair
from .result import Check, LayerRepair, RepairResult

__all__ = ["recalibrate", "recalibrate_checkpoint", "RepairResult", "LayerRepair", "Check",
           "render_repair"]
