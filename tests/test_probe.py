"""probe()'s contract: result shape and immutability, JSON, isolation from the caller's graph
and session, and what it reads from the graph (fused kernel, epsilon, decay factor, steps)."""
import json
import pickle
from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from bn_decay_probe import ProbeResult, probe
from conftest import Reference, backend_name, channel_inputs, tf_version


@pytest.fixture(scope="module")
def result():
    return probe(decay=0.9, inputs=channel_inputs((2, 3, 3, 2)), steps=2, device="cpu")


def test_contract_shapes_and_names(result):
    assert set(result.before) == set(result.after) == {"train", "test"}
    for phase in ("train", "test"):
        assert set(result.before[phase]) == {"beta", "moving_mean", "moving_variance"}
        for values in (result.before[phase], result.after[phase]):
            assert all(v.shape == (2,) for v in values.values())
    assert result.outputs["train"].shape == result.outputs["test"].shape == (2, 3, 3, 2)
    assert [v.name for v in result.variables] == [
        "probe/BatchNorm/beta:0", "probe/BatchNorm/moving_mean:0",
        "probe/BatchNorm/moving_variance:0"]
    assert result.branches_share_variables
    assert result.shared_variables == tuple(v.name for v in result.variables)


def test_snapshot_sequence_matches_the_update_rule(result):
    ref = Reference(channel_inputs((2, 3, 3, 2)))
    mean, var = ref.moving(0.9, 2, fused=True)
    np.testing.assert_array_equal(result.before["train"]["moving_mean"], [0, 0])
    np.testing.assert_array_equal(result.before["train"]["moving_variance"], [1, 1])
    np.testing.assert_allclose(result.after["train"]["moving_mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(result.after["train"]["moving_variance"], var, rtol=1e-6)
    for name in ("beta", "moving_mean", "moving_variance"):
        np.testing.assert_array_equal(result.before["test"][name], result.after["train"][name])
    assert set(result.snapshots["after_train"]) == {
        "probe/BatchNorm/beta:0", "probe/BatchNorm/moving_mean:0",
        "probe/BatchNorm/moving_variance:0"}


def test_measured_graph_facts(result):
    assert result.fused_by_phase == {"train": True, "test": True}
    # 1 - decay as a float32 constant, not the float64 the caller passed.
    assert result.update_factor == {"moving_mean": float(np.float32(0.1)),
                                    "moving_variance": float(np.float32(0.1))}
    assert result.epsilon == {"train": float(np.float32(1e-3)), "test": float(np.float32(1e-3))}
    ref = Reference(channel_inputs((2, 3, 3, 2)))
    np.testing.assert_allclose(result.batch_statistics["moving_mean"], ref.mean, rtol=1e-6)
    np.testing.assert_allclose(result.batch_statistics["moving_variance"], ref.unbiased_var,
                               rtol=1e-6)


@pytest.mark.parametrize("requested, used", [(None, True), (True, True), (False, False)])
def test_fused_actually_used_is_read_from_the_graph(requested, used):
    r = probe(decay=0.5, fused=requested, device="cpu")
    assert r.fused is used and r.fused_by_phase["test"] is used
    assert r.config.fused is requested


@pytest.mark.parametrize("fused", [True, False])
def test_epsilon_below_the_fused_minimum_is_raised_by_tf1(fused):
    """TF 1.15's tf.nn.fused_batch_norm raises epsilon to cuDNN's minimum 1.001e-5; TF 2.x
    keeps it; the non-fused path always adds what it is given."""
    graph_epsilon = 1.001e-5 if fused and backend_name() == "tf1" else 1e-7
    x = channel_inputs((1, 2, 2, 1)) / 1000.0  # small variance so epsilon matters
    r = probe(decay=1.0, inputs=x, fused=fused, epsilon=1e-7, device="cpu")
    assert r.epsilon["train"] == pytest.approx(graph_epsilon, rel=1e-6)
    # decay=1 leaves variance 1, so the test output measures the epsilon that was used.
    np.testing.assert_allclose(r.outputs["test"], x / np.sqrt(1 + graph_epsilon), rtol=2e-7)


@pytest.mark.parametrize("steps", [1, 3, 10])
@pytest.mark.parametrize("fused", [True, False])
def test_steps_follow_the_closed_form(steps, fused):
    x = channel_inputs((1, 4, 4, 3))
    r = probe(decay=0.8, inputs=x, steps=steps, fused=fused, device="cpu")
    ref = Reference(x)
    weight = 0.8 ** steps
    np.testing.assert_allclose(r.after["train"]["moving_mean"], (1 - weight) * ref.mean, rtol=1e-5)
    np.testing.assert_allclose(r.after["train"]["moving_variance"],
                               weight + (1 - weight) * ref.fed_var(fused), rtol=1e-5)


def test_result_is_immutable(result):
    with pytest.raises(FrozenInstanceError):
        result.inputs = None
    with pytest.raises(ValueError):
        result.after["train"]["moving_mean"][0] = 1.0
    with pytest.raises(ValueError):
        result.outputs["test"][0, 0, 0, 0] = 1.0
    with pytest.raises(TypeError):
        result.after["train"]["moving_mean"] = np.zeros(2)
    with pytest.raises(TypeError):
        result.snapshots["after_train"].update(beta=np.zeros(2))


def test_to_dict_is_json_and_round_trips(result):
    text = json.dumps(result.to_dict(), allow_nan=False)
    data = json.loads(text)
    np.testing.assert_array_equal(np.array(data["inputs"], np.float32), result.inputs)
    np.testing.assert_array_equal(
        np.array(data["snapshots"]["after_train"]["probe/BatchNorm/moving_mean:0"], np.float32),
        result.after["train"]["moving_mean"])
    rebuilt = ProbeResult.from_dict(data)
    assert rebuilt == result
    assert rebuilt.to_dict() == result.to_dict()
    assert data["versions"]["tensorflow"] == tf_version()
    assert data["versions"]["backend"] == backend_name()


def test_pickles(result):
    assert pickle.loads(pickle.dumps(result)) == result


def test_repr_is_short_and_html_is_a_table(result):
    text = repr(result)
    assert "\n" not in text and len(text) < 200
    assert text.startswith("<ProbeResult decay=0.9 fused=True shape=(2, 3, 3, 2) steps=2")
    page = result._repr_html_()
    assert page.count("<tr>") == 1 + 3 * 2  # header + 3 variables x 2 channels
    assert "%.7g" % result.after["train"]["moving_variance"][1] in page


def test_callers_default_graph_and_session_are_untouched():
    import tensorflow as tf

    tf1 = tf.compat.v1
    graph = tf1.Graph()
    with graph.as_default():
        v = tf1.Variable(3.0, name="users_variable")
        session = tf1.Session(graph=graph)
        session.run(v.initializer)
        with session.as_default():
            ops_before = [op.name for op in graph.get_operations()]
            probe(decay=0.5, device="cpu")
            assert tf1.get_default_graph() is graph
            assert tf1.get_default_session() is session
            assert [op.name for op in graph.get_operations()] == ops_before
            assert session.run(v) == 3.0
        session.close()
    assert tf1.get_default_session() is None


def test_runs_on_the_cpu_and_says_so():
    r = probe(decay=0.5, device="cpu")
    assert r.device.target == "/device:CPU:0"
    assert r.device.ran_on == ("/device:CPU:0",)
    assert "probe/BatchNorm/FusedBatchNormV3" in r.device.ops["train"]
    assert "probe_1/BatchNorm/FusedBatchNormV3" in r.device.ops["test"]
    assert r.device.notice is None
