"""BN doctor on real models: small conv + batch-norm nets (contrib, tf.layers, tf.keras) trained a
few Adam steps on synthetic data, with and without each planted bug, saved with
tf.compat.v1.train.Saver. Expected values come from the update rule and numpy, never from the
doctor itself. Every test runs on both backends; where TF 1.15 and TF 2.x build different graphs
or files, the test says what each builds (measured). Keras 2 and tf.layers come from the backend
(backend.keras(), backend.v1_layers()): tf.keras is Keras 3 from TF 2.16."""
import functools
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from bn_decay_probe import ProbeConfigError, backend, doctor
from bn_decay_probe.doctor import (BAD_VARIANCE, KERAS_UPDATES_NOT_COLLECTED,
                                   MISSING_UPDATE_DEPENDENCY, NEVER_UPDATED, PARTLY_CONVERGED,
                                   TRAINED_IN_INFERENCE_MODE, UNSHARED_BRANCHES,
                                   diagnose_checkpoint, diagnose_graph)
from conftest import backend_name, doctor_cli, flat, too_wide

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X = np.random.RandomState(0).normal(2.0, 3.0, (8, 6, 6, 3)).astype(np.float32)
TARGET = np.random.RandomState(1).normal(size=(8, 1)).astype(np.float32)
CHANNELS = (4, 6)  # two conv + BN blocks; different widths so each layer has its own family
STEPS = 30


def update_op_names(scope):
    """The moving-mean and moving-variance update ops of a layer built outside a cond.
    TF 1.x: ref variables, and assign_sub is one AssignSub op named by the scope. TF 2.x: resource
    variables, and assign_sub adds an AssignSubVariableOp inside that scope (measured)."""
    suffix = "/AssignSubVariableOp" if backend_name() == "tf2" else ""
    return ("%s/AssignMovingAvg%s" % (scope, suffix), "%s/AssignMovingAvg_1%s" % (scope, suffix))


def flagged_update_op_names(api, scope, in_place=False):
    """The update ops of a layer whose training flag is a tensor, as the graph runs them.
    tf.layers (also contrib's UPDATE_OPS under TF 1.15, which is the tf.layers class) conds only
    the momentum and updates outside the cond. contrib's own path conds the updates themselves:
    TF 1.15 builds control flow v1, whose branch ops sit in the graph under cond_1/; TF 2.x
    builds control flow v2, one If op (cond_1) whose training-branch function holds both updates,
    so that If op is what runs them (measured)."""
    if api == "layers" or (api == "contrib" and not in_place):
        return update_op_names(scope)
    if backend_name() == "tf2":
        return ("%s/cond_1" % scope,)
    return update_op_names("%s/cond_1" % scope)


class Model:
    """A built (not yet run) graph: conv-BN-relu twice, global mean pool, dense head, Adam."""

    def __init__(self, api, decay=0.9, wiring="update_ops", test_branch=None,
                 training_flag=False, count_steps=True, collection=None, training_default=True,
                 inference=False):
        """wiring: which ops the train op depends on -- "update_ops" (the UPDATE_OPS collection),
        "layer_updates" (the tf.keras layers' own updates), "collection" (the collection named
        ``collection``, which contrib then collects its updates in), "in_place" (contrib with
        updates_collections=None, no dependency) or "none". test_branch: None, "shared" or
        "unshared" (a second, is_training=False copy of the net built without common names).
        count_steps=False leaves global_step out of minimize(), so it stays 0. training_flag:
        the training argument is a placeholder_with_default(training_default) instead of True;
        inference: the training argument is False (the train step runs inference mode)."""
        self.api, self.decay, self.collection = api, decay, collection
        with backend.quiet() as tf1:
            self.graph = tf1.Graph()
            with self.graph.as_default():
                tf1.set_random_seed(0)
                x = tf1.constant(X)
                self.keras_layers = self._keras_layers() if api == "keras" else None
                training = (tf1.placeholder_with_default(training_default, []) if training_flag
                            else not inference)
                out = self._net(tf1, x, training, wiring, shared=test_branch != "unshared")
                if test_branch:
                    self._net(tf1, x, False, wiring, shared=test_branch == "shared")
                self.step = tf1.train.get_or_create_global_step()
                dependencies = {"update_ops": tf1.get_collection(tf1.GraphKeys.UPDATE_OPS),
                                "layer_updates": [u for _, bn in self.keras_layers or []
                                                  for u in bn.updates],
                                "collection": tf1.get_collection(collection) if collection else []
                                }.get(wiring, [])
                loss = tf1.reduce_mean(tf1.square(out - TARGET))
                with tf1.control_dependencies(dependencies):
                    self.train_op = tf1.train.AdamOptimizer(0.01).minimize(
                        loss, global_step=self.step if count_steps else None)
                self.init = tf1.global_variables_initializer()
                self.saver = tf1.train.Saver()

    def _keras_layers(self):
        keras = backend.keras()
        return [(keras.layers.Conv2D(c, 3, padding="same"),
                 keras.layers.BatchNormalization(momentum=self.decay)) for c in CHANNELS]

    def _net(self, tf1, x, training, wiring, shared):
        for i, channels in enumerate(CHANNELS):
            name = "block%d/" % i if shared else None
            reuse = tf1.AUTO_REUSE if shared else None
            if self.api == "keras":
                conv, bn = self.keras_layers[i]
                x = bn(conv(x), training=training)
            else:
                x = backend.v1_layers().conv2d(x, channels, 3, padding="same", reuse=reuse,
                                      name=name and name + "conv")
                x = self._batch_norm(tf1, x, training, wiring, name and name + "bn", reuse)
            x = tf1.nn.relu(x)
        return backend.v1_layers().dense(tf1.reduce_mean(x, axis=[1, 2]), 1, name="head",
                                reuse=tf1.AUTO_REUSE)

    def _batch_norm(self, tf1, x, training, wiring, name, reuse):
        if self.api == "contrib":
            collection = (None if wiring == "in_place" else
                          self.collection or tf1.GraphKeys.UPDATE_OPS)
            return backend.batch_norm()(x, decay=self.decay, is_training=training,
                                        updates_collections=collection, scope=name, reuse=reuse)
        return backend.v1_layers().batch_normalization(x, momentum=self.decay, training=training,
                                              name=name, reuse=reuse)

    def session(self, steps=STEPS):
        with backend.quiet() as tf1:
            session = tf1.Session(graph=self.graph)
            session.run(self.init)
            for _ in range(steps):
                session.run(self.train_op)
        return session

    def save(self, directory, steps=STEPS, after=None):
        """Trains ``steps`` steps, runs ``after`` (e.g. planted assigns), saves; -> prefix."""
        with self.session(steps) as session:
            if after is not None:
                session.run(after)
            return self.saver.save(session, os.path.join(str(directory), "model.ckpt"),
                                   global_step=self.step)


