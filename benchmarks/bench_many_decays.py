"""Sweeps whose cost grows with steps, not with decays, and the semantics matrix, against numpy
doing the same work and a cold ``run_experiment.py --decay 0.9``, all in one run:

- cold: ``run_experiment.py --decay 0.9``, a fresh process (TensorFlow's import included);
- sweep(n decays, 1000 steps) for n = 1, 10, 100, 1000 on the seed's input ([1, 4, 4, 1],
  fused by default, CPU), in this process after TensorFlow's start;
- numpy: the same work in float32, vectorized over the decays: each step the batch statistics,
  every decay's moving averages (kept per step), test output and test/train gap (float64);
- ``run_experiment.py --matrix``, a fresh process, and numpy stepping each of its rows for as
  many steps as the row ran (read from its JSON);
- peak RSS, each in a fresh process: probe() of 10 steps on [32, 56, 56, 64] and sweep() of
  10 decays x 10 steps on it.

Every timing is repeated, the runs interleaved, and medians reported, wall clock and CPU time
(this process's, or the children's), since the machine is shared: the CPU ratios move less
with other work. Checks that numpy and the sweep agree to float32 noise.

  .venv/bin/python benchmarks/bench_many_decays.py [--repeats 5] [--steps 1000]
"""
import argparse
import json
import resource
import sys
import time
import warnings

import numpy as np

from common import machine, median, python

DECAY_COUNTS = (1, 10, 100, 1000)
SHAPE = (1, 4, 4, 1)
LARGE = (32, 56, 56, 64)
EPSILON = 1e-3
TARGETS = {"sweep 100 / sweep 1": 3.0, "sweep 1000 / sweep 1": 10.0,
           "per decay-step, sweep / numpy": 10.0, "--matrix / cold --decay 0.9": 4.0,
           "peak RSS, sweep / probe": 2.0}


def numpy_sweep(x: np.ndarray, decays, steps: int, fused: bool = True):
    """What sweep(decays, steps) computes, in numpy float32: moving_mean and moving_variance
    after each step [steps, decays, C] and the test/train gap [steps, decays]."""
    channels = x.shape[-1]
    flat = x.reshape(-1, channels).astype(np.float32)
    n = flat.shape[0]
    factor = (1.0 - np.asarray(decays, np.float64)).astype(np.float32)[:, None]
    moving_mean = np.zeros((len(decays), channels), np.float32)
    moving_var = np.ones((len(decays), channels), np.float32)
    means = np.empty((steps,) + moving_mean.shape, np.float32)
    variances = np.empty_like(means)
    gaps = np.empty((steps, len(decays)))
    eps = np.float32(EPSILON)
    for k in range(steps):
        mean, var = flat.mean(axis=0), flat.var(axis=0)
        fed = var * np.float32(n / (n - 1.0)) if fused else var
        train = (flat - mean) / np.sqrt(var + eps)
        moving_mean -= (moving_mean - mean) * factor
        moving_var -= (moving_var - fed) * factor
        means[k], variances[k] = moving_mean, moving_var
        test = (flat - moving_mean[:, None]) / np.sqrt(moving_var[:, None] + eps)
        gaps[k] = np.abs(test.astype(np.float64) - train).max(axis=(1, 2))
    return means, variances, gaps


def timed(function, *args, **options):
    wall, cpu = time.perf_counter(), time.process_time()
    value = function(*args, **options)
    return value, time.perf_counter() - wall, time.process_time() - cpu


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cold(*args: str):
    """A fresh run_experiment.py: its output, wall seconds, CPU seconds."""
    wall, cpu = time.perf_counter(), child_cpu()
    out = python("run_experiment.py", *args)
    return out.stdout, time.perf_counter() - wall, child_cpu() - cpu


