"""sweep() against probe(), decay by decay: every field equal, or within the documented float32
bounds where TensorFlow's CPU kernels round a channel differently in the sweep's longer tiled
per-channel vectors (docs/sweeps.md). Over decays x fused x steps x C, every API and setting,
chunks, and exact=True."""
import pytest

from bn_decay_probe import probe, sweep
from bn_decay_probe.probe import sweep_graph
from bn_decay_probe.testing import assert_sweep_matches_probe, deviation
from conftest import DECAYS, EPSILON, FUSED, backend_name, channel_inputs

SHAPES = ((1, 4, 4, 1), (2, 3, 5, 3), (2, 3, 5, 16))


def assert_identical(swept, alone):
    found = deviation(swept, alone)
    assert found == (True, 0.0, 0.0, 0.0), found


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
        assert_sweep_matches_probe(result, alone)
        if shape[-1] % 16 == 0:  # every channel takes the same kernel code in both graphs
            assert_identical(result, alone)


@pytest.mark.parametrize("fused", FUSED, ids=["fused", "nonfused"])
def test_exact_runs_one_decay_at_a_time_bit_identical(fused, measured):
    swept = _sweep(fused, (2, 3, 5, 3), 3, exact=True)
    for decay, result in zip(DECAYS, swept):
        assert_identical(result, measured(decay, fused, (2, 3, 5, 3), 3))


def test_what_differs_on_this_backend(measured):
    """Where the bound is spent, measured, as docs/sweeps.md says: TF 1.15 rounds only the
    outputs (Eigen's packet rsqrt of the per-channel scale); on TF 2.x the fused kernel
    (oneDNN) is bit-identical and the non-fused reductions sum in another order."""
    shape = (4, 8, 8, 3)
    seen = {}
    for fused in FUSED:
        swept = _sweep(fused, shape, 2)
        seen[fused] = [assert_sweep_matches_probe(r, measured(d, fused, shape, 2))
                       for d, r in zip(DECAYS, swept)]
    if backend_name() == "tf1":
        assert all(w.statistics == 0 for ws in seen.values() for w in ws)
        assert max(w.outputs for ws in seen.values() for w in ws) > 0
    else:
        from bn_decay_probe import backend

        if backend.onednn():
            assert all(w.identical for w in seen[True])


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
    decays = (0.0, 0.5, 0.99)
    swept = sweep(decays, **options)
    for decay, result in zip(decays, swept):
        assert_sweep_matches_probe(result, probe(decay=decay, **options))


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
        assert_sweep_matches_probe(result, measured(decay, None, shape, 2))


def test_an_input_beyond_a_chunk_runs_one_decay_at_a_time_and_exactly(monkeypatch, measured):
    """The large-input path: one copy per chunk, the gap taken by measure.gap as probe()
    takes it, every number bit-identical."""
    shape = (2, 3, 5, 3)
    monkeypatch.setattr(sweep_graph, "MAX_TILED_VALUES", 50)
    swept = _sweep(False, shape, 2)
    for decay, result in zip(DECAYS, swept):
        assert_identical(result, measured(decay, False, shape, 2))


@pytest.mark.parametrize("copies, decays, expected", [
    (1000, 7, 7), (2, 5, 2), (3, 7, 3), (4, 7, 4), (2, 1, 1), (1, 9, 1)])
def test_chunks_are_spread_evenly(monkeypatch, copies, decays, expected):
    from bn_decay_probe.probe.config import ProbeConfig

    monkeypatch.setattr(sweep_graph, "MAX_TILED_VALUES", copies * 16)
    assert sweep_graph.copies_per_chunk(ProbeConfig.create(), decays) == expected
