"""The bits of some lanes' NaNs in a dask array (`mmarray._harness.Lanes.nans`).

numpy's median and quantile return one of a lane's own NaNs, and its nanmedian an
all-NaN lane's last value: each task searches its block's part of the wanted lanes
(``_core.first_nan``, which stops at a lane's first NaN), only one value per lane and
block comes back, and the client takes, for each lane, the NaN of its first block
that holds one. Lanes that lie within a chunk and lanes that span chunks are answered
alike.
"""

from __future__ import annotations

import math
import string

import dask.array as da
import numpy as np

import mmarray
from mmarray import _core

__all__ = ["lane_nans"]


def _nan_block(block: np.ndarray, wanted: np.ndarray, r: int) -> np.ndarray:
    """For each lane of the block: its first NaN here if it is wanted and holds one,
    else 0 (not a NaN); shaped like the block with each lane axis of length 1."""
    block = np.asarray(block)
    nk = block.ndim - r
    which = np.flatnonzero(np.asarray(wanted).reshape(-1))
    got = np.zeros(math.prod(block.shape[:nk]), block.dtype)
    if which.size and block.size:
        values, found = _core.first_nan(block, r, which, 1, region=mmarray.region(block))
        got[which[found]] = values[found]
    return got.reshape(block.shape[:nk] + (1,) * r)


def lane_nans(
    xt: da.Array, outer: tuple[int, ...], r: int, which: np.ndarray, last: bool
) -> np.ndarray:
    """A NaN of each lane which (flat indexes into outer) of xt (kept axes first, r lane
    axes last), with its bits as stored: the lane's last value where last is true, else
    its first NaN in C order (np.nan's bits for a lane that holds none)."""
    nk = len(outer)
    if last:
        xt = xt[(slice(None),) * nk + (slice(-1, None),) * r]
    wanted = np.zeros(math.prod(outer), bool)
    wanted[which] = True
    kept, red = string.ascii_letters[:nk], string.ascii_letters[nk : nk + r]
    mask = da.from_array(wanted.reshape(outer), chunks=xt.chunks[:nk], name=False)
    got = da.blockwise(
        _nan_block,
        kept + red,
        xt,
        kept + red,
        mask,
        kept,
        r=r,
        adjust_chunks={c: 1 for c in red},
        dtype=xt.dtype,
        meta=np.empty((0,) * xt.ndim, xt.dtype),
    )
    grid = np.asarray(got.compute()).reshape(len(wanted), -1)[which]
    isnan = np.isnan(grid)
    first = grid[np.arange(grid.shape[0]), np.argmax(isnan, axis=1)]
    return np.where(isnan.any(axis=1), first, np.array(np.nan, xt.dtype))
