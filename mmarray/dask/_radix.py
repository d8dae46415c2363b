"""A distributed radix selection: the values at given ranks of lanes that span chunks.

Every value has the C engine's order-preserving unsigned key (``src/select/keys.h``).
Each pass, every task histograms the next digit of the keys of its chunk that fall in
the buckets still holding a wanted rank (``_core.key_histogram``), and dask's tree
reduction sums the histograms; the client walks the summed counts down to the bucket
of each rank. One 65,536-bin pass settles 8- and 16-bit values; 32- and 64-bit ones
narrow 16 bits a pass until their buckets are small enough to gather (`_gathered`:
each of at most `COLLECT` values, or together at most `GATHER`), which the tasks then do
(``_core.key_collect``) for the client to select among (``_core.select``). Only counts
and those few values cross the network; the tasks read their chunks again on each pass
(persist a source that is costly to read).

The first pass's histogram is kept: it also counts each lane's NaNs (their key is the
largest, alone in the top bin), which the nan* statistics ask for first.
"""

from __future__ import annotations

import math
from typing import Any

import dask
import dask.array as da
import numpy as np

import mmarray
from mmarray import _core

from . import _window, _window64
from ._blocks import block_calls, rows_of
from ._nans import lane_nans

__all__ = ["COLLECT", "RADIX_CELLS", "RadixLanes", "key_bits"]

COLLECT = 1 << 14  # a bucket of at most this many values is gathered, not split again
GATHER = 1 << 22  # larger buckets are gathered while all gathered hold at most this many
RADIX_CELLS = 1 << 21  # counters of one pass's histogram (lanes x buckets x bins), at most


def key_bits(dtype: np.dtype[Any]) -> int:
    """Bits of the order-preserving key of dtype's values."""
    return 8 * dtype.itemsize


def _hist_block(
    block: np.ndarray,
    table: np.ndarray,
    shift: int,
    bits: int,
    outer: tuple[int, ...],
    r: int,
    block_info: Any = None,
) -> np.ndarray:
    block = np.asarray(block)
    loc = block_info[0]["array-location"]
    h = _core.key_histogram(
        block, r, rows_of(table, loc, outer), shift, bits, region=mmarray.region(block)
    )
    return h.reshape(block.shape[: block.ndim - r] + (1,) * r + h.shape[1:])


