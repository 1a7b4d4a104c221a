"""The only module that imports TensorFlow: which backend, import, quieting, versions, devices,
sessions, and the batch-norm layers of each API.

Two backends, chosen by the installed TensorFlow:
- "tf1": TensorFlow 1.15 (Python 3.7), tf.contrib.layers.batch_norm.
- "tf2": TensorFlow 2.12-2.14 (Python 3.8-3.11) in graph mode through tf.compat.v1, with
  tf_slim.layers.batch_norm (tf-slim 1.1.0) in place of tf.contrib. Measured: tf-slim breaks on
  TF 2.15 (ops.Tensor is gone) and Keras 3 (TF 2.16) refuses BatchNormalization(fused=...),
  hence the upper bound.
Every other module asks this one; none checks a version itself.
"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import threading
import warnings
from typing import Any, Dict, Iterator, Tuple

import numpy as np

from . import __version__

SUPPORTED = ("TensorFlow 1.15 (Python 3.7) or TensorFlow 2.12-2.14 with tf-slim 1.1.0 "
             "(Python 3.8-3.11)")
_TF2_MINORS = (12, 13, 14)
ALLOW_UNSUPPORTED = "BN_DECAY_PROBE_ALLOW_UNSUPPORTED_TF"
_tf: Any = None
_verbose = False


class BackendUnavailableError(ImportError):
    """TensorFlow is missing or is a version the probe does not support."""


def set_verbose(enabled: bool) -> None:
    """With ``enabled``, TF's own warnings are no longer muted (the CLI's --verbose)."""
    global _verbose
    _verbose = enabled


def silence_native_logs() -> None:
    """Hides TF's C++ log lines (e.g. 'failed call to cuInit' without a GPU).

    TF reads TF_CPP_MIN_LOG_LEVEL once, at its first log line, so this only works before
    TensorFlow is imported; a value the user set is kept.
    """
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def tensorflow() -> Any:
    """Imports TensorFlow once, hiding its import-time Python warnings."""
    global _tf
    if _tf is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            # Harmless ABI notice from a TF dependency's compiled module under numpy 1.18.
            warnings.filterwarnings("ignore", "numpy.ufunc size changed", RuntimeWarning)
            try:
                import tensorflow as tf
            except ImportError as exc:
                raise BackendUnavailableError(
                    "bn_decay_probe needs %s; TensorFlow could not be imported (%s): run "
                    "`make setup` or `pip install .[tf1]` / `pip install .[tf2]`"
                    % (SUPPORTED, exc)) from None
        _tf = tf
        _backend_of(tf.__version__)  # refuses unsupported versions before anything runs
    return _tf


def _backend_of(version: str) -> str:
    major, minor = (int(part) for part in version.split(".")[:2])
    if (major, minor) == (1, 15):
        return "tf1"
    # The override exists to measure other 2.x releases (README's support table); what the
    # probe then reports is unverified.
    if major == 2 and (minor in _TF2_MINORS or os.environ.get(ALLOW_UNSUPPORTED) == "1"):
        return "tf2"
    raise BackendUnavailableError("bn_decay_probe supports %s, found TensorFlow %s"
                                  % (SUPPORTED, version))


def name() -> str:
    """"tf1" or "tf2"."""
    return _backend_of(tensorflow().__version__)


def _slim() -> Any:
    tensorflow()
    try:
        import tf_slim
    except ImportError:
        raise BackendUnavailableError("the TensorFlow 2 backend needs tf-slim for "
                                      "tf.contrib.layers.batch_norm: pip install "
                                      "tf-slim==1.1.0") from None
    return tf_slim


# warnings.catch_warnings and the logger's level are process-wide: threads that build graphs
# (the semantics matrix's rows) take turns.
_QUIET = threading.RLock()


@contextlib.contextmanager
def quiet() -> Iterator[Any]:
    """Yields tf.compat.v1 with TF's Python-side warnings (deprecations, the tf.contrib sunset
    notice) muted, and restores the caller's logging settings afterwards; one thread at a
    time."""
    with _QUIET, _muted() as tf1:
        yield tf1


@contextlib.contextmanager
def _muted() -> Iterator[Any]:
    tf = tensorflow()
    if _verbose:
        yield tf.compat.v1
        return
    from tensorflow.python.util import deprecation

    logger = tf.get_logger()
    level, printing = logger.level, deprecation._PRINT_DEPRECATION_WARNINGS
    logger.setLevel(logging.ERROR)
    deprecation._PRINT_DEPRECATION_WARNINGS = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            # Keras 2.x announces tf.layers' deprecation as a UserWarning.
            warnings.filterwarnings("ignore", ".*is deprecated", UserWarning)
            yield tf.compat.v1
    finally:
        logger.setLevel(level)
        deprecation._PRINT_DEPRECATION_WARNINGS = printing


def batch_norm() -> Any:
    """api "contrib": tf.contrib.layers.batch_norm (tf_slim's copy of it under TF 2)."""
    if name() == "tf1":
        return tensorflow().contrib.layers.batch_norm
    return _slim().layers.batch_norm


@contextlib.contextmanager
def layer_class_import(config: Any) -> Iterator[None]:
    """contrib (tf_slim under TF 2) hands UPDATE_OPS batch norm to the tf.layers class, which
    TensorFlow 2.13 looks for at keras.legacy_tf_layers, a module Keras 2.13 moved: the import
    fails. That is a limit of the installed versions, said in one line."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if "legacy_tf_layers" not in str(exc):
            raise
        from .errors import ProbeConfigError

        raise ProbeConfigError(
            "api='contrib' with updates=%r builds tf.layers' BatchNormalization, which "
            "TensorFlow %s cannot import (%s); use updates='inplace', api='layers', or "
            "TensorFlow 1.15" % (config.updates, tensorflow().__version__, exc)) from None


def layers_batch_normalization() -> Any:
    """api "layers": tf.layers.batch_normalization."""
    return tensorflow().compat.v1.layers.batch_normalization


def keras_batch_normalization() -> Any:
    """api "keras": the tf.keras.layers.BatchNormalization class."""
    return tensorflow().keras.layers.BatchNormalization


def assign_moving_average() -> Any:
    """The update contrib and tf.layers use, for api "nn" (not exported under tf.compat.v1)."""
    from tensorflow.python.training import moving_averages

    return moving_averages.assign_moving_average


def visible_gpus() -> Tuple[str, ...]:
    gpus = tensorflow().config.experimental.list_physical_devices("GPU")
    return tuple(gpu.name for gpu in gpus)


def session_config(target: str, inline: bool = False) -> Any:
    """Soft placement lets ops without a GPU kernel fall back to the CPU (the report shows where
    each op really ran); memory growth keeps the probe from grabbing the whole GPU. A CPU probe
    hides the GPUs so none is initialized. ``inline``: the ops of a run execute one after
    another in the calling thread (inter_op_parallelism_threads -1), which halves the CPU time
    of a run made of a chain of small ops, the sweep's step; each op's own threads (intra-op),
    and so every number, are unchanged."""
    tf1 = tensorflow().compat.v1
    config = tf1.ConfigProto(allow_soft_placement=True)
    if inline:
        config.inter_op_parallelism_threads = -1
    config.gpu_options.allow_growth = True
    if "GPU" not in target:
        config.device_count["GPU"] = 0
    return config


def onednn() -> bool:
    """Whether TF runs oneDNN kernels: on by default for TF >= 2.9 on x86 Linux (off with
    TF_ENABLE_ONEDNN_OPTS=0). They change fused batch norm's float32 rounding, so results are
    bit-identical to TF 1.15 only with it off."""
    tensorflow()
    from tensorflow.python.framework import test_util

    return bool(test_util.IsMklEnabled())


def versions() -> Dict[str, Any]:
    tf = tensorflow()
    found = {"backend": name(), "tensorflow": tf.__version__,
             "built_with_cuda": bool(tf.test.is_built_with_cuda()), "onednn": onednn(),
             "numpy": np.__version__, "python": platform.python_version(),
             "bn_decay_probe": __version__}
    if found["backend"] == "tf2":
        found["tf_slim"] = getattr(_slim(), "__version__", "1.1.0")
        import keras  # tf.keras's own package in TF 2.13/2.14

        found["keras"] = keras.__version__
    return found


def fast_callable(session: Any, feeds: Any, fetches: Any) -> Any:
    """A callable that runs ``fetches`` on values for ``feeds`` (placeholders), both resolved
    once in C++. Session.make_callable with feeds goes through Session.run's Python fetch
    handling on every call, which costs several times a small graph's run; tf.keras's
    graph-mode backend uses the same private entry point."""
    from tensorflow.core.protobuf import config_pb2

    options = config_pb2.CallableOptions()
    options.feed.extend(t.name for t in feeds)
    options.fetch.extend(t.name for t in fetches)
    return session._make_callable_from_options(options)
