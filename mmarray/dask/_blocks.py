"""Which lanes a block holds: the per-lane tables that the client sends with a pass
(prefixes, windows) are cut down to the rows of each block's lanes."""

from __future__ import annotations

import math
from typing import Any

import dask
import dask.array as da
import numpy as np

__all__ = ["block_calls", "lane_ids", "rows_of"]


def lane_ids(loc: list[tuple[int, int]], outer: tuple[int, ...]) -> np.ndarray:
    """The lanes (C order over outer) of a block whose kept axes span loc."""
    index = tuple(slice(a, b) for a, b in loc[: len(outer)])
    return np.arange(math.prod(outer)).reshape(outer)[index].ravel()


def rows_of(table: np.ndarray, loc: list[tuple[int, int]], outer: tuple[int, ...]) -> np.ndarray:
    """The rows of a per-lane table (one row for every lane, or one per lane) for the
    lanes of the block at loc."""
    return table if table.shape[0] == 1 else table[lane_ids(loc, outer)]


def block_calls(xt: da.Array, outer: tuple[int, ...], fn: Any, *args: Any) -> list[Any]:
    """``fn(block, *args, ids)`` for every block of xt, as delayed calls, with ids the
    block's lanes (`lane_ids`): for a pass whose result per block is not an array of a
    known shape (gathered keys), collected by ``dask.compute(*calls)``."""
    nk = len(outer)
    starts = [np.concatenate([[0], np.cumsum(c)]) for c in xt.chunks[:nk]]
    blocks = xt.to_delayed(optimize_graph=False)
    call = dask.delayed(fn, pure=True)
    out = []
    for idx in np.ndindex(blocks.shape):
        loc = [(int(starts[k][i]), int(starts[k][i + 1])) for k, i in enumerate(idx[:nk])]
        out.append(call(blocks[idx], *args, lane_ids(loc, outer)))
    return out
