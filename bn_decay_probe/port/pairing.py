"""Pairing a port's batch-norm layers: the source's with the target's.

In this order: the name map's pairs (``--map``); then the same name on both sides; then a
distinctive part of a name found in exactly one layer of the other side with as many channels
(``bn_Conv1`` in onnx2torch's ``mobilenetv2_0/35_64/bn_Conv1/FusedBatchNormV3``); then the rest
by network order and channel counts, which must leave no doubt: one alignment of the two
channel sequences, layers left over on one side only (a layer the port dropped). When the
order is unknown, or several alignments fit, or both sides keep layers the other lacks (the
orders differ, as slim's resnet_v1 and torchvision's resnet50 do), it raises ProbeConfigError
saying so and asking for ``--map``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ..checkpoints.batch_norm import BatchNormRecord, LayerFile
from ..errors import ProbeConfigError
from . import mapping as names

# How a pair was made.
BY_MAP, BY_NAME, BY_ORDER = "map", "name", "order"
# Parts of layer names that name no particular layer.
_GENERIC = frozenset({"batchnorm", "fusedbatchnorm", "fusedbatchnormv2", "fusedbatchnormv3",
                      "batch_norm", "bn"})
_PARTS = re.compile(r"[/.:]")
_MANY = 2  # alignments counted up to this: more than one is ambiguous


@dataclass(frozen=True)
class Pairing:
    pairs: Tuple[Tuple[int, int, str], ...]  # (source position, target position, how)
    unpaired: Tuple[Tuple[str, int, str], ...]  # ("source" | "target", position, why)
    ignored: int  # map pairs that name no batch-norm layer on either side


def pair(source: LayerFile, target: LayerFile, given: Optional[names.Pairs]) -> Pairing:
    pairs: List[Tuple[int, int, str]] = []
    unpaired: List[Tuple[str, int, str]] = []
    ignored = 0
    if given:
        ignored = _mapped(source, target, given, pairs, unpaired)
    done_source = {p[0] for p in pairs} | {u[1] for u in unpaired if u[0] == "source"}
    done_target = {p[1] for p in pairs} | {u[1] for u in unpaired if u[0] == "target"}
    rest_source = [i for i in range(len(source.layers)) if i not in done_source]
    rest_target = [i for i in range(len(target.layers)) if i not in done_target]
    for how in (_same_name, _distinctive_part):
        found = how(source.layers, target.layers, rest_source, rest_target)
        pairs += [(s, t, BY_NAME) for s, t in found]
        rest_source = [i for i in rest_source if i not in {s for s, _ in found}]
        rest_target = [i for i in rest_target if i not in {t for _, t in found}]
    aligned, left_source, left_target = _by_order(source, target, rest_source, rest_target)
    pairs += [(s, t, BY_ORDER) for s, t in aligned]
    unpaired += [("source", i, "no layer of the target pairs with it") for i in left_source]
    unpaired += [("target", i, "no layer of the source pairs with it") for i in left_target]
    return Pairing(tuple(sorted(pairs)), tuple(unpaired), ignored)


def _mapped(source: LayerFile, target: LayerFile, given: names.Pairs,
            pairs: List[Tuple[int, int, str]], unpaired: List[Tuple[str, int, str]]) -> int:
    """The map's layer pairs into ``pairs``; a layer the map pairs with a name the other side
    lacks into ``unpaired``. Returns how many map pairs named no batch-norm layer."""
    found_source, found_target = names.index(source.layers), names.index(target.layers)
    chosen: Dict[int, Tuple[Optional[int], str]] = {}
    chosen_back: Dict[int, int] = {}
    ignored = 0
    for source_name, target_name in given:
        s, t = _find(found_source, source_name), _find(found_target, target_name)
        if s is None and t is None:
            ignored += 1
            continue
        if s is None:
            if t is not None and t not in chosen_back:
                unpaired.append(("target", t, "the map pairs it with %s, which the source does "
                                 "not have" % source_name))
                chosen_back[t] = -1
            continue
        earlier = chosen.get(s)
        if earlier is not None and earlier[0] != t:
            raise ProbeConfigError(
                "the map pairs source layer %s with both %s and %s; give one target per layer"
                % (source.layers[s].name, earlier[1], target_name))
        if t is not None and chosen_back.get(t, s) != s:
            raise ProbeConfigError(
                "the map pairs target layer %s with two source layers, %s and %s"
                % (target.layers[t].name, source.layers[chosen_back[t]].name
                   if chosen_back[t] >= 0 else "a missing one", source_name))
        chosen[s] = (t, target_name)
        if t is not None:
            chosen_back[t] = s
    for s, (t, target_name) in chosen.items():
        if t is None:
            unpaired.append(("source", s, "the map pairs it with %s, which the target does not "
                             "have" % target_name))
            continue
        if source.layers[s].channels != target.layers[t].channels:
            raise ProbeConfigError(
                "the map pairs %s (%d channels) with %s (%d channels); a layer pairs with one of "
                "as many channels" % (source.layers[s].name, source.layers[s].channels,
                                      target.layers[t].name, target.layers[t].channels))
        pairs.append((s, t, BY_MAP))
    return ignored


def _find(found: Dict[str, int], name: str) -> Optional[int]:
    """The layer a map's name names: itself, or the layer of the variable it names."""
    position = found.get(name)
    return found.get(names.layer_name(name)) if position is None else position


