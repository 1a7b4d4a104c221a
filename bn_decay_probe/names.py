"""The names every part agrees on: batch norm's two moving statistics, the probe's phases and
snapshots, how a variable's name splits into its layer and its short name, and the natural order
of names ("block_2" before "block_10")."""
from __future__ import annotations

import re
from typing import Optional, Tuple

MOVING = ("moving_mean", "moving_variance")
PHASES = ("train", "test")
SNAPSHOTS = ("before_train", "after_train", "before_test", "after_test")
# A variable name TF made unique by a suffix on its last part: two Keras layers of one name (in
# the two branch functions of a TF 2.x cond) give "batch_normalization/moving_mean_1".
_SUFFIXED = re.compile(r"^(%s)(_\d+)$" % "|".join(MOVING))


def short_name(name: str) -> str:
    """'probe/BatchNorm/moving_mean:0' -> 'moving_mean'."""
    return name.split(":")[0].split("/")[-1]


def moving_name(name: str) -> Optional[Tuple[str, str]]:
    """("layer/prefix", "moving_mean") for a moving statistic's variable name, else None. A
    suffixed pair (".../moving_mean_1", ".../moving_variance_1") is the layer ".../_1"."""
    layer, _, short = name.rpartition("/")
    if not layer:
        return None
    if short in MOVING:
        return layer, short
    suffixed = _SUFFIXED.match(short)
    return ("%s/%s" % (layer, suffixed.group(2)), suffixed.group(1)) if suffixed else None


def variable_name(layer: str, short: str) -> str:
    """The variable name of a layer's moving statistic: moving_name's inverse."""
    scope, _, last = layer.rpartition("/")
    if scope and re.match(r"^_\d+$", last):
        return "%s/%s%s" % (scope, short, last)
    return "%s/%s" % (layer, short)


def natural_key(name: str) -> Tuple:
    """Sorts "block_2" before "block_10" (and "_operations/2" before "_operations/10")."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))
