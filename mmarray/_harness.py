"""The reduction harness: one sequence from a public statistic to the C kernels.

`run` is the only way in: it checks ``workers=``, hands what the kernels cannot take
to numpy (`mmarray._fallback`), applies numpy's ``axis``/``out``/``keepdims``
handling (numpy's ``_ureduce``, `reduce`) around the statistic's kernel, and drives the
progress report. Around the kernels it offers the lanes (`lanes`: a strided view,
reduced axes last and merged), the progress fractions (`Reporter`) and the calls
into ``_core`` (`select`, `nan_counts`, `lane_nans`). A kernel asks its lanes three
questions (`Lanes`: the values at some ranks, the NaNs in each lane, the bits of some
lanes' NaNs): `MemoryLanes` answers them for an array in memory, ``mmarray.dask`` for a
dask array (`lanes_of`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

from . import _core
from ._cache import stream_mode
from ._fallback import kernel_array
from ._progress import bar_class
from ._region import region as region_of
from ._workers import kernel_workers

__all__ = [
    "Axis",
    "Lanes",
    "MemoryLanes",
    "Progress",
    "Reduction",
    "Reporter",
    "lane_nans",
    "lanes",
    "lanes_of",
    "tail",
    "nan_counts",
    "reduce",
    "run",
    "select",
]

Axis = int | Sequence[int] | None
Progress = bool | Callable[[float], Any]

_PROGRESS_MIN = 1 << 24  # elements below which no progress bar is drawn


def lanes(arr: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...], int]:
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


class Reporter:
    """Turns the kernels' progress fractions into a tqdm bar or calls to a callable.

    ``bar`` is the tqdm class `mmarray._progress.bar_class` chose for ``progress``
    (looked up before any work, so that a missing tqdm fails at once)."""

    def __init__(self, progress: Progress, size: int, bar: Any = None) -> None:
        self.fn: Callable[[float], Any] | None = None
        self.bar: Any = None
        self.bar_type = bar
        self.last = 0.0
        self.lo, self.hi = 0.0, 1.0
        if callable(progress):
            self.fn = progress
        elif bar is not None and size >= _PROGRESS_MIN:
            self.fn = self._bar

    def _bar(self, frac: float) -> None:
        if self.bar is None:
            fmt = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}"
            self.bar = self.bar_type(total=1000, desc="mmarray", leave=False, bar_format=fmt)
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
        """Closes the progress bar, if one was drawn."""
        if self.bar is not None:
            self.bar.close()


def select(
    x: np.ndarray, r: int, ranks: np.ndarray, workers: int, progress: Any, reg: Any
) -> np.ndarray:
    """The kernels' values at ranks; reg (the Region under x, or None) is named in the
    OSError a SIGBUS (a file truncated under its mapping) turns into, and a cold file
    under it is read ahead (`mmarray._cache.stream_mode`)."""
    ranks = np.ascontiguousarray(ranks, dtype=np.int64)
    return _core.select(x, r, ranks, workers, progress, region=reg, stream=stream_mode(x, r, reg))


def nan_counts(
    x: np.ndarray, r: int, outer: tuple[int, ...], workers: int, rep: Reporter, reg: Any
) -> np.ndarray:
    """The NaNs in each lane (shape ``outer``), reported as the first 30% of the work;
    zeros, with no pass over the data, for types that hold no NaN."""
    if x.dtype.kind != "f":
        return np.zeros(outer, dtype=np.intp)
    prog = rep.span(0.0, 0.3)
    mode = stream_mode(x, r, reg)
    return _core.count_nan(x, r, workers, prog, region=reg, stream=mode).reshape(outer)


def lane_nans(x: np.ndarray, r: int, which: np.ndarray, workers: int, reg: Any) -> np.ndarray:
    """A NaN of each lane which (flat lane indexes, each lane known to hold one) with its
    bits as stored: the lane's first in C order (np.nan's bits for a lane that, changed
    meanwhile, holds none)."""
    which = np.ascontiguousarray(which, dtype=np.int64)
    return _core.first_nan(x, r, which, workers, region=reg)[0]


def tail(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[slice, ...]:
    """The index of the last element of every lane: each reduced axis at its last index
    (numpy's ``a.ravel()[-1]`` for the whole array, the last value of a lane that
    ``_ureduce`` merged)."""
    return tuple(slice(n - 1, n) if i in axes else slice(None) for i, n in enumerate(shape))


class Lanes(Protocol):
    """The lanes of one reduction: ``outer`` (the kept shape; one lane per element),
    ``n`` (values per lane), and the two questions the kernels ask."""

    outer: tuple[int, ...]
    n: int

    def select(self, ranks: np.ndarray, progress: Any) -> np.ndarray:
        """The values at ``ranks`` (1 row for every lane, or one row per lane) in numpy's
        sort order (NaN last): an (L, m) array of the lanes' dtype."""
        ...

    def nan_counts(self, rep: Reporter) -> np.ndarray:
        """The NaNs in each lane, shape ``outer``."""
        ...

    def nans(self, which: np.ndarray, last: bool) -> np.ndarray:
        """One NaN of each lane which (flat indexes into ``outer``; each lane holds a
        NaN) with its bits as stored: the lane's last value (see `tail`) where last is
        true (the lanes are all NaN then), else any of its NaNs."""
        ...