def child_memory(mode: str) -> None:
    from bn_decay_probe import probe, sweep

    if mode == "probe":
        probe(decay=0.9, shape=LARGE, steps=10, device="cpu")
    elif mode == "sweep":
        sweep(list(np.linspace(0.9, 0.999, 10)), steps=10, shape=LARGE, device="cpu")
    else:  # the footprint of TensorFlow's import and a session on a tiny input
        probe(decay=0.9, device="cpu")
    print(json.dumps({"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))


def peak(mode: str) -> float:
    return json.loads(python(__file__, "--child", mode).stdout)["peak"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.child:
        return child_memory(args.child)
    from bn_decay_probe import sweep
    from bn_decay_probe.probe.config import seeded_inputs
    from bn_decay_probe.probe.matrix import MATRIX_DECAYS, MATRIX_SHAPE

    print("machine: %s" % machine())
    x = seeded_inputs(SHAPE, 0)
    sweep([0.5], steps=2, device="cpu")  # TensorFlow's one-time start, out of every timing
    times = {key: [] for key in ["cold --decay 0.9", "--matrix", "numpy matrix"] +
             ["sweep %d" % n for n in DECAY_COUNTS] + ["numpy %d" % n for n in DECAY_COUNTS]}
    cpu = {key: [] for key in times}
    agree = 0.0
    for repeat in range(args.repeats):
        _, wall, used = cold("--decay", "0.9")
        times["cold --decay 0.9"].append(wall)
        cpu["cold --decay 0.9"].append(used)
        for n in DECAY_COUNTS:
            decays = [float(d) for d in np.linspace(0.5, 0.999, n)]
            swept, wall, used = timed(sweep, decays, args.steps, seed=0, epsilon=EPSILON,
                                      device="cpu")
            times["sweep %d" % n].append(wall)
            cpu["sweep %d" % n].append(used)
            (means, variances, gaps), wall, used = timed(numpy_sweep, x, decays, args.steps)
            times["numpy %d" % n].append(wall)
            cpu["numpy %d" % n].append(used)
            agree = max(agree, float(np.max(np.abs(variances.transpose(1, 0, 2) -
                                                   swept.moving_variance)
                                            / swept.moving_variance)))
        out, wall, used = cold("--matrix", "--json", "-")
        times["--matrix"].append(wall)
        cpu["--matrix"].append(used)
        rows = json.loads(out)["matrix"]["rows"]
        steps_per_row = [max(c["steps_run"] for c in row["measured"]["steps_to_converge"]
                             .values()) for row in rows if row["measured"]]
        matrix_x = seeded_inputs(MATRIX_SHAPE, 0)
        _, wall, used = timed(lambda: [numpy_sweep(matrix_x, (0.0,) + MATRIX_DECAYS, k)
                                       for k in steps_per_row])
        times["numpy matrix"].append(wall)
        cpu["numpy matrix"].append(used)
        print("repeat %d: cold %.2f s, --matrix %.2f s, sweep 1/10/100/1000: %s s"
              % (repeat + 1, times["cold --decay 0.9"][-1], times["--matrix"][-1],
                 "/".join("%.2f" % times["sweep %d" % n][-1] for n in DECAY_COUNTS)),
              flush=True)
    print("load after the timings: %s" % machine().split("load average ")[1])
    m = {k: median(v) for k, v in times.items()}
    c = {k: median(v) for k, v in cpu.items()}
    print()
    print("median of %d, wall (CPU) seconds; %d steps per sweep, input %s:"
          % (args.repeats, args.steps, list(SHAPE)))
    print("  cold run_experiment.py --decay 0.9  %7.2f (%5.2f)" % (m["cold --decay 0.9"],
                                                               c["cold --decay 0.9"]))
    ratios = {}
    for n in DECAY_COUNTS:
        key = "sweep %d" % n
        per = lambda t: 1e9 * t / (n * args.steps)  # noqa: E731
        print("  sweep(%4d decays)  %7.3f (%5.3f) = %6.0f ns per decay-step; numpy %6.3f "
              "(%5.3f) = %5.0f ns: %4.1fx (CPU %4.1fx)"
              % (n, m[key], c[key], per(m[key]), m["numpy %d" % n], c["numpy %d" % n],
                 per(m["numpy %d" % n]), m[key] / m["numpy %d" % n],
                 c[key] / c["numpy %d" % n]))
    for n in (10, 100, 1000):
        print("  sweep(%d) / sweep(1): %.2fx (CPU %.2fx)"
              % (n, m["sweep %d" % n] / m["sweep 1"], c["sweep %d" % n] / c["sweep 1"]))
    ratios["sweep 100 / sweep 1"] = m["sweep 100"] / m["sweep 1"]
    ratios["sweep 1000 / sweep 1"] = m["sweep 1000"] / m["sweep 1"]
    ratios["per decay-step, sweep / numpy"] = max(m["sweep %d" % n] / m["numpy %d" % n]
                                                  for n in DECAY_COUNTS)
    print("  run_experiment.py --matrix          %7.2f (%5.2f): %.2fx the cold --decay 0.9 "
          "(CPU %.2fx); numpy doing its steps %.2f (%.2f)"
          % (m["--matrix"], c["--matrix"], m["--matrix"] / m["cold --decay 0.9"],
             c["--matrix"] / c["cold --decay 0.9"], m["numpy matrix"], c["numpy matrix"]))
    ratios["--matrix / cold --decay 0.9"] = m["--matrix"] / m["cold --decay 0.9"]
    print("  numpy and the sweep agree: moving_variance within %.1e (relative)" % agree)
    footprint, alone, swept = (median([peak(mode) for _ in range(3)])
                               for mode in ("tiny", "probe", "sweep"))
    size = 4 * float(np.prod(LARGE)) / 2 ** 20
    print("peak RSS (median of 3 processes), %s float32 (%.1f MiB), 10 steps: probe() %.0f MiB, "
          "sweep() of 10 decays %.0f MiB: %.2fx; above a probe() on [1, 4, 4, 1] (%.0f MiB): "
          "%.0f and %.0f MiB, %.1f and %.1f input sizes"
          % (list(LARGE), size, alone, swept, swept / alone, footprint, alone - footprint,
             swept - footprint, (alone - footprint) / size, (swept - footprint) / size))
    ratios["peak RSS, sweep / probe"] = swept / alone
    print("targets: " + "; ".join("%s <= %gx: %.2fx %s" % (name, TARGETS[name], value,
                                                            "met" if value <= TARGETS[name]
                                                            else "MISSED")
                                  for name, value in ratios.items()))


if __name__ == "__main__":
    sys.exit(main())