@functools.lru_cache(maxsize=None)
def built(api, **options):
    """Model(api, **options), built once for the tests that only read its graph: diagnose_graph
    adds no op (test_session_adds_value_findings_with_the_graphs_decay checks), and training or
    saving in a session adds none either."""
    return Model(api, **options)


def codes(diagnosis):
    return {(f.layer, f.code) for f in diagnosis.findings}


@pytest.fixture(scope="module")
def contrib_ok(tmp_path_factory):
    """Correct contrib model: decay 0.9, train op under UPDATE_OPS, a shared test branch."""
    return Model("contrib", test_branch="shared").save(tmp_path_factory.mktemp("contrib_ok"))


@pytest.fixture(scope="module")
def contrib_never(tmp_path_factory):
    """Planted bug: the train op does not depend on UPDATE_OPS."""
    return built("contrib", wiring="none").save(tmp_path_factory.mktemp("contrib_never"))


# ------------------------------------------------------------------------- checkpoint findings

def test_correct_contrib_model_is_clean(contrib_ok):
    # 0.9**30 = 0.0424 <= 0.05: converged enough.
    d = diagnose_checkpoint(contrib_ok, decay=0.9)
    assert d.clean and d.findings == () and d.notes == ()
    assert d.global_step == STEPS and d.source == "checkpoint" and d.path == contrib_ok
    assert [(s.name, s.channels) for s in d.layers] == [("block0/bn", 4), ("block1/bn", 6)]


def test_a_directory_means_its_latest_checkpoint(contrib_ok):
    assert diagnose_checkpoint(os.path.dirname(contrib_ok), decay=0.9).path == contrib_ok
    assert diagnose_checkpoint(contrib_ok + ".index", decay=0.9).path == contrib_ok


def test_update_ops_never_run_is_never_updated(contrib_never):
    d = diagnose_checkpoint(contrib_never, decay=0.9)
    assert codes(d) == {("block0/bn", NEVER_UPDATED), ("block1/bn", NEVER_UPDATED)}
    assert not d.clean and {f.severity for f in d.findings} == {"error"}
    assert [(s.mean_range, s.variance_range) for s in d.layers] == [((0, 0), (1, 1))] * 2
    # The weights trained; only the statistics are missing: the repair, not retraining.
    assert d.findings[0].fix.endswith("recompute the statistics from data instead of training "
                                      "again (bn-decay-probe repair, given the .meta graph; or "
                                      "recalibrate() on a live session)")


def test_decay_too_close_to_one_is_partly_converged(contrib_ok):
    # Hand-computed: 0.99**30 = 0.7397; ln(0.05) / ln(0.99) = 298.07, so 299 steps are needed;
    # 0.05**(1/30) = 0.904966, so decay 0.9049 (rounded down) converges within 30 steps.
    d = diagnose_checkpoint(contrib_ok, decay=0.99)
    assert codes(d) == {("block0/bn", PARTLY_CONVERGED), ("block1/bn", PARTLY_CONVERGED)}
    finding = d.findings[0]
    assert finding.severity == "warning"
    assert finding.explanation.startswith("0.99**30 = 0.7397 of each moving statistic")
    assert finding.fix == ("train to at least 299 steps at decay 0.99 (decay**steps <= 0.05), or "
                           "use a decay of at most 0.9049 for 30 steps; or recompute the "
                           "statistics from data without training (bn-decay-probe repair)")
    assert diagnose_checkpoint(contrib_ok, decay=0.99, threshold=0.75).clean
    assert codes(diagnose_checkpoint(contrib_ok, decay=0.9, threshold=0.04)) == codes(d)


def test_decay_is_read_from_the_meta_graph(contrib_ok):
    # tf.train.Saver wrote model.ckpt-30.meta: each layer's decay 0.9 is a constant there.
    d = diagnose_checkpoint(contrib_ok)
    assert d.clean and d.status == "clean" and d.graph_source == contrib_ok + ".meta"
    assert [(s.decay, s.decay_source) for s in d.layers] == [(pytest.approx(0.9), "graph")] * 2
    assert d.steps.source == "global_step" and d.global_step == STEPS
    assert codes(diagnose_checkpoint(contrib_ok, decay=0.99)) == {
        ("block0/bn", PARTLY_CONVERGED), ("block1/bn", PARTLY_CONVERGED)}  # --decay overrides


def test_without_meta_graph_convergence_is_not_checked(contrib_ok, tmp_path):
    prefix = copy_checkpoint(contrib_ok, tmp_path)  # .index and .data only
    d = diagnose_checkpoint(prefix)
    assert not d.clean and d.findings == () and d.status == "incomplete"
    assert d.not_checked == ("convergence (PARTLY_CONVERGED) of 2 layer(s): decay unknown (no "
                             ".meta graph beside the checkpoint); give --decay D",)
    assert [s.decay_source for s in d.layers] == ["unknown"] * 2
    assert diagnose_checkpoint(prefix, decay=0.9).clean


