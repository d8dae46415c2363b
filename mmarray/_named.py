"""Named shared memory: :func:`named` and :func:`unlink`.

A POSIX shared memory object, ``/dev/shm/<name>``, that starts with a ``.npy``
header, so attaching needs only the name. Its lifetime is explicit: it exists
until :func:`unlink`.
"""

from __future__ import annotations

import errno
import os
import pwd
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
_OWNERS = ("self", "any")


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
    owner: str = "self",
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
    owner : {'self', 'any'}
        Whose objects to attach to. ``'self'`` (the default): only an object owned
        by this process's effective user and writable by no one else (mode without
        group or other write bits); anything else raises ``PermissionError``. An
        object that another user may write can be truncated under this process,
        which then dies of ``SIGBUS`` at its next access. ``'any'``: attach to
        whatever the name holds, trusting whoever may write it. Ignored with
        ``create=True`` (a new object is always this user's, 0600).

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
    if owner not in _OWNERS:
        raise ValueError(f"owner must be 'self' or 'any', not {owner!r}")
    if create:
        if shape is None or dtype is None:
            raise TypeError("named(..., create=True) needs shape and dtype")
        return _create(path, shape, dtype)
    return _attach(path, shape, dtype, owner == "any")


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


def _attach(
    path: str, shape: Any, dtype: DTypeLike | None, any_owner: bool
) -> np.ndarray[Any, Any]:
    """Map the existing object at ``path``, checking its owner and mode (unless
    ``any_owner``) and its header (and shape and dtype against it, where given)."""
    # O_NOFOLLOW as shm_open: /dev/shm is world-writable, so a symbolic link planted
    # under the name must not make us map (and write) the file it points to
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)  # the object we hold, not whatever the name holds by now
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path}: not a shared memory object (not a regular file)")
        if not any_owner:
            _check_trusted(path, st)
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


def _check_trusted(path: str, st: os.stat_result) -> None:
    """Raise PermissionError unless the object ``st`` describes belongs to this
    process's effective user and no one else may write it."""
    me = os.geteuid()
    if st.st_uid != me:
        raise PermissionError(
            errno.EPERM,
            f"shared memory owned by {_user(st.st_uid)}, not by this process's user "
            f"{_user(me)}: its owner could truncate it under this process (SIGBUS); "
            "pass owner='any' to attach to it anyway",
            path,
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PermissionError(
            errno.EPERM,
            f"shared memory with mode {stat.S_IMODE(st.st_mode):#o}, writable by other "
            "users, who could truncate it under this process (SIGBUS); pass owner='any' "
            "to attach to it anyway",
            path,
        )


def _user(uid: int) -> str:
    """``uid`` with its user name where it has one: ``uid 1000 (alice)``."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


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
