"""Property: for any decay in [0, 1], small shape, steps, fused mode and API, every measured
moving statistic follows the update rule, step by step, and the test phase leaves it alone.

Hypothesis draws 200 cases, derandomized (the same cases on every run, no example database).
"""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bn_decay_probe import probe
from conftest import Reference, channel_inputs

EXAMPLES = 200
# Tolerance, in units of each statistic's scale (max |x| for the mean, max x**2 for the
# variance, at least the initial 1): float32's unit roundoff is u = 2**-24 = 6e-8. TF sums up to
# n = 48 values per channel, which costs at most about n * u = 3e-6 of that scale; each of the
# up to 4 float32 updates v - (v - s) * (1 - decay) adds a few u of max(|v|, |s|), and the float32
# 1 - decay (tf.layers and Keras subtract in float32) is off by at most u / 2. 1e-5 bounds all of
# it with margin, yet a missed or extra step, a wrong decay or the wrong variance (biased vs
# n/(n-1), which differ by var / (n - 1) >= var / 47) is far outside. The largest error measured
# over these 200 cases is 1.1e-7 of the scale.
TOL = 1e-5


@st.composite
def cases(draw):
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4)),
             draw(st.integers(1, 3)))
    return dict(decay=draw(st.floats(0.0, 1.0)), shape=shape, steps=draw(st.integers(1, 4)),
                fused=draw(st.sampled_from([None, True, False])),
                api=draw(st.sampled_from(["contrib", "layers", "keras", "nn"])),
                seed=draw(st.integers(0, 2 ** 16)),
                scale=draw(st.sampled_from([1e-3, 1.0, 1e3])))


def within(measured, expected, scale):
    error = np.abs(np.asarray(measured, np.float64) - expected)
    assert np.all(error <= TOL * scale), "measured %s, update rule %s, error %s > %s" % (
        measured, expected, error, TOL * scale)


def test_moving_statistics_follow_the_update_rule():
    seen = []

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(cases())
    def check(case):
        seen.append(case)
        x = channel_inputs(case["shape"], case["seed"]) * np.float32(case["scale"])
        r = probe(decay=case["decay"], inputs=x, steps=case["steps"], fused=case["fused"],
                  api=case["api"], device="cpu")
        fused = case["fused"] is not False  # TF 1.15 fuses 4-D inputs by default, every API
        assert r.fused is fused
        ref = Reference(x)
        # With one value per channel the CPU kernels feed the biased variance, 0, fused or not
        # (test_numeric_edges); otherwise the fused kernel feeds n/(n-1) times it.
        fed = ref.fed_var(fused and ref.n > 1)
        mean, var = np.zeros_like(ref.mean), np.ones_like(ref.mean)
        largest = np.abs(ref.x).max(axis=(0, 1, 2))
        for step in range(case["steps"]):
            mean = case["decay"] * mean + (1 - case["decay"]) * ref.mean
            var = case["decay"] * var + (1 - case["decay"]) * fed
            within(r.trajectory["moving_mean"][step], mean, np.maximum(largest, 1.0))
            within(r.trajectory["moving_variance"][step], var, np.maximum(largest ** 2, 1.0))
        for name in ("moving_mean", "moving_variance"):
            np.testing.assert_array_equal(r.after["train"][name], r.trajectory[name][-1])
            np.testing.assert_array_equal(r.after["test"][name], r.before["test"][name])
            np.testing.assert_array_equal(r.before["test"][name], r.after["train"][name])

    check()
    assert len(seen) >= EXAMPLES
    print("hypothesis ran %d examples" % len(seen))
