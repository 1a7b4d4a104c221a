"""The two entry points: :func:`diagnose_checkpoint` and :func:`diagnose_graph`. They gather
what the readers find into :class:`~.findings.LayerFacts`, ask :mod:`.findings`, and say what
could not be checked."""
from __future__ import annotations

import numbers
import os
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from ..checkpoints import meta, paths, sniff, tf2_objects
from ..checkpoints.graphwalk import ancestors
from ..checkpoints.reader import read_checkpoint
from ..checkpoints.step_counter import choose_step_count, is_step_counter_name
from ..errors import CheckpointError, ProbeConfigError, first_line
from ..names import MOVING, natural_key
from ..probe.config import check_decay
from . import graph_reader, keras_support, train_step
from .keras_facts import KerasFacts, keras_facts, read_saved_keras
from .keras_findings import keras_value_findings
from .diagnosis import (DECAY_FROM_GRAPH, DECAY_GIVEN, DECAY_UNKNOWN, Diagnosis, LayerSummary,
                        recalibration_note,
                        Statistic, StepCount, ordered_findings)
from .findings import (DEFAULT_THRESHOLD, NOT_RUN, RUN, LayerFacts, can_check_convergence,
                       frozen, value_findings, wiring_findings)

# A train step the facts are read for: (its name, the ops it runs, whether it feeds the training
# switch True), one per train op of the graph.
TrainRun = Tuple[str, Set[Any], bool]


def check_threshold(threshold: Any) -> float:
    if (isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, numbers.Real)
            or not 0.0 < float(threshold) <= 1.0):
        raise ProbeConfigError("threshold must be a number in (0, 1] (the largest weight "
                               "decay**steps left on the initial values), got %r" % (threshold,))
    return float(threshold)


def check_steps(steps: Any) -> Optional[int]:
    if steps is None:
        return None
    if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, numbers.Integral) \
            or steps < 0:
        raise ProbeConfigError("steps must be a whole number >= 0 (the train steps that ran), "
                               "got %r" % (steps,))
    return int(steps)


def _check_options(decay: Any, threshold: Any, steps: Any
                   ) -> Tuple[Optional[float], float, Optional[int]]:
    return ((None if decay is None else check_decay(decay)), check_threshold(threshold),
            check_steps(steps))


# ---------------------------------------------------------------------------------- checkpoint

# What diagnose_checkpoint reads, for the message on anything else.
READS = ("TensorFlow checkpoints (tf.train.Saver, tf.train.Checkpoint, save_weights), "
         "SavedModel directories, and Keras .keras, .weights.h5 and .h5 files")


