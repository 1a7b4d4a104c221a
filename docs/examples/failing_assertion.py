from bn_decay_probe import probe
from bn_decay_probe.testing import assert_moved

r = probe(1.0)
assert_moved(r, "moving_variance", "train")
