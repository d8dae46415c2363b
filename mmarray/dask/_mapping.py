"""The worker's side: map the file a task names, check it is the same file, build the chunk.

Each worker process keeps its last few mappings open (``CACHE_SIZE``, least recently
used first out), one per file and mode, so that the tasks of one array map its file
once. Before a task uses a mapping, the file at the worker's path (the client's path
through the path map) must still be the one the client saw: same inode and size,
and the same modification time for files mapped read-only. Otherwise the task
raises ``OSError(ESTALE)`` naming the path: the file was replaced or changed since
the dask array was made. A file the worker cannot open raises the ``OSError`` of
``open`` (``FileNotFoundError``, ``PermissionError``...) naming the path and the worker.
"""

from __future__ import annotations

import errno
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

import mmarray

from ._paths import current, resolve, who
from ._refs import BlockRef, FileRef

__all__ = ["CACHE_SIZE", "clear_cache", "load_block", "mapped"]

CACHE_SIZE = 16
_cache: OrderedDict[tuple[Any, ...], np.ndarray[Any, Any]] = OrderedDict()
_lock = threading.Lock()


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


def _open(ref: FileRef, local: str) -> np.ndarray[Any, Any]:
    """Map the whole file as bytes and check it is ``ref``'s file."""
    try:
        base = mmarray.open(local, ref.mode, dtype=np.uint8)
    except OSError as e:
        raise _unseen(ref, local, e) from None
    reg = mmarray.region(base)
    assert reg is not None
    try:
        _check_same(ref, local, os.fstat(reg.fileno()))
    except BaseException:
        reg.close()
        raise
    return base


def mapped(ref: FileRef) -> np.ndarray[Any, Any]:
    """The whole file of ``ref`` as a uint8 array, from this process's cache when there."""
    local = resolve(ref.path)
    if ref.mode == "c":
        return _open(ref, local)  # private pages: a task's writes must not reach the next
    key = (local, ref.inode, ref.size, ref.mtime_ns, ref.mode)
    with _lock:
        base = _cache.get(key)
        if base is not None:
            _cache.move_to_end(key)
    if base is not None:
        try:
            st = os.stat(local)
        except OSError as e:
            raise _unseen(ref, local, e) from None
        _check_same(ref, local, st)
        return base
    base = _open(ref, local)
    with _lock:
        _cache[key] = base
        while len(_cache) > CACHE_SIZE:
            _, old = _cache.popitem(last=False)
            reg = mmarray.region(old)
            if reg is not None:
                reg.close()  # unmapped once no chunk array uses it
    return base


def clear_cache() -> None:
    """Drop this process's cached mappings (each is unmapped once no array uses it)."""
    with _lock:
        bases = list(_cache.values())
        _cache.clear()
    for base in bases:
        reg = mmarray.region(base)
        if reg is not None:
            reg.close()


def load_block(ref: BlockRef) -> np.ndarray[Any, Any]:
    """The chunk ``ref`` names, as a view of the mapped file (the task function)."""
    if 0 in ref.shape:
        return np.empty(ref.shape, ref.dtype)
    base = mapped(ref.file)
    return np.ndarray(ref.shape, ref.dtype, buffer=base, offset=ref.offset, strides=ref.strides)