def test_global_step_never_counted_skips_convergence(tmp_path):
    prefix = Model("contrib", count_steps=False).save(tmp_path)
    d = diagnose_checkpoint(prefix, decay=0.999)
    assert d.status == "incomplete" and d.global_step == 0 and d.findings == ()
    assert d.not_checked == ("convergence (PARTLY_CONVERGED) of 2 layer(s): the step counter "
                             "global_step is 0 although statistics moved (the optimizer did not "
                             "count steps); give --steps N",)
    # --steps overrides: 0.999**30 = 0.97 > 0.05.
    d = diagnose_checkpoint(prefix, decay=0.999, steps=STEPS)
    assert d.steps.text() == "steps 30 (given)"
    assert {code for _, code in codes(d)} == {PARTLY_CONVERGED}


@pytest.mark.parametrize("api, copies", [
    ("layers", {"batch_normalization_2": "batch_normalization",
                "batch_normalization_3": "batch_normalization_1"}),
    ("contrib", {"BatchNorm_2": "BatchNorm", "BatchNorm_3": "BatchNorm_1"}),
])
def test_unshared_test_branch(tmp_path, api, copies):
    prefix = Model(api, test_branch="unshared").save(tmp_path)
    d = diagnose_checkpoint(prefix, decay=0.9)
    assert codes(d) == {(copy, UNSHARED_BRANCHES) for copy in copies}
    for finding in d.findings:
        assert finding.detail == "copy of: %s" % copies[finding.layer]


def test_shared_tf_layers_branches_are_clean(tmp_path):
    assert diagnose_checkpoint(Model("layers", test_branch="shared").save(tmp_path),
                               decay=0.9).clean


def test_keras_updates_not_collected_leave_checkpoint_never_updated(tmp_path):
    d = diagnose_checkpoint(built("keras").save(tmp_path), decay=0.9)
    assert codes(d) == {("batch_normalization", NEVER_UPDATED),
                        ("batch_normalization_1", NEVER_UPDATED)}


def test_keras_with_its_updates_run_is_clean(tmp_path):
    assert diagnose_checkpoint(built("keras", wiring="layer_updates").save(tmp_path),
                               decay=0.9).clean


def test_bad_variance(tmp_path):
    model = Model("contrib", test_branch="shared")
    nan, inf = float("nan"), float("inf")
    with backend.quiet() as tf1, model.graph.as_default():
        variables = {v.op.name: v for v in tf1.global_variables()}
        plant = [variables["block0/bn/moving_variance"].assign([-0.5, 0.0, nan, inf]),
                 variables["block0/bn/moving_mean"].assign([0.1, nan, -inf, 0.2]),
                 variables["block1/bn/moving_variance"].assign([0.0, 0.0, 1.5, 2.0, 3.0, 4.0])]
    d = diagnose_checkpoint(model.save(tmp_path, after=plant), decay=0.9)
    assert codes(d) == {("block0/bn", BAD_VARIANCE), ("block1/bn", BAD_VARIANCE)}
    broken, zero = d.findings
    assert (broken.severity, zero.severity) == ("error", "warning")
    assert broken.detail == ("moving_variance has 1 negative, 1 zero, 1 NaN, 1 inf; "
                             "moving_mean has 1 NaN, 1 inf of 4 channels")
    assert "such values come from training in inference mode" in broken.fix
    assert zero.detail == "moving_variance has 2 zero of 6 channels"
    layer = d.to_dict()["layers"][0]
    # Ranges over the finite values; NaN and infinities counted, JSON-safe.
    assert layer["moving_variance"] == {"min": -0.5, "max": 0.0, "nan": 1, "inf": 1, "-inf": 0}
    assert layer["moving_mean"] == {"min": pytest.approx(0.1), "max": pytest.approx(0.2),
                                    "nan": 1, "inf": 0, "-inf": 1}
    assert d.layers[0].variance.text() == "[-0.5, 0] 1 NaN 1 inf"
    assert d.layers[0].mean.text() == "[0.1, 0.2] 1 NaN 1 -inf"
    json.dumps(d.to_dict(), allow_nan=False)
    text = doctor.render_diagnosis(d, verbose=True)
    assert "[-0.5, 0] 1 NaN 1 inf" in text and "[0.1, 0.2] 1 NaN 1 -inf" in text


@pytest.mark.parametrize("decay, steps", [(0.8, 7), (0.999, 1)])
def test_ranges_follow_the_update_rule(tmp_path, decay, steps):
    # BN straight on a fixed batch: after k steps from (0, 1), moving_mean = (1 - d**k) * mu and
    # moving_variance = d**k + (1 - d**k) * var, var Bessel-corrected on the fused path.
    # One step at decay 0.999 moves them by only ~1e-3: still not NEVER_UPDATED.
    with backend.quiet() as tf1:
        graph = tf1.Graph()
        with graph.as_default():
            y = backend.batch_norm()(tf1.constant(X), decay=decay, is_training=True,
                                     updates_collections=tf1.GraphKeys.UPDATE_OPS)
            step = tf1.train.get_or_create_global_step()
            with tf1.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
                train_op = tf1.train.AdamOptimizer(0.01).minimize(
                    tf1.reduce_mean(tf1.square(y - 1.0)), global_step=step)
            init, saver = tf1.global_variables_initializer(), tf1.train.Saver()
        with tf1.Session(graph=graph) as session:
            session.run(init)
            for _ in range(steps):
                session.run(train_op)
            prefix = saver.save(session, str(tmp_path / "bn"), global_step=step)
    flat = X.astype(np.float64).reshape(-1, 3)
    # With UPDATE_OPS, contrib (through the tf.layers class) computes 1 - decay in float32
    # from a float32 decay (measured: 1 - 0.999f = 0.00099998713, 1.3e-5 below 0.001).
    factor = float(np.float32(1.0) - np.float32(decay))
    weight = (1.0 - factor) ** steps
    mean = (1 - weight) * flat.mean(axis=0)
    variance = weight + (1 - weight) * flat.var(axis=0, ddof=1)
    d = diagnose_checkpoint(prefix, decay=decay)
    assert codes(d) == {("BatchNorm", PARTLY_CONVERGED)}  # 0.8**7 = 0.21, 0.999**1 > 0.05
    (layer,) = d.layers
    assert layer.name == "BatchNorm" and layer.channels == 3
    np.testing.assert_allclose(layer.mean_range, (mean.min(), mean.max()), rtol=1e-5)
    np.testing.assert_allclose(layer.variance_range, (variance.min(), variance.max()), rtol=1e-5)


