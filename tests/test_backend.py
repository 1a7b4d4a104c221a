"""The backend seam: which TensorFlow versions load, the one-line refusal of the rest, the
install hint for the running Python, and where each API's layer comes from."""
import sys

import pytest

from bn_decay_probe import ProbeConfigError, backend, probe

RANGE = ("bn_decay_probe supports TensorFlow 1.15 (Python 3.7) or TensorFlow 2.12-2.21 with "
         "tf-slim 1.1.0 (Python 3.8-3.13), found TensorFlow %s")


@pytest.mark.parametrize("version, name", [
    ("1.15.0", "tf1"), ("1.15.5", "tf1"), ("2.12.1", "tf2"), ("2.13.1", "tf2"), ("2.15.1", "tf2"),
    ("2.16.2", "tf2"), ("2.19.1", "tf2"), ("2.21.0", "tf2"),
])
def test_supported_versions(version, name):
    assert backend._backend_of(version) == name


@pytest.mark.parametrize("version", ["1.14.0", "2.11.0", "2.22.0", "2.100.0", "3.0.0"])
def test_other_versions_are_refused_in_one_line(monkeypatch, version):
    monkeypatch.delenv(backend.ALLOW_UNSUPPORTED, raising=False)
    with pytest.raises(backend.BackendUnavailableError) as info:
        backend._backend_of(version)
    assert str(info.value) == RANGE % version


def test_the_measuring_override_admits_other_2x_releases_only(monkeypatch):
    monkeypatch.setenv(backend.ALLOW_UNSUPPORTED, "1")
    assert backend._backend_of("2.22.0") == "tf2"
    with pytest.raises(backend.BackendUnavailableError):
        backend._backend_of("1.14.0")


@pytest.mark.parametrize("python, hint", [
    ((3, 7), 'pip install "bn-decay-probe[tf1]" (TensorFlow 1.15)'),
    ((3, 8), 'pip install "bn-decay-probe[tf2]" (TensorFlow 2.13)'),
    ((3, 9), 'pip install "bn-decay-probe[tf2]" (TensorFlow 2.20)'),
    ((3, 10), 'pip install "bn-decay-probe[tf2]" (TensorFlow 2.21)'),
    ((3, 13), 'pip install "bn-decay-probe[tf2]" (TensorFlow 2.21)'),
    ((3, 6), "no supported TensorFlow release runs on Python 3.6: use Python 3.7 (TensorFlow 1.15) "
             "or 3.8-3.13 (TensorFlow 2)"),
    ((3, 14), "no supported TensorFlow release runs on Python 3.14: use Python 3.7 (TensorFlow "
              "1.15) or 3.8-3.13 (TensorFlow 2)"),
])
def test_the_install_hint_names_the_extra_for_the_running_python(python, hint):
    assert backend.install_hint(python) == hint


def test_a_missing_tensorflow_is_one_line_with_the_hint(monkeypatch):
    import builtins
    import sys

    real_import = builtins.__import__

    def no_tensorflow(name, *args, **kwargs):
        if name == "tensorflow":
            raise ImportError("No module named 'tensorflow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(backend, "_tf", None)
    monkeypatch.setattr(builtins, "__import__", no_tensorflow)
    with pytest.raises(backend.BackendUnavailableError) as info:
        backend.tensorflow()
    assert str(info.value) == (
        "bn_decay_probe needs %s; TensorFlow could not be imported (No module named "
        "'tensorflow'): %s" % (backend.SUPPORTED, backend.install_hint(sys.version_info[:2])))


def test_versions_name_the_running_backend():
    tf = backend.tensorflow()
    found = backend.versions()
    assert found["tensorflow"] == tf.__version__
    assert found["backend"] == ("tf1" if tf.__version__.startswith("1.") else "tf2")
    assert isinstance(found["onednn"], bool)
    minor = int(tf.__version__.split(".")[1])
    if found["backend"] == "tf2":
        # Keras 2 for the layers and keras APIs: tf-keras from TF 2.16, in step with TF.
        assert found["keras"].startswith("2.")
        assert ("keras3" in found) is (minor >= 16)
        if minor >= 16:
            assert found["keras"].split(".")[:2] == tf.__version__.split(".")[:2]
            assert found["keras3"].startswith("3.")


def test_keras_2_is_what_the_keras_and_layers_apis_build():
    """From TF 2.16 tf.keras is Keras 3: the Keras 2 classes come from tf_keras, by name."""
    keras = backend.keras()
    layer = backend.keras_batch_normalization()
    assert layer is keras.layers.BatchNormalization
    module = layer.__module__.split(".")[0]
    if "keras3" in backend.versions():
        assert module == "tf_keras"
        assert backend.v1_layers().batch_normalization.__module__.startswith("tf_keras.")
    else:
        assert module in ("keras", "tensorflow")


def test_keras3_elsewhere_is_one_config_error():
    if "keras3" in backend.versions():
        assert backend.keras3().__version__.startswith("3.")
        return
    with pytest.raises(ProbeConfigError) as info:
        probe(api="keras3", device="cpu")
    assert str(info.value) == ("api='keras3' needs TensorFlow 2.16-2.21, where tf.keras is "
                               "Keras 3; found TensorFlow %s" % backend.tensorflow().__version__)


@pytest.mark.skipif("backend.name() != 'tf2'", reason="tf.layers needs no tf-keras on TF 1.15")
@pytest.mark.parametrize("loader", ["v1_layers", "_slim"])
def test_a_tf_layers_shim_that_needs_tf_keras_names_the_package(monkeypatch, loader):
    # TF 2.15's shim imports tf_keras although its tf.keras is Keras 2 (measured: TF 2.15.1
    # with keras 2.15.0 alone fails in tf-slim's batch_norm with "No module named 'tf_keras'").
    from bn_decay_probe import slim_compat

    monkeypatch.setattr(backend, "_tf_keras", lambda: False)
    monkeypatch.setattr(slim_compat, "layers_module_name",
                        lambda: "tf_keras.legacy_tf_layers.normalization")
    monkeypatch.setitem(sys.modules, "tf_keras", None)  # import tf_keras raises ImportError
    with pytest.raises(backend.BackendUnavailableError) as raised:
        getattr(backend, loader)()
    minor = ".".join(backend.tensorflow().__version__.split(".")[:2])
    assert str(raised.value) == (
        "TensorFlow %s: tf.layers' batch normalization (also tf-slim's) is tf-keras's: pip "
        "install tf-keras~=%s.0" % (backend.tensorflow().__version__, minor))
