"""Dask arrays over files and shareable memory whose tasks hold references, not data."""

from __future__ import annotations

import errno
import itertools
import operator
import os
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from numpy.typing import DTypeLike

import mmarray

from ._mapping import load_block
from ._refs import BlockRef, FileRef, file_ref

__all__ = ["from_array", "from_file", "from_files"]

_MODES = ("r", "r+", "c")


class _Layout:
    """One array in one file: its FileRef, the byte offset of element 0, shape, strides, dtype."""

    def __init__(self, file: FileRef, start: int, a: np.ndarray[Any, Any]) -> None:
        self.file, self.start = file, start
        self.shape, self.strides, self.dtype = a.shape, a.strides, a.dtype

    def block(self, starts: Sequence[int], shape: tuple[int, ...]) -> BlockRef:
        offset = self.start + sum(i * s for i, s in zip(starts, self.strides, strict=True))
        return BlockRef(self.file, offset, shape, self.strides, self.dtype)


def _start(a: np.ndarray[Any, Any], reg: Any) -> int:
    """The file offset of ``a``'s element 0 (0 for an empty array)."""
    if a.size == 0:
        return 0
    return int(a.__array_interface__["data"][0] - reg.address + reg.offset)


def _layout(path: Any, mode: str, dtype: Any, shape: Any, offset: int) -> _Layout:
    """Open ``path`` on the client as mmarray.open would, note its identity, close it."""
    if mode not in _MODES:
        raise ValueError(f"mode must be 'r', 'r+' or 'c', not {mode!r}")
    a = mmarray.open(path, "r+" if mode == "r+" else "r", dtype=dtype, shape=shape, offset=offset)
    reg = mmarray.region(a)
    assert reg is not None
    try:
        ref = file_ref(
            os.path.abspath(os.fsdecode(path)), os.fstat(reg.fileno()), mode, mode != "r+"
        )
        return _Layout(ref, _start(a, reg), a)
    finally:
        reg.close()  # unmapped with the last view: a is dropped on return


def _chunks(chunks: Any, lay: _Layout) -> tuple[tuple[int, ...], ...]:
    return da.core.normalize_chunks(chunks, lay.shape, dtype=lay.dtype)  # type: ignore[no-any-return]


def _blocks(
    name: str, lay: _Layout, chunks: tuple[tuple[int, ...], ...], pre: tuple[int, ...] = ()
) -> dict[Any, Any]:
    """The tasks of one file's chunks; ``pre`` is the key prefix of a stacked file."""
    starts = [list(itertools.accumulate((0, *c[:-1]))) for c in chunks]
    dsk: dict[Any, Any] = {}
    for idx in itertools.product(*(range(len(c)) for c in chunks)):
        first = [starts[k][i] for k, i in enumerate(idx)]
        shape = tuple(chunks[k][i] for k, i in enumerate(idx))
        dsk[(name, *pre, *idx)] = (load_block, lay.block(first, shape))
    return dsk


def _array(name: str, dsk: dict[Any, Any], chunks: Any, dtype: np.dtype[Any]) -> da.Array:
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    meta = np.empty((0,) * len(chunks), dtype)
    return da.Array(graph, name, chunks, dtype=dtype, meta=meta)


def from_file(
    path: str | os.PathLike[str],
    *,
    dtype: DTypeLike | None = None,
    shape: int | tuple[int, ...] | None = None,
    offset: int = 0,
    chunks: Any = "auto",
    mode: str = "r",
) -> da.Array:
    """A dask array over a raw or ``.npy`` file, each task a reference to its chunk.

    The file is opened once here to read its header and identity (device, inode,
    size, modification time), then closed. Each task holds a few hundred bytes
    (the path, that identity, the chunk's byte offset, shape, strides, dtype); the
    worker that runs it maps the file and checks that it is still the same one.

    Parameters
    ----------
    path : str or os.PathLike
        The file, as :func:`mmarray.open` takes it; every worker must see it at this
        path (or through :func:`mmarray.dask.path_map`).
    dtype, shape, offset
        As in :func:`mmarray.open`: ``dtype`` makes the file raw.
    chunks : int, tuple, dict or "auto"
        As in :func:`dask.array.from_array` (``"auto"``: dask's ``array.chunk-size``).
    mode : {'r', 'r+', 'c'}
        How the workers map the file: read-only, writable through to the file, or
        copy-on-write (private pages, mapped anew for each task).

    Returns
    -------
    dask.array.Array
        Its name (the dask token) comes from the file's identity, never its pages.

    Examples
    --------
    >>> import numpy as np, mmarray.dask as md, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> np.save(p, np.arange(10.0))
    >>> x = md.from_file(p, chunks=4)
    >>> x.chunks
    ((4, 4, 2),)
    >>> float(x.sum().compute(scheduler="threads"))
    45.0
    """
    lay = _layout(path, mode, dtype, shape, operator.index(offset))
    chunks = _chunks(chunks, lay)
    name = "mmarray-file-" + tokenize(
        lay.file, lay.start, lay.shape, lay.strides, lay.dtype.descr, lay.dtype.str, chunks
    )
    return _array(name, _blocks(name, lay, chunks), chunks, lay.dtype)