def diagnose_checkpoint(path: Any, decay: Any = None, threshold: Any = DEFAULT_THRESHOLD,
                        steps: Any = None) -> Diagnosis:
    """Diagnoses the batch-norm moving statistics in a checkpoint or a saved Keras model.

    ``path`` is a checkpoint prefix (``model.ckpt-1000``), one of its files (``.index``,
    ``.data-*``, ``.meta``), a directory (its latest checkpoint, by the ``checkpoint`` file), a
    SavedModel directory, or a Keras ``.keras``, ``.weights.h5`` or ``.h5`` file (read without
    TensorFlow); anything else is refused in one line naming what it is.
    The step count comes from the step counter saved (``global_step``, a Keras optimizer's
    ``iter`` / ``_iterations`` / ``iterations``), unless ``steps`` is given. Each layer's decay
    comes from the ``.meta`` graph beside a TF1 checkpoint (tf.train.Saver writes it), or from the
    momentum in a Keras model's config, unless ``decay`` is given; the graph also gives the
    layers' network order and tells which API built them and how they were trained. TF 2.x Keras
    models (a Keras file, a SavedModel, a TF 2 object checkpoint) get Keras's rules
    (:mod:`.keras_findings`).
    """
    decay, threshold, steps = _check_options(decay, threshold, steps)
    prefix = paths.existing_prefix(path)
    where, kind = _kind(prefix)
    if kind.kind == sniff.SAVED_MODEL or kind.keras:
        keras = keras_facts(read_saved_keras(where, kind), decay)
        return _keras_diagnosis(keras, decay, threshold, steps)
    from .. import backend

    with backend.quiet() as tf1:
        if os.path.isdir(prefix):
            prefix = paths.latest_checkpoint(tf1, prefix)
        # A TF 2 object checkpoint of a Keras model has no graph to read: Keras's rules.
        saved = (None if os.path.isfile(prefix + ".meta") else
                 tf2_objects.read_object_checkpoint(tf1, prefix))
        if saved is not None:
            return _keras_diagnosis(keras_facts(saved, decay), decay, threshold, steps)
        contents = read_checkpoint(tf1, prefix)
        graph, graph_note = _meta_graph(tf1, prefix)
        in_graph: Dict[str, graph_reader.BatchNormLayer] = {}
        runs: List[TrainRun] = []
        if graph is not None:
            in_graph = {layer.name: layer for layer in graph_reader.find_batch_norm_layers(
                tf1, graph)}
            runs = [(root.name, ancestors([root]), train_step.feeds_learning_phase(root))
                    for root in train_step.train_roots(tf1, graph)]
    notes = [graph_note] if graph_note else []
    if graph is not None and not runs:
        notes.append("the .meta graph has no train step (no op applies gradients): whether the "
                     "update ops ran is not known from it")
    notes += _several_steps_note(runs)
    copies = graph_reader.branch_copies(list(in_graph.values()))
    facts = []
    for key, (mean, variance) in contents.statistics.items():
        variable_prefix = contents.variable_prefixes.get(key, key)
        layer = _layer_facts(variable_prefix, mean.size, in_graph.get(variable_prefix), runs,
                             decay, copies)
        layer.mean, layer.variance = mean, variance
        layer.recalibrated = contents.recalibrated(key)
        position = list(in_graph).index(variable_prefix) if variable_prefix in in_graph else None
        layer.sort_key = (position is None, position or 0, natural_key(key))
        facts.append((layer, key if key != variable_prefix else None))
    facts.sort(key=lambda item: item[0].sort_key)
    recalibrated = sum(layer.recalibrated for layer, _ in facts)
    if recalibrated:
        notes.append(recalibration_note(recalibrated, contents.repair or {}))
    step_count = choose_step_count(contents.step_counters, steps)
    return _diagnosis("checkpoint", prefix, step_count, decay, threshold, facts, [], notes,
                      prefix + ".meta" if graph is not None else None)


def _kind(prefix: str) -> Tuple[str, sniff.PathKind]:
    """(the path to read, what it is): a SavedModel also when given by its variables' prefix.
    One line (exit 2) for a file the doctor does not read."""
    saved_model = os.path.dirname(os.path.dirname(prefix))
    if prefix.endswith(os.sep + tf2_objects.SAVED_MODEL_VARIABLES):
        kind = sniff.sniff(saved_model)
        if kind.kind == sniff.SAVED_MODEL:
            return saved_model, kind
    kind = sniff.sniff(prefix)
    if kind.kind == sniff.OTHER:
        raise CheckpointError("%s is %s; the doctor reads %s" % (prefix, kind.what, READS))
    return prefix, kind


def _keras_diagnosis(keras: KerasFacts, decay: Optional[float], threshold: float,
                     steps: Optional[int]) -> Diagnosis:
    return _diagnosis(keras.source, keras.path, choose_step_count(keras.counters, steps), decay,
                      threshold, keras.layers, [], keras.notes, None, keras=keras)


def _meta_graph(tf1: Any, prefix: str) -> Tuple[Any, Optional[str]]:
    """The graph of the .meta file beside the checkpoint, imported into a graph of its own;
    (None, why) when there is none or this TensorFlow cannot import it. A damaged .meta is an
    error (CheckpointError), not a missing graph."""
    if not os.path.exists(prefix + ".meta"):
        return None, ("no .meta graph beside the checkpoint: decay, layer order and training "
                      "mode not read from a graph")
    definition = meta.read_meta(tf1, prefix)
    try:
        graph, _ = meta.import_graph(tf1, prefix, definition)
    except CheckpointError as exc:  # it only costs the graph's facts
        return None, ("the graph could not be read: %s; decay, layer order and training mode "
                      "not read from it" % exc)
    return graph, None


def _several_steps_note(runs: Sequence[TrainRun]) -> List[str]:
    if len(runs) < 2:
        return []
    return ["the graph has %d train steps (%s) and does not show which one ran: a finding "
            "that depends on it names the cause and the fix for each"
            % (len(runs), ", ".join(name for name, _, _ in runs))]


