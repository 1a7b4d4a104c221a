"""The engine of the frameworks beside TensorFlow (probe/frameworks.py): the framework's own
layer, called in training mode for each train step and in inference mode for the test, as its
training loops call it, numpy in and numpy out. A framework module gives an :class:`Adapter`
(how to make its layer, its versions and GPUs); the step loop, the result and convergence are
the same for all.

What a framework feeds its running average is measured, not recomputed: a second layer of the
same framework at decay 0 (factor 1: running = batch statistic) runs each train step on the same
input, and its running statistics after that step are what the framework fed. The variables are
reported under TensorFlow's short names (moving_mean, moving_variance, gamma, beta); the
result's notes say each one's name in the framework.
"""
from __future__ import annotations

import contextlib
import platform
from typing import Any, Callable, Dict, Iterator, List, Tuple

import numpy as np

from ..._version import __version__
from ...names import MOVING, PHASES
from ...values import FrozenDict
from .. import devices, frameworks, measure, theory
from ..config import ProbeConfig
from ..result import Convergence, DeviceReport, ProbeResult, VariableInfo
from .base import Engine

SHORT_NAMES = ("gamma", "beta") + MOVING


class Layer:
    """One batch-norm layer of a framework, as the engine steps it (a framework subclasses it).
    ``epsilon`` and ``factor`` are as the framework holds them: its epsilon, and the weight
    1 - decay its last update gave the batch statistic."""

    name = ""
    epsilon = 0.0
    factor = 0.0

    def train(self, x: np.ndarray) -> np.ndarray:
        """One train step on ``x`` (in the config's data format); its output, in that format."""
        raise NotImplementedError

    def test(self, x: np.ndarray) -> np.ndarray:
        """The layer in inference mode on ``x``; its output."""
        raise NotImplementedError

    def state(self) -> Dict[str, np.ndarray]:
        """SHORT_NAMES -> the layer's values, shape [C]."""
        raise NotImplementedError


class Adapter:
    """What the engine needs of a framework (one per module in this package)."""

    def layer(self, config: ProbeConfig, name: str, witness: bool = False) -> Layer:
        """A new layer for ``config`` named ``name``; ``witness``: at decay 0, to read what the
        framework feeds its running average."""
        raise NotImplementedError

    def layer_names(self) -> Tuple[str, str]:
        """The framework's names of the layer and of an unshared second one."""
        raise NotImplementedError

    def versions(self) -> Dict[str, str]:
        """The framework's packages and versions."""
        raise NotImplementedError

    def gpus(self) -> Tuple[str, ...]:
        """The GPUs the framework sees."""
        raise NotImplementedError

    @contextlib.contextmanager
    def running(self, config: ProbeConfig, target: str) -> Iterator[None]:
        """Around a probe's steps, on ``target`` (devices.CPU or devices.GPU)."""
        yield


class _Layers(measure.Steps):
    """The train layer, the test layer (the same one when shared) and the decay-0 witness."""

    def __init__(self, adapter: Adapter, config: ProbeConfig):
        first, second = adapter.layer_names()
        self.config = config
        self.train_layer = adapter.layer(config, first)
        self.test_layer = (self.train_layer if config.share_variables
                           else adapter.layer(config, second))
        self.witness = adapter.layer(config, first, witness=True)
        self.inputs = measure.layout(config, config.inputs)
        self.batches = None if config.batches is None else measure.layout(config, config.batches)

    def layers(self) -> Dict[str, Layer]:
        return {"train": self.train_layer, "test": self.test_layer}

    def snapshot(self) -> Dict[str, np.ndarray]:
        found = {}
        for layer in {id(l): l for l in self.layers().values()}.values():
            found.update(("%s/%s" % (layer.name, short), values)
                         for short, values in layer.state().items())
        return dict(sorted(found.items()))

    def train(self, step: int, last: bool) -> Tuple[np.ndarray, List[np.ndarray]]:
        x = self.inputs if self.batches is None else self.batches[step % len(self.batches)]
        output = self.train_layer.train(x)
        self.witness.train(x)
        fed = self.witness.state()
        return output, [fed[name] for name in MOVING]

    def test(self, last: bool) -> np.ndarray:
        return self.test_layer.test(self.inputs)


class EagerEngine(Engine):
    """The engine of one framework api: ``make_adapter()`` imports the framework (at each run:
    importing is done once by Python, and a missing framework says so then)."""

    def __init__(self, api: str, make_adapter: Callable[[], Adapter]):
        self.name = api
        self.framework = frameworks.FRAMEWORKS[api]
        self.make_adapter = make_adapter

    @contextlib.contextmanager
    def _opened(self, config: ProbeConfig) -> Iterator[Tuple[Adapter, _Layers, Any]]:
        adapter = self.make_adapter()
        gpus = adapter.gpus()
        placement = devices.resolve(config.device, gpus, self.framework.name)
        if placement.notice:
            measure.notify(placement.notice)
        with adapter.running(config, placement.target):
            yield adapter, _Layers(adapter, config), (placement, gpus)

    def run(self, config: ProbeConfig) -> ProbeResult:
        with self._opened(config) as (adapter, layers, (placement, gpus)):
            measured = measure.run_steps(config, layers)
            by_phase = layers.layers()
            factor = layers.train_layer.factor
        names = {phase: tuple("%s/%s" % (layer.name, short) for short in SHORT_NAMES)
                 for phase, layer in by_phase.items()}
        values = measured.snapshots["before_train"]
        variables = tuple(VariableInfo(name, name.rsplit("/", 1)[1], tuple(values[name].shape),
                                       str(values[name].dtype)) for name in sorted(values))
        own = adapter.versions()
        versions = dict(own, numpy=np.__version__, python=platform.python_version(),
                        bn_decay_probe=__version__,
                        framework="%s %s" % (self.framework.name, next(iter(own.values()))))
        return measure.probe_result(
            config, measured, MOVING, [factor, factor],
            fused={phase: False for phase in PHASES},
            epsilon={phase: float(layer.epsilon) for phase, layer in by_phase.items()},
            variables=variables, branch_variables=names, update_ops=(),
            device=DeviceReport(config.device, placement.target, gpus, placement.notice,
                                FrozenDict((phase, FrozenDict()) for phase in PHASES)),
            versions=versions, engine_notes=(self._note(),))

    def _note(self) -> str:
        f = self.framework
        own = ", ".join("%s is %s's %s" % (ours, f.name, theirs) for ours, theirs in f.names
                        if ours != theirs)
        return ("api %s ran %s in training mode for each train step and in inference mode for "
                "the test: no update ops and no per-op devices are recorded%s; the batch "
                "statistics fed are what a second layer at decay 0 took from the same input"
                % (f.api, f.layer, "; " + own if own else ""))

    def converge(self, config: ProbeConfig, tol: float, max_steps: int) -> Convergence:
        """Train steps until max |test - train| <= tol, or until a step leaves every variable
        bit-identical (then the gap can no longer shrink), as session.converge."""
        measure.require_one_input(config)
        with self._opened(config) as (_, layers, _placement):
            x, train, test = layers.inputs, layers.train_layer, layers.test_layer
            measured, step, stopped = measure.steps_to_converge(
                lambda: train.train(x), lambda: test.test(x), lambda: train.state().values(),
                tol, max_steps)
            epsilon = float(train.epsilon)
        predicted = theory.predicted_steps_to_converge(
            config.inputs, config.decay, self.framework.unbiased, epsilon, tol,
            average=self.framework.average)
        return Convergence(tol, measured, predicted, step, stopped)
