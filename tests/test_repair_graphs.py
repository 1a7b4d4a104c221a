"""recalibrate() on live graphs built with each batch-norm API (contrib / tf-slim, tf.layers,
tf.keras; fused and not; a tensor switch, Keras's learning phase, a Python True): the written
statistics equal numpy's mean and population variance over the layers' inputs fetched in
training mode, batch by batch; nothing else changes; the check's errors equal the ones computed
here from the layers' inputs in inference mode. Expected values come from numpy and separate
session runs, never from the repair itself."""
import numpy as np
import pytest

from bn_decay_probe import ProbeConfigError, backend
from bn_decay_probe.repair import recalibrate, render_repair
from conftest import backend_name

ROWS = (5, 8, 3)  # unequal batches
SHAPE = (6, 6, 3)


def batches(seed=0, rows=ROWS):
    rs = np.random.RandomState(seed)
    scale = np.array([1.0, 3.0, 0.5], np.float32)
    return [(rs.normal(2.0, 1.5, (n,) + SHAPE) * scale + 10 * scale).astype(np.float32)
            for n in rows]


class Net:
    """x -> BN -> conv 3x3 (4) -> relu -> BN -> flatten -> dense (5) -> BN (2-D) -> out (NCHW: no
    conv, which TF's CPU kernels lack in that layout), with the
    layers' inputs kept for the reference; weights and moving statistics set to seeded values
    far from the data's."""

    def __init__(self, api, fused, switch, updates="inplace", data_format="NHWC"):
        self.api, self.switch_kind = api, switch
        with backend.quiet() as tf1:
            tf = backend.tensorflow()
            self.graph = tf1.Graph()
            with self.graph.as_default():
                self.x = tf1.placeholder(tf.float32, (None,) + SHAPE, name="x")
                self.switch = (tf1.placeholder_with_default(False, [], name="is_training")
                               if switch == "tensor" else None)
                training = True if switch == "python" else self.switch
                self.inputs, self.names = [], []
                h = self.x
                if data_format == "NCHW":
                    h = tf1.transpose(h, [0, 3, 1, 2])
                h = self.bn(h, training, fused, updates, "bn1", data_format)
                if data_format == "NCHW":  # TF's CPU conv has no NCHW kernel
                    h = tf1.nn.relu(h * 0.5 - 0.2)
                else:
                    h = tf1.nn.relu(backend.v1_layers().conv2d(h, 4, 3, name="conv"))
                h = self.bn(h, training, fused, updates, "bn2", data_format)
                h = backend.v1_layers().dense(backend.v1_layers().flatten(h), 5, name="dense")
                self.out = self.bn(h, training, False, updates, "bn3", "NHWC")
                self.data_format = data_format
                init = tf1.global_variables_initializer()
                self.variables = tf1.global_variables()
            self.session = tf1.Session(graph=self.graph)
            self.session.run(init)
            rs = np.random.RandomState(11)
            with self.graph.as_default():  # Variable.load assigns eagerly outside a graph
                self.randomize(rs)
            if switch == "keras_phase":
                self.switch = self.graph.get_tensor_by_name("keras_learning_phase:0")

    def randomize(self, rs):
        for variable in self.variables:
            value = self.session.run(variable)
            variable.load(rs.uniform(0.5, 2.0, np.shape(value)).astype(value.dtype)
                          if "moving_variance" in variable.op.name or "gamma" in
                          variable.op.name else rs.normal(size=np.shape(value)).astype(
                              value.dtype), self.session)

    def bn(self, h, training, fused, updates, name, data_format):
        self.inputs.append(h)
        axis = 1 if data_format == "NCHW" and h.shape.ndims == 4 else -1
        if self.api == "contrib":
            self.names.append(name)
            kwargs = {"updates_collections": None} if updates == "inplace" else {}
            return backend.batch_norm()(h, is_training=training, fused=fused, scope=name,
                                        scale=True, data_format=data_format
                                        if h.shape.ndims == 4 else "NHWC", **kwargs)
        if self.api == "layers":
            self.names.append(name)
            return backend.v1_layers().batch_normalization(h, training=training, fused=fused,
                                                           name=name, axis=axis)
        layer = backend.keras_batch_normalization()(fused=fused if fused else False, name=name,
                                                     axis=axis)
        self.names.append(name)
        return layer(h) if self.switch_kind == "keras_phase" else layer(h, training=training)

    def feed(self, batch, training):
        feed = {self.x: batch}
        if self.switch is not None:
            feed[self.switch] = training
        return feed

    def values(self):
        return dict(zip([v.op.name for v in self.variables],
                        self.session.run(self.variables)))

    def restore(self, values):
        """In-place update ops run with the training-mode runs of the reference: undo them."""
        with self.graph.as_default():
            for variable in self.variables:
                variable.load(values[variable.op.name], self.session)

    def reference(self, data):
        """Per layer: mean and population variance over every value of every batch of the
        layer's input, fetched in training mode (float64 numpy)."""
        before = self.values()
        fetched = [self.session.run(self.inputs, self.feed(b, True)) for b in data]
        self.restore(before)
        found = {}
        for index, name in enumerate(self.names):
            values = [np.asarray(batch[index], np.float64) for batch in fetched]
            channel_axis = 1 if self.data_format == "NCHW" and values[0].ndim == 4 else -1
            flat = np.concatenate([np.moveaxis(v, channel_axis, -1).reshape(
                -1, v.shape[channel_axis]) for v in values])
            found[name] = (flat.mean(axis=0), flat.var(axis=0), flat.shape[0])
        return found

    def check(self, data, epsilon=1e-3):
        """Per layer, check.py's error computed here: each batch run in inference mode, the
        layer's input fetched, its mean and population variance over every row (numpy,
        float64) against the moving statistics the variables hold."""
        before = self.values()
        fetched = [self.session.run(self.inputs, self.feed(b, False)) for b in data]
        self.restore(before)
        errors = {}
        for index, name in enumerate(self.names):
            values = [np.asarray(batch[index], np.float64) for batch in fetched]
            axis = 1 if self.data_format == "NCHW" and values[0].ndim == 4 else -1
            flat = np.concatenate([np.moveaxis(v, axis, -1).reshape(-1, v.shape[axis])
                                   for v in values])
            own_mean, own_variance = flat.mean(axis=0), flat.var(axis=0)
            mean = np.float64(before[name + "/moving_mean"])
            scale = np.sqrt(np.float64(before[name + "/moving_variance"]) + epsilon)
            errors[name] = np.sqrt(np.mean(((own_mean - mean) / scale) ** 2 + own_variance * (
                1 / scale - 1 / np.sqrt(own_variance + epsilon)) ** 2))
        return errors


