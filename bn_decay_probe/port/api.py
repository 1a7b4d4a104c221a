"""The entry point, :func:`check_port`: a port's batch norm, pair of layers by pair of layers."""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

from ..checkpoints.batch_norm import NO_DECAY, LayerFile
from . import checks, pairing, sides
from . import mapping as names
from .result import CODES, UNPAIRED_LAYER, LayerPair, PortCheck, PortFinding


def check_port(source: Any, target: Any, *, mapping: Any = None, target_eps: Any = None,
               target_momentum: Any = None) -> PortCheck:
    """Checks that ``target`` (the ported model) keeps ``source``'s batch norm.

    ``source``, ``target``: a TF checkpoint (Saver or object-based: a prefix, one of its files
    or a directory), a PyTorch state dict (.pt, .pth, .bin), a .safetensors file, an ONNX
    model (.onnx), or a live torch.nn.Module or Keras model. ``mapping``: name pairs (a --map
    file's path, a dict source -> target, or a list of pairs) where pairing by name and network
    order leaves doubt. ``target_eps``: the target's epsilon when it stores none (a state dict;
    default PyTorch's 1e-5, said in the notes). ``target_momentum``: the target's momentum in
    PyTorch's sense (1 - decay) when it stores none; without it momentum is not checked.

    Arguments and paths are checked before any framework is imported; bad ones raise
    ProbeConfigError (a CheckpointError for files), a missing framework
    BackendUnavailableError naming the extra to install.
    """
    eps, momentum = sides.check_target_values(target_eps, target_momentum)
    pairs_given = names.load(mapping)
    kinds = sides.kind(source, "source"), sides.kind(target, "target")
    source_layers, source_graph = sides.read(source, kinds[0])
    target_layers, target_graph = sides.read(target, kinds[1])
    target_layers, notes, origins = sides.with_target_values(target_layers, eps, momentum)
    found = pairing.pair(source_layers, target_layers, pairs_given)
    pairs: List[LayerPair] = []
    findings: List[PortFinding] = []
    for s, t, how in found.pairs:
        pair, pair_findings = checks.check_pair(source_layers.layers[s],
                                                target_layers.layers[t], how,
                                                source_layers.layers)
        pairs.append(pair)
        findings += pair_findings
    for role, position, why in found.unpaired:
        layer = (source_layers if role == "source" else target_layers).layers[position]
        pairs.append(LayerPair(layer.name if role == "source" else None,
                               layer.name if role == "target" else None, layer.channels, "",
                               codes=(UNPAIRED_LAYER,)))
        findings.append(checks.finding(UNPAIRED_LAYER, layer.name, "%s layer (%d channels): %s"
                                       % (role, layer.channels, why)))
    paired = [(source_layers.layers[s], target_layers.layers[t]) for s, t, _ in found.pairs]
    if found.ignored:
        notes.append("the map's %d other pair(s) name no batch-norm layer (conv weights and "
                     "the like): left out" % found.ignored)
    notes += _read_notes(source_layers, target_layers, paired)
    order = {p.label: i for i, p in enumerate(pairs)}
    findings.sort(key=lambda f: (order.get(f.layer, len(order)), CODES.index(f.code)))
    return PortCheck(
        sides.describe("source", source_layers, source_graph),
        sides.describe("target", target_layers, target_graph, origins), tuple(pairs),
        tuple(findings), tuple(_not_checked(source_layers, target_layers, paired,
                                            (source_graph, target_graph))), tuple(notes),
        checks.TOLERANCE)


def _not_checked(source: LayerFile, target: LayerFile, paired: List[Tuple[Any, Any]],
                 graphs: Tuple[Optional[str], Optional[str]]) -> List[str]:
    """What the verdict cannot vouch for: epsilon or momentum one side does not hold."""
    missing = []
    for role, side, position in (("source", source, 0), ("target", target, 1)):
        no_epsilon = [pair for pair in paired if pair[position].epsilon is None]
        if no_epsilon:
            missing.append("epsilon of %d layer pair(s): the %s (%s) stores none%s"
                           % (len(no_epsilon), role, side.format,
                              _no_graph(side, graphs[position])))
    no_decay = [s.name for s, _ in paired if s.decay is None]
    no_momentum = [t.name for _, t in paired if t.momentum is None
                   and t.convention != NO_DECAY]
    if no_decay:
        missing.append("momentum of %d layer pair(s): the source (%s) holds no decay%s"
                       % (len(no_decay), source.format, _no_graph(source, graphs[0])))
    elif no_momentum:
        missing.append("momentum of %d layer pair(s): the target (%s) stores none%s"
                       % (len(no_momentum), target.format,
                          "; --target-momentum M (target_momentum=M) checks the momentum your "
                          "model code gives it" if target.format in sides.UNSTORED else
                          _no_graph(target, graphs[1])))
    return missing


def _no_graph(side: LayerFile, graph: Optional[str]) -> str:
    """Why a TF checkpoint holds no epsilon or decay, said after "stores none"."""
    if not side.format.startswith("TF"):
        return ""
    if side.format.startswith("TF object checkpoint"):
        return (" (an object checkpoint keeps only variables: the live Keras model, or its "
                ".keras or .h5 file, holds them)")
    if graph:
        return " (its .meta graph has no such layer, or builds it otherwise than TF's layers)"
    return " (a TF checkpoint keeps them in its .meta graph, and it has none)"


def _read_notes(source: LayerFile, target: LayerFile, paired: List[Tuple[Any, Any]]) -> List[str]:
    notes = list(source.notes) + list(target.notes)
    defaults = [t for _, t in paired if "momentum" in t.defaults]
    if defaults:
        notes.append("%d target layer(s) have no momentum attribute, so the format's default "
                     "(%g) applies" % (len(defaults), defaults[0].momentum))
    unread = [side.format for side in (source, target)
              if any(r.gamma is None for r in side.layers)]
    if unread:
        notes.append("gamma and beta are not read from the %s: the inference check takes the "
                     "other side's" % " and ".join(unread))
    return notes
