"""The one-pass window of long 32- and 64-bit lanes (src/select/window64.c), against numpy.

A lane of at least 16 full chunks (16 Mi values) is sampled first: the first 64 Ki
values of up to 32 chunks spread over it.  The sample's quantiles around each wanted
rank give windows of keys; one pass counts the keys below and inside each window and
gathers those inside; the exact counts check the sample, and a miss takes the radix
passes.  `_core._test_window_counts()` counts the lanes (sampled, windowed, missed), so
that every test checks which path it ran.  The arrays are 16 Mi values and a tail.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_median import check

import mmarray
from mmarray import _core

CHUNK = 1 << 20
N = 16 * CHUNK + 12_345  # 16 full chunks and a partial one: every chunk's start sampled
BLOCK = 1 << 16
Q9 = np.linspace(0.1, 0.9, 9)
DT = ["f8", "f4", "i8", "u8", "i4", "u4"]

pytestmark = pytest.mark.slow


def counts() -> np.ndarray:
    """(sampled, windowed, missed) lanes so far."""
    return np.array(_core._test_window_counts())


def awkward(dt: str, n: int = N, seed: int = 0) -> np.ndarray:
    """Random values of dtype dt with its awkward values sprinkled in: the extremes of an
    integer type; signed zeros and infinities of a float type."""
    rng = np.random.default_rng(seed)
    t = np.dtype(dt)
    if t.kind == "f":
        a = rng.standard_normal(n).astype(t)
        special = np.array([0.0, -0.0, np.inf, -np.inf, np.finfo(t).max, -np.finfo(t).tiny], t)
    else:
        info = np.iinfo(t)
        a = rng.integers(info.min, info.max, n, dtype=t, endpoint=True)
        special = np.array([info.min, info.max, 0, 1], t)
    a[rng.integers(0, n, 5000)] = rng.choice(special, 5000)
    return a


def keyed_select(a: np.ndarray, ranks) -> np.ndarray:
    """The values at ranks in the engine's key order (NaN last, -0.0 before +0.0)."""
    if a.dtype.kind != "f":
        return np.sort(a)[ranks]
    u = np.dtype(f"u{a.itemsize}")
    bits = a.view(u)
    sign = u.type(1) << u.type(8 * a.itemsize - 1)
    keys = np.where(bits & sign, ~bits, bits | sign)
    keys[np.isnan(a)] = np.iinfo(u).max
    k = np.sort(keys)[ranks]
    k = np.where(k & sign, k ^ sign, ~k)  # the all-ones key of NaN: the engine's NaN
    return k.view(a.dtype)


@pytest.mark.parametrize("dt", DT)
def test_each_dtype_in_one_pass(dt):
    a = awkward(dt)
    c0 = counts()
    check("median", a)
    check("quantile", a, Q9, workers=(2,))
    check("quantile", a, [0.0, 0.5, 1.0], method="lower", workers=(3,))
    check("percentile", a[1:], [25.0, 75.0], method="nearest", workers=(2,))  # even length
    sampled, windowed, missed = counts() - c0
    assert sampled == windowed == 5 and missed == 0


