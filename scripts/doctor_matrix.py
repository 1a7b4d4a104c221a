"""Usage: python scripts/doctor_matrix.py [MODEL ...]
       python scripts/doctor_matrix.py --cases

The doctor on real model code, every case (tests/real_models.py), the heavier models too: trains
each (model, case) once, diagnoses its tf.train.Saver checkpoint (with its .meta graph) and, for
Keras, its save_weights checkpoint, without and with --decay, and prints a markdown table with
the verdict the case calls for next to the one measured. Not run in CI (slim inception_v3 and
Keras ResNet50 take minutes); the CI-sized models are tested in tests/test_doctor_real.py.
``--cases``: the same for the cases users hit (tests/pattern_models.py; tested in
tests/test_doctor_cases.py). Exit status 1 when a verdict is wrong."""
import dataclasses
import os
import sys
import tempfile
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pattern_models  # noqa: E402
import real_models  # noqa: E402
from bn_decay_probe import backend  # noqa: E402
from bn_decay_probe.doctor import diagnose_checkpoint  # noqa: E402

# The verdict each case calls for, per checkpoint kind and --decay (None: given or not).
# "clean": exit 0; "incomplete": exit 3 (convergence not checked); else the finding codes.
EXPECTED = {
    ("correct", "saver"): "clean",
    ("forgot_update_ops", "saver"): "NEVER_UPDATED",
    ("too_few_steps", "saver"): "PARTLY_CONVERGED",
    # Layers the loss does not reach (inception_v3's auxiliary head) are not in the train step:
    # built in inference mode and never run, they are NEVER_UPDATED.
    ("inference_mode", "saver"): "TRAINED_IN_INFERENCE_MODE (+NEVER_UPDATED)",
    ("unshared_copy", "saver"): "UNSHARED_BRANCHES",
    ("correct", "weights"): ("incomplete", "clean"),
    ("forgot_update_ops", "weights"): "NEVER_UPDATED",
    ("too_few_steps", "weights"): ("incomplete", "PARTLY_CONVERGED"),
    # Without a graph the cause is not known: (0, 1) or NaN statistics, each layer flagged.
    ("inference_mode", "weights"): "NEVER_UPDATED or BAD_VARIANCE",
    ("unshared_copy", "weights"): ("incomplete", "clean"),  # the trained model's weights
}


def verdict(diagnosis):
    if not diagnosis.findings:
        return diagnosis.status
    counts = Counter(f.code for f in diagnosis.findings)
    return ", ".join("%s x%d" % item for item in sorted(counts.items()))


def right(expected, diagnosis, layers, partly=False):
    """``partly``: PARTLY_CONVERGED is right too (a --decay the few steps trained cannot
    reach), beside what the case calls for."""
    if partly and any(f.code == "PARTLY_CONVERGED" for f in diagnosis.findings):
        rest = [f for f in diagnosis.findings if f.code != "PARTLY_CONVERGED"]
        if expected == "clean":
            return not rest
        diagnosis = dataclasses.replace(diagnosis, findings=tuple(rest))
    if expected in ("clean", "incomplete"):
        return diagnosis.status == expected
    # "A or B": any of them; "A (+B)": A, and B may be there too.
    required, _, optional = expected.partition(" (+")
    allowed = set(required.split(" or ")) | {optional.rstrip(")")} - {""}
    flagged = {f.layer for f in diagnosis.findings}
    codes = {f.code for f in diagnosis.findings}
    wanted = required in codes if optional else bool(codes)
    return wanted and codes <= allowed and len(flagged) >= layers


def main(models, root):
    cache = real_models.Cache(root)
    versions = backend.versions()
    print("TensorFlow %s (%s backend), Python %s\n" % (versions["tensorflow"], versions["backend"],
                                                       versions["python"]))
    print("| model | case | checkpoint | BN layers | without --decay | with --decay D | "
          "right | train s |")
    print("|---|---|---|---|---|---|---|---|")
    wrong = 0
    for model in models:
        for case in real_models.CASES:
            start = time.time()
            trained = cache(model, case)
            seconds = time.time() - start
            kinds = [("saver", trained.saver_prefix)]
            if trained.weights_prefix:
                kinds.append(("weights", trained.weights_prefix))
            for kind, prefix in kinds:
                expected = EXPECTED[(case, kind)]
                if isinstance(expected, str):
                    expected = (expected, expected)
                results = [diagnose_checkpoint(prefix), diagnose_checkpoint(
                    prefix, decay=trained.decay)]
                # unshared_copy: the untrained copy's layers are the ones flagged.
                flagged = len(trained.copy_layers if case == "unshared_copy" else
                              trained.bn_layers)
                ok = all(right(e, d, flagged) for e, d in zip(expected, results))
                wrong += not ok
                print("| %s | %s | %s | %d | %s | %s (D=%g) | %s | %.0f |" % (
                    model, case, "Saver + .meta" if kind == "saver" else "save_weights",
                    len(results[0].layers), verdict(results[0]), verdict(results[1]),
                    trained.decay, "yes" if ok else "**NO**", seconds))
            sys.stdout.flush()
    return 1 if wrong else 0


