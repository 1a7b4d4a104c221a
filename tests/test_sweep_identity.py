"""sweep() against probe(), decay by decay: every field equal, or within the documented float32
bounds where TensorFlow's CPU kernels round a channel differently in the sweep's longer tiled
per-channel vectors (docs/sweep.md). Over decays x fused x steps x C, every API and setting,
chunks, and exact=True."""
import math

import numpy as np
import pytest

from bn_decay_probe import probe, sweep, sweep_graph
from conftest import (DECAYS, EPSILON, FUSED, backend_name, channel_inputs,
                      contrib_update_ops_unavailable)

# Fields that hold numbers a tiled kernel may round otherwise; everything else must be equal.
BOUNDED = ("outputs", "snapshots", "trajectory", "batch_statistics")
SHAPES = ((1, 4, 4, 1), (2, 3, 5, 3), (2, 3, 5, 16))


def ulps(a, b):
    """Largest |a - b| in float32 ulps of the larger magnitude (0 where both are equal, NaN
    included)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if same.all():
        return 0.0
    scale = np.spacing(np.maximum(np.abs(a), np.abs(b))[~same]).astype(np.float64)
    return float((np.abs(a[~same].astype(np.float64) - b[~same]) / scale).max())


def output_unit(result):
    """ulp of M, the largest term the layer forms: (|x| + |mean|) / sqrt(variance + epsilon),
    over the statistics either output normalizes with (batch or moving)."""
    x = np.abs(result.inputs.astype(np.float64)).max(axis=(0, 1, 2))
    stats = [(result.inputs.astype(np.float64).mean(axis=(0, 1, 2)),
              result.inputs.astype(np.float64).var(axis=(0, 1, 2)))]
    for phase in ("train", "test"):
        moving = result.after[phase]
        stats.append((moving["moving_mean"].astype(np.float64),
                      moving["moving_variance"].astype(np.float64)))
    m = max(float(np.max((x + np.abs(mean)) / np.sqrt(np.maximum(var, 0) + EPSILON)))
            for mean, var in stats)
    return float(np.spacing(np.float32(m)))


def bound(result):
    """The documented bound, in ulps: 2 + sqrt(n), n the values each channel averages over
    (a different summation order rounds within about sqrt(n) ulps)."""
    shape = result.config.train_inputs()[0].shape
    return 2 + math.sqrt(shape[0] * shape[1] * shape[2])


def assert_matches(swept, alone):
    """Every field of ``swept`` equals ``alone``'s (less the traced op names), the numbers of
    BOUNDED within bound(); returns the largest deviations seen."""
    a, b = swept.to_dict(), alone.to_dict()
    for data in (a, b):
        del data["device"]["ops"]  # the sweep graph's op names (a decay tensor, reads)
    for key in set(a) - set(BOUNDED):
        assert a[key] == b[key], key
    limit, unit = bound(alone), output_unit(alone)
    worst = {"statistics": 0.0, "outputs": 0.0, "gap": 0.0}
    for label, values in alone.snapshots.items():
        for name, value in values.items():
            worst["statistics"] = max(worst["statistics"],
                                      ulps(swept.snapshots[label][name], value))
    for name, value in alone.batch_statistics.items():
        worst["statistics"] = max(worst["statistics"], ulps(swept.batch_statistics[name], value))
    assert set(swept.trajectory) == set(alone.trajectory)
    for name, value in alone.trajectory.items():
        if name == "gap":
            gap = np.abs(swept.trajectory["gap"] - value).max() / unit
            worst["gap"] = max(worst["gap"], float(np.nan_to_num(gap)))
            assert np.array_equal(np.isnan(swept.trajectory["gap"]), np.isnan(value))
        else:
            worst["statistics"] = max(worst["statistics"], ulps(swept.trajectory[name], value))
    for phase, value in alone.outputs.items():
        assert swept.outputs[phase].shape == value.shape
        difference = np.abs(swept.outputs[phase].astype(np.float64) - value).max()
        worst["outputs"] = max(worst["outputs"], float(difference / unit))
    assert worst["statistics"] <= limit, worst
    assert worst["outputs"] <= limit, worst
    assert worst["gap"] <= 2 * limit, worst
    return worst


def assert_identical(swept, alone):
    a, b = swept.to_dict(), alone.to_dict()
    del a["device"]["ops"], b["device"]["ops"]
    assert a == b


def _sweep(fused, shape, steps, **options):
    return sweep(DECAYS, steps=steps, inputs=channel_inputs(shape), fused=fused,
                 epsilon=EPSILON, device="cpu", **options)


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "C%d" % s[-1])
@pytest.mark.parametrize("fused", FUSED, ids=["fused", "nonfused"])
def test_each_decay_matches_probe(fused, shape, steps, measured):
    swept = _sweep(fused, shape, steps)
    assert [r.decay for r in swept] == list(DECAYS)
    for decay, result in zip(DECAYS, swept):
        alone = measured(decay, fused, shape, steps)
        assert_matches(result, alone)
        if shape[-1] % 16 == 0:  # every channel takes the same kernel code in both graphs
            assert_identical(result, alone)


@pytest.mark.parametrize("fused", FUSED, ids=["fused", "nonfused"])
def test_exact_runs_one_decay_at_a_time_bit_identical(fused, measured):
    swept = _sweep(fused, (2, 3, 5, 3), 3, exact=True)
    for decay, result in zip(DECAYS, swept):
        assert_identical(result, measured(decay, fused, (2, 3, 5, 3), 3))


def test_what_differs_on_this_backend(measured):
    """Where the bound is spent, measured, as docs/sweep.md says: TF 1.15 rounds only the
    outputs (Eigen's packet rsqrt of the per-channel scale); on TF 2.x the fused kernel
    (oneDNN) is bit-identical and the non-fused reductions sum in another order."""
    shape = (4, 8, 8, 3)
    seen = {}
    for fused in FUSED:
        swept = _sweep(fused, shape, 2)
        seen[fused] = [assert_matches(r, measured(d, fused, shape, 2))
                       for d, r in zip(DECAYS, swept)]
    if backend_name() == "tf1":
        assert all(w["statistics"] == 0 for ws in seen.values() for w in ws)
        assert max(w["outputs"] for ws in seen.values() for w in ws) > 0
    else:
        from bn_decay_probe import backend

        if backend.onednn():
            assert all(w == {"statistics": 0, "outputs": 0, "gap": 0} for w in seen[True])


SETTINGS = [
    dict(api="layers"), dict(api="layers", fused=False, updates="update_ops"),
    dict(api="keras"), dict(api="keras", fused=False, updates="update_ops"),
    dict(api="nn"), dict(api="nn", fused=False, updates="forgotten"),
    dict(api="contrib", updates="update_ops"), dict(api="contrib", updates="forgotten"),
    dict(zero_debias=True, steps=2), dict(zero_debias=True, fused=False, steps=2),
    dict(data_format="NCHW", fused=False, steps=2),
    dict(share_variables=False), dict(api="layers", share_variables=False),
    dict(api="keras", share_variables=False), dict(api="nn", share_variables=False),
    dict(trainable=False), dict(api="keras", trainable=False),
    dict(api="layers", trainable=False, fused=False),
    dict(batches=2, steps=2), dict(batches=3, fused=False, api="keras"),
]


@pytest.mark.parametrize("options", SETTINGS, ids=lambda o: ",".join(
    "%s=%s" % item for item in sorted(o.items())))
def test_every_api_and_setting_matches_probe(options):
    options = dict(options, device="cpu", inputs=channel_inputs((2, 3, 5, 3)))
    if "batches" in options:
        options["batches"] = [channel_inputs((2, 3, 5, 3), seed=s)
                              for s in range(options["batches"])]
    if contrib_update_ops_unavailable(options.get("api", "contrib"),
                                      options.get("updates", "inplace"),
                                      options.get("zero_debias", False)):
        pytest.skip("this TensorFlow cannot build contrib with UPDATE_OPS (test_semantics)")
    decays = (0.0, 0.5, 0.99)
    swept = sweep(decays, **options)
    for decay, result in zip(decays, swept):
        assert_matches(result, probe(decay=decay, **options))


def test_chunks_each_match_probe_and_keep_the_order(monkeypatch, measured):
    """Decays beyond one chunk run in several, the last one padded; every result is still its
    decay's, and progress is told once per decay."""
    shape = (2, 3, 5, 3)
    monkeypatch.setattr(sweep_graph, "MAX_TILED_VALUES", 2 * 90)  # two copies of 90 values
    told = []
    swept = sweep(DECAYS, steps=2, inputs=channel_inputs(shape), epsilon=EPSILON,
                  device="cpu", progress=told.append)
    assert told == [1] * len(DECAYS)
    assert sweep_graph.copies_per_chunk(swept[0].config, len(DECAYS)) == 2
    for decay, result in zip(DECAYS, swept):
        assert result.decay == decay
        assert_matches(result, measured(decay, None, shape, 2))


def test_an_input_beyond_a_chunk_runs_one_decay_at_a_time_and_exactly(monkeypatch, measured):
    """The large-input path: one copy per chunk, the gap taken by runner._gap as probe()
    takes it, every number bit-identical."""
    shape = (2, 3, 5, 3)
    monkeypatch.setattr(sweep_graph, "MAX_TILED_VALUES", 50)
    swept = _sweep(False, shape, 2)
    for decay, result in zip(DECAYS, swept):
        assert_identical(result, measured(decay, False, shape, 2))


@pytest.mark.parametrize("copies, decays, expected", [
    (1000, 7, 7), (2, 5, 2), (3, 7, 3), (4, 7, 4), (2, 1, 1), (1, 9, 1)])
def test_chunks_are_spread_evenly(monkeypatch, copies, decays, expected):
    from bn_decay_probe.config import ProbeConfig

    monkeypatch.setattr(sweep_graph, "MAX_TILED_VALUES", copies * 16)
    assert sweep_graph.copies_per_chunk(ProbeConfig.create(), decays) == expected