CASES = [("contrib", "inplace", "tensor"), ("contrib", "collection", "tensor"),
         ("layers", "collection", "tensor"), ("keras", "layer", "tensor"),
         ("keras", "layer", "keras_phase")]


@pytest.fixture(scope="module")
def repaired():
    """(api, updates, switch, fused) -> (net, values before, reference, errors before,
    result)."""
    cache = {}

    def get(api, updates, switch, fused):
        key = (api, updates, switch, fused)
        if key not in cache:
            net = Net(api, fused, switch, updates)
            data = batches()
            before, reference, errors = net.values(), net.reference(data), net.check(data)
            result = recalibrate(net.session, data, net.x)
            cache[key] = (net, before, reference, errors, result)
        return cache[key]

    return get


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "nonfused"])
@pytest.mark.parametrize("api, updates, switch", CASES)
def test_statistics_equal_numpy_over_the_layer_inputs(repaired, api, updates, switch, fused):
    net, _, reference, _, result = repaired(api, updates, switch, fused)
    after = net.values()
    assert [layer.name for layer in result.repaired] == net.names
    for name in net.names:
        mean, variance, count = reference[name]
        written_mean = after["%s/moving_mean" % name]
        written_variance = after["%s/moving_variance" % name]
        # float32 per-batch statistics, float32 variables: relative to the spread.
        np.testing.assert_allclose(written_mean, mean, rtol=0, atol=2e-6 * np.sqrt(variance.max()) + 1e-6 * np.abs(mean).max())
        np.testing.assert_allclose(written_variance, variance, rtol=5e-6)
        layer = result.layer(name)
        assert (layer.values, layer.batches) == (count, len(ROWS))
        np.testing.assert_allclose(layer.mean_after, mean, rtol=1e-6, atol=1e-6)
    assert result.batches == len(ROWS) and result.rows == sum(ROWS)
    assert result.switches == ((net.switch.name,))
    assert result.inputs == ("x:0",)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "nonfused"])
