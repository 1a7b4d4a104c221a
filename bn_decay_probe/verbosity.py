"""How much the library says besides its results: set_verbosity() (no TensorFlow import).

- "quiet": nothing but results and errors; not even the CPU fallback warning.
- "default": TensorFlow's C++ log lines and Python deprecation warnings hidden; the
  DeviceFallbackWarning (no GPU, running on the CPU) once per process.
- "verbose": TensorFlow's own lines and warnings too.
"""
from __future__ import annotations

from .errors import ProbeConfigError

LEVELS = ("quiet", "default", "verbose")
_level = "default"


def set_verbosity(level: str) -> str:
    """Sets how much bn_decay_probe and TensorFlow print: "quiet", "default" or "verbose"
    (see the module docstring); returns the previous level.

    TensorFlow reads its C++ log level once, when it is imported (by the first probe): choose
    "verbose" before that to see those lines. A TF_CPP_MIN_LOG_LEVEL you set yourself is kept.
    """
    global _level
    if level not in LEVELS:
        raise ProbeConfigError("verbosity must be one of %s, got %r" % (", ".join(LEVELS), level))
    from . import backend  # does not import TensorFlow

    previous, _level = _level, level
    backend.set_verbose(level == "verbose")
    return previous


def level() -> str:
    """The current level."""
    return _level