def test_keras_save_weights_checkpoint(tmp_path):
    # Object-based keys (".../.ATTRIBUTES/VARIABLE_VALUE"), no global_step.
    keras = backend.keras()
    with backend.quiet() as tf1:
        graph = tf1.Graph()
        with graph.as_default(), tf1.Session(graph=graph).as_default() as session:
            model = keras.Sequential([keras.layers.Conv2D(4, 3),
                                      keras.layers.BatchNormalization()])
            model(tf1.constant(X))
            session.run(tf1.global_variables_initializer())
            model.save_weights(str(tmp_path / "weights"))
    # The key Keras gives the BN layer: Keras 2.x's Sequential names the layers that have
    # weights "layer_with_weights-N" in its object graph, TF 1.15's tf.keras "layer-N" (measured).
    key = "layer_with_weights-1" if backend_name() == "tf2" else "layer-1"
    d = diagnose_checkpoint(str(tmp_path / "weights"), decay=0.99)
    # The layer is named by its variables' own name, which the object graph keeps (a
    # Sequential called on a tensor scopes them under its own name, measured).
    assert codes(d) == {("sequential/batch_normalization", NEVER_UPDATED)}
    assert d.layers[0].checkpoint_name == key
    assert d.global_step is None and d.steps.text() == "steps unknown"


# ------------------------------------------------------------------------------------- bad input

def write_garbage(path):
    size = os.path.getsize(path)
    with open(path, "wb") as handle:
        handle.write(np.random.RandomState(2).bytes(size))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ProbeConfigError, match=r"^checkpoint path must be a string or "
                                               r"os.PathLike, got 5$"):
        diagnose_checkpoint(5)
    missing = str(tmp_path / "nope.ckpt-5")
    with pytest.raises(ProbeConfigError) as error:
        diagnose_checkpoint(missing)
    assert str(error.value) == (
        "checkpoint %s not found: give a checkpoint prefix (such as model.ckpt-1000, which has a "
        ".index file) or a directory holding a 'checkpoint' file" % missing)


def test_directory_without_checkpoint(tmp_path):
    with pytest.raises(ProbeConfigError) as error:
        diagnose_checkpoint(str(tmp_path))
    assert str(error.value) == (
        "no checkpoint in directory %s: it has no readable 'checkpoint' file naming an existing "
        "checkpoint; give a checkpoint prefix or a directory written by tf.train.Saver"
        % tmp_path)


def copy_checkpoint(prefix, directory):
    copy = str(directory / os.path.basename(prefix))
    for suffix in (".index", ".data-00000-of-00001"):
        with open(prefix + suffix, "rb") as source, open(copy + suffix, "wb") as target:
            target.write(source.read())
    return copy


def test_corrupt_index(tmp_path, contrib_never):
    prefix = copy_checkpoint(contrib_never, tmp_path)
    write_garbage(prefix + ".index")
    with pytest.raises(ProbeConfigError) as error:
        diagnose_checkpoint(prefix)
    assert str(error.value) == (
        "checkpoint %s cannot be read: %s.index is not a readable checkpoint index (not an "
        "sstable (bad magic number)); the file is damaged, or not one tf.train.Saver wrote"
        % (prefix, prefix))


def test_corrupt_data(tmp_path, contrib_never):
    prefix = copy_checkpoint(contrib_never, tmp_path)
    write_garbage(prefix + ".data-00000-of-00001")
    # TF 2.13's reader names the bundle and shard before the checksum error (measured:
    # "TensorBundle at PREFIX shard 0 (24 bytes): Checksum does not match: stored ..."); TF 1.15
    # starts with "Checksum does not match".
    where = (r"TensorBundle at %s shard 0 \(\d+ bytes\): " % re.escape(prefix)
             if backend_name() == "tf2" else "")
    with pytest.raises(ProbeConfigError,
                       match=r"^checkpoint %s cannot be read: its data file %s is damaged or "
                             r"does not match its index \(%sChecksum does not match: .*\)$"
                             % (re.escape(prefix), re.escape(prefix + ".data-00000-of-00001"),
                                where)):
        diagnose_checkpoint(prefix)


