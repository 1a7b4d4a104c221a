"""Walking a TF1-style graph backwards across control flow, and back out to tensors a session can
fetch.

Control flow v1 (TF 1.15) keeps both branches of a cond in the graph, behind Switch ops, merged by
Merge ops: every tensor is in the graph, and fetching one of the branch not taken fails. Control
flow v2 (TF 2.x) builds an If op whose branches are functions; a tensor inside a branch can only
be fetched as an output of the If op that returns it. A :class:`Node` is an op together with the
If ops (and branches) it sits in, so that a walk can step into a branch through an If output and
back out through a branch input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from .branches import ELSE, IF_OPS, THEN, branch_graph

PASS_THROUGH = frozenset({"Identity", "RefIdentity", "Snapshot", "Squeeze", "Reshape",
                          "ExpandDims"})
VARIABLE_OPS = frozenset({"VariableV2", "Variable", "VarHandleOp", "ReadVariableOp"})
# Ops that change a variable's value (the inputs[0] they change is a variable or its handle).
STATE_OPS = frozenset({"Assign", "AssignAdd", "AssignSub", "AssignVariableOp",
                       "AssignAddVariableOp", "AssignSubVariableOp", "ScatterUpdate",
                       "ScatterAdd", "ScatterSub", "ResourceScatterUpdate",
                       "ResourceScatterAdd", "ResourceScatterSub"})

Frame = Tuple[Any, str]  # (If op, THEN or ELSE) around a branch function


@dataclass(frozen=True)
class Node:
    """An op and the If-branch frames around it, outermost first (empty: the graph itself)."""

    op: Any
    frames: Tuple[Frame, ...] = ()

    @property
    def outer(self) -> bool:
        return not self.frames


@dataclass(frozen=True)
class Edge:
    """A tensor (op output ``index`` of ``node``) as seen from where a walk stands."""

    node: Node
    index: int


@dataclass(frozen=True)
class Condition:
    """A cond on the path of a walk: its predicate (a fetchable tensor, or None inside a branch
    function) must equal ``required`` for the path to run."""

    predicate: Any
    required: bool
    where: str  # the Switch or If op's name


class Walker:
    """Steps through a graph's data edges across If branches; branch function graphs are read
    once per If op and branch."""

    def __init__(self) -> None:
        self._branches: Dict[Tuple[Any, str], Any] = {}

    def branch(self, if_op: Any, attr: str) -> Any:
        """The function graph of an If op's branch (None if it cannot be found)."""
        key = (if_op, attr)
        if key not in self._branches:
            self._branches[key] = branch_graph(if_op, attr, build=True)
        return self._branches[key]

    def step_back(self, edge: Edge) -> Optional[List[Tuple[Edge, Optional[Condition]]]]:
        """Where ``edge`` comes from, one step back through control flow: for an If output the
        matching output of each branch, for a branch input the If's input outside, for a Switch
        its input -- each with the branch of the cond that path implies. None when ``edge``'s op
        is no control flow (it produces the value)."""
        node, op = edge.node, edge.node.op
        if op.type in IF_OPS:
            steps: List[Tuple[Edge, Optional[Condition]]] = []
            for attr in (THEN, ELSE):
                graph = self.branch(op, attr)
                if graph is None or edge.index >= len(graph.outputs):
                    continue
                out = graph.outputs[edge.index]
                condition = Condition(op.inputs[0] if node.outer else None, attr == THEN,
                                      op.name)
                steps.append((Edge(Node(out.op, node.frames + ((op, attr),)), out.value_index),
                              condition))
            return steps
        if op.type in ("Switch", "RefSwitch"):
            condition = Condition(op.inputs[1] if node.outer else None, edge.index == 1,
                                  op.name)
            return [(self.input(node, 0), condition)]
        if op.type == "Placeholder" and node.frames:
            # Leaving a branch: what the walk came from runs only when the If takes it.
            outer = self.outer_input(node)
            if_op, attr = node.frames[-1]
            condition = Condition(if_op.inputs[0] if len(node.frames) == 1 else None,
                                  attr == THEN, if_op.name)
            return [(outer, condition)] if outer is not None else []
        return None

    def input(self, node: Node, index: int) -> Edge:
        tensor = node.op.inputs[index]
        return Edge(Node(tensor.op, node.frames), tensor.value_index)

    def inputs(self, node: Node) -> List[Edge]:
        return [Edge(Node(t.op, node.frames), t.value_index) for t in node.op.inputs]

    def outer_input(self, node: Node) -> Optional[Edge]:
        """The If input behind a branch function's input placeholder."""
        if_op, attr = node.frames[-1]
        graph = self.branch(if_op, attr)
        for position, tensor in enumerate(graph.inputs):
            if tensor.op is node.op:
                outer = if_op.inputs[position + 1]  # inputs[0] is the condition
                return Edge(Node(outer.op, node.frames[:-1]), outer.value_index)
        return None

    def resolve(self, edge: Edge) -> List[Tuple[Edge, Tuple[Condition, ...]]]:
        """The real producers of ``edge``: through pass-through ops (Identity, Squeeze, ...),
        Switch, Merge, If outputs and branch inputs; each with the conditions on its path."""
        done: List[Tuple[Edge, Tuple[Condition, ...]]] = []
        stack: List[Tuple[Edge, Tuple[Condition, ...]]] = [(edge, ())]
        seen = set()
        while stack:
            current, conditions = stack.pop()
            if (current.node, current.index) in seen:
                continue
            seen.add((current.node, current.index))
            op = current.node.op
            if op.type == "Merge":
                stack.extend((e, conditions) for e in self.inputs(current.node))
                continue
            if op.type in PASS_THROUGH:
                stack.append((self.input(current.node, 0), conditions))
                continue
            steps = self.step_back(current)
            if steps is None:
                done.append((current, conditions))
                continue
            stack.extend((step, conditions + ((condition,) if condition else ()))
                         for step, condition in steps)
        return done

    def fetchable(self, edge: Edge) -> Optional[Any]:
        """The tensor of the outer graph that carries ``edge``: itself, or the output of the If
        op(s) that return it from their branch; None if no If output returns it."""
        while edge.node.frames:
            if_op, attr = edge.node.frames[-1]
            graph = self.branch(if_op, attr)
            position = None
            for k, out in enumerate(graph.outputs):
                source = _strip(out)
                if source.op is edge.node.op and source.value_index == edge.index:
                    position = k
                    break
            if position is None:
                return None
            edge = Edge(Node(if_op, edge.node.frames[:-1]), position)
        return _fetchable_copy(edge.node.op.outputs[edge.index])

    def branch_state_targets(self, if_op: Any, frames: Tuple[Frame, ...] = ()) -> List[Any]:
        """The ops of the outer graph (variables) whose values the branches of ``if_op`` (inside
        ``frames``) change: what a state op in a branch, or in a cond nested in it, writes to."""
        found = []
        for attr in (THEN, ELSE):
            graph = self.branch(if_op, attr)
            if graph is None:
                continue
            inner = frames + ((if_op, attr),)
            for op in graph.get_operations():
                if op.type in STATE_OPS:
                    target = self.leave(Edge(Node(op.inputs[0].op, inner),
                                             op.inputs[0].value_index))
                    if target is not None:
                        found.append(target)
                elif op.type in IF_OPS:
                    found.extend(self.branch_state_targets(op, inner))
        return found

    def leave(self, edge: Edge) -> Optional[Any]:
        """The op of the outer graph behind a state op's target (a variable, or a handle passed
        into branch functions); None if it is made inside a function."""
        while True:
            op = edge.node.op
            if op.type in PASS_THROUGH or op.type in ("Switch", "RefSwitch", "Enter"):
                edge = self.input(edge.node, 0)
            elif op.type == "Placeholder" and edge.node.frames:
                outer = self.outer_input(edge.node)
                if outer is None:
                    return None
                edge = outer
            else:
                return op if edge.node.outer else None


