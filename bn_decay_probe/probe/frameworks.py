"""The frameworks other than TensorFlow that the probe measures, one api each: its layer, how
its parameter spells the decay, the variance it feeds its running average, how it averages,
its own names for the layer's variables and what it needs installed (no framework import).

Every api here reports the same ProbeResult as the TensorFlow APIs, with the variables under
TensorFlow's short names (moving_mean, moving_variance, gamma, beta) and the decay in
TensorFlow's sense: ``moving = decay * moving + (1 - decay) * batch``; ``names`` says what
each is called in the framework.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from .. import imports
from .theory import CUMULATIVE, DEBIASED, EMA


@dataclass(frozen=True)
class Framework:
    api: str
    name: str  # "PyTorch", "Flax", ...
    layer: str  # the layer as the probe builds it
    parameter: str  # how the layer's parameter spells the decay
    unbiased: bool  # feeds the running variance n/(n-1) times the biased batch variance
    average: str  # theory.EMA, DEBIASED (zero-debiased EMA) or CUMULATIVE (mean of all steps)
    modules: Tuple[str, ...]  # what it imports (imports.PACKAGES)
    names: Tuple[Tuple[str, str], ...]  # our short name -> the framework's own name
    subprocess: bool = False  # measured in a child process (Keras fixes its backend at import)

    def rule(self) -> str:
        """The update rule in words, for reports."""
        if self.average == CUMULATIVE:
            text = "the mean of every train step's batch statistic (momentum=None)"
        elif self.average == DEBIASED:
            text = ("hidden / (1 - decay**k), hidden = decay * hidden + (1 - decay) * batch "
                    "statistic from 0 (zero-debiased)")
        else:
            text = "decay * moving + (1 - decay) * batch statistic at every step (%s)" % (
                self.parameter)
        return "%s; variance %s" % (text, "x n/(n-1)" if self.unbiased else "biased")

    def unavailable(self) -> Optional[str]:
        """One line naming the extra to install when the framework is missing, else None."""
        return imports.missing(self.modules, "api %r" % self.api)


_TORCH_NAMES = (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                ("moving_variance", "running_var"))
_KERAS_NAMES = (("gamma", "gamma"), ("beta", "beta"), ("moving_mean", "moving_mean"),
                ("moving_variance", "moving_variance"))

FRAMEWORKS = {f.api: f for f in (
    Framework("torch", "PyTorch", "torch.nn.BatchNorm2d(momentum=1 - decay)",
              "momentum = 1 - decay", True, EMA, ("torch",), _TORCH_NAMES),
    Framework("torch-cumulative", "PyTorch", "torch.nn.BatchNorm2d(momentum=None)",
              "momentum=None: no decay, the mean of every step's statistics", True, CUMULATIVE,
              ("torch",), _TORCH_NAMES),
    Framework("flax", "Flax", "flax.linen.BatchNorm(momentum=decay)", "momentum = decay",
              False, EMA, ("jax", "flax"),
              (("gamma", "params/scale"), ("beta", "params/bias"),
               ("moving_mean", "batch_stats/mean"), ("moving_variance", "batch_stats/var"))),
    Framework("haiku", "Haiku", "haiku.BatchNorm(decay_rate=decay)", "decay_rate = decay",
              False, DEBIASED, ("jax", "haiku"),
              (("gamma", "scale"), ("beta", "offset"), ("moving_mean", "mean_ema/average"),
               ("moving_variance", "var_ema/average"))),
    Framework("keras3-jax", "Keras 3 (JAX)", "keras.layers.BatchNormalization(momentum=decay)",
              "momentum = decay", False, EMA, ("keras", "jax"), _KERAS_NAMES, True),
    Framework("keras3-torch", "Keras 3 (PyTorch)",
              "keras.layers.BatchNormalization(momentum=decay)", "momentum = decay", False, EMA,
              ("keras", "torch"), _KERAS_NAMES, True),
)}
FRAMEWORK_APIS = tuple(FRAMEWORKS)


def unbiased_variance(api: str, fused: bool) -> bool:
    """Whether the layer feeds its running variance n/(n-1) times the biased batch variance:
    TensorFlow's fused kernel does, its other paths do not; another framework by its rule."""
    framework = FRAMEWORKS.get(api)
    return fused if framework is None else framework.unbiased


def average_of(api: str) -> str:
    """How the api's layer averages (theory.EMA for TensorFlow)."""
    framework = FRAMEWORKS.get(api)
    return EMA if framework is None else framework.average
