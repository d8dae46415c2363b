"""Named shared memory: :func:`named` and :func:`unlink`.

A POSIX shared memory object, ``/dev/shm/<name>``, that starts with a ``.npy``
header, so attaching needs only the name. Its lifetime is explicit: it exists
until :func:`unlink`.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from . import _npy
from ._core import Region
from ._core import ndarray as _ndarray
from ._extent import contiguous_nbytes
from ._shape import checked_dtype, expand_subarray, shape_tuple

__all__ = ["named", "unlink"]

_SHM_DIR = "/dev/shm"
_NAME_RE = re.compile(r"/?([^/\x00]{1,250})")
_NAME_MAX = 255  # bytes in a file name (NAME_MAX)


def _shm_path(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    m = _NAME_RE.fullmatch(name)
    if m is None or m.group(1) in (".", "..") or len(os.fsencode(m.group(1))) > _NAME_MAX:
        raise ValueError(
            f"bad shared memory name {name!r}: 1-250 characters (at most {_NAME_MAX} bytes "
            "encoded), no '/' or NUL, not '.' or '..'"
        )
    # the name is one path component (checked above): it cannot leave /dev/shm
    return os.path.join(_SHM_DIR, m.group(1))


def named(
    name: str,
    shape: int | tuple[int, ...] | None = None,
    dtype: DTypeLike | None = None,
    *,
    create: bool = False,
) -> np.ndarray[Any, Any]:
    """Create or attach POSIX shared memory under a name, as an array.

    The memory starts with a ``.npy`` header (padded to 64 bytes), so attaching
    needs only the name, and ``np.load('/dev/shm/' + name, mmap_mode='r+')``
    reads it too. The object is ``/dev/shm/<name>``, the same one
    ``multiprocessing.shared_memory.SharedMemory(name)`` opens (its ``buf``
    holds the header, then the data).

    The pages are reserved at creation (``posix_fallocate``), so a ``/dev/shm``
    too small for the array (64 MB by default in containers) fails here with
    ``OSError(ENOSPC)`` rather than with ``SIGBUS`` later.

    Lifetime is explicit: the memory exists until :func:`unlink` (or a reboot),
    whoever created it and whichever processes exit. mmarray never registers it
    with multiprocessing's resource tracker. (Attaching with ``SharedMemory(name)``
    on Python < 3.13 does register it, and that process's tracker unlinks it when
    the process ends; pass ``track=False`` on 3.13+.)

    Parameters
    ----------
    name : str
        1-250 characters without ``/`` (one leading ``/``, POSIX style, is accepted).
    shape, dtype : optional
        Required with ``create=True``. When attaching, if given they must match
        the header.
    create : bool
        Create a new object (permissions 0600); fails with ``FileExistsError``
        if the name is taken. ``False``: attach to an existing one.

    Returns
    -------
    numpy.ndarray
        Writable, shared between every process that attaches.

    Examples
    --------
    >>> import mmarray, os
    >>> name = f"mmarray-doc-{os.getpid()}"
    >>> a = mmarray.named(name, (2, 3), "i4", create=True)
    >>> a[1] = 7
    >>> b = mmarray.named(name)
    >>> b
    array([[0, 0, 0],
           [7, 7, 7]], dtype=int32)
    >>> oct(os.stat("/dev/shm/" + name).st_mode & 0o777)
    '0o600'
    >>> mmarray.unlink(name)
    """
    path = _shm_path(name)
    if create:
        if shape is None or dtype is None:
            raise TypeError("named(..., create=True) needs shape and dtype")
        return _create(path, shape, dtype)
    return _attach(path, shape, dtype)


def _create(path: str, shape: Any, dtype: DTypeLike) -> np.ndarray[Any, Any]:
    """Create the object at ``path`` (0600, its pages reserved) and map it."""
    shp, dt = expand_subarray(shape_tuple(shape), checked_dtype(dtype))
    _npy.check_shape(shp, dt.itemsize)
    header = _npy.make_header(shp, dt, False)
    total = len(header) + contiguous_nbytes(shp, dt.itemsize)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    ok = False
    try:
        os.fchmod(fd, 0o600)
        try:
            # reserve the pages now: a full /dev/shm fails here with ENOSPC
            # instead of killing a process with SIGBUS at its first write
            os.posix_fallocate(fd, 0, total)
        except OSError as e:
            raise OSError(
                e.errno, f"cannot reserve {total} bytes of shared memory: {e.strerror}", path
            ) from None
        os.pwrite(fd, header, 0)
        reg = Region(fd, total, 0, access="w", name=path)
        arr = _ndarray(reg, dt, shp, len(header))
        ok = True
    finally:
        os.close(fd)
        if not ok:
            os.unlink(path)
    return arr


def _attach(path: str, shape: Any, dtype: DTypeLike | None) -> np.ndarray[Any, Any]:
    """Map the existing object at ``path``, checking its header (and shape and dtype
    against it, where given)."""
    # O_NOFOLLOW as shm_open: /dev/shm is world-writable, so a symbolic link planted
    # under the name must not make us map (and write) the file it points to
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path}: not a shared memory object (not a regular file)")
        reg = Region(fd, 0, 0, access="w", name=path)
    finally:
        os.close(fd)
    try:
        buf = memoryview(reg)
        try:
            if len(buf) < 6 or not _npy.is_npy(buf[:6].tobytes()):
                raise ValueError(f"{path}: not mmarray shared memory (no .npy header)")
            span = _npy.header_span(buf, path)
            raw = buf[:span].tobytes()
        finally:
            buf.release()
        try:
            shp, fortran, dt = _npy.parse_header(raw)
        except ValueError as e:
            raise ValueError(f"{path}: bad header: {e}") from None
        if shape is not None and shape_tuple(shape) != shp:
            raise ValueError(f"{path}: shape {shape} does not match the header's {shp}")
        if dtype is not None and np.dtype(dtype) != dt:
            raise ValueError(f"{path}: dtype {np.dtype(dtype)} does not match the header's {dt}")
        if reg.size - span < contiguous_nbytes(shp, dt.itemsize):
            raise ValueError(f"{path}: the object is smaller than its header says")
        return _ndarray(reg, dt, shp, span, fortran)
    except BaseException:
        reg.close()
        raise


def unlink(name: str) -> None:
    """Remove the named shared memory ``name``; processes that mapped it keep their mapping.

    Raises ``FileNotFoundError`` when there is no such name.

    Examples
    --------
    >>> import mmarray, os
    >>> name = f"mmarray-doc-unlink-{os.getpid()}"
    >>> _ = mmarray.named(name, 4, "u1", create=True)
    >>> mmarray.unlink(name)
    >>> os.path.exists("/dev/shm/" + name)
    False
    """
    os.unlink(_shm_path(name))
