"""pyproject.toml against what the code and the requirement files say: each Python gets the
extra the install hint names, the classifiers list exactly the Pythons an extra installs on,
and what CI pins is inside what the extras allow. (Building and installing the package is
scripts/check-package, run by CI.)"""
import os
import re

import pytest

from bn_decay_probe import backend

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")
markers = pytest.importorskip("packaging.markers", reason="needs the packaging distribution")
requirements = pytest.importorskip("packaging.requirements")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHONS = [(3, minor) for minor in range(6, 15)]

with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    PROJECT = tomllib.load(f)["project"]


def installs(extra, python):
    """The requirements of ``extra`` that pip installs on ``python``."""
    environment = {"python_version": "%d.%d" % python, "python_full_version": "%d.%d.0" % python,
                   "extra": extra}
    found = [requirements.Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
    return [r.name for r in found if r.marker is None or r.marker.evaluate(environment)]


@pytest.mark.parametrize("python", PYTHONS, ids=["%d.%d" % p for p in PYTHONS])
def test_each_python_gets_the_extra_its_hint_names(python):
    hint = backend.install_hint(python)
    for extra in ("tf1", "tf2"):
        assert bool(installs(extra, python)) is ("[%s]" % extra in hint), (extra, hint)
    if "pip install" not in hint:
        assert hint.startswith("no supported TensorFlow release runs on Python")


def test_tf1_is_tensorflow_1_15_on_python_3_7_only():
    assert installs("tf1", (3, 7)) == ["tensorflow-gpu", "protobuf", "numpy"]
    assert all(installs("tf1", p) == [] for p in PYTHONS if p != (3, 7))


def test_tf2_pins_tensorflow_not_tensorflow_cpu():
    """tf-keras requires `tensorflow`: tensorflow-cpu would be a second TensorFlow."""
    names = {r.split(";")[0].split("<")[0].split(">")[0].split("=")[0].strip()
             for r in PROJECT["optional-dependencies"]["tf2"]}
    assert names == {"tensorflow", "tf-keras", "tf-slim"}
    assert installs("tf2", (3, 8)) == ["tensorflow", "tf-slim"]  # TF 2.13: Keras 2 is tf.keras
    assert installs("tf2", (3, 12)) == ["tensorflow", "tf-keras", "tf-slim"]


def test_classifiers_list_the_pythons_an_extra_installs_on():
    listed = {tuple(map(int, c.rsplit(" ", 1)[1].split("."))) for c in PROJECT["classifiers"]
              if re.match(r"Programming Language :: Python :: 3\.\d+$", c)}
    assert listed == {p for p in PYTHONS if installs("tf1", p) or installs("tf2", p)}
    assert PROJECT["requires-python"] == ">=%d.%d" % min(listed)


def test_what_ci_pins_is_what_the_tf2_extra_allows():
    with open(os.path.join(ROOT, "requirements-tf2.txt")) as f:
        pins = dict(line.split("==") for line in f.read().splitlines()
                    if "==" in line and not line.startswith("#"))
    allowed = {requirements.Requirement(r).name: requirements.Requirement(r).specifier
               for r in PROJECT["optional-dependencies"]["tf2"]}
    for name in ("tensorflow", "tf-keras", "tf-slim"):
        assert pins[name] in allowed[name], name
    assert pins["tensorflow"].split(".")[:2] == pins["tf-keras"].split(".")[:2]
    assert "tensorflow-cpu" not in pins


FRAMEWORK_EXTRAS = {"torch": ["torch", "safetensors"], "jax": ["jax", "flax", "dm-haiku"],
                    "onnx": ["onnx"]}


@pytest.mark.parametrize("python", PYTHONS)
def test_the_frameworks_extras_install_where_the_hint_says(python):
    """imports.EXTRA_PYTHONS ("Python 3.10 to 3.13") is what the probe's line for a missing
    framework names; elsewhere the extras install nothing (the TF 1.15 environment)."""
    from bn_decay_probe import imports

    low, high = (tuple(map(int, v.split("."))) for v in re.findall(
        r"\d+\.\d+", imports.EXTRA_PYTHONS))
    for extra, names in FRAMEWORK_EXTRAS.items():
        assert installs(extra, python) == (names if low <= python <= high else []), extra


def test_what_ci_pins_is_what_the_frameworks_extras_allow():
    """requirements-frameworks.txt's pins for Python 3.12 (CI's) satisfy the extras."""
    environment = {"python_version": "3.12", "python_full_version": "3.12.1"}
    pins = {}
    with open(os.path.join(ROOT, "requirements-frameworks.txt")) as f:
        for line in f.read().splitlines():
            if "==" in line and not line.startswith("#"):
                pin = requirements.Requirement(line)
                if pin.marker is None or pin.marker.evaluate(environment):
                    pins[pin.name] = str(pin.specifier).lstrip("=")
    for extra, names in FRAMEWORK_EXTRAS.items():
        for r in PROJECT["optional-dependencies"][extra]:
            requirement = requirements.Requirement(r)
            assert pins[requirement.name] in requirement.specifier, requirement.name