def test_a_file_that_is_no_checkpoint(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a checkpoint\n")
    with pytest.raises(ProbeConfigError, match=r"^checkpoint %s cannot be read: %s.index is "
                                               r"not a readable checkpoint index \(.*file is "
                                               r"too short to be an sstable" % (path, path)):
        diagnose_checkpoint(str(path))


def test_checkpoint_without_batch_norm(tmp_path):
    with backend.quiet() as tf1:
        graph = tf1.Graph()
        with graph.as_default():
            tf1.Variable(np.ones(3, np.float32), name="dense/kernel")
            init, saver = tf1.global_variables_initializer(), tf1.train.Saver()
        with tf1.Session(graph=graph) as session:
            session.run(init)
            prefix = saver.save(session, str(tmp_path / "plain"))
    with pytest.raises(ProbeConfigError) as error:
        diagnose_checkpoint(prefix)
    assert str(error.value) == ("checkpoint %s has no batch-norm layer: no pair of variables "
                                "named .../moving_mean and .../moving_variance" % prefix)


@pytest.mark.parametrize("kwargs, message", [
    ({"decay": 1.5}, "decay must be a number in [0, 1], got 1.5"),
    ({"threshold": 0}, "threshold must be a number in (0, 1] (the largest weight decay**steps "
                       "left on the initial values), got 0"),
    ({"threshold": "0.1"}, "threshold must be a number in (0, 1] (the largest weight "
                           "decay**steps left on the initial values), got '0.1'"),
])
def test_bad_options(contrib_ok, kwargs, message):
    with pytest.raises(ProbeConfigError) as error:
        diagnose_checkpoint(contrib_ok, **kwargs)
    assert str(error.value) == message


# ------------------------------------------------------------------------------------ graph mode

@pytest.mark.parametrize("api", ["contrib", "layers"])
def test_train_op_without_update_ops(api):
    model = built(api, wiring="none")
    d = diagnose_graph(model.graph, model.train_op)
    assert codes(d) == {("block0/bn", MISSING_UPDATE_DEPENDENCY),
                        ("block1/bn", MISSING_UPDATE_DEPENDENCY)}
    assert d.findings[0].detail == "update ops: " + ", ".join(update_op_names("block0/bn"))
    assert {s.kind for s in d.layers} == {"contrib" if api == "contrib" else "tf.layers"}


def test_train_op_under_update_ops_is_clean():
    model = built("contrib")
    d = diagnose_graph(model.graph, model.train_op)
    assert d.findings == ()
    # Without a session the values are not checked: incomplete, never "clean".
    assert d.status == "incomplete" and not d.clean
    assert d.not_checked == ("the values (no session given): NEVER_UPDATED, UNSHARED_BRANCHES, "
                             "BAD_VARIANCE, TRAINED_IN_INFERENCE_MODE, PARTLY_CONVERGED; give a "
                             "session whose variables hold the trained values",)
    # Clean because the update ops run, not because none was found.
    assert [s.update_ops for s in d.layers] == [update_op_names("block0/bn"),
                                                update_op_names("block1/bn")]
    # As session.run takes it; under TF 2.x global_step is a resource variable.
    assert diagnose_graph(model.graph, [model.train_op, model.step]).findings == ()
    assert codes(diagnose_graph(model.graph, model.step)) == {
        ("block0/bn", MISSING_UPDATE_DEPENDENCY), ("block1/bn", MISSING_UPDATE_DEPENDENCY)}


def test_updates_in_place_need_no_dependency():
    model = built("contrib", wiring="in_place")
    d = diagnose_graph(model.graph, model.train_op)
    assert d.findings == () and d.layers[0].update_ops == update_op_names("block0/bn")
    assert diagnose_graph(model.graph).findings == ()  # not in UPDATE_OPS, but in place
    # Even a train op that does not run the layers' output cannot miss them: in place, they run
    # whenever the output does.
    assert diagnose_graph(model.graph, model.step).findings == ()


def test_updates_in_another_collection():
    # contrib's own update path on both backends (tf_slim and TF 1.15's contrib hand only
    # `updates_collections is UPDATE_OPS` to the tf.layers class).
    ran = Model("contrib", wiring="collection", collection="bn_updates")
    assert diagnose_graph(ran.graph, ran.train_op).findings == ()
    assert ran.graph.get_collection("bn_updates") != []
    # Without a train op only UPDATE_OPS is trusted; and a train op that forgets the collection.
    # Without a train op, the graph's own train step (it runs the collection).
    assert diagnose_graph(ran.graph).findings == ()
    forgot = Model("contrib", wiring="none", collection="bn_updates")
    for d in (diagnose_graph(forgot.graph), diagnose_graph(forgot.graph, forgot.train_op)):
        assert codes(d) == {("block0/bn", MISSING_UPDATE_DEPENDENCY),
                            ("block1/bn", MISSING_UPDATE_DEPENDENCY)}


def test_without_train_op_the_graphs_train_step_is_taken():
    model = Model("contrib", wiring="none")
    with backend.quiet() as tf1:
        model.graph.add_to_collection(tf1.GraphKeys.UPDATE_OPS, "no op")  # ignored, not fatal
    # The graph's one op that applies gradients and that nothing runs: minimize()'s "Adam".
    d = diagnose_graph(model.graph)
    assert d.notes[0] == "no train_op given: taken as the train step: Adam"
    assert codes(d) == {("block0/bn", MISSING_UPDATE_DEPENDENCY),
                        ("block1/bn", MISSING_UPDATE_DEPENDENCY)}
    assert "nor run by the graph's train step" in d.findings[0].explanation


def test_without_any_train_step_update_ops_collection_is_trusted():
    with backend.quiet() as tf1:
        graph = tf1.Graph()
        with graph.as_default():
            backend.batch_norm()(tf1.constant(X), is_training=True,
                                 updates_collections=tf1.GraphKeys.UPDATE_OPS)
    d = diagnose_graph(graph)
    assert d.findings == () and d.layers[0].update_ops == update_op_names("BatchNorm")
    assert d.notes[0] == ("no train_op given: taken as the train step: the ops in UPDATE_OPS "
                          "(the graph has no op that applies gradients)")


def test_keras_updates_not_collected():
    model = built("keras")  # train op under UPDATE_OPS, which keras leaves empty
    with backend.quiet() as tf1, model.graph.as_default():
        assert tf1.get_collection(tf1.GraphKeys.UPDATE_OPS) == []  # measured, not assumed
    expected = {("batch_normalization", KERAS_UPDATES_NOT_COLLECTED),
                ("batch_normalization_1", KERAS_UPDATES_NOT_COLLECTED)}
    assert codes(diagnose_graph(model.graph, model.train_op)) == expected
    assert codes(diagnose_graph(model.graph)) == expected
    assert {s.kind for s in diagnose_graph(model.graph).layers} == {"tf.keras"}


def test_keras_updates_run_by_the_train_op_are_clean():
    model = built("keras", wiring="layer_updates")
    assert diagnose_graph(model.graph, model.train_op).findings == ()


def test_keras_updates_collected_but_not_run():
    model = Model("keras", wiring="none")
    with backend.quiet() as tf1, model.graph.as_default():
        for _, bn in model.keras_layers:
            for update in bn.updates:
                tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS, update)
    expected = {("batch_normalization", MISSING_UPDATE_DEPENDENCY),
                ("batch_normalization_1", MISSING_UPDATE_DEPENDENCY)}
    assert codes(diagnose_graph(model.graph, model.train_op)) == expected
    assert codes(diagnose_graph(model.graph)) == expected  # the graph's train step: the same


