"""The findings of TF 2.x Keras models (Keras files, SavedModels, TF 2 object checkpoints),
where there is no graph and no update op to forget: Keras updates a batch-norm layer's
statistics whenever the layer runs in training mode (``model.fit``, or ``model(x,
training=True)``), and never otherwise. So statistics still at their initial (0, 1) mean the
layer never ran in training mode:

- after train steps the optimizer counted: TRAINED_IN_INFERENCE_MODE, a custom loop
  (``GradientTape``) that called ``model(x)`` without ``training=True``; or the layer frozen
  with ``trainable=False`` before it trained (tf.keras since TF 2.0, tf_keras and Keras 3 run a
  frozen batch norm in inference mode);
- without a step count (a custom loop's optimizer is not saved with the model), or with 0
  steps: NEVER_UPDATED, with the same causes.

The fixes name ``training=True`` / ``fit`` and the repair, not UPDATE_OPS. A layer frozen after
its statistics trained (fine-tuning a pretrained base) is no finding: it keeps them, and the
step count does not apply to it (:attr:`~.findings.LayerFacts.judged_by_steps`). Every other
layer gets the common rules (:func:`~.findings.value_findings`: broken values, not converged)."""
from __future__ import annotations

from typing import List, Optional, Sequence

from .diagnosis import ERROR, NEVER_UPDATED, TRAINED_IN_INFERENCE_MODE, Finding
from .findings import LayerFacts, is_initial, value_findings

KERAS = "keras"  # LayerFacts.kind of a TF 2.x Keras layer

_REPAIR = ("for the weights already trained, recompute the statistics from data instead of "
           "training again (bn-decay-probe repair MODEL --data FILE --out FIXED, or "
           "recalibrate(model, batches) on the live model)")
_TRAINING = "in the train step call the model as model(x, training=True) (model.fit does)"
_UNFREEZE = ("freeze (trainable=False) only batch-norm layers whose statistics were trained, "
             "such as a pretrained base; set trainable=True on the others before training")
_LOOP = "a custom training loop (GradientTape) that called model(x) without training=True"
_FROZEN = ("the layer frozen with trainable=False before it trained (TF 2.x Keras runs a "
           "frozen batch-norm layer in inference mode)")


def keras_value_findings(layers: Sequence[LayerFacts], steps: Optional[int],
                         threshold: float) -> List[Finding]:
    """At most one finding per layer: Keras's causes for statistics at their initial values,
    the common rules for the others."""
    initial = [layer for layer in layers
               if layer.read and is_initial(layer) and not layer.recalibrated]
    chosen = {id(layer) for layer in initial}
    findings = value_findings([layer for layer in layers if id(layer) not in chosen], steps,
                              threshold)
    return findings + [_never_trained(layer, steps) for layer in initial]


def _never_trained(layer: LayerFacts, steps: Optional[int]) -> Finding:
    if layer.trainable is False:
        causes, fix = _FROZEN, _UNFREEZE
    elif layer.trainable is None:
        causes = "%s, or %s; the file has no model config to tell which" % (_LOOP, _FROZEN)
        fix = "%s, and %s" % (_TRAINING, _UNFREEZE)
    else:
        causes, fix = _LOOP, _TRAINING
    fix = "%s; %s" % (fix, _REPAIR)
    if steps:
        return Finding(layer.name, TRAINED_IN_INFERENCE_MODE, ERROR,
                       "the optimizer counted train steps, but the statistics are still their "
                       "initial (0, 1): Keras updates them only when the layer runs in "
                       "training mode, and it ran in inference mode: %s" % causes, fix)
    why = ("the optimizer counted 0 steps: the model was not trained" if steps == 0 else
           "the layer never ran in training mode: the model was not trained, or %s (the file "
           "holds no step counter to tell: a custom loop's optimizer is not saved with the "
           "model)" % causes)
    return Finding(layer.name, NEVER_UPDATED, ERROR,
                   "moving_mean is all 0 and moving_variance all 1, their initial values, so "
                   "inference normalizes with (0, 1); %s" % why, fix)
