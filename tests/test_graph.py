"""The graph builder: input held in the graph, shared variables checked, structure read back."""
import pytest

from bn_decay_probe import ProbeConfig, backend
from bn_decay_probe.probe import graph


def test_input_lives_in_the_graph_and_is_fed_once():
    built = graph.build(ProbeConfig.create(decay=0.5), "/device:CPU:0")
    placeholders = [op for op in built.graph.get_operations() if op.type == "Placeholder"]
    assert [p.op for p in built.feeds] == placeholders and len(placeholders) == 1
    # The placeholder only initializes the held variable; neither branch reads it.
    consumers = {op.name for op in placeholders[0].outputs[0].consumers()}
    assert consumers == {"input/held/Assign"}
    for phase in graph.PHASES:
        assert not consumers & built.branch_ops[phase]
    assert built.graph.finalized


def test_branches_share_one_set_of_variables():
    built = graph.build(ProbeConfig.create(decay=0.5), "/device:CPU:0")
    names = ("probe/BatchNorm/beta:0", "probe/BatchNorm/moving_mean:0",
             "probe/BatchNorm/moving_variance:0")
    assert built.branch_variables == {"train": names, "test": names}


def test_unshared_branches_raise(monkeypatch):
    """Give each branch its own scope (what forgetting reuse does): the builder must refuse."""
    real = backend.batch_norm()
    calls = []

    def separate_scopes(*args, **kwargs):
        calls.append(None)
        return real(*args, scope="BatchNorm_%d" % len(calls), **kwargs)

    monkeypatch.setattr(backend, "batch_norm", lambda: separate_scopes)
    with pytest.raises(graph.UnsharedVariablesError) as info:
        graph.build(ProbeConfig.create(decay=0.5), "/device:CPU:0")
    assert str(info.value) == (
        "train and test branches do not share their variables: train reads "
        "['probe/BatchNorm_1/beta:0', 'probe/BatchNorm_1/moving_mean:0', "
        "'probe/BatchNorm_1/moving_variance:0'], test reads ['probe/BatchNorm_2/beta:0', "
        "'probe/BatchNorm_2/moving_mean:0', 'probe/BatchNorm_2/moving_variance:0']")


def test_each_build_is_a_fresh_graph():
    config = ProbeConfig.create(decay=0.5)
    first, second = graph.build(config, "/device:CPU:0"), graph.build(config, "/device:CPU:0")
    assert first.graph is not second.graph
    assert [op.name for op in first.graph.get_operations()] == \
        [op.name for op in second.graph.get_operations()]
