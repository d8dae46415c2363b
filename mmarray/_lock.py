"""Inter-process byte-range locks over an array's bytes (open file description locks).

Each lock lives on an open file description of its own, noted in a registry. A forked
child inherits the description, and with it the lock: a child that released it would
release its parent's lock, and a child that kept it open would keep the lock alive
after its parent died. So, at fork, the child closes its copies of every description in
the registry and forgets them; leaving an inherited ``with lock(...)`` block then does
nothing in the child. The registry's lock is held across ``fork()`` (and across opening
and noting a description), so no description is ever open but not yet noted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import numbers
import os
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._extent import array_extent
from ._region import region

__all__ = ["Held", "lock"]

# struct flock on Linux: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
# (native alignment puts 4 bytes of padding after l_whence, and 4 after l_pid).
_FLOCK = "hhqqi4x"
_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
_SETLKW = getattr(fcntl, "F_OFD_SETLKW", 38)


def _flock(kind: int, start: int, length: int) -> bytes:
    return struct.pack(_FLOCK, kind, os.SEEK_SET, start, length, 0)


class _Description:
    """A descriptor of an open file description that holds (or waits for) one lock;
    ``fd`` is -1 once closed, here or, in a forked child, by :func:`_forget_inherited`."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd


_registry_lock = threading.Lock()
_registry: set[_Description] = set()


def _forget_inherited() -> None:
    """In a forked child: close the lock descriptions inherited from the parent (the
    locks stay the parent's, and die with it) and make their release a no-op."""
    for desc in _registry:
        with contextlib.suppress(OSError):
            os.close(desc.fd)
        desc.fd = -1
    _registry.clear()
    _registry_lock.release()  # taken in the parent by the before= hook


os.register_at_fork(
    before=_registry_lock.acquire,
    after_in_parent=_registry_lock.release,
    after_in_child=_forget_inherited,
)


def _new_description(fd: int, exclusive: bool, name: Any) -> _Description:
    """A new open file description of the file behind ``fd`` (a descriptor the caller
    owns), writable for an exclusive lock (``fcntl`` refuses a write lock on a read-only
    description), noted in the registry."""
    flags = (os.O_RDWR if exclusive else os.O_RDONLY) | os.O_CLOEXEC
    with _registry_lock:
        try:
            desc = _Description(os.open(f"/proc/self/fd/{fd}", flags))
        except PermissionError:
            if exclusive:
                raise PermissionError(
                    errno.EACCES, "an exclusive lock needs write permission on the file", name
                ) from None
            raise
        _registry.add(desc)
    return desc


def _release(desc: _Description, start: int, length: int) -> None:
    """Unlock and close ``desc``, unless a fork made it the parent's (then nothing)."""
    with _registry_lock:
        if desc.fd < 0:
            return
        try:
            fcntl.fcntl(desc.fd, _SETLK, _flock(fcntl.F_UNLCK, start, length))
        finally:
            os.close(desc.fd)
            desc.fd = -1
            _registry.discard(desc)


class Held:
    """``with Held(fd, start, length):`` holds an OFD lock on bytes ``[start, start +
    length)`` of the file behind ``fd`` (a descriptor the caller owns, needed only until
    the block starts) for the block: on a description of its own, released on leaving
    the block, never by a forked child. ``timeout`` as for :func:`lock`."""

    __slots__ = ("_desc", "_exclusive", "_fd", "_length", "_name", "_start", "_timeout")

    def __init__(
        self,
        fd: int,
        start: int,
        length: int,
        *,
        exclusive: bool = True,
        timeout: float | None = None,
        name: Any = None,
    ) -> None:
        self._fd, self._start, self._length = fd, start, length
        self._exclusive, self._timeout, self._name = exclusive, timeout, name
        self._desc: _Description | None = None

    def __enter__(self) -> None:
        kind = fcntl.F_WRLCK if self._exclusive else fcntl.F_RDLCK
        desc = _new_description(self._fd, self._exclusive, self._name)
        try:
            if self._timeout is None:
                fcntl.fcntl(desc.fd, _SETLKW, _flock(kind, self._start, self._length))
            else:
                _lock_within(desc.fd, kind, self._start, self._length, self._timeout, self._name)
        except BaseException:
            _release(desc, self._start, self._length)
            raise
        self._desc = desc

    def __exit__(self, *exc: object) -> None:
        if self._desc is not None:
            _release(self._desc, self._start, self._length)
            self._desc = None


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
    if reg is None:
        raise ValueError(_NO_FILE)
    low, length, _ = array_extent(a)
    start = reg.offset + (low - reg.address if length else 0)
    length = max(length, 1)  # l_len 0 would mean "to the end of the file"
    with contextlib.ExitStack() as stack:
        try:  # a descriptor of our own: another thread may close the region meanwhile
            fd = reg.dup()
        except ValueError:  # closed, or private anonymous memory (no descriptor)
            closed = "lock(): operation on a closed Region; " if reg.closed else ""
            raise ValueError(closed + _NO_FILE) from None
        try:
            stack.enter_context(
                Held(fd, start, length, exclusive=exclusive, timeout=timeout, name=reg.name)
            )
        finally:
            os.close(fd)  # the lock lives on a description of its own
        yield


_NO_FILE = (
    "lock() needs an array over a file, anonymous(shared=True) or named() memory "
    "whose region is open"
)


def _check_timeout(timeout: float | None) -> None:
    """TypeError or ValueError unless ``timeout`` is None or non-negative seconds."""
    if timeout is not None:
        if not isinstance(timeout, numbers.Real):
            raise TypeError(f"timeout must be None or a number of seconds, not {timeout!r}")
        if not timeout >= 0:  # NaN too: it would never expire
            raise ValueError(f"timeout must be None or non-negative seconds, got {timeout!r}")


def _lock_within(lfd: int, kind: int, start: int, length: int, timeout: float, name: Any) -> None:
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
                f"{name or 'anonymous memory'} within {timeout} s"
            )
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.05)
