"""slim_compat restores exactly the names tf-slim needs on this TensorFlow: each is needed
(tf-slim's batch_norm fails without it, naming it) and used (with it, the same call builds)."""
import os
import subprocess
import sys
import textwrap

import pytest

from bn_decay_probe import backend, slim_compat
from conftest import backend_name  # noqa: F401  (the skipif condition below)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(
    "backend_name() != 'tf2'", reason="TF 1.15 has tf.contrib; slim_compat is for tf-slim on TF 2")

# In a fresh process, TensorFlow and tf-slim imported directly (not through the backend, which
# restores everything when it loads), then one name restored at a time. Each batch_norm call is
# the first to reach the next missing name; it prints what it raised, then the name is restored
# and the same call is made again.
SCRIPT = textwrap.dedent("""
    import sys
    import tensorflow as tf
    import tf_slim
    from bn_decay_probe import slim_compat
    tf1 = tf.compat.v1

    def build(is_training, collection):
        graph = tf1.Graph()
        with graph.as_default():
            x = tf1.ones([2, 2, 2, 1])
            flag = tf1.placeholder_with_default(True, []) if is_training == "tensor" else True
            tf_slim.layers.batch_norm(x, is_training=flag, updates_collections=collection)
        return sorted({op.type for op in graph.get_operations()})

    calls = [(slim_compat.restore_tensor, ("python", None)),
             (slim_compat.restore_cond, ("tensor", None)),
             (slim_compat.restore_layers_module, ("python", tf1.GraphKeys.UPDATE_OPS))]
    for restore, call in calls:
        try:
            build(*call)
            print("built without", restore.__name__)
        except Exception as exc:
            print("%s: %s" % (type(exc).__name__, str(exc).splitlines()[0]))
        restored = restore()
        print("restored", restored)
        ops = build(*call)
        print("built", "If" in ops or "StatelessIf" in ops)
    if restored:  # e.g. tf_keras.legacy_tf_layers.normalization is tf_keras.src.legacy_tf_layers...
        alias = restored[-1]
        top = alias.split(".")[0]
        print("one module", sys.modules[alias] is sys.modules[top + ".src" + alias[len(top):]])
    print("again", slim_compat.restore())
""")


@pytest.fixture(scope="module")
def steps():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def needs(name):
    if name not in backend.restored_names():
        pytest.skip("TensorFlow %s still has %s" % (backend.tensorflow().__version__, name))


def keras_2_package():
    """Where TF's tf.layers shim looks for Keras 2's legacy layers: tf_keras from TF 2.16 (where
    keras is Keras 3), keras before."""
    return "tf_keras" if "keras3" in backend.versions() else "keras"


def test_ops_tensor_is_needed_by_every_batch_norm(steps):
    needs("tensorflow.python.framework.ops.Tensor")
    assert steps[0] == ("AttributeError: module 'tensorflow.python.framework.ops' has no "
                        "attribute 'Tensor'")
    assert steps[1] == "restored ['tensorflow.python.framework.ops.Tensor']"
    assert steps[2] == "built False"  # a Python is_training: no cond


def test_control_flow_ops_cond_is_needed_with_a_tensor_is_training(steps):
    needs("tensorflow.python.ops.control_flow_ops.cond")
    assert steps[3] == ("AttributeError: module 'tensorflow.python.ops.control_flow_ops' has no "
                        "attribute 'cond'")
    assert steps[4] == "restored ['tensorflow.python.ops.control_flow_ops.cond']"
    assert steps[5] == "built True"  # the restored cond built the If op


def test_the_legacy_layers_module_is_needed_with_update_ops(steps):
    package = keras_2_package()
    needs(package + ".legacy_tf_layers")
    assert steps[6] == "ModuleNotFoundError: No module named '%s.legacy_tf_layers'" % package
    assert steps[7] == ("restored ['%s.legacy_tf_layers', '%s.legacy_tf_layers.normalization']"
                        % (package, package))
    assert steps[8] == "built False"
    # The alias is the moved module itself: no second copy of tf.layers' BatchNormalization.
    assert steps[9] == "one module True"


def test_each_name_is_restored_once_and_only_when_missing(steps):
    # The last line (its index depends on whether anything was restored: TF 2.12 needs nothing).
    assert steps[-1] == "again []"


def test_the_backend_restores_them_when_it_loads():
    if keras_2_package() == "tf_keras":
        assert backend.restored_names() == (
            "tensorflow.python.framework.ops.Tensor", "tensorflow.python.ops.control_flow_ops.cond",
            "tf_keras.legacy_tf_layers", "tf_keras.legacy_tf_layers.normalization")
    assert slim_compat.restore() == []
    # Restored as the objects TensorFlow itself uses now (TF 2.13 has a tensor module without
    # Tensor: only what was restored is compared).
    from tensorflow.python.framework import ops
    from tensorflow.python.ops import control_flow_ops

    if "tensorflow.python.framework.ops.Tensor" in backend.restored_names():
        from tensorflow.python.framework import tensor

        assert ops.Tensor is tensor.Tensor
    if "tensorflow.python.ops.control_flow_ops.cond" in backend.restored_names():
        from tensorflow.python.ops import cond

        assert control_flow_ops.cond is cond.cond
