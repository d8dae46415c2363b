"""Exact parallel median and quantiles over (mapped) arrays.

The C kernels (``mmarray._core.select``) find the values at the ranks numpy
needs, streaming over the array in place: one histogram pass for 8- and 16-bit
types, radix selection for 32- and 64-bit ones, threads over fixed chunks, memory
that does not grow with the array. This module does what numpy does around its
``partition`` call: it computes the ranks with numpy's own index arithmetic and
applies numpy's interpolation formulas to a small array holding the selected
values, so results (values, dtypes, shapes, warnings) match numpy's. What the
kernels do not handle (complex, object, byte-swapped data, weights, array
subclasses, empty input) goes to numpy itself.
"""

from __future__ import annotations

import math
import operator
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple
from numpy.typing import ArrayLike

from . import _core
from ._api import region as _region_of
from ._memmap import memmap as _mm_memmap

__all__ = [
    "median",
    "nanmedian",
    "quantile",
    "nanquantile",
    "percentile",
    "nanpercentile",
    "median_estimate",
]

Axis = int | Sequence[int] | None
Progress = bool | Callable[[float], Any]

_numpy: Any = np  # untyped handle for the fallbacks to numpy
_PROGRESS_MIN = 1 << 24  # elements below which no progress bar is drawn
_NANMEDIAN_SMALL = 600  # numpy's nanmedian switches to masked arrays below this lane length


# ---- numpy's index arithmetic (numpy/lib/_function_base_impl.py, restated) ----------


def _gamma_mask(shape: Any, default: Any, conditioned: Any, where: Any) -> np.ndarray:
    out = np.full(shape, default)
    np.copyto(out, conditioned, where=where, casting="unsafe")
    return out


def _to_boundaries(index: Any, cond: Callable[[Any, Any], Any]) -> np.ndarray:
    lower = np.floor(index)
    upper = lower + 1
    gamma = index - lower
    res = _gamma_mask(index.shape, upper, lower, cond(gamma, index)).astype(np.intp)
    res[res < 0] = 0
    return res


def _hf_index(n: int, q: Any, alpha: float, beta: float) -> Any:
    return n * q + (alpha + q * (1 - alpha - beta)) - 1


def _vi_inverted_cdf(n: int, q: Any) -> Any:
    return _to_boundaries(n * q - 1, lambda g, _: g == 0)


def _vi_closest(n: int, q: Any) -> Any:
    return _to_boundaries(n * q - 1 - 0.5, lambda g, i: (g == 0) & (np.floor(i) % 2 == 1))


def _vi_midpoint(n: int, q: Any) -> Any:
    return 0.5 * (np.floor((n - 1) * q) + np.ceil((n - 1) * q))


# method -> (virtual index, gamma fix or None for the discrete methods)
_METHODS: dict[str, tuple[Callable[[int, Any], Any], Callable[[Any, Any], Any] | None]] = {
    "inverted_cdf": (_vi_inverted_cdf, None),
    "averaged_inverted_cdf": (
        lambda n, q: n * q - 1,
        lambda g, _: _gamma_mask(g.shape, 1.0, 0.5, g == 0),
    ),
    "closest_observation": (_vi_closest, None),
    "interpolated_inverted_cdf": (lambda n, q: _hf_index(n, q, 0, 1), lambda g, _: g),
    "hazen": (lambda n, q: _hf_index(n, q, 0.5, 0.5), lambda g, _: g),
    "weibull": (lambda n, q: _hf_index(n, q, 0, 0), lambda g, _: g),
    "linear": (lambda n, q: (n - 1) * q, lambda g, _: g),
    "median_unbiased": (lambda n, q: _hf_index(n, q, 1 / 3.0, 1 / 3.0), lambda g, _: g),
    "normal_unbiased": (lambda n, q: _hf_index(n, q, 3 / 8.0, 3 / 8.0), lambda g, _: g),
    "lower": (lambda n, q: np.floor((n - 1) * q).astype(np.intp), None),
    "higher": (lambda n, q: np.ceil((n - 1) * q).astype(np.intp), None),
    "midpoint": (_vi_midpoint, lambda g, i: _gamma_mask(g.shape, 0.5, 0.0, i % 1 == 0)),
    "nearest": (lambda n, q: np.around((n - 1) * q).astype(np.intp), None),
}


