"""Every place where the statistics hand the work to numpy, and why.

The C kernels take plain or memory-mapped arrays of native-order booleans, integers
and 16-, 32- and 64-bit floats, with at least one element; the quantiles also need
numeric fractions in [0, 1] (at most 2-d), one of numpy's 13 methods and no
weights. Everything else (array subclasses, complex, object and byte-swapped data,
``float128``, empty input, weights, out-of-range or non-numeric q, unknown methods)
is numpy's: it answers, or raises its own error, exactly as it would. numpy is
never allowed to modify the input (``overwrite_input=False`` always).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._memmap import memmap as _mm_memmap
from ._quantile_method import METHODS, Request

__all__ = ["kernel_array", "median", "nanmedian", "quantile", "quantile_accepted"]

_numpy: Any = np  # untyped handle for the calls into numpy


def kernel_array(a: Any) -> np.ndarray | None:
    """a as a plain ndarray view if the kernels handle it, else None (numpy's turn).

    Examples
    --------
    >>> kernel_array([1.0, 2.0])
    array([1., 2.])
    >>> kernel_array(np.array([1j])) is None  # complex: numpy's
    True
    """
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


def _q_ok(q: np.ndarray) -> bool:
    if q.dtype.kind not in "iuf" or q.ndim > 2:
        return False
    if q.size == 0:  # numpy's own check of an empty q fails unless q is 1-d: its error
        return q.ndim == 1
    with np.errstate(invalid="ignore"):
        return bool(np.min(q) >= 0 and np.max(q) <= 1)


def quantile_accepted(request: Request) -> bool:
    """Whether the kernels take this quantile request (else numpy's turn): numeric
    fractions (see `_q_ok`), no weights (numpy's ``inverted_cdf`` only), a known
    method (an unknown one gets numpy's error)."""
    fractions = request.fractions
    return (
        fractions is not None
        and request.weights is None
        and request.method in METHODS
        and _q_ok(fractions)
    )


def median(a: Any, axis: Any, out: np.ndarray | None, keepdims: bool, _: None) -> Any:
    """`numpy.median`, never modifying a."""
    return _numpy.median(a, axis=axis, out=out, overwrite_input=False, keepdims=keepdims)


def nanmedian(a: Any, axis: Any, out: np.ndarray | None, keepdims: bool, _: None) -> Any:
    """`numpy.nanmedian`, never modifying a."""
    return _numpy.nanmedian(a, axis=axis, out=out, overwrite_input=False, keepdims=keepdims)


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


def quantile(a: Any, axis: Any, out: np.ndarray | None, keepdims: bool, request: Request) -> Any:
    """numpy's function ``request.name`` (quantile, percentile or a nan* form), never
    modifying a, with q's axes first in the result (see `_nan_q_split`)."""
    name, q, qa, method, weights = request
    if qa is not None and _nan_q_split(name, qa, weights) and np.size(a) > 0:
        # q's axes first, as quantile and the kernels put them (see _nan_q_split);
        # the caller's q (qa holds fractions where q holds percentages); empty input
        # keeps numpy's own answer (nanmean's)
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
