"""mmarray.median / quantile and friends against numpy, the oracle.

Every comparison checks the value (NaN equal to NaN), the dtype, the shape, the
Python type (numpy scalar or array) and the set of warnings; errors must be
numpy's own exception with numpy's message.
"""

from __future__ import annotations

import os
import signal
import warnings

import numpy as np
import pytest
from fuzz.oracle import assert_same_floats, holds_both_zeros, holds_mixed_nans
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mmarray
from mmarray import _core

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
FUZZ = int(os.environ.get("MMARRAY_FUZZ", "1"))  # multiplies the hypothesis examples
FUNCS = ["median", "nanmedian", "quantile", "nanquantile", "percentile", "nanpercentile"]


def run(fn, *args, **kwargs):
    """(result or exception, warnings as a set of (category, message))."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - the exception is the result
            res = e
    return res, {(w.category, str(w.message)) for w in caught}


def same(got, exp, *, zero_sign=True, nan_bits=True):
    """got is numpy's exp: the same exception and message, or the same type, dtype,
    shape and values, sign and NaN bits included (see assert_same_floats)."""
    if isinstance(exp, Exception):
        assert type(got) is type(exp), (got, exp)
        assert str(got) == str(exp)
        return
    assert not isinstance(got, Exception), got
    assert type(got) is type(exp), (type(got), type(exp))
    g, e = np.asarray(got), np.asarray(exp)
    assert g.dtype == e.dtype, (g.dtype, e.dtype)
    assert g.shape == e.shape
    if g.dtype.kind in "fc":
        assert_same_floats(g, e, zero_sign=zero_sign, nan_bits=nan_bits)
    else:
        np.testing.assert_array_equal(g, e)


def check(name, a, *args, workers=(1, 2), **kwargs):
    """mmarray.<name> equals numpy.<name> for every workers value; returns the result.
    The sign of a zero result and a NaN's bits are compared too, except where the input
    holds both zeros (numpy's choice is its partition's;
    ``test_mixed_zeros_follow_the_total_order`` checks mmarray's) or NaNs of more than
    one bit pattern (numpy's NaN is whichever its partition leaves last, mmarray's
    another of the lane's; ``nan_bits=True`` compares them anyway, for inputs whose
    lanes' NaNs share bits lane by lane)."""
    nan_bits = kwargs.pop("nan_bits", not holds_mixed_nans(a))
    exp, exp_w = run(getattr(np, name), a.copy(), *args, **kwargs)
    zero_sign = not holds_both_zeros(a)
    for w in workers:
        got, got_w = run(getattr(mmarray, name), a, *args, workers=w, **kwargs)
        same(got, exp, zero_sign=zero_sign, nan_bits=nan_bits)
        assert got_w == exp_w
    return exp


def q_for(name, q):
    return np.multiply(q, 100) if "percentile" in name else q


# ---- hypothesis: dtype x shape x axis x keepdims x method -------------------------------


@st.composite
def arrays_and_axis(draw, max_dims=3, dtypes=DTYPES):
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=1, max_side=6))
    if dtype.kind == "f":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=8 * dtype.itemsize)
        elements = st.one_of(elements, st.sampled_from([0.0, -0.0, 1.0, np.nan]))
    else:
        elements = None
    a = draw(hnp.arrays(dtype, shape, elements=elements))
    nd = a.ndim
    axes = [None]
    if nd:
        axes += list(range(-nd, nd))
        axes.append(tuple(range(nd)))
    if nd >= 2:
        axes.append((0, nd - 1))
    axis = draw(st.sampled_from(axes))
    if draw(st.booleans()) and nd:
        # non-contiguous and negative strides: reverse or step through axis 0
        a = np.repeat(a, 2, axis=0)[::-2] if draw(st.booleans()) else a[::-1]
    return a, axis


@settings(max_examples=250 * FUZZ, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=arrays_and_axis(), keepdims=st.booleans(), name=st.sampled_from(FUNCS[:2]))
def test_median_matches_numpy(data, keepdims, name):
    a, axis = data
    check(name, a, axis=axis, keepdims=keepdims)


@settings(max_examples=400 * FUZZ, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=arrays_and_axis(),
    keepdims=st.booleans(),
    name=st.sampled_from(FUNCS[2:]),
    method=st.sampled_from(METHODS),
    q=st.one_of(
        st.floats(0, 1),
        st.sampled_from([0, 1, 0.5, 0.25]),
        st.lists(st.floats(0, 1), min_size=1, max_size=5).map(np.array),
        st.just(np.array([0.0, 0.5, 1.0], dtype=np.float32)),
        st.just(np.float32(0.3)),
    ),
)
def test_quantile_matches_numpy(data, keepdims, name, method, q):
    a, axis = data
    check(name, a, q_for(name, q), axis=axis, keepdims=keepdims, method=method)