def _as_array(x: Any) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else np.asarray(x)


class _Plan:
    """The ranks one lane length needs for a quantile, and how to combine them."""

    def __init__(self, n: int, q: np.ndarray, method: str, inexact: bool) -> None:
        get_index, fix_gamma = _METHODS[method]
        vi = np.asanyarray(get_index(n, q))
        self.n, self.vi, self.fix_gamma = n, vi, fix_gamma
        if fix_gamma is None:
            self.take = True
        else:
            self.take = method == "linear" and np.issubdtype(vi.dtype, np.integer)
        extra = [n - 1] if inexact else []
        if self.take:
            idx = vi
            need = [np.ravel(idx)]
        else:
            lower = np.array(np.floor(vi), copy=True)
            upper = np.array(np.add(lower, 1), copy=True)
            above = vi >= n - 1
            if np.any(above):
                lower[above] = -1
                upper[above] = -1
            below = vi < 0
            if np.any(below):
                lower[below] = 0
                upper[below] = 0
            if inexact:
                nans = np.isnan(vi)
                if np.any(nans):
                    lower[nans] = -1
                    upper[nans] = -1
            self.lower = lower.astype(np.intp)
            self.upper = upper.astype(np.intp)
            need = [np.ravel(self.lower), np.ravel(self.upper)]
        ranks = np.concatenate([np.asarray(x, dtype=np.int64) for x in need] + [extra])
        ranks = np.where(ranks < 0, ranks + n, ranks).astype(np.int64)
        self.ranks = np.unique(ranks)

    def pos(self, idx: Any) -> Any:
        """Rows of the selected values that hold numpy's indexes idx."""
        idx = np.where(np.asarray(idx) < 0, np.asarray(idx) + self.n, idx)
        return np.searchsorted(self.ranks, idx)

    def int_overflow(self, P: np.ndarray) -> bool:
        """Whether numpy's ``b - a`` of two integer scalars would overflow in some lane."""
        if self.take or P.dtype.kind not in "iu":
            return False
        a, b = P[self.pos(self.lower)], P[self.pos(self.upper)]
        if P.dtype.kind == "u":
            return bool(np.any(b < a))
        r = np.subtract(b, a)
        return bool(np.any(((b ^ a) & (b ^ r)) < 0))

    def finish(self, P: np.ndarray, out: np.ndarray | None, weak_q: bool, inexact: bool) -> Any:
        """numpy's quantile from the selected values P (one row per rank of self.ranks)."""
        if self.take:
            index = self.vi
            p = self.pos(index)
            if np.ndim(index) == 0:
                p = np.intp(p)
            result = np.take(P, p, axis=0, out=out)
            nans: Any = np.isnan(P[-1]) if inexact else np.array(False, dtype=bool)
        else:
            plo, phi = self.pos(self.lower), self.pos(self.upper)
            if np.ndim(self.lower) == 0:
                plo, phi = np.intp(plo), np.intp(phi)
            previous = P[plo]
            following = P[phi]
            gamma = np.asanyarray(self.vi - self.lower)
            assert self.fix_gamma is not None
            gamma = self.fix_gamma(gamma, self.vi)
            gamma = np.asanyarray(gamma, dtype=self.vi.dtype)
            if weak_q:
                gamma = float(gamma)
            else:
                gamma = gamma.reshape(self.vi.shape + (1,) * (P.ndim - 1))
            result = _lerp(previous, following, gamma, out=out)
            nans = np.isnan(P[-1]) if inexact else None
        if np.any(nans):
            if result.ndim == 0 and out is None:
                result = P[-1]
            else:
                np.copyto(result, P[-1, ...], where=nans)
        return result


