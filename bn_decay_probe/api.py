"""probe(): one call, one fresh graph and session, one immutable ProbeResult."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from .config import DEFAULT_DECAY, DEFAULT_EPSILON, ProbeConfig
from .result import ProbeResult


def probe(decay: float = DEFAULT_DECAY, inputs: Any = None,
          shape: Optional[Sequence[int]] = None, seed: int = 0, fused: Optional[bool] = None,
          steps: int = 1, epsilon: float = DEFAULT_EPSILON, device: str = "auto") -> ProbeResult:
    """Runs tf.contrib.layers.batch_norm in train then test mode and measures its variables.

    Args:
      decay: the moving-average decay in [0, 1] (default 0.9; TF's own default is 0.999).
      inputs: a float array [N, H, W, C], cast to float32; None draws uniform(0, 255) values of
        ``shape`` from ``seed``, like the seed experiment.
      shape: (N, H, W, C) of the drawn inputs, default (1, 4, 4, 1); with ``inputs`` it must
        match their shape or be left out.
      seed: seeds the drawn inputs.
      fused: None (TF's default: fused for 4-D inputs), True or False.
      steps: how many train runs before the test run.
      epsilon: added to the variance before the square root.
      device: "auto" (GPU if TensorFlow sees one, else CPU with a DeviceFallbackWarning),
        "cpu", or "gpu" (ProbeConfigError without a GPU).

    Returns:
      A ProbeResult: ``before[phase]`` / ``after[phase]`` map variable names to arrays [C],
      ``outputs[phase]`` has the input's shape.

    Raises:
      ProbeConfigError: for any invalid argument, with a one-line message.

    The probe builds its own tf.Graph and Session; the caller's default graph and session are
    never touched.
    """
    from . import runner  # imports TensorFlow, so only when a probe actually runs

    return runner.run(ProbeConfig.create(decay=decay, inputs=inputs, shape=shape, seed=seed,
                                         fused=fused, steps=steps, epsilon=epsilon,
                                         device=device))
