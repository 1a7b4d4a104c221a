"""Decays per second, four ways, on the same input and layer (seed 0, [1, 4, 4, 1], fused by
default, one train step, CPU):

  (a) one process per decay, the seed's way: ``run_experiment.py --decay D``
  (b) one graph and session per decay: ``probe(decay=D)``
  (c) one graph for all decays: ``sweep(decays)``
  (d) numpy: the same update rule and outputs per decay, in float32

and the cold start of ``run_experiment.py --decay 0`` against importing TensorFlow alone.
Checks how far (c) is from (b) (testing.deviation: bit-identical, or within the sweep's
documented bound). The machine is shared, so every timing is repeated
and the medians are reported.

  PYTHONPATH=. .venv/bin/python benchmarks/bench_sweep.py [--values 2000] [--repeats 5]
"""
import argparse
import json
import time
import warnings

import numpy as np

from common import machine, median, python

SHAPE = (1, 4, 4, 1)
EPSILON = 1e-3
TARGET_RATE, TARGET_RATIO, TARGET_COLD = 1500.0, 80.0, 1.2


def numpy_probe(x: np.ndarray, decay: float) -> tuple:
    """One decay as probe() computes it (fused: the variance fed is n/(n-1)), in float32."""
    mean = x.mean(axis=(0, 1, 2))
    biased = x.var(axis=(0, 1, 2))
    n = x.size // x.shape[-1]
    fed = biased * np.float32(n / (n - 1.0))
    factor = np.float32(1.0 - decay)
    moving_mean = np.zeros_like(mean)
    moving_var = np.ones_like(mean)
    moving_mean -= (moving_mean - mean) * factor
    moving_var -= (moving_var - fed) * factor
    train = (x - mean) / np.sqrt(biased + np.float32(EPSILON))
    test = (x - moving_mean) / np.sqrt(moving_var + np.float32(EPSILON))
    return moving_mean, moving_var, float(np.max(np.abs(test.astype(np.float64) - train)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--values", type=int, default=2000, help="decays per sweep (c, d)")
    parser.add_argument("--probes", type=int, default=50, help="decays for (b)")
    parser.add_argument("--processes", type=int, default=5, help="decays for (a)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from bn_decay_probe import probe, sweep
    from bn_decay_probe.probe.config import seeded_inputs
    from bn_decay_probe.testing import deviation, sweep_bound

    print("machine: %s" % machine())
    decays = [float(d) for d in np.linspace(0.0, 1.0, args.values)]
    every = max(1, args.values // args.probes)
    probed = decays[::every][:args.probes]
    sweep(decays[:10], device="cpu")  # TensorFlow's one-time start, out of every timing

    per_value = {"a": [], "b": [], "c": [], "d": []}
    cold = {"run_experiment.py --decay 0": [], "import tensorflow; tf.contrib.layers": []}
    x = seeded_inputs(SHAPE, 0)
    for repeat in range(args.repeats):
        start = time.perf_counter()
        swept = sweep(decays, device="cpu")
        per_value["c"].append((time.perf_counter() - start) / len(decays))
        start = time.perf_counter()
        alone = [probe(decay=d, device="cpu") for d in probed]
        per_value["b"].append((time.perf_counter() - start) / len(probed))
        start = time.perf_counter()
        reference = [numpy_probe(x, d) for d in decays]
        per_value["d"].append((time.perf_counter() - start) / len(decays))
        for decay in probed[:args.processes]:
            start = time.perf_counter()
            out = python("run_experiment.py", "--decay", repr(decay), "--device", "cpu",
                         "--json", "-")
            per_value["a"].append(time.perf_counter() - start)
            document = json.loads(out.stdout)["results"][0]
            assert document["snapshots"] == alone[probed.index(decay)].to_dict()["snapshots"]
        for command, code in (("run_experiment.py --decay 0", ["run_experiment.py", "--decay",
                                                               "0"]),
                              ("import tensorflow; tf.contrib.layers",
                               ["-c", "import tensorflow as tf; tf.contrib.layers"])):
            start = time.perf_counter()
            python(*code)
            cold[command].append(time.perf_counter() - start)
        print("repeat %d: (a) %.0f ms (b) %.2f ms (c) %.3f ms (d) %.3f ms per value"
              % (repeat + 1, 1e3 * per_value["a"][-1], 1e3 * per_value["b"][-1],
                 1e3 * per_value["c"][-1], 1e3 * per_value["d"][-1]))

    by_decay = {d: r for d, r in zip(decays, swept)}
    found = [deviation(by_decay[d], r) for d, r in zip(probed, alone)]
    bound = sweep_bound(alone[0])
    identical = sum(f.identical for f in found)
    within = all(max(f.statistics, f.outputs) <= bound and f.gap <= 2 * bound for f in found)
    worst = max(max(np.abs(r.after["train"]["moving_variance"] - ref[1]).max() /
                    ref[1].max() for r, ref in zip(swept, reference)), 0.0)
    m = {k: median(v) for k, v in per_value.items()}
    rate = 1.0 / m["c"]
    cold_ratio = median(cold["run_experiment.py --decay 0"]) / \
        median(cold["import tensorflow; tf.contrib.layers"])
    print()
    print("median time per decay value (%d repeats; (a) over %d processes each):"
          % (args.repeats, min(args.processes, len(probed))))
    print("  (a) one process per decay     %9.1f ms" % (1e3 * m["a"]))
    print("  (b) graph + session per decay %9.2f ms  (%d decays)" % (1e3 * m["b"], len(probed)))
    print("  (c) sweep, one graph          %9.3f ms  (%d decays: %.0f values/s)"
          % (1e3 * m["c"], len(decays), rate))
    print("  (d) numpy, float32            %9.3f ms" % (1e3 * m["d"]))
    print("ratios: (a)/(c) %.0fx  (b)/(c) %.0fx  (c)/(d) %.1fx"
          % (m["a"] / m["c"], m["b"] / m["c"], m["c"] / m["d"]))
    print("(c) against (b) on %d decays: %d bit-identical, the largest deviation %.2g ulps "
          "(outputs), %.2g (gap), bound %.0f; numpy (d) within %.1e (relative) of (c)"
          % (len(probed), identical, max(f.outputs for f in found),
             max(f.gap for f in found), bound, worst))
    print("cold start: run_experiment.py --decay 0 %.2f s, import tensorflow + tf.contrib.layers "
          "%.2f s: %.2fx" % (median(cold["run_experiment.py --decay 0"]),
                             median(cold["import tensorflow; tf.contrib.layers"]), cold_ratio))
    print("targets: >= %.0f values/s %s; (b)/(c) >= %.0fx %s; within the bound %s; cold start "
          "<= %.1fx %s" % (TARGET_RATE, _met(rate >= TARGET_RATE), TARGET_RATIO,
                           _met(m["b"] / m["c"] >= TARGET_RATIO), _met(within), TARGET_COLD,
                           _met(cold_ratio <= TARGET_COLD)))


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


if __name__ == "__main__":
    main()
