"""The engines that measure a probe's layer, and :func:`choose`, the one place that decides
which engine measures a ProbeConfig.

Every engine is an :class:`~.base.Engine` (run one decay, run many, converge, the matrix's rows)
returning the same ProbeResult, measured with the help of :mod:`..measure`. Modules: ``base``
(the interface and its one-decay-at-a-time defaults), ``tf_graph`` (the TF1-style graph APIs,
through ``session`` for one decay and ``sweep`` for many), ``keras3`` (Keras 3, eagerly),
``eager`` (the step loop of the frameworks beside TensorFlow), ``pytorch``, ``jax_layers``
(Flax, Haiku) and ``keras3_backends`` (Keras 3 on JAX and PyTorch, in a child process).

A new framework's engine is one module here defining ``ENGINES`` (usually an
:class:`~.eager.EagerEngine` over the framework's :class:`~.eager.Adapter`), plus one line in
``FRAMEWORK_ENGINES``; its api goes in ``frameworks.FRAMEWORKS``. Importing this package
imports no framework: :func:`choose` imports the engine's module, which imports its framework
only when it runs.
"""
from __future__ import annotations

import importlib

from ..config import ProbeConfig
from .base import Engine

__all__ = ["Engine", "choose"]


# The frameworks beside TensorFlow (frameworks.py): api -> the module whose ENGINES[api] it is.
FRAMEWORK_ENGINES = {
    "torch": ".pytorch",
    "torch-cumulative": ".pytorch",
    "flax": ".jax_layers",
    "haiku": ".jax_layers",
    "keras3-jax": ".keras3_backends",
    "keras3-torch": ".keras3_backends",
}


def choose(config: ProbeConfig) -> Engine:
    """The engine that measures ``config``'s layer, by its api."""
    if config.api in FRAMEWORK_ENGINES:
        return importlib.import_module(FRAMEWORK_ENGINES[config.api], __name__).ENGINES[
            config.api]
    if config.api == "keras3":
        from .keras3 import ENGINE
    else:
        from .tf_graph import ENGINE
    return ENGINE
