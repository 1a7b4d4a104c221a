"""The name map of a port (``--map FILE``, or ``mapping=`` in Python): pairs of a source name
and a target name, as a port script's name map writes them.

A file is JSON (an object ``{"source name": "target name"}``, or a list of two-name lists) or
text (one pair a line, two names separated by whitespace; ``#`` starts a comment). A name is a
batch-norm layer's (``resnet_v1_50/conv1/BatchNorm``, ``bn1``) or one of its variables'
(``resnet_v1_50/conv1/BatchNorm/moving_mean``, ``bn1.running_mean``), so a whole port's
variable map can be given as it is: pairs that name no batch-norm layer on either side (conv
weights) are left out, and a layer's variables pair its layer once.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..checkpoints.batch_norm import BatchNormRecord
from ..errors import ProbeConfigError

Pairs = List[Tuple[str, str]]
# What a variable's name adds to its layer's: fields (TF, Keras, PyTorch), TF's output index and
# an object checkpoint's suffix.
FIELDS = ("gamma", "beta", "moving_mean", "moving_variance", "weight", "bias", "running_mean",
          "running_var", "num_batches_tracked")
_SUFFIXES = ("/.ATTRIBUTES/VARIABLE_VALUE", ":0")


def load(mapping: Any) -> Optional[Pairs]:
    """``mapping`` (None, a path, a dict or a sequence of pairs) as a list of name pairs;
    ProbeConfigError (one line) for a file that cannot be read or parsed."""
    if mapping is None:
        return None
    if isinstance(mapping, (str, os.PathLike)):
        return _read(os.fspath(mapping))
    if isinstance(mapping, dict):
        return _checked(list(mapping.items()), "mapping")
    if isinstance(mapping, (list, tuple)):
        return _checked([tuple(p) if isinstance(p, (list, tuple)) else p for p in mapping],
                        "mapping")
    raise ProbeConfigError("mapping must be a file path, a dict of source name to target name, "
                           "or a list of (source, target) pairs, got %s" % type(mapping).__name__)


def _read(path: str) -> Pairs:
    try:
        with open(path) as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ProbeConfigError("--map %s cannot be read: %s"
                               % (path, getattr(exc, "strerror", None) or exc)) from None
    if text.lstrip()[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ProbeConfigError("--map %s is not valid JSON: %s" % (path, exc)) from None
        pairs = list(data.items()) if isinstance(data, dict) else data
        if not isinstance(pairs, list):
            raise ProbeConfigError("--map %s: JSON must be an object or a list of pairs" % path)
        return _checked([tuple(p) if isinstance(p, list) else p for p in pairs], path)
    pairs: Pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2:
            raise ProbeConfigError("--map %s line %d: expected two names (source target), got "
                                   "%d" % (path, number, len(words)))
        pairs.append((words[0], words[1]))
    return _checked(pairs, path)


def _checked(pairs: Sequence[Any], where: str) -> Pairs:
    for index, pair in enumerate(pairs):
        if not (isinstance(pair, tuple) and len(pair) == 2
                and all(isinstance(name, str) and name for name in pair)):
            raise ProbeConfigError("%s: entry %d is not a pair of two names: %r"
                                   % (where, index + 1, pair))
    if not pairs:
        raise ProbeConfigError("%s holds no name pair" % where)
    return list(pairs)


def layer_name(name: str) -> str:
    """A variable's name without its field and suffixes (the layer's name); a layer's name as
    it is."""
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            name = name[:-len(suffix)]
    for separator in ("/", "."):
        head, _, field = name.rpartition(separator)
        if head and field in FIELDS:
            return head
    return name


def index(layers: Sequence[BatchNormRecord]) -> Dict[str, int]:
    """Every name a map may give a layer by (its name, its keys) -> its position."""
    found: Dict[str, int] = {}
    for position, layer in enumerate(layers):
        for name in (layer.name,) + layer.keys:
            found.setdefault(name, position)
            found.setdefault(layer_name(name), position)
    return found