def test_session_adds_value_findings_with_the_graphs_decay():
    # momentum 0.9 read from the graph; 0.9**5 = 0.5905 > 0.05.
    model = Model("keras", wiring="layer_updates")
    model.graph.finalize()  # the doctor must not add ops to the user's graph
    with model.session(steps=5) as session:
        d = diagnose_graph(model.graph, model.train_op, session=session)
    assert d.global_step == 5 and [s.decay for s in d.layers] == [pytest.approx(0.9)] * 2
    assert codes(d) == {("batch_normalization", PARTLY_CONVERGED),
                        ("batch_normalization_1", PARTLY_CONVERGED)}
    assert d.findings[0].explanation.startswith("0.9**5 = 0.5905 ")


def test_session_on_the_planted_keras_bug_shows_both_causes():
    model = built("keras")
    with model.session(steps=3) as session:
        d = diagnose_graph(model.graph, model.train_op, session=session)
    assert codes(d) == {(layer, code) for layer in ("batch_normalization",
                                                    "batch_normalization_1")
                        for code in (KERAS_UPDATES_NOT_COLLECTED, NEVER_UPDATED)}


@pytest.mark.parametrize("api", ["contrib", "layers"])
def test_decay_behind_a_training_flag_is_read(api):
    model = built(api, decay=0.97, training_flag=True)
    d = diagnose_graph(model.graph, model.train_op)
    assert [s.decay for s in d.layers] == [pytest.approx(0.97)] * 2
    assert d.findings == ()
    assert d.layers[1].update_ops == flagged_update_op_names(api, "block1/bn")


@pytest.mark.parametrize("api", ["contrib", "layers"])
def test_update_ops_behind_a_training_flag_not_run(api):
    model = built(api, decay=0.97, training_flag=True, wiring="none")
    d = diagnose_graph(model.graph, model.train_op)
    assert codes(d) == {("block0/bn", MISSING_UPDATE_DEPENDENCY),
                        ("block1/bn", MISSING_UPDATE_DEPENDENCY)}
    assert d.findings[0].detail == "update ops: " + ", ".join(
        flagged_update_op_names(api, "block0/bn"))
    assert [s.decay for s in d.layers] == [pytest.approx(0.97)] * 2
    # The graph's own train step (minimize()'s op) does not run them either.
    assert codes(diagnose_graph(model.graph)) == codes(d)


def test_updates_in_place_behind_a_training_flag():
    model = built("contrib", decay=0.97, training_flag=True, wiring="in_place")
    d = diagnose_graph(model.graph, model.step)  # a train op that does not run them
    assert d.findings == ()
    assert [s.update_ops for s in d.layers] == [
        flagged_update_op_names("contrib", "block%d/bn" % i, in_place=True) for i in (0, 1)]
    assert [s.decay for s in d.layers] == [pytest.approx(0.97)] * 2


@pytest.mark.parametrize("api", ["contrib", "layers"])
def test_training_switch_left_at_default_false(api):
    # The updates run, but behind a cond on a placeholder_with_default(False) never fed: decay 1.
    model = Model(api, decay=0.97, training_flag=True, training_default=False)
    with model.session(steps=3) as session:
        d = diagnose_graph(model.graph, model.train_op, session=session)
    assert codes(d) == {("block0/bn", TRAINED_IN_INFERENCE_MODE),
                        ("block1/bn", TRAINED_IN_INFERENCE_MODE)}
    assert "kept its default False" in d.findings[0].explanation
    assert d.layers[0].mode.startswith("switched by PlaceholderWithDefault")
    # Fed True it trains (0.97**3 = 0.91: not converged, but moved).
    with backend.quiet() as tf1:
        switch = model.graph.get_tensor_by_name("PlaceholderWithDefault:0")
        with tf1.Session(graph=model.graph) as session:
            session.run(model.init)
            for _ in range(3):
                session.run(model.train_op, {switch: True})
            d = diagnose_graph(model.graph, model.train_op, session=session)
    assert {code for _, code in codes(d)} == {PARTLY_CONVERGED}


@pytest.mark.parametrize("api", ["contrib", "layers", "keras"])
def test_inference_mode_in_the_train_step(api, tmp_path):
    # is_training=False / training=False: no update op; the train step normalizes with (0, 1).
    model = Model(api, inference=True, wiring="layer_updates" if api == "keras" else "update_ops")
    with model.session(steps=3) as session:
        d = diagnose_graph(model.graph, model.train_op, session=session)
    names = ["batch_normalization", "batch_normalization_1"] if api == "keras" else \
        ["block0/bn", "block1/bn"]
    assert codes(d) == {(name, TRAINED_IN_INFERENCE_MODE) for name in names}
    assert [s.mode for s in d.layers] == ["inference"] * 2
    fix = {"contrib": "build the training net with is_training=True",
           "layers": "call tf.layers.batch_normalization with training=True",
           "keras": "call the layer or model with training=True"}[api]
    assert d.findings[0].fix.startswith(fix)
    # The checkpoint with its .meta graph tells the same.
    prefix = model.save(tmp_path, steps=3)
    assert codes(diagnose_checkpoint(prefix)) == codes(d)


