"""Arrays through multiprocessing travel by reference: the reducer and its import hook.

multiprocessing's pickler (``ForkingPickler``) sends an array in shareable memory
as an :class:`~mmarray._ref.ArrayRef`. The descriptor itself travels where it is
cheap and cannot be left behind: every shareable array among the arguments of a
process being started (``multiprocessing.reduction.DupFd``: passed with the process
under ``spawn`` and ``forkserver``; ``fork`` pickles nothing). Elsewhere (queues,
pipes, pool tasks and results) memfds and deleted files, which have no name, send
their descriptor through the sender's resource sharer (a Unix socket the receiver
connects to when it unpickles); files with a name send their path and identity,
which the receiver checks (:func:`~mmarray._ref.check_identity`).

A reference that cannot be mapped again on the receiving side (the file replaced:
``ESTALE``; no permission; the sender of a memfd gone) does not raise while
unpickling: multiprocessing's workers take an ``OSError`` there for a closed pipe
and exit, which hangs ``Pool.map`` and breaks a ``ProcessPoolExecutor``. The
receiver gets an :class:`UnavailableArray` instead, which raises the real error as
soon as it is used, so the task fails with it and the caller sees it.

Only that pickler sends references; plain :func:`pickle.dumps` keeps numpy's
by-value format, so a pickle written to disk never depends on a file staying put.
Copy-on-write regions and arrays that mmarray does not back travel by value
everywhere. Importing multiprocessing is slow, so the reducer is registered only
once something imports ``multiprocessing.reduction``
(:func:`~mmarray._import_hook.when_imported`). loky's and joblib's picklers use the
same reducer (:mod:`mmarray._joblib`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import weakref
from typing import Any, NoReturn

import numpy as np

from ._import_hook import when_imported
from ._memmap import memmap
from ._ref import ArrayRef, describe, open_ref
from ._region import region

__all__ = ["UnavailableArray", "install_reducer", "reduce_array", "reduce_shared"]


class UnavailableArray:
    """What arrives in place of an array that could not be mapped again.

    Any use raises the error that mapping it raised: ``np.asarray``, numpy's
    functions, attributes, indexing, ``len``, iteration, arithmetic.

    Examples
    --------
    >>> import errno
    >>> x = UnavailableArray(OSError(errno.ESTALE, "stale ArrayRef", "/tmp/a.npy"))
    >>> x.shape
    Traceback (most recent call last):
      ...
    OSError: [Errno 116] stale ArrayRef: '/tmp/a.npy'
    """

    __slots__ = ("error", "_tb")
    error: BaseException

    def __init__(self, error: BaseException) -> None:
        object.__setattr__(self, "error", error)
        object.__setattr__(self, "_tb", error.__traceback__)

    def reraise(self) -> NoReturn:
        """Raise the error that mapping the array raised (with the traceback of that
        failure, not one that grows with every use)."""
        raise self.error.with_traceback(self._tb)

    def __getattr__(self, name: str) -> NoReturn:
        self.reraise()

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        self.reraise()

    def __array__(self, *args: Any, **kwargs: Any) -> NoReturn:
        self.reraise()

    def __reduce__(self) -> tuple[Any, ...]:
        return (UnavailableArray, (self.error,))

    def __repr__(self) -> str:
        return f"<UnavailableArray: {self.error!r}>"


def _raising(self: UnavailableArray, *args: Any) -> NoReturn:
    self.reraise()


for _name in (
    "getitem setitem delitem len iter contains bool index int float complex "
    "lt le gt ge neg pos abs invert add radd sub rsub mul rmul truediv rtruediv "
    "floordiv rfloordiv mod rmod pow rpow matmul rmatmul and rand or ror xor rxor "
    "lshift rlshift rshift rrshift iadd isub imul itruediv"
).split():
    setattr(UnavailableArray, f"__{_name}__", _raising)


def _rebuild(ref: ArrayRef) -> Any:
    try:
        return open_ref(ref, None)
    except Exception as e:
        return UnavailableArray(e)


def _sender_gone(ref: ArrayRef, err: BaseException) -> OSError:
    """ProcessLookupError (ESRCH) that says what happened (the socket of the sender's
    resource sharer refused, reset or vanished: ECONNREFUSED, ECONNRESET, ENOENT or an
    EOFError, as the race went) and what to do."""
    e = OSError(
        errno.ESRCH,
        "memory without a name (anonymous memory, or a file deleted while mapped) travels "
        "by descriptor, and the process that sent it exited before it was received: use "
        "a file or mmarray.named() memory, or keep the sender alive until it is received "
        f"({type(err).__name__}: {err})",
        ref.path,
    )
    e.__cause__ = err
    return e


def _rebuild_fd(ref: ArrayRef, dupfd: Any) -> Any:
    try:
        fd = dupfd.detach()
    except (OSError, EOFError) as e:  # the sender's resource sharer is gone
        return _rebuild(ref) if ref.kind == "path" else UnavailableArray(_sender_gone(ref, e))
    except Exception as e:  # an AuthenticationError, say: deferred as it is
        return UnavailableArray(e)
    try:
        return open_ref(ref, fd)
    except Exception as e:
        return UnavailableArray(e)
    finally:
        # A descriptor from the resource sharer is ours; one passed with a spawned
        # process may be shared by several references, and is left open.
        if type(dupfd).__module__ == "multiprocessing.resource_sharer":
            os.close(fd)


def _rebuild_memmap(
    rebuild: Any, args: tuple[Any, ...], filename: Any, offset: Any, mode: Any
) -> Any:
    arr = rebuild(*args)
    if isinstance(arr, UnavailableArray):
        return arr
    m = arr.view(memmap)
    m._mmap = region(arr)
    m.filename, m.offset, m.mode = filename, offset, mode
    return m


def _popen_dupfd(popen: Any, ref: ArrayRef, fd: int) -> Any:
    """The DupFd that passes ``fd`` (ours: this takes it over) with the process being
    started, one per file and access mode (spawn refuses the same descriptor twice in
    its list of descriptors to pass); the descriptor is closed when the process object
    goes."""
    cache = popen.__dict__.setdefault("_mmarray_dupfds", {})
    key = (ref.device, ref.inode, fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE)
    if key in cache:
        os.close(fd)
        return cache[key]
    try:
        cache[key] = popen.DupFd(popen.duplicate_for_child(fd))
        weakref.finalize(popen, os.close, fd)
    except BaseException:
        os.close(fd)
        raise
    return cache[key]


def _by_reference(ref: ArrayRef, fd: int) -> tuple[Any, ...]:
    """How to send ``ref``, given a descriptor of its file that this takes over."""
    from multiprocessing.context import get_spawning_popen

    popen = get_spawning_popen()
    if ref.length and popen is not None:
        return (_rebuild_fd, (ref, _popen_dupfd(popen, ref, fd)))
    try:
        if ref.kind == "fd" and ref.length:
            from multiprocessing.resource_sharer import DupFd

            return (_rebuild_fd, (ref, DupFd(fd)))  # DupFd sends a duplicate of its own
        return (_rebuild, (ref,))
    finally:
        os.close(fd)


def reduce_shared(a: np.ndarray[Any, Any]) -> tuple[Any, ...] | None:
    """How to send ``a`` by reference (a ``__reduce__`` tuple), or None when mmarray does
    not back it with shareable memory (plain, copy-on-write, closed or object arrays)."""
    try:
        got = describe(a)
    except (OSError, ValueError):
        got = None
    if got is None:
        return None
    rv = _by_reference(*got)
    if type(a) is not np.ndarray:
        attrs = tuple(getattr(a, k, None) for k in ("filename", "offset", "mode"))
        rv = (_rebuild_memmap, (rv[0], rv[1], *attrs))
    return rv


def reduce_array(a: np.ndarray[Any, Any]) -> tuple[Any, ...]:
    """The reducer of IPC picklers: a reference for shareable arrays, numpy's format otherwise."""
    rv = reduce_shared(a)
    return a.__reduce__() if rv is None else rv  # type: ignore[return-value]  # always a tuple


def _register(forking_pickler: Any) -> None:
    forking_pickler.register(np.ndarray, reduce_array)
    forking_pickler.register(memmap, reduce_array)


def install_reducer() -> None:
    """Register the reducer with multiprocessing's pickler, now or once it is imported."""
    when_imported("multiprocessing.reduction", lambda module: _register(module.ForkingPickler))
