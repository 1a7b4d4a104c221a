"""Usage: python scripts/keras_doctor_matrix.py [--applications]

The doctor on the files TF 2.x Keras users have (tests/keras_models.py): trains the tiny
conv/batch-norm model with each case in Keras 3 and in tf_keras, saves it in every format each
writes, diagnoses each file without and with --decay (the momentum it trained with), and prints a
markdown table, a row per framework and format, a column per case: the verdict measured, then
the one with --decay where it differs; a verdict other than the one the case calls for
(keras_models.expected) is marked WRONG. --applications adds keras.applications MobileNetV2,
ResNet50 and EfficientNetB0 in both frameworks (.keras, checkpoint / .h5; minutes).
Exit status 1 when a verdict is wrong."""
import os
import sys
import tempfile
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_models  # noqa: E402
from bn_decay_probe import backend  # noqa: E402
from bn_decay_probe.doctor import diagnose_checkpoint  # noqa: E402


def verdict(diagnosis):
    if diagnosis.findings:
        counts = Counter(f.code for f in diagnosis.findings)
        return ", ".join("%s x%d" % item for item in sorted(counts.items()))
    return diagnosis.status


def cell(saved, fmt):
    """The verdict, the one with --decay where it differs, and whether both are right."""
    path = saved.files[fmt]
    plain = diagnose_checkpoint(path)
    given = diagnose_checkpoint(path, decay=saved.momentum)
    right = all((d.status, {f.code for f in d.findings}) == (status, {code} if code else set())
                for d, (status, code) in ((plain, keras_models.expected(saved.case, fmt)), (
                    given, keras_models.expected(saved.case, fmt, decay_given=True))))
    text = verdict(plain)
    if verdict(given) != text:
        text += "; --decay: %s" % verdict(given)
    return (text if right else "%s (WRONG)" % text), right


def main(argv, root):
    backend.silence_native_logs()
    models = ["tiny"] + (list(keras_models.APPLICATIONS) if "--applications" in argv else [])
    cache = keras_models.Cache(root)
    print("| model | framework | format | %s |" % " | ".join(keras_models.CASES))
    print("|---|---|---|%s" % ("---|" * len(keras_models.CASES)))
    wrong = 0
    with backend.quiet():
        for model in models:
            for framework in keras_models.FRAMEWORKS:
                runs = [cache(framework, model, case) for case in keras_models.CASES]
                for fmt in keras_models.FORMATS[framework]:
                    if fmt not in runs[0].files:
                        continue
                    cells = [cell(saved, fmt) for saved in runs]
                    wrong += sum(not right for _, right in cells)
                    print("| %s | %s | %s | %s |" % (model, framework, fmt, " | ".join(
                        text for text, _ in cells)), flush=True)
    return 1 if wrong else 0


if __name__ == "__main__":
    # The saved models take ~1 GB: removed when the table is printed.
    with tempfile.TemporaryDirectory(prefix="keras_doctor_matrix_") as scratch:
        status = main(sys.argv[1:], scratch)
    sys.exit(status)
