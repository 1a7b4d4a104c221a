"""api "flax" and "haiku": Flax linen's ``BatchNorm(momentum=decay)`` and Haiku's
``BatchNorm(decay_rate=decay)``, on JAX, each step one call of a jitted function of the
variables (``apply`` with ``use_running_average=False`` / ``is_training=True`` for a train
step, the inference mode for the test), as their training loops run them.

Haiku's ``init`` in training mode stores the init batch's statistics as its averages; the probe
initializes on zeros, so the averages start at 0 (the zero-debiased average forgets its start
at the first step anyway). Both normalize the given data format's channel axis.
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, Tuple

import numpy as np

from ... import imports
from .. import devices
from ..config import ProbeConfig
from ..frameworks import FRAMEWORKS
from .eager import Adapter, EagerEngine, Layer


class _JaxAdapter(Adapter):
    """What Flax and Haiku share: JAX's devices."""

    def __init__(self, api: str):
        imports.require(FRAMEWORKS[api].modules, "api %r" % api)
        import jax

        self.jax = jax

    def gpus(self) -> Tuple[str, ...]:
        try:
            return tuple(str(d) for d in self.jax.devices("gpu"))
        except RuntimeError:  # no GPU backend
            return ()

    @contextlib.contextmanager
    def running(self, config: ProbeConfig, target: str) -> Iterator[None]:
        device = self.jax.devices("gpu" if target == devices.GPU else "cpu")[0]
        with self.jax.default_device(device):
            yield


def _channels(values: Any) -> np.ndarray:
    return np.asarray(values).reshape(-1).copy()


class _FlaxLayer(Layer):
    def __init__(self, jax: Any, linen: Any, config: ProbeConfig, name: str, momentum: float):
        self.name, self.epsilon, self.factor = name, config.epsilon, 1.0 - momentum
        module = linen.BatchNorm(momentum=momentum, epsilon=config.epsilon,
                                 axis=1 if config.data_format == "NCHW" else -1)
        x = np.zeros(config.inputs.shape if config.data_format == "NHWC"
                     else np.take(config.inputs.shape, (0, 3, 1, 2)), np.float32)
        self.variables = module.init(jax.random.PRNGKey(0), x, use_running_average=True)
        self._train = jax.jit(lambda v, x: module.apply(v, x, use_running_average=False,
                                                        mutable=["batch_stats"]))
        self._test = jax.jit(lambda v, x: module.apply(v, x, use_running_average=True))

    def train(self, x: np.ndarray) -> np.ndarray:
        y, updates = self._train(self.variables, x)
        self.variables = dict(self.variables, batch_stats=updates["batch_stats"])
        return np.asarray(y)

    def test(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._test(self.variables, x))

    def state(self) -> Dict[str, np.ndarray]:
        params, stats = self.variables["params"], self.variables["batch_stats"]
        return {"gamma": _channels(params["scale"]), "beta": _channels(params["bias"]),
                "moving_mean": _channels(stats["mean"]),
                "moving_variance": _channels(stats["var"])}


class _FlaxAdapter(_JaxAdapter):
    def __init__(self) -> None:
        super().__init__("flax")
        import flax
        import flax.linen as linen

        self.flax, self.linen = flax, linen

    def layer(self, config: ProbeConfig, name: str, witness: bool = False) -> Layer:
        return _FlaxLayer(self.jax, self.linen, config, name, 0.0 if witness else config.decay)

    def layer_names(self) -> Tuple[str, str]:
        return "BatchNorm_0", "BatchNorm_1"

    def versions(self) -> Dict[str, str]:
        return {"flax": self.flax.__version__, "jax": self.jax.__version__}


class _HaikuLayer(Layer):
    def __init__(self, jax: Any, hk: Any, config: ProbeConfig, name: str, decay: float):
        self.name, self.epsilon = name, config.epsilon
        # Haiku computes 1 - decay in the input's dtype.
        self.factor = float(np.float32(1.0) - np.float32(decay))
        channels_first = config.data_format == "NCHW"

        def forward(x: Any, is_training: bool) -> Any:
            return hk.BatchNorm(True, True, decay_rate=decay, eps=config.epsilon, name=name,
                                data_format="channels_first" if channels_first
                                else "channels_last")(x, is_training)

        transformed = hk.transform_with_state(forward)
        shape = np.take(config.inputs.shape, (0, 3, 1, 2)) if channels_first \
            else config.inputs.shape
        self.params, self.state_ = transformed.init(jax.random.PRNGKey(0),
                                                    np.zeros(shape, np.float32), True)
        self._train = jax.jit(lambda p, s, x: transformed.apply(p, s, None, x, True))
        self._test = jax.jit(lambda p, s, x: transformed.apply(p, s, None, x, False)[0])

    def train(self, x: np.ndarray) -> np.ndarray:
        y, self.state_ = self._train(self.params, self.state_, x)
        return np.asarray(y)

    def test(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._test(self.params, self.state_, x))

    def state(self) -> Dict[str, np.ndarray]:
        params = self.params[self.name]
        return {"gamma": _channels(params["scale"]), "beta": _channels(params["offset"]),
                "moving_mean": _channels(self.state_[self.name + "/~/mean_ema"]["average"]),
                "moving_variance": _channels(self.state_[self.name + "/~/var_ema"]["average"])}


class _HaikuAdapter(_JaxAdapter):
    def __init__(self) -> None:
        super().__init__("haiku")
        import haiku

        self.hk = haiku

    def layer(self, config: ProbeConfig, name: str, witness: bool = False) -> Layer:
        return _HaikuLayer(self.jax, self.hk, config, name, 0.0 if witness else config.decay)

    def layer_names(self) -> Tuple[str, str]:
        return "batch_norm", "batch_norm_1"

    def versions(self) -> Dict[str, str]:
        return {"haiku": self.hk.__version__, "jax": self.jax.__version__}


ENGINES = {"flax": EagerEngine("flax", _FlaxAdapter),
           "haiku": EagerEngine("haiku", _HaikuAdapter)}
