"""The sampled windows of 32- and 64-bit values: one pass in place of the radix
selection's two or three (the idea of the C engine's src/select/window64.c, spread over
dask's tasks).

A sample (every S-th value along the last axis of every chunk, its keys gathered with
``_core.key_window_keys`` over a strided view) brackets each wanted rank of each lane in
a window of keys, with a margin of `SIGMAS` standard deviations of a sample quantile.
The stride S is the largest power of two, at most `SAMPLE_STRIDE`, for which the windows
are expected to hold at most the radix selection's gather budget: 9 quantiles take a
denser sample than a median. One pass (``_core.key_window_keys`` again, over every
value) then counts, per lane and window, the keys below the window and inside it,
gathers those inside and keeps the largest key (the last rank, which floats always want
for numpy's NaN check). The client selects each rank among its window's keys
(``_core.select``). The counts are exact, so whether each rank fell in its window is
known for certain; where one did not (a sample that misleads), the radix selection runs
after all and the answer is the same.
"""

from __future__ import annotations

import math
from typing import Any

import dask
import dask.array as da
import numpy as np

import mmarray
from mmarray import _core

from ._blocks import block_calls
from ._window import MAX_FRAC, SIGMAS, counts

__all__ = ["MAX_WINDOWS", "MIN_STRIDE", "SAMPLE_STRIDE", "WINDOW_MIN", "applies", "window_select"]

SAMPLE_STRIDE = 1024  # the sparsest sample: one value in this many along the last axis
MIN_STRIDE = 16  # a denser sample than this: no window (the radix selection is as cheap)
WINDOW_MIN = 1 << 22  # lanes at least this long may take a window
MAX_WINDOWS = 24  # windows per lane, at most (the C pass's MM_WMAX)


def applies(xt: da.Array, n: int) -> bool:
    """Whether lanes of xt (kept axes first) may go by a window: native 32- or 64-bit
    numbers, lanes at least `WINDOW_MIN` long, every chunk long enough along the last
    axis to hold a sample at the densest stride."""
    return (
        xt.dtype.kind in "fiu"
        and xt.dtype.itemsize in (4, 8)
        and xt.dtype.isnative
        and n >= WINDOW_MIN
        and min(xt.chunks[-1]) >= 16 * MIN_STRIDE
    )


def _margin(ns: float, p: np.ndarray) -> np.ndarray:
    """A window's half-width in ranks of a sample of ns, around sample quantiles p."""
    return SIGMAS * np.sqrt(ns * p * (1 - p)) + 8


def _held(ns: float, p: np.ndarray) -> float:
    """Sample ranks inside the windows (merged where they overlap) around sorted
    quantiles p of a sample of ns."""
    half = _margin(ns, p)
    lo, hi = p * (ns - 1) - half, p * (ns - 1) + half + 1
    held, end = 0.0, -math.inf
    for a, b in zip(lo, hi, strict=True):
        held += max(0.0, b - max(a, end))
        end = max(end, b)
    return held


def _stride(n: int, p: np.ndarray, budget: int, shortest: int) -> int | None:
    """The sparsest sample stride whose windows around sorted quantiles p of a lane of n
    are expected to hold at most budget keys and `MAX_FRAC` of the sample (None: none
    does)."""
    s = SAMPLE_STRIDE
    while s >= MIN_STRIDE:
        ns = n / s
        held = _held(ns, p)
        if held * s <= budget and held <= MAX_FRAC * ns and shortest >= 16 * s:
            return s
        s //= 2
    return None


def _sample_block(block: np.ndarray, stride: int, r: int, ids: np.ndarray) -> tuple[Any, ...]:
    block = np.asarray(block)
    top = (1 << (8 * block.dtype.itemsize)) - 1
    every = np.array([[0, top]], np.uint64)
    c, keys, _ = _core.key_window_keys(block[..., ::stride], r, every, region=mmarray.region(block))
    return c[:, 0, 1], keys, ids


def _window_block(block: np.ndarray, table: np.ndarray, r: int, ids: np.ndarray) -> tuple[Any, ...]:
    block = np.asarray(block)
    rows = table if table.shape[0] == 1 else table[ids]
    c, keys, largest = _core.key_window_keys(block, r, rows, region=mmarray.region(block))
    return c, keys, largest, ids


def _by_lane(got: list[Any], L: int) -> list[np.ndarray]:
    """The gathered keys of the blocks' results (per-lane counts, keys lane by lane,
    lane ids) as one array per lane."""
    parts: list[list[np.ndarray]] = [[] for _ in range(L)]
    for per, keys, ids in got:
        ends = np.cumsum(per.astype(np.intp))
        for lane, part in zip(ids, np.split(keys, ends[:-1]), strict=True):
            parts[int(lane)].append(part)
    return [np.concatenate(p) if p else np.empty(0, np.uint64) for p in parts]


