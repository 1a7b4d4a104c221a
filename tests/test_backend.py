"""The backend seam: which TensorFlow versions load, and the one-line refusal of the rest."""
import pytest

from bn_decay_probe import backend

RANGE = ("bn_decay_probe supports TensorFlow 1.15 (Python 3.7) or TensorFlow 2.12-2.14 with "
         "tf-slim 1.1.0 (Python 3.8-3.11), found TensorFlow %s")


@pytest.mark.parametrize("version, name", [
    ("1.15.0", "tf1"), ("1.15.5", "tf1"), ("2.12.1", "tf2"), ("2.13.1", "tf2"), ("2.14.1", "tf2"),
])
def test_supported_versions(version, name):
    assert backend._backend_of(version) == name


@pytest.mark.parametrize("version", ["1.14.0", "2.11.0", "2.15.1", "2.16.2", "3.0.0"])
def test_other_versions_are_refused_in_one_line(monkeypatch, version):
    monkeypatch.delenv(backend.ALLOW_UNSUPPORTED, raising=False)
    with pytest.raises(backend.BackendUnavailableError) as info:
        backend._backend_of(version)
    assert str(info.value) == RANGE % version


def test_the_measuring_override_admits_other_2x_releases_only(monkeypatch):
    monkeypatch.setenv(backend.ALLOW_UNSUPPORTED, "1")
    assert backend._backend_of("2.16.2") == "tf2"
    with pytest.raises(backend.BackendUnavailableError):
        backend._backend_of("1.14.0")


def test_versions_name_the_running_backend():
    tf = backend.tensorflow()
    found = backend.versions()
    assert found["tensorflow"] == tf.__version__
    assert found["backend"] == ("tf1" if tf.__version__.startswith("1.") else "tf2")
    assert isinstance(found["onednn"], bool)