# ---- cases the issue lists -------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["i8", "u8"])
def test_int64_extremes(dtype):
    info = np.iinfo(dtype)
    a = np.array([info.max, info.max, info.min, info.min + 1, info.max - 1, info.min], dtype)
    for name in ["median", "nanmedian"]:
        check(name, a)
        check(name, a.reshape(2, 3), axis=0)
    for m in METHODS:
        check("quantile", a, [0, 0.3, 0.5, 1], method=m)


def test_float32_pairs_whose_sum_overflows():
    big = np.finfo(np.float32).max
    a = np.array([big, big, -big, big], np.float32)
    check("median", a)
    check("median", a.reshape(2, 2), axis=1)
    check("nanmedian", a.reshape(2, 2), axis=1)
    check("quantile", a, 0.5)
    h = np.array([65504, 65504], np.float16)
    check("median", h)
    check("nanmedian", h.reshape(1, 2), axis=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_repeated_value_long_lane(dtype):
    a = np.full(1_100_000, 1, dtype=dtype)
    check("median", a)
    check("quantile", a, [0.1, 0.9], method="nearest", workers=(2,))


def test_signed_zeros_and_nan():
    a = np.array([-0.0, 0.0, -0.0, np.nan, 0.0])
    check("median", a)
    check("nanmedian", a)
    check("median", np.array([-0.0, -0.0]))
    check("quantile", np.array([np.inf, -np.inf]), 0.5)


def test_the_oracle_tells_the_sign_of_zero_and_the_bits_of_nan():
    with pytest.raises(AssertionError, match="sign"):
        same(np.float64(-0.0), np.float64(0.0))
    with pytest.raises(AssertionError, match="sign"):
        same(np.array([1.0, 0.0], "f4"), np.array([1.0, -0.0], "f4"))
    other_nan = np.array([0x7FFF], np.uint16).view(np.float16)[0]
    with pytest.raises(AssertionError, match="NaN bits"):
        same(other_nan, np.float16(np.nan))
    neg, neg_payload = np.array([0xFFF8 << 48, (0xFFF8 << 48) | 5], np.uint64).view("f8")
    with pytest.raises(AssertionError, match="NaN bits"):  # the payload, not only the sign
        same(neg_payload, neg)
    same(np.float64(-0.0), np.float64(0.0), zero_sign=False)  # the documented exception


@pytest.mark.parametrize("dtype", ["f2", "f4", "f8"])
@pytest.mark.parametrize("n", [5, 5000, 300_001])  # short lanes, radix, the sampled window
def test_bug_a_nan_result_had_other_bits_than_np_nan(dtype, n):
    # every NaN had the all-ones key, which decoded to 0x7FFF... instead of np.nan
    a = (np.arange(n) % 1000).astype(dtype)  # finite in float16 too
    a[n // 3] = np.nan
    for name, args in [("median", ()), ("quantile", ([0.2, 0.5],)), ("percentile", (30,))]:
        got = np.asarray(getattr(mmarray, name)(a, *args))
        assert got.tobytes() == np.asarray(getattr(np, name)(a, *args)).tobytes(), name
    check("median", a.reshape(1, -1), axis=1)


# mmarray's choice where an input holds both zeros: the statistics take the values at
# their ranks in the total order of keys (-0.0 before +0.0), then numpy's formula.
DISCRETE = ("inverted_cdf", "closest_observation", "lower", "higher", "nearest")


def numpys_ranks(n, q, method):
    """The ranks of a sorted lane of n that numpy's quantile reads for q and method: the
    selected one for the discrete methods, else the two neighbours of the virtual index
    (one where it lies outside the lane), as numpy's own _get_indexes picks them."""
    if method in DISCRETE:  # numpy takes one element: the quantile of the ranks is it
        return [int(np.quantile(np.arange(n, dtype=np.float64), q, method=method))]
    from numpy.lib._function_base_impl import _get_indexes, _QuantileMethods

    vi = np.asanyarray(_QuantileMethods[method]["get_virtual_index"](n, np.asarray(q)))
    prev, nxt = _get_indexes(np.zeros(n), vi, n)  # -1: past the last rank
    return sorted({int(prev) % n, int(nxt) % n})


def zero_order_model(name, x, q=None, method="linear"):
    """mmarray's documented answer for a 1-d float ``x`` without NaNs: numpy's own answer
    for ``x`` with every zero given the sign of the zero(s) that the total order puts at
    the ranks numpy's formula reads (+0.0 where it reads -0.0 and +0.0 together, as
    numpy's mean and interpolation of the two give +0.0)."""
    s = x[np.lexsort((~np.signbit(x), x))]  # by value, -0.0 before +0.0
    n = s.size
    if name.endswith("median"):
        ranks = [n // 2] if n % 2 else [n // 2 - 1, n // 2]
    else:
        ranks = numpys_ranks(n, q, method)
    read = s[ranks]
    zeros = np.signbit(read[read == 0])
    sign = -1.0 if zeros.size and zeros.all() else 1.0
    y = np.where(x == 0, np.copysign(0.0, sign), x).astype(x.dtype)
    if name.endswith("median"):
        return np.median(y)
    return np.quantile(y, q, method=method)


def assert_follows_the_total_order(name, x, q=None, method="linear", workers=(1, 2)):
    want = zero_order_model(name, x, q, method)
    for w in workers:
        if name.endswith("median"):
            got = getattr(mmarray, name)(x, workers=w)
        else:
            got = getattr(mmarray, name)(x, q, method=method, workers=w)
        assert type(got) is type(want) and got.dtype == want.dtype, (got, want)
        assert np.asarray(got).tobytes() == np.asarray(want).tobytes(), (name, got, want, x)


@settings(max_examples=300 * FUZZ, deadline=None)
@given(
    x=hnp.arrays(
        st.sampled_from(["f2", "f4", "f8"]),
        st.integers(2, 40),
        elements=st.sampled_from([-0.0, 0.0, -0.0, 0.0, 1.5, -2.0, 7.0]),
    ),
    name=st.sampled_from(["median", "nanmedian", "quantile", "nanquantile"]),
    method=st.sampled_from(METHODS),
    q=st.floats(0.0, 1.0),
)
def test_mixed_zeros_follow_the_total_order(x, name, method, q):
    zeros = np.signbit(x[x == 0])
    assume(zeros.any() and not zeros.all())  # both zeros: the documented exception
    assert_follows_the_total_order(name, x, q, method)


@pytest.mark.parametrize("dtype", ["f4", "f8"])
def test_mixed_zeros_follow_the_total_order_in_long_lanes(dtype):
    rng = np.random.default_rng(7)
    x = rng.choice(np.array([-0.0, 0.0, 1.0, -1.0], dtype), 200_001, p=[0.3, 0.3, 0.2, 0.2])
    assert_follows_the_total_order("median", x)
    k = int(np.count_nonzero(x < 0))  # the ranks around the boundary of -0.0 and +0.0
    m = int(np.count_nonzero(np.signbit(x) & (x == 0)))
    for rank in (k, k + m - 1, k + m, k + m // 2):
        q = rank / (x.size - 1)
        for method in ("lower", "higher", "linear", "midpoint", "nearest"):
            assert_follows_the_total_order("quantile", x, q, method, workers=(2,))


def test_empty_and_all_nan():
    check("median", np.array([]))
    check("nanmedian", np.array([]))
    check("quantile", np.zeros((0, 3)), 0.5, axis=0)
    check("nanmedian", np.full((2, 3), np.nan), axis=1)
    check("nanquantile", np.full(4, np.nan), [0.5, 0.1])
    check("nanmedian", np.array([[np.nan] * 700, [1.0] * 700]), axis=1)


def test_lanes_longer_than_600_with_nan():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 701)).astype(np.float32)
    a[0, ::3] = np.nan
    a[2, :] = np.nan
    check("nanmedian", a, axis=1)
    check("nanquantile", a, [0.2, 0.7], axis=1)
    check("nanquantile", a[::-1], 0.5, axis=1)


@pytest.mark.parametrize("dtype", ["i2", "u1", "f2", "i4", "f4", "u8", "f8"])
def test_long_lanes_random(dtype):
    rng = np.random.default_rng(1)
    n = 2_300_001
    a = (rng.standard_normal(n) * 3000).astype(dtype)
    if a.dtype.kind == "f":
        a[::1000] = np.nan
    check("median", a, workers=(1, 2, 7))
    check("nanmedian", a, workers=(2,))
    qs = np.linspace(0.1, 0.9, 9)
    check("quantile", a, qs, workers=(2,))
    check("nanquantile", a, qs, method="median_unbiased", workers=(2,))


def test_many_short_lanes_and_axis_tuple():
    rng = np.random.default_rng(2)
    a = rng.integers(-100, 100, size=(50, 30, 40)).astype(np.int32)
    check("median", a, axis=(0, 2), workers=(1, 2, 7))
    check("quantile", a, [0.3, 0.6], axis=(2, 0), keepdims=True)
    check("median", a[:, ::-2, 1::3], axis=1)
    f = a.astype(np.float64)
    f[3, 4, :] = np.nan
    check("nanquantile", f, 0.4, axis=2)


def test_out_and_overwrite_input():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((5, 8))
    for name, args in [("median", ()), ("quantile", ([0.2, 0.8],)), ("nanmedian", ())]:
        shape = np.shape(getattr(np, name)(a, *args, axis=1, keepdims=True))
        o1, o2 = np.empty(shape), np.empty(shape)
        r1 = getattr(np, name)(a.copy(), *args, axis=1, keepdims=True, out=o1)
        r2 = getattr(mmarray, name)(a, *args, axis=1, keepdims=True, out=o2)
        assert r2 is o2 and r1 is o1
        np.testing.assert_array_equal(o1, o2)
    b = a.copy()
    same(mmarray.median(b, overwrite_input=True), np.median(a))
    o32 = np.empty(5, np.float32)
    mmarray.median(a, axis=1, out=o32)
    np.testing.assert_array_equal(o32, np.median(a, axis=1, out=np.empty(5, np.float32)))


def test_bad_input_gets_numpys_exceptions():
    a = np.arange(10.0)
    check("quantile", a, 1.5)
    check("quantile", a, -0.1)
    check("percentile", a, 101)
    check("quantile", a, 0.5, method="nonsense")
    check("median", a, axis=1)
    check("quantile", a.reshape(2, 5), 0.5, axis=(0, 3))
    check("quantile", a, np.zeros((2, 2, 2)))
    check("quantile", a.astype(complex), 0.5)


def test_fallbacks_still_right():
    a = np.arange(12.0).reshape(3, 4)
    check("quantile", a, 0.5, method="inverted_cdf", weights=np.ones(12).reshape(3, 4))
    check("median", a.astype(">f8"), axis=0)
    check("median", a.astype(np.complex128))
    check("median", np.ma.masked_array(a, a > 5))
    check("median", [[1, 2], [3, 4]])
    check("median", a.astype(np.longdouble))


@pytest.mark.filterwarnings("ignore:All-NaN slice")  # axis=(): the NaN is a lane of its own
@pytest.mark.parametrize("dtype", ["f8", ">f8", "u4"])  # kernels, numpy fallback, integers
@pytest.mark.parametrize("axis", [(0, 1), (1, 3), (0, 2, 3), (0, 1, 2, 3), (2,), (), None, 1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_nanquantile_puts_a_2d_qs_axes_first_for_a_tuple_of_axes(dtype, axis, keepdims):
    # numpy's unweighted nanquantile moves a 2-d q's last axis to the end of the result
    # for a tuple of axes other than one, () included (numpy issue 25731, fixed for a
    # single axis only); mmarray
    # keeps quantile's layout: the oracle is one numpy call per q value, stacked
    rng = np.random.default_rng(7)
    a = (rng.random((4, 2, 5, 3)) * 1000).astype(dtype)
    if a.dtype.kind == "f":
        a[0, 1, 2, 0] = np.nan
    q = np.array([[0.2, 0.5, 0.6], [0.7, 0.95, 0.1]])
    for name, qq in (("nanquantile", q), ("nanpercentile", q * 100)):
        want = np.stack(
            [getattr(np, name)(a, v, axis=axis, keepdims=keepdims) for v in qq.ravel()]
        )  # fmt: skip
        want = want.reshape(q.shape + want.shape[1:])
        got = getattr(mmarray, name)(a, qq, axis=axis, keepdims=keepdims)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        out = np.empty_like(want)
        assert getattr(mmarray, name)(a, qq, axis=axis, keepdims=keepdims, out=out) is out
        np.testing.assert_array_equal(out, want)
    # and without NaN, nanquantile is quantile, shape and all
    b = np.nan_to_num(a) if a.dtype.kind == "f" else a
    np.testing.assert_array_equal(
        mmarray.nanquantile(b, q, axis=axis, keepdims=keepdims),
        np.quantile(b, q, axis=axis, keepdims=keepdims),
    )  # fmt: skip


def test_mapped_file_larger_than_a_chunk(tmp_path):
    rng = np.random.default_rng(5)
    data = rng.standard_normal(3_000_000).astype(np.float32)
    path = tmp_path / "x.raw"
    data.tofile(path)
    m = mmarray.open(path, dtype=np.float32)
    assert mmarray.median(m) == np.median(data)
    np.testing.assert_array_equal(
        mmarray.quantile(m, [0.01, 0.99]), np.quantile(data, [0.01, 0.99])
    )
    mm = np.memmap(path, dtype=np.float32, mode="r")
    same(
        mmarray.median(mm.reshape(1000, 3000), axis=0), np.median(data.reshape(1000, 3000), axis=0)
    )


def test_progress_callable_and_bar():
    a = np.random.default_rng(6).integers(0, 1000, 3_000_000).astype(np.int16)
    seen = []
    assert mmarray.median(a, progress=seen.append, workers=2) == np.median(a)
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    assert mmarray.median(a, progress=True) == np.median(a)


def test_interrupt_from_progress_stops_cleanly():
    a = np.random.default_rng(7).standard_normal(4_000_000)

    def boom(frac):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mmarray.median(a, progress=boom, workers=2)
    assert mmarray.median(a, workers=2) == np.median(a)


def test_sigint_raises_keyboard_interrupt():
    a = np.random.default_rng(8).standard_normal(4_000_000)
    sent = []

    def send(frac):
        if not sent:
            sent.append(frac)
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        mmarray.quantile(a, [0.1, 0.5], progress=send, workers=2)
    assert sent


def test_workers_validation_and_default():
    a = np.arange(5)
    with pytest.raises(ValueError):
        mmarray.median(a, workers=0)
    assert mmarray.median(a, workers=None) == 2.0


def test_median_estimate():
    a = np.random.default_rng(9).standard_normal(1_000_000)
    est = mmarray.median_estimate(a, chunk=100_000, workers=2)
    exp = np.median([np.median(a[i : i + 100_000]) for i in range(0, a.size, 100_000)])
    assert est == exp
    assert mmarray.median_estimate(np.arange(7), workers=1) == 3.0
    with pytest.raises(ValueError):
        mmarray.median_estimate(a, chunk=0)


def test_buckets_deferred_to_later_passes():
    # 6M int64 in [0, 2**20): every key shares its top 32 bits, the 16 buckets of the
    # next digit hold 375k keys each: more than one pass can gather at once.
    a = np.random.default_rng(10).integers(0, 1 << 20, 6_000_000)
    check("quantile", a, np.linspace(0, 1, 21), method="lower", workers=(2,))
    check("median", a.astype(np.float64), workers=(2,))


@pytest.mark.parametrize(
    "dtype, payload_nans",
    [("f8", [0x7FF0000000000001, 0xFFF0000000000001]), ("f4", [0x7F800001, 0xFF800001])],
)
def test_nans_whose_top_bits_look_like_inf(dtype, payload_nans):
    # NaNs with only their lowest mantissa bit set share their top 16 bits with +inf
    # and -inf: the filter's test on the stored top bits must still count them as NaN
    # (the largest key) and keep them out of the infinities' buckets.
    rng = np.random.default_rng(12)
    a = rng.standard_normal(1_200_000).astype(dtype)
    a[::7] = np.inf
    a[3::11] = -np.inf
    bits = np.array(payload_nans, dtype=a.dtype.str.replace("f", "u"))
    nans = bits.view(a.dtype)
    assert np.isnan(nans).all()
    a[5::13] = nans[0]
    a[6::17] = nans[1]
    for name in ("median", "nanmedian"):
        check(name, a, workers=(1, 2))
    check("nanquantile", a, [0.0, 0.05, 0.5, 0.93, 1.0], method="lower", workers=(2,))
    check("quantile", a, [0.0, 0.5, 1.0], method="higher", workers=(1,))


def test_gather_buffer_is_reused_not_leaked():
    # The gather buffer is kept for the next call (one mapping at most): calls that
    # gather more, then less, then more again give numpy's answers and leave the
    # address space where the first round put it.
    rng = np.random.default_rng(13)
    big = rng.standard_normal(3_000_000)
    small = big[:1_100_000].copy()
    qs = np.linspace(0.1, 0.9, 9)

    def vmsize():
        with open("/proc/self/status") as f:
            return next(int(x.split()[1]) << 10 for x in f if x.startswith("VmSize:"))

    counts = []
    for _ in range(3):  # the first round may add glibc's per-thread arenas
        for a in (small, big, small, big[::-1]):
            check("quantile", a, qs, workers=(1, 2))
        counts.append(vmsize())
    assert counts[2] - counts[1] < 8 << 20  # a leaked buffer would be 24 MiB a call


def test_gathered_bucket_narrowed_digit_by_digit():
    # 1.5M values that share every bit but the lowest ten, with repeats: the one bucket
    # is gathered whole and narrowed in memory through each remaining digit, and the
    # 101 ranks fall in one digit, or several, at each step.
    rng = np.random.default_rng(11)
    steps = rng.integers(0, 700, 1_500_000)
    f8 = 1.0 + steps * np.finfo(np.float64).eps
    i4 = (steps + (1 << 20)).astype(np.int32)
    for a in (f8, i4, -f8):
        check("median", a, workers=(1, 2))
        check("quantile", a, np.linspace(0, 1, 101), method="lower", workers=(2,))
        check("quantile", a, [0.25, 0.5, 0.75], workers=(1,))


@settings(max_examples=30 * FUZZ, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dtype=st.sampled_from(["f2", "f4", "f8", "i8"]),
    lanes=st.integers(1, 4),
    n=st.integers(600, 900),
    nan_frac=st.sampled_from([0.0, 0.1, 0.9, 1.0]),
    seed=st.integers(0, 2**32 - 1),
    name=st.sampled_from(["nanmedian", "nanquantile", "median", "quantile"]),
    method=st.sampled_from(METHODS),
)
def test_long_lanes_with_nan_match_numpy(dtype, lanes, n, nan_frac, seed, name, method):
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((lanes, n)) * 100).astype(dtype)
    if a.dtype.kind == "f":
        a[rng.random(a.shape) < nan_frac] = np.nan
    if name.endswith("median"):
        check(name, a, axis=1)
    else:
        check(name, a, rng.random(3), axis=1, method=method)
        check(name, a, 0.5, axis=1, method=method)


@pytest.mark.slow
def test_gather_budget_spent_defers_buckets():
    # 20M int64 in [0, 2**20): 16 buckets of 1.25M keys hold 26 ranks, more than one
    # pass may gather, so some buckets wait for the next pass.
    a = np.random.default_rng(3).integers(0, 1 << 20, 20_000_000)
    check("quantile", a, np.linspace(0, 1, 26), method="lower", workers=(2,))


# ---- the windowed first pass of long int16 and uint16 lanes ------------------------------
# A lane of at least 64 chunks (64 Mi values) is sampled first: every 32nd chunk gets the
# full 65,536-bin histogram.  Where the sample shows where the wanted ranks lie, the other
# chunks count only the keys inside that window bin by bin.  The window path runs only on
# lanes that long, so the arrays here are 128 MiB each.  _core._test_window_counts() tells
# which path each lane took, so that every test checks it tested the path it names.

WCHUNK = 1 << 20
WN = 64 * WCHUNK + 12_345  # 64 chunks and a partial one: sampled chunks 0, 32 and 64


def window_counts() -> np.ndarray:
    """(sampled, windowed, missed) lanes so far."""
    return np.array(_core._test_window_counts())


@pytest.fixture(scope="module")
def uniform() -> np.ndarray:
    return np.random.default_rng(11).integers(-32768, 32768, WN, dtype=np.int16)


@pytest.mark.slow
def test_uniform_int16_is_counted_through_the_window(uniform):
    c0 = window_counts()
    check("median", uniform, workers=(1, 2, 7))
    check("quantile", uniform, [0.3, 0.3001], workers=(2,))  # close ranks: one window
    check("quantile", uniform, [0.25], method="lower", workers=(3,))
    check("nanmedian", uniform, workers=(2,))
    sampled, windowed, missed = window_counts() - c0
    assert sampled == windowed == 6 and missed == 0


@pytest.mark.slow
def test_uint16_even_length_and_offset_start(uniform):
    u = uniform.view(np.uint16)[1:]  # even length (two middle values); 2 bytes in
    c0 = window_counts()
    check("median", u, workers=(2,))
    check("percentile", u, [90.0, 90.05], workers=(2,))
    assert tuple(window_counts() - c0) == (2, 2, 0)


@pytest.mark.slow
def test_ranks_at_the_ends_with_the_extremes_present(uniform):
    # every value of int16, the extremes included, is there about a thousand times
    assert uniform.min() == -32768 and uniform.max() == 32767
    c0 = window_counts()
    for q in (0.0, 1e-7, 1 - 1e-7, 1.0):
        for method in ("lower", "higher", "linear"):
            check("quantile", uniform, q, method=method, workers=(2,))
    sampled, windowed, missed = window_counts() - c0
    assert sampled == windowed == 12 and missed == 0


@pytest.mark.slow
def test_strided_lanes_take_the_scalar_window(uniform):
    c0 = window_counts()
    check("median", uniform[::-1], workers=(2,))  # negative stride
    two = np.empty((WN, 2), np.int16)  # two lanes of stride 4 bytes along axis 0
    two[:, 0] = uniform
    two[:, 1] = uniform[::-1] // 3
    check("median", two, axis=0, workers=(2,))
    assert tuple(window_counts() - c0) == (3, 3, 0)


@pytest.mark.slow
def test_sorted_data_keeps_the_full_histogram(uniform):
    # the sampled chunks' means differ far beyond chance: no window
    c0 = window_counts()
    check("median", np.sort(uniform), workers=(2,))
    assert tuple(window_counts() - c0) == (1, 0, 0)


@pytest.mark.slow
def test_a_wide_window_is_not_taken():
    # half of the values equal the median: the window would hold half the lane
    a = np.random.default_rng(12).integers(-500, 500, WN, dtype=np.int16)
    a[::2] = 7
    c0 = window_counts()
    check("median", a, workers=(2,))
    assert tuple(window_counts() - c0) == (1, 0, 0)


@pytest.mark.slow
def test_a_misleading_sample_costs_a_second_pass():
    # the sampled chunks (every 32nd) hold values in [-1000, 1000), all others values in
    # [2000, 3000): the sample's window lies far from the true median, and the counts
    # outside it show that, so the lane is counted again in full
    rng = np.random.default_rng(13)
    a = rng.integers(2000, 3000, WN, dtype=np.int16)
    for c in range(0, -(-WN // WCHUNK), 32):
        piece = a[c * WCHUNK : (c + 1) * WCHUNK]
        piece[:] = rng.integers(-1000, 1000, piece.size)
    c0 = window_counts()
    check("median", a, workers=(1, 2))
    check("quantile", a, [0.01, 0.02], workers=(2,))
    assert tuple(window_counts() - c0) == (3, 3, 3)


@pytest.mark.slow
def test_progress_on_a_windowed_lane(uniform):
    seen: list[float] = []
    c0 = window_counts()
    assert mmarray.median(uniform, progress=seen.append, workers=2) == np.median(uniform)
    assert tuple(window_counts() - c0) == (1, 1, 0)
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)


@pytest.mark.slow
@pytest.mark.parametrize("at", [1, 2])
def test_interrupt_on_a_windowed_lane_stops_cleanly(uniform, at):
    # progress is called as the sample is done (call 1), then as the window counts the
    # rest (call 2; on a slow machine, every 50 ms too): an exception at either stops
    # the lane cleanly, and the next call is whole
    calls = []

    def boom(frac):
        calls.append(frac)
        if len(calls) == at:
            raise KeyboardInterrupt

    c0 = window_counts()
    with pytest.raises(KeyboardInterrupt):
        mmarray.median(uniform, progress=boom, workers=2)
    assert len(calls) == at
    assert mmarray.median(uniform, workers=2) == np.median(uniform)
    sampled, windowed, missed = window_counts() - c0
    assert sampled == 2 and 1 <= windowed <= 2 and missed == 0


# ---- NaN results: one of the lane's own NaNs, bits and all --------------------------------

UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def nan_of(dtype, sign, payload):
    """The quiet NaN of dtype with this sign and (low) payload bits."""
    dt = np.dtype(dtype)
    w = 8 * dt.itemsize
    mant = {2: 10, 4: 23, 8: 52}[dt.itemsize]
    quiet = ((1 << (w - 1 - mant)) - 1) << mant | (1 << (mant - 1))
    bits = (sign << (w - 1)) | quiet | (payload % (1 << (mant - 1)))
    return np.array([bits], UINT[dt.itemsize]).view(dt)[0]


NAN_KINDS = [(1, 0), (0, 5), (1, 3)]  # the negative NaN of inf - inf, payloads


# lane lengths: up to MM_SHORT (1 Mi, src/select/select.h) the short-lane path, above it
# the long lanes' radix path in chunks of MM_CHUNK (1 Mi); floats take no sampled window
@pytest.mark.parametrize("dtype", ["f2", "f4", "f8"])
@pytest.mark.parametrize("n", [7, (1 << 20) + 5])
def test_nan_results_are_the_lanes_own_nans(dtype, n):
    # was np.nan's bits whatever NaN the lane held; numpy returns the lane's NaN
    a = (np.arange(3 * n) % 1000).astype(dtype).reshape(3, n)
    (s1, p1), (s2, p2) = NAN_KINDS[n % 2], NAN_KINDS[2]
    a[1, n // 2 :: 3] = nan_of(dtype, s1, p1)  # past the first chunk in a long lane
    a[2] = nan_of(dtype, s2, p2)  # all NaN
    for name in ("median", "nanmedian"):
        check(name, a, axis=1, nan_bits=True)
        check(name, a[1:2, ::-1], nan_bits=True)  # axis=None, strided backwards
    check("quantile", a, [0.0, 0.3, 1.0], axis=1, method="midpoint", nan_bits=True)
    for method in METHODS:
        check("quantile", a[:2], 0.5, axis=1, method=method, nan_bits=True)
        check("quantile", a[1], [0.2, 0.9], method=method, nan_bits=True)
    check("nanquantile", a, [0.1, 0.5], axis=1, nan_bits=True)
    check("percentile", a.T, 40, axis=0, nan_bits=True)


@pytest.mark.parametrize("dtype", ["f2", "f4", "f8"])
@pytest.mark.parametrize("n", [5, 600, 700])
def test_nanmedian_of_an_all_nan_lane_is_numpys(dtype, n):
    # numpy: np.nan for lanes shorter than 600 along an axis, else (and for axis=None)
    # the lane's last value, whatever the other NaNs' bits
    a = np.full((2, 3, n), nan_of(dtype, 1, 0))
    a[:, :, -1] = nan_of(dtype, 0, 7)
    a[1, 2, 1:] = 2.0
    b = np.moveaxis(a, 2, 1)  # the lane along axis 1 of a strided view
    for x, axis in [(a, 2), (a[:, ::-1, ::-1], 2), (b, 1), (a[0, 0], None), (a[0, 0], 0)]:
        check("nanmedian", x, axis=axis, nan_bits=True)
    check("nanmedian", a[:, :1], axis=(1, 2), nan_bits=True)
    check("nanmedian", a[:1, ::-1], axis=(0, 2), keepdims=True, nan_bits=True)
    check("nanquantile", a, 0.5, axis=2, nan_bits=True)


@st.composite
def arrays_with_one_nan(draw):
    """An array and axis of arrays_and_axis, floats only, whose NaNs all have one drawn
    bit pattern (a sign, a payload)."""
    a, axis = draw(arrays_and_axis(dtypes=[d for d in DTYPES if np.dtype(d).kind == "f"]))
    nan = nan_of(a.dtype, draw(st.integers(0, 1)), draw(st.integers(0, 1 << 9)))
    a = np.array(a, copy=True)
    a[np.isnan(a)] = nan
    spots = draw(st.lists(st.integers(0, a.size - 1), max_size=3))
    a.reshape(-1)[spots] = nan
    return a, axis


@settings(max_examples=300 * FUZZ, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=arrays_with_one_nan(),
    name=st.sampled_from(FUNCS),
    method=st.sampled_from(METHODS),
    q=st.sampled_from([0.0, 0.5, 1.0, [0.25, 0.75]]),
)
def test_nan_bits_match_numpy(data, name, method, q):
    a, axis = data
    if name in ("median", "nanmedian"):
        check(name, a, axis=axis, nan_bits=True)
    else:
        check(name, a, q_for(name, q), axis=axis, method=method, nan_bits=True)


def test_first_nan_finds_each_lanes_first_nan_in_c_order():
    n = (2 << 20) + 3  # three chunks
    a = np.ones((3, n), "f4")
    x, y, z = nan_of("f4", 1, 0), nan_of("f4", 0, 9), nan_of("f4", 1, 4)
    a[0, (1 << 20) + 1], a[0, (2 << 20) + 1] = x, y  # chunk 1 before chunk 2
    a[1, 5], a[1, -1] = z, x
    for workers in (1, 2):
        v, found = _core.first_nan(a, 1, np.array([2, 0, 1, 0]), workers)
        assert (
            v.view(np.uint32).tolist()
            == [0x7FC00000] + np.array([x, z, x]).view(np.uint32).tolist()
        )
        assert found.tolist() == [False, True, True, True]
        v, _ = _core.first_nan(a[:, ::-1], 1, np.array([0, 1]), workers)  # backwards
        assert v.tobytes() == np.array([y, x]).tobytes()
    c = np.ones((2, 3, 4), "f2")
    c[1, 2, 0], c[1, 1, 3] = nan_of("f2", 0, 1), nan_of("f2", 1, 2)
    v, found = _core.first_nan(c.transpose(0, 2, 1), 2, np.array([1]))  # 2-d lanes
    assert v.tobytes() == np.array([c[1, 2, 0]]).tobytes()
    assert _core.first_nan(c, 1, np.array([], np.int64))[0].shape == (0,)
    with pytest.raises(ValueError, match="lane 6 is not in 0..5"):
        _core.first_nan(c, 1, np.array([6]))
    with pytest.raises(TypeError, match="float16, float32 or float64"):
        _core.first_nan(np.zeros((2, 2), "i4"), 1, np.array([0]))