# The cases users hit: (label, how to build it, the verdict it calls for with and without
# --decay). "A + B": codes of which A must be there and B may (NaN TF 1.15 leaves, see
# test_doctor_cases.py).
def _cases(cache, root):
    for api in pattern_models.APIS:
        yield ("blog's tf.cond, %s, no reuse" % api,
               lambda api=api: pattern_models.blog(api, os.path.join(root, api)).prefix,
               "UNSHARED_BRANCHES")
        yield ("blog's tf.cond, %s, reuse" % api,
               lambda api=api: pattern_models.blog(api, os.path.join(root, api + "-shared"),
                                                   share=True).prefix, "clean")
    for model in real_models.CI_MODELS:
        yield ("%s frozen on purpose (fine-tuned in inference mode)" % model,
               lambda model=model: pattern_models.frozen(
                   model, cache(model, "correct"), os.path.join(root, "frozen-" + model)),
               "clean")
    yield ("keras_mobilenet_v2, two train ops, the one run leaves the learning phase unset",
           lambda: pattern_models.two_train_ops(os.path.join(root, "two")),
           "NEVER_UPDATED (+TRAINED_IN_INFERENCE_MODE)")
    yield ("keras_mobilenet_v2, Model.fit, then 2 NaN and 1 inf planted",
           lambda: pattern_models.plant(cache("keras_mobilenet_v2", "correct").saver_prefix,
                                        os.path.join(root, "planted-keras"),
                                        {"bn_Conv1/moving_variance": {0: float("nan"),
                                                                      3: float("nan")},
                                         "block_1_expand_BN/moving_mean": {5: float("inf")}}),
           "BAD_VARIANCE")
    yield ("slim_resnet_v1_50, create_train_op, then 2 NaN and 1 inf planted",
           lambda: pattern_models.plant(
               pattern_models.slim_create_train_op(os.path.join(root, "cto")),
               os.path.join(root, "planted-slim"),
               {"resnet_v1_50/conv1/BatchNorm/moving_variance": {0: float("nan"),
                                                                 3: float("nan")},
                "resnet_v1_50/block1/unit_1/bottleneck_v1/conv1/BatchNorm/moving_mean":
                    {5: float("inf")}}), "BAD_VARIANCE")
    if backend.name() == "tf1":  # TF 2.16 removed tf.estimator
        for forgot in (False, True):
            yield ("Estimator, tf.layers, %s" % ("UPDATE_OPS forgotten" if forgot else
                                                 "correct"),
                   lambda forgot=forgot: pattern_models.estimator(
                       os.path.join(root, "estimator-%s" % forgot), forgot=forgot),
                   "NEVER_UPDATED" if forgot else "clean")


def cases(root):
    cache = real_models.Cache(os.path.join(root, "real"))
    versions = backend.versions()
    print("TensorFlow %s (%s backend), Python %s\n" % (versions["tensorflow"], versions["backend"],
                                                       versions["python"]))
    print("| case | BN layers | without --decay | with --decay 0.999 | right |")
    print("|---|---|---|---|---|")
    wrong = 0
    for label, make, expected in _cases(cache, root):
        prefix = make()
        results = [diagnose_checkpoint(prefix), diagnose_checkpoint(prefix, decay=0.999)]
        ok = right(expected, results[0], 1) and right(expected, results[1], 1, partly=True)
        wrong += not ok
        print("| %s | %d | %s | %s | %s |" % (label, len(results[0].layers), verdict(results[0]),
                                             verdict(results[1]), "yes" if ok else "**NO**"))
        sys.stdout.flush()
    return 1 if wrong else 0


if __name__ == "__main__":
    # The trained models take ~1 GB: removed when the table is printed.
    with tempfile.TemporaryDirectory(prefix="doctor_matrix_") as scratch:
        if sys.argv[1:] == ["--cases"]:
            status = cases(scratch)
        else:
            status = main(sys.argv[1:] or list(real_models.MODELS), scratch)
    sys.exit(status)
