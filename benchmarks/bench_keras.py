"""Keras: the repair of a live model against bare ``model(x, training=True)`` calls, the
repair's peak memory against the number of batches, and the doctor on a ResNet50 .keras.

- check: the repair's result on this backend: its check (each layer's normalization error in
  inference mode) before and after on one batch, and the
  first and last layers' pooled statistics against numpy over their inputs;
- time, in one process, interleaved and repeated (medians): K bare calls ``model(x,
  training=True)`` on K batches, eagerly (what a loop over the data does) and through one
  ``tf.function`` traced once (its trace included, as the repair's is: each repair traces its
  pass anew), against ``recalibrate(model, the same K batches)`` timed whole (finding the layers,
  the trace, the K passes, the assignment and the default check: two inference-mode passes over
  the K batches). On JAX the compiled bare calls are ``jax.jit``'s; on PyTorch there is no compiled run
  (eager only, under ``no_grad``). Model: keras.applications MobileNetV2 (alpha 0.35, 52
  batch-norm layers), weights=None, batches of [R, S, S, 3];
- peak RSS (VmHWM), each in a fresh process: ``bn-decay-probe repair`` on a .keras of the same
  model with a .npy of K batches, for several K (TensorFlow backend only);
- the doctor on a ResNet50 .keras saved with its Adam slots (53 batch-norm layers, ~280 MB):
  ``bn-decay-probe doctor`` in a fresh process, median of 5 (no TensorFlow needed).

  .venv-tf2/bin/python benchmarks/bench_keras.py [--framework keras3|tf_keras] [--batches 40]
  KERAS_BACKEND=jax python benchmarks/bench_keras.py --only time   # a venv with Keras 3 + JAX
  KERAS_BACKEND=torch python benchmarks/bench_keras.py --only check
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from common import ROOT, machine, median, peak_rss_mib, python, write_batches

TARGET_TIME = 1.3  # repair without its check / bare calls
TARGET_CHECKED = 3 * TARGET_TIME  # with the check: two more inference-mode passes
TARGET_MEMORY = 1.10  # largest / smallest peak RSS over the numbers of batches
TARGET_DOCTOR = 5.0  # seconds


def keras_of(framework):
    if framework == "keras3":
        import keras
        return keras
    from bn_decay_probe import backend

    backend.tensorflow()
    import tf_keras
    return tf_keras


def mobilenet(keras, side):
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(alpha=0.35, input_shape=(side, side, 3),
                                          weights=None, classes=10)


def data(count, rows, side, seed=0):
    draws = np.random.RandomState(seed)
    return [draws.normal(2.0, 3.0, (rows, side, side, 3)).astype(np.float32)
            for _ in range(count)]


def backend_of(keras):
    return keras.backend.backend() if hasattr(keras, "ops") else "tensorflow"


def synchronize(keras, value):
    """Waits for the result (JAX dispatches asynchronously)."""
    if hasattr(keras, "ops"):
        keras.ops.convert_to_numpy(value)
    else:
        value.numpy()


def bare_eager(keras, model, batches):
    start = time.perf_counter()
    if backend_of(keras) == "torch":
        import torch

        with torch.no_grad():
            for batch in batches:
                synchronize(keras, model(batch, training=True))
    else:
        for batch in batches:
            synchronize(keras, model(batch, training=True))
    return time.perf_counter() - start


def bare_compiled(keras, model, batches):
    """One compiled function of model(x, training=True), traced on the first batch (timed)."""
    name = backend_of(keras)
    start = time.perf_counter()
    if name == "tensorflow":
        import tensorflow as tf

        call = tf.function(lambda x: model(x, training=True))
    elif name == "jax":
        import jax

        def pure(trainable, non_trainable, x):
            return model.stateless_call(trainable, non_trainable, x, training=True)[0]

        jitted = jax.jit(pure)
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        def call(x):
            return jitted(trainable, non_trainable, x)
    else:
        return None
    for batch in batches:
        synchronize(keras, call(batch))
    return time.perf_counter() - start


def timed_repair(model, batches, check_batches=None):
    from bn_decay_probe.repair import recalibrate

    start = time.perf_counter()
    recalibrate(model, batches, check_batches=check_batches)
    return time.perf_counter() - start


def time_section(args, keras):
    model = mobilenet(keras, args.side)
    batches = data(args.batches, args.rows, args.side)
    bare_eager(keras, model, batches[:1])  # the process's first run of the model, untimed
    times = {"bare eager": [], "bare compiled": [], "repair": [], "repair, check_batches=0": []}
    for repeat in range(args.repeats):
        times["bare eager"].append(bare_eager(keras, model, batches))
        compiled = bare_compiled(keras, model, batches)
        if compiled is not None:
            times["bare compiled"].append(compiled)
        times["repair"].append(timed_repair(model, batches))
        times["repair, check_batches=0"].append(timed_repair(model, batches, 0))
        print("repeat %d: %s" % (repeat + 1, "  ".join(
            "%s %.2f s" % (name, values[-1]) for name, values in times.items() if values)),
            flush=True)
    return {name: median(values) for name, values in times.items() if values}


def check_section(args, keras):
    """The repair's numbers on this backend: one batch of 4R rows, the check before and after,
    and the first and last layers' pooled statistics against numpy over their inputs (a Keras
    sub-model run with training=True)."""
    from bn_decay_probe.repair import recalibrate

    model = mobilenet(keras, args.side)
    reference = mobilenet(keras, args.side)
    x = data(1, 4 * args.rows, args.side, seed=3)[0]
    result = recalibrate(model, [x])
    before, after = result.worst_error(False)[1], result.worst_error(True)[1]
    print("  statistics error in inference mode, worst layer: before %.4g, after %.4g "
          "(ratio %.3g); mean %.4g -> %.4g" % (before, after, after / before,
                                              result.mean_error(False), result.mean_error(True)))
    layers = [layer for layer in reference._flatten_layers(include_self=False, recursive=True)
              if hasattr(layer, "moving_mean")]
    for layer in (layers[0], layers[-1]):
        values = keras.Model(reference.inputs, layer.input)(x, training=True)
        values = np.asarray(keras.ops.convert_to_numpy(values) if hasattr(keras, "ops")
                            else values, np.float64)
        flat = values.reshape(-1, values.shape[-1])
        repaired = result.layer(layer.name)
        print("  %s: pooled vs numpy, mean max |diff| %.3g, variance max relative diff %.3g"
              % (layer.name, np.abs(repaired.mean_after - flat.mean(0)).max(),
                 np.abs(repaired.variance_after / flat.var(0) - 1).max()))
    return after / before


def child(model_path, data_path, out, rows):
    from bn_decay_probe.cli import main

    code = main(["repair", model_path, "--data", data_path, "--out", out, "--batch-size", rows,
                 "--quiet", "--json", os.devnull])
    assert code == 0
    print(peak_rss_mib())


def memory_section(args, keras, directory):
    model_path = os.path.join(directory, "model.keras")
    mobilenet(keras, args.side).save(model_path)
    draws = np.random.RandomState(1)
    found = {}
    for count in args.memory:
        path = os.path.join(directory, "data_%d.npy" % count)
        size = write_batches(path, count, args.rows, args.side, draws)
        peaks = []
        for _ in range(args.memory_repeats):
            out = os.path.join(tempfile.mkdtemp(dir=directory), "fixed.keras")
            done = python(os.path.join("benchmarks", "bench_keras.py"), "--child", model_path,
                          path, out, str(args.rows), "--framework", args.framework)
            peaks.append(float(done.stdout.strip().splitlines()[-1]))
        found[count] = (median(peaks), size)
        print("%4d batches (%.0f MiB of data): peak RSS %s MiB" % (
            count, found[count][1], ", ".join("%.0f" % p for p in peaks)), flush=True)
    return found


def doctor_section(keras, directory):
    """A ResNet50 .keras with Adam's slots (about 280 MB: one fit step, so they are saved)."""
    model = keras.applications.ResNet50(input_shape=(32, 32, 3), weights=None, classes=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  jit_compile=False)
    model.fit(data(1, 8, 32)[0], np.arange(8) % 10, batch_size=8, verbose=0)
    path = os.path.join(directory, "resnet50.keras")
    model.save(path)
    script = os.path.join(os.path.dirname(sys.executable), "bn-decay-probe")
    times = []
    for _ in range(5):
        start = time.perf_counter()
        done = subprocess.run([script, "doctor", path], cwd=ROOT, stdout=subprocess.PIPE)
        times.append(time.perf_counter() - start)
        assert done.returncode in (0, 1, 3)
    return median(times), os.path.getsize(path) / 2.0 ** 20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=("keras3", "tf_keras"), default="keras3")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory", type=lambda t: [int(v) for v in t.split(",")],
                        default=[10, 40, 160])
    parser.add_argument("--memory-repeats", type=int, default=3)
    parser.add_argument("--only", choices=("check", "time", "memory", "doctor"))
    parser.add_argument("--child", nargs=4, metavar=("MODEL", "DATA", "OUT", "ROWS"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    keras = keras_of(args.framework)
    print("machine: %s" % machine())
    print("%s %s, %s backend, MobileNetV2 (alpha 0.35), batches of [%d, %d, %d, 3]"
          % (args.framework, keras.__version__, backend_of(keras), args.rows, args.side,
             args.side))
    results = []
    if args.only in (None, "check"):
        print("\ncheck: MobileNetV2 from its random initial statistics, one batch of %d rows"
              % (4 * args.rows))
        ratio = check_section(args, keras)
        results.append("worst error at least 10x smaller %s (x%.3g)" % ("met" if ratio <= 0.1
                                                               else "MISSED", ratio))
    if args.only in (None, "time"):
        print("\ntime: %d batches, median of %d, interleaved" % (args.batches, args.repeats))
        medians = time_section(args, keras)
        for name, value in medians.items():
            print("  %-22s %6.2f s (%.3f s per batch)" % (name, value, value / args.batches))
        for name in ("bare eager", "bare compiled"):
            for repair, target in (("repair, check_batches=0", TARGET_TIME),
                                   ("repair", TARGET_CHECKED)):
                if name in medians:
                    ratio = medians[repair] / medians[name]
                    results.append("%s <= %.1fx %s calls %s (%.2fx)" % (
                        repair, target, name, "met" if ratio <= target else "MISSED", ratio))
    with tempfile.TemporaryDirectory(prefix="bench_keras_") as directory:
        if args.only in (None, "memory"):
            print("\npeak RSS of `bn-decay-probe repair` on a .keras (median of %d processes):"
                  % args.memory_repeats)
            peaks = [peak for peak, _ in memory_section(args, keras, directory).values()]
            growth = max(peaks) / min(peaks)
            results.append("peak memory flat in the number of batches (max/min <= %.2f) %s "
                           "(%.3f)" % (TARGET_MEMORY, "met" if growth <= TARGET_MEMORY
                                       else "MISSED", growth))
        if args.only in (None, "doctor"):
            seconds, size = doctor_section(keras, directory)
            print("\nbn-decay-probe doctor on a ResNet50 .keras with Adam slots (%.0f MB): "
                  "%.2f s (median of 5 processes)" % (size, seconds))
            results.append("doctor on a ResNet50 .keras < %.0f s %s (%.2f s)" % (
                TARGET_DOCTOR, "met" if seconds < TARGET_DOCTOR else "MISSED", seconds))
    print("\ntargets: " + "; ".join(results))


if __name__ == "__main__":
    main()
