"""The per-chunk kernels of mmarray.dask's radix selection against a numpy oracle:
``_core.key_histogram`` (first passes over long lanes take 32-bit counters, the others a
prefix filter) and ``_core.key_collect``.

Oracle: the order-preserving key of every value computed with numpy (`keys`), then
``np.bincount`` of the wanted digit among the keys with the wanted prefix.
"""

from __future__ import annotations

import platform

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmarray import _core

DTYPES = ["?", "u1", "i1", "u2", "i2", "f2", "u4", "i4", "f4", "u8", "i8", "f8"]
FIRST_LANE = 1 << 16  # lanes from this long take the 32-bit counters (keyhist.c)


def keys(a: np.ndarray) -> np.ndarray:
    """numpy's statement of the engine's keys (src/select/keys.h), as uint64."""
    a = np.ascontiguousarray(a)
    if a.dtype == np.bool_:
        return a.astype(np.uint64)
    w = 8 * a.dtype.itemsize
    u = a.view(f"u{a.dtype.itemsize}").astype(np.uint64)
    top = np.uint64(1) << np.uint64(w - 1)
    ones = (np.uint64(1) << np.uint64(w)) - np.uint64(1) if w < 64 else ~np.uint64(0)
    if a.dtype.kind == "u":
        return u
    if a.dtype.kind == "i":
        return u ^ top
    k = np.where(u & top, ~u & ones, u | top)
    return np.where(np.isnan(a), ones, k)


def oracle(a: np.ndarray, prefixes: np.ndarray, shift: int, bits: int) -> np.ndarray:
    """(L, m, 2**bits) for the lanes a[l] (2-d: lanes x values), as key_histogram."""
    out = np.zeros((a.shape[0], prefixes.shape[1], 1 << bits), np.uint64)
    for lane in range(a.shape[0]):
        k = keys(a[lane])
        p = k >> np.uint64(shift) if shift < 64 else np.zeros_like(k)
        digit = (k >> np.uint64(shift - bits)) & np.uint64((1 << bits) - 1)
        row = prefixes[0 if prefixes.shape[0] == 1 else lane]
        for j in range(row.size):
            if j and row[j] == row[j - 1]:
                continue  # the first of equal columns counts
            d = digit[p == row[j]].astype(np.int64)
            out[lane, j] = np.bincount(d, minlength=1 << bits)
    return out


def awkward(rng: np.random.Generator, dtype: str, n: int) -> np.ndarray:
    """n values of dtype: random bits, with zeros of both signs, infinities, NaNs of
    several patterns and runs of one value where the dtype has them."""
    dt = np.dtype(dtype)
    if n == 0:
        return np.empty(0, dt)
    if dt == np.bool_:
        return rng.integers(0, 2, n).astype(bool)
    a = rng.integers(0, 256, n * dt.itemsize, dtype=np.uint8).view(dt).copy()
    if dt.kind == "f":
        specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0], dt)
        pick = rng.integers(0, n, n // 20 + 1)
        a[pick] = rng.choice(specials, pick.size)
    a[: n // 10] = a[n // 2]
    return a


def first_digits(dtype: str) -> tuple[int, int]:
    """(shift, bits) of the first pass: the whole key, its top 16 bits (or all 8)."""
    w = 8 * np.dtype(dtype).itemsize
    return w, min(16, w)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [FIRST_LANE - 1, FIRST_LANE, 3 * FIRST_LANE + 17])
def test_first_pass_over_long_and_short_lanes(dtype, n):
    rng = np.random.default_rng(n)
    a = awkward(rng, dtype, 2 * n).reshape(2, n)
    shift, bits = first_digits(dtype)
    zero = np.zeros((1, 1), np.uint64)
    for x in (a, a[:, ::-1], a[::-1, ::2], a.T.copy().T):  # strides of every sign
        got = _core.key_histogram(x, 1, zero, shift, bits)
        assert np.array_equal(got, oracle(x, zero, shift, bits))
        assert int(got.sum()) == x.size


@pytest.mark.slow
def test_first_pass_counts_past_the_32_bit_counters():
    """The counters are flushed before they overflow: a lane of 2**32 + 5 zeros (read
    through a stride-0 view: no memory) has its bin counted whole."""
    big = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint16), (2**32 + 5,), (0,))
    got = _core.key_histogram(big, 1, np.zeros((1, 1), np.uint64), 16, 16)
    assert got[0, 0, 0] == 2**32 + 5 and got.sum() == 2**32 + 5