def _layer_facts(name: str, channels: Optional[int],
                 layer: Optional[graph_reader.BatchNormLayer], runs: Sequence[TrainRun],
                 decay: Optional[float], copies: Dict[str, str],
                 collected: Optional[Set[Any]] = None) -> LayerFacts:
    """The facts of one layer under all the train steps together, and (several train steps)
    under each of them."""
    run = set().union(*(ops for _, ops, _ in runs)) if runs else None
    facts = _facts(name, channels, layer, run, decay, any(fed for _, _, fed in runs), collected)
    if layer is None:
        return facts
    facts.copy_of = copies.get(layer.name)
    if len(runs) > 1:
        alternatives = []
        for step, ops, fed in runs:
            alternative = _facts(name, channels, layer, ops, decay, fed, collected)
            alternative.train_step, alternative.copy_of = step, facts.copy_of
            alternatives.append(alternative)
        facts.alternatives = tuple(alternatives)
    return facts


def _facts(name: str, channels: Optional[int], layer: Optional[graph_reader.BatchNormLayer],
           run: Optional[Set[Any]], decay: Optional[float], fed_true: bool,
           collected: Optional[Set[Any]] = None) -> LayerFacts:
    """What the doctor knows of one layer; ``run``: the ops the train step runs (None: not
    known)."""
    facts = LayerFacts(name, channels, decay=decay)
    if layer is None:
        return facts
    facts.kind, facts.mode = layer.kind, layer.mode
    facts.update_ops = tuple(op.name for op in layer.update_ops)
    if facts.decay is None:
        facts.decay = layer.decay
    if layer.switch is not None:
        facts.switch, facts.switch_default = layer.switch.name, layer.switch.default
        facts.keras_learning_phase = layer.switch.keras_learning_phase
    facts.switch_fed_true = fed_true
    if run is not None and layer.update_ops:
        missing = [op for op in layer.update_ops if op not in layer.in_place and op not in run]
        facts.updates = NOT_RUN if missing else RUN
        facts.missing_updates = tuple(op.name for op in missing)
        facts.missing_outside_collection = (collected is not None and
                                            not any(op in collected for op in missing))
    elif run is not None and layer.mode == graph_reader.INFERENCE:
        facts.updates = NOT_RUN
    # Outside any cond: a test branch the train step reaches only through a cond on its switch
    # (tf.cond(is_training, ...)) is not run by it in inference mode.
    facts.inference_in_train_step = bool(
        run is not None and facts.updates != RUN
        and any(op in run and not branches for op, branches in layer.inference_sites))
    return facts


# ---------------------------------------------------------------------------------------- graph

