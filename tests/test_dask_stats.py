"""mmarray.dask.median / quantile and friends against numpy, bit for bit.

On a real LocalCluster (2 worker processes, one thread each, started once for the
module; every compute bounded in time) for files read by the workers, and on dask's
synchronous scheduler for the breadth (hypothesis: dtypes, shapes, uneven chunks, axes,
keepdims, the 13 methods), with the radix selection's gather threshold lowered so that
the 32- and 64-bit values take several narrowing passes.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
md = pytest.importorskip("mmarray.dask")
from dask_cluster import local_client  # noqa: E402  (after the skips: it imports distributed)
from fuzz.oracle import holds_mixed_nans  # noqa: E402

from mmarray.dask import _radix  # noqa: E402

TIMEOUT = 60  # seconds for the cluster to start, stop, or give one result
DTYPES = ["?", "u1", "i1", "u2", "i2", "f2", "u4", "i4", "f4", "u8", "i8", "f8"]
METHODS = [
    "inverted_cdf",
    "averaged_inverted_cdf",
    "closest_observation",
    "interpolated_inverted_cdf",
    "hazen",
    "weibull",
    "linear",
    "median_unbiased",
    "normal_unbiased",
    "lower",
    "higher",
    "midpoint",
    "nearest",
]
FUNCS = ["median", "nanmedian", "quantile", "nanquantile", "percentile", "nanpercentile"]


@pytest.fixture(scope="module")
def client():
    yield from local_client()


@pytest.fixture
def sync():
    with dask.config.set(scheduler="sync"):
        yield


@pytest.fixture
def narrow(monkeypatch):
    """Buckets of more than 3 values are split again: every pass of the radix selection."""
    monkeypatch.setattr(_radix, "COLLECT", 3)
    monkeypatch.setattr(_radix, "GATHER", 0)


def call(fn, *args, **kwargs):
    """(result or exception, warnings as a set of (category, message))."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - the exception is the result
            res = e
    return res, {(w.category, str(w.message)) for w in caught}


def same(got, exp, a):
    """got is numpy's exp: type, dtype, shape, values (NaN equal NaN) and, unless the
    input holds both zeros (numpy's partition leaves their order open), signs of zero;
    the bits of NaNs unless the input holds NaNs of more than one bit pattern."""
    if isinstance(exp, Exception):
        assert type(got) is type(exp), (got, exp)
        return
    assert not isinstance(got, Exception), got
    assert type(got) is type(exp), (type(got), type(exp))
    g, e = np.asarray(got), np.asarray(exp)
    assert g.dtype == e.dtype and g.shape == e.shape, (g.dtype, e.dtype, g.shape, e.shape)
    assert np.array_equal(g, e, equal_nan=g.dtype.kind in "fc"), (g, e)
    flat = np.asarray(a).ravel()
    if g.dtype.kind == "f" and flat.dtype.kind == "f":
        both = np.any((flat == 0) & np.signbit(flat)) and np.any((flat == 0) & ~np.signbit(flat))
        if not both:
            real = ~np.isnan(e)
            assert np.array_equal(np.signbit(g)[real], np.signbit(e)[real]), (g, e)
        if not holds_mixed_nans(flat):  # else a NaN's bits are whichever NaN numpy met
            w = {2: np.uint16, 4: np.uint32, 8: np.uint64}[g.dtype.itemsize]
            gb, eb, nan = np.atleast_1d(g).view(w), np.atleast_1d(e).view(w), np.isnan(e)
            assert np.array_equal(gb[np.atleast_1d(nan)], eb[np.atleast_1d(nan)]), (g, e)


def check(name, a, x, *args, warn=True, **kwargs):
    exp, exp_w = call(getattr(np, name), a.copy(), *args, **kwargs)
    got, got_w = call(getattr(md, name), x, *args, **kwargs)
    same(got, exp, a)
    if warn:
        assert got_w == exp_w
    return got


def random_bits(n, dtype, seed):
    """Random bytes as values of dtype: every bit pattern (NaNs, -0.0, extremes)."""
    dt = np.dtype(dtype)
    raw = np.random.default_rng(seed).integers(0, 256, n * dt.itemsize, dtype=np.uint8)
    if dt.kind == "b":
        raw &= 1
    return raw.view(dt)


# ---- on the cluster: files the workers map ---------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_cluster_from_file_axis_none_every_dtype(client, tmp_path, dtype):
    a = random_bits(20_000, dtype, seed=len(dtype) + np.dtype(dtype).itemsize)
    p = tmp_path / "a.npy"
    np.save(p, a)
    x = md.from_file(p, chunks=3_001)  # uneven: 6 chunks and a short one
    # warnings aside: numpy's arithmetic on the signalling NaNs among the random bits
    # warns, where the engine hands back one quiet NaN
    kw = {"warn": a.dtype.kind != "f"}
    check("median", a, x, **kw)
    check("nanmedian", a, x, **kw)
    q = np.linspace(0, 1, 9)
    check("quantile", a, x, q, method="linear", **kw)
    check("nanpercentile", a, x, q * 100, method="nearest", **kw)
    check("quantile", a, x, 0.3, method="inverted_cdf", **kw)


