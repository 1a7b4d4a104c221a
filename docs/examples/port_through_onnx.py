"""Usage: python docs/examples/port_through_onnx.py DIR

Trains Keras's MobileNetV2 (tf_keras.applications, alpha 0.35, weights=None, 32x32 inputs,
decay 0.999, epsilon 1e-3; 52 batch-norm layers) 4 steps in TF1 graph mode
(tests/real_models.py, case too_few_steps), writing DIR/model.ckpt (tf.train.Saver, with its
.meta graph); then ports it as users do: tf2onnx exports the same weights to DIR/mobilenet_v2.onnx
(every optimizer but remove_back_to_back, so the BatchNormalization nodes stay) and onnx2torch
converts that to PyTorch, whose state dict goes to DIR/mobilenet_v2.pt as onnx2torch leaves it.
Seeded; prints the checkpoint prefix."""
import os
import random
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bn_decay_probe import imports  # noqa: E402

imports.block_triton(tensorflow_next=True)  # onnx2torch's torchvision comes after TensorFlow
import port_models  # noqa: E402
import real_models  # noqa: E402


def main(directory):
    import torch

    # Keras's graph-mode initializers draw their seeds from Python's and numpy's generators.
    random.seed(0)
    np.random.seed(0)

    trained = real_models.train("keras_mobilenet_v2", "too_few_steps", directory)
    port = port_models.mobilenet_port(trained, directory)
    for module in port.module.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 0.1  # as onnx2torch leaves it: 1 - ONNX's default 0.9
    torch.save(port.module.state_dict(), os.path.join(directory, "mobilenet_v2.pt"))
    print(trained.saver_prefix)


if __name__ == "__main__":
    main(sys.argv[1])
