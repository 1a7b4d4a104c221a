"""probe() on large inputs against a bare session running the same layer, and peak memory.

For [32, 56, 56, 64] and [64, 112, 112, 64] (float32, CPU, decay 0.9, one train step):
- time: probe(inputs=x) against the bare way, a graph holding x in a variable with the two
  contrib batch_norm branches, its session, then one sess.run of each branch; both timed
  whole, and the bare sess.run calls alone. Interleaved in one process after TensorFlow's
  start, repeated, medians (the machine is shared).
- peak RSS, each in a fresh process: importing TensorFlow (with tf.contrib.layers) alone,
  probe(shape=...) drawing its input, probe(inputs=x) on an array of the caller, and the bare
  way; what each holds beyond the import's footprint (and the caller's own array) against
  3.5x the input's size.
Checks that probe() and the bare session give the same outputs bit for bit.

  .venv/bin/python benchmarks/bench_large.py [--repeats 7] [--shapes 32,56,56,64 ...]
"""
import argparse
import json
import resource
import sys
import time
import warnings

import numpy as np

from common import machine, median, python

SHAPES = ("32,56,56,64", "64,112,112,64")
DECAY = 0.9
TARGET_TIME, TARGET_MEMORY = 1.10, 3.5
MEMORY_MODES = ("probe drawing its input", "probe on the caller's array", "bare session")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def users_array(shape) -> np.ndarray:
    """The input as a caller holds it: the numbers probe(shape=..., seed=0) draws, in an
    ordinary numpy array (TensorFlow copies a feed that is not 64-byte aligned)."""
    draws = np.random.RandomState(0)
    x = np.empty(shape, np.float32)
    for row in range(shape[0]):  # no float64 copy of the whole input at any point
        x[row] = draws.uniform(0.0, 255.0, shape[1:])
    return x


def bare(x: np.ndarray):
    """The layer as a user writes it: input held in a variable, train and test branches
    sharing variables, one sess.run each. Returns the outputs and the seconds of the runs."""
    from bn_decay_probe import backend

    with backend.quiet() as tf1:
        graph = tf1.Graph()
        with graph.as_default(), tf1.device("/device:CPU:0"):
            value = tf1.placeholder(tf1.float32, x.shape)
            held = tf1.Variable(value, trainable=False, collections=[])
            outputs = []
            for training in (True, False):
                with tf1.variable_scope("probe", reuse=tf1.AUTO_REUSE):
                    outputs.append(backend.batch_norm()(held, decay=DECAY, is_training=training,
                                                        updates_collections=None))
            init = [held.initializer, tf1.global_variables_initializer()]
        session = tf1.Session(graph=graph, config=backend.session_config("/device:CPU:0"))
        try:
            session.run(init, {value: x})
            start = time.perf_counter()
            train, test = session.run(outputs[0]), session.run(outputs[1])
            return train, test, time.perf_counter() - start
        finally:
            session.close()


def child_time(shape, repeats: int) -> dict:
    from bn_decay_probe import probe

    probe(decay=DECAY, device="cpu")  # TensorFlow's one-time start, out of the timings
    x = users_array(shape)
    times = {"probe": [], "bare": [], "bare sess.run": []}
    for _ in range(repeats):
        start = time.perf_counter()
        result = probe(decay=DECAY, inputs=x, device="cpu")
        times["probe"].append(time.perf_counter() - start)
        del result
        start = time.perf_counter()
        train, test, runs = bare(x)
        times["bare"].append(time.perf_counter() - start)
        times["bare sess.run"].append(runs)
        del train, test
    result = probe(decay=DECAY, inputs=x, device="cpu")
    train, test, _ = bare(x)
    times["identical"] = bool(np.array_equal(result.outputs["train"], train) and
                              np.array_equal(result.outputs["test"], test))
    return times


def child_memory(shape, mode: str) -> dict:
    if mode == "import":
        from bn_decay_probe import backend

        backend.tensorflow().contrib.layers
        return {"peak": peak_mib()}
    from bn_decay_probe import probe

    if mode == "session":  # TensorFlow having run a session at all: probe() on [1, 4, 4, 1]
        probe(decay=DECAY, device="cpu")
    elif mode == MEMORY_MODES[0]:
        probe(decay=DECAY, shape=shape, device="cpu")
    elif mode == MEMORY_MODES[1]:
        probe(decay=DECAY, inputs=users_array(shape), device="cpu")
    else:
        bare(users_array(shape))
    return {"peak": peak_mib()}


def _peak(shape: str, mode: str) -> float:
    return json.loads(python(__file__, "--child", "memory", shape, mode).stdout)["peak"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--shapes", nargs="+", default=SHAPES, metavar="N,H,W,C")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.child:
        kind, shape, rest = args.child[0], tuple(map(int, args.child[1].split(","))), args.child[2:]
        found = child_time(shape, int(rest[0])) if kind == "time" else \
            child_memory(shape, rest[0])
        print(json.dumps(found))
        return
    print("machine: %s" % machine())
    footprint = median([_peak("1,1,1,1", "import") for _ in range(3)])
    running = median([_peak("1,1,1,1", "session") for _ in range(3)])
    print("peak RSS (median of 3 processes): import tensorflow + tf.contrib.layers %.0f MiB; "
          "then probe() on [1, 4, 4, 1] %.0f MiB" % (footprint, running))
    verdicts = []
    for text in args.shapes:
        shape = tuple(map(int, text.split(",")))
        size = 4 * int(np.prod(shape)) / 2 ** 20
        times = json.loads(python(__file__, "--child", "time", text,
                                  str(args.repeats)).stdout)
        m = {k: median(v) for k, v in times.items() if k != "identical"}
        ratio_total, ratio_runs = m["probe"] / m["bare"], m["probe"] / m["bare sess.run"]
        print("\n%s float32, %.0f MiB: median of %d, interleaved" % (list(shape), size,
                                                                      args.repeats))
        print("  probe(inputs=x)                  %6.3f s" % m["probe"])
        print("  bare: graph, session, both runs  %6.3f s  probe / bare %.2fx"
              % (m["bare"], ratio_total))
        print("  bare: the two sess.run alone     %6.3f s  probe / bare sess.run %.2fx"
              % (m["bare sess.run"], ratio_runs))
        print("  same outputs bit for bit: %s" % times["identical"])
        print("  peak RSS (median of 3 processes), above the import's %.0f MiB and the caller's "
              "own array where there is one:" % footprint)
        for mode in MEMORY_MODES:
            peak = median([_peak(text, mode) for _ in range(3)])
            own = 0 if mode == MEMORY_MODES[0] else size
            extra = (peak - footprint - own) / size
            print("    %-28s %6.0f MiB: %.2fx the input (%.2fx above the tiny probe's)"
                  % (mode + ":", peak, extra, (peak - running - own) / size))
            if mode != "bare session":
                verdicts.append(("%s %s <= %.1fx" % (list(shape), mode, TARGET_MEMORY),
                                 extra <= TARGET_MEMORY))
        verdicts.append(("%s probe within %d%% of the bare way" % (
            list(shape), round(100 * (TARGET_TIME - 1))), ratio_total <= TARGET_TIME))
        verdicts.append(("%s identical" % list(shape), times["identical"]))
    print("\ntargets: " + "; ".join("%s %s" % (name, "met" if ok else "MISSED")
                                   for name, ok in verdicts))


if __name__ == "__main__":
    sys.exit(main())