def _merged(lo: list[int], hi: list[int]) -> list[list[int]]:
    """Windows [lo, hi] sorted and the overlapping ones merged."""
    out: list[list[int]] = []
    for a, b in sorted(zip(lo, hi, strict=True)):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _padded(w: list[list[int]], m: int) -> list[list[int]] | None:
    """w split into m windows (the widest halved, again and again), so that every lane
    has as many; None where no window can be split."""
    w = [list(x) for x in w]
    while len(w) < m:
        j = max(range(len(w)), key=lambda i: w[i][1] - w[i][0])
        a, b = w[j]
        if a == b:
            return None
        mid = a + (b - a) // 2
        w[j : j + 1] = [[a, mid], [mid + 1, b]]
    return w


def _windows(
    samples: list[np.ndarray], R: np.ndarray, lane: np.ndarray, n: int, bits: int, budget: int
) -> np.ndarray | None:
    """Each lane's windows of keys around its wanted ranks, (L, 2 nw) uint64, from its
    sample; None where a lane's windows would hold too much of it or are too many."""
    top = (1 << bits) - 1
    per_lane = []
    for li, keys in enumerate(samples):
        ns = keys.size
        mine = R[(lane == li) & (R < n - 1)]  # the last rank: the pass's largest key
        if ns < 1024:
            return None
        s = np.sort(keys)
        p = mine / max(1, n - 1)
        centre, half = p * (ns - 1), _margin(ns, p)
        lo_r = np.floor(centre - half).astype(np.int64)
        hi_r = np.ceil(centre + half).astype(np.int64)
        lo = [0 if a <= 0 else int(s[a]) for a in lo_r]
        hi = [top if b >= ns - 1 else int(s[b]) for b in hi_r]
        w = _merged(lo, hi) or [[top, top]]
        ab = np.array(w, np.uint64).reshape(-1, 2)  # (not Python ints: float64 searches)
        held = int(np.sum(s.searchsorted(ab[:, 1], "right") - s.searchsorted(ab[:, 0], "left")))
        if len(w) > MAX_WINDOWS or held > MAX_FRAC * ns or held * (n / ns) > 2 * budget:
            return None
        per_lane.append(w)
    m = max(len(w) for w in per_lane)
    padded = [_padded(w, m) for w in per_lane]
    if any(w is None for w in padded):
        return None
    table = np.array([[k for ab in w for k in ab] for w in padded if w is not None], np.uint64)
    return table if len(samples) > 1 else table[:1]


def _picked(keys: np.ndarray, c: np.ndarray, R: np.ndarray) -> np.ndarray | None:
    """The keys at ranks R of a lane from its windows' counts c (nw, 2: below, inside)
    and the keys gathered inside them (in any order), or None where a rank missed.
    The windows are disjoint and sorted, so window j's keys are the gathered ones from
    rank (keys inside the windows before it) on, whatever ends the pass gave them (the
    float64 histogram pass widens a window to whole buckets)."""
    below, inside = c[:, 0].astype(np.int64), c[:, 1].astype(np.int64)
    if keys.size != int(inside.sum()):
        raise RuntimeError(
            "radix selection: the gathered keys do not match their count "
            "(the array changed while it was read)"
        )
    j = np.searchsorted(below, R, side="right") - 1
    jj = np.maximum(j, 0)
    if np.any(j < 0) or np.any(R >= below[jj] + inside[jj]):
        return None
    at = (np.cumsum(inside) - inside)[jj] + (R - below[jj])
    order = np.argsort(at, kind="stable")
    out = np.empty(R.size, np.uint64)
    out[order] = _core.select(keys, 1, at[order][None, :]).reshape(-1)
    return out


def window_select(
    xt: da.Array,
    outer: tuple[int, ...],
    r: int,
    R: np.ndarray,
    lane: np.ndarray,
    n: int,
    budget: int,
) -> np.ndarray | None:
    """The values at wanted ranks R of lanes `lane` (of n values each) through sampled
    windows that gather at most about budget keys, or None where no window applies or
    a rank fell outside its window (the caller runs the radix selection)."""
    L, bits = math.prod(outer), 8 * xt.dtype.itemsize
    p = np.unique(R[(lane == 0) & (R < n - 1)]) / max(1, n - 1)
    stride = _stride(n, p, budget, min(xt.chunks[-1]))
    if stride is None:
        return None
    got = dask.compute(*block_calls(xt, outer, _sample_block, stride, r))
    table = _windows(_by_lane(list(got), L), R, lane, n, bits, budget)
    if table is None:
        return None
    got = dask.compute(*block_calls(xt, outer, _window_block, table, r))
    c = np.zeros((L, table.shape[1] // 2, 2), np.uint64)
    largest = np.zeros(L, np.uint64)
    for ci, _, top, ids in got:
        c[ids] += ci
        largest[ids] = np.maximum(largest[ids], top)
    keys = _by_lane([(ci[:, :, 1].sum(axis=1), k, ids) for ci, k, _, ids in got], L)
    out = np.empty(R.size, np.uint64)
    last = R == n - 1
    out[last] = largest[lane[last]]
    for li in range(L):
        at = np.flatnonzero((lane == li) & ~last)
        picked = _picked(keys[li], c[li], R[at])
        if picked is None:
            counts["missed"] += 1
            return None
        out[at] = picked
    counts["windowed"] += 1
    return _core.key_values(out, xt.dtype)
