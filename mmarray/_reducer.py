"""Arrays through multiprocessing travel by reference: the reducer and its import hook.

multiprocessing's pickler (``ForkingPickler``) sends an array in shareable memory
as an :class:`~mmarray._ref.ArrayRef`; memfds and deleted files, which have no
name, send their descriptor along (``multiprocessing.reduction.DupFd``: inherited
or passed with the process at start, otherwise sent over a Unix socket by the
sender's resource sharer), so the receiver holds the memory even if the sender
drops its array.

Only that pickler sends references; plain :func:`pickle.dumps` keeps numpy's
by-value format, so a pickle written to disk never depends on a file staying put.
Copy-on-write regions and arrays that mmarray does not back travel by value
everywhere. Importing multiprocessing is slow, so the reducer is registered only
once something imports ``multiprocessing.reduction`` (:class:`_ReductionHook`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from ._memmap import memmap
from ._ref import ArrayRef, describe, open_ref
from ._region import region

__all__ = ["install_reducer"]


def _rebuild(ref: ArrayRef) -> np.ndarray[Any, Any]:
    return open_ref(ref, None)


def _rebuild_fd(ref: ArrayRef, dupfd: Any) -> np.ndarray[Any, Any]:
    fd = dupfd.detach()
    try:
        return open_ref(ref, fd)
    finally:
        # A descriptor from the resource sharer is ours; one passed with a spawned
        # process may be shared by several references, and is left open.
        if type(dupfd).__module__ == "multiprocessing.resource_sharer":
            os.close(fd)


def _rebuild_memmap(
    rebuild: Any, args: tuple[Any, ...], filename: Any, offset: Any, mode: Any
) -> Any:
    arr = rebuild(*args)
    m = arr.view(memmap)
    m._mmap = region(arr)
    m.filename, m.offset, m.mode = filename, offset, mode
    return m


def _dupfd(fd: int) -> Any:
    """multiprocessing's DupFd for fd, one per descriptor while a process is being started
    (spawn refuses the same descriptor twice in its list of descriptors to pass)."""
    from multiprocessing.context import get_spawning_popen
    from multiprocessing.reduction import DupFd

    popen = get_spawning_popen()
    if popen is None:
        return DupFd(fd)
    cache = popen.__dict__.setdefault("_mmarray_dupfds", {})
    if fd not in cache:
        cache[fd] = DupFd(fd)
    return cache[fd]


def _reduce_array(a: np.ndarray[Any, Any]) -> tuple[Any, ...]:
    """ForkingPickler reducer: a reference for shareable arrays, numpy's own format otherwise."""
    try:
        got = describe(a)
    except (OSError, ValueError):
        got = None
    if got is None:
        return a.__reduce__()  # type: ignore[return-value]  # numpy's is always a tuple
    ref, fd = got
    if ref.kind == "fd" and ref.length:
        rv: tuple[Any, ...] = (_rebuild_fd, (ref, _dupfd(fd)))
    else:
        rv = (_rebuild, (ref,))
    if type(a) is not np.ndarray:
        attrs = tuple(getattr(a, k, None) for k in ("filename", "offset", "mode"))
        rv = (_rebuild_memmap, (rv[0], rv[1], *attrs))
    return rv


def _register(forking_pickler: Any) -> None:
    forking_pickler.register(np.ndarray, _reduce_array)
    forking_pickler.register(memmap, _reduce_array)


class _RegisteringLoader:
    """Wraps the loader of multiprocessing.reduction to register the reducer once it ran."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def create_module(self, spec: Any) -> Any:
        return self._inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._inner.exec_module(module)
        _register(module.ForkingPickler)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _ReductionHook:
    """Meta path finder: importing multiprocessing costs ~7 ms, so wait until someone does."""

    @classmethod
    def find_spec(cls, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "multiprocessing.reduction":
            return None
        if cls in sys.meta_path:
            sys.meta_path.remove(cls)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


def install_reducer() -> None:
    mod = sys.modules.get("multiprocessing.reduction")
    if mod is not None:
        _register(mod.ForkingPickler)
    elif _ReductionHook not in sys.meta_path:
        sys.meta_path.insert(0, _ReductionHook)
