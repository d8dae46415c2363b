"""Exact parallel median and quantiles over (mapped) arrays: the public functions.

The C kernels (``mmarray._core.select``) find the values at the ranks numpy
needs, streaming over the array in place: one histogram pass for 8- and 16-bit
types, radix selection for 32- and 64-bit ones, threads over fixed chunks, memory
that does not grow with the array. Around them, mmarray does what numpy does around
its ``partition`` call: it computes the ranks with numpy's own index arithmetic and
applies numpy's interpolation formulas to a small array holding the selected
values, so results (values, dtypes, shapes, warnings) match numpy's. What the
kernels do not handle (complex, object, byte-swapped data, weights, array
subclasses, empty input) goes to numpy itself.

Each exact function is one call of `mmarray._harness.run` with its statistic from
`mmarray._order_stats` (`median_estimate` calls `median`); numpy's arithmetic is in
`mmarray._quantile_method`, the numpy fallbacks in `mmarray._fallback`.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _fallback
from ._harness import Axis, Progress, run
from ._order_stats import MEDIAN, NANMEDIAN, NANQUANTILE, QUANTILE
from ._quantile_method import Request, as_array
from ._workers import kernel_workers

__all__ = [
    "median",
    "nanmedian",
    "quantile",
    "nanquantile",
    "percentile",
    "nanpercentile",
    "median_estimate",
]


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
        ``True`` draws a tqdm progress bar for long reductions (a widget in
        Jupyter where ipywidgets is installed, text elsewhere); a callable
        receives the fraction done (0 to 1).

    Returns
    -------
    median : ndarray or scalar
        Exactly what `numpy.median` returns: same values, dtype and shape.

    Raises
    ------
    ModuleNotFoundError
        ``progress=True`` without tqdm (``pip install mmarray[progress]``), at
        once, whatever the input.

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
    return run(MEDIAN, a, axis, out, keepdims, workers, progress)


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
    return run(NANMEDIAN, a, axis, out, keepdims, workers, progress)


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
    request = Request("quantile", q, np.asanyarray(q), method, weights)
    return run(QUANTILE, a, axis, out, keepdims, workers, progress, request)


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
    request = Request("nanquantile", q, np.asanyarray(q), method, weights)
    return run(NANQUANTILE, a, axis, out, keepdims, workers, progress, request)


def _percent(q: Any) -> np.ndarray | None:
    """q as fractions, or None where q is not a number (numpy's to judge)."""
    if np.asanyarray(q).dtype.kind not in "iuf":
        return None
    return as_array(np.true_divide(q, 100))


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
    request = Request("percentile", q, _percent(q), method, weights)
    return run(QUANTILE, a, axis, out, keepdims, workers, progress, request)


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
    request = Request("nanpercentile", q, _percent(q), method, weights)
    return run(NANQUANTILE, a, axis, out, keepdims, workers, progress, request)


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
    nw = kernel_workers(workers)
    arr = np.asanyarray(a)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.size == 0:
        return _fallback.median(arr, None, None, False, None)
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