def diagnose_graph(graph: Any, train_op: Any = None, session: Any = None, decay: Any = None,
                   threshold: Any = DEFAULT_THRESHOLD, steps: Any = None) -> Diagnosis:
    """Diagnoses how ``graph`` runs its batch-norm update ops, without changing the graph.

    ``graph``: a tf.Graph, or a Keras model built in TF1 graph mode (its graph, its train
    function once Model.fit built it, and the session Keras holds its values in).
    ``train_op``: what runs at each train step -- an op, tensor, variable, a list of them, or a
    Keras train function (``model.train_function``, which feeds the learning phase 1). Without
    it, the graph's own train steps are taken (the ops that apply gradients and that nothing
    else runs: minimize()'s op, Model.fit's train function), or, when there is none, the ops in
    UPDATE_OPS. ``session``: a session on ``graph`` whose variables hold values; with it the
    value findings are checked too, with each layer's decay read from its update ops unless
    ``decay`` is given, and the step count read from the graph's step counter unless ``steps``
    is given.
    """
    decay, threshold, steps = _check_options(decay, threshold, steps)
    keras = keras_support.KerasTraining()
    if keras_support.is_keras_model(graph):
        keras = keras_support.from_model(graph)
        if keras.graph is None:
            raise ProbeConfigError("the Keras model has no weights yet: build it (call it on "
                                   "an input) in a TF1 graph first")
        graph = keras.graph
        if train_op is None and keras.train_ops:
            train_op = keras.train_ops
        session = session if session is not None else keras.session
    if keras_support.is_train_function(train_op):
        function = keras_support.from_train_function(train_op)
        train_op, keras.feeds_learning_phase = function.train_ops, function.feeds_learning_phase
    from .. import backend

    with backend.quiet() as tf1:
        _check_graph_arguments(tf1, graph, train_op, session)
        layers = graph_reader.find_batch_norm_layers(tf1, graph)
        graph_reader.require_layers(layers)
        collected_ops = train_step.collected_update_ops(tf1, graph)
        collected = ancestors(collected_ops)
        notes = []
        fed = keras.feeds_learning_phase
        if train_op is not None:
            runs = [("the train op", ancestors(train_step.as_ops(tf1, train_op)), fed)]
        else:
            roots = train_step.train_roots(tf1, graph)
            runs = [(root.name, ancestors([root]), fed or train_step.feeds_learning_phase(root))
                    for root in roots] or [("UPDATE_OPS", collected, fed)]
            notes.append("no train_op given: taken as the train step: %s" % (
                ", ".join(op.name for op in roots) if roots else
                "the ops in UPDATE_OPS (the graph has no op that applies gradients)"))
            notes += _several_steps_note(runs)
        copies = graph_reader.branch_copies(layers)
        facts = [_layer_facts(layer.name, layer.channels, layer, runs, decay, copies, collected)
                 for layer in layers]
        for fact in facts:
            for each in (fact,) + fact.alternatives:
                each.name = keras.layer_names.get(each.name, each.name)
                each.copy_of = keras.layer_names.get(each.copy_of, each.copy_of)
        step_count = StepCount(steps, "given" if steps is not None else None)
        if session is not None:
            counters = _read_values(tf1, graph, session, layers, facts)
            step_count = choose_step_count(counters, steps)
    if session is None:
        switched = [f for f in facts if f.switch and f.switch_default is False
                    and f.updates == RUN and not f.switch_fed_true]
        if switched:
            notes.append("the update ops of %d layer(s) change the statistics only when %s is "
                         "fed True (default False): feed it in every train step (Keras: "
                         "K.learning_phase(): 1) or train with Model.fit"
                         % (len(switched), switched[0].switch))
    wiring = wiring_findings(facts, train_op is not None)
    moved_anyway = [f for f in facts if f.updates == NOT_RUN and f.read and not frozen(f)
                    and not any(w.layer == f.name for w in wiring)]
    if moved_anyway:
        notes.append("%d layer(s) have update ops the train step does not run, yet their "
                     "statistics moved: something else ran them (e.g. Model.fit)"
                     % len(moved_anyway))
    for i, fact in enumerate(facts):
        fact.sort_key = (False, i, ())
    return _diagnosis("graph", None, step_count, decay, threshold,
                      [(fact, None) for fact in facts], wiring, notes, None,
                      values_read=session is not None)


def _check_graph_arguments(tf1: Any, graph: Any, train_op: Any, session: Any) -> None:
    if not isinstance(graph, tf1.Graph):
        raise ProbeConfigError("graph must be a tf.Graph or a Keras model, got %r" % (graph,))
    for op in train_step.as_ops(tf1, train_op):
        if op.graph is not graph:
            raise ProbeConfigError("train_op %s belongs to another graph; give an op of graph"
                                   % op.name)
    if session is not None and getattr(session, "graph", None) is not graph:
        raise ProbeConfigError("session must be a tf.compat.v1.Session on graph, got %r"
                               % (session,))


def _read_values(tf1: Any, graph: Any, session: Any, layers: Sequence[Any],
                 facts: Sequence[LayerFacts]) -> Dict[str, int]:
    """Fetches the variables themselves, which adds no op to the graph; -> the step counters."""
    counters = [v for v in graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES)
                if is_step_counter_name(v.op.name) and v.dtype.base_dtype.is_integer
                and v.shape.ndims == 0]
    fetches = {"layers": [[layer.variables[name] for name in MOVING]
                          for layer in layers], "counters": counters}
    try:
        values = session.run(fetches)
    except tf1.errors.OpError as exc:
        raise ProbeConfigError("session could not read the moving statistics (%s); initialize "
                               "or restore the variables first"
                               % first_line(exc)) from None
    for fact, (mean, variance) in zip(facts, values["layers"]):
        fact.mean = np.asarray(mean, np.float64).reshape(-1)
        fact.variance = np.asarray(variance, np.float64).reshape(-1)
    return {v.op.name: int(value) for v, value in zip(counters, values["counters"])}


