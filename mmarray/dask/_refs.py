"""The small references a dask task holds instead of data, and their dask tokens.

A :class:`FileRef` names one file as the client saw it (path, device, inode, size,
modification time in ns) and how to map it (mode); a :class:`BlockRef` is one chunk
of an array in that file (byte offset of its first element, shape, strides, dtype).
Both pickle as their fields (a few hundred bytes), and their dask token is the
file's identity plus the chunk's place: dask never reads a page to name a chunk.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from dask.base import normalize_token

__all__ = ["BlockRef", "FileRef", "file_ref"]


class _Fields:
    """An immutable record with ``__slots__`` that pickles as its fields."""

    __slots__: tuple[str, ...] = ()

    def __init__(self, *fields: Any) -> None:
        if len(fields) != len(self.__slots__):
            raise TypeError(f"{type(self).__name__} takes {len(self.__slots__)} fields")
        for name, value in zip(self.__slots__, fields, strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self.fields())

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.fields() == other.fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self.fields())


class FileRef(_Fields):
    """One file as the client saw it.

    ``path`` is the client's absolute path; ``mode`` is ``'r'``, ``'r+'`` or ``'c'`` as
    in :func:`mmarray.open`. ``check_mtime``: a worker refuses the file when its
    modification time changed (False for memory that is written while in use).
    """

    __slots__ = ("path", "device", "inode", "size", "mtime_ns", "mode", "check_mtime")
    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int
    mode: str
    check_mtime: bool

    def __repr__(self) -> str:
        return f"FileRef({self.path!r}, inode={self.inode}, size={self.size}, mode={self.mode!r})"


class BlockRef(_Fields):
    """One chunk: ``file``, the byte ``offset`` of its first element, shape, strides, dtype."""

    __slots__ = ("file", "offset", "shape", "strides", "dtype")
    file: FileRef
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    dtype: np.dtype[Any]

    def __repr__(self) -> str:
        return f"BlockRef({self.file.path!r}, offset={self.offset}, shape={self.shape})"


def file_ref(path: str, st: os.stat_result, mode: str, check_mtime: bool) -> FileRef:
    """The FileRef of the file whose ``fstat`` is ``st``."""
    return FileRef(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, mode, check_mtime)


@normalize_token.register(FileRef)
def _token_file(ref: FileRef) -> tuple[Any, ...]:
    return ("mmarray.dask.FileRef", *ref.fields())


@normalize_token.register(BlockRef)
def _token_block(ref: BlockRef) -> tuple[Any, ...]:
    return (
        "mmarray.dask.BlockRef",
        _token_file(ref.file),
        ref.offset,
        ref.shape,
        ref.strides,
        ref.dtype.str,
        ref.dtype.descr,
    )