def test_cluster_lanes_within_across_and_rechunked(client, tmp_path):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((40, 300)).astype("f4")
    a[3, ::7] = np.nan
    a[5] = np.nan
    p = tmp_path / "b.npy"
    np.save(p, a)
    x = md.from_file(p, chunks=(7, 120))
    for axis in (0, 1, (0, 1), (1, 0), -1):
        for keepdims in (False, True):
            check("median", a, x, axis=axis, keepdims=keepdims)
            check("nanmedian", a, x, axis=axis, keepdims=keepdims)
            check("nanquantile", a, x, [0.1, 0.5], axis=axis, keepdims=keepdims)


def test_cluster_int64_extremes_and_infinities(client, tmp_path):
    i = np.array([np.iinfo("i8").min, np.iinfo("i8").max, 0, -1, 1] * 301, dtype="i8")
    f = np.array([np.inf, -np.inf, -0.0, 0.0, np.finfo("f8").max, 5e-324] * 250)
    for k, a in enumerate((i, f, np.abs(f), -np.abs(f))):
        p = tmp_path / f"c{k}.npy"
        np.save(p, a)
        x = md.from_file(p, chunks=333)
        for method in METHODS:
            check("quantile", a, x, [0.0, 0.2, 0.5, 0.97, 1.0], method=method)
        check("median", a, x)


def _incoming(dask_worker) -> int:
    return sum(e["total"] for e in dask_worker.transfer_incoming_log)


def test_cluster_workers_receive_counts_not_chunks(client, tmp_path):
    p = tmp_path / "big.raw"
    a = np.random.default_rng(5).standard_normal(8 << 20 >> 3)  # 8 MiB
    a.tofile(p)
    x = md.from_file(p, dtype="f8", chunks=1 << 17)  # 8 chunks of 1 MiB
    before = sum(client.run(_incoming).values())
    assert md.median(x) == np.median(a)
    received = sum(client.run(_incoming).values()) - before
    # the histograms of the tree reduction (65,536 counters each), never a chunk
    assert received < 8 * 65536 * 8, received


# ---- the breadth, on the synchronous scheduler --------------------------------------------


@st.composite
def dask_arrays(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=9))
    if dtype.kind == "f":
        elements = st.one_of(
            st.floats(allow_nan=True, allow_infinity=True, width=8 * dtype.itemsize),
            st.sampled_from([0.0, -0.0, 1.0, np.nan, -np.inf]),
        )
    else:
        elements = None
    a = draw(hnp.arrays(dtype, shape, elements=elements))
    chunks = tuple(
        tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=n)))  # uneven
        for n in shape
    )
    chunks = tuple(_fit(c, n) for c, n in zip(chunks, shape, strict=True))
    nd = a.ndim
    axis = draw(st.sampled_from([None, *range(-nd, nd), tuple(range(nd)), (nd - 1, 0)]))
    if isinstance(axis, tuple):
        axis = tuple(dict.fromkeys(ax % nd for ax in axis))
    return a, da.from_array(a, chunks=chunks), axis


def _fit(sizes, n):
    """Chunk sizes that add up to n (the drawn ones, cut or extended)."""
    out, left = [], n
    for s in sizes:
        if left == 0:
            break
        out.append(min(s, left))
        left -= out[-1]
    if left:
        out.append(left)
    return tuple(out)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=dask_arrays(), keepdims=st.booleans(), name=st.sampled_from(FUNCS[:2]))
def test_median_matches_numpy(sync, narrow, data, keepdims, name):
    a, x, axis = data
    check(name, a, x, axis=axis, keepdims=keepdims, warn=False)


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    data=dask_arrays(),
    keepdims=st.booleans(),
    name=st.sampled_from(FUNCS[2:]),
    method=st.sampled_from(METHODS),
    q=st.one_of(
        st.floats(0, 1),
        st.sampled_from([0, 1, 0.5]),
        st.lists(st.floats(0, 1), min_size=1, max_size=4).map(np.array),
        st.just(np.array([0.0, 0.5, 1.0], dtype=np.float32)),
    ),
)
def test_quantile_matches_numpy(sync, narrow, data, keepdims, name, method, q):
    a, x, axis = data
    if "percentile" in name:
        q = np.multiply(q, 100)
    check(name, a, x, q, axis=axis, keepdims=keepdims, method=method, warn=False)


@pytest.mark.parametrize("dtype", ["u4", "i8", "f4", "f8", "f2", "i2"])
def test_radix_narrowing_passes_long_lane(sync, narrow, dtype):
    rng = np.random.default_rng(7)
    a = (rng.standard_normal(50_001) * 1e4).astype(dtype)
    a[::10] = a[5]  # many equal values: buckets that never shrink below 3
    x = da.from_array(a, chunks=4_999)
    for name in FUNCS[2:]:
        q = [0, 0.01, 0.5, 0.99, 1] if "quantile" in name else [0, 1, 50, 99, 100]
        for method in ("linear", "lower", "nearest", "midpoint"):
            check(name, a, x, q, method=method)


