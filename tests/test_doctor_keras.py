"""diagnose_graph on Keras in TF1 graph mode: a Keras model or its Model.fit train function in
place of a graph / train op, the learning phase never set, training=False in the train step, and
findings that agree with the values. A small conv + BatchNormalization model on a fixed batch,
momentum 0.5: after k updates the initial values weigh 0.5**k (k = 5: 0.031 <= 0.05)."""
import numpy as np
import pytest

from bn_decay_probe import ProbeConfigError
from bn_decay_probe.doctor import (KERAS_UPDATES_NOT_COLLECTED, NEVER_UPDATED, PARTLY_CONVERGED,
                                   TRAINED_IN_INFERENCE_MODE, diagnose_graph, render_diagnosis)
from real_models import _keras

X = np.random.RandomState(0).normal(2.0, 3.0, (8, 6, 6, 3)).astype(np.float32)
Y = np.arange(8) % 2
MOMENTUM, STEPS = 0.5, 5


class Net:
    """conv -> BatchNormalization -> pooled dense head, in a graph and session of its own."""

    def __init__(self, training=None):
        tf1, keras = _keras()
        self.tf1, self.keras, self.K = tf1, keras, keras.backend
        self.graph = tf1.Graph()
        with self.graph.as_default():
            self.session = tf1.Session(graph=self.graph)
            with self.session.as_default():
                inputs = keras.Input((6, 6, 3))
                x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
                self.bn = keras.layers.BatchNormalization(momentum=MOMENTUM, name="bn")
                x = self.bn(x, training=training)
                x = keras.layers.GlobalAveragePooling2D()(x)
                self.model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))

    def fit(self, steps=STEPS):
        with self.graph.as_default(), self.session.as_default():
            optimizers = getattr(self.keras.optimizers, "legacy", self.keras.optimizers)
            self.model.compile(optimizers.SGD(0.01), "sparse_categorical_crossentropy")
            self.model.fit(X, Y, batch_size=8, epochs=steps, verbose=0, shuffle=False)
        return self

    def loop(self, updates=True, feed_learning_phase=False, steps=STEPS):
        """A hand-written session.run loop counting steps in global_step."""
        tf1 = self.tf1
        with self.graph.as_default(), self.session.as_default():
            self.step = tf1.train.get_or_create_global_step()
            y = tf1.placeholder(tf1.int64, (None,))
            loss = tf1.reduce_mean(self.K.sparse_categorical_crossentropy(y, self.model.output))
            with tf1.control_dependencies(self.model.updates if updates else []):
                self.train_op = tf1.train.GradientDescentOptimizer(0.01).minimize(
                    loss, global_step=self.step)
            self.session.run(tf1.global_variables_initializer())
            feed = {self.model.input: X, y: Y}
            if feed_learning_phase:
                feed[self.K.learning_phase()] = True
            for _ in range(steps):
                self.session.run(self.train_op, feed)
        return self

    def moving(self):
        return self.session.run([self.bn.moving_mean, self.bn.moving_variance])


def codes(d):
    return {(f.layer, f.code) for f in d.findings}


@pytest.fixture(scope="module")
def fitted():
    return Net().fit()


def test_a_keras_model_after_fit_is_clean(fitted):
    mean, variance = fitted.moving()
    assert not np.allclose(mean, 0) and not np.allclose(variance, 1)  # the updates ran
    d = diagnose_graph(fitted.model)  # its graph, train function and session
    assert d.clean and d.findings == () and d.not_checked == ()
    assert (d.steps.value, d.steps.source) == (STEPS, fitted.model.optimizer.iterations.op.name)
    assert [(s.name, s.decay) for s in d.layers] == [("bn", pytest.approx(MOMENTUM))]
    # Fewer steps than the decay needs: 0.5**5 = 0.031, above a threshold of 0.03.
    assert codes(diagnose_graph(fitted.model, threshold=0.03)) == {("bn", PARTLY_CONVERGED)}


def test_model_fit_train_function_runs_the_updates(fitted):
    d = diagnose_graph(fitted.graph, fitted.model.train_function, session=fitted.session)
    assert d.clean
    # No train op given: the graph's own train step is Model.fit's train function.
    d = diagnose_graph(fitted.graph, session=fitted.session)
    assert d.clean and d.notes[0].startswith("no train_op given: taken as the train step: training")


def test_moved_statistics_get_no_never_change_finding(fitted):
    # A train op that does not run the updates, on a graph whose statistics Model.fit moved:
    # no finding says they never change; a note says something else ran them.
    with fitted.graph.as_default():
        other = fitted.tf1.train.GradientDescentOptimizer(0.1).minimize(
            fitted.tf1.reduce_sum(fitted.model.output))
    d = diagnose_graph(fitted.graph, other, session=fitted.session)
    assert d.findings == ()
    assert any("yet their statistics moved" in note for note in d.notes)
    # Without values the wiring finding stands.
    assert codes(diagnose_graph(fitted.graph, other)) == {("bn", KERAS_UPDATES_NOT_COLLECTED)}


def test_learning_phase_never_set():
    net = Net().loop(updates=True, feed_learning_phase=False)
    mean, variance = net.moving()
    # Momentum 1 in inference mode: nothing moved (or NaN on TF 1.15's fused CPU kernel).
    assert np.all((mean == 0) | np.isnan(mean)) and np.all((variance == 1) | np.isnan(variance))
    d = diagnose_graph(net.graph, net.train_op, session=net.session)
    assert codes(d) == {("bn", TRAINED_IN_INFERENCE_MODE)}
    assert "learning phase was never set" in d.findings[0].explanation
    assert "K.learning_phase(): 1" in d.findings[0].fix
    assert "switched by keras_learning_phase:0 (default False)" == d.layers[0].mode
    # Without a session the values are unknown: a note names the switch.
    notes = diagnose_graph(net.graph, net.train_op).notes
    assert any("keras_learning_phase:0 is fed True (default False)" in note for note in notes)


def test_learning_phase_fed_is_clean():
    net = Net().loop(updates=True, feed_learning_phase=True)
    d = diagnose_graph(net.graph, net.train_op, session=net.session)
    assert d.clean and (d.steps.value, d.steps.source) == (STEPS, "global_step")


def test_forgotten_updates_with_values():
    net = Net().loop(updates=False, feed_learning_phase=True)
    d = diagnose_graph(net.graph, net.train_op, session=net.session)
    assert codes(d) == {("bn", NEVER_UPDATED), ("bn", KERAS_UPDATES_NOT_COLLECTED)}


def test_training_false_in_the_train_step():
    net = Net(training=False).loop(updates=True, feed_learning_phase=True)
    assert net.model.updates == []  # training=False builds no update op (measured)
    d = diagnose_graph(net.graph, net.train_op, session=net.session)
    assert codes(d) == {("bn", TRAINED_IN_INFERENCE_MODE)}
    assert d.findings[0].fix.startswith("call the layer or model with training=True")
    assert d.layers[0].mode == "inference"
    assert max(len(line) for line in render_diagnosis(d, verbose=True).splitlines()) <= 100


def test_a_keras_model_without_weights():
    unbuilt = type("Model", (), {"layers": [], "weights": [], "get_config": None})()
    with pytest.raises(ProbeConfigError, match=r"^the Keras model has no weights yet: build it "
                                               r"\(call it on an input\) in a TF1 graph first$"):
        diagnose_graph(unbuilt)