def _collect_block(
    block: np.ndarray, table: np.ndarray, shift: int, r: int, lane_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    block = np.asarray(block)
    rows = table if table.shape[0] == 1 else table[lane_ids]
    values, ids = _core.key_collect(block, r, rows, shift, region=mmarray.region(block))
    m = table.shape[1]
    return values, lane_ids[ids // m] * m + ids % m


class _Targets:
    """The buckets of one pass: lane, prefix (the keys' top ``known`` bits), keys of the
    lane below the bucket (base) and in it (count), and each wanted rank's bucket."""

    def __init__(
        self, lane: np.ndarray, prefix: np.ndarray, base: np.ndarray, count: np.ndarray
    ) -> None:
        order = np.lexsort((prefix, lane))
        ls, ps = lane[order], prefix[order]
        new = np.ones(lane.size, bool)
        new[1:] = (ls[1:] != ls[:-1]) | (ps[1:] != ps[:-1])
        tid = np.cumsum(new) - 1
        self.of = np.empty(lane.size, np.intp)
        self.of[order] = tid
        heads = order[new]
        self.lane, self.prefix = lane[heads], prefix[heads].astype(np.uint64)
        self.base, self.count = base[heads], count[heads]

    def table(self, pick: np.ndarray, n_lanes: int, known: int) -> tuple[np.ndarray, np.ndarray]:
        """The prefixes of the targets pick, one sorted row per lane (padded with the
        last, or with a prefix no key has), and each target's (lane, column) cell."""
        lanes, prefixes = self.lane[pick], self.prefix[pick]
        per = np.bincount(lanes, minlength=n_lanes)
        m = max(1, int(per.max()) if per.size else 1)
        none = np.uint64(1) << np.uint64(known) if known < 64 else np.uint64(0)
        table = np.full((n_lanes, m), none, np.uint64)
        order = np.lexsort((prefixes, lanes))
        start = np.concatenate([[0], np.cumsum(per)[:-1]])
        col = np.arange(order.size) - start[lanes[order]]
        table[lanes[order], col] = prefixes[order]
        last = table[np.arange(n_lanes), np.maximum(per - 1, 0)]
        pad = np.arange(m)[None, :] >= per[:, None]
        table = np.where(pad & (per[:, None] > 0), last[:, None], table)
        cell = np.empty(pick.size, np.intp)
        cell[order] = lanes[order] * m + col
        if n_lanes == 1:
            table = table[:1]
        return table, cell


class RadixLanes:
    """Lanes that span chunks, few enough for per-lane histograms: answered by the
    distributed radix selection of this module."""

    def __init__(self, xt: da.Array, outer: tuple[int, ...], r: int) -> None:
        self.xt, self.outer, self.r = xt, outer, r
        self.n = math.prod(xt.shape[len(outer) :])
        self.L = math.prod(outer)
        self.W = key_bits(xt.dtype)
        self.b0 = min(16, self.W)
        self._first: np.ndarray | None = None

    # ---- the passes --------------------------------------------------------------------

    def _hist(self, table: np.ndarray, shift: int, bits: int) -> da.Array:
        nk = len(self.outer)
        xt, m = self.xt, table.shape[1]
        chunks = xt.chunks[:nk] + tuple((1,) * len(c) for c in xt.chunks[nk:])
        h = da.map_blocks(
            _hist_block,
            xt,
            table,
            shift,
            bits,
            self.outer,
            self.r,
            chunks=chunks + ((m,), (1 << bits,)),
            new_axis=[xt.ndim, xt.ndim + 1],
            dtype=np.uint64,
            meta=np.empty((0,) * (xt.ndim + 2), np.uint64),
        )
        return h.sum(axis=tuple(range(nk, xt.ndim)), dtype=np.uint64, split_every=8)

    def _collects(self, table: np.ndarray, shift: int) -> list[Any]:
        return block_calls(self.xt, self.outer, _collect_block, table, shift, self.r)

    def _first_pass(self) -> np.ndarray:
        """The first digit's histogram of every lane, (L, 2**b0), computed once."""
        if self._first is None:
            table = np.zeros((1, 1), np.uint64)
            (h,) = dask.compute(self._hist(table, self.W, self.b0))
            self._first = np.asarray(h).reshape(self.L, 1 << self.b0)
        return self._first

    def _first_rows(self, R: np.ndarray, lane: np.ndarray) -> np.ndarray:
        """The first digit's histogram for each wanted rank R[i] of lane[i]: through the
        sampled window where it applies and holds every rank (`mmarray.dask._window`),
        else the full first pass."""
        if self._first is None and _window.applies(self.xt, self.n):
            H = _window.window_histograms(self.xt, self.outer, self.r, R, lane, self.n)
            if H is not None:
                return H[lane]
        return self._first_pass()[lane]

    def nan_counts(self, rep: Any) -> np.ndarray:
        """See `mmarray._harness.Lanes.nan_counts` (the first pass's top bin)."""
        if self.xt.dtype.kind != "f":
            return np.zeros(self.outer, dtype=np.intp)
        return self._first_pass()[:, -1].astype(np.intp).reshape(self.outer)

    def nans(self, which: np.ndarray, last: bool) -> np.ndarray:
        """See `mmarray._harness.Lanes.nans` (`mmarray.dask._nans.lane_nans`)."""
        return lane_nans(self.xt, self.outer, self.r, which, last)

    # ---- the walk down the digits -------------------------------------------------------

    def select(self, ranks: np.ndarray, progress: Any) -> np.ndarray:
        """See `mmarray._harness.Lanes.select`."""
        m = ranks.shape[1]
        R = np.broadcast_to(ranks, (self.L, m)).reshape(-1).astype(np.int64)
        lane = np.repeat(np.arange(self.L), m)
        values = np.empty(R.size, self.xt.dtype)
        if R.size == 0:
            return values.reshape(self.L, m)
        if self._first is None and _window64.applies(self.xt, self.n):
            got = _window64.window_select(self.xt, self.outer, self.r, R, lane, self.n, GATHER)
            if got is not None:
                return got.reshape(self.L, m)
        H = self._first_rows(R, lane)  # one histogram per wanted rank, for now
        base = np.zeros(R.size, np.int64)
        prefix = np.zeros(R.size, np.uint64)
        live = np.arange(R.size)
        known, bits = 0, self.b0
        while live.size:
            prefix_l, base_l, count_l = _descend(H, R[live] - base[live], prefix[live], bits)
            base[live] += base_l
            prefix[live] = prefix_l
            known += bits
            if known == self.W:  # the keys themselves
                values[live] = _core.key_values(prefix[live], self.xt.dtype)
                break
            t = _Targets(lane[live], prefix[live], base[live], count_l)
            small = _gathered(t.count)
            bits = min(16, self.W - known, _cap_bits(int(np.count_nonzero(~small))))
            H_t = self._pass(t, small, known, bits, R, live, base, values)
            keep = ~small[t.of]
            live = live[keep]
            if H_t is not None:
                H = H_t[t.of[keep]]
        return values.reshape(self.L, m)

    def _pass(
        self,
        t: _Targets,
        small: np.ndarray,
        known: int,
        bits: int,
        R: np.ndarray,
        live: np.ndarray,
        base: np.ndarray,
        values: np.ndarray,
    ) -> np.ndarray | None:
        """One pass: the big targets' next digit histogrammed, the small ones gathered and
        their ranks' values found.  Returns the big targets' histograms (by target)."""
        shift = self.W - known
        big_ids, small_ids = np.flatnonzero(~small), np.flatnonzero(small)
        todo: list[Any] = []
        if big_ids.size:
            htable, hcell = t.table(big_ids, self.L, known)
            todo.append(self._hist(htable, shift, bits))
        if small_ids.size:
            ctable, ccell = t.table(small_ids, self.L, known)
            todo.extend(self._collects(ctable, shift))
        got = dask.compute(*todo)
        H_t = None
        if big_ids.size:
            h = np.asarray(got[0]).reshape(-1, 1 << bits)
            H_t = np.zeros((t.lane.size, 1 << bits), np.uint64)
            H_t[big_ids] = h[hcell]
            got = got[1:]
        if small_ids.size:
            _finish_collected(got, t, small_ids, ccell, R, live, base, values)
        return H_t


def _gathered(count: np.ndarray) -> np.ndarray:
    """Which buckets a pass gathers rather than splits: each of at most `COLLECT` values,
    and the smallest others while all gathered hold at most `GATHER` values (one pass
    fewer for the 32- and 64-bit keys whose first digit leaves a few million per bucket:
    gathering 32 MiB costs less than reading every chunk again)."""
    small = count <= COLLECT
    order = np.argsort(count, kind="stable")
    fits = np.empty(count.size, bool)
    fits[order] = np.cumsum(count[order]) <= GATHER
    return small | fits


def _cap_bits(n_targets: int) -> int:
    """The most bits a pass may histogram for n_targets buckets (RADIX_CELLS counters)."""
    return max(1, min(16, int(math.log2(max(2, RADIX_CELLS // max(1, n_targets))))))


def _descend(
    H: np.ndarray, rel: np.ndarray, prefix: np.ndarray, bits: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each wanted rank (its histogram H[i] of the next digit, its rank rel[i] within
    the bucket): the sub-bucket's prefix, the keys below it and the keys in it."""
    cum = np.cumsum(H, axis=1, dtype=np.int64)
    if np.any(cum[:, -1] <= rel):
        raise RuntimeError(
            "radix selection: the counts do not add up (the array changed while it was read)"
        )
    b = (cum <= rel[:, None]).sum(axis=1)
    rows = np.arange(H.shape[0])
    below = np.where(b > 0, cum[rows, np.maximum(b - 1, 0)], 0)
    count = H[rows, b].astype(np.int64)
    new = (prefix << np.uint64(bits)) | b.astype(np.uint64)
    return new, below, count


def _finish_collected(
    got: Any,
    t: _Targets,
    small_ids: np.ndarray,
    cell: np.ndarray,
    R: np.ndarray,
    live: np.ndarray,
    base: np.ndarray,
    values: np.ndarray,
) -> None:
    """The values at the ranks of the gathered targets, selected among their values."""
    vals = np.concatenate([g[0] for g in got])
    ids = np.concatenate([g[1] for g in got])
    target_of_cell = np.full(int(cell.max()) + 1, -1, np.intp)
    target_of_cell[cell] = small_ids
    owner = target_of_cell[ids]
    order = np.argsort(owner, kind="stable")
    vals, owner = vals[order], owner[order]
    bounds = np.searchsorted(owner, small_ids), np.searchsorted(owner, small_ids, side="right")
    entries = _entries_by_target(t.of, small_ids)
    for k, tid in enumerate(small_ids):
        mine = vals[bounds[0][k] : bounds[1][k]]
        if mine.size != int(t.count[tid]):
            raise RuntimeError(
                "radix selection: a bucket's values do not match its count "
                "(the array changed while it was read)"
            )
        e = entries[k]
        rel = R[live[e]] - base[live[e]]
        order_e = np.argsort(rel, kind="stable")
        picked = _core.select(mine, 1, rel[order_e][None, :].astype(np.int64))
        values[live[e[order_e]]] = picked.reshape(-1)


def _entries_by_target(of: np.ndarray, ids: np.ndarray) -> list[np.ndarray]:
    """For each target in ids, the positions i with of[i] == target."""
    order = np.argsort(of, kind="stable")
    sorted_of = of[order]
    lo, hi = np.searchsorted(sorted_of, ids), np.searchsorted(sorted_of, ids, side="right")
    return [order[a:b] for a, b in zip(lo, hi, strict=True)]
