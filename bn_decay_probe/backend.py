"""The only module that imports TensorFlow: which backend, import, quieting, versions, devices,
sessions, and the batch-norm layers of each API.

Two backends, chosen by the installed TensorFlow:
- "tf1": TensorFlow 1.15 (Python 3.7), tf.contrib.layers.batch_norm.
- "tf2": TensorFlow 2.12-2.21 (Python 3.8-3.13) in graph mode through tf.compat.v1, with
  tf_slim.layers.batch_norm (tf-slim 1.1.0) in place of tf.contrib. tf-slim needs three names
  that TF 2.14+ and Keras removed or moved: slim_compat restores them when this backend loads.
  From TF 2.16, tf.keras is Keras 3, which has no TF1 layers: the Keras 2 APIs ("layers",
  "keras") come from the tf-keras package, imported here by name (not through
  TF_USE_LEGACY_KERAS, which TF reads once, at its first tf.keras access), and Keras 3 is
  api "keras3". TF 2.22 and later are unmeasured, hence the upper bound.
Every other module asks this one; none checks a version itself.
"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import re
import sys
import tempfile
import warnings
from typing import Any, Dict, Iterator, Tuple

import numpy as np

from . import imports, interrupts
from ._version import __version__
from .errors import BackendUnavailableError, ProbeConfigError

SUPPORTED = ("TensorFlow 1.15 (Python 3.7) or TensorFlow 2.12-2.21 with tf-slim 1.1.0 "
             "(Python 3.8-3.13)")
_TF2_MINORS = range(12, 22)
_TF_KERAS_FROM = 16  # TF 2.16: tf.keras is Keras 3; Keras 2 is the tf-keras package
_restored: Tuple[str, ...] = ()
ALLOW_UNSUPPORTED = "BN_DECAY_PROBE_ALLOW_UNSUPPORTED_TF"
_tf: Any = None
_verbose = False
_filter_native = False
# absl's line format ("I0000 00:00:1796122801.738521   17149 port.cc:153] ..."), and the notice
# it prints before its first line when TF has not initialized it (TF >= 2.16).
# Before absl's initialization the seconds field is the epoch time, as in that example.
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:[\d.]+ +\d+ \S+:\d+\] ")
_ABSL_NOTICE = ("WARNING: All log messages before absl::InitializeLog() is called are written "
                "to STDERR")


_QUIETED = "BN_DECAY_PROBE_QUIETED_TF"  # set with TF_CPP_MIN_LOG_LEVEL when this module set it


def set_verbose(enabled: bool) -> None:
    """With ``enabled``, TF's own warnings are no longer muted (the CLI's --verbose), and before
    TensorFlow's import its C++ log level is unset again if this module (in this process or,
    through the environment, a parent) set it."""
    global _verbose, _filter_native
    _verbose = enabled
    if enabled and "tensorflow" not in sys.modules:
        _filter_native = False
        if os.environ.pop(_QUIETED, None):
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)


def silence_native_logs() -> None:
    """Hides TF's C++ log lines (e.g. 'failed call to cuInit' without a GPU).

    TF reads TF_CPP_MIN_LOG_LEVEL once, at its first log line, so this only works before
    TensorFlow is imported; a value the user set is kept. TF >= 2.16 writes the lines of its
    import and of the process's first device and graph set-up through absl before absl is
    initialized, which no environment variable silences: the backend then runs those steps
    when it loads with stderr captured, and passes on all but the log lines below that level.
    The variable stays in the process's environment (child processes inherit it, marked as set
    by bn_decay_probe).
    """
    global _filter_native
    if "tensorflow" not in sys.modules:
        if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
            os.environ[_QUIETED] = "1"
        _filter_native = True


@contextlib.contextmanager
def _native_lines_filtered() -> Iterator[None]:
    """Captures file descriptor 2 (where C++ writes) while the body runs, then writes back what
    was captured except absl's log lines below TF_CPP_MIN_LOG_LEVEL (with their continuation
    lines) and its uninitialized-logging notice."""
    if not _filter_native:
        yield
        return
    level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") or 0)
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept, dropping = [], False
            for line in captured.read().decode("utf-8", "replace").splitlines(True):
                header = _ABSL_LINE.match(line)
                if header:
                    dropping = "IWEF".index(header.group(1)) < level
                elif line.rstrip("\n") == _ABSL_NOTICE:
                    dropping = True
                    continue
                if not dropping:
                    kept.append(line)
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()  # before anything written to fd 2 directly comes after


def tensorflow() -> Any:
    """Imports TensorFlow once, hiding its import-time Python warnings."""
    global _tf
    if _tf is None:
        if not _verbose:
            silence_native_logs()  # a library user's first probe prints no C++ log lines
        with interrupts.held(), warnings.catch_warnings():  # Ctrl-C: after the import
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            # Harmless ABI notice from a TF dependency's compiled module under numpy 1.18.
            warnings.filterwarnings("ignore", "numpy.ufunc size changed", RuntimeWarning)
            # triton after TensorFlow crashes the process: torch then runs without it.
            imports.block_triton(tensorflow_next=True)
            with _native_lines_filtered():
                try:
                    import tensorflow as tf
                except ImportError as exc:
                    raise BackendUnavailableError(
                        "bn_decay_probe needs %s; TensorFlow could not be imported (%s): %s"
                        % (SUPPORTED, exc, install_hint())) from None
                if _filter_native:
                    _set_up_devices(tf)
        # Refuses unsupported versions before anything runs.
        if _backend_of(tf.__version__) == "tf2":
            global _restored
            from . import slim_compat

            with interrupts.held():  # imports tf-slim and tf_keras
                _restored = tuple(slim_compat.restore())
        _tf = tf
    return _tf


def _set_up_devices(tf: Any) -> None:
    """The process's one-time device and graph set-up (cuInit, the graph optimizer's first
    pass), done now so that its log lines come while they are filtered (measured on TF 2.21:
    nothing more is logged afterwards, in graph or eager mode)."""
    tf.config.experimental.list_physical_devices("GPU")
    graph = tf.Graph()
    with graph.as_default():
        one = tf.constant(1.0) + 1.0
    config = tf.compat.v1.ConfigProto()
    config.gpu_options.allow_growth = True  # as session_config: a GPU is not grabbed whole
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        session.run(one)


def install_hint(python: Tuple[int, int] = sys.version_info[:2]) -> str:
    """What to install for the running Python (an installed wheel has no Makefile)."""
    if python == (3, 7):
        return 'pip install "bn-decay-probe[tf1]" (TensorFlow 1.15)'
    if (3, 8) <= python <= (3, 13):
        return 'pip install "bn-decay-probe[tf2]" (TensorFlow %s)' % (
            "2.13" if python == (3, 8) else "2.20" if python == (3, 9) else "2.21")
    return ("no supported TensorFlow release runs on Python %d.%d: use Python 3.7 (TensorFlow "
            "1.15) or 3.8-3.13 (TensorFlow 2)" % python)


def restored_names() -> Tuple[str, ...]:
    """The names slim_compat restored when this backend loaded (empty for TF 1.15 and 2.12)."""
    tensorflow()
    return _restored


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


def _minor() -> int:
    return int(tensorflow().__version__.split(".")[1])


def _tf_keras() -> bool:
    """Whether Keras 2 is the tf-keras package (TF >= 2.16) rather than tf.keras."""
    return name() == "tf2" and _minor() >= _TF_KERAS_FROM


def keras() -> Any:
    """Keras 2, the Keras of TF1-style graphs: tf.keras up to TF 2.15, tf_keras from 2.16."""
    if not _tf_keras():
        return tensorflow().keras
    return _import_tf_keras("tf.keras is Keras 3; the layers and keras APIs need Keras 2")


def _import_tf_keras(why: str) -> Any:
    try:
        with interrupts.held():
            import tf_keras
    except ImportError:
        raise BackendUnavailableError("TensorFlow %s: %s: pip install tf-keras~=%s.0" % (
            tensorflow().__version__, why, ".".join(tensorflow().__version__.split(".")[:2]))
        ) from None
    return tf_keras


def _layers_shim_needs_tf_keras() -> None:
    """TF 2.15's tf.layers batch normalization (which tf-slim's batch_norm imports too, with
    its default updates_collections) loads tf_keras although its tf.keras is Keras 2: one line
    naming the package when it is missing, rather than a ModuleNotFoundError from TF."""
    from . import slim_compat

    if name() == "tf2" and slim_compat.layers_module_name().startswith("tf_keras."):
        _import_tf_keras("tf.layers' batch normalization (also tf-slim's) is tf-keras's")


def v1_layers() -> Any:
    """tf.compat.v1.layers (conv2d, dense, batch_normalization, ...). From TF 2.16 TF routes it
    to tf-keras only under TF_USE_LEGACY_KERAS, so the same module is taken from tf_keras."""
    if not _tf_keras():
        _layers_shim_needs_tf_keras()
        return tensorflow().compat.v1.layers
    keras()
    import importlib

    return importlib.import_module("tf_keras.api._v1.keras.__internal__.legacy.layers")


def keras3() -> Any:
    """Keras 3 (tf.keras from TF 2.16), for api "keras3"; ProbeConfigError elsewhere."""
    if not _tf_keras():
        raise ProbeConfigError("api='keras3' needs TensorFlow 2.16-2.21, where tf.keras is "
                               "Keras 3; found TensorFlow %s" % tensorflow().__version__)
    with interrupts.held():
        import keras as keras_3

    return keras_3


def keras_of_file(version: Any) -> Any:
    """The Keras that loads a saved model: Keras 3 for a file Keras 3 wrote (``version`` 3.x),
    Keras 2 otherwise (tf_keras from TF 2.16, tf.keras before). One line naming the package
    when it is missing."""
    if str(version).startswith("3."):
        if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
            tensorflow()  # imported here, quietly, before Keras imports it
        try:
            with interrupts.held():
                import keras as keras_3
        except ImportError:
            keras_3 = None
        if keras_3 is None or not str(getattr(keras_3, "__version__", "")).startswith("3."):
            raise BackendUnavailableError("the file was written by Keras %s and needs Keras 3 "
                                          "to load: pip install keras~=3.0 (TensorFlow "
                                          "2.16+)" % version)
        return keras_3
    return keras()


def _slim() -> Any:
    tensorflow()
    try:
        import tf_slim
    except ImportError:
        raise BackendUnavailableError("the TensorFlow 2 backend needs tf-slim for "
                                      "tf.contrib.layers.batch_norm: pip install "
                                      "tf-slim==1.1.0") from None
    _layers_shim_needs_tf_keras()
    return tf_slim


@contextlib.contextmanager
def quiet() -> Iterator[Any]:
    """Yields tf.compat.v1 with TF's Python-side warnings (deprecations, the tf.contrib sunset
    notice) muted, and restores the caller's logging settings afterwards."""
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


