"""Inter-process byte-range locks over an array's bytes (open file description locks)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import numbers
import os
import struct
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._core import Region
from ._extent import array_extent
from ._region import region

__all__ = ["lock"]

# struct flock on Linux: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
# (native alignment puts 4 bytes of padding after l_whence, and 4 after l_pid).
_FLOCK = "hhqqi4x"
_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
_SETLKW = getattr(fcntl, "F_OFD_SETLKW", 38)


def _flock(kind: int, start: int, length: int) -> bytes:
    return struct.pack(_FLOCK, kind, os.SEEK_SET, start, length, 0)


@contextlib.contextmanager
def lock(
    a: np.ndarray[Any, Any], *, exclusive: bool = True, timeout: float | None = None
) -> Iterator[None]:
    """Hold an inter-process lock over the bytes of ``a`` in its backing file.

    An open file description lock (``F_OFD_SETLKW``) on the byte range the array
    covers: exclusive (one writer) by default, shared by many readers with
    ``exclusive=False``.
    Each ``lock()`` opens its own description of the file, so it excludes other
    threads of this process as well as other processes; overlapping ranges
    conflict, disjoint ones do not. The lock is released on leaving the block (and
    by the kernel if the process dies). It is advisory: it only excludes other
    ``lock()`` calls (or ``fcntl`` locks) on the same file.

    Parameters
    ----------
    a : numpy.ndarray
        An array over a file (any mode), ``anonymous(shared=True)`` or ``named()``
        memory, or a view of one.
    exclusive : bool
        Take an exclusive (write) lock, the default; ``False`` takes a read lock,
        which other readers may hold at the same time.
    timeout : float, optional
        Seconds to wait at most; ``None`` waits forever, ``0`` tries once. Negative
        and NaN timeouts raise ``ValueError``.

    Raises
    ------
    TimeoutError
        The lock was not obtained within ``timeout``.
    ValueError
        ``a`` has no backing file (private anonymous memory, an ordinary array, or
        a closed region).

    Examples
    --------
    >>> import mmarray
    >>> counter = mmarray.anonymous(1, "i8")
    >>> with mmarray.lock(counter):
    ...     counter[0] += 1
    >>> int(counter[0])
    1
    """
    _check_timeout(timeout)
    reg = region(a)
    if reg is None or reg.closed or reg.fileno() < 0:
        raise ValueError(
            "lock() needs an array over a file, anonymous(shared=True) or named() memory "
            "whose region is open"
        )
    fd = reg.fileno()
    low, length, _ = array_extent(a)
    start = reg.offset + (low - reg.address if length else 0)
    length = max(length, 1)  # l_len 0 would mean "to the end of the file"
    kind = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
    lfd = _open_description(fd, exclusive, reg)
    try:
        if timeout is None:
            fcntl.fcntl(lfd, _SETLKW, _flock(kind, start, length))
        else:
            _lock_within(lfd, kind, start, length, timeout, reg)
        try:
            yield
        finally:
            fcntl.fcntl(lfd, _SETLK, _flock(fcntl.F_UNLCK, start, length))
    finally:
        os.close(lfd)


def _check_timeout(timeout: float | None) -> None:
    """TypeError or ValueError unless ``timeout`` is None or non-negative seconds."""
    if timeout is not None:
        if not isinstance(timeout, numbers.Real):
            raise TypeError(f"timeout must be None or a number of seconds, not {timeout!r}")
        if not timeout >= 0:  # NaN too: it would never expire
            raise ValueError(f"timeout must be None or non-negative seconds, got {timeout!r}")


def _open_description(fd: int, exclusive: bool, reg: Region) -> int:
    """A new open file description of the file behind ``fd``, writable for an exclusive
    lock (``fcntl`` refuses a write lock on a read-only description)."""
    proc = f"/proc/self/fd/{fd}"
    try:
        return os.open(proc, (os.O_RDWR if exclusive else os.O_RDONLY) | os.O_CLOEXEC)
    except PermissionError:
        if not exclusive:
            raise
        raise PermissionError(
            errno.EACCES, "an exclusive lock needs write permission on the file", reg.name
        ) from None


def _lock_within(lfd: int, kind: int, start: int, length: int, timeout: float, reg: Region) -> None:
    """Try the lock, with pauses that double up to 50 ms, until ``timeout`` seconds have
    passed; then TimeoutError."""
    deadline = time.monotonic() + timeout
    pause = 0.0005
    while True:
        try:
            fcntl.fcntl(lfd, _SETLK, _flock(kind, start, length))
            return
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(
                f"could not lock bytes {start}..{start + length} of "
                f"{reg.name or 'anonymous memory'} within {timeout} s"
            )
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.05)
