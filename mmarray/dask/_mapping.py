"""The worker's side: map the bytes a task names, check it is the same file, build the chunk.

Each task maps exactly the bytes of its chunk (``mmarray.open`` of the span, any byte
offset), from the file at the worker's path (the client's path through the path
map), and checks on the descriptor it mapped that the file is still the one the
client saw: same inode and size, and the same modification time for files read
without writing. Otherwise it raises ``OSError(ESTALE)`` naming the path: the file
was replaced or changed since the dask array was made. The chunk is a view of that
mapping; it is unmapped when dask drops the chunk, so a worker's memory holds the
chunks in use, never the whole file (no mapping outlives its chunk). A file the
worker cannot open raises the ``OSError`` of ``open`` (``FileNotFoundError``,
``PermissionError``...) naming the path, the worker and the path map.
"""

from __future__ import annotations

import errno
import os
from typing import Any

import numpy as np

from .._api import open as open_file
from .._region import region
from ._paths import current, resolve, who
from ._refs import BlockRef, FileRef

__all__ = ["load_block", "map_span", "span"]


def _check_same(ref: FileRef, local: str, st: os.stat_result) -> None:
    """Raise OSError(ESTALE) unless ``st`` is the file ``ref`` names (the device number
    is not compared: another machine sees the same file under another one)."""
    now = (st.st_ino, st.st_size, st.st_mtime_ns if ref.check_mtime else ref.mtime_ns)
    was = (ref.inode, ref.size, ref.mtime_ns)
    if now != was:
        raise OSError(
            errno.ESTALE,
            f"mmarray.dask: the file was replaced or changed since the dask array was made "
            f"(inode, size, mtime_ns now {now}, the array's {was}; seen by {who()} at "
            f"{local!r}): make the dask array again",
            ref.path,
        )


def _unseen(ref: FileRef, local: str, e: OSError) -> OSError:
    """The error of a worker that cannot open the file: path, worker, path map."""
    where = f"at {local!r} (path map {current()})" if local != ref.path else "at the same path"
    return type(e)(
        e.errno,
        f"mmarray.dask: {who()} cannot open the file {where}: {e.strerror}. Every worker "
        "must see the files on a shared file system, at the client's path or through "
        "mmarray.dask.path_map (dask config 'mmarray.path-map')",
        ref.path,
    )


def span(
    offset: int, shape: tuple[int, ...], strides: tuple[int, ...], itemsize: int
) -> tuple[int, int]:
    """(first byte, number of bytes) of a non-empty array whose element 0 is at ``offset``."""
    lo = hi = offset
    for n, s in zip(shape, strides, strict=True):
        if s < 0:
            lo += (n - 1) * s
        else:
            hi += (n - 1) * s
    return lo, hi + itemsize - lo


def map_span(ref: FileRef, start: int, length: int) -> np.ndarray[Any, Any]:
    """Bytes ``start .. start + length`` of ``ref``'s file, mapped, once checked to be its file."""
    local = resolve(ref.path)
    if ref.size - start < length or start < 0:
        raise ValueError(f"bad block reference: bytes {start}+{length} of a {ref.size}-byte file")
    try:
        base = open_file(local, ref.mode, dtype=np.uint8, shape=(length,), offset=start)
    except OSError as e:
        raise _unseen(ref, local, e) from None
    except ValueError:
        # the file is now too small for the span: it was replaced or truncated
        _check_same(ref, local, os.stat(local))
        raise
    reg = region(base)
    assert reg is not None
    try:
        _check_same(ref, local, os.fstat(reg.fileno()))
    except BaseException:
        reg.close()
        raise
    return base


def load_block(ref: BlockRef) -> np.ndarray[Any, Any]:
    """The chunk ``ref`` names, as a view of its own mapping (the task function)."""
    if 0 in ref.shape:
        return np.empty(ref.shape, ref.dtype)
    lo, n = span(ref.offset, ref.shape, ref.strides, ref.dtype.itemsize)
    base = map_span(ref.file, lo, n)
    block = np.ndarray(
        ref.shape, ref.dtype, buffer=base, offset=ref.offset - lo, strides=ref.strides
    )
    reg = region(base)
    assert reg is not None
    reg.close()  # the descriptor now; the mapping when the last view of the block goes
    return block
