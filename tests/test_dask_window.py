"""The sampled window of mmarray.dask's radix selection (mmarray/dask/_window.py): long
lanes of 16-bit integers counted through a window of keys instead of a full first pass.

Oracle: numpy's median and quantile, bit for bit; `_window.counts` says whether a lane
went through the window, missed it (and took the full pass) or had no window.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mmarray

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
md = pytest.importorskip("mmarray.dask")
from dask_cluster import local_client  # noqa: E402  (after the skips: it imports distributed)

from mmarray.dask import _window  # noqa: E402


@pytest.fixture
def small(monkeypatch):
    """Windows for lanes from 65,536 values, sampling one value in 16."""
    monkeypatch.setattr(_window, "WINDOW_MIN", 1 << 16)
    monkeypatch.setattr(_window, "SAMPLE_STRIDE", 16)
    with dask.config.set(scheduler="sync"):
        yield


def went(fn):
    """(fn's result, the window counts it added)."""
    before = dict(_window.counts)
    got = fn()
    return got, {k: _window.counts[k] - before[k] for k in before}


def same(got, want):
    g, w = np.asarray(got), np.asarray(want)
    assert g.dtype == w.dtype and g.shape == w.shape and np.array_equal(g, w), (got, want)


@pytest.mark.parametrize("dtype", ["i2", "u2"])
@pytest.mark.parametrize("q", [0.5, 0.001, 0.999, [0.5, 0.5001], [0.3, 0.31, 0.32]])
def test_a_long_lane_is_counted_through_the_window(small, dtype, q):
    info = np.iinfo(dtype)
    a = np.random.default_rng(1).integers(info.min, info.max, 300_001, dtype=dtype)
    x = da.from_array(a, chunks=40_000)
    for method in ("linear", "lower", "nearest", "midpoint"):
        got, c = went(lambda: md.quantile(x, q, method=method))  # noqa: B023
        same(got, np.quantile(a, q, method=method))
        assert c == {"windowed": 1, "missed": 0}, c
    got, c = went(lambda: md.median(x))
    same(got, np.median(a))
    assert c["windowed"] == 1


def test_a_sample_that_misleads_is_caught_and_the_full_pass_gives_the_answer(small):
    """Every sampled position (one in 16) holds values in [1000, 1100): the sample puts
    the median there, the counts show that it is not, and the full pass finds it."""
    rng = np.random.default_rng(2)
    a = rng.integers(-32768, 32767, 200_000, dtype=np.int16)
    a[::16] = rng.integers(1000, 1100, a[::16].size)
    got, c = went(lambda: md.median(da.from_array(a, chunks=25_000)))
    same(got, np.median(a))
    assert c == {"windowed": 0, "missed": 1}, c


def test_ranks_far_apart_take_the_full_pass(small):
    a = np.random.default_rng(3).integers(-32768, 32767, 200_000, dtype=np.int16)
    q = [0.0, 0.25, 0.5, 0.75, 1.0]
    got, c = went(lambda: md.quantile(da.from_array(a, chunks=25_000), q))
    same(got, np.quantile(a, q))
    assert c == {"windowed": 0, "missed": 0}, c


def test_lanes_of_their_own_ranges_get_windows_of_their_own(small):
    """Three lanes spanning chunks, each in its own range of values: one shared window
    could not hold their medians."""
    rng = np.random.default_rng(4)
    a = np.stack([rng.integers(lo, lo + 5000, 150_000) for lo in (-30000, 0, 25000)])
    a = a.astype(np.int16)
    x = da.from_array(a, chunks=(1, 30_000))
    got, c = went(lambda: md.median(x, axis=1))
    same(got, np.median(a, axis=1))
    assert c["windowed"] == 1
    got, c = went(lambda: md.quantile(x.T, [0.2, 0.21], axis=0, keepdims=True))
    same(got, np.quantile(a.T, [0.2, 0.21], axis=0, keepdims=True))
    assert c["windowed"] == 1


def test_short_lanes_other_dtypes_and_short_chunks_take_no_window(small):
    rng = np.random.default_rng(5)
    for a, chunks in [
        (rng.integers(0, 1000, 50_000).astype(np.int16), 10_000),  # lane below WINDOW_MIN
        (rng.integers(0, 1000, 100_000).astype(np.int32), 20_000),  # not 16-bit
        (rng.integers(0, 1000, 100_000).astype(np.float16), 20_000),  # NaNs need the pass
        (rng.integers(0, 1000, 100_000).astype(np.int16), 200),  # chunks shorter than 16 x 16
    ]:
        got, c = went(lambda: md.median(da.from_array(a, chunks=chunks)))  # noqa: B023
        same(got, np.median(a))
        assert c == {"windowed": 0, "missed": 0}, (a.dtype, chunks, c)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    spread=st.sampled_from([3, 100, 65535]),
    q=st.lists(st.floats(0, 1), min_size=1, max_size=3),
    chunk=st.sampled_from([4096, 10_000, 33_333]),
)
def test_windowed_quantiles_match_numpy(seed, spread, q, chunk):
    rng = np.random.default_rng(seed)
    a = (rng.integers(0, spread + 1, 70_000) - spread // 2).astype(np.int16)
    a[rng.integers(0, a.size, 50)] = rng.choice([-32768, 32767], 50)
    with pytest.MonkeyPatch.context() as mp, dask.config.set(scheduler="sync"):
        mp.setattr(_window, "WINDOW_MIN", 1 << 16)
        mp.setattr(_window, "SAMPLE_STRIDE", 16)
        same(md.quantile(da.from_array(a, chunks=chunk), q), np.quantile(a, q))


@pytest.fixture(scope="module")
def client():
    yield from local_client()


def test_the_window_on_a_cluster_over_a_mapped_file(client, tmp_path, monkeypatch):
    """The client's SAMPLE_STRIDE travels in the tasks: the workers sample as the client
    expects, and the file is mapped where it lies."""
    monkeypatch.setattr(_window, "WINDOW_MIN", 1 << 16)
    monkeypatch.setattr(_window, "SAMPLE_STRIDE", 16)
    a = np.random.default_rng(6).integers(-32768, 32767, 1 << 19, dtype=np.int16)
    p = tmp_path / "a.i2"
    mmarray.create(p, a.shape, dtype="i2")[:] = a
    got, c = went(lambda: md.median(md.from_file(p, dtype="i2", chunks=1 << 16)))
    same(got, np.median(a))
    assert c["windowed"] == 1
