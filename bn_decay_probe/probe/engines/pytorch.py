"""api "torch" and "torch-cumulative": torch.nn.BatchNorm2d with momentum = 1 - decay, or with
momentum=None (the running statistics are the mean of every step's batch statistics), in
``train()`` mode for each train step and ``eval()`` mode for the test, under ``no_grad``.

BatchNorm2d takes NCHW tensors: data_format "NCHW" hands it contiguous ones, "NHWC" the same
values in channels_last memory (PyTorch's NHWC layout). PyTorch's thread pool costs more than a
probe's small layer computes, so a small input runs on one thread; the caller's setting is
restored afterwards.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Any, Dict, Iterator, Tuple

import numpy as np

from ... import imports
from .. import devices
from ..config import ProbeConfig
from .eager import Adapter, EagerEngine, Layer

ONE_THREAD_UP_TO = 1 << 20  # input values: below this, one thread is fastest


class _TorchLayer(Layer):
    def __init__(self, torch: Any, config: ProbeConfig, name: str, momentum: Any,
                 device: str):
        self.torch, self.name, self.config, self.device = torch, name, config, device
        self.module = torch.nn.BatchNorm2d(config.channels, eps=config.epsilon,
                                           momentum=momentum).to(device)
        if not config.trainable:
            self.module.requires_grad_(False)
        self.epsilon = self.module.eps
        self._last: Any = None

    @property
    def factor(self) -> float:  # type: ignore[override]
        """The weight BatchNorm2d gave the last batch: momentum, or 1 / steps when None."""
        if self.module.momentum is not None:
            return float(self.module.momentum)
        return 1.0 / float(self.module.num_batches_tracked)

    def _tensor(self, x: np.ndarray) -> Any:
        """``x`` as the module takes it; the last one is kept (a probe feeds one input many
        times)."""
        if self._last is None or self._last[0] is not x:
            tensor = self.torch.tensor(x)  # a copy: the probe's inputs are read-only
            if self.config.data_format == "NHWC":  # NCHW shape, channels_last memory
                tensor = tensor.permute(0, 3, 1, 2)
            self._last = (x, tensor.to(self.device))
        return self._last[1]

    def _array(self, y: Any) -> np.ndarray:
        if self.config.data_format == "NHWC":
            y = y.permute(0, 2, 3, 1)
        return y.cpu().numpy()

    def train(self, x: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            self.module.train()
            return self._array(self.module(self._tensor(x)))

    def test(self, x: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            self.module.eval()
            return self._array(self.module(self._tensor(x)))

    def state(self) -> Dict[str, np.ndarray]:
        m = self.module
        return {"gamma": m.weight.detach().cpu().numpy().copy(),
                "beta": m.bias.detach().cpu().numpy().copy(),
                "moving_mean": m.running_mean.cpu().numpy().copy(),
                "moving_variance": m.running_var.cpu().numpy().copy()}


class _TorchAdapter(Adapter):
    def __init__(self, api: str, cumulative: bool):
        self.cumulative = cumulative
        self.torch = imports.torch("api %r" % api)
        self.device = "cpu"

    def layer(self, config: ProbeConfig, name: str, witness: bool = False) -> Layer:
        if witness:
            momentum: Any = 1.0  # running = batch statistic
        else:
            momentum = None if self.cumulative else 1.0 - config.decay
        return _TorchLayer(self.torch, config, name, momentum, self.device)

    def layer_names(self) -> Tuple[str, str]:
        return "BatchNorm2d", "BatchNorm2d_1"

    def versions(self) -> Dict[str, str]:
        return {"torch": self.torch.__version__}

    def gpus(self) -> Tuple[str, ...]:
        cuda = self.torch.cuda
        with warnings.catch_warnings():  # a CUDA build on a machine without CUDA complains
            warnings.simplefilter("ignore", UserWarning)
            return tuple("cuda:%d" % i for i in range(cuda.device_count())) \
                if cuda.is_available() else ()

    @contextlib.contextmanager
    def running(self, config: ProbeConfig, target: str) -> Iterator[None]:
        self.device = "cuda:0" if target == devices.GPU else "cpu"
        threads = self.torch.get_num_threads()
        if config.inputs.size <= ONE_THREAD_UP_TO and threads > 1:
            self.torch.set_num_threads(1)
        try:
            yield
        finally:
            self.torch.set_num_threads(threads)


ENGINES = {"torch": EagerEngine("torch", lambda: _TorchAdapter("torch", False)),
           "torch-cumulative": EagerEngine("torch-cumulative",
                                           lambda: _TorchAdapter("torch-cumulative", True))}