@settings(max_examples=150, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    lanes=st.integers(1, 3),
    n=st.integers(0, 3000),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_narrowing_passes_and_collects_match_the_oracle(dtype, lanes, n, seed, data):
    rng = np.random.default_rng(seed)
    a = awkward(rng, dtype, lanes * n).reshape(lanes, n)
    w = 8 * np.dtype(dtype).itemsize
    known = data.draw(st.integers(0, w - 1), label="known bits")
    bits = data.draw(st.integers(1, min(16, w - known)), label="bits")
    shift = w - known
    k = keys(a)
    have = np.unique(k >> np.uint64(shift)) if shift < 64 else np.zeros(1, np.uint64)
    m = data.draw(st.integers(1, 4), label="columns")
    rows = 1 if lanes == 1 or data.draw(st.booleans(), label="one row") else lanes
    pool = np.concatenate([have, rng.integers(0, 2**16, 2).astype(np.uint64)])
    prefixes = np.sort(rng.choice(pool, (rows, m)), axis=1)
    got = _core.key_histogram(a, 1, prefixes, shift, bits)
    assert np.array_equal(got, oracle(a, prefixes, shift, bits))
    values, ids = _core.key_collect(a, 1, prefixes, shift)
    for lane in range(lanes):
        row = prefixes[0 if rows == 1 else lane]
        mine = k[lane] >> np.uint64(shift) if shift < 64 else np.zeros(n, np.uint64)
        want = a[lane][np.isin(mine, row)]
        here = (ids // m) == lane
        assert np.array_equal(values[here], want, equal_nan=a.dtype.kind == "f")


@settings(max_examples=100, deadline=None)
@given(
    dtype=st.sampled_from(["i2", "u2"]),
    lanes=st.integers(1, 3),
    n=st.sampled_from([0, 1, 31, 1000, FIRST_LANE + 3]),
    per_lane=st.booleans(),
    step=st.sampled_from([1, -1, 3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_key_window_counts_inside_below_and_above(dtype, lanes, n, per_lane, step, seed):
    rng = np.random.default_rng(seed)
    a = awkward(rng, dtype, lanes * n * abs(step)).reshape(lanes, -1)[:, ::step]
    rows = lanes if per_lane else 1
    lo = rng.integers(0, 65536, rows)
    hi = np.minimum(65535, lo + rng.integers(0, 3000, rows))
    bounds = np.stack([lo, hi], axis=1).astype(np.uint64)
    hist, outside = _core.key_window(a, 1, bounds)
    assert hist.shape == (lanes, 65536) and outside.shape == (lanes, 2)
    for lane in range(lanes):
        k = keys(a[lane]).astype(np.int64)
        b_lo, b_hi = (int(v) for v in bounds[0 if rows == 1 else lane])
        want = np.bincount(k, minlength=65536)
        want[:b_lo], want[b_hi + 1 :] = 0, 0
        assert np.array_equal(hist[lane], want)
        assert outside[lane].tolist() == [int((k < b_lo).sum()), int((k > b_hi).sum())]


def test_key_window_refuses_what_it_cannot_count():
    a = np.arange(10, dtype=np.int16)
    with pytest.raises(TypeError, match="int16 or uint16"):
        _core.key_window(a.astype(np.float16), 1, np.array([[0, 5]], np.uint64))
    for bad in ([[5, 4]], [[0, 65536]], [[0, 1, 2]], [[0, 1], [0, 1]]):
        with pytest.raises(ValueError, match=r"lo <= hi < 2\*\*16"):
            _core.key_window(a, 1, np.array(bad, np.uint64))


WIDE = ["u4", "i4", "f4", "u8", "i8", "f8"]


def some_windows(rng: np.random.Generator, k: np.ndarray, nw: int, bits: int) -> list[int]:
    """nw sorted, disjoint windows [lo, hi] of keys, most of them around keys of k (so
    that they hold some), one possibly reaching the top key."""
    top = (1 << bits) - 1
    ends = sorted(int(v) for v in rng.choice(k, 2 * nw)) if k.size else []
    if len(set(ends)) < 2 * nw:
        ends = sorted(int(v) for v in rng.integers(0, top, 2 * nw, np.uint64, endpoint=True))
    out = []
    for j in range(nw):
        lo, hi = ends[2 * j], ends[2 * j + 1]
        if j and lo <= out[-1]:
            lo = out[-1] + 1
        out += [lo, max(lo, hi)]
    if rng.random() < 0.3 and out[-1] < top:
        out[-1] = top
    return out


@settings(max_examples=120, deadline=None)
@given(
    dtype=st.sampled_from(WIDE),
    lanes=st.integers(1, 3),
    n=st.sampled_from([0, 1, 33, 1000, 5000]),
    nw=st.sampled_from([1, 2, 3, 5, 24]),
    per_lane=st.booleans(),
    step=st.sampled_from([1, -1, 2]),
    seed=st.integers(0, 2**32 - 1),
)
def test_key_window_keys_counts_and_gathers_every_window(dtype, lanes, n, nw, per_lane, step, seed):
    """Against the keys sorted: each window's keys are a stretch of them (below[j] from
    below[j] + inside[j]) that covers the asked [lo, hi] (exactly, but for the float64
    histogram pass of 3 or more windows, which widens a window to whole buckets);
    windows do not overlap; the gathered keys are those stretches; the largest key is
    the lane's largest."""
    rng = np.random.default_rng(seed)
    bits = 8 * np.dtype(dtype).itemsize
    a = awkward(rng, dtype, lanes * n * abs(step)).reshape(lanes, -1)[:, ::step]
    rows = [some_windows(rng, keys(a[lane]), nw, bits) for lane in range(lanes if per_lane else 1)]
    table = np.array(rows, np.uint64)
    c, got, largest = _core.key_window_keys(a, 1, table)
    check_windows(a, table, c, got, largest, exact=not (dtype == "f8" and nw >= 3))


def check_windows(a, table, c, got, largest, exact):
    """key_window_keys's result for the lanes a[l] and windows table against the keys
    sorted (see the test above)."""
    lanes, nw = a.shape[0], table.shape[1] // 2
    assert c.shape == (lanes, nw, 2) and largest.shape == (lanes,)
    start = 0
    for lane in range(lanes):
        k = np.sort(keys(a[lane]))
        w = table[0 if table.shape[0] == 1 else lane].reshape(nw, 2)
        below, inside = c[lane, :, 0].astype(np.int64), c[lane, :, 1].astype(np.int64)
        asked_lo = np.searchsorted(k, w[:, 0], "left")
        asked_hi = np.searchsorted(k, w[:, 1], "right")
        if exact:
            assert below.tolist() == asked_lo.tolist()
            assert (below + inside).tolist() == asked_hi.tolist()
        else:
            assert np.all(below <= asked_lo) and np.all(below + inside >= asked_hi)
            assert np.all(below[1:] >= below[:-1] + inside[:-1])
        mine = np.sort(got[start : start + int(inside.sum())])
        start += int(inside.sum())
        want = np.concatenate([k[b : b + i] for b, i in zip(below, inside, strict=True)])
        assert np.array_equal(mine, want)
        assert int(largest[lane]) == (int(k[-1]) if k.size else 0)
    assert start == got.size


@pytest.mark.parametrize("step", [1, 3])
def test_key_window_keys_through_the_histogram_pass(step):
    """float64 with three windows of ordinary ends goes through window64.c's histogram
    pass (strided values through a contiguous copy), which may widen each window to
    whole buckets; the counts still place every key."""
    rng = np.random.default_rng(8)
    a = rng.standard_normal((2, 100_000 * step))[:, ::step]
    ends = keys(np.array([-1.0, -0.9, 0.01, 0.1, 1.0, 1.1]))
    table = np.array([ends], np.uint64)
    before = _core._test_hist_passes()
    c, got, largest = _core.key_window_keys(a, 1, table)
    if platform.machine() == "x86_64" and "avx2" in open("/proc/cpuinfo").read():
        assert _core._test_hist_passes() == before + 2  # one per lane
    check_windows(a, table, c, got, largest, exact=False)


def test_key_window_keys_over_long_lanes_in_pieces():
    """Lanes longer than a piece (2**20 keys) drain their windows' buffers between
    pieces; windows holding most of the keys lose none."""
    rng = np.random.default_rng(9)
    a = rng.standard_normal((2, (1 << 21) + 7))
    ends = [0, int(keys(np.array([0.5]))[0]), 1 << 63 | 1 << 62, (1 << 64) - 1]
    table = np.array([ends], np.uint64)
    c, got, largest = _core.key_window_keys(a, 1, table)
    for lane in range(2):
        k = keys(a[lane])
        assert c[lane].tolist() == [
            [0, int((k <= table[0, 1]).sum())],
            [int((k < table[0, 2]).sum()), int((k >= table[0, 2]).sum())],
        ]
        assert int(largest[lane]) == int(k.max())
    assert got.size == c[:, :, 1].sum()


def test_key_window_keys_refuses_what_it_cannot_count():
    a = np.arange(10, dtype=np.int32)
    with pytest.raises(TypeError, match="32- or 64-bit"):
        _core.key_window_keys(a.astype(np.int16), 1, np.array([[0, 5]], np.uint64))
    for bad in (
        [[5, 4]],  # lo above hi
        [[0, 1 << 32]],  # past the 32-bit keys
        [[0, 1, 2]],  # not pairs
        [[0, 5, 5, 9]],  # overlapping
        [[6, 9, 0, 5]],  # not sorted
        [list(range(50))],  # 25 windows
        [[0, 1], [0, 1]],  # two rows for one lane
    ):
        with pytest.raises(ValueError, match=r"lo <= hi < 2\*\*32"):
            _core.key_window_keys(a, 1, np.array(bad, np.uint64))
