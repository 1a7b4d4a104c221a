"""Usage: python docs/examples/doctor_real_model.py DIR CASE [CASE ...]

Trains Keras's MobileNetV2 (tf.keras.applications, alpha 0.35, weights=None, 32x32 inputs; 52
batch-norm layers) a few steps in TF1 graph mode with the problem CASE planted, and writes
DIR/CASE/model.ckpt (tf.train.Saver, with its .meta graph) and DIR/CASE/weights (save_weights).
Cases, as in tests/real_models.py: correct, forgot_update_ops, too_few_steps (Model.fit, 4 steps
at the application's momentum 0.999), inference_mode (a session.run loop that never sets the
learning phase), unshared_copy. Seeded; a case already written is not trained again."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import real_models  # noqa: E402


def main(directory, cases):
    for case in cases:
        target = os.path.join(directory, case)
        if not os.path.isfile(os.path.join(target, "model.ckpt.index")):
            real_models.train("keras_mobilenet_v2", case, target)
        print(os.path.join(target, "model.ckpt"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
