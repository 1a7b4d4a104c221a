"""Reading what users saved, for the doctor, the repair and the port: where a checkpoint is, its
graph, its values and step counters, walks of its graph, and the files of TF 2.x Keras.

Modules: ``paths`` (a path resolved to a checkpoint prefix, checked without TensorFlow), ``meta``
(the one .meta importer, restoring values, what the Saver says), ``reader`` (a TensorFlow
checkpoint's moving statistics, step counters, object-graph names and the repair's marker),
``step_counter`` (which variable counts the train steps), ``graphwalk`` (ancestors, descendants,
walks across control flow), ``branches`` (the branches of control flow v2 conds) and ``conds``
(which cond branches an op runs in); ``sniff`` (what a path is, from its first bytes),
``keras_files`` (``.keras``, ``.weights.h5`` and ``.h5`` read with h5py: :func:`read_keras_file`
-> :class:`KerasModelFile` of :class:`KerasBatchNorm`), with the layouts in ``keras_v3`` and
``keras_h5`` and ``zip_member`` (a ``.keras`` member read in place), ``tf2_objects`` (SavedModels
and TF 2 object checkpoints as the same :class:`KerasModelFile`) and ``protowire`` (protocol
buffers read without TensorFlow). Importing this package does not import TensorFlow or h5py.
"""
from .keras_files import KerasBatchNorm, KerasModelFile, read_keras_file
from .tf2_objects import read_object_checkpoint, read_saved_model

__all__ = ["read_keras_file", "KerasModelFile", "KerasBatchNorm", "read_saved_model",
           "read_object_checkpoint"]
