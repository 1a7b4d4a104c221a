"""Usage: python docs/examples/repair_real_model.py DIR

Trains Keras's MobileNetV2 (tf.keras.applications, alpha 0.35, weights=None, 32x32 inputs; 52
batch-norm layers) 4 steps in TF1 graph mode with a hand-written session.run loop that feeds
the learning phase but forgets model.updates (tests/real_models.py, case forgot_update_ops), and
writes DIR/model.ckpt (tf.train.Saver, with its .meta graph) and DIR/images.npy: 64 images from
the training data's distribution, to recalibrate from. Seeded; prints the checkpoint prefix."""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import real_models  # noqa: E402

MODEL = "keras_mobilenet_v2"


def main(directory):
    trained = real_models.train(MODEL, "forgot_update_ops", directory)
    side = real_models.SPECS[MODEL][0]
    images = np.random.RandomState(1).normal(2.0, 3.0, (64, side, side, 3))
    np.save(os.path.join(directory, "images.npy"), images.astype(np.float32))
    print(trained.saver_prefix)


if __name__ == "__main__":
    main(sys.argv[1])