def _fetchable_copy(tensor: Any) -> Optional[Any]:
    """``tensor``, or a tensor carrying its value that a session may fetch. TF marks some ops
    unfetchable: TF 1.x the ops it builds inside a cond (control flow v1), whose Merge carries the
    value when that branch runs; TF 2.x the If op itself, whose outputs it passes on through
    Identity ops."""
    stack = [tensor]
    while stack:
        current = stack.pop(0)
        if current.graph.is_fetchable(current.op):
            return current
        stack.extend(consumer.outputs[0] for consumer in current.consumers()
                     if consumer.type in ("Identity", "Merge"))
    return None


def _strip(tensor: Any) -> Any:
    while tensor.op.type in ("Identity",) and list(tensor.op.inputs):
        tensor = tensor.op.inputs[0]
    return tensor


def ancestors(roots: Iterable[Any], control: bool = True) -> Set[Any]:
    """Every op that running ``roots`` runs: inputs and (with ``control``) control inputs,
    transitively (in the graph of ``roots``; If branches are not entered)."""
    return _closure(roots, lambda op: [t.op for t in op.inputs] +
                    (list(op.control_inputs) if control else []))


def descendants(roots: Iterable[Any], control: Optional[Dict[Any, List[Any]]] = None
                ) -> Set[Any]:
    """``roots`` and every op that consumes their outputs, transitively; with ``control`` (op ->
    the ops it is a control input of) also through control dependencies."""
    return _closure(roots, lambda op: [c for t in op.outputs for c in t.consumers()] +
                    list((control or {}).get(op, ())))


def _closure(roots: Iterable[Any], neighbours: Callable[[Any], List[Any]]) -> Set[Any]:
    seen: Set[Any] = set()
    stack = list(roots)
    while stack:
        op = stack.pop()
        if op not in seen:
            seen.add(op)
            stack.extend(neighbours(op))
    return seen
