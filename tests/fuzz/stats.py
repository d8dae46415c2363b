"""Fuzz targets: median, nanmedian, quantile, nanquantile, percentile and nanpercentile
against numpy's (every method, axes, keepdims, out, weights, overwrite_input, workers,
progress), and median_estimate against a model built from np.median."""

from __future__ import annotations

import contextlib
import operator
import warnings
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import mmarray

from .oracle import (
    ALLOWED,
    assert_same_result,
    attempt,
    copy_input,
    count,
    numpy_outcome,
    workers_valid,
)
from .sources import stat_inputs, workers_st

STATS = ["median", "nanmedian", "quantile", "nanquantile", "percentile", "nanpercentile"]
METHODS = [
    "linear", "linear", "inverted_cdf", "averaged_inverted_cdf", "closest_observation",
    "interpolated_inverted_cdf", "hazen", "weibull", "median_unbiased", "normal_unbiased",
    "lower", "higher", "midpoint", "nearest", "bogus",
]  # fmt: skip
axes_st = st.one_of(
    st.none(),
    st.integers(-5, 4),
    st.lists(st.integers(-4, 4), max_size=3).map(tuple),
    st.sampled_from([1.5, "0", [0], (0, 0), (0, -1), np.int64(0)]),
)
q_unit = st.one_of(
    st.floats(0, 1),
    st.sampled_from([0, 1, 0.5, 0.25, -0.1, 1.1, float("nan"), float("inf"), 1e-300]),
)
q_st = st.one_of(
    q_unit,
    q_unit,
    st.lists(q_unit, max_size=4),
    hnp.arrays(np.float64, st.sampled_from([(2, 2), (3,), (0,), (1, 1, 2)]), elements=q_unit),
    st.sampled_from(
        [np.float32(0.3), np.array([0, 1]), np.array(0.5, "f2"), True, 0.5j, "0.5", [], [[0.5]]]
    ),
)


# ---- median, quantiles, percentiles vs numpy ---------------------------------------------


def numpy_stat(func: str, x: Any, *rest: Any, out: Any = None, **kw: Any) -> Any:
    """numpy's answer for ``func`` (the oracle), with one of numpy's bugs worked around."""
    np_func = getattr(np, func)
    quant = func not in ("median", "nanmedian")
    # numpy's unweighted nanquantile splits a 2-d q's axes for a tuple of axes
    # other than one (numpy issue 25731, fixed for one axis only); q's axes first,
    # as in quantile: from the raveled q, whose 1-d path numpy gets right.
    # The whole call first, for numpy's exceptions in numpy's order of checks.
    r = np_func(copy_input(x), *rest, **kw)
    qa = np.asanyarray(rest[0]) if quant and "weights" not in kw else None
    if (
        np.size(x) > 0  # empty: numpy returns nanmean's result, whatever q is
        and func.startswith("nan")
        and qa is not None
        and qa.ndim == 2
        and qa.size
    ):
        r = np_func(copy_input(x), qa.ravel(), *rest[1:], **kw)
        r = r.reshape(qa.shape + r.shape[1:])
        if out is None:
            return r
        out[...] = r
        return out
    return r if out is None else np_func(x, *rest, out=out, **kw)


def run_both(
    func: str, args: tuple[Any, ...], kw: dict, pkw: dict, seen: list[float], use_out: bool
) -> tuple[bool, Any, bool, Any]:
    """(ok, mmarray's result, ref_ok, numpy's result), with out= arrays when use_out
    (and both computed a result without); ``seen`` collects the progress reports."""
    ours_f = getattr(mmarray, func)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_ok, ref = numpy_outcome(lambda: numpy_stat(func, copy_input(args[0]), *args[1:], **kw))
        ok, res = numpy_outcome(lambda: ours_f(*args, **kw, **pkw))
        if use_out and ref_ok and isinstance(ref, np.ndarray) and ok:
            out1, out2 = np.empty_like(ref), np.empty_like(ref)
            ref_ok, ref = numpy_outcome(
                lambda: numpy_stat(func, copy_input(args[0]), *args[1:], out=out1, **kw)
            )
            seen.clear()
            ok, res = numpy_outcome(lambda: ours_f(*args, out=out2, **kw, **pkw))
            if ok:
                assert res is out2
    return ok, res, ref_ok, ref