def _lerp(a: Any, b: Any, t: Any, out: np.ndarray | None = None) -> Any:
    diff = b - a
    if out is None:
        res = _as_array(np.add(a, diff * t))
    else:
        res = np.add(a, diff * t, out=out)
    np.subtract(b, diff * (1 - t), out=res, where=t >= 0.5, casting="unsafe", dtype=type(res.dtype))
    if res.ndim == 0 and out is None:
        res = res[()]
    return res


# ---- input handling -------------------------------------------------------------------


def _workers(workers: int | None) -> int:
    """The number of threads for ``workers=``: validated (an int, at least 1) on every
    path, numpy's fallbacks included, and capped at the kernels' ``MAX_WORKERS``."""
    if workers is None:
        try:
            return min(max(1, len(os.sched_getaffinity(0))), _core.MAX_WORKERS)
        except (AttributeError, OSError):  # pragma: no cover - non-Linux
            return min(os.cpu_count() or 1, _core.MAX_WORKERS)
    w = operator.index(workers)
    if w < 1:
        raise ValueError(f"workers must be at least 1, got {w}")
    return min(w, _core.MAX_WORKERS)


def _fast_array(a: Any) -> np.ndarray | None:
    """a as a plain ndarray view if the kernels handle it, else None (numpy's turn)."""
    arr = np.asanyarray(a)
    if type(arr) is not np.ndarray:
        if not isinstance(arr, (np.memmap, _mm_memmap)):
            return None
        arr = arr.view(np.ndarray)
    dt = arr.dtype
    if arr.size == 0 or not dt.isnative or dt.kind not in "biuf":
        return None
    if dt.kind == "f" and dt.itemsize not in (2, 4, 8):
        return None
    return arr


def _lanes(arr: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...], int]:
    """A view of arr: kept axes first, then the reduced axes merged where the strides
    allow (order inside a lane does not matter). Returns (view, outer shape, lane axes)."""
    keep = [i for i in range(arr.ndim) if i not in axes]
    x = arr
    for ax in axes:  # flipping a reduced axis changes no order statistic
        if x.strides[ax] < 0:
            x = np.flip(x, ax)
    red = sorted((ax for ax in axes if x.shape[ax] != 1), key=lambda ax: -x.strides[ax])
    dims: list[list[int]] = []
    for ax in red:
        size, stride = x.shape[ax], x.strides[ax]
        if dims and dims[-1][1] == stride * size:
            dims[-1] = [dims[-1][0] * size, stride]
        else:
            dims.append([size, stride])
    if not dims:
        dims = [[1, x.itemsize]]
    outer = tuple(x.shape[i] for i in keep)
    shape = outer + tuple(d[0] for d in dims)
    strides = tuple(x.strides[i] for i in keep) + tuple(d[1] for d in dims)
    view = np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, writeable=False)
    return view, outer, len(dims)


class _Reporter:
    """Turns the kernels' progress fractions into a tqdm bar or calls to a callable."""

    def __init__(self, progress: Progress, size: int) -> None:
        self.fn: Callable[[float], Any] | None = None
        self.bar: Any = None
        self.last = 0.0
        self.lo, self.hi = 0.0, 1.0
        if callable(progress):
            self.fn = progress
        elif progress and size >= _PROGRESS_MIN:
            self.fn = self._bar

    def _bar(self, frac: float) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            fmt = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}"
            self.bar = tqdm(total=1000, desc="mmarray", leave=False, bar_format=fmt)
        self.bar.n = int(frac * 1000)
        self.bar.refresh()

    def span(self, lo: float, hi: float) -> Callable[[float], Any] | None:
        """A callback for a stage that covers [lo, hi] of the whole."""
        if self.fn is None:
            return None
        self.lo, self.hi = lo, hi
        return self

    def __call__(self, frac: float) -> None:
        f = self.lo + (self.hi - self.lo) * min(max(frac, 0.0), 1.0)
        if f >= self.last and self.fn is not None:
            self.last = f
            self.fn(f)

    def finish(self) -> None:
        """Reports 1.0 once the result is ready."""
        if self.fn is not None and self.last < 1.0:
            self.last = 1.0
            self.fn(1.0)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _select(
    x: np.ndarray, r: int, ranks: np.ndarray, workers: int, progress: Any, reg: Any
) -> np.ndarray:
    """The kernels' values at ranks; reg (the Region under x, or None) is named in the
    OSError a SIGBUS (a file truncated under its mapping) turns into."""
    ranks = np.ascontiguousarray(ranks, dtype=np.int64)
    return _core.select(x, r, ranks, workers, progress, region=reg)


