"""Usage: python docs/examples/port_real_model.py DIR

Trains tf-slim's resnet_v1_50 (decay 0.997, epsilon 1e-5; 53 batch-norm layers) 4 steps in TF1
graph mode on 32x32 inputs (tests/real_models.py, case too_few_steps) and writes DIR/model.ckpt-4
(tf.train.Saver, with its .meta graph); then ports it as TF ports are written: torchvision's
resnet50(weights=None) filled by a name map from slim's variables (tests/port_models.py), saved
as DIR/resnet50.pt (its state dict) and DIR/slim_to_torchvision.json (the map). Seeded; prints
the checkpoint prefix."""
import os
import random
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bn_decay_probe import imports  # noqa: E402

imports.block_triton(tensorflow_next=True)  # torchvision comes after TensorFlow here
import port_models  # noqa: E402
import real_models  # noqa: E402


def main(directory):
    import torch

    # Seeded (tf-slim's initializers use the graph's seed, the rest these): every run is the same.
    random.seed(0)
    np.random.seed(0)

    trained = real_models.train("slim_resnet_v1_50", "too_few_steps", directory)
    port = port_models.resnet_port(trained, directory)
    torch.save(port.state_dict, os.path.join(directory, "resnet50.pt"))
    os.replace(port.map_path, os.path.join(directory, "slim_to_torchvision.json"))
    print(trained.saver_prefix)


if __name__ == "__main__":
    main(sys.argv[1])
