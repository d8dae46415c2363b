"""The sampled window: one cheap pass in place of the radix selection's first, for
long lanes of 16-bit integers (the idea of the C engine's own window, src/select/window.c,
spread over dask's tasks).

A sample (every `SAMPLE_STRIDE`-th value along the last axis of every chunk) is
histogrammed first (``_core.key_histogram`` over a strided view: a few pages of each
chunk). It brackets each lane's wanted ranks in a window of keys, with a margin of
several standard deviations of a sample quantile. The pass then counts, bin by bin, only
the keys in the window and the others as below or above (``_core.key_window``, SIMD
compares): about half the cost of a 65,536-bin histogram of every key. The counts are
exact, so whether every wanted rank fell in the window is known for certain; where one
did not (a sample that misleads: data periodic in the stride, say), the full first pass
runs after all and the answer is the same.
"""

from __future__ import annotations

import math
from typing import Any

import dask
import dask.array as da
import numpy as np

import mmarray
from mmarray import _core

from ._blocks import rows_of

__all__ = ["SAMPLE_STRIDE", "WINDOW_MIN", "applies", "counts", "window_histograms"]

SAMPLE_STRIDE = 1024  # one value in this many along the last axis is sampled
WINDOW_MIN = 1 << 22  # lanes at least this long take the window
MAX_FRAC = 1 / 8  # a window holding more of the sample than this: no window
SIGMAS = 5.0  # the window's margin, in standard deviations of the sample's rank

counts = {"windowed": 0, "missed": 0}  # lanes' passes since import (for the tests)


def applies(xt: da.Array, n: int) -> bool:
    """Whether lanes of xt (kept axes first) go by the window: int16 or uint16, at least
    `WINDOW_MIN` long, and every chunk long enough along the last axis to be sampled."""
    last = xt.chunks[-1]
    return (
        xt.dtype in (np.dtype(np.int16), np.dtype(np.uint16))
        and xt.dtype.isnative
        and n >= WINDOW_MIN
        and min(last) >= 16 * SAMPLE_STRIDE
    )


def _summed(xt: da.Array, fn: Any, width: int, *args: Any) -> da.Array:
    """fn over every block, giving (kept block shape) + (width,) uint64 per block, summed
    over the lane axes' chunks by dask's tree reduction."""
    nk = xt.ndim - args[-1]  # args end with r
    chunks = xt.chunks[:nk] + tuple((1,) * len(c) for c in xt.chunks[nk:]) + ((width,),)
    h = da.map_blocks(
        fn,
        xt,
        *args,
        chunks=chunks,
        new_axis=[xt.ndim],
        dtype=np.uint64,
        meta=np.empty((0,) * (xt.ndim + 1), np.uint64),
    )
    return h.sum(axis=tuple(range(nk, xt.ndim)), dtype=np.uint64, split_every=8)


def _sample_block(block: np.ndarray, stride: int, r: int) -> np.ndarray:
    block = np.asarray(block)
    view = block[..., ::stride]
    zero = np.zeros((1, 1), np.uint64)
    h = _core.key_histogram(view, r, zero, 16, 16, region=mmarray.region(block))
    return h.reshape(block.shape[: block.ndim - r] + (1,) * r + (65536,))


def _window_block(
    block: np.ndarray, bounds: np.ndarray, outer: tuple[int, ...], r: int, block_info: Any = None
) -> np.ndarray:
    block = np.asarray(block)
    nk = block.ndim - r
    rows = rows_of(bounds, block_info[0]["array-location"], outer)
    hist, outside = _core.key_window(block, r, rows, region=mmarray.region(block))
    both = np.concatenate([outside, hist], axis=1)
    return both.reshape(block.shape[:nk] + (1,) * r + (65538,))


def _bounds(sample: np.ndarray, R: np.ndarray, lane: np.ndarray, n: int) -> np.ndarray | None:
    """Each lane's [lo, hi] key window around its wanted ranks R (of n) from its sample
    histogram (L, 65536); None where a window would hold too much of the sample."""
    L = sample.shape[0]
    cum = np.cumsum(sample, axis=1, dtype=np.int64)
    ns = cum[:, -1][lane]
    if np.any(ns < 1024):
        return None
    p = R / max(1, n - 1)
    centre = p * (ns - 1)
    margin = SIGMAS * np.sqrt(ns * p * (1 - p)) + 8
    lo_r = np.clip(np.floor(centre - margin), 0, ns - 1).astype(np.int64)
    hi_r = np.clip(np.ceil(centre + margin), 0, ns - 1).astype(np.int64)
    lo_k = (cum[lane] <= lo_r[:, None]).sum(axis=1)
    hi_k = (cum[lane] <= hi_r[:, None]).sum(axis=1)
    bounds = np.empty((L, 2), np.int64)
    bounds[:, 0], bounds[:, 1] = 65535, 0
    np.minimum.at(bounds[:, 0], lane, lo_k)
    np.maximum.at(bounds[:, 1], lane, hi_k)
    bounds[:, 1] = np.maximum(bounds[:, 0], bounds[:, 1])
    rows = np.arange(L)
    inside = cum[rows, bounds[:, 1]] - np.where(
        bounds[:, 0] > 0, cum[rows, np.maximum(bounds[:, 0] - 1, 0)], 0
    )
    if np.any(inside > MAX_FRAC * cum[:, -1]):
        return None
    return bounds.astype(np.uint64)


def window_histograms(
    xt: da.Array, outer: tuple[int, ...], r: int, R: np.ndarray, lane: np.ndarray, n: int
) -> np.ndarray | None:
    """For the wanted ranks R of lanes `lane`: per lane, a 65,536-bin histogram that is
    exact inside the window and holds the counts below and above it in the bins just
    outside (so that the radix walk finds each rank's key), or None where no window
    applies or a rank fell outside it (the caller makes the full first pass)."""
    (sample,) = dask.compute(_summed(xt, _sample_block, 65536, SAMPLE_STRIDE, r))
    L = math.prod(outer)
    bounds = _bounds(np.asarray(sample).reshape(L, 65536), R, lane, n)
    if bounds is None:
        return None
    table = bounds if L > 1 else bounds[:1]
    (got,) = dask.compute(_summed(xt, _window_block, 65538, table, outer, r))
    got = np.asarray(got).reshape(L, 65538)
    below, above, H = got[:, 0], got[:, 1], got[:, 2:].copy()
    if np.any(R < below[lane]) or np.any(R >= n - above[lane]):
        counts["missed"] += 1
        return None
    counts["windowed"] += 1
    rows = np.arange(L)
    lo, hi = bounds[:, 0].astype(np.intp), bounds[:, 1].astype(np.intp)
    H[rows[lo > 0], lo[lo > 0] - 1] += below[lo > 0]
    H[rows[hi < 65535], hi[hi < 65535] + 1] += above[hi < 65535]
    return H