@pytest.mark.parametrize("api, updates, switch", CASES)
def test_only_the_moving_statistics_change(repaired, api, updates, switch, fused):
    net, before, _, _, result = repaired(api, updates, switch, fused)
    after = net.values()
    assert set(after) == set(before)
    for name, value in before.items():
        layer, _, short = name.rpartition("/")
        if short in ("moving_mean", "moving_variance") and layer in net.names:
            assert not np.array_equal(after[name], value), name
            np.testing.assert_array_equal(result.layer(layer).mean_before
                                          if short == "moving_mean"
                                          else result.layer(layer).variance_before, value)
        else:
            assert after[name].tobytes() == value.tobytes(), name


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "nonfused"])
@pytest.mark.parametrize("api, updates, switch", CASES)
def test_check_is_the_one_computed_here(repaired, api, updates, switch, fused):
    net, _, _, errors_before, result = repaired(api, updates, switch, fused)
    assert (result.check.batches, result.check.rows, result.check.all_data) == (
        len(ROWS), sum(ROWS), True)
    errors_after = net.check(batches())
    for name in net.names:
        layer = result.layer(name)
        assert layer.error_before == pytest.approx(errors_before[name], rel=1e-4)
        assert layer.error_after == pytest.approx(errors_after[name], rel=1e-3, abs=1e-6)
        assert layer.error_after < 0.35 * layer.error_before
    assert result.worst_error(False)[1] == pytest.approx(max(errors_before.values()), rel=1e-4)


def test_nchw_channels_first():
    net = Net("contrib", False, "tensor", data_format="NCHW")
    data = batches(3)
    reference = net.reference(data)
    recalibrate(net.session, data, "x:0")
    after = net.values()
    for name in net.names:
        np.testing.assert_allclose(after[name + "/moving_variance"], reference[name][1],
                                   rtol=5e-6)
        np.testing.assert_allclose(after[name + "/moving_mean"], reference[name][0],
                                   rtol=2e-5, atol=1e-5)


def test_training_only_graph_has_no_switch_and_no_check():
    net = Net("contrib", True, "python")
    data = batches(4)
    reference = net.reference(data)
    result = recalibrate(net.session, data, net.x)
    assert result.switches == () and result.check is None
    assert all(layer.error_before is None for layer in result.layers)
    assert any("no training switch" in note for note in result.notes)
    assert "statistics not checked (see notes)" in result.verdict
    after = net.values()
    for name in net.names:
        np.testing.assert_allclose(after[name + "/moving_variance"], reference[name][1],
                                   rtol=5e-6)


def test_layer_selection_and_inference_only_layers():
    with backend.quiet() as tf1:
        graph = tf1.Graph()
        with graph.as_default():
            x = tf1.placeholder("float32", (None, 4, 4, 2), name="x")
            t = tf1.placeholder_with_default(False, [], name="is_training")
            h = backend.batch_norm()(x, is_training=t, scope="trained", updates_collections=None)
            h = backend.batch_norm()(h, is_training=False, scope="frozen",
                                     updates_collections=None)
            init = tf1.global_variables_initializer()
        session = tf1.Session(graph=graph)
        session.run(init)
    data = [np.random.RandomState(1).normal(size=(4, 4, 4, 2)).astype(np.float32)]
    result = recalibrate(session, data, x)
    assert [l.name for l in result.repaired] == ["trained"]
    (frozen,) = result.skipped
    assert frozen.name == "frozen" and "inference mode" in frozen.reason
    assert frozen.mean_after is None and frozen.values == 0
    assert "1 layer(s) left as they were" in result.verdict
    assert "frozen left as it was" in render_repair(result)
    with pytest.raises(ProbeConfigError, match="has no batch-norm layer 'nope'; its layers are "
                                               "frozen, trained"):
        recalibrate(session, data, x, layers=["nope"])
    selected = recalibrate(session, data, x, layers=["trained"])
    assert [l.name for l in selected.repaired] == ["trained"]
    with pytest.raises(ProbeConfigError, match="none of the graph's 2 batch-norm layer"):
        recalibrate(session, data, x, layers=["frozen"])


def value(session, name):
    """A variable's value by name (under TF 2.x the tensor "name:0" is a resource handle)."""
    with backend.quiet() as tf1:
        (variable,) = [v for v in session.graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES)
                       if v.op.name == name]
    return session.run(variable)


