"""api "keras3-jax" and "keras3-torch": Keras 3's ``BatchNormalization(momentum=decay)`` on its
JAX and PyTorch backends, each measured in a child process.

Keras fixes its backend when it is first imported (``KERAS_BACKEND``), and in this process it
may already run on TensorFlow (api "keras3"); so the parent starts ``python -m`` this module
with ``KERAS_BACKEND`` set, sends the request (the configs, their inputs) as JSON on stdin, and
reads the answer (ProbeResult.to_dict(), Convergence.to_dict(), matrix rows, or the error to
raise) from a file. In the child the layer runs as Keras runs it on that backend: on JAX, jitted
``stateless_call``\\ s as Keras's JAX trainer makes them; on PyTorch, eager calls.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import warnings
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import numpy as np

from ... import errors
from ...values import from_json_values, to_json_values
from .. import devices, measure
from ..config import ProbeConfig
from ..frameworks import FRAMEWORKS
from ..result import Convergence, ProbeResult
from .base import AtDecay0, Engine, Progress, RowMeasured
from .eager import Adapter, EagerEngine, Layer
from .pytorch import ONE_THREAD_UP_TO

BACKENDS = {"keras3-jax": "jax", "keras3-torch": "torch"}
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


class _KerasLayer(Layer):
    """One BatchNormalization; state kept in the layer (PyTorch) or in arrays a jitted
    stateless_call returns (JAX)."""

    def __init__(self, keras: Any, config: ProbeConfig, name: str, momentum: float):
        self.keras, self.name, self.factor = keras, name, 1.0 - momentum
        self.layer = keras.layers.BatchNormalization(
            axis=1 if config.data_format == "NCHW" else -1, momentum=momentum,
            epsilon=config.epsilon, trainable=config.trainable, name=name)
        shape = config.inputs.shape if config.data_format == "NHWC" \
            else tuple(np.take(config.inputs.shape, (0, 3, 1, 2)))
        self.layer.build(shape)
        self.epsilon = float(self.layer.epsilon)
        self.jax = keras.backend.backend() == "jax"
        if self.jax:
            import jax

            self.values = ([v.value for v in self.layer.trainable_variables],
                           [v.value for v in self.layer.non_trainable_variables])
            call = self.layer.stateless_call
            self._train = jax.jit(lambda t, n, x: call(t, n, x, training=True))
            self._test = jax.jit(lambda t, n, x: call(t, n, x, training=False)[0])

    def train(self, x: np.ndarray) -> np.ndarray:
        if self.jax:
            y, untrained = self._train(self.values[0], self.values[1], x)
            self.values = (self.values[0], untrained)
            return np.asarray(y)
        return self.keras.ops.convert_to_numpy(self.layer(self.keras.ops.convert_to_tensor(x),
                                                          training=True))

    def test(self, x: np.ndarray) -> np.ndarray:
        if self.jax:
            return np.asarray(self._test(self.values[0], self.values[1], x))
        return self.keras.ops.convert_to_numpy(self.layer(self.keras.ops.convert_to_tensor(x),
                                                          training=False))

    def state(self) -> Dict[str, np.ndarray]:
        layer = self.layer
        if self.jax:
            pairs = list(zip(layer.trainable_variables, self.values[0])) + \
                list(zip(layer.non_trainable_variables, self.values[1]))
        else:
            pairs = [(v, v.value) for v in layer.weights]
        return {v.name: np.array(self.keras.ops.convert_to_numpy(value)) for v, value in pairs}


class _KerasAdapter(Adapter):
    """In the child: Keras 3 on the backend KERAS_BACKEND named before its import."""

    def __init__(self, api: str):
        import keras

        if keras.backend.backend() != BACKENDS[api]:
            raise errors.FrameworkError("api %r needs Keras on %s, but KERAS_BACKEND gave %s"
                                        % (api, BACKENDS[api], keras.backend.backend()))
        self.keras = keras

    def layer(self, config: ProbeConfig, name: str, witness: bool = False) -> Layer:
        return _KerasLayer(self.keras, config, name, 0.0 if witness else config.decay)

    def layer_names(self) -> Tuple[str, str]:
        return "batch_normalization", "batch_normalization_1"

    def versions(self) -> Dict[str, str]:
        backend = self.keras.backend.backend()
        return {"keras": self.keras.version(), backend: __import__(backend).__version__}

    def gpus(self) -> Tuple[str, ...]:
        if self.keras.backend.backend() == "torch":
            import torch

            with warnings.catch_warnings():  # a CUDA build without CUDA complains
                warnings.simplefilter("ignore", UserWarning)
                return ("cuda:0",) if torch.cuda.is_available() else ()
        import jax

        try:
            return tuple(str(d) for d in jax.devices("gpu"))
        except RuntimeError:
            return ()

    @contextlib.contextmanager
    def running(self, config: ProbeConfig, target: str) -> Iterator[None]:
        if self.keras.backend.backend() == "torch" and config.inputs.size <= ONE_THREAD_UP_TO:
            import torch  # a child of its own: no TensorFlow here, so triton may load

            torch.set_num_threads(1)  # as engines.pytorch: the pool costs more than it gives
        with self.keras.device("gpu:0" if target == devices.GPU else "cpu:0"):
            yield


def _config_document(config: ProbeConfig) -> Dict[str, Any]:
    return {"config": config.to_dict(), "inputs": to_json_values(config.inputs),
            "batches": None if config.batches is None else to_json_values(config.batches)}


def _config_from(document: Dict[str, Any]) -> ProbeConfig:
    batches = document["batches"]
    return ProbeConfig.from_dict(document["config"], from_json_values(document["inputs"]),
                                 None if batches is None else from_json_values(batches))


class KerasBackendEngine(Engine):
    """In the parent: each request in a child process with KERAS_BACKEND set."""

    def __init__(self, api: str):
        self.name = api
        self.framework = FRAMEWORKS[api]

    def _ask(self, request: Dict[str, Any]) -> Dict[str, Any]:
        reason = self.framework.unavailable()
        if reason:
            raise errors.BackendUnavailableError(reason)
        request = dict(request, api=self.name)
        handle, answer_path = tempfile.mkstemp(prefix="bn_decay_probe_", suffix=".json")
        os.close(handle)
        env = dict(os.environ, KERAS_BACKEND=BACKENDS[self.name],
                   PYTHONPATH=os.pathsep.join(
                       p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p))
        try:
            child = subprocess.run([sys.executable, "-m", __name__, answer_path],
                                   input=json.dumps(request), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, universal_newlines=True, env=env)
            with open(answer_path) as handle_:
                text = handle_.read()
        finally:
            os.remove(answer_path)
        if child.returncode or not text:
            lines = [line for line in child.stderr.splitlines() if line.strip()]
            raise errors.FrameworkError("api %r: the Keras %s child process failed (exit %s): %s"
                                        % (self.name, BACKENDS[self.name], child.returncode,
                                           lines[-1] if lines else "no message"))
        answer = json.loads(text)
        if "error" in answer:
            raise getattr(errors, answer["error"]["type"])(answer["error"]["message"])
        return answer

    def run(self, config: ProbeConfig) -> ProbeResult:
        result = ProbeResult.from_dict(self._ask({"op": "run", "configs": [
            _config_document(config)]})["result"])
        if result.device.notice:
            measure.notify(result.device.notice)
        return result

    def run_decays(self, config: ProbeConfig, decays: Sequence[float], progress: Progress = None,
                   exact: bool = False) -> Tuple[ProbeResult, ...]:
        """Every decay in one child process (one at a time there, so ``exact`` changes
        nothing); ``progress(1)`` for each once they are back."""
        answer = self._ask({"op": "run_decays", "configs": [_config_document(config)],
                            "decays": list(decays)})
        results = tuple(ProbeResult.from_dict(r) for r in answer["results"])
        for _ in results:
            if progress:
                progress(1)
        return results

    def converge(self, config: ProbeConfig, tol: float, max_steps: int) -> Convergence:
        answer = self._ask({"op": "converge", "configs": [_config_document(config)],
                            "tol": tol, "max_steps": max_steps})
        return Convergence(**answer["convergence"])

    def matrix_rows(self, configs: Sequence[ProbeConfig], decays: Sequence[float], tol: float,
                    budget_factor: float) -> List[RowMeasured]:
        """All of them in one child process."""
        answer = self._ask({"op": "matrix_rows",
                            "configs": [_config_document(c) for c in configs],
                            "decays": list(decays), "tol": tol, "budget_factor": budget_factor})
        return [_row_from(row) for row in answer["rows"]]


def _row_document(row: RowMeasured) -> Dict[str, Any]:
    if isinstance(row, errors.ProbeConfigError):
        return {"error": str(row)}
    zero, convergence = row
    fed = zero.fed_variance
    return {"at_decay_0": {"fused": zero.fused, "updated": zero.updated,
                           "fed_variance": None if fed is None else to_json_values(fed),
                           "gap": zero.gap, "shared": zero.shared},
            "convergence": [[decay, c.to_dict()] for decay, c in convergence.items()]}


def _row_from(document: Dict[str, Any]) -> RowMeasured:
    if "error" in document:
        return errors.ProbeConfigError(document["error"])
    zero = document["at_decay_0"]
    fed = zero["fed_variance"]
    return (AtDecay0(zero["fused"], zero["updated"],
                     None if fed is None else from_json_values(fed), zero["gap"],
                     zero["shared"]),
            {decay: Convergence(**c) for decay, c in document["convergence"]})


def _answer(request: Dict[str, Any]) -> Dict[str, Any]:
    """In the child: what the request asks, measured by the eager engine over Keras."""
    api = request["api"]
    engine = EagerEngine(api, lambda: _KerasAdapter(api))
    configs = [_config_from(c) for c in request["configs"]]
    if request["op"] == "run":
        return {"result": engine.run(configs[0]).to_dict()}
    if request["op"] == "run_decays":
        return {"results": [r.to_dict() for r in engine.run_decays(configs[0],
                                                                   request["decays"])]}
    if request["op"] == "converge":
        return {"convergence": engine.converge(configs[0], request["tol"],
                                               request["max_steps"]).to_dict()}
    rows = engine.matrix_rows(configs, request["decays"], request["tol"],
                              request["budget_factor"])
    return {"rows": [_row_document(row) for row in rows]}


def main(answer_path: str) -> None:
    request = json.loads(sys.stdin.read())
    try:
        answer = _answer(request)
    except errors.BnDecayProbeError as exc:
        answer = {"error": {"type": type(exc).__name__, "message": str(exc)}}
    with open(answer_path, "w") as handle:
        json.dump(answer, handle)


ENGINES = {api: KerasBackendEngine(api) for api in BACKENDS}

if __name__ == "__main__":
    main(sys.argv[1])