def _same(lays: list[_Layout], paths: Sequence[Any]) -> None:
    first = lays[0]
    for i, lay in enumerate(lays[1:], 1):
        if (lay.shape, lay.dtype, lay.strides) != (first.shape, first.dtype, first.strides):
            raise ValueError(
                f"from_files: paths[{i}] ({os.fsdecode(paths[i])!r}) holds shape {lay.shape} of "
                f"{lay.dtype} with strides {lay.strides}, but paths[0] "
                f"({os.fsdecode(paths[0])!r}) holds shape {first.shape} of {first.dtype} "
                f"with strides {first.strides}: every file must hold the same array layout"
            )


def from_files(
    paths: Sequence[str | os.PathLike[str]],
    axis: int = 0,
    *,
    dtype: DTypeLike | None = None,
    shape: int | tuple[int, ...] | None = None,
    offset: int = 0,
    chunks: Any = "auto",
    mode: str = "r",
) -> da.Array:
    """A stack of same-shaped files (one per frame, run or day) as one dask array.

    As ``np.stack([mmarray.open(p) for p in paths], axis)``, without reading anything:
    the new axis has one chunk per file, and ``chunks`` chunks each file's own axes.
    The other arguments are those of :func:`from_file`, the same for every file.

    Raises
    ------
    ValueError
        No paths, or a file whose shape, dtype or memory order differs from the first's
        (the message names both files).

    Examples
    --------
    >>> import numpy as np, mmarray.dask as md, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> paths = [os.path.join(d, f"day{i}.npy") for i in range(3)]
    >>> for i, p in enumerate(paths):
    ...     np.save(p, np.full((2, 4), i))
    >>> x = md.from_files(paths)
    >>> x.shape, x.chunks
    ((3, 2, 4), ((1, 1, 1), (2,), (4,)))
    >>> x.sum(axis=(1, 2)).compute(scheduler="threads")
    array([ 0,  8, 16])
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError("from_files needs a sequence of paths; use from_file for one file")
    if not paths:
        raise ValueError("from_files needs at least one path")
    lays = [_layout(p, mode, dtype, shape, operator.index(offset)) for p in paths]
    _same(lays, paths)
    ndim = len(lays[0].shape) + 1
    axis = operator.index(axis)
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim)
    axis %= ndim
    inner = _chunks(chunks, lays[0])
    name = "mmarray-files-" + tokenize(
        [(lay.file, lay.start) for lay in lays],
        axis,
        inner,
        lays[0].dtype.str,
        lays[0].dtype.descr,
        lays[0].strides,
    )
    dsk: dict[Any, Any] = {}
    for i, lay in enumerate(lays):
        part = _blocks(name, lay, inner, (i,))
        for (_, j, *idx), (fn, ref) in part.items():
            key = (name, *idx[:axis], j, *idx[axis:])
            shp, strd = ref.shape, ref.strides
            ref = BlockRef(
                ref.file,
                ref.offset,
                (*shp[:axis], 1, *shp[axis:]),
                (*strd[:axis], 0, *strd[axis:]),
                ref.dtype,
            )
            dsk[key] = (fn, ref)
    allchunks = (*inner[:axis], (1,) * len(lays), *inner[axis:])
    return _array(name, dsk, allchunks, lays[0].dtype)


def _memory_layout(a: np.ndarray[Any, Any]) -> _Layout:
    """The _Layout of a shareable array, from its ArrayRef (plus the file's mtime)."""
    ref = mmarray.share(a)
    st = os.stat(ref.path)
    if (st.st_dev, st.st_ino) != (ref.device, ref.inode):
        raise OSError(errno.ESTALE, "the file was replaced while the array was shared", ref.path)
    mode = "r+" if ref.writeable else "r"
    fref = FileRef(
        ref.path, ref.device, ref.inode, ref.file_size, st.st_mtime_ns, mode, not ref.writeable
    )
    return _Layout(fref, ref.offset + ref.data_offset if ref.length else 0, a)


def from_array(a: np.ndarray[Any, Any], chunks: Any = "auto") -> da.Array:
    """A dask array over an mmarray-backed shareable array, each task a reference.

    ``a`` is any view of a file mapped shared (``mmarray.open(..., 'r'/'r+')``,
    ``mmarray.create``), of ``mmarray.anonymous(shared=True)`` memory or of
    ``mmarray.named`` memory: what :func:`mmarray.share` accepts. Anonymous memory
    is reached through ``/proc/<pid>/fd/<n>`` of this process: workers on this
    machine only, while this process keeps the array.

    Raises
    ------
    ValueError
        ``a`` is not shareable (copy-on-write memory, an ordinary numpy array).

    Examples
    --------
    >>> import mmarray, mmarray.dask as md
    >>> a = mmarray.anonymous((4, 6), "i4")
    >>> a[:] = 1
    >>> x = md.from_array(a[:, ::2], chunks=(2, 3))
    >>> int(x.sum().compute(scheduler="threads"))
    12
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"from_array needs a numpy array, not {type(a).__name__}")
    lay = _memory_layout(a)
    chunks = _chunks(chunks, lay)
    name = "mmarray-array-" + tokenize(
        lay.file, lay.start, lay.shape, lay.strides, lay.dtype.str, lay.dtype.descr, chunks
    )
    return _array(name, _blocks(name, lay, chunks), chunks, lay.dtype)
