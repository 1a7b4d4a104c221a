"""probe(): one call, one fresh graph and session, one immutable ProbeResult."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from .config import DEFAULT_DECAY, DEFAULT_EPSILON, ProbeConfig
from .result import ProbeResult


def probe(decay: float = DEFAULT_DECAY, inputs: Any = None,
          shape: Optional[Sequence[int]] = None, seed: int = 0, fused: Optional[bool] = None,
          steps: int = 1, epsilon: float = DEFAULT_EPSILON, device: str = "auto",
          api: str = "contrib", updates: str = "inplace", data_format: str = "NHWC",
          zero_debias: bool = False, share_variables: bool = True,
          batches: Any = None, trainable: bool = True) -> ProbeResult:
    """Runs a batch-norm layer in train then test mode and measures its variables.

    Args:
      decay: the moving-average decay in [0, 1] (default 0.9; TF's own default is 0.999).
        With api "layers" / "keras" it is passed as ``momentum``, which means the same.
      inputs: a float array [N, H, W, C] (always NHWC here), cast to float32; None draws
        uniform(0, 255) values of ``shape`` from ``seed``, like the blog experiment. It is the
        test input, and the train input unless ``batches`` are given.
      shape: (N, H, W, C) of the drawn inputs, default (1, 4, 4, 1) (or the batches' shape);
        with ``inputs`` it must match their shape or be left out.
      seed: seeds the drawn inputs.
      fused: None (the API's default: fused for 4-D inputs), True or False.
      steps: train runs before the test run; with ``batches``, passes over them.
      epsilon: added to the variance before the square root.
      device: "auto" (GPU if TensorFlow sees one, else CPU with a DeviceFallbackWarning),
        "cpu", or "gpu" (ProbeConfigError without a GPU).
      api: "contrib" (tf.contrib.layers.batch_norm), "layers" (tf.layers.batch_normalization),
        "keras" (one tf.keras.layers.BatchNormalization object), "nn" (tf.nn.fused_batch_norm,
        or tf.nn.moments with fused=False, plus assign_moving_average).
      updates: "inplace" (updates run with the train output), "update_ops" (UPDATE_OPS run as
        control dependencies of the train step), "forgotten" (never run).
      data_format: "NHWC" or "NCHW" (the graph holds the transposed input; inputs and outputs
        stay NHWC here). ProbeConfigError where TF cannot run it on the device.
      zero_debias: contrib's zero_debias_moving_mean.
      share_variables: False builds the branches the way that gives each its own variables.
      batches: a sequence of float arrays [N, H, W, C] (one shape, the inputs' C) that the
        train steps take in turn.
      trainable: passed to the contrib / layers / keras layer. False freezes beta and gamma; in
        TF 2.x tf.keras it also runs the layer in inference mode, even with training=True.

    Returns:
      A ProbeResult: ``before[phase]`` / ``after[phase]`` map variable names to arrays [C],
      ``outputs[phase]`` has the input's shape, ``trajectory`` follows every train step,
      ``notes`` says what the numbers alone could hide (one value per channel, a variance below
      epsilon, float32 overflow, what the float32 cast of the inputs changed).

    Raises:
      ProbeConfigError: for any invalid argument, with a one-line message.

    The probe builds its own tf.Graph and Session; the caller's default graph and session are
    never touched.
    """
    from . import runner  # imports TensorFlow, so only when a probe actually runs

    return runner.run(ProbeConfig.create(
        decay=decay, inputs=inputs, shape=shape, seed=seed, fused=fused, steps=steps,
        epsilon=epsilon, device=device, api=api, updates=updates, data_format=data_format,
        zero_debias=zero_debias, share_variables=share_variables, batches=batches,
        trainable=trainable))
