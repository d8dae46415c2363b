"""The lanes of a reduction over a dask array, as mmarray's statistics ask for them.

`lanes_for` puts the kept axes first and the reduced ones last (a lazy transpose),
then picks how the lanes are answered: where every lane lies within one chunk
(`BlockLanes`), each task runs mmarray's in-memory kernels on its block and only the
values at the wanted ranks (or the NaN counts) come back; where lanes span chunks and
are few, a distributed radix selection (`mmarray.dask._radix.RadixLanes`); many lanes
that span chunks are first rechunked so that each lies within one.
"""

from __future__ import annotations

import math
import string
from typing import Any

import dask.array as da
import numpy as np

import mmarray
from mmarray import _core

from ._nans import lane_nans
from ._radix import RADIX_CELLS, RadixLanes, key_bits

__all__ = ["BlockLanes", "lanes_for", "transposed"]


def transposed(x: da.Array, axes: tuple[int, ...]) -> tuple[da.Array, tuple[int, ...], int]:
    """x with the kept axes first and the reduced ones last (one axis of length 1 when
    nothing is reduced); returns (array, the kept shape, the number of lane axes)."""
    kept = [i for i in range(x.ndim) if i not in axes]
    xt = x.transpose(kept + list(axes))
    if not axes:
        xt = xt[..., None]
    return xt, tuple(x.shape[i] for i in kept), max(1, len(axes))


def _select_block(block: np.ndarray, rows: np.ndarray, r: int) -> np.ndarray:
    """The values at the ranks rows (1 row, or one per lane of the block) of each lane."""
    block = np.asarray(block)
    nk = block.ndim - r
    flat = rows.reshape(-1, rows.shape[-1])
    got = _core.select(block, r, flat, 1, None, region=mmarray.region(block))
    return got.reshape(block.shape[:nk] + (flat.shape[-1],))


def _nan_block(block: np.ndarray, r: int) -> np.ndarray:
    block = np.asarray(block)
    got = _core.count_nan(block, r, 1, None, region=mmarray.region(block))
    return got.reshape(block.shape[: block.ndim - r])


class BlockLanes:
    """Lanes that lie within chunks: each task answers for the lanes of its block."""

    def __init__(self, xt: da.Array, outer: tuple[int, ...], r: int) -> None:
        self.xt, self.outer, self.r = xt, outer, r
        self.n = math.prod(xt.shape[len(outer) :])
        nk = len(outer)
        letters = string.ascii_letters
        self.kept, self.red = letters[:nk], letters[nk : nk + r]

    def select(self, ranks: np.ndarray, progress: Any) -> np.ndarray:
        """See `mmarray._harness.Lanes.select`."""
        m = ranks.shape[1]
        L = math.prod(self.outer)
        if L == 0 or m == 0:
            return np.empty((L, m), self.xt.dtype)
        idx = self.kept + self.red
        if ranks.shape[0] == 1:
            args: list[Any] = [self.xt, idx, ranks, None]
        else:
            nk = len(self.outer)
            kept_chunks = self.xt.chunks[:nk]
            rows = da.from_array(
                ranks.reshape(self.outer + (m,)), chunks=kept_chunks + ((m,),), name=False
            )
            args = [self.xt, idx, rows, self.kept + "Z"]
        got = da.blockwise(
            _select_block,
            self.kept + "Z",
            *args,
            r=self.r,
            new_axes={"Z": m} if ranks.shape[0] == 1 else None,
            concatenate=True,
            dtype=self.xt.dtype,
            meta=np.empty((0,) * (len(self.outer) + 1), self.xt.dtype),
        )
        return np.asarray(got.compute()).reshape(L, m)

    def nan_counts(self, rep: Any) -> np.ndarray:
        """See `mmarray._harness.Lanes.nan_counts`."""
        if self.xt.dtype.kind != "f":
            return np.zeros(self.outer, dtype=np.intp)
        got = da.blockwise(
            _nan_block,
            self.kept,
            self.xt,
            self.kept + self.red,
            r=self.r,
            concatenate=True,
            dtype=np.intp,
            meta=np.empty((0,) * len(self.outer), np.intp),
        )
        return np.asarray(got.compute()).reshape(self.outer)

    def nans(self, which: np.ndarray, last: bool) -> np.ndarray:
        """See `mmarray._harness.Lanes.nans` (`mmarray.dask._nans.lane_nans`)."""
        return lane_nans(self.xt, self.outer, self.r, which, last)


def lanes_for(x: da.Array, axes: tuple[int, ...], ranks_hint: int) -> BlockLanes | RadixLanes:
    """The lanes of x over axes, answered where each lies (see the module's text);
    ranks_hint: about how many ranks per lane will be asked for."""
    xt, outer, r = transposed(x, axes)
    nk = len(outer)
    if all(len(c) == 1 for c in xt.chunks[nk:]):
        return BlockLanes(xt, outer, r)
    lanes = math.prod(outer)
    bins = 1 << min(16, key_bits(x.dtype))
    if lanes * max(1, ranks_hint) * bins <= RADIX_CELLS:
        return RadixLanes(xt, outer, r)
    spec = {i: ("auto" if i < nk else -1) for i in range(xt.ndim)}
    return BlockLanes(xt.rechunk(spec), outer, r)
