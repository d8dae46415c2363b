"""The sampled windows of 32- and 64-bit values in mmarray.dask's radix selection
(mmarray/dask/_window64.py): one counting and gathering pass instead of two or three.

Oracle: numpy's median and quantile, bit for bit (the sign of zero included; where a
lane holds zeros of both signs, the documented total order, `zero_order_model`);
`_window.counts` says whether a lane went through a window, missed it (and took the
radix passes) or had none.
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
from test_dask_window import went  # noqa: E402
from test_median import zero_order_model  # noqa: E402

from mmarray.dask import _window64  # noqa: E402

WIDE = ["f4", "f8", "i4", "u4", "i8", "u8"]
STRIDE = 64  # the tests' sparsest sample


def shrink(mp: pytest.MonkeyPatch) -> None:
    """Windows for lanes from 65,536 values, sampling one value in 64 at most."""
    mp.setattr(_window64, "WINDOW_MIN", 1 << 16)
    mp.setattr(_window64, "SAMPLE_STRIDE", STRIDE)
    mp.setattr(_window64, "MIN_STRIDE", 4)


@pytest.fixture
def small(monkeypatch):
    shrink(monkeypatch)
    with dask.config.set(scheduler="sync"):
        yield


def same(got, want):
    g, w = np.asarray(got), np.asarray(want)
    assert g.dtype == w.dtype and g.shape == w.shape, (got, want)
    assert np.array_equal(g, w, equal_nan=True), (got, want)
    assert np.array_equal(np.signbit(g), np.signbit(w)), (got, want)


def oracle(a: np.ndarray, q=None, method: str = "linear"):
    """numpy's median (q None) or quantile of a 1-d a; for floats, where zeros of both
    signs meet at a rank numpy reads, the documented total order (`zero_order_model`)."""
    if a.dtype.kind != "f":
        return np.median(a) if q is None else np.quantile(a, q, method=method)
    if q is None:
        return zero_order_model("median", a)
    if np.ndim(q) == 0:
        return zero_order_model("quantile", a, q, method)
    return np.stack([zero_order_model("quantile", a, qi, method) for qi in np.asarray(q)])


def values(rng: np.random.Generator, dtype: str, n: int) -> np.ndarray:
    """n values of dtype spread over a wide range, with runs of equal values (and for
    floats zeros of both signs and infinities)."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        a = (rng.standard_normal(n) * 100).astype(dt)
        pick = rng.integers(0, n, n // 50)
        a[pick] = rng.choice(np.array([0.0, -0.0, np.inf, -np.inf], dt), pick.size)
    else:
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
    a[: n // 20] = a[n // 2]
    return a


@pytest.mark.parametrize("dtype", WIDE)
@pytest.mark.parametrize("q", [0.5, 0.001, 0.999, [0.3, 0.31], [0.0, 1.0]])
def test_a_long_lane_is_answered_from_its_windows(small, dtype, q):
    a = values(np.random.default_rng(1), dtype, 300_001)
    x = da.from_array(a, chunks=40_000)
    for method in ("linear", "lower", "nearest", "midpoint", "inverted_cdf"):
        got, c = went(lambda: md.quantile(x, q, method=method))  # noqa: B023
        same(got, oracle(a, q, method))
        assert c == {"windowed": 1, "missed": 0}, (method, c)
    got, c = went(lambda: md.median(x))
    same(got, oracle(a))
    assert c == {"windowed": 1, "missed": 0}, c


@pytest.mark.parametrize("dtype", ["f4", "f8"])
def test_the_last_rank_is_the_largest_key_so_a_nan_makes_the_median_nan(small, dtype):
    a = values(np.random.default_rng(2), dtype, 200_000)
    a[123_457] = np.nan
    got, c = went(lambda: md.median(da.from_array(a, chunks=25_000)))
    same(got, np.median(a))
    assert np.isnan(got) and c == {"windowed": 1, "missed": 0}


def test_zeros_of_both_signs_follow_the_total_order(small):
    """-0.0 sorts below 0.0 in the keys: the quantiles of a lane whose middle is zeros of
    both signs (ranks 0.47 to 0.53) are the documented ones (docs/median.md: numpy's
    formula over mmarray's total order, `zero_order_model`)."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal(200_000)
    a[rng.permutation(a.size)[:12_000]] = np.where(rng.random(12_000) < 0.5, -0.0, 0.0)
    for q in (0.5, 0.485, 0.515, 0.49, 0.51):
        got, c = went(lambda: md.quantile(da.from_array(a, chunks=20_000), q))  # noqa: B023
        same(got, oracle(a, q))
        assert c["windowed"] == 1
    got, c = went(lambda: md.median(da.from_array(a, chunks=20_000)))
    same(got, oracle(a))
    assert c["windowed"] == 1


def test_a_sample_that_misleads_is_caught_and_the_radix_passes_answer(small):
    """Every sampled position (one in 64 of each chunk) holds values near 1000: the
    sample puts the median there, the counts show that it is not, and the radix
    selection finds it."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal(256_000)
    a[::STRIDE] = 1000 + rng.random(a[::STRIDE].size)
    got, c = went(lambda: md.median(da.from_array(a, chunks=32_000)))
    same(got, np.median(a))
    assert c == {"windowed": 0, "missed": 1}, c


def test_nine_quantiles_take_a_denser_sample(small, monkeypatch):
    """Nine windows expected to hold more than the gather budget at the sparsest
    stride: the sample is taken denser, so that they hold less."""
    strides = []
    real = _window64._stride

    def spy(*args):
        strides.append(real(*args))
        return strides[-1]

    monkeypatch.setattr(_window64, "_stride", spy)
    monkeypatch.setattr("mmarray.dask._radix.GATHER", 1 << 16)
    a = np.random.default_rng(5).standard_normal(1 << 20).astype(np.float32)
    q = np.linspace(0, 1, 9)
    got, c = went(lambda: md.quantile(da.from_array(a, chunks=1 << 17), q))
    same(got, np.quantile(a, q))
    assert c == {"windowed": 1, "missed": 0} and strides[0] < STRIDE, (c, strides)


def test_lanes_get_windows_of_their_own_and_as_many(small):
    """Three lanes spanning chunks in ranges of their own (one shared window could not
    hold their quantiles); in the third, a run of one value at ranks 0.31 to 0.34 joins
    the windows of 0.3 and 0.35 into one, which is split to give it as many as the
    others."""
    rng = np.random.default_rng(6)
    n = 1 << 20
    third = rng.standard_normal(n)
    order = np.argsort(third)
    third[order[int(0.31 * n) : int(0.34 * n)]] = third[order[int(0.31 * n)]]
    a = np.stack([rng.normal(-1e6, 10, n), rng.normal(1e6, 1e3, n), third])
    x = da.from_array(a, chunks=(1, 1 << 17))
    for q in ([0.3, 0.35], [0.2, 0.8]):
        got, c = went(lambda: md.quantile(x, q, axis=1))  # noqa: B023
        same(got, np.quantile(a, q, axis=1))
        assert c == {"windowed": 1, "missed": 0}, (q, c)
    got, c = went(lambda: md.median(x.T, axis=0, keepdims=True))
    same(got, np.median(a.T, axis=0, keepdims=True))
    assert c["windowed"] == 1


def test_what_takes_no_window(small):
    rng = np.random.default_rng(7)
    a = rng.standard_normal(100_000)
    x = da.from_array(a, chunks=20_000)
    cases = [
        (lambda: md.median(x[:50_000]), np.median(a[:50_000])),  # a lane below WINDOW_MIN
        (lambda: md.median(da.from_array(a, chunks=50)), np.median(a)),  # chunks too short
        (lambda: md.quantile(x, np.linspace(0, 1, 30)), np.quantile(a, np.linspace(0, 1, 30))),
        (lambda: md.nanmedian(x), np.nanmedian(a)),  # NaNs counted by the first pass
    ]
    for fn, want in cases:
        got, c = went(fn)
        same(got, want)
        assert c == {"windowed": 0, "missed": 0}, c


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from(WIDE),
    spread=st.sampled_from([3, 1000, None]),
    q=st.lists(st.floats(0, 1), min_size=1, max_size=4),
    chunk=st.sampled_from([4096, 10_000, 33_333]),
)
def test_windowed_quantiles_match_numpy(seed, dtype, spread, q, chunk):
    rng = np.random.default_rng(seed)
    a = values(rng, dtype, 70_000)
    if spread is not None:
        a = (rng.integers(0, spread + 1, a.size) - spread // 2).astype(dtype)
    with pytest.MonkeyPatch.context() as mp, dask.config.set(scheduler="sync"):
        shrink(mp)
        mp.setattr(_window64, "WINDOW_MIN", 1 << 15)
        same(md.quantile(da.from_array(a, chunks=chunk), q), oracle(a, q))


@pytest.fixture(scope="module")
def client():
    yield from local_client()


def test_the_windows_on_a_cluster_over_a_mapped_file(client, tmp_path, monkeypatch):
    """The client's stride travels in the tasks; the keys come back from the workers."""
    shrink(monkeypatch)
    a = np.random.default_rng(8).standard_normal(1 << 19)
    p = tmp_path / "a.f8"
    mmarray.create(p, a.shape, dtype="f8")[:] = a
    x = md.from_file(p, dtype="f8", chunks=1 << 16)
    got, c = went(lambda: md.median(x))
    same(got, np.median(a))
    got, c2 = went(lambda: md.quantile(x, [0.1, 0.9]))
    same(got, np.quantile(a, [0.1, 0.9]))
    assert c["windowed"] == 1 and c2["windowed"] == 1
