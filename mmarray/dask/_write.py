"""Writing a dask array into a file in place, each task writing its own block."""

from __future__ import annotations

import math
import os
from typing import Any

import dask.array as da
import numpy as np
from numpy.typing import DTypeLike

import mmarray

from ._io import _layout, _start
from ._mapping import map_span, span
from ._refs import file_ref

__all__ = ["FileTarget", "file_target", "to_file"]


class FileTarget:
    """A file as the target of :func:`dask.array.store`: ``target[index] = block``.

    It pickles as a reference (the file's path and identity, the byte offset of
    element 0, shape, strides, dtype); the task that stores a block maps the bytes of
    its block writable, checks that the file is the one created (inode, size), writes
    the block in place and, with ``flush=True``, ``msync``-s the pages it wrote so that
    the data is on the file system (what a reader on another machine sees) when
    the task ends. Make one with :func:`file_target`.
    """

    __slots__ = ("file", "start", "shape", "strides", "dtype", "flush")

    def __init__(self, file: Any, start: int, shape: Any, strides: Any, dtype: Any, flush: bool):
        self.file, self.start, self.flush = file, start, flush
        self.shape, self.strides, self.dtype = tuple(shape), tuple(strides), np.dtype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def path(self) -> str:
        return str(self.file.path)

    def __reduce__(self) -> tuple[Any, ...]:
        fields = (self.file, self.start, self.shape, self.strides, self.dtype, self.flush)
        return (FileTarget, fields)

    def __repr__(self) -> str:
        return f"FileTarget({self.file.path!r}, shape={self.shape}, dtype={self.dtype})"

    def _where(self, index: Any) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        """(file offset of element 0, shape, strides) of ``self[index]``, from a stand-in
        array over no memory: numpy's indexing rules, and nothing mapped."""
        fake = np.lib.stride_tricks.as_strided(
            np.zeros(1, self.dtype), self.shape, self.strides, writeable=False
        )
        view = fake[index]
        if view.size and not np.may_share_memory(view, fake):
            raise TypeError(f"a FileTarget takes basic indices (ints and slices), not {index!r}")
        delta = view.__array_interface__["data"][0] - fake.__array_interface__["data"][0]
        return self.start + delta, view.shape, view.strides

    def _map(self, index: Any) -> tuple[np.ndarray[Any, Any], Any]:
        """``self[index]`` mapped on its own, and the Region under it (None when empty)."""
        start, shape, strides = self._where(index)
        if 0 in shape:
            return np.empty(shape, self.dtype), None
        lo, n = span(start, shape, strides, self.dtype.itemsize)
        base = map_span(self.file, lo, n)
        view = np.ndarray(shape, self.dtype, buffer=base, offset=start - lo, strides=strides)
        return view, mmarray.region(base)

    def __getitem__(self, index: Any) -> np.ndarray[Any, Any]:
        view, reg = self._map(index)
        if reg is not None:
            reg.close()  # the mapping lives on with the view
        return view

    def __setitem__(self, index: Any, value: Any) -> None:
        view, reg = self._map(index)
        try:
            view[...] = value
            if self.flush and reg is not None:
                reg.flush()
        finally:
            if reg is not None:
                reg.close()


def file_target(
    path: str | os.PathLike[str],
    shape: int | tuple[int, ...] | None = None,
    dtype: DTypeLike | None = None,
    *,
    create: bool = False,
    exist_ok: bool = False,
    flush: bool = True,
) -> FileTarget:
    """A :class:`FileTarget` over a new file (``create=True``, sparse, as
    :func:`mmarray.create`: raw or ``.npy`` by the suffix) or an existing one (mapped
    ``'r+'``; ``dtype`` and ``shape`` as in :func:`mmarray.open`).

    Examples
    --------
    >>> import dask.array as da, numpy as np, mmarray, mmarray.dask as md, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "out.npy")
    >>> t = md.file_target(p, (6,), "i8", create=True)
    >>> da.store(da.arange(6, chunks=4), t, lock=False, scheduler="threads")
    >>> mmarray.open(p)
    array([0, 1, 2, 3, 4, 5])
    """
    if not create:
        lay = _layout(path, "r+", dtype, shape, 0)
        return FileTarget(lay.file, lay.start, lay.shape, lay.strides, lay.dtype, flush)
    if shape is None or dtype is None:
        raise TypeError("file_target(..., create=True) needs shape and dtype")
    a = mmarray.create(path, shape, dtype, exist_ok=exist_ok)
    reg = mmarray.region(a)
    assert reg is not None
    try:
        ref = file_ref(os.path.abspath(os.fsdecode(path)), os.fstat(reg.fileno()), "r+", False)
        return FileTarget(ref, _start(a, reg), a.shape, a.strides, a.dtype, flush)
    finally:
        reg.close()


def to_file(
    x: da.Array,
    path: str | os.PathLike[str],
    *,
    exist_ok: bool = False,
    flush: bool = True,
    compute: bool = True,
    **kwargs: Any,
) -> Any:
    """Write ``x`` into a new raw or ``.npy`` file (by the suffix), each task its own block.

    The file is created sparse once, here; each task maps it writable and writes
    its block in place, so no block passes through the client. ``compute=False``
    returns the delayed store (as :func:`dask.array.store`); other keywords go to
    ``dask.array.store`` (``scheduler=``, ...).

    Examples
    --------
    >>> import dask.array as da, mmarray, mmarray.dask as md, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "squares.raw")
    >>> x = da.arange(5, chunks=2) ** 2
    >>> md.to_file(x, p, scheduler="threads")
    >>> mmarray.open(p, dtype=x.dtype)
    array([ 0,  1,  4,  9, 16])
    """
    if not isinstance(x, da.Array):
        raise TypeError(f"to_file needs a dask array, not {type(x).__name__}")
    if any(math.isnan(n) for n in x.shape):
        raise ValueError(
            f"to_file needs known chunk sizes, got shape {x.shape}; call compute_chunk_sizes()"
        )
    target = file_target(path, x.shape, x.dtype, create=True, exist_ok=exist_ok, flush=flush)
    return da.store(x, target, lock=False, compute=compute, **kwargs)  # type: ignore[arg-type]
