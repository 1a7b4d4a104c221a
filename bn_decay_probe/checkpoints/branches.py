"""The branches of control flow v2 conds (If ops) as graphs the doctor and the repair can walk.

TF 2.x builds tf.cond as an If op whose branches are functions, also in graph mode; contrib and
Keras put the layer's update ops (and the training-mode normalization) in the training branch.
A graph TF built keeps each branch's function graph; a graph imported from a GraphDef or a
MetaGraphDef keeps only the FunctionDef, read here through small views with the attributes the
doctor uses (type, name, inputs, control inputs, get_attr), or (``build=True``, for the repair,
which fetches tensors out of them) as function graphs TensorFlow builds from the definition.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

IF_OPS = frozenset({"If", "StatelessIf"})
THEN, ELSE = "then_branch", "else_branch"  # then: the predicate is true (training)
BRANCHES = (THEN, ELSE)


def branch_graph(op: Any, attr: str, build: bool = False) -> Any:
    """The function graph of an If op's branch ``attr``: the one TF built, or for a graph
    imported from a (Meta)GraphDef a view of its FunctionDef (``build``: a function graph TF
    builds from it); None when neither is found."""
    name = op.get_attr(attr).name
    graph = op.graph
    while graph is not None:
        function = graph._get_function(name)  # pylint: disable=protected-access
        if function is not None:
            built = getattr(function, "graph", None)
            if built is not None:
                return built
            definition = _function_definition(graph, name)
            if definition is None:
                return None
            if build:
                from .. import backend

                return backend.function_graph(definition, graph)
            return FunctionView(definition, graph)
        graph = getattr(graph, "outer_graph", None)
    return None


# graph -> {function name: FunctionDef}, from the graph's GraphDef (serialized once per graph).
_LIBRARIES: "weakref.WeakKeyDictionary[Any, Dict[str, Any]]" = weakref.WeakKeyDictionary()


def _function_definition(graph: Any, name: str) -> Any:
    """The FunctionDef of the graph's library. Read from the GraphDef: the function object's own
    ``definition`` registers the function with the eager context, which fails for an imported
    function whose name a function of this process already has."""
    library = _LIBRARIES.get(graph)
    if library is None or name not in library:
        library = {f.signature.name: f for f in graph.as_graph_def().library.function}
        _LIBRARIES[graph] = library
    return library.get(name)


class FunctionView:
    """A FunctionDef read as the little of a graph the doctor walks: operations with type,
    inputs, control inputs and attributes, and the function's inputs and outputs."""

    def __init__(self, definition: Any, outer_graph: Any) -> None:
        self.outer_graph = outer_graph
        self._args = {arg.name: NodeView(self, arg.name, "Placeholder", (), None)
                      for arg in definition.signature.input_arg}
        self._nodes = {node.name: NodeView(self, node.name, node.op, node.input, node.attr)
                       for node in definition.node_def}
        self.inputs = [TensorView(self._args[arg.name], 0)
                       for arg in definition.signature.input_arg]
        self.outputs = [self.tensor(definition.ret[arg.name])
                        for arg in definition.signature.output_arg]

    def get_operations(self) -> List[Any]:
        return list(self._nodes.values())

    def _get_function(self, name: str) -> None:
        return None  # the library is the outer graph's

    def tensor(self, ref: str) -> Any:
        """"arg" (a function input) or "node:output_arg:index"; the index is the output's
        position for the ops walked here (one output argument each)."""
        if ":" not in ref:
            return TensorView(self._args[ref], 0)
        node, _, index = ref.partition(":")
        return TensorView(self._nodes[node], int(index.rpartition(":")[2] or 0))

    def node(self, name: str) -> Any:
        return self._nodes[name]


class NodeView:
    """One node of a FunctionDef, as a tf.Operation is walked."""

    def __init__(self, graph: FunctionView, name: str, type_: str, inputs: Sequence[str],
                 attrs: Any) -> None:
        self.graph, self.name, self.type = graph, name, type_
        self._inputs, self._attrs = list(inputs), attrs

    @property
    def inputs(self) -> List[Any]:
        return [self.graph.tensor(ref) for ref in self._inputs if not ref.startswith("^")]

    @property
    def control_inputs(self) -> List[Any]:
        return [self.graph.node(ref[1:]) for ref in self._inputs if ref.startswith("^")]

    def get_attr(self, name: str) -> Any:
        value = self._attrs[name]
        return getattr(value, value.WhichOneof("value"))


@dataclass(frozen=True)
class TensorView:
    op: Any
    value_index: int
