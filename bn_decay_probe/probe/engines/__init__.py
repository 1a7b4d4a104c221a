"""The engines that measure a probe's layer, and :func:`choose`, the one place that decides
which engine measures a ProbeConfig.

Every engine is an :class:`~.base.Engine` (run one decay, run many, converge, the matrix's rows)
returning the same ProbeResult, measured with the help of :mod:`..measure`. Modules: ``base``
(the interface and its one-decay-at-a-time defaults), ``tf_graph`` (the TF1-style graph APIs,
through ``session`` for one decay and ``sweep`` for many), ``keras3`` (Keras 3, eagerly).

A new framework's engine (PyTorch, Flax, Haiku, ...) is one module here defining ``ENGINE``,
plus one line in :func:`choose`; its api name goes in ``config.APIS``. Importing this package
imports no framework: :func:`choose` imports the engine's module, which imports its framework
only when it runs.
"""
from __future__ import annotations

from ..config import ProbeConfig
from .base import Engine

__all__ = ["Engine", "choose"]


def choose(config: ProbeConfig) -> Engine:
    """The engine that measures ``config``'s layer, by its api."""
    if config.api == "keras3":
        from .keras3 import ENGINE
    else:
        from .tf_graph import ENGINE
    return ENGINE