class LaneProvider(Protocol):
    """What a kernel may take instead of an ndarray (``mmarray.dask``'s arrays)."""

    dtype: np.dtype[Any]
    ndim: int

    def lanes(self, axes: tuple[int, ...]) -> Lanes:
        """The lanes over the reduced ``axes``."""
        ...


class MemoryLanes:
    """The `Lanes` of an array in memory (or mapped), answered by the C kernels."""

    def __init__(self, arr: np.ndarray, axes: tuple[int, ...], workers: int) -> None:
        self.x, self.outer, self.r = lanes(arr, axes)
        self.arr, self.axes = arr, axes
        self.reg = region_of(arr)
        self.n = math.prod(self.x.shape[len(self.outer) :])
        self.workers = workers

    def select(self, ranks: np.ndarray, progress: Any) -> np.ndarray:
        """See `Lanes.select`."""
        return select(self.x, self.r, ranks, self.workers, progress, self.reg)

    def nan_counts(self, rep: Reporter) -> np.ndarray:
        """See `Lanes.nan_counts`."""
        return nan_counts(self.x, self.r, self.outer, self.workers, rep, self.reg)

    def nans(self, which: np.ndarray, last: bool) -> np.ndarray:
        """See `Lanes.nans`."""
        x, r = self.x, self.r
        if last:
            x, _, r = lanes(self.arr[tail(self.arr.shape, self.axes)], self.axes)
        return lane_nans(x, r, which, self.workers, self.reg)


def lanes_of(arr: np.ndarray | LaneProvider, axes: tuple[int, ...], workers: int) -> Lanes:
    """The `Lanes` of arr over axes: `MemoryLanes` for an ndarray, else arr's own."""
    if isinstance(arr, np.ndarray):
        return MemoryLanes(arr, axes, workers)
    return arr.lanes(axes)


class Reduction(NamedTuple):
    """One statistic, as `run` needs it.

    ``kernel(arr, axes, out, workers, reporter, params)`` computes it with the C
    kernels over the reduced ``axes`` of a kernel-ready array; ``fallback(a, axis,
    out, keepdims, params)`` hands the call to numpy; ``accepts(params)``, where
    given, says whether the kernels take the call's other parameters.
    """

    kernel: Callable[..., Any]
    fallback: Callable[..., Any]
    accepts: Callable[[Any], bool] | None = None


def run(
    how: Reduction,
    a: Any,
    axis: Axis,
    out: np.ndarray | None,
    keepdims: bool,
    workers: int | None,
    progress: Progress,
    params: Any = None,
) -> Any:
    """The statistic ``how`` of a, in C where the kernels take it, else by numpy.

    The sequence every public statistic follows: ``workers`` checked (on numpy's
    path too) and capped at ``_core.MAX_WORKERS``; tqdm looked for where
    ``progress`` asks for a bar (on numpy's path too, and for any size); the
    fallback where `kernel_array` or ``how.accepts`` turns the call away; else
    numpy's ``_ureduce`` (axis normalisation, ``keepdims`` and ``out``) around
    ``how.kernel``, with progress reported to 1.0 at the end and a progress bar
    closed on every exit.
    """
    nw = kernel_workers(workers)
    bar = bar_class(progress)
    arr = kernel_array(a)
    if arr is None or (how.accepts is not None and not how.accepts(params)):
        return how.fallback(a, axis, out, keepdims, params)
    rep = Reporter(progress, arr.size, bar)
    try:
        return reduce(how, arr, axis, out, keepdims, nw, rep, params)
    finally:
        rep.close()


def reduce(
    how: Reduction,
    arr: np.ndarray | LaneProvider,
    axis: Axis,
    out: np.ndarray | None,
    keepdims: bool,
    nw: int,
    rep: Reporter,
    params: Any = None,
) -> Any:
    """numpy's ``_ureduce`` around ``how.kernel`` (axis normalisation, ``keepdims`` and
    ``out``) for a kernel-ready arr, with progress reported to 1.0 at the end."""
    # numpy's _ureduce: axes normalised, the kernel's out a view of out's kept axes
    nd = arr.ndim
    inner_out = out
    if axis is not None:
        axes = normalize_axis_tuple(axis, nd)
        if keepdims and out is not None:
            kept = tuple(0 if i in axes else slice(None) for i in range(nd))
            inner_out = out[(Ellipsis,) + kept]
    else:
        axes = tuple(range(nd))
        if keepdims and out is not None:
            inner_out = out[(Ellipsis,) + (0,) * nd]
    r = how.kernel(arr, axes, inner_out, nw, rep, params)
    if out is not None:
        r = out
    elif keepdims:
        if axis is None:
            index_r: tuple[Any, ...] = (np.newaxis,) * nd
        else:
            index_r = tuple(np.newaxis if i in axes else slice(None) for i in range(nd))
        r = r[(Ellipsis,) + index_r]
    rep.finish()
    return r
