"""What the repair tests read of checkpoint files: each file's bytes and mtime, every tensor,
and the check that a repaired copy differs from its input in the moving statistics alone."""
import hashlib
import os

from bn_decay_probe import backend
from bn_decay_probe.checkpoints.reader import MARKER_KEY


def digest(prefix):
    """sha256 and mtime of each of the checkpoint's files: equal afterwards means untouched."""
    directory = os.path.dirname(prefix)
    found = {}
    for name in sorted(os.listdir(directory)):
        if name.startswith(os.path.basename(prefix) + "."):
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                found[name] = (hashlib.sha256(handle.read()).hexdigest(),
                               os.stat(path).st_mtime_ns)
    return found


def tensors(prefix):
    with backend.quiet() as tf1:
        reader = tf1.train.NewCheckpointReader(prefix)
        return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()}


def assert_only_statistics_differ(original, copy, layers):
    """The copy holds the input's tensors plus the repair's marker, and every tensor but the
    ``layers``' moving statistics is bit-identical."""
    assert set(copy) == set(original) | {MARKER_KEY}
    statistics = {layer + suffix for layer in layers
                  for suffix in ("/moving_mean", "/moving_variance")}
    for key, value in original.items():
        if key not in statistics:
            assert copy[key].dtype == value.dtype and copy[key].tobytes() == value.tobytes(), key
