"""Exact median and quantiles of dask arrays, numpy's results bit for bit.

The same statistics as ``mmarray.median`` and friends (``mmarray._order_stats``:
numpy's ranks, interpolation, NaN rules, warnings, dtypes), asking a dask array's
lanes instead of an array in memory for the values at the ranks they need
(`mmarray.dask._lanes`: per-block in-memory kernels where lanes lie within chunks,
a distributed radix selection where they span them). The result is computed (with
the current dask scheduler: a ``distributed.Client`` if one is active) and returned
as numpy returns it. What the kernels do not take (complex, object or byte-swapped
data, empty arrays, ``weights``, q that numpy refuses) is numpy's, on the gathered
array.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
from numpy.typing import ArrayLike

from mmarray._fallback import kernel_array
from mmarray._harness import Axis, Reduction, Reporter, reduce
from mmarray._order_stats import MEDIAN, NANMEDIAN, NANQUANTILE, QUANTILE
from mmarray._quantile_method import Request
from mmarray._stats import _percent

from ._lanes import BlockLanes, lanes_for
from ._radix import RadixLanes

__all__ = ["median", "nanmedian", "nanpercentile", "nanquantile", "percentile", "quantile"]


class _Provider:
    """A dask array as mmarray's kernels take it (`mmarray._harness.LaneProvider`)."""

    def __init__(self, x: da.Array, ranks_hint: int) -> None:
        self.x, self.dtype, self.ndim, self.hint = x, x.dtype, x.ndim, ranks_hint

    def lanes(self, axes: tuple[int, ...]) -> BlockLanes | RadixLanes:
        return lanes_for(self.x, axes, self.hint)


def _kernel_ready(x: da.Array) -> bool:
    return x.size > 0 and kernel_array(np.empty(1, x.dtype)) is not None


def _run(
    how: Reduction,
    a: Any,
    axis: Axis,
    out: np.ndarray | None,
    keepdims: bool,
    request: Request | None = None,
) -> Any:
    x = a if isinstance(a, da.Array) else da.asarray(a)
    accepted = request is None or how.accepts is None or how.accepts(request)
    if not accepted or not _kernel_ready(x):
        if request is not None and request.weights is not None:
            request = request._replace(weights=np.asarray(request.weights))
        return how.fallback(np.asarray(x), axis, out, keepdims, request)
    hint = 3 if request is None else 2 * max(1, np.size(request.q)) + 1
    return reduce(how, _Provider(x, hint), axis, out, keepdims, 1, Reporter(False, 0), request)


def median(
    a: ArrayLike | da.Array,
    axis: Axis = None,
    out: np.ndarray | None = None,
    overwrite_input: bool = False,
    keepdims: bool = False,
) -> Any:
    """Exact median of a dask array, like `numpy.median` (computed now).

    Parameters
    ----------
    a : dask.array.Array or array_like
        Any dask array (``from_file``, ``da.from_array``, zarr...); its chunks are read
        by the tasks, never gathered.
    axis, out, overwrite_input, keepdims
        As for `numpy.median` (``overwrite_input`` is ignored: the input is never
        modified).

    Returns
    -------
    median : ndarray or scalar
        What `numpy.median` returns for the computed array: values, dtype, shape.

    Examples
    --------
    >>> import dask.array as da, numpy as np, mmarray.dask as md
    >>> x = da.from_array(np.array([[10, 7, 4], [3, 2, 1]]), chunks=1)
    >>> md.median(x)
    np.float64(3.5)
    >>> md.median(x, axis=0)
    array([6.5, 4.5, 2.5])
    """
    return _run(MEDIAN, a, axis, out, keepdims)


def nanmedian(
    a: ArrayLike | da.Array,
    axis: Axis = None,
    out: np.ndarray | None = None,
    overwrite_input: bool = False,
    keepdims: bool = False,
) -> Any:
    """Exact median ignoring NaNs, like `numpy.nanmedian`; see `median`.

    Examples
    --------
    >>> import dask.array as da, numpy as np, mmarray.dask as md
    >>> md.nanmedian(da.from_array(np.array([1.0, np.nan, 3.0, 2.0]), chunks=2))
    np.float64(2.0)
    """
    return _run(NANMEDIAN, a, axis, out, keepdims)


def quantile(
    a: ArrayLike | da.Array,
    q: ArrayLike,
    axis: Axis = None,
    out: np.ndarray | None = None,
    overwrite_input: bool = False,
    method: str = "linear",
    keepdims: bool = False,
    *,
    weights: ArrayLike | None = None,
) -> Any:
    """Exact q-th quantiles, like `numpy.quantile` (all 13 methods); see `median`.

    All the quantiles come from the same passes. ``weights`` (numpy's
    ``inverted_cdf`` only) are numpy's, on the gathered array.

    Examples
    --------
    >>> import dask.array as da, numpy as np, mmarray.dask as md
    >>> x = da.from_array(np.arange(10), chunks=3)
    >>> md.quantile(x, [0.25, 0.5], method="lower")
    array([2, 4])
    """
    request = Request("quantile", q, np.asanyarray(q), method, weights)
    return _run(QUANTILE, a, axis, out, keepdims, request)


def nanquantile(
    a: ArrayLike | da.Array,
    q: ArrayLike,
    axis: Axis = None,
    out: np.ndarray | None = None,
    overwrite_input: bool = False,
    method: str = "linear",
    keepdims: bool = False,
    *,
    weights: ArrayLike | None = None,
) -> Any:
    """Exact quantiles ignoring NaNs, like `numpy.nanquantile`; see `quantile`.

    Examples
    --------
    >>> import dask.array as da, numpy as np, mmarray.dask as md
    >>> md.nanquantile(da.from_array(np.array([1.0, np.nan, 3.0]), chunks=1), 0.5)
    np.float64(2.0)
    """
    request = Request("nanquantile", q, np.asanyarray(q), method, weights)
    return _run(NANQUANTILE, a, axis, out, keepdims, request)


def percentile(
    a: ArrayLike | da.Array,
    q: ArrayLike,
    axis: Axis = None,
    out: np.ndarray | None = None,
    overwrite_input: bool = False,
    method: str = "linear",
    keepdims: bool = False,
    *,
    weights: ArrayLike | None = None,
) -> Any:
    """Exact q-th percentiles, like `numpy.percentile`; see `quantile`.

    Examples
    --------
    >>> import dask.array as da, numpy as np, mmarray.dask as md
    >>> md.percentile(da.from_array(np.arange(101), chunks=10), [10, 90])
    array([10., 90.])
    """
    request = Request("percentile", q, _percent(q), method, weights)
    return _run(QUANTILE, a, axis, out, keepdims, request)


def nanpercentile(
    a: ArrayLike | da.Array,
    q: ArrayLike,
    axis: Axis = None,
    out: np.ndarray | None = None,
    overwrite_input: bool = False,
    method: str = "linear",
    keepdims: bool = False,
    *,
    weights: ArrayLike | None = None,
) -> Any:
    """Exact percentiles ignoring NaNs, like `numpy.nanpercentile`; see `quantile`.

    Examples
    --------
    >>> import dask.array as da, numpy as np, mmarray.dask as md
    >>> md.nanpercentile(da.from_array(np.array([1.0, np.nan, 3.0]), chunks=2), 50)
    np.float64(2.0)
    """
    request = Request("nanpercentile", q, _percent(q), method, weights)
    return _run(NANQUANTILE, a, axis, out, keepdims, request)
