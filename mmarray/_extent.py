"""The bytes an array covers: its extent, and the page-exact ranges page operations use.

Every caller that needs to know where an array's bytes lie asks here: references
(``share``), locks, page and file operations, ``grow``, and the constructors that
size a contiguous array.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ._core import PAGESIZE, Region

__all__ = ["array_extent", "contiguous_nbytes", "page_ranges", "region_extent", "strided_extent"]

# Above this many separate blocks, a strided view is treated as its whole span.
_MAX_BLOCKS = 1 << 20


def contiguous_nbytes(shape: Iterable[int], itemsize: int) -> int:
    """The number of bytes of a contiguous array of this shape and item size."""
    return math.prod(shape) * itemsize


def strided_extent(shape: Iterable[int], strides: Iterable[int], itemsize: int) -> tuple[int, int]:
    """Return ``(low, high)``: the offsets from element 0 of the lowest byte a non-empty
    array of this geometry touches and of the byte after its highest (strides may be
    negative, so ``low <= 0``)."""
    low = high = 0
    for n, s in zip(shape, strides, strict=True):
        if s < 0:
            low += (n - 1) * s
        else:
            high += (n - 1) * s
    return low, high + itemsize


def array_extent(a: np.ndarray[Any, Any]) -> tuple[int, int, int]:
    """Return (address of the lowest byte, number of bytes, offset of element 0 from that
    byte) that ``a`` covers; an empty array covers no bytes at its data address."""
    start = a.__array_interface__["data"][0]
    if a.size == 0:
        return start, 0, 0
    low, high = strided_extent(a.shape, a.strides, a.itemsize)
    return start + low, high - low, -low


def region_extent(a: np.ndarray[Any, Any], reg: Region) -> tuple[int, int]:
    """The bytes ``[lo, hi)`` between the lowest and the highest byte a touches,
    counted from the region's first byte (``(0, 0)`` for an empty array)."""
    if a.size == 0:
        return (0, 0)
    low, nbytes, _ = array_extent(a)
    lo = low - reg.address
    hi = lo + nbytes
    if lo < 0 or hi > reg.size:
        raise ValueError(f"array bytes [{lo}, {hi}) lie outside its region ({reg.size} bytes)")
    return lo, hi


def page_ranges(x: np.ndarray[Any, Any] | Region, reg: Region) -> list[tuple[int, int]]:
    """Byte ranges (from the region's first byte) whose pages are exactly the pages
    that hold at least one byte of x, sorted and disjoint.

    A view whose gaps between elements are all shorter than a page touches every
    page of its span; for wider gaps the blocks are listed (up to ``_MAX_BLOCKS``
    of them; beyond that the whole span is used).
    """
    if isinstance(x, Region):
        return [(0, reg.size)] if reg.size else []
    a = x
    if a.size == 0:
        return []
    lo, hi = region_extent(a, reg)
    dims = sorted((abs(s), n) for n, s in zip(a.shape, a.strides, strict=True) if n > 1)
    ext = a.itemsize  # bytes spanned by the block of the inner dimensions
    k = 0
    while k < len(dims) and dims[k][0] - ext < PAGESIZE:
        stride, n = dims[k]
        ext = stride * (n - 1) + ext
        k += 1
    outer = dims[k:]
    if not outer:
        return [(lo, hi)]
    if math.prod(n for _, n in outer) > _MAX_BLOCKS:
        return [(lo, hi)]
    offs = np.zeros(1, dtype=np.int64)
    for stride, n in outer:
        offs = (offs[:, None] + np.arange(n, dtype=np.int64) * stride).ravel()
    offs.sort()
    base = reg.address
    first = (base + lo + offs) // PAGESIZE
    stop = np.maximum.accumulate((base + lo + offs + ext - 1) // PAGESIZE + 1)
    cut = np.flatnonzero(first[1:] > stop[:-1]) + 1
    starts = first[np.concatenate(([0], cut))]
    stops = stop[np.concatenate((cut - 1, [len(stop) - 1]))]
    return [
        (max(int(p) * PAGESIZE - base, 0), min(int(q) * PAGESIZE - base, reg.size))
        for p, q in zip(starts, stops, strict=True)
    ]
