"""probe() called 1000 times in one process, as a notebook kernel does, inside the caller's own
graph and open session: memory stays flat, no graph or session outlives its call, and the
caller's default graph, its variables and its session are left exactly as they were."""
import gc
from types import SimpleNamespace

import psutil
import pytest

from bn_decay_probe import backend, probe

CALLS = 1000
WARM_UP = 40  # TF and Keras fill caches on first use; RSS counts from after these calls
MAX_GROWTH_MB = 50
CASES = [dict(api=api, fused=fused) for api in ("contrib", "layers", "keras", "nn")
         for fused in (True, False)]


def live(cls):
    gc.collect()
    return sum(isinstance(o, cls) for o in gc.get_objects())


def state(graph):
    """What a probe must not change in a graph: its operations, collections, finalization."""
    return dict(operations=[op.name for op in graph.get_operations()],
                collections={key: [getattr(item, "name", item)
                                   for item in graph.get_collection(key)]
                             for key in graph.get_all_collection_keys()},
                finalized=graph.finalized)


@pytest.fixture(scope="module")
def calls():
    tf1 = backend.tensorflow().compat.v1
    process = psutil.Process()
    outer = tf1.get_default_graph()
    outer_before = state(outer)
    graph = tf1.Graph()
    with graph.as_default():
        users = tf1.Variable(3.0, name="users_variable")
        session = tf1.Session(graph=graph)
        session.run(users.initializer)
        with session.as_default():
            before = state(graph)
            for i in range(WARM_UP):
                probe(decay=0.5, device="cpu", **CASES[i % len(CASES)])
            graphs, sessions = live(tf1.Graph), live(tf1.Session)
            rss = process.memory_info().rss
            for i in range(CALLS):
                probe(decay=(i % 11) / 10, device="cpu", **CASES[i % len(CASES)])
            gc.collect()
            growth = (process.memory_info().rss - rss) / 2 ** 20
            calls = SimpleNamespace(
                growth=growth, graphs=(graphs, live(tf1.Graph)),
                sessions=(sessions, live(tf1.Session)),
                default_graph=tf1.get_default_graph() is graph,
                default_session=tf1.get_default_session() is session,
                before=before, after=state(graph), value=session.run(users))
        session.close()
    calls.outer = (outer_before, state(outer), tf1.get_default_graph() is outer)
    return calls


def test_memory_stays_flat(calls, capsys):
    with capsys.disabled():
        print("\nre-entrance: %d probe() calls: RSS grew by %.1f MB (limit %d); live tf.Graph "
              "%d -> %d, tf.Session %d -> %d"
              % (CALLS, calls.growth, MAX_GROWTH_MB, *calls.graphs, *calls.sessions))
    assert calls.growth <= MAX_GROWTH_MB


def test_no_graph_or_session_outlives_its_call(calls):
    # The caller's own graph and session are alive throughout, so the counts see them.
    assert calls.graphs[0] >= 1 and calls.sessions[0] >= 1
    assert calls.graphs[1] == calls.graphs[0]
    assert calls.sessions[1] == calls.sessions[0]


def test_the_callers_graph_and_session_are_untouched(calls):
    assert calls.default_graph and calls.default_session
    assert calls.after == calls.before
    assert calls.before["collections"]["variables"] == ["users_variable:0"]
    assert not calls.after["finalized"]  # the probe finalizes only its own graphs
    assert calls.value == 3.0


def test_the_process_default_graph_is_untouched(calls):
    before, after, still_default = calls.outer
    assert still_default and after == before
