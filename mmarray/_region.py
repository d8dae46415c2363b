"""What an operation acts on: the Region behind an array, its file, or a file by path.

``region(a)`` is public; the checked forms raise the errors every page and file
operation shares (not mmarray memory, a closed Region, anonymous memory, not a
regular file), each naming the operation.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._core import Region

__all__ = ["open_regular_file", "region", "region_file", "target_region"]


def region(a: Any) -> Region | None:
    """Return the :class:`Region` whose memory ``a`` (or any view of it) uses, else None.

    Examples
    --------
    >>> import mmarray
    >>> a = mmarray.anonymous(10, "u1")
    >>> mmarray.region(a[2:5]) is mmarray.region(a)
    True
    >>> mmarray.region([1, 2]) is None
    True
    """
    obj = a
    for _ in range(64):
        if isinstance(obj, Region):
            return obj
        if isinstance(obj, np.ndarray):
            obj = obj.base
        elif isinstance(obj, memoryview):
            obj = obj.obj
        else:
            return None
    return None


def target_region(x: Any, what: str) -> Region:
    """The open Region behind x (an ndarray over one, or a Region), or a clear TypeError
    (not mmarray memory) or ValueError (a closed Region)."""
    if isinstance(x, Region):
        reg: Region | None = x
    elif not isinstance(x, np.ndarray):
        raise TypeError(f"{what} needs a numpy array or a Region, not {type(x).__name__}")
    else:
        reg = region(x)
    if reg is None:
        raise TypeError(
            f"{what} needs an array whose memory is an mmarray Region (from mmarray.open, "
            "create, anonymous or memmap); this array's memory is not"
        )
    if reg.closed:  # refused even when there is nothing to do (an empty view)
        raise ValueError(f"{what}: operation on a closed Region")
    return reg


@contextlib.contextmanager
def region_file(reg: Region, what: str) -> Iterator[int]:
    """A descriptor of the file under ``reg`` that the operation owns for the block
    (``Region.dup()``, closed on leaving it): never the region's own number, which a
    concurrent ``close()`` frees for whatever file is opened next. ValueError for
    anonymous memory or a closed region."""
    if reg.is_anonymous:  # shared anonymous memory has a memfd, but no file
        raise ValueError(f"{what} needs a file-backed array; this one is anonymous memory")
    try:
        fd = reg.dup()
    except ValueError:  # closed, maybe by another thread since the caller looked
        raise ValueError(f"{what}: operation on a closed Region") from None
    try:
        yield fd
    finally:
        os.close(fd)


def open_regular_file(path: str | bytes | os.PathLike[str]) -> int:
    """A read-only descriptor of the regular file at ``path``, or a clear OSError/ValueError.

    ``O_NONBLOCK`` so that a FIFO is refused at once instead of blocking the open."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "a directory, not a file", path)
        if not stat.S_ISREG(mode):
            raise ValueError(f"{os.fsdecode(os.fspath(path))}: not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd
