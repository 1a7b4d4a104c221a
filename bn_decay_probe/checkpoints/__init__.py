"""Reading what users saved, for the doctor and the repair: where a checkpoint is, its graph, its
values and step counters, and walks of its graph.

Modules: ``paths`` (a path resolved to a checkpoint prefix, checked without TensorFlow), ``meta``
(the one .meta importer, restoring values, what the Saver says), ``reader`` (a TensorFlow
checkpoint's moving statistics, step counters, object-graph names and the repair's marker),
``step_counter`` (which variable counts the train steps), ``graphwalk`` (ancestors, descendants,
walks across control flow), ``branches`` (the branches of control flow v2 conds) and ``conds``
(which cond branches an op runs in). Importing
this package does not import TensorFlow.
"""
