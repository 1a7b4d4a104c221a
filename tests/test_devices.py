"""The GPU path, exercised on the CPU: device choice, session options, and the device each op
really ran on (read from the run's step stats, not from what was requested)."""
import warnings

import pytest

from bn_decay_probe import DeviceFallbackWarning, ProbeConfigError, backend, probe
from bn_decay_probe.probe import devices
from bn_decay_probe.probe import measure
from bn_decay_probe.report import render_text

FAKE_GPU = ("/physical_device:GPU:0",)


@pytest.mark.parametrize("requested, gpus, target, notice", [
    ("cpu", (), "/device:CPU:0", None),
    ("cpu", FAKE_GPU, "/device:CPU:0", None),
    ("auto", FAKE_GPU, "/device:GPU:0", None),
    ("gpu", FAKE_GPU, "/device:GPU:0", None),
    ("auto", (), "/device:CPU:0", "no GPU visible to TensorFlow; running on the CPU"),
])
def test_resolve(requested, gpus, target, notice):
    assert devices.resolve(requested, gpus) == (target, notice)


def test_resolve_gpu_without_gpu_is_a_config_error():
    with pytest.raises(ProbeConfigError) as info:
        devices.resolve("gpu", ())
    assert str(info.value) == ("device 'gpu' was requested but TensorFlow sees no GPU; use "
                               "device 'cpu' or 'auto'")


@pytest.mark.parametrize("name, short", [
    ("/job:localhost/replica:0/task:0/device:CPU:0", "/device:CPU:0"),
    ("/job:localhost/replica:0/task:0/device:GPU:1", "/device:GPU:1"),
    ("/device:GPU:0/stream:all", "/device:GPU:0"),
    ("/job:localhost/replica:0/task:0/device:XLA_CPU:0", "/device:XLA_CPU:0"),
])
def test_canonical_device_names(name, short):
    assert devices.canonical(name) == short


def test_executed_on_reads_step_stats():
    tf1 = backend.tensorflow().compat.v1
    metadata = tf1.RunMetadata()
    gpu = metadata.step_stats.dev_stats.add(device="/job:localhost/replica:0/task:0/device:GPU:0")
    gpu.node_stats.add(node_name="bn/FusedBatchNormV3")
    stream = metadata.step_stats.dev_stats.add(device="/device:GPU:0/stream:all")
    stream.node_stats.add(node_name="bn/Mul:Mul")
    cpu = metadata.step_stats.dev_stats.add(device="/job:localhost/replica:0/task:0/device:CPU:0")
    cpu.node_stats.add(node_name="bn/Const")
    cpu.node_stats.add(node_name="other/Op")
    assert devices.executed_on(metadata, {"bn/FusedBatchNormV3", "bn/Mul", "bn/Const"}) == {
        "bn/Const": "/device:CPU:0", "bn/FusedBatchNormV3": "/device:GPU:0",
        "bn/Mul": "/device:GPU:0"}


@pytest.mark.parametrize("target, gpu_count", [("/device:CPU:0", 0), ("/device:GPU:0", None)])
def test_session_config(target, gpu_count):
    config = backend.session_config(target)
    assert config.allow_soft_placement
    assert config.gpu_options.allow_growth
    assert config.device_count.get("GPU") == gpu_count


def test_gpu_request_on_a_machine_without_gpu(monkeypatch):
    monkeypatch.setattr(backend, "visible_gpus", lambda: ())
    with pytest.raises(ProbeConfigError, match="TensorFlow sees no GPU"):
        probe(device="gpu")


def test_auto_without_gpu_falls_back_with_one_notice(monkeypatch):
    monkeypatch.setattr(backend, "visible_gpus", lambda: ())
    monkeypatch.setattr(measure, "_notified", set())
    with pytest.warns(DeviceFallbackWarning, match="no GPU visible to TensorFlow") as caught:
        first = probe(decay=0.5)
        second = probe(decay=0.5)
    assert len(caught) == 1  # once per process, not once per call
    for r in (first, second):
        assert r.device.notice == "no GPU visible to TensorFlow; running on the CPU"
        assert r.device.ran_on == ("/device:CPU:0",)


def test_gpu_graph_reports_where_ops_really_ran(monkeypatch):
    """Pretend TF sees a GPU: the graph is built for /device:GPU:0 and the session may use GPUs;
    with no GPU kernel available, soft placement runs every op on the CPU and the result says
    so instead of echoing the request."""
    if backend.visible_gpus():
        pytest.skip("a real GPU is visible; test_auto_uses_the_gpu_when_there_is_one covers it")
    monkeypatch.setattr(backend, "visible_gpus", lambda: FAKE_GPU)
    r = probe(decay=0.5, device="gpu")
    assert r.device.target == "/device:GPU:0"
    assert r.device.visible_gpus == FAKE_GPU
    assert r.device.ran_on == ("/device:CPU:0",)
    assert "note: built for /device:GPU:0, but soft placement ran ops on /device:CPU:0" in \
        render_text(r)


def test_auto_uses_the_gpu_when_there_is_one():
    """On a GPU machine the fused kernel must run on the GPU; here it checks the CPU fallback."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeviceFallbackWarning)
        r = probe(decay=0.5, device="auto")
    if backend.visible_gpus():
        assert r.device.ops["train"]["probe/BatchNorm/FusedBatchNormV3"] == "/device:GPU:0"
        assert r.device.notice is None
    else:
        assert r.device.ran_on == ("/device:CPU:0",)
        assert r.device.notice is not None
