"""The train step of a TF1 graph: the ops it runs when nobody says which (one or several train
ops), what session.run takes as a train op, and whether a train op is Keras's train function
(which feeds the learning phase 1). No TensorFlow import: the functions take ``tf1``."""
from __future__ import annotations

import re
from typing import Any, Dict, List, Set

from ..checkpoints.graphwalk import ancestors
from ..errors import ProbeConfigError

# The op Keras's train function (Model.fit, train_on_batch) runs: K.function's group of updates,
# made under the "training" name scope (tf.keras in TF 1.15, tf_keras under TF 2.x).
_KERAS_TRAIN_FUNCTION = re.compile(r"(^|/)training(_\d+)?/group_deps(_\d+)?$")


def collected_update_ops(tf1: Any, graph: Any) -> List[Any]:
    """The ops behind UPDATE_OPS; an item session.run could not run is no update op."""
    ops = []
    for item in graph.get_collection(tf1.GraphKeys.UPDATE_OPS):
        try:
            ops += as_ops(tf1, item)
        except ProbeConfigError:
            pass
    return ops


def as_ops(tf1: Any, fetches: Any) -> List[Any]:
    """The ops behind a train op given as session.run takes it: an op, a tensor, a variable or
    a (nested) list of them."""
    if fetches is None:
        return []
    if isinstance(fetches, tf1.Operation):
        return [fetches]
    # A tensor's or a variable's op. Not isinstance(.., tf1.Variable): under TF 2.x resource
    # variables are no tf.compat.v1.Variable -- every variable there, global_step too, and what
    # assign_sub returns (a variable whose op is the update), which contrib puts in UPDATE_OPS.
    if isinstance(getattr(fetches, "op", None), tf1.Operation):
        return [fetches.op]
    if isinstance(fetches, (list, tuple)):
        return [op for item in fetches for op in as_ops(tf1, item)]
    raise ProbeConfigError("train_op must be a tf.Operation, tf.Tensor, tf.Variable, a Keras "
                           "train function or a list of them, got %r" % (fetches,))


def train_roots(tf1: Any, graph: Any) -> List[Any]:
    """The ops a train step runs when nobody says which: the TRAIN_OP collection when it is
    filled (tf.compat.v1 optimizers add their apply op there, slim's create_train_op its train
    op); else (Keras's optimizers add nothing) the ops that nothing consumes among
    those that run an optimizer's apply op (ApplyGradientDescent, ResourceApplyAdam, ...), e.g.
    ``minimize()``'s op or Keras Model.fit's ``training/group_deps``, leaving out the reads TF
    2.x's optimizers add after their updates. In graph order. Several roots are several train
    steps, of which a program may run any."""
    collected = as_ops(tf1, graph.get_collection(tf1.GraphKeys.TRAIN_OP))
    if collected:
        return _outermost(list(dict.fromkeys(collected)))
    consumers: Dict[Any, List[Any]] = {}
    for op in graph.get_operations():
        for tensor in op.inputs:
            consumers.setdefault(tensor.op, []).append(op)
        for dependency in op.control_inputs:
            consumers.setdefault(dependency, []).append(op)
    stack = [op for op in graph.get_operations() if _applies_gradients(op)]
    reached: Set[Any] = set()
    while stack:
        op = stack.pop()
        if op not in reached:
            reached.add(op)
            stack.extend(consumers.get(op, []))
    return [op for op in graph.get_operations() if op in reached and not consumers.get(op)
            and op.type != "ReadVariableOp"]


def _outermost(ops: List[Any]) -> List[Any]:
    """The ops of ``ops`` that no other of them runs (slim's create_train_op adds its train op to
    TRAIN_OP next to the optimizer's apply op, which it runs)."""
    runs = {op: ancestors([op]) for op in ops}
    return [op for op in ops if not any(op in runs[other] for other in ops if other is not op)]


def feeds_learning_phase(op: Any) -> bool:
    """Whether a train root is Keras's train function, which feeds the learning phase 1."""
    return bool(_KERAS_TRAIN_FUNCTION.search(op.name))


def _applies_gradients(op: Any) -> bool:
    return op.type.startswith(("Apply", "ResourceApply", "SparseApply", "ResourceSparseApply"))
