import keras
import numpy as np
from bn_decay_probe.repair import recalibrate

# The README's Keras 3 model (docs/examples/keras_forgot_training.py), loaded as a user would.
model = keras.saving.load_model("build/docs/keras-python/model.keras")
images = np.load("build/docs/keras-python/images.npy")  # 64 rows: one batch
# Any iterable of batches: arrays, (x, y) pairs, a tf.data.Dataset.
result = recalibrate(model, [images])
result.verdict
result.layer("bn_Conv1").mean_after[:3]  # pooled, float64
np.asarray(model.get_layer("bn_Conv1").moving_mean)[:3]  # assigned in place, float32
