"""A checkpoint written by TF 1.15 (this side) repaired by the TF 2.x backend (the other side),
as a user who moved to a new Python does with old checkpoints. The model is Keras MobileNetV2
trained with the update ops forgotten: its .meta holds gradient ops whose ``_output_shapes``
TF 2.x refuses as they are (measured on TF 2.13 and 2.21), so this also covers the import that
drops those hints.

`make cross` runs this with BN_DECAY_PROBE_OTHER_PYTHON naming the TF 2.x interpreter."""
import json
import os
import subprocess

import numpy as np
import pytest

from bn_decay_probe import backend, diagnose_checkpoint
from bn_decay_probe.checkpoints import meta
from bn_decay_probe.repair import recalibrate_checkpoint
from checkpoint_files import assert_only_statistics_differ, digest, tensors
from real_models import SPECS

OTHER = os.environ.get("BN_DECAY_PROBE_OTHER_PYTHON")
pytestmark = pytest.mark.skipif(not OTHER, reason="needs BN_DECAY_PROBE_OTHER_PYTHON: `make cross`")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = "keras_mobilenet_v2"


@pytest.fixture(scope="module")
def repaired(real_model, tmp_path_factory):
    assert backend.name() == "tf1", "run this side on TF 1.15 (`make cross`)"
    trained = real_model(MODEL, "forgot_update_ops")
    directory = tmp_path_factory.mktemp("cross")
    side = SPECS[MODEL][0]
    data = np.random.RandomState(3).normal(2.0, 3.0, (16, side, side, 3)).astype(np.float32)
    np.save(directory / "data.npy", data)
    before = digest(trained.saver_prefix)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([OTHER, "-m", "bn_decay_probe", "repair", trained.saver_prefix,
                           "--data", str(directory / "data.npy"), "--batch-size", "16",
                           "--out", str(directory / "theirs"), "--json", "-"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    mine = recalibrate_checkpoint(trained.saver_prefix, str(directory / "data.npy"),
                                  str(directory / "mine"), batch_size=16)
    return trained, directory, before, json.loads(done.stdout), mine


def test_other_backend_repairs_a_tf115_checkpoint(repaired):
    trained, directory, before, theirs, mine = repaired
    assert digest(trained.saver_prefix) == before
    assert theirs["batches"] == 1 and len(theirs["layers"]) == SPECS[MODEL][2]
    assert all(layer["status"] == "repaired" for layer in theirs["layers"])
    original, copy = tensors(trained.saver_prefix), tensors(str(directory / "theirs"))
    assert_only_statistics_differ(original, copy, trained.bn_layers)
    assert diagnose_checkpoint(str(directory / "theirs")).clean


def test_both_backends_write_the_same_statistics(repaired):
    """TF 2.x's oneDNN kernels round differently from TF 1.15's by float32 ulps, which 52
    layers of training-mode forward pass carry along: equal to 1e-4 relative."""
    trained, directory, _, _, _ = repaired
    ours, theirs = tensors(str(directory / "mine")), tensors(str(directory / "theirs"))
    for layer in trained.bn_layers:
        for suffix in ("/moving_mean", "/moving_variance"):
            spread = np.sqrt(ours[layer + "/moving_variance"].max())
            np.testing.assert_allclose(theirs[layer + suffix], ours[layer + suffix], rtol=1e-4,
                                       atol=1e-5 * spread, err_msg=layer + suffix)


def test_tf115_runs_the_copy_in_inference_mode(repaired):
    """The copy TF 2.x wrote restores into TF 1.15's graph and closes the gap there too."""
    trained, directory, _, _, mine = repaired
    data = np.load(str(directory / "data.npy"))
    outputs = {}
    with backend.quiet() as tf1:
        for name in ("theirs", "mine"):
            graph, saver = meta.import_graph(tf1, str(directory / name))
            with tf1.Session(graph=graph) as session:
                saver.restore(session, str(directory / name))
                (output,) = [op.outputs[0] for op in graph.get_operations()
                             if op.type == "Softmax"]
                outputs[name] = [session.run(output, {trained.image_tensor: data,
                                                      "keras_learning_phase:0": mode})
                                 for mode in (False, True)]
    inference, training = outputs["theirs"]
    gap = np.sqrt(np.square(np.float64(inference) - training).sum() /
                  np.square(np.float64(training)).sum())
    assert gap < 1e-3 < mine.worst_error(False)[1]
