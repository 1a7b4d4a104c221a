"""repair: time against bare training-mode forward passes, and peak memory against the number
of batches.

The graph: tf-slim's resnet_v1_50 (53 batch-norm layers, fused), built with a boolean
is_training placeholder, inputs [B, S, S, 3] (default B 16, S 64), random weights.

- time, in one process after TensorFlow's start, interleaved and repeated (medians): K bare
  training-mode forward passes (``session.run(logits, {x: batch, is_training: True})``, no
  update op) against ``recalibrate(session, the same K batches, x)``, timed whole: finding the
  layers, the K statistics passes, the assignment and, with its default check_batches=None,
  the check (every batch in inference mode before and after: 2K more passes); and with
  check_batches=0 (the statistics alone). The first call of each is timed apart (TensorFlow
  prepares each new kind of run once).
- peak RSS, each in a fresh process: ``bn-decay-probe repair`` on a checkpoint of the same net
  with a .npy of K batches (memory-mapped) for several K; peak memory must not grow with K.

Wall time and CPU time (all threads of the process) are both reported: the machine is shared.

  .venv/bin/python benchmarks/bench_repair.py [--batches 40] [--repeats 5] [--memory 10,40,160]
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

from common import ROOT, machine, median, peak_rss_mib, python, write_batches

TARGET_TIME = 1.3  # repair without its check / bare forward passes
TARGET_CHECKED = 3 * TARGET_TIME  # with the check: three passes over the data
TARGET_MEMORY = 1.10  # largest / smallest peak RSS over the numbers of batches


def build(batch_side):
    """(session, x, is_training, logits) of resnet_v1_50, initialized with seeded weights."""
    from bn_decay_probe import backend

    side = batch_side
    with backend.quiet() as tf1:
        if backend.name() == "tf1":
            from tensorflow.contrib import slim
            from tensorflow.contrib.slim import nets
        else:
            import tf_slim as slim
            from tf_slim import nets
        graph = tf1.Graph()
        with graph.as_default():
            tf1.set_random_seed(0)
            x = tf1.placeholder(tf1.float32, (None, side, side, 3), name="images")
            training = tf1.placeholder_with_default(False, [], name="is_training")
            with slim.arg_scope(nets.resnet_v1.resnet_arg_scope()):
                logits, _ = nets.resnet_v1.resnet_v1_50(x, num_classes=10,
                                                        is_training=training)
            init = tf1.global_variables_initializer()
            saver = tf1.train.Saver()
        session = tf1.Session(graph=graph)
        session.run(init)
    return session, x, training, logits, saver


def data(count, rows, side, seed=0):
    draws = np.random.RandomState(seed)
    return [draws.normal(2.0, 3.0, (rows, side, side, 3)).astype(np.float32)
            for _ in range(count)]


def clocks():
    """(wall, CPU) seconds. CPU time counts every thread of this process (TensorFlow's pools
    too): on a machine other work shares it is the steadier measure of the work done."""
    return time.perf_counter(), time.process_time()


def since(start):
    wall, cpu = clocks()
    return wall - start[0], cpu - start[1]


def bare(session, x, training, logits, batches):
    start = clocks()
    for batch in batches:
        session.run(logits, {x: batch, training: True})
    return since(start)


def timed_repair(session, x, batches, check_batches):
    from bn_decay_probe.repair import recalibrate

    start = clocks()
    recalibrate(session, batches, x, check_batches=check_batches)
    return since(start)


def time_section(args):
    session, x, training, logits, _ = build(args.side)
    batches = data(args.batches, args.rows, args.side)
    cold = {"bare": bare(session, x, training, logits, batches[:1]),
            "repair": timed_repair(session, x, batches[:1], None)}
    times = {"bare": [], "repair": [], "repair, check_batches=0": []}
    for repeat in range(args.repeats):
        times["bare"].append(bare(session, x, training, logits, batches))
        times["repair"].append(timed_repair(session, x, batches, None))
        times["repair, check_batches=0"].append(timed_repair(session, x, batches, 0))
        print("repeat %d: %s" % (repeat + 1, "  ".join(
            "%s %.2f s (CPU %.2f s)" % (name, values[-1][0], values[-1][1])
            for name, values in times.items())), flush=True)
    medians = {name: (median(v[0] for v in values), median(v[1] for v in values))
               for name, values in times.items()}
    return cold, medians


def child_peak(prefix, data_path, rows, directory):
    """Peak RSS (MiB) of a process running the CLI repair (in this process: see --child)."""
    out = tempfile.mkdtemp(dir=directory)
    done = python(os.path.join("benchmarks", "bench_repair.py"), "--child", prefix, data_path,
                  os.path.join(out, "fixed"), str(rows))
    return float(done.stdout.strip().splitlines()[-1])


def child(prefix, data_path, out, rows):
    from bn_decay_probe.cli import main

    code = main(["repair", prefix, "--data", data_path, "--out", out, "--batch-size", rows,
                 "--quiet", "--json", os.devnull])
    assert code == 0
    print(peak_rss_mib())


def memory_section(args):
    with tempfile.TemporaryDirectory(prefix="bench_repair_") as directory:
        session, x, training, logits, saver = build(args.side)
        with session.graph.as_default():  # TF 2.x saves eagerly outside a graph
            prefix = saver.save(session, os.path.join(directory, "model.ckpt"))
        session.close()
        draws = np.random.RandomState(1)
        found = {}
        for count in args.memory:
            path = os.path.join(directory, "data_%d.npy" % count)
            size = write_batches(path, count, args.rows, args.side, draws)
            peaks = [child_peak(prefix, path, args.rows, directory)
                     for _ in range(args.memory_repeats)]
            found[count] = (median(peaks), size)
            print("%4d batches (%.0f MiB of data): peak RSS %s MiB" % (
                count, found[count][1], ", ".join("%.0f" % p for p in peaks)), flush=True)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory", type=lambda t: [int(v) for v in t.split(",")],
                        default=[10, 40, 160])
    parser.add_argument("--memory-repeats", type=int, default=3)
    parser.add_argument("--child", nargs=4, metavar=("PREFIX", "DATA", "OUT", "ROWS"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from bn_decay_probe import backend

    print("machine: %s" % machine())
    print("TensorFlow %s (%s), resnet_v1_50, batches of [%d, %d, %d, 3]"
          % (backend.tensorflow().__version__, backend.name(), args.rows, args.side,
             args.side))
    print("\ntime: %d batches, median of %d, interleaved" % (args.batches, args.repeats))
    cold, medians = time_section(args)
    bare_wall, bare_cpu = medians["bare"]
    for name, (wall, cpu) in medians.items():
        print("  %-24s wall %6.2f s (%.3f s per batch, %.2fx bare)  CPU %6.2f s (%.2fx bare)"
              % (name, wall, wall / args.batches, wall / bare_wall, cpu, cpu / bare_cpu))
    print("  first call (TF prepares each kind of run once): bare %.2f s, repair %.2f s "
          "(one batch, wall)" % (cold["bare"][0], cold["repair"][0]))
    print("\npeak RSS of `bn-decay-probe repair` (median of %d processes):" % args.memory_repeats)
    peaks = memory_section(args)
    values = [peak for peak, _ in peaks.values()]
    growth = max(values) / min(values)
    ratios = {name: (medians[name][0] / bare_wall, medians[name][1] / bare_cpu)
              for name in ("repair, check_batches=0", "repair")}
    print("\ntargets: %s; peak memory flat in the number of batches (max/min <= %.2f) %s "
          "(%.3f)" % ("; ".join(
              "%s <= %.1fx bare forward passes, wall %s (%.2fx), CPU %s (%.2fx)" % (
                  name, target, "met" if ratios[name][0] <= target else "MISSED",
                  ratios[name][0], "met" if ratios[name][1] <= target else "MISSED",
                  ratios[name][1])
              for name, target in (("repair, check_batches=0", TARGET_TIME),
                                   ("repair", TARGET_CHECKED))),
              TARGET_MEMORY, "met" if growth <= TARGET_MEMORY else "MISSED", growth))


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
