"""The probe's entry points: probe() (one decay: one call, one fresh graph and session, one
immutable ProbeResult) and sweep() (many decays, a SweepResult). Arguments are validated before
any framework is imported; the engine that measures them is engines.choose()'s."""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from . import engines
from .arguments import check_not_a_shape, positional_up_to
from .config import DEFAULT_DECAY, DEFAULT_EPSILON, ProbeConfig, check_decays, check_flag
from .result import ProbeResult
from .sweep_result import SweepResult


@positional_up_to(("decay", "inputs"))
def probe(decay: float = DEFAULT_DECAY, inputs: Any = None, *,
          shape: Optional[Sequence[int]] = None, seed: int = 0, fused: Optional[bool] = None,
          steps: int = 1, epsilon: float = DEFAULT_EPSILON, device: str = "auto",
          api: str = "contrib", updates: str = "inplace", data_format: str = "NHWC",
          zero_debias: bool = False, share_variables: bool = True,
          batches: Any = None, trainable: bool = True) -> ProbeResult:
    """Runs a batch-norm layer in train then test mode and measures its variables.

    ``decay`` and ``inputs`` may be passed by position, everything else by keyword only.

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
      ProbeConfigError: for any invalid argument, with a one-line message; also for a third
        positional argument or a shape passed as ``inputs``, naming the keyword to use.

    The probe builds its own tf.Graph and Session; the caller's default graph and session are
    never touched.
    """
    check_not_a_shape(inputs)
    config = ProbeConfig.create(
        decay=decay, inputs=inputs, shape=shape, seed=seed, fused=fused, steps=steps,
        epsilon=epsilon, device=device, api=api, updates=updates, data_format=data_format,
        zero_debias=zero_debias, share_variables=share_variables, batches=batches,
        trainable=trainable)
    return engines.choose(config).run(config)  # imports the framework, only when it runs


@positional_up_to(("decays", "steps", "inputs"))
def sweep(decays: Sequence[float], steps: int = 1, inputs: Any = None, *,
          shape: Optional[Sequence[int]] = None, seed: int = 0, fused: Optional[bool] = None,
          epsilon: float = DEFAULT_EPSILON, device: str = "auto",
          progress: Optional[Callable[[int], Any]] = None, api: str = "contrib",
          updates: str = "inplace", data_format: str = "NHWC", zero_debias: bool = False,
          share_variables: bool = True, batches: Any = None, trainable: bool = True,
          exact: bool = False) -> "SweepResult":
    """Runs a batch-norm layer in train then test mode for every decay and returns what probe()
    would return for each. The decays share one graph: the input is tiled along the channel
    axis, one copy of its channels per decay, and the decay is a per-channel tensor, so each
    train step is one ``Session.run`` for all of them (in chunks that keep a tiled tensor under
    4 MiB; an input larger than that runs one decay per chunk).

    Args:
      decays: a non-empty sequence of numbers in [0, 1].
      steps, inputs, shape, seed, fused, epsilon, device, api, updates, data_format,
        zero_debias, share_variables, batches, trainable: as for probe().
      progress: called with 1 for each decay as it finishes (e.g. a tqdm bar's ``update``).
      exact: run one decay at a time (a ``Session.run`` per decay per step) through the same
        graph, so that every number is bit-identical to probe()'s on every backend.
      Arguments after ``inputs`` are keyword-only.

    Returns:
      A SweepResult: ``result[i]`` is the ProbeResult of ``decays[i]``, equal to
      probe(decay=decays[i], ...) but for the op names in its device report and, where
      TensorFlow's CPU kernels round a channel differently in the longer tiled vectors, a few
      float32 ulps (docs/sweeps.md has the bounds; C a multiple of 8, or ``exact``: none);
      ``moving_mean`` / ``moving_variance`` are [len(decays), steps, C].

    Raises:
      ProbeConfigError: for any invalid argument, with a one-line message, before TensorFlow is
        imported; also for a fourth positional argument or a shape passed as ``inputs``.
    """
    checked = check_decays(decays)
    check_not_a_shape(inputs)
    config = ProbeConfig.create(
        decay=checked[0], inputs=inputs, shape=shape, seed=seed, fused=fused, steps=steps,
        epsilon=epsilon, device=device, api=api, updates=updates, data_format=data_format,
        zero_debias=zero_debias, share_variables=share_variables, batches=batches,
        trainable=trainable)
    exact = check_flag("exact", exact)
    return SweepResult(engines.choose(config).run_decays(config, checked, progress, exact))