def test_radix_is_the_path_for_axis_none(sync, monkeypatch):
    calls = []
    real = _radix._core.key_histogram

    def counting(*args, **kwargs):
        calls.append(args[3:5])
        return real(*args, **kwargs)

    monkeypatch.setattr(_radix._core, "key_histogram", counting)
    a = np.arange(10_000, dtype="i2")[::-1].copy()
    check("median", a, da.from_array(a, chunks=1000))
    assert calls and all(c == (16, 16) for c in calls)  # one 65,536-bin pass, per chunk


def test_buckets_are_gathered_within_the_budget(monkeypatch):
    """`_gathered`: every bucket of at most COLLECT values, then the smallest others
    while the gathered ones together hold at most GATHER values."""
    monkeypatch.setattr(_radix, "COLLECT", 3)
    monkeypatch.setattr(_radix, "GATHER", 17)
    got = _radix._gathered(np.array([5, 10, 2, 100, 3, 40]))
    assert got.tolist() == [True, False, True, False, True, False]  # 2 + 3 + 5 + 10 > 17
    monkeypatch.setattr(_radix, "GATHER", 20)
    assert _radix._gathered(np.array([5, 10, 2, 100, 3, 40])).tolist() == [
        True,
        True,
        True,
        False,
        True,
        False,  # 2 + 3 + 5 + 10 = 20: all four fit
    ]
    monkeypatch.setattr(_radix, "GATHER", 0)
    assert _radix._gathered(np.array([4, 1, 9])).tolist() == [False, True, False]


@pytest.mark.parametrize("gather", [0, 1 << 22])
def test_a_budget_of_gathered_values_saves_a_pass(sync, monkeypatch, gather):
    """float64 keys: with the budget, the bucket the first digit leaves (thousands of
    values) is gathered at once (one histogram pass); without it, split again."""
    monkeypatch.setattr(_radix, "COLLECT", 3)
    monkeypatch.setattr(_radix, "GATHER", gather)
    passes = []
    real = _radix.RadixLanes._hist

    def counting(self, table, shift, bits):
        passes.append(shift)
        return real(self, table, shift, bits)

    monkeypatch.setattr(_radix.RadixLanes, "_hist", counting)
    a = np.random.default_rng(3).random(100_000)
    check("quantile", a, da.from_array(a, chunks=9_999), [0.1, 0.5, 0.9])
    assert (passes == [64]) == bool(gather), passes


def test_empty_all_nan_out_and_weights(sync):
    e = np.zeros((0, 4))
    check("median", e, da.from_array(e), axis=0)
    check("nanquantile", e, da.from_array(e), 0.5)
    n = np.full((3, 700), np.nan)
    n[1, 5] = 1.0
    xn = da.from_array(n, chunks=(2, 300))
    check("nanmedian", n, xn, axis=1)  # warns once per all-NaN lane, as numpy
    check("nanmedian", n, xn)
    check("nanquantile", n, xn, [0.5, 0.7], axis=1)
    a = np.random.default_rng(1).standard_normal((6, 50))
    out = np.empty(50)
    got = md.median(da.from_array(a, chunks=(4, 20)), axis=0, out=out)
    assert got is out and np.array_equal(out, np.median(a, axis=0))
    w = np.random.default_rng(2).random((6, 50))
    check("quantile", a, da.from_array(a, chunks=3), 0.4, axis=1, weights=w, method="inverted_cdf")
    check("nanpercentile", a, da.from_array(a, chunks=3), 40, weights=w, method="inverted_cdf")


def test_unsupported_dtypes_are_numpys(sync):
    c = np.array([3 + 1j, 1 - 2j, 2j])
    check("median", c, da.from_array(c, chunks=1))
    b = np.arange(7, dtype=">f8")
    check("quantile", b, da.from_array(b, chunks=2), 0.5)
    check("quantile", b, da.from_array(b, chunks=2), 1.5)  # numpy's ValueError


@pytest.mark.parametrize("dtype", ["f2", "f4", "f8"])
def test_nan_results_are_the_lanes_own_nans(sync, narrow, dtype):
    # was np.nan's bits; numpy returns the lane's own NaN (here the negative one of
    # inf - inf), and nanmedian an all-NaN lane's last value
    neg = -np.array([np.nan], dtype)  # the negative quiet NaN
    a = np.arange(4 * 700, dtype=np.float64).reshape(4, 700).astype(dtype)
    a[1, 650] = neg[0]
    a[2, 3::5] = neg[0]
    a[3] = neg[0]
    for chunks in [(1, 700), (2, 100)]:  # lanes within chunks, lanes across them
        x = da.from_array(a, chunks=chunks)
        for name in ("median", "nanmedian"):
            check(name, a, x, axis=1)
            check(name, a[1:], x[1:])
        check("quantile", a, x, [0.1, 0.5, 1.0], axis=1, method="midpoint")
        check("nanquantile", a, x, 0.5, axis=1)
        check("nanmedian", a[3], x[3])
        check("nanmedian", a[3:], x[3:], axis=1)
