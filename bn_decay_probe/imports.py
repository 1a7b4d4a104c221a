"""The frameworks beside TensorFlow (PyTorch, JAX with Flax and Haiku, Keras 3, ONNX,
safetensors): whether each is installed, the extra that installs it, and importing PyTorch so
that it can share a process with TensorFlow.

Nothing here imports a framework until asked. Importing triton (which torchvision, onnx2torch,
Keras's torch backend and the first torch.optim optimizer import) after TensorFlow >= 2.20
crashes the process (tensorflow/tensorflow#124205: TF loads its LLVM with RTLD_GLOBAL and
triton binds to it). So whichever of the two the package imports second, :func:`block_triton`
runs first: when triton is not loaded yet and TensorFlow is (or is about to be), triton is
marked unavailable (``sys.modules["triton"] = None``), and torch then runs without it
(torch.compile's GPU kernels need it; nothing the package or a CPU user does). A process that
imported triton before TensorFlow keeps it: that order is safe.
"""
from __future__ import annotations

import importlib.util
import sys
from typing import Any, Optional, Sequence

from . import interrupts
from .errors import BackendUnavailableError

# import name -> (what users call it, the extra that installs it)
PACKAGES = {
    "torch": ("PyTorch", "torch"),
    "safetensors": ("safetensors", "torch"),
    "jax": ("JAX", "jax"),
    "flax": ("Flax", "jax"),
    "haiku": ("dm-haiku", "jax"),
    "onnx": ("ONNX", "onnx"),
    "keras": ("Keras 3", "tf2"),
}
# The extras' Python versions (pyproject.toml's markers): where pip installs them.
EXTRA_PYTHONS = "Python 3.10 to 3.13"


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (found on the path; not imported). Keras counts only
    as Keras 3."""
    if module in sys.modules and sys.modules[module] is None:  # marked unimportable
        return False
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken package, or a module without a spec
        return False
    if found and module == "keras":
        return _keras_major() >= 3
    return found


def _keras_major() -> int:
    """The installed keras package's major version (read from its metadata, not imported)."""
    try:
        from importlib import metadata
    except ImportError:  # Python 3.7: no Keras 3 there
        return 0
    try:
        return int(metadata.version("keras").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return 0


# import name -> distribution name, where they differ
_DISTRIBUTIONS = {"haiku": "dm-haiku"}


def distribution(module: str) -> str:
    """The name pip knows ``module``'s package by."""
    return _DISTRIBUTIONS.get(module, module)


def version(module: str) -> str:
    """The installed version of ``module``'s distribution, from its metadata (no import)."""
    from importlib import metadata

    return metadata.version(distribution(module))


def missing(modules: Sequence[str], purpose: str) -> Optional[str]:
    """One line saying what ``purpose`` needs that is not installed and how to install it, or
    None when everything is there."""
    absent = [m for m in modules if not installed(m)]
    if not absent:
        return None
    names = [PACKAGES[m][0] for m in absent]
    extras = sorted({PACKAGES[m][1] for m in absent})
    return ("%s needs %s, which %s not installed: pip install 'bn-decay-probe[%s]' (%s)"
            % (purpose, " and ".join(names), "is" if len(names) == 1 else "are",
               ",".join(extras), EXTRA_PYTHONS))


def require(modules: Sequence[str], purpose: str) -> None:
    """Raises BackendUnavailableError (exit status 2) naming the extra when a module of
    ``modules`` is not installed."""
    reason = missing(modules, purpose)
    if reason:
        raise BackendUnavailableError(reason)


def block_triton(tensorflow_next: bool = False) -> None:
    """Marks triton unavailable when importing it now would crash the process: it is not loaded
    yet and TensorFlow is loaded (or, ``tensorflow_next``, is about to be)."""
    if "triton" in sys.modules:
        return
    if tensorflow_next or "tensorflow" in sys.modules:
        if installed("triton"):
            sys.modules["triton"] = None  # type: ignore[assignment]


def torch(purpose: str) -> Any:
    """The torch module, imported safely beside TensorFlow; BackendUnavailableError naming the
    extra when PyTorch is not installed."""
    require(["torch"], purpose)
    block_triton()
    with interrupts.held():
        import torch as module

    return module
