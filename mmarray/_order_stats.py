"""The order statistics over lanes: the ranks each one selects, and numpy's answer
from the selected values.

One kernel per statistic (`median`, `nanmedian`, `quantile`, `nanquantile`), each
called by `mmarray._harness.run` with the reduced axes of an array the C kernels
take; `REDUCTIONS` pairs each with its numpy fallback.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from . import _fallback
from ._harness import LaneProvider, Lanes, Reduction, Reporter, lanes_of
from ._quantile_method import Plan, Request, as_array

__all__ = ["MEDIAN", "NANMEDIAN", "NANQUANTILE", "QUANTILE"]

_NANMEDIAN_SMALL = 600  # numpy's nanmedian switches to masked arrays below this lane length


def _warn_all_nan(count: int) -> None:
    # stacklevel 3: the kernel's caller, the kernel call in _harness.run
    for _ in range(count):
        warnings.warn("All-NaN slice encountered", RuntimeWarning, stacklevel=3)


def _own_nans(src: Lanes, V: np.ndarray) -> np.ndarray:
    """V (the values at the ranks, one row per lane, rank ``n - 1`` last) with the NaN
    in its last column, where a lane holds NaNs, replaced by one of that lane's own: numpy's
    median and quantile return the lane's last value after a partition, a NaN of the lane
    (which one, where their bits differ, is its partition's choice), not np.nan."""
    if V.dtype.kind == "f" and V.shape[1]:
        which = np.flatnonzero(np.isnan(V[:, -1]))
        if which.size:
            V[which, -1] = src.nans(which, False)
    return V


def _last_nan(src: Lanes) -> Any:
    """numpy's nanmedian of the one all-NaN lane (axis=None or every axis): its last
    value (``arr1d[-1]``), bits and all, a numpy scalar."""
    return src.nans(np.zeros(1, np.int64), True)[0]


def _unpack(request: Request) -> tuple[np.ndarray, str, bool]:
    """The fractions, the method and whether q was a Python scalar (numpy's weak q)."""
    q = request.fractions
    assert q is not None  # quantile_accepted turned None away
    return q, request.method, type(request.q) in (int, float)


def median(
    arr: np.ndarray | LaneProvider,
    axes: tuple[int, ...],
    out: np.ndarray | None,
    workers: int,
    rep: Reporter,
    _: None,
) -> Any:
    """`numpy.median` of arr over axes: the middle ranks (and the last, for NaN)."""
    src = lanes_of(arr, axes, workers)
    outer, n = src.outer, src.n
    inexact = arr.dtype.kind == "f"
    mid = [n // 2 - 1, n // 2] if n % 2 == 0 else [(n - 1) // 2]
    ranks = sorted(set(mid + ([n - 1] if inexact else [])))
    V = _own_nans(src, src.select(np.array([ranks]), rep.span(0.0, 1.0)))
    P = np.moveaxis(V.reshape(outer + (len(ranks),)), -1, 0)
    rout = np.mean(P[[ranks.index(k) for k in mid]], axis=0, out=out)
    if inexact:
        last = P[-1]
        isnan = np.isnan(last)
        if isnan.any():
            if isinstance(rout, np.generic):
                return last[()]
            np.copyto(rout, last, where=isnan)
    return rout


def nanmedian(
    arr: np.ndarray | LaneProvider,
    axes: tuple[int, ...],
    out: np.ndarray | None,
    workers: int,
    rep: Reporter,
    _: None,
) -> Any:
    """`numpy.nanmedian` of arr over axes: NaNs counted first, then the middle ranks
    of each lane's other values, combined as numpy does for that lane length."""
    src = lanes_of(arr, axes, workers)
    outer, n = src.outer, src.n
    counts = src.nan_counts(rep)
    c = n - counts
    h = c // 2
    odd = c % 2 == 1
    lo = np.where(odd, h, h - 1)
    empty = c == 0
    rows = np.stack([np.where(empty, 0, lo), np.where(empty, 0, h)], axis=-1).reshape(-1, 2)
    if not outer:
        # numpy: the median of the non-NaN values, or the last element if there are none
        if empty:
            _warn_all_nan(1)
            result: Any = _last_nan(src)
        else:
            ci = int(c)
            ranks = [ci // 2 - 1, ci // 2] if ci % 2 == 0 else [(ci - 1) // 2]
            V = src.select(np.array([ranks]), rep.span(0.3, 1.0))
            result = np.mean(V.reshape(-1), axis=0)
        if out is None:
            return result
        out[...] = result
        return out
    V = src.select(rows, rep.span(0.3, 1.0))
    P = np.moveaxis(V.reshape(outer + (2,)), -1, 0)
    if n < _NANMEDIAN_SMALL:
        # numpy sorts a masked array and averages the two middle values
        mask = np.broadcast_to(empty, P.shape).copy()
        lh = np.ma.masked_array(P, mask=mask)
        if arr.dtype.kind == "f":
            s = np.ma.sum(lh, axis=0)
            np.true_divide(s.data, 2.0, casting="unsafe", out=s.data)
        else:
            s = np.ma.mean(lh, axis=0)
        _warn_all_nan(int(np.count_nonzero(np.ma.getmaskarray(s))))
        filled = s.filled(np.nan)
        if out is not None:
            out[...] = filled
            return out
        return filled
    # numpy applies the 1-d nanmedian lane by lane
    even = ~odd & ~empty
    res_dtype = arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float64)
    if empty.flat[0]:
        res_dtype = arr.dtype
    result = np.empty(outer, dtype=res_dtype)
    if even.any():
        result[even] = np.mean(P[:, even], axis=0)
    if odd.any():
        result[odd] = np.mean(P[1:2, odd], axis=0)
    if empty.any():
        # numpy's _nanmedian1d: an all-NaN lane's last value, bits and all
        _warn_all_nan(int(np.count_nonzero(empty)))
        result.reshape(-1)[np.flatnonzero(empty)] = src.nans(np.flatnonzero(empty), True)
    if out is not None:
        out[...] = result
    return result


def quantile(
    arr: np.ndarray | LaneProvider,
    axes: tuple[int, ...],
    out: np.ndarray | None,
    workers: int,
    rep: Reporter,
    request: Request,
) -> Any:
    """numpy's quantile of arr over axes: the ranks of `Plan`, one pass for all q."""
    q, method, weak_q = _unpack(request)
    src = lanes_of(arr, axes, workers)
    outer, n = src.outer, src.n
    inexact = arr.dtype.kind == "f"
    plan = Plan(n, q, method, inexact)
    V = _own_nans(src, src.select(plan.ranks[None, :], rep.span(0.0, 1.0)))
    P = np.moveaxis(V.reshape(outer + (len(plan.ranks),)), -1, 0)
    return plan.finish(P, out, weak_q, inexact)


def nanquantile(
    arr: np.ndarray | LaneProvider,
    axes: tuple[int, ...],
    out: np.ndarray | None,
    workers: int,
    rep: Reporter,
    request: Request,
) -> Any:
    """numpy's nanquantile of arr over axes: NaNs counted first, then each lane's
    ranks from the `Plan` of its count, lanes grouped by count."""
    q, method, weak_q = _unpack(request)
    src = lanes_of(arr, axes, workers)
    outer, n = src.outer, src.n
    inexact = arr.dtype.kind == "f"
    counts = (n - src.nan_counts(rep)).reshape(-1)
    if not outer:
        c = int(counts[0])
        if c == 0:
            _warn_all_nan(1)
            result: Any = np.full(q.shape, np.nan, dtype=arr.dtype)[()]
        else:
            plan = Plan(c, q, method, inexact)
            V = src.select(plan.ranks[None, :], rep.span(0.3, 1.0))
            result = plan.finish(V.reshape(-1), None, weak_q, inexact)
        if out is not None:
            out[...] = result
            return out
        return result
    # numpy applies the 1-d nanquantile lane by lane: group the lanes by their count
    L = counts.size
    groups = {int(c): np.flatnonzero(counts == c) for c in np.unique(counts)}
    plans = {c: Plan(c, q, method, inexact) for c in groups if c > 0}
    width = max([len(p.ranks) for p in plans.values()] + [1])
    rows = np.zeros((L, width), dtype=np.int64)
    for c, members in groups.items():
        if c > 0:
            rk = plans[c].ranks
            rows[members, : len(rk)] = rk
            if len(rk):  # no quantiles (q=[]) of integers: no ranks at all
                rows[members, len(rk) :] = rk[-1]
    V = src.select(rows, rep.span(0.3, 1.0))
    parts: dict[int, Any] = {}
    for c, members in groups.items():
        if c == 0:
            _warn_all_nan(members.size)
            parts[c] = np.full(q.shape + (members.size,), np.nan, dtype=arr.dtype)
        else:
            P = V[members, : len(plans[c].ranks)].T
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                parts[c] = as_array(plans[c].finish(P, None, weak_q, inexact))
            if q.ndim == 0 and (caught or plans[c].int_overflow(P)):
                # numpy works on one lane at a time, with scalars: their warnings differ
                parts[c] = np.array(
                    [plans[c].finish(P[:, i], None, weak_q, inexact) for i in range(members.size)]
                )
            else:
                for w in caught:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    first = int(counts[0])
    buf = np.empty(q.shape + (L,), dtype=parts[first].dtype)
    for c, members in groups.items():
        buf[..., members] = parts[c]
    result = buf.reshape(q.shape + outer)
    if out is not None:
        out[...] = result
        return out
    return result


MEDIAN = Reduction(median, _fallback.median)
NANMEDIAN = Reduction(nanmedian, _fallback.nanmedian)
QUANTILE = Reduction(quantile, _fallback.quantile, _fallback.quantile_accepted)
NANQUANTILE = Reduction(nanquantile, _fallback.quantile, _fallback.quantile_accepted)