def test_slim_create_train_op_fills_train_op_collection():
    with backend.quiet() as tf1:
        graph = tf1.Graph()
        with graph.as_default():
            y = backend.batch_norm()(tf1.constant(X), is_training=True,
                                     updates_collections=tf1.GraphKeys.UPDATE_OPS)
            loss = tf1.reduce_mean(tf1.square(y - 1.0))
            learning = (backend.tensorflow().contrib.slim.learning if backend_name() == "tf1"
                        else __import__("tf_slim").learning)
            # Runs UPDATE_OPS itself and returns the loss under its dependencies; it and the
            # optimizer's apply op (apply_gradients adds it) are in TRAIN_OP (measured).
            train_op = learning.create_train_op(loss, tf1.train.GradientDescentOptimizer(0.1))
            assert [t.name for t in tf1.get_collection(tf1.GraphKeys.TRAIN_OP)] == [
                "GradientDescent", train_op.name]
    d = diagnose_graph(graph)
    # The train op runs the apply op: one train step, not two.
    assert d.findings == () and d.notes == ("no train_op given: taken as the train step: %s"
                                            % train_op.op.name,)


def imported(model):
    """The model's graph through a MetaGraphDef, as tf.train.import_meta_graph gives it back:
    no Python layers, no record of get_variable and, under TF 2.x, cond branches kept only as
    FunctionDefs (no function graph). -> (graph, train_op, global_step)"""
    with backend.quiet() as tf1:
        with model.graph.as_default():
            meta = tf1.train.export_meta_graph()
        graph = tf1.Graph()
        with graph.as_default():
            tf1.train.import_meta_graph(meta)
            return graph, graph.get_operation_by_name(model.train_op.name), \
                tf1.train.get_global_step()


@pytest.mark.parametrize("api, wiring", [("contrib", "none"), ("layers", "none"),
                                         ("contrib", "in_place")])
def test_imported_graph_behind_a_training_flag(api, wiring):
    graph, train_op, step = imported(built(api, decay=0.97, training_flag=True, wiring=wiring))
    d = diagnose_graph(graph, step if wiring == "in_place" else train_op)
    assert [s.update_ops for s in d.layers] == [
        flagged_update_op_names(api, "block%d/bn" % i, in_place=wiring == "in_place")
        for i in (0, 1)]
    assert [s.decay for s in d.layers] == [pytest.approx(0.97)] * 2
    assert {s.kind for s in d.layers} == {"contrib" if api == "contrib" else "tf.layers"}
    if wiring == "in_place":
        assert d.findings == ()
    else:
        assert codes(d) == {("block0/bn", MISSING_UPDATE_DEPENDENCY),
                            ("block1/bn", MISSING_UPDATE_DEPENDENCY)}
        assert codes(diagnose_graph(graph)) == codes(d)  # the graph's train step: the same


def test_imported_keras_graph():
    graph, train_op, _ = imported(Model("keras", decay=0.97, training_flag=True))
    d = diagnose_graph(graph, train_op)
    assert codes(d) == {("batch_normalization", KERAS_UPDATES_NOT_COLLECTED),
                        ("batch_normalization_1", KERAS_UPDATES_NOT_COLLECTED)}
    assert [s.decay for s in d.layers] == [pytest.approx(0.97)] * 2
    assert {s.kind for s in d.layers} == {"tf.keras"}


def test_bad_graph_arguments():
    model, other = built("contrib"), built("layers")
    with backend.quiet() as tf1:
        cases = [((object(),), r"^graph must be a tf.Graph or a Keras model, got <object object"),
                 ((model.graph, other.train_op), r"^train_op Adam belongs to another graph"),
                 ((model.graph, "train"), r"^train_op must be a tf.Operation, tf.Tensor, "
                                          r"tf.Variable, a Keras train function or a list "
                                          r"of them, got 'train'$"),
                 ((model.graph, None, tf1.Session(graph=other.graph)),
                  r"^session must be a tf.compat.v1.Session on graph")]
        for args, pattern in cases:
            with pytest.raises(ProbeConfigError, match=pattern):
                diagnose_graph(*args)
        with tf1.Session(graph=model.graph) as session:  # variables never initialized
            with pytest.raises(ProbeConfigError, match=r"^session could not read the moving "
                                                       r"statistics \(.*\); initialize"):
                diagnose_graph(model.graph, session=session)


# ----------------------------------------------------------------------------------- rendering

def test_render_groups_findings_under_the_verdict(contrib_never):
    text = doctor.render_diagnosis(diagnose_checkpoint(contrib_never, decay=0.9))
    lines = text.splitlines()
    assert lines[0] == "FINDINGS: 2 finding(s) in 2 batch-norm layer(s): NEVER_UPDATED x2"
    # The context parts in order, on lines of 100 columns ("|" between two on one line).
    context = flat("\n".join(lines[1:lines.index("")])).replace(" | ", " ")
    assert context == flat("checkpoint %s (with its .meta graph) steps 30 (from global_step) "
                           "decay 0.9 given threshold 0.05" % contrib_never)
    assert "NEVER_UPDATED (error), 2 layer(s): all" in lines
    assert text.count("fix: ") == 1 and text.count("moving_mean is all 0") == 1  # one group
    # From the .meta graph: its train step (minimize()'s op) does not run the update ops.
    assert "the train step does not run the update ops" in " ".join(text.split())
    assert too_wide(text) == []


