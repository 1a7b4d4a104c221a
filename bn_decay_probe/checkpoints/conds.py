"""Which branches of which conds an op of a TF1-style graph runs in, read from the graph's
structure alone (a .meta imported into another TensorFlow keeps no Python-side cond contexts).

Control flow v1 (TF 1.15): a cond passes every value its branches use through a Switch op on
its predicate (constants get a control input from the branch's pivot, itself a Switch output),
and a Merge op joins the branches. So an op is in branch k of a cond when its inputs come
through output k of that cond's Switch ops, and the Merge leaves the cond again. One walk in
topological order gives each op its branches. While loops (Enter, Exit, NextIteration, a Switch
on a LoopCond) are no cond here: what a loop runs, it runs when the loop does.

Control flow v2 (TF 2.x): an If op runs the function of one branch; the callers step into it
with :func:`if_branch`. Nothing here imports TensorFlow; it works on a tf.Graph, a branch
function graph and the views of checkpoints.branches alike (ops with type, name, inputs and
control inputs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .branches import THEN

_SWITCHES = frozenset({"Switch", "RefSwitch"})
_MERGES = frozenset({"Merge", "RefMerge"})
_BACK_EDGES = frozenset({"NextIteration", "RefNextIteration"})


@dataclass(frozen=True)
class Branch:
    """One branch of one cond: ``cond`` names the cond (control flow v1: the tensor its Switch
    ops test, which each tf.cond makes anew; v2: the If op), ``predicate`` the boolean tensor
    it tests (past Identity ops), ``taken`` the branch (True: the then / true branch)."""

    cond: str
    predicate: str
    taken: bool

    def text(self) -> str:
        return "%s is %s" % (self.predicate, self.taken)


Branches = Tuple[Branch, ...]  # outermost first; () outside every cond


def predicate_of(tensor: Any) -> Any:
    """The tensor a cond tests, past the Identity ops tf.cond puts before it."""
    while tensor.op.type in ("Identity", "RefIdentity") and tensor.op.inputs:
        tensor = tensor.op.inputs[0]
    return tensor


def if_branch(if_op: Any, attr: str) -> Branch:
    """The branch ``attr`` (then_branch / else_branch) of a control flow v2 If op."""
    return Branch(if_op.name, _name(predicate_of(if_op.inputs[0])), attr == THEN)


def cond_contexts(operations: Iterable[Any]) -> Dict[Any, Branches]:
    """Each op of ``operations`` (a graph's, all of them) -> the control flow v1 cond branches it
    runs in, outermost first."""
    operations = list(operations)
    contexts: Dict[Any, Branches] = {}
    for op in _topological(operations):
        candidates = [_output_context(contexts, tensor) for tensor in op.inputs
                      if tensor.op.type not in _BACK_EDGES]
        candidates += [contexts.get(dependency, ()) for dependency in op.control_inputs]
        deepest = max(candidates, key=len, default=())
        if op.type in _MERGES and deepest and not _loop_merge(op):
            deepest = deepest[:-1]  # the Merge leaves the cond
        contexts[op] = deepest
    return contexts


def _output_context(contexts: Dict[Any, Branches], tensor: Any) -> Branches:
    op = tensor.op
    inside = contexts.get(op, ())
    if op.type in _SWITCHES and len(op.inputs) > 1 and \
            predicate_of(op.inputs[1]).op.type != "LoopCond":
        return inside + (Branch(_name(op.inputs[1]), _name(predicate_of(op.inputs[1])),
                                tensor.value_index == 1),)
    return inside


def _loop_merge(op: Any) -> bool:
    return any(t.op.type in _BACK_EDGES or t.op.type in ("Enter", "RefEnter") for t in op.inputs)


def _name(tensor: Any) -> str:
    name = getattr(tensor, "name", None)
    return name if name is not None else "%s:%d" % (tensor.op.name, tensor.value_index)


def _topological(operations: List[Any]) -> List[Any]:
    """Inputs before consumers; a loop's back edges (NextIteration) are left out, so the order
    exists. Iterative (graphs are deeper than Python's recursion limit)."""
    order: List[Any] = []
    done = set()
    for start in operations:
        if start in done:
            continue
        stack: List[Tuple[Any, bool]] = [(start, False)]
        while stack:
            op, expanded = stack.pop()
            if op in done:
                continue
            if expanded:
                done.add(op)
                order.append(op)
                continue
            stack.append((op, True))
            stack.extend((dependency, False) for dependency in _dependencies(op)
                         if dependency not in done)
    return order


def _dependencies(op: Any) -> List[Any]:
    return [t.op for t in op.inputs if t.op.type not in _BACK_EDGES] + list(op.control_inputs)


def innermost(branches: Branches) -> Optional[Branch]:
    return branches[-1] if branches else None
