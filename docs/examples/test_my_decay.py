from bn_decay_probe.testing import assert_moved, assert_moved_as_decay_predicts, assert_not_moved


def test_my_decay(bn_probe):                 # the plugin's fixture
    r = bn_probe(decay=0.99, steps=100)       # probe()'s keyword arguments
    assert_moved(r, "moving_mean", "train")
    assert_not_moved(r, "moving_variance", "test")
    assert_moved_as_decay_predicts(r, "moving_variance", "train")  # rtol 1e-5, atol 1e-6