def test_verbose_adds_the_per_layer_table(contrib_never):
    lines = doctor.render_diagnosis(diagnose_checkpoint(contrib_never), verbose=True).splitlines()
    start = [line.split()[:1] for line in lines].index(["layer"])
    assert lines[start].split() == ["layer", "ch", "decay", "moving_mean", "moving_variance",
                                    "finding"]
    # g: decay from the graph; every name whole.
    assert lines[start + 1].split() == ["block0/bn", "4", "0.9", "g", "[0,", "0]", "[1,", "1]",
                                        NEVER_UPDATED]
    assert lines[start + 2].split()[:2] == ["block1/bn", "6"]


# ----------------------------------------------------------------------------- command line

def test_cli_clean_checkpoint_exits_0_quietly(contrib_ok):
    out = doctor_cli(os.path.dirname(contrib_ok), "--decay", "0.9")
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.splitlines()[0] == "clean: no finding in 2 batch-norm layer(s)"


def test_cli_incomplete_exits_3(contrib_ok, tmp_path):
    prefix = copy_checkpoint(contrib_ok, tmp_path)  # no .meta: decay unknown
    out = doctor_cli(prefix)
    assert (out.returncode, out.stderr) == (3, "")
    assert out.stdout.splitlines()[:3] == [
        "INCOMPLETE: no finding in 2 batch-norm layer(s), but not everything was checked",
        "not checked: convergence (PARTLY_CONVERGED) of 2 layer(s): decay unknown (no .meta "
        "graph beside the",
        "  checkpoint); give --decay D"]
    assert doctor_cli(prefix, "--decay", "0.9").returncode == 0
    assert doctor_cli(prefix, "--decay", "0.9", "--steps", "3").returncode == 1


def test_cli_findings_exit_1_with_json(contrib_never, tmp_path):
    out = doctor_cli(contrib_never, "--json", "-")
    assert (out.returncode, out.stderr) == (1, "")
    document = json.loads(out.stdout)  # stdout is only JSON
    assert document["clean"] is False and document["global_step"] == STEPS
    assert [(f["layer"], f["code"]) for f in document["findings"]] == [
        ("block0/bn", NEVER_UPDATED), ("block1/bn", NEVER_UPDATED)]
    assert document["layers"][0]["moving_mean"] == {"min": 0, "max": 0, "nan": 0, "inf": 0,
                                                     "-inf": 0}
    assert document["status"] == "findings" and document["steps"]["source"] == "global_step"
    report = tmp_path / "report.json"
    out = doctor_cli(contrib_never, "--decay", "0.99", "--threshold", "0.5", "--json",
                     str(report))
    assert out.returncode == 1 and out.stdout.startswith("FINDINGS: ")
    assert json.loads(report.read_text())["threshold"] == 0.5


def test_cli_corrupt_checkpoint_exits_2(tmp_path):
    (tmp_path / "model.ckpt-1.index").write_bytes(b"\x00garbage" * 8)
    (tmp_path / "model.ckpt-1.data-00000-of-00001").write_bytes(b"\x00garbage" * 8)
    out = doctor_cli(str(tmp_path / "model.ckpt-1"))
    assert (out.returncode, out.stdout) == (2, "")
    prefix = tmp_path / "model.ckpt-1"
    assert out.stderr == ("bn-decay-probe doctor: error: checkpoint %s cannot be read: %s.index is "
                          "not a readable checkpoint index (not an sstable (bad magic number)); "
                          "the file is damaged, or not one tf.train.Saver wrote\n"
                          % (prefix, prefix))


def test_cli_output_into_a_closed_pipe(contrib_never):
    # A reader that stops early (| head -n 1, here | true, which reads nothing and exits before
    # the doctor writes) gets no BrokenPipeError traceback on stderr; the status stays 1.
    script = os.path.join(os.path.dirname(sys.executable), "bn-decay-probe")
    out = subprocess.run(["bash", "-c", "'%s' doctor '%s' --verbose | true; echo ${PIPESTATUS[0]}"
                          % (script, contrib_never)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert (out.stdout, out.stderr) == ("1\n", "")


@pytest.mark.parametrize("args, message", [
    (["/no/such/model.ckpt-9"], "checkpoint /no/such/model.ckpt-9 not found: give a checkpoint "
     "prefix (such as model.ckpt-1000, which has a .index file) or a directory holding a "
     "'checkpoint' file"),
    (["x", "--decay", "1.5"], "decay must be a number in [0, 1], got 1.5"),
    (["x", "--threshold", "2"], "threshold must be a number in (0, 1] (the largest weight "
     "decay**steps left on the initial values), got 2.0"),
    (["x", "--decay", "abc"], "argument --decay: invalid float value: 'abc' (see --help)"),
    (["x", "--steps", "-1"], "steps must be a whole number >= 0 (the train steps that ran), "
     "got -1"),
    (["x", "--steps", "2.5"], "argument --steps: invalid int value: '2.5' (see --help)"),
    ([], "the following arguments are required: PATH (see --help)"),
    (["x", "--json", "/"], "--json / is a directory; give a file path or -"),
])
def test_cli_bad_input_exits_2_with_one_line(args, message):
    out = doctor_cli(*args)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == "bn-decay-probe doctor: error: %s\n" % message


def test_importing_the_doctor_does_not_import_tensorflow():
    out = subprocess.run([sys.executable, "-c", "import sys, bn_decay_probe.doctor, "
                          "bn_decay_probe.cli.doctor; print('tensorflow' in sys.modules)"],
                         stdout=subprocess.PIPE, universal_newlines=True,
                         env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT)
    assert out.stdout.strip() == "False"

