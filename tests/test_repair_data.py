"""Data files and batches for a repair (no TensorFlow): .npy split into batches, .npz arrays as
batches or one named array, headers checked before anything is read, each batch checked against
the input before it is fed."""
import tracemalloc

import numpy as np
import pytest

from bn_decay_probe import ProbeConfigError
from bn_decay_probe.repair.data import (DEFAULT_BATCH_SIZE, InputSpec, input_batches, open_data,
                                        prepare_batch)

SPEC = InputSpec("x:0", (None, 4, 4, 3), "float32")


@pytest.fixture
def rows():
    return np.random.RandomState(0).normal(size=(70, 4, 4, 3)).astype(np.float32)


def test_npy_is_split_into_batches_of_the_batch_size(tmp_path, rows):
    path = tmp_path / "x.npy"
    np.save(path, rows)
    data = open_data(str(path))
    assert [b.shape[0] for b in data.batches(32)] == [32, 32, 6]
    assert data.batch_count(32) == 3
    np.testing.assert_array_equal(np.concatenate(list(data.batches(32))), rows)
    assert [b.shape[0] for b in data.batches()] == [DEFAULT_BATCH_SIZE, 32, 6]
    assert [b.shape[0] for b in data.batches(25, max_batches=2)] == [25, 25]
    assert data.batch_count(25, 2) == 2


@pytest.mark.parametrize("kind", ["npy", "npz", "compressed npz"])
def test_memory_holds_one_batch(tmp_path, kind):
    """200 batches of 32 KiB: reading them all allocates about one batch at a time (numpy
    reports its allocations to tracemalloc)."""
    rows = np.random.RandomState(3).normal(size=(200 * 16, 512)).astype(np.float32)
    if kind == "npy":
        np.save(tmp_path / "d.npy", rows)
        spec = str(tmp_path / "d.npy")
    else:
        (np.savez if kind == "npz" else np.savez_compressed)(tmp_path / "d.npz", x=rows)
        spec = "%s:x" % (tmp_path / "d.npz")
    data = open_data(spec)
    total = 0.0
    tracemalloc.start()
    try:
        for batch in data.batches(16):
            total += float(batch[0, 0])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 16 * 512 * 4, peak  # a few batches' worth, not 6.4 MB
    assert total == pytest.approx(float(rows[::16, 0].astype(np.float64).sum()), rel=1e-6)


def test_fortran_order_and_truncated_files(tmp_path, rows):
    np.save(tmp_path / "f.npy", np.asfortranarray(rows))
    batches = list(open_data(str(tmp_path / "f.npy")).batches(32))
    np.testing.assert_array_equal(np.concatenate(batches), rows)
    np.save(tmp_path / "t.npy", rows)
    content = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(content[:-100])
    with pytest.raises(ProbeConfigError, match="ends early: rows 64 to 70 are missing"):
        list(open_data(str(tmp_path / "t.npy")).batches(32))


def test_npz_arrays_are_batches_in_file_order(tmp_path, rows):
    path = tmp_path / "b.npz"
    np.savez(path, first=rows[:5], second=rows[5:13], third=rows[13:16])
    data = open_data(str(path))
    batches = list(data.batches())
    assert [b.shape[0] for b in batches] == [5, 8, 3]
    np.testing.assert_array_equal(batches[1], rows[5:13])
    # With a batch size, every array is split.
    assert [b.shape[0] for b in data.batches(4)] == [4, 1, 4, 4, 3]


def test_npz_named_array_is_split_like_npy(tmp_path, rows):
    path = tmp_path / "d.npz"
    labels = np.arange(70)
    np.savez(path, images=rows, labels=labels)
    data = open_data("%s:images" % path)
    assert [b.shape[0] for b in data.batches(30)] == [30, 30, 10]
    with pytest.raises(ProbeConfigError, match="has no array 'nope'; it holds images, labels"):
        open_data("%s:nope" % path)


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    (b"not numpy at all", "is not a readable numpy file"),
])
def test_missing_or_unreadable_files(tmp_path, content, message):
    path = tmp_path / "d.npy"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ProbeConfigError, match=message):
        open_data(str(path))


def test_bad_arrays_are_refused_from_the_header(tmp_path):
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(ProbeConfigError, match="dtype <U1; give numbers"):
        open_data(str(tmp_path / "s.npy"))
    np.save(tmp_path / "e.npy", np.zeros((0, 4)))
    with pytest.raises(ProbeConfigError, match="has no rows"):
        open_data(str(tmp_path / "e.npy"))
    np.save(tmp_path / "0.npy", np.float32(1.0))
    with pytest.raises(ProbeConfigError, match="is a scalar"):
        open_data(str(tmp_path / "0.npy"))
    (tmp_path / "d.txt").write_text("1 2 3")
    with pytest.raises(ProbeConfigError, match="unknown file type"):
        open_data(str(tmp_path / "d.txt"))
    np.savez(tmp_path / "z.npz")
    with pytest.raises(ProbeConfigError, match="holds no array"):
        open_data(str(tmp_path / "z.npz"))


def test_prepare_batch_casts_and_checks(rows):
    fed = prepare_batch(rows[:3].astype(np.float64), 0, SPEC)
    assert fed.dtype == np.float32 and fed.flags.c_contiguous
    fed = prepare_batch(np.zeros((2, 4, 4, 3), np.uint8), 0, SPEC)
    assert fed.dtype == np.float32
    with pytest.raises(ProbeConfigError, match=r"batch 4 has shape \(3, 4, 4, 2\); the input "
                                               r"x:0 takes \(\?, 4, 4, 3\)"):
        prepare_batch(rows[:3, :, :, :2], 4, SPEC)
    with pytest.raises(ProbeConfigError, match=r"batch 0 has shape \(4, 4, 3\)"):
        prepare_batch(rows[0], 0, SPEC)
    bad = rows[:2].copy()
    bad[1, 0, 0, 0] = np.nan
    bad[0, 1, 0, 0] = np.inf
    with pytest.raises(ProbeConfigError, match="batch 2 holds 2 NaN or infinite value"):
        prepare_batch(bad, 2, SPEC)
    with pytest.raises(ProbeConfigError, match="dtype <U1"):
        prepare_batch(np.array(["a"]), 0, SPEC)
    with pytest.raises(ProbeConfigError, match="has no rows"):
        prepare_batch(rows[:0], 0, SPEC)


def test_input_batches_of_one_and_several_inputs(rows):
    assert [len(b) for b in input_batches([rows[:2], rows[2:5]], 1)] == [1, 1]
    one = rows[:2]
    assert next(input_batches([(one,)], 1))[0] is one  # a 1-tuple is its array
    with pytest.raises(ProbeConfigError, match="tuple of 2 arrays, the graph has one input"):
        list(input_batches([(rows[:2], np.zeros(2))], 1))
    pairs = list(input_batches([(rows[:2], rows[:2])], 2))
    assert len(pairs[0]) == 2
    with pytest.raises(ProbeConfigError, match="must be a tuple of 2 arrays"):
        list(input_batches([rows[:2]], 2))
    with pytest.raises(ProbeConfigError, match="an iterable of arrays"):
        list(input_batches(rows, 1))