def _same_name(source: Sequence[BatchNormRecord], target: Sequence[BatchNormRecord],
               rest_source: List[int], rest_target: List[int]) -> List[Tuple[int, int]]:
    by_name = {target[t].name: t for t in rest_target}
    return [(s, by_name[source[s].name]) for s in rest_source
            if source[s].name in by_name
            and source[s].channels == target[by_name[source[s].name]].channels]


def _parts(name: str) -> List[str]:
    return [part for part in _PARTS.split(name) if part]


def _key(name: str) -> Optional[str]:
    """The last part of a name that names a particular layer (not a number, not generic)."""
    for part in reversed(_parts(name)):
        if not part.isdigit() and part.lower() not in _GENERIC:
            return part
    return None


def _distinctive_part(source: Sequence[BatchNormRecord], target: Sequence[BatchNormRecord],
                      rest_source: List[int], rest_target: List[int]) -> List[Tuple[int, int]]:
    """Pairs (s, t) where one's key is a part of the other's name, and of no other layer's on
    either side."""
    def matches(a: BatchNormRecord, b: BatchNormRecord) -> bool:
        key_a, key_b = _key(a.name), _key(b.name)
        return a.channels == b.channels and (
            (key_a is not None and key_a in _parts(b.name))
            or (key_b is not None and key_b in _parts(a.name)))

    candidates = {s: [t for t in rest_target if matches(source[s], target[t])]
                  for s in rest_source}
    found = []
    for s, targets in candidates.items():
        if len(targets) == 1 and sum(targets[0] in other for other in candidates.values()) == 1:
            found.append((s, targets[0]))
    return found


def _by_order(source: LayerFile, target: LayerFile, rest_source: List[int],
              rest_target: List[int]) -> Tuple[List[Tuple[int, int]], List[int], List[int]]:
    """The rest aligned by network order and channel counts, and what is left on each side."""
    if not rest_source or not rest_target:
        return [], rest_source, rest_target
    unordered = [side for side in (source, target) if not side.ordered]
    if unordered:
        raise ProbeConfigError(
            "cannot pair %d source and %d target batch-norm layer(s) by name, and %s keeps no "
            "network order (%s); give --map FILE with their names in pairs"
            % (len(rest_source), len(rest_target), unordered[0].path,
               "a checkpoint without its .meta graph keeps its variables sorted by name"
               if unordered[0].format.startswith("TF") else unordered[0].format))
    a = [source.layers[i].channels for i in rest_source]
    b = [target.layers[i].channels for i in rest_target]
    length, count = _alignments(a, b)
    matched = _one_alignment(a, b, length)
    left_a = [rest_source[i] for i in range(len(a)) if i not in {m[0] for m in matched}]
    left_b = [rest_target[j] for j in range(len(b)) if j not in {m[1] for m in matched}]
    if left_a and left_b:
        raise ProbeConfigError(
            "cannot pair by network order and channel counts: the source's %d and the target's "
            "%d remaining batch-norm layer(s) have channel counts in another order (%s in the "
            "source, %s in the target); give --map FILE with their names in pairs"
            % (len(a), len(b), _sequence(a), _sequence(b)))
    if count > 1:
        side, left = ("source", left_a) if left_a else ("target", left_b)
        layers = source.layers if left_a else target.layers
        raise ProbeConfigError(
            "cannot pair by network order and channel counts: the %s has %d batch-norm layer(s) "
            "more than the other side, and which one is ambiguous (%s has as many channels as "
            "its neighbours); give --map FILE with their names in pairs"
            % (side, len(left), layers[left[0]].name))
    return [(rest_source[i], rest_target[j]) for i, j in matched], left_a, left_b


def _sequence(channels: List[int], shown: int = 8) -> str:
    text = ", ".join(map(str, channels[:shown]))
    return "[%s%s]" % (text, ", ..." if len(channels) > shown else "")


def _alignments(a: List[int], b: List[int]) -> Tuple[List[List[int]], int]:
    """The longest-common-subsequence table of two channel sequences (suffix lengths), and how
    many distinct alignments (sets of matched pairs) reach its length, counted up to _MANY."""
    n, m = len(a), len(b)
    length = [[0] * (m + 1) for _ in range(n + 1)]
    count = [[1] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            best = max(length[i + 1][j], length[i][j + 1],
                       length[i + 1][j + 1] + 1 if a[i] == b[j] else 0)
            length[i][j] = best
            ways = 0
            if a[i] == b[j] and length[i + 1][j + 1] + 1 == best:
                ways += count[i + 1][j + 1]
            if length[i + 1][j] == best:
                ways += count[i + 1][j]
            if length[i][j + 1] == best:
                ways += count[i][j + 1]
            if length[i + 1][j + 1] == best:  # counted twice above
                ways -= count[i + 1][j + 1]
            count[i][j] = min(ways, _MANY)
    return length, count[0][0]


def _one_alignment(a: List[int], b: List[int],
                   length: List[List[int]]) -> List[Tuple[int, int]]:
    i = j = 0
    matched = []
    while i < len(a) and j < len(b):
        if a[i] == b[j] and length[i][j] == length[i + 1][j + 1] + 1:
            matched.append((i, j))
            i, j = i + 1, j + 1
        elif length[i + 1][j] == length[i][j]:
            i += 1
        else:
            j += 1
    return matched
