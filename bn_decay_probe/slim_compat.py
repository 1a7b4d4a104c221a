"""Restores the three names tf-slim 1.1.0 (the last release, 2020) reaches for that newer
TensorFlow and tf-keras releases removed or moved. Only backend.py calls :func:`restore`, once,
when it loads a TensorFlow 2 backend; each name is set only when it is missing, to the object
TensorFlow itself now uses for it, so nothing that exists is replaced.

| name tf-slim uses | used by | gone since | restored as |
|---|---|---|---|
| ``tensorflow.python.framework.ops.Tensor`` | ``tf_slim.layers.utils.constant_value`` (every ``batch_norm``) | TF 2.15 | ``tensorflow.python.framework.tensor.Tensor`` |
| ``tensorflow.python.ops.control_flow_ops.cond`` | ``tf_slim.layers.utils.smart_cond`` (``batch_norm`` with a tensor ``is_training``) | TF 2.14 | ``tensorflow.python.ops.cond.cond`` |
| the module TF's ``tensorflow/python/layers/normalization.py`` lazily imports (``<keras>.legacy_tf_layers.normalization``) | ``batch_norm`` with ``updates_collections=UPDATE_OPS``, which hands over to tf.layers' class | Keras 2.13 moved it under ``keras.src``, tf-keras under ``tf_keras.src`` | an alias of the moved module |

``tests/test_slim_compat.py`` shows each one is needed (tf-slim fails without it) and used.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any, List

# How TensorFlow names the module of tf.layers' BatchNormalization, and where its Keras moved it.
_LAYERS_PACKAGE = ".legacy_tf_layers"
_MOVED_UNDER = ".src"


def restore() -> List[str]:
    """Sets each missing name; returns the names restored (none on TF 2.12)."""
    return restore_tensor() + restore_cond() + restore_layers_module()


def restore_tensor() -> List[str]:
    from tensorflow.python.framework import ops

    if hasattr(ops, "Tensor"):
        return []
    from tensorflow.python.framework import tensor

    ops.Tensor = tensor.Tensor
    return ["tensorflow.python.framework.ops.Tensor"]


def restore_cond() -> List[str]:
    from tensorflow.python.ops import control_flow_ops

    if hasattr(control_flow_ops, "cond"):
        return []
    from tensorflow.python.ops import cond

    control_flow_ops.cond = cond.cond
    return ["tensorflow.python.ops.control_flow_ops.cond"]


def layers_module_name() -> str:
    """The module TensorFlow's tf.layers normalization shim imports lazily, e.g.
    'tf_keras.legacy_tf_layers.normalization' (TF >= 2.16), 'keras.legacy_tf_layers.normalization'
    (TF 2.13-2.15); read from the shim rather than guessed per version."""
    from tensorflow.python.layers import normalization

    # A LazyLoader (a module object) named after its target until first use, then the module.
    return getattr(vars(normalization).get("normalization"), "__name__", "")


def restore_layers_module() -> List[str]:
    """Aliases ``<keras>.legacy_tf_layers`` and its ``normalization`` module to the modules Keras
    moved under ``<keras>.src``, both, so that importing the alias does not load a second copy
    of the module (and a second BatchNormalization class)."""
    name = layers_module_name()
    if _LAYERS_PACKAGE not in name or _importable(name):
        return []
    package = name[:name.index(_LAYERS_PACKAGE) + len(_LAYERS_PACKAGE)]
    top = package[:-len(_LAYERS_PACKAGE)]
    moved = top + _MOVED_UNDER + package[len(top):]
    if not _importable(moved + name[len(package):]):
        return []  # nothing to alias: tf.layers stays unavailable, and says so when used
    restored = []
    for alias, target in ((package, moved), (name, moved + name[len(package):])):
        module: Any = importlib.import_module(target)
        sys.modules[alias] = module
        parent, _, child = alias.rpartition(".")
        setattr(sys.modules[parent], child, module)
        restored.append(alias)
    return restored


def _importable(name: str) -> bool:
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a missing parent package
        return False