def check_stat_outcome(
    func: str, workers: Any, ours: tuple[bool, Any], numpys: tuple[bool, Any], inp: Any
) -> None:
    """numpy's result, or numpy's exception; a bad workers is refused whatever numpy says."""
    (ok, res), (ref_ok, ref) = ours, numpys
    if not workers_valid(workers):
        assert not ok and isinstance(res, (ValueError, TypeError)), f"workers={workers!r}: {res!r}"
        return
    if ref_ok:
        assert ok, f"{func} refused what numpy computes: {res!r}"
        assert_same_result(res, ref, inp=inp)
    else:
        # the same exception as numpy's (numpy may raise ZeroDivisionError, for one)
        assert not ok, f"{func} computed what numpy refuses ({ref!r}): {res!r}"
        assert type(res) is type(ref), f"numpy raised {ref!r}, mmarray {res!r}"
    if not ok and not isinstance(res, ALLOWED["stats"]) and type(res) is not type(ref):
        raise res


@given(
    func=st.sampled_from(STATS),
    inp=stat_inputs(),
    q=q_st,
    axis=axes_st,
    method=st.sampled_from(METHODS),
    keepdims=st.sampled_from([False, True, False]),
    overwrite=st.booleans(),
    workers=workers_st,
    use_out=st.sampled_from([False, False, False, True]),
    weights=st.sampled_from([False] * 9 + [True]),
    progress=st.sampled_from([False, False, True]),
)
def t_stats(func, inp, q, axis, method, keepdims, overwrite, workers, use_out, weights, progress):
    count("stats")
    a, form = inp
    quant = func not in ("median", "nanmedian")
    if quant and "percentile" in func and isinstance(q, (int, float, np.ndarray, list)):
        with contextlib.suppress(Exception):
            q = np.multiply(q, 100) if not isinstance(q, (bool, complex)) else q
    args: tuple[Any, ...] = (a, q) if quant else (a,)
    kw: dict[str, Any] = {"axis": axis, "keepdims": keepdims, "overwrite_input": overwrite}
    if quant:
        kw["method"] = method
        if weights:
            kw["method"] = "inverted_cdf"
            kw["weights"] = np.ones(np.shape(a))
    before = np.array(a, copy=True) if isinstance(a, np.ndarray) else None
    seen: list[float] = []
    pkw: dict[str, Any] = {"workers": workers}
    if progress:
        pkw["progress"] = seen.append
    ok, res, ref_ok, ref = run_both(func, args, kw, pkw, seen, use_out)
    if before is not None:
        assert np.array(a, copy=True).tobytes() == before.tobytes(), "the input was modified"
    assert all(0.0 <= f <= 1.0 for f in seen) and seen == sorted(seen), seen
    check_stat_outcome(func, workers, (ok, res), (ref_ok, ref), a)


# ---- median_estimate vs a model ----------------------------------------------------------


def median_estimate_model(a: Any, chunk: Any, workers: Any) -> Any:
    """The median of the chunks' medians, each chunk as many whole rows as fit."""
    if not workers_valid(workers):
        raise ValueError("workers")
    arr = np.asanyarray(a)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.size == 0:
        return np.median(arr)
    step = 1 << 22 if chunk is None else operator.index(chunk)
    if step < 1:
        raise ValueError("chunk")
    per_row = max(1, arr.size // max(1, arr.shape[0]))
    rows = max(1, step // per_row)
    full = arr.shape[0] // rows  # whole chunks: numpy's median along an axis
    meds = []
    if full:
        blocks = arr[: full * rows].reshape((full, rows) + arr.shape[1:])
        meds = list(np.median(blocks, axis=tuple(range(1, blocks.ndim))))
    meds += [np.median(arr[i : i + rows]) for i in range(full * rows, arr.shape[0], rows)]
    return np.median(np.array(meds))


@given(
    inp=stat_inputs(),
    chunk=st.one_of(st.none(), st.integers(1, 40), st.sampled_from([0, -1, 2**70, 1.5, "3"])),
    workers=workers_st,
)
def t_median_estimate(inp, chunk, workers):
    count("median_estimate")
    a, form = inp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ok, res = attempt(
            "median_estimate", lambda: mmarray.median_estimate(a, chunk=chunk, workers=workers)
        )
        ref_ok, ref = numpy_outcome(lambda: median_estimate_model(a, chunk, workers))
    if ref_ok:
        assert ok, f"median_estimate refused: {res!r}"
        assert_same_result(res, ref, inp=a)
    else:
        assert not ok, f"median_estimate computed what the model refuses ({ref!r})"