@pytest.mark.parametrize("dt", ["f8", "f4"])
def test_key_order_of_the_engine(dt):
    # 8 Ki -0.0, 8 Ki +0.0 and 100 of each infinity among normal values: _core.select
    # gives the values at the ranks in key order (-0.0 before +0.0), bit for bit
    rng = np.random.default_rng(1)
    a = rng.standard_normal(N).astype(dt)
    at = rng.permutation(N)[: 2 * 8192 + 200]
    a[at[:8192]], a[at[8192:16384]] = -0.0, 0.0
    a[at[16384:16484]], a[at[16484:]] = -np.inf, np.inf
    z = int((a < 0).sum())  # the rank of the first -0.0
    ranks = np.array([[0, 99, 100, z - 1, z, z + 8191, z + 8192, z + 16384, N - 101, N - 1]])
    c0 = counts()
    got = _core.select(a, 1, ranks, workers=2)[0]
    u = f"u{a.itemsize}"
    assert got.view(u).tolist() == keyed_select(a, ranks[0]).view(u).tolist()
    assert np.signbit(got[4]) and not np.signbit(got[6])
    assert tuple(counts() - c0) == (1, 1, 0)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_nan_propagates(sign, simd):
    a = awkward("f8", seed=2)
    a[[7, N // 2, N - 3]] = np.copysign(np.nan, sign)  # a negative NaN sorts last too
    c0 = counts()
    check("median", a, workers=(2,))
    check("quantile", a, Q9, workers=(1,))
    check("nanmedian", a, workers=(2,))
    check("nanquantile", a, Q9, workers=(2,))
    sampled, windowed, missed = counts() - c0
    assert sampled == windowed == 4 and missed == 0


def test_strided_and_reversed_lanes_take_the_scalar_loop():
    a = awkward("f8", seed=3)
    two = np.empty((N, 2), np.int64)  # two lanes of stride 16 bytes along axis 0
    two[:, 0] = awkward("i8", seed=4)
    two[:, 1] = two[::-1, 0] // 3
    c0 = counts()
    check("median", a[::-1], workers=(2,))  # negative stride
    check("quantile", two, Q9, axis=0, workers=(2,))
    assert tuple(counts() - c0) == (3, 3, 0)


@pytest.mark.parametrize("dt", ["f8", "i8", "f4"])
def test_threads_write_their_own_chunks_of_a_windows_buffer(dt):
    # each thread writes a window's keys into chunks of its buffer that it takes with one
    # atomic add; the chunks left part-filled at the end are filled with the window's
    # lowest key, which the selection then counts below the window: with many threads
    # (more such chunks) every rank is still numpy's
    a = awkward(dt, seed=16)
    c0 = counts()
    check("quantile", a, Q9, workers=(5, 8))
    check("quantile", a, [0.001, 0.5, 0.999], method="lower", workers=(8,))
    sampled, windowed, missed = counts() - c0
    assert sampled == windowed == 3 and missed == 0


def test_a_misleading_sample_falls_back_to_the_radix_passes():
    # the sampled blocks (the first 64 Ki values of every chunk) hold N(0, 1), all other
    # values N(100, 1): the sample is stationary and brackets 0, the counts show that the
    # ranks lie above every window, and the lane takes the radix passes
    rng = np.random.default_rng(5)
    a = rng.normal(100.0, 1.0, N)
    for c in range(16):
        a[c * CHUNK : c * CHUNK + BLOCK] = rng.standard_normal(BLOCK)
    c0 = counts()
    check("median", a, workers=(1, 2))
    check("quantile", a, Q9, workers=(2,))
    assert tuple(counts() - c0) == (3, 3, 3)


def test_a_window_that_overflows_its_buffer_falls_back():
    # 3% of the values equal v, whose rank lies just above the median's: the median's
    # window runs from a key below v to v, so it holds all of them, more keys than its
    # buffer has room for, and the lane takes the radix passes
    rng = np.random.default_rng(6)
    a = rng.uniform(0.0, 2.0, N)
    a[rng.random(N) < 0.03] = v = 0.498 * 2 / 0.97
    assert 0.497 < (a < v).mean() < 0.499
    c0 = counts()
    check("median", a, workers=(2,))
    assert tuple(counts() - c0) == (1, 1, 1)


def test_a_window_of_one_key_is_counted_only():
    # most values are 7: the median's window is the one key 7, counted without gathering
    a = np.full(N, 7, np.int32)
    a[np.random.default_rng(7).integers(0, N, N // 10)] = -3
    c0 = counts()
    check("median", a, workers=(2,))
    check("quantile", a, [0.05, 0.5, 1.0], method="lower", workers=(2,))
    assert tuple(counts() - c0) == (2, 2, 0)


def test_sorted_data_skips_the_window():
    a = np.sort(awkward("f8", seed=8))
    c0 = counts()
    check("median", a, workers=(2,))
    check("median", a[::-1].copy(), workers=(2,))
    assert tuple(counts() - c0) == (2, 0, 0)


def test_too_many_or_too_wide_windows_skip_the_window():
    a = awkward("f4", seed=9)
    c0 = counts()
    check("quantile", a, np.linspace(0.02, 0.98, 30), workers=(2,))  # more than 24 windows
    check("quantile", a, np.linspace(0.02, 0.98, 20), workers=(2,))  # 16% of the lane
    assert tuple(counts() - c0) == (2, 0, 0)


def test_progress_on_a_windowed_lane():
    a = awkward("f8", seed=10)
    seen: list[float] = []
    c0 = counts()
    assert mmarray.median(a, progress=seen.append, workers=2) == np.median(a)
    assert tuple(counts() - c0) == (1, 1, 0)
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)


@pytest.mark.parametrize("at", [1, 2])
def test_interrupt_on_a_windowed_lane_stops_cleanly(at):
    # progress is called as the sample is done (call 1), then as the pass ends (call 2;
    # on a slow machine, every 50 ms too): an exception at either stops the lane cleanly,
    # and the next call is whole
    a = awkward("i8", seed=11)
    calls = []

    def boom(frac):
        calls.append(frac)
        if len(calls) == at:
            raise KeyboardInterrupt

    c0 = counts()
    with pytest.raises(KeyboardInterrupt):
        mmarray.median(a, progress=boom, workers=2)
    assert len(calls) == at
    assert mmarray.median(a, workers=2) == np.median(a)
    sampled, windowed, missed = counts() - c0
    assert sampled == 2 and 1 <= windowed <= 2 and missed == 0


def hists() -> int:
    """Lanes so far whose window pass was the float64 histogram pass."""
    return int(_core._test_hist_passes())


@pytest.fixture(params=["avx512", "avx2"])
def simd(request):
    """Each histogram test twice: with the AVX-512 pass (src/select/hist512.h, where the
    CPU has it) and with the AVX2 pass it replaces there (the only one under valgrind)."""
    on = request.param == "avx512"
    was, cpu = _core._test_avx512(on)
    if on and not cpu:
        _core._test_avx512(was)
        pytest.skip("this CPU has no AVX-512")
    yield request.param
    _core._test_avx512(was)


def test_many_float64_windows_take_the_histogram_pass(simd):
    # 9 windows of a float64 lane: one pass whose cost does not grow with the windows
    # (each value's bucket gives its counts); a lane of 16 Mi + 12345 values ends in a
    # partial vector; strided lanes go through a contiguous copy
    a = awkward("f8", seed=12)
    two = np.empty((N, 2))
    two[:, 0], two[:, 1] = a, -a[::-1]
    c0, h0 = counts(), hists()
    check("quantile", a, Q9, workers=(1, 2))
    check("quantile", a[::-1], Q9, workers=(2,))
    check("quantile", two, Q9, axis=0, workers=(2,))
    check("quantile", awkward("f4", seed=12), Q9, workers=(2,))  # float32: compares
    assert tuple(counts() - c0) == (6, 6, 0)
    assert hists() - h0 == 5


@pytest.mark.parametrize("nq", [3, 4, 12])
def test_histogram_pass_of_other_window_counts(simd, nq):
    # an even count of windows (the pass compares the buckets with the windows' first
    # two at a time), and a dozen (fields of 5 bits: the packed counts are unpacked
    # every 31 steps); close quantiles, so that the windows hold under an eighth of
    # the lane
    a = awkward("f8", seed=13)
    q = 0.3 + 0.03 * np.arange(nq)
    c0, h0 = counts(), hists()
    check("quantile", a, q, workers=(1, 2))
    assert tuple(counts() - c0) == (2, 2, 0)
    assert hists() - h0 == 2


def test_quantiles_from_0_take_the_histogram_pass(simd):
    # rank 0 wanted: the first window runs from the lowest key (-inf and below), whose
    # float end cannot scale the buckets; it takes bucket 0 (every value below the
    # buckets' span, which starts at its high end) instead of sending the lane to the
    # compare pass of 9 windows (it did, at 1.5x the time); -inf among the values
    a = awkward("f8", seed=14)
    q = np.linspace(0, 1, 9)
    c0, h0 = counts(), hists()
    check("quantile", a, q, workers=(1, 2))
    check("quantile", a, [0.0, 0.2, 0.5, 0.7], workers=(2,))
    check("quantile", a[::-1], q, workers=(2,))
    assert tuple(counts() - c0) == (4, 4, 0)
    assert hists() - h0 == 4


def test_signed_zeros_in_the_histogram_pass(simd):
    # -0.0 and +0.0 share a bucket; they are told apart by their keys among the gathered
    # values, and the largest value (+0.0, after -0.0) is found exactly
    rng = np.random.default_rng(13)
    a = rng.standard_normal(N)
    at = rng.permutation(N)[:16384]
    a[at[:8192]], a[at[8192:]] = -0.0, 0.0
    z = int((a < 0).sum())
    ranks = np.sort(np.r_[(Q9 * (N - 1)).astype(np.int64), [z - 1, z, z + 8191, z + 8192]])
    b = -np.abs(a)
    b[at[8192:]] = 0.0
    top = (Q9 * (N - 1)).astype(np.int64).tolist() + [N - 1]
    c0, h0 = counts(), hists()
    for x, r in ((a, ranks), (b, np.array(top))):
        got = _core.select(x, 1, r[None, :], workers=2)[0]
        assert got.view("u8").tolist() == keyed_select(x, r).view("u8").tolist()
    assert not np.signbit(got[-1])
    assert tuple(counts() - c0) == (2, 2, 0)
    assert hists() - h0 == 2


def test_a_histogram_window_that_overflows_falls_back(simd):
    # as test_a_window_that_overflows_its_buffer_falls_back, with 9 windows: the median's
    # window of the histogram pass holds the 3% of values equal to v and overflows
    rng = np.random.default_rng(6)
    a = rng.uniform(0.0, 2.0, N)
    a[rng.random(N) < 0.03] = 0.498 * 2 / 0.97
    c0, h0 = counts(), hists()
    check("quantile", a, Q9, workers=(2,))
    assert tuple(counts() - c0) == (1, 1, 1)
    assert hists() - h0 == 1


@pytest.mark.parametrize("k", [20_000, 45_000])
def test_many_equal_keys_inside_a_histogram_window(simd, k):
    # the histogram pass gives each run of a window's buckets a slot, whose chunks are
    # taken from the window's one buffer: k copies of a value inside the median's window
    # and just above the median (0.1% and 0.3% of the values, all in one slot, which
    # then holds several times its share) fit as long as the window has room, and each
    # rank is selected among the keys of its own slot, the slots' chunks moved together
    rng = np.random.default_rng(17)
    a = rng.uniform(0.0, 2.0, N)
    a[rng.integers(0, N, k)] = v = 1.005
    assert 0.5 < (a < v).mean() < 0.503
    c0, h0, s0 = counts(), hists(), _core._test_slot_selects()
    check("quantile", a, Q9, workers=(1, 2, 7))
    # ranks in different slots of one window (their windows merged)
    check("quantile", a, [0.1, 0.497, 0.5, 0.504, 0.9], method="lower", workers=(2,))
    sampled, windowed, missed = counts() - c0
    assert sampled == windowed == 4 and missed == 0
    assert hists() - h0 == 4
    assert _core._test_slot_selects() - s0 >= 3 * 9 + 4  # a rank a quantile at least


def test_windows_of_few_distinct_keys(simd):
    # values rounded to 1/4096: a window gathers some 60 distinct keys, about 1600 of
    # each, which share all but their low bits (selected from the highest bit in which
    # they differ)
    rng = np.random.default_rng(15)
    a = np.round(rng.standard_normal(N) * 4096)
    c0, h0 = counts(), hists()
    check("quantile", a / 4096, Q9, workers=(1, 2))
    check("quantile", a.astype("i8"), Q9, workers=(2,))
    sampled, windowed, missed = counts() - c0
    assert sampled == windowed == 3 and missed == 0
    assert hists() - h0 == 2
