"""recalibrate(model, batches) on Keras 3's JAX and PyTorch backends (each in a child process:
Keras fixes its backend when first imported), where those frameworks are installed (TF 2.21's
environment, requirements-frameworks.txt). A conv -> batch norm -> ReLU -> conv -> batch norm
model from its initial statistics (0, 1), repaired from two unequal batches; checked against
numpy: the first layer's statistics equal the mean and population variance of its input over
both batches (a conv of the data: no batch norm above it), the second layer's equal numpy's over
its inputs batch by batch (each batch normalized above with its own statistics, as training
mode does), the model's variables hold them, and the check's error of every layer is at least
10x smaller after."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import backend_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    from bn_decay_probe import recalibrate

    rng = np.random.RandomState(5)
    data = (rng.rand(40, 10, 10, 3) * 4 + 1).astype("float32")
    batches = [data[:24], data[24:]]
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(6, 3, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1", epsilon=1e-3)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(5, 3, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2", epsilon=1e-3)(x)
    model = keras.Model(inputs, x)
    to_bn1 = keras.Model(inputs, model.get_layer("bn1").input)
    to_bn2 = keras.Model(inputs, model.get_layer("bn2").input)
    # training mode, before the repair (it reads no moving statistic): each batch's input of bn2
    bn2_inputs = [keras.ops.convert_to_numpy(to_bn2(b, training=True)).tolist() for b in batches]
    bn1_input = keras.ops.convert_to_numpy(to_bn1(data, training=False)).tolist()
    result = recalibrate(model, batches)
    json.dump({"backend": keras.backend.backend(), "bn1_input": bn1_input,
               "bn2_inputs": bn2_inputs,
               "variables": {name: [keras.ops.convert_to_numpy(
                   getattr(model.get_layer(name), v)).tolist()
                   for v in ("moving_mean", "moving_variance")] for name in ("bn1", "bn2")},
               "result": result.to_dict()}, sys.stdout)
""")


def framework_installed(module):
    try:
        __import__(module)  # conftest has made torch safe to import beside TensorFlow
    except ImportError:
        return False
    return True


@pytest.mark.skipif(backend_name() != "tf2", reason="Keras 3 is TF 2.16+'s")
@pytest.mark.parametrize("keras_backend, module", [("jax", "jax"), ("torch", "torch")])
def test_recalibrate_on_another_backend(keras_backend, module):
    if not framework_installed(module):
        pytest.skip("%s is not installed (pip install 'bn-decay-probe[%s]')"
                    % (module, "jax" if module == "jax" else "torch"))
    child = subprocess.run([sys.executable, "-c", CHILD], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, cwd=ROOT,
                           env=dict(os.environ, KERAS_BACKEND=keras_backend, PYTHONPATH=ROOT))
    assert child.returncode == 0, child.stderr[-2000:]
    found = json.loads(child.stdout)
    assert found["backend"] == keras_backend
    result = found["result"]
    assert result["batches"] == 2 and result["rows"] == 40
    layers = {layer["name"]: layer for layer in result["layers"]}
    bn1 = np.asarray(found["bn1_input"], np.float64).reshape(-1, 6)
    bn2 = np.concatenate([np.asarray(b, np.float64).reshape(-1, 5)
                          for b in found["bn2_inputs"]])
    for name, values in (("bn1", bn1), ("bn2", bn2)):
        assert layers[name]["status"] == "repaired"
        np.testing.assert_allclose(layers[name]["mean_after"], values.mean(axis=0),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(layers[name]["variance_after"], values.var(axis=0),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(found["variables"][name][0], layers[name]["mean_after"],
                                   rtol=1e-6)
        np.testing.assert_allclose(found["variables"][name][1], layers[name]["variance_after"],
                                   rtol=1e-6)
        assert layers[name]["error_after"] <= layers[name]["error_before"] / 10