def two_input_graph():
    with backend.quiet() as tf1:
        graph = tf1.Graph()
        with graph.as_default():
            a = tf1.placeholder("float32", (None, 3), name="a")
            b = tf1.placeholder("float32", (None, 3), name="b")
            s = tf1.placeholder("bool", [], name="s")
            u = tf1.placeholder_with_default(False, [], name="u")
            h = backend.batch_norm()(a + b, is_training=s, scope="bn1", updates_collections=None)
            backend.batch_norm()(h, is_training=u, scope="bn2", updates_collections=None)
            init = tf1.global_variables_initializer()
        session = tf1.Session(graph=graph)
        session.run(init)
    return session, a, b, s, u


def test_two_inputs_and_two_switches():
    session, a, b, s, u = two_input_graph()
    rs = np.random.RandomState(2)
    pairs = [(rs.normal(size=(4, 3)), rs.normal(1.0, 2.0, (4, 3))) for _ in range(3)]
    with pytest.raises(ProbeConfigError, match=r"depend on 2 boolean placeholders \(s:0, u:0\)"
                                               r"; name the training switch with training"):
        recalibrate(session, pairs, [a, b])
    result = recalibrate(session, pairs, [a, b], training=[s, u], check_batches=0)
    total = np.concatenate([p + q for p, q in pairs])
    np.testing.assert_allclose(value(session, "bn1/moving_mean"), total.mean(axis=0),
                               rtol=1e-5)
    np.testing.assert_allclose(value(session, "bn1/moving_variance"), total.var(axis=0),
                               rtol=1e-5)
    assert result.check is None and result.switches == ("s:0", "u:0")
    with pytest.raises(ProbeConfigError, match="does not run in training mode"):
        recalibrate(session, pairs, [a, b], training=[s])  # u stays False: bn2 in inference


def test_input_errors():
    session, a, b, s, u = two_input_graph()
    with pytest.raises(ProbeConfigError, match="batch 0 must be a tuple of 2 arrays"):
        recalibrate(session, [np.zeros((2, 3))], [a, b], training=[s, u])
    with pytest.raises(ProbeConfigError, match="inputs nope: the graph has no tensor nope:0"):
        recalibrate(session, [np.zeros((2, 3))], "nope")
    with pytest.raises(ProbeConfigError, match="the training switch is a boolean scalar"):
        recalibrate(session, [np.zeros((2, 3))], [a, b], training=a)
    with pytest.raises(ProbeConfigError, match="batch 1 holds 1 NaN"):
        recalibrate(session, [(np.zeros((2, 3)), np.ones((2, 3))),
                              (np.zeros((2, 3)), np.array([[np.nan, 0, 0], [0, 0, 0]]))],
                    [a, b], training=[s, u])
    with pytest.raises(ProbeConfigError, match="no batch to run"):
        recalibrate(session, [], [a, b], training=[s, u])
    with pytest.raises(ProbeConfigError, match=r"check_batches must be None \(all batches\), "
                                               r"or a whole number >= 0"):
        recalibrate(session, [], [a, b], check_batches=-1)
    with pytest.raises(ProbeConfigError, match="session must be a tf.compat.v1.Session"):
        recalibrate(object(), [], [a, b])


def test_finalized_graph_and_repeated_repairs():
    net = Net("contrib", True, "tensor")
    data = batches(5)
    first = recalibrate(net.session, data, net.x)
    ops = len(net.graph.get_operations())
    second = recalibrate(net.session, data, net.x)  # reuses the ops it added
    assert len(net.graph.get_operations()) == ops
    for a, b in zip(first.repaired, second.repaired):
        np.testing.assert_array_equal(a.mean_after, b.mean_after)
    fresh = Net("contrib", True, "tensor")
    fresh.graph.finalize()
    with pytest.raises(ProbeConfigError, match="the graph is finalized"):
        recalibrate(fresh.session, data, fresh.x)


def test_tf_data_numpy_iterator():
    if backend_name() == "tf1":
        pytest.skip("TF 1.15's tf.data has no numpy iterator (as_numpy_iterator is TF >= 2.1)")
    tf = backend.tensorflow()
    net = Net("keras", True, "tensor")
    data = np.concatenate(batches(6))
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(6)
    reference = net.reference([data[i:i + 6] for i in range(0, len(data), 6)])
    result = recalibrate(net.session, dataset.as_numpy_iterator(), net.x)
    # Read once: the check ran on the batches it kept in memory, all three here.
    assert result.batches == 3 and (result.check.batches, result.check.all_data) == (3, True)
    np.testing.assert_allclose(net.values()["bn1/moving_variance"], reference["bn1"][1],
                               rtol=5e-6)