def _reduce(
    arr: np.ndarray,
    axis: Axis,
    out: np.ndarray | None,
    keepdims: bool,
    func: Callable[[np.ndarray, tuple[int, ...], np.ndarray | None], Any],
) -> Any:
    """numpy's _ureduce: axis normalisation, keepdims and out around func."""
    nd = arr.ndim
    inner_out = out
    if axis is not None:
        axes = normalize_axis_tuple(axis, nd)
        if keepdims and out is not None:
            inner_out = out[(Ellipsis,) + tuple(0 if i in axes else slice(None) for i in range(nd))]
    else:
        axes = tuple(range(nd))
        if keepdims and out is not None:
            inner_out = out[(Ellipsis,) + (0,) * nd]
    r = func(arr, axes, inner_out)
    if out is not None:
        return out
    if keepdims:
        if axis is None:
            index_r: tuple[Any, ...] = (np.newaxis,) * nd
        else:
            index_r = tuple(np.newaxis if i in axes else slice(None) for i in range(nd))
        r = r[(Ellipsis,) + index_r]
    return r


def _nan_counts(
    x: np.ndarray, r: int, outer: tuple[int, ...], workers: int, rep: _Reporter, reg: Any
) -> np.ndarray:
    if x.dtype.kind != "f":
        return np.zeros(outer, dtype=np.intp)
    return _core.count_nan(x, r, workers, rep.span(0.0, 0.3), region=reg).reshape(outer)


def _warn_all_nan(count: int) -> None:
    for _ in range(count):
        warnings.warn("All-NaN slice encountered", RuntimeWarning, stacklevel=4)


# ---- median -------------------------------------------------------------------------


