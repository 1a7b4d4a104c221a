"""Usage: python docs/examples/keras_forgot_training.py DIR

Trains Keras 3's MobileNetV2 (keras.applications, alpha 0.35, weights=None, 32x32 inputs; 52
batch-norm layers) 4 steps with a custom GradientTape loop that calls model(x) without
training=True, and writes DIR/model.keras (model.save) and DIR/images.npy: 64 images from the
training data's distribution, to recalibrate from. Seeded; prints the model's path.

The loop, as a user writes it (tests/keras_models.py trains the same way, case "tape"):

    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x))          # the bug: model(x, training=True)
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                  model.trainable_variables))
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

STEPS, BATCH = 4, 16


def main(directory):
    os.makedirs(directory, exist_ok=True)
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    model = keras.applications.MobileNetV2(alpha=0.35, input_shape=(32, 32, 3), weights=None,
                                           classes=10)
    draws = np.random.RandomState(0)
    images = draws.normal(2.0, 3.0, (STEPS * BATCH, 32, 32, 3)).astype(np.float32)
    labels = draws.randint(0, 10, STEPS * BATCH)
    optimizer = keras.optimizers.SGD(0.01)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    for step in range(STEPS):
        x, y = images[step * BATCH:(step + 1) * BATCH], labels[step * BATCH:(step + 1) * BATCH]
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                      model.trainable_variables))
    path = os.path.join(directory, "model.keras")
    model.save(path)
    fresh = np.random.RandomState(1).normal(2.0, 3.0, (64, 32, 32, 3)).astype(np.float32)
    np.save(os.path.join(directory, "images.npy"), fresh)
    print(path)


if __name__ == "__main__":
    main(sys.argv[1])
