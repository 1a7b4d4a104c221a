"""The names every part agrees on: batch norm's two moving statistics, the probe's phases and
snapshots, and how a variable's name splits into its layer and its short name."""
from __future__ import annotations

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