def _median_kernel(
    arr: np.ndarray, axes: tuple[int, ...], out: np.ndarray | None, workers: int, rep: _Reporter
) -> Any:
    x, outer, r = _lanes(arr, axes)
    reg = _region_of(arr)
    n = math.prod(x.shape[len(outer) :])
    inexact = arr.dtype.kind == "f"
    mid = [n // 2 - 1, n // 2] if n % 2 == 0 else [(n - 1) // 2]
    ranks = sorted(set(mid + ([n - 1] if inexact else [])))
    V = _select(x, r, np.array([ranks]), workers, rep.span(0.0, 1.0), reg)
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


def median(
    a: ArrayLike,
    axis: Axis = None,
    out: np.ndarray | None = None,
    overwrite_input: bool = False,
    keepdims: bool = False,
    *,
    workers: int | None = None,
    progress: Progress = False,
) -> Any:
    """Exact median along the given axes, like `numpy.median`, computed in parallel.

    The array is never copied: the C kernels stream over it (a mapped file larger
    than RAM works) with memory that does not grow with its size.

    Parameters
    ----------
    a : array_like
        Input data: any numeric dtype, any strides, in RAM or mapped.
    axis, out, overwrite_input, keepdims
        As for `numpy.median` (``overwrite_input`` is accepted and ignored: the
        input is never modified).
    workers : int, optional
        Threads to use (at least 1, at most 256 are started); default every CPU this
        process may run on. Results do not depend on it.
    progress : bool or callable, optional
        ``True`` draws a tqdm progress bar for long reductions; a callable receives
        the fraction done (0 to 1).

    Returns
    -------
    median : ndarray or scalar
        Exactly what `numpy.median` returns: same values, dtype and shape.

    Raises
    ------
    OSError
        ``EFAULT``: the file under ``a`` is shorter than its mapping (truncated
        by another process); the message names the path and the file offset.
        The same holds for every function of this module.

    Examples
    --------
    >>> import numpy as np, mmarray
    >>> a = np.array([[10, 7, 4], [3, 2, 1]])
    >>> mmarray.median(a)
    np.float64(3.5)
    >>> mmarray.median(a, axis=0)
    array([6.5, 4.5, 2.5])
    >>> mmarray.median(a, axis=1, keepdims=True)
    array([[7.],
           [2.]])
    """
    nw = _workers(workers)
    arr = _fast_array(a)
    if arr is None:
        return _numpy.median(a, axis=axis, out=out, overwrite_input=False, keepdims=keepdims)
    rep = _Reporter(progress, arr.size)
    try:
        res = _reduce(arr, axis, out, keepdims, lambda x, ax, o: _median_kernel(x, ax, o, nw, rep))
        rep.finish()
        return res
    finally:
        rep.close()


def _nanmedian_kernel(
    arr: np.ndarray, axes: tuple[int, ...], out: np.ndarray | None, workers: int, rep: _Reporter
) -> Any:
    x, outer, r = _lanes(arr, axes)
    reg = _region_of(arr)
    n = math.prod(x.shape[len(outer) :])
    counts = _nan_counts(x, r, outer, workers, rep, reg)
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
            result: Any = arr.dtype.type(np.nan)
        else:
            ci = int(c)
            ranks = [ci // 2 - 1, ci // 2] if ci % 2 == 0 else [(ci - 1) // 2]
            V = _select(x, r, np.array([ranks]), workers, rep.span(0.3, 1.0), reg)
            result = np.mean(V.reshape(-1), axis=0)
        if out is None:
            return result
        out[...] = result
        return out
    V = _select(x, r, rows, workers, rep.span(0.3, 1.0), reg)
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
        _warn_all_nan(int(np.count_nonzero(empty)))
        result[empty] = np.nan
    if out is not None:
        out[...] = result
    return result


def nanmedian(
    a: ArrayLike,
    axis: Axis = None,
    out: np.ndarray | None = None,
    overwrite_input: bool = False,
    keepdims: bool = False,
    *,
    workers: int | None = None,
    progress: Progress = False,
) -> Any:
    """Exact median ignoring NaNs, like `numpy.nanmedian`, computed in parallel.

    Parameters and results as for `median`; all-NaN slices give NaN with a
    ``RuntimeWarning``, as in numpy.

    Examples
    --------
    >>> import numpy as np, mmarray
    >>> a = np.array([[10.0, np.nan, 4], [3, 2, 1]])
    >>> mmarray.nanmedian(a)
    np.float64(3.0)
    >>> mmarray.nanmedian(a, axis=0)
    array([6.5, 2. , 2.5])
    """
    nw = _workers(workers)
    arr = _fast_array(a)
    if arr is None:
        return _numpy.nanmedian(a, axis=axis, out=out, overwrite_input=False, keepdims=keepdims)
    rep = _Reporter(progress, arr.size)
    try:
        res = _reduce(
            arr, axis, out, keepdims, lambda x, ax, o: _nanmedian_kernel(x, ax, o, nw, rep)
        )
        rep.finish()
        return res
    finally:
        rep.close()


# ---- quantiles ----------------------------------------------------------------------


def _quantile_kernel(
    arr: np.ndarray,
    axes: tuple[int, ...],
    out: np.ndarray | None,
    q: np.ndarray,
    method: str,
    weak_q: bool,
    workers: int,
    rep: _Reporter,
) -> Any:
    x, outer, r = _lanes(arr, axes)
    reg = _region_of(arr)
    n = math.prod(x.shape[len(outer) :])
    inexact = arr.dtype.kind == "f"
    plan = _Plan(n, q, method, inexact)
    V = _select(x, r, plan.ranks[None, :], workers, rep.span(0.0, 1.0), reg)
    P = np.moveaxis(V.reshape(outer + (len(plan.ranks),)), -1, 0)
    return plan.finish(P, out, weak_q, inexact)


def _nanquantile_kernel(
    arr: np.ndarray,
    axes: tuple[int, ...],
    out: np.ndarray | None,
    q: np.ndarray,
    method: str,
    weak_q: bool,
    workers: int,
    rep: _Reporter,
) -> Any:
    x, outer, r = _lanes(arr, axes)
    reg = _region_of(arr)
    n = math.prod(x.shape[len(outer) :])
    inexact = arr.dtype.kind == "f"
    counts = (n - _nan_counts(x, r, outer, workers, rep, reg)).reshape(-1)
    if not outer:
        c = int(counts[0])
        if c == 0:
            _warn_all_nan(1)
            result: Any = np.full(q.shape, np.nan, dtype=arr.dtype)[()]
        else:
            plan = _Plan(c, q, method, inexact)
            V = _select(x, r, plan.ranks[None, :], workers, rep.span(0.3, 1.0), reg)
            result = plan.finish(V.reshape(-1), None, weak_q, inexact)
        if out is not None:
            out[...] = result
            return out
        return result
    # numpy applies the 1-d nanquantile lane by lane: group the lanes by their count
    L = counts.size
    groups = {int(c): np.flatnonzero(counts == c) for c in np.unique(counts)}
    plans = {c: _Plan(c, q, method, inexact) for c in groups if c > 0}
    width = max([len(p.ranks) for p in plans.values()] + [1])
    rows = np.zeros((L, width), dtype=np.int64)
    for c, lanes in groups.items():
        if c > 0:
            rk = plans[c].ranks
            rows[lanes, : len(rk)] = rk
            if len(rk):  # no quantiles (q=[]) of integers: no ranks at all
                rows[lanes, len(rk) :] = rk[-1]
    V = _select(x, r, rows, workers, rep.span(0.3, 1.0), reg)
    parts: dict[int, Any] = {}
    for c, lanes in groups.items():
        if c == 0:
            _warn_all_nan(lanes.size)
            parts[c] = np.full(q.shape + (lanes.size,), np.nan, dtype=arr.dtype)
        else:
            P = V[lanes, : len(plans[c].ranks)].T
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                parts[c] = _as_array(plans[c].finish(P, None, weak_q, inexact))
            if q.ndim == 0 and (caught or plans[c].int_overflow(P)):
                # numpy works on one lane at a time, with scalars: their warnings differ
                parts[c] = np.array(
                    [plans[c].finish(P[:, i], None, weak_q, inexact) for i in range(lanes.size)]
                )
            else:
                for w in caught:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    first = int(counts[0])
    buf = np.empty(q.shape + (L,), dtype=parts[first].dtype)
    for c, lanes in groups.items():
        buf[..., lanes] = parts[c]
    result = buf.reshape(q.shape + outer)
    if out is not None:
        out[...] = result
        return out
    return result


def _q_ok(q: np.ndarray) -> bool:
    if q.dtype.kind not in "iuf" or q.ndim > 2:
        return False
    if q.size == 0:  # numpy's own check of an empty q fails unless q is 1-d: its error
        return q.ndim == 1
    with np.errstate(invalid="ignore"):
        return bool(np.min(q) >= 0 and np.max(q) <= 1)


def _nan_q_split(name: str, qa: np.ndarray, weights: Any) -> bool:
    """Whether numpy's nanquantile/nanpercentile may mangle this result's shape.

    For a 2-d q and a tuple of axes other than one axis (``axis=()`` included), numpy
    (up to at least 2.4) puts q's last axis at the end of the result instead of beside
    its first (numpy issue 25731 was fixed for a single axis only); quantile, numpy's
    weighted path and mmarray's kernels put all of q's axes first. mmarray keeps that
    layout on its numpy fallbacks too, by asking numpy for the raveled q, whatever the
    axis (the answer is the same where numpy is right).
    """
    return name.startswith("nan") and weights is None and qa.ndim == 2 and qa.size > 0


def _quantile_entry(
    name: str,
    a: ArrayLike,
    q: Any,
    qa: np.ndarray,
    axis: Axis,
    out: np.ndarray | None,
    overwrite_input: bool,
    method: str,
    keepdims: bool,
    weights: ArrayLike | None,
    workers: int | None,
    progress: Progress,
) -> Any:
    nw = _workers(workers)
    arr = _fast_array(a)
    if arr is None or weights is not None or method not in _METHODS or not _q_ok(qa):
        if _nan_q_split(name, qa, weights) and np.size(a) > 0:  # empty: nanmean's answer
            # q's axes first, as quantile and the kernels put them (see _nan_q_split);
            # the caller's q (qa holds fractions where q holds percentages)
            qs = np.asanyarray(q)
            res = getattr(_numpy, name)(
                a, qs.ravel(), axis=axis, method=method, keepdims=keepdims
            )  # fmt: skip
            res = res.reshape(qs.shape + res.shape[1:])
            if out is None:
                return res
            out[...] = res
            return out
        return getattr(_numpy, name)(
            a,
            q,
            axis=axis,
            out=out,
            overwrite_input=False,  # never modify the input, even in numpy's fallback
            method=method,
            keepdims=keepdims,
            weights=weights,
        )
    weak_q = type(q) in (int, float)
    rep = _Reporter(progress, arr.size)
    kernel = _nanquantile_kernel if name.startswith("nan") else _quantile_kernel
    try:
        res = _reduce(
            arr,
            axis,
            out,
            keepdims,
            lambda x, ax, o: kernel(x, ax, o, qa, method, weak_q, nw, rep),
        )
        rep.finish()
        return res
    finally:
        rep.close()


def quantile(
    a: ArrayLike,
    q: ArrayLike,
    axis: Axis = None,
    out: np.ndarray | None = None,
    overwrite_input: bool = False,
    method: str = "linear",
    keepdims: bool = False,
    *,
    weights: ArrayLike | None = None,
    workers: int | None = None,
    progress: Progress = False,
) -> Any:
    """Exact q-th quantiles, like `numpy.quantile` (all 13 methods), in parallel.

    All requested quantiles come from the same passes over the data. ``weights``
    (numpy's ``inverted_cdf`` only) are handled by numpy itself.

    Examples
    --------
    >>> import numpy as np, mmarray
    >>> a = np.array([[10, 7, 4], [3, 2, 1]])
    >>> mmarray.quantile(a, 0.5)
    np.float64(3.5)
    >>> mmarray.quantile(a, [0.25, 0.75], axis=1)
    array([[5.5, 1.5],
           [8.5, 2.5]])
    >>> mmarray.quantile(a, 0.5, method="lower")
    np.int64(3)
    """
    return _quantile_entry(
        "quantile", a, q, np.asanyarray(q), axis, out, overwrite_input, method, keepdims,
        weights, workers, progress,
    )  # fmt: skip


def nanquantile(
    a: ArrayLike,
    q: ArrayLike,
    axis: Axis = None,
    out: np.ndarray | None = None,
    overwrite_input: bool = False,
    method: str = "linear",
    keepdims: bool = False,
    *,
    weights: ArrayLike | None = None,
    workers: int | None = None,
    progress: Progress = False,
) -> Any:
    """Exact quantiles ignoring NaNs, like `numpy.nanquantile`, in parallel.

    Examples
    --------
    >>> import numpy as np, mmarray
    >>> mmarray.nanquantile(np.array([1.0, np.nan, 3.0, 2.0]), [0.0, 0.5])
    array([1., 2.])
    """
    return _quantile_entry(
        "nanquantile", a, q, np.asanyarray(q), axis, out, overwrite_input, method, keepdims,
        weights, workers, progress,
    )  # fmt: skip


def _percent(q: Any) -> np.ndarray:
    return _as_array(np.true_divide(q, 100))


def percentile(
    a: ArrayLike,
    q: ArrayLike,
    axis: Axis = None,
    out: np.ndarray | None = None,
    overwrite_input: bool = False,
    method: str = "linear",
    keepdims: bool = False,
    *,
    weights: ArrayLike | None = None,
    workers: int | None = None,
    progress: Progress = False,
) -> Any:
    """Exact q-th percentiles, like `numpy.percentile`, in parallel.

    Examples
    --------
    >>> import numpy as np, mmarray
    >>> mmarray.percentile(np.arange(101), [10, 90])
    array([10., 90.])
    """
    if np.asanyarray(q).dtype.kind not in "iuf":
        _workers(workers)
        return _numpy.percentile(a, q, axis, out, False, method, keepdims, weights=weights)
    return _quantile_entry(
        "percentile", a, q, _percent(q), axis, out, overwrite_input, method, keepdims,
        weights, workers, progress,
    )  # fmt: skip


def nanpercentile(
    a: ArrayLike,
    q: ArrayLike,
    axis: Axis = None,
    out: np.ndarray | None = None,
    overwrite_input: bool = False,
    method: str = "linear",
    keepdims: bool = False,
    *,
    weights: ArrayLike | None = None,
    workers: int | None = None,
    progress: Progress = False,
) -> Any:
    """Exact percentiles ignoring NaNs, like `numpy.nanpercentile`, in parallel.

    Examples
    --------
    >>> import numpy as np, mmarray
    >>> mmarray.nanpercentile(np.array([1.0, np.nan, 3.0]), 50)
    np.float64(2.0)
    """
    if np.asanyarray(q).dtype.kind not in "iuf":
        _workers(workers)
        return _numpy.nanpercentile(a, q, axis, out, False, method, keepdims, weights=weights)
    return _quantile_entry(
        "nanpercentile", a, q, _percent(q), axis, out, overwrite_input, method, keepdims,
        weights, workers, progress,
    )  # fmt: skip


# ---- the estimate ----------------------------------------------------------------------


def median_estimate(a: ArrayLike, *, chunk: int | None = None, workers: int | None = None) -> Any:
    """The median of per-chunk medians: a fast estimate, not the exact median.

    The array is cut along axis 0 into chunks of about ``chunk`` elements (default:
    4 Mi elements); the chunks' exact medians come from one reduction over the
    chunks as lanes, in threads (the kernels release the GIL), with no processes,
    no pickling and no copy; the result is the median of those medians.

    Examples
    --------
    >>> import numpy as np, mmarray
    >>> a = np.arange(1000.0)
    >>> float(mmarray.median_estimate(a, chunk=100))
    499.5
    """
    nw = _workers(workers)
    arr = np.asanyarray(a)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.size == 0:
        return np.median(arr)
    per_row = max(1, arr.size // max(1, arr.shape[0]))
    step = 1 << 22 if chunk is None else operator.index(chunk)
    if step < 1:
        raise ValueError(f"chunk must be at least 1, got {step}")
    rows = max(1, step // per_row)
    full = arr.shape[0] // rows
    meds = []
    if full:
        # the whole chunks as lanes of one reduction (a view, no copy): one kernel call,
        # parallel across chunks when they are short and within a chunk when they are long
        blocks = arr[: full * rows].reshape((full, rows) + arr.shape[1:])
        meds.append(np.ravel(median(blocks, axis=tuple(range(1, blocks.ndim)), workers=nw)))
    if full * rows < arr.shape[0]:
        meds.append(np.ravel(median(arr[full * rows :], workers=nw)))
    return median(np.concatenate(meds), workers=1)