def layers_batch_normalization() -> Any:
    """api "layers": tf.layers.batch_normalization."""
    return v1_layers().batch_normalization


def keras_batch_normalization() -> Any:
    """api "keras": the tf.keras.layers.BatchNormalization class (Keras 2)."""
    return keras().layers.BatchNormalization


def assign_moving_average() -> Any:
    """The update contrib and tf.layers use, for api "nn" (not exported under tf.compat.v1)."""
    from tensorflow.python.training import moving_averages

    return moving_averages.assign_moving_average


def object_graph_proto() -> Any:
    """An empty TrackableObjectGraph message: the object graph an object-based checkpoint
    (tf.train.Checkpoint, Keras save_weights) stores under _CHECKPOINTABLE_OBJECT_GRAPH."""
    tensorflow()
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    return trackable_object_graph_pb2.TrackableObjectGraph()


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
        # Keras 2 (the "layers" and "keras" APIs): the keras package up to TF 2.15, tf-keras from
        # 2.16, where the keras package is Keras 3 (api "keras3").
        found["keras"] = _keras_version(keras())
        if _tf_keras():
            found["keras3"] = _keras_version(keras3())
    return found


def _keras_version(module: Any) -> str:
    version = getattr(module, "__version__", None)
    if version is None:  # tf.keras up to TF 2.15 is a view of the keras package
        import keras as package

        version = package.__version__
    return str(version)


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


def function_graph(definition: Any, outer_graph: Any) -> Any:
    """The graph of a FunctionDef of ``outer_graph``'s library (a cond branch of a graph imported
    from a .meta, where TF keeps only the definition), with real ops: outputs in their op's
    order, consumers, shapes. Nested functions are looked up in ``outer_graph``."""
    from tensorflow.python.framework import function_def_to_graph

    with outer_graph.as_default():
        return function_def_to_graph.function_def_to_graph(definition)


def op_def(name: str) -> Any:
    """The OpDef of the op type ``name`` in this TensorFlow, None when it has no such op (TF 1.15
    lacks ops TF 2.x graphs hold, e.g. StatelessRandomGetKeyCounter in variables'
    initializers)."""
    tensorflow()
    from tensorflow.python.framework import op_def_registry

    if hasattr(op_def_registry, "get"):
        return op_def_registry.get(name)
    return op_def_registry.get_registered_ops().get(name)
