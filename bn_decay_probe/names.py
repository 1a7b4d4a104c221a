"""The names every part agrees on: batch norm's two moving statistics, the probe's phases and
snapshots, how a variable's name splits into its layer and its short name, and the natural order
of names ("block_2" before "block_10")."""
from __future__ import annotations

import re
from typing import Optional, Tuple

MOVING = ("moving_mean", "moving_variance")
PHASES = ("train", "test")
SNAPSHOTS = ("before_train", "after_train", "before_test", "after_test")


def short_name(name: str) -> str:
    """'probe/BatchNorm/moving_mean:0' -> 'moving_mean'."""
    return name.split(":")[0].split("/")[-1]


def moving_name(name: str) -> Optional[Tuple[str, str]]:
    """("layer/prefix", "moving_mean") for a moving statistic's variable name, else None."""
    layer, _, short = name.rpartition("/")
    return (layer, short) if layer and short in MOVING else None


def natural_key(name: str) -> Tuple:
    """Sorts "block_2" before "block_10" (and "_operations/2" before "_operations/10")."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))
