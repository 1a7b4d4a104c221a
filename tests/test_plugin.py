"""The pytest plugin end to end: a separate pytest process finds it through the pytest11 entry
point, the bn_probe fixture runs real probes, and failures carry the exact message plus the
probe's report."""

TESTS = '''
from bn_decay_probe.testing import assert_moved, assert_moved_as_decay_predicts

def test_decay_half_moves_as_predicted(bn_probe):
    r = bn_probe(decay=0.5, steps=2, device="cpu")
    assert_moved_as_decay_predicts(r, "moving_mean", "train")
    assert_moved_as_decay_predicts(r, "moving_variance", "train")

def test_decay_one_does_not_move(bn_probe):
    r = bn_probe(decay=1.0, device="cpu")
    assert_moved(r, "moving_variance", "train")
'''
MESSAGE = ("moving_variance in phase 'train' (decay=1, fused=True, steps=1) did not move: expected "
           "a change larger than 0, actual before=[1.] after=[1.], largest difference 0 at "
           "channel 0")


def test_plugin_end_to_end(pytester):
    pytester.makepyfile(test_drift=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rf")
    result.assert_outcomes(passed=1, failed=1)
    # The exact failure line, as pytest prints it (compared whole: fnmatch would read "[1.]"
    # as a character class).
    assert "E       AssertionError: " + MESSAGE in result.stdout.lines
    result.stdout.fnmatch_lines([
        "*- bn_decay_probe -*",
        "decay 1 | fused yes (TF default) | steps 1 | *",
        "moving_variance  0              1            1            1           1                 1",
        "FAILED test_drift.py::test_decay_one_does_not_move*",
    ])
    # The traceback stops at the test: the helper hides its own frame.
    assert "def assert_moved(" not in result.stdout.str()


def test_plugin_is_registered_through_the_entry_point(pytester):
    pytester.makepyfile(test_fixture="def test_it(bn_probe):\n    assert callable(bn_probe)\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    disabled = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:bn_decay_probe")
    disabled.assert_outcomes(errors=1)
    disabled.stdout.fnmatch_lines(["*fixture 'bn_probe' not found*"])


def test_fixture_passes_keyword_arguments_and_rejects_bad_ones(pytester):
    pytester.makepyfile(test_bad='''
import pytest
from bn_decay_probe import ProbeConfigError

def test_bad(bn_probe):
    with pytest.raises(ProbeConfigError, match="decay must be a number in"):
        bn_probe(decay=2.0)

def test_kwargs(bn_probe):
    r = bn_probe(decay=0.25, shape=(1, 2, 2, 3), seed=4, fused=False, steps=3, epsilon=0.01,
                 device="cpu")
    assert (r.decay, r.config.shape, r.config.seed, r.fused, r.config.steps, r.config.epsilon) \\
        == (0.25, (1, 2, 2, 3), 4, False, 3, 0.01)
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