# ---------------------------------------------------------------------------------- the result

def _diagnosis(source: str, path: Optional[str], steps: StepCount, decay: Optional[float],
               threshold: float, facts: List[Tuple[LayerFacts, Optional[str]]],
               wiring: List[Any], notes: List[str], graph_source: Optional[str],
               values_read: bool = True, keras: Optional[KerasFacts] = None) -> Diagnosis:
    """``keras``: a TF 2.x Keras model's file, read without a graph (Keras's rules, the
    momentum from its config, its own words for what it lacks)."""
    layers = [fact for fact, _ in facts]
    rules = keras_value_findings if keras else value_findings
    findings = rules(layers, steps.value, threshold) + wiring
    with_value_finding = {f.layer for f in findings}
    unchecked = [layer for layer in layers if layer.read and layer.name not in with_value_finding
                 and layer.judged_by_steps and not can_check_convergence(layer, steps.value)]
    decay_hint = (keras.decay_hint if keras else
                  "not a constant in the graph" if source == "graph" else
                  "not a constant in the .meta graph" if graph_source else
                  "no .meta graph beside the checkpoint")
    step_hint = (keras.step_hint if keras else
                 "no global_step or optimizer iteration counter in the %s" % source)
    not_checked = (_not_checked(unchecked, steps, step_hint, decay_hint) if values_read else
                   ["the values (no session given): NEVER_UPDATED, UNSHARED_BRANCHES, "
                    "BAD_VARIANCE, TRAINED_IN_INFERENCE_MODE, PARTLY_CONVERGED; give a session "
                    "whose variables hold the trained values"])
    still = [layer for layer in layers if frozen(layer) and layer.name not in with_value_finding]
    if still:
        notes.append("%d layer(s) frozen: the train step runs them in inference mode (built with "
                     "is_training=False / training=False), or the graph has no training mode "
                     "for them; their statistics, not the initial 0 and 1, are those of the "
                     "checkpoint the weights were restored from (e.g. pre-training), not of this "
                     "training, so step count x decay (PARTLY_CONVERGED) does not apply to them"
                     % len(still))
    if steps.source not in (None, "given") and len(steps.candidates) > 1:
        notes.append("step counters found: %s; used %s" % (", ".join(
            "%s = %d" % item for item in steps.candidates), steps.source))
    found = keras.decay_found if keras else DECAY_FROM_GRAPH
    summaries = tuple(LayerSummary(
        fact.name, fact.channels, fact.kind, fact.decay,
        DECAY_GIVEN if decay is not None else found if fact.decay is not None else DECAY_UNKNOWN,
        fact.update_ops, None if fact.mean is None else Statistic.of(fact.mean),
        None if fact.variance is None else Statistic.of(fact.variance), checkpoint_name,
        fact.mode if fact.switch is None else "switched by %s (default %s)"
        % (fact.switch, fact.switch_default), frozen(fact)) for fact, checkpoint_name in facts)
    return Diagnosis(source, path, steps, decay, threshold, summaries,
                     ordered_findings(findings, [layer.name for layer in layers]),
                     tuple(not_checked), tuple(notes), graph_source,
                     keras.file_format if keras else None)


def _not_checked(unchecked: Sequence[LayerFacts], steps: StepCount, step_hint: str,
                 decay_hint: str) -> List[str]:
    """Why PARTLY_CONVERGED could not be checked, one reason per line."""
    if not unchecked:
        return []
    count = "%d layer(s)" % len(unchecked)
    reasons = []
    if steps.value is None:
        reasons.append("convergence (PARTLY_CONVERGED) of %s: step count unknown (%s); give "
                       "--steps N" % (count, step_hint))
    elif steps.value == 0:
        reasons.append("convergence (PARTLY_CONVERGED) of %s: the step counter %s is 0 although "
                       "statistics moved (the optimizer did not count steps); give --steps N"
                       % (count, steps.source))
    unknown = [layer for layer in unchecked if layer.decay is None]
    if unknown and steps.value:
        reasons.append("convergence (PARTLY_CONVERGED) of %d layer(s): decay unknown (%s); give "
                       "--decay D" % (len(unknown), decay_hint))
    return reasons
