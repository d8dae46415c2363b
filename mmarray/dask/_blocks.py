"""Which lanes a block holds: the per-lane tables that the client sends with a pass
(prefixes, windows) are cut down to the rows of each block's lanes."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["lane_ids", "rows_of"]


def lane_ids(loc: list[tuple[int, int]], outer: tuple[int, ...]) -> np.ndarray:
    """The lanes (C order over outer) of a block whose kept axes span loc."""
    index = tuple(slice(a, b) for a, b in loc[: len(outer)])
    return np.arange(math.prod(outer)).reshape(outer)[index].ravel()


def rows_of(table: np.ndarray, loc: list[tuple[int, int]], outer: tuple[int, ...]) -> np.ndarray:
    """The rows of a per-lane table (one row for every lane, or one per lane) for the
    lanes of the block at loc."""
    return table if table.shape[0] == 1 else table[lane_ids(loc, outer)]
