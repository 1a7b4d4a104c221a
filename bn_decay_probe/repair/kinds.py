"""Batch-norm layers whose moving statistics are more than a mean and a variance per channel:
which the repair leaves as they were, and what it says of them. Read from the graph's variable
names and the batch statistics' static shapes (contrib, tf.layers and tf.keras name them alike):

- batch renormalization (``renorm=True``): training keeps ``moving_stddev`` and
  ``renorm_mean`` / ``renorm_stddev`` beside the moving statistics and corrects each batch with
  them; left as it was.
- virtual batches (``virtual_batch_size``): the batch statistics are computed per virtual batch
  (the input reshaped to [virtual batches, rows, ...]); left as it was.
- contrib's zero-debiased moving mean (``zero_debias_moving_mean=True``): moving_mean is
  recalibrated; its shadows ``moving_mean/biased`` and ``moving_mean/local_step`` stay, which
  the report says (training on would compute moving_mean from them again).
"""
from __future__ import annotations

from typing import Any, Sequence

from .discover import Layer

_RENORM = ("renorm_mean", "renorm_stddev", "moving_stddev")
_ZERO_DEBIAS = ("biased", "local_step")


def _split_in_virtual_batches(values: Any) -> bool:
    """Whether a layer's input is split into virtual batches: a Reshape that adds an axis (the
    batch axis cut into [virtual batches, rows]), as virtual_batch_size builds it."""
    op = values.op
    before = op.inputs[0].shape.ndims if op.type == "Reshape" and op.inputs else None
    return before is not None and values.shape.ndims == before + 1


def classify(tf1: Any, graph: Any, layers: Sequence[Layer]) -> None:
    """Sets ``skipped`` (the reason) or adds ``notes`` to the layers of the kinds above."""
    names = {v.op.name for v in graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES)}
    for layer in layers:
        if layer.skipped is not None:
            continue
        renorm = ["%s/%s" % (layer.name, short) for short in _RENORM
                  if "%s/%s" % (layer.name, short) in names]
        if renorm:
            layer.skipped = ("batch renormalization (renorm): training keeps %s beside the "
                             "moving statistics and corrects each batch with them, so "
                             "recomputing moving_mean and moving_variance alone would not "
                             "agree with them" % ", ".join(renorm))
            continue
        ghosts = [s.values for s in layer.statistics if _split_in_virtual_batches(s.values)]
        if ghosts:
            layer.skipped = ("virtual batches (virtual_batch_size): it computes its batch "
                             "statistics per virtual batch, over its input split as %s (%s)"
                             % (ghosts[0].name, ghosts[0].shape))
            continue
        # (a shape of unknown rank says nothing; a known rank with an unknown dimension is not
        # one value per channel)
        shapes = [s.mean.shape for s in layer.statistics if s.mean.shape.ndims is not None
                  and s.mean.shape.num_elements() != layer.channels]
        if shapes:
            layer.skipped = ("its batch statistics have shape %s, not one value per channel"
                             % shapes[0])
            continue
        mean = layer.mean_variable.op.name
        shadows = sorted(name for name in names for short in _ZERO_DEBIAS
                         if name.endswith("%s/%s" % (mean, short)))
        if shadows:
            layer.notes.append(
                "zero-debias shadows %s left as they were: inference uses the recalibrated "
                "moving_mean, but training on would compute it from them again"
                % ", ".join(shadows))
