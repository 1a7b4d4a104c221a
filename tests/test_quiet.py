"""A quiet library: a first probe() prints none of TensorFlow's C++ log lines, the CPU fallback
warning comes once per process at most, set_verbosity() controls both, and the pytest plugin
keeps the fallback warning out of users' warnings summaries unless asked. Each case runs in a
fresh process, where TensorFlow's one-time log setup really happens."""
import os
import re
import subprocess
import sys

import pytest

import bn_decay_probe
from bn_decay_probe import ProbeConfigError, set_verbosity
from conftest import TF_LOG_LINE


def clean_env():
    """The environment without what an earlier probe in this process set for TensorFlow."""
    return {k: v for k, v in os.environ.items()
            if k not in ("TF_CPP_MIN_LOG_LEVEL", "BN_DECAY_PROBE_QUIETED_TF")}


def python(code):
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, env=clean_env())
    assert out.returncode == 0, out.stderr
    return out


@pytest.fixture(scope="module")
def no_gpu():
    from bn_decay_probe import backend

    if backend.visible_gpus():
        pytest.skip("TensorFlow sees a GPU here: no CPU fallback to warn about")


def test_first_probes_print_no_tensorflow_log_and_warn_once(no_gpu):
    out = python("import bn_decay_probe as b\nfor d in (0.1, 0.5, 0.9):\n    b.probe(d)\n"
                 "b.sweep([0.2, 0.3])")
    assert not TF_LOG_LINE.search(out.stderr), out.stderr
    assert out.stderr.count("DeviceFallbackWarning: no GPU visible to TensorFlow") == 1
    # The warning names the user's line, not the package's.
    assert re.search(r"^(<string>|-c):3: DeviceFallbackWarning", out.stderr, re.M), out.stderr


def test_quiet_prints_nothing_and_verbose_lets_tensorflow_speak(no_gpu):
    quiet = python("import bn_decay_probe as b\nb.set_verbosity('quiet')\nb.probe(0.5)")
    assert "DeviceFallbackWarning" not in quiet.stderr and not TF_LOG_LINE.search(quiet.stderr)
    verbose = python("import bn_decay_probe as b\nb.set_verbosity('verbose')\nb.probe(0.5)")
    assert TF_LOG_LINE.search(verbose.stderr), verbose.stderr


def test_a_log_level_the_user_chose_is_kept(no_gpu):
    env = dict(clean_env(), TF_CPP_MIN_LOG_LEVEL="0")
    out = subprocess.run([sys.executable, "-c", "import bn_decay_probe as b; b.probe(0.5)"],
                         stderr=subprocess.PIPE, universal_newlines=True, env=env)
    assert TF_LOG_LINE.search(out.stderr), out.stderr


def test_set_verbosity_is_public_returns_the_previous_level_and_checks_its_argument():
    assert "set_verbosity" in bn_decay_probe.__all__
    previous = set_verbosity("quiet")
    try:
        assert set_verbosity("verbose") == "quiet"
    finally:
        set_verbosity(previous)
    with pytest.raises(ProbeConfigError, match="verbosity must be one of quiet, default, "
                                               "verbose, got 'loud'"):
        set_verbosity("loud")


TEST_FILE = """
from bn_decay_probe import probe

def test_probe_on_the_cpu():
    assert probe(0.5).device.ran_on == ("/device:CPU:0",)
"""


@pytest.mark.parametrize("ask, shown", [
    ((), False),
    (("--bn-probe-device-warnings",), True),
    (("-o", "bn_probe_device_warnings=true"), True),
])
def test_the_plugin_keeps_the_cpu_fallback_out_of_the_summary_unless_asked(
        pytester, no_gpu, ask, shown):
    pytester.makepyfile(test_cpu=TEST_FILE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *ask)
    result.assert_outcomes(passed=1)
    assert ("DeviceFallbackWarning" in result.stdout.str()) is shown
