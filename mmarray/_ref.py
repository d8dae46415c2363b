"""References to arrays in shareable memory: :class:`ArrayRef`, :func:`share`, and
mapping a reference again on the receiving side.

An array whose memory is a shareable :class:`Region` (a file mapped ``MAP_SHARED``,
``anonymous(shared=True)`` memory, which is a memfd, or named shared memory) is
described by an :class:`ArrayRef`: where the bytes live, which file that must be
(device, inode and a stamp that changes when the file is replaced, from
:func:`mmarray._core.file_identity`), the byte span the array covers, and its shape,
strides, dtype and writeability. The receiver maps the same pages and rebuilds the
same view.

Two ways of naming the file:

* by path: a file that still has a name. The path is read back from
  ``/proc/self/fd`` when the reference is made, so a renamed file is still found;
  the receiver checks device, inode and stamp (ext4 gives a new file the inode
  number of one just deleted: the stamp tells them apart), and that the file still
  holds the span, so a replaced or truncated file raises ``OSError(ESTALE)`` instead
  of mapping the wrong data.
* by descriptor: memfds and deleted files, which have no name. :func:`share`
  (any transport) names the descriptor as ``/proc/<pid>/fd/<n>``, which works
  only while the sending process keeps the region open. Through multiprocessing
  the descriptor itself travels instead (see :mod:`mmarray._reducer`).

Everything :func:`describe` reads, it reads from a duplicate of the region's
descriptor that it owns (``Region.dup()``), never from the region's own number,
which a concurrent ``close()`` may hand to another file.
"""

from __future__ import annotations

import errno
import operator
import os
from typing import Any

import numpy as np

from ._core import Region, file_identity
from ._core import ndarray as _ndarray
from ._extent import array_extent, strided_extent
from ._region import region
from ._shape import shape_tuple

__all__ = ["ArrayRef", "check_identity", "describe", "open_ref", "share"]


class ArrayRef:
    """A small picklable handle to an array in shareable memory; see :func:`share`.

    ``open()`` maps the same pages and returns an ndarray with the same shape,
    strides, dtype and writeability. Attributes are read-only.
    """

    __slots__ = (
        "kind",
        "path",
        "device",
        "inode",
        "file_size",
        "stamp",
        "offset",
        "length",
        "data_offset",
        "shape",
        "strides",
        "dtype",
        "writeable",
    )
    kind: str
    path: str
    device: int
    inode: int
    file_size: int
    stamp: tuple[tuple[str, int], ...]
    offset: int
    length: int
    data_offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    dtype: np.dtype[Any]
    writeable: bool

    def __init__(self, *fields: Any) -> None:
        if len(fields) != len(self.__slots__):
            raise TypeError(f"ArrayRef takes {len(self.__slots__)} fields, got {len(fields)}")
        for name, value in zip(self.__slots__, fields, strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("ArrayRef is immutable")

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ArrayRef, self._fields())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArrayRef) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (
            f"ArrayRef({self.kind} {self.path!r} offset={self.offset} length={self.length} "
            f"shape={self.shape} dtype={self.dtype} writeable={self.writeable})"
        )

    def open(self) -> np.ndarray[Any, Any]:
        """Map the referenced memory and return the array.

        Raises
        ------
        FileNotFoundError
            The file (or, for a memfd, the process that held it) is gone.
        OSError
            With ``errno.ESTALE`` when the file was replaced (another device or
            inode, or a new file that reuses the inode number: another birth time or
            inode generation) or truncated below the referenced bytes since the
            reference was made.
        """
        return open_ref(self, None)


def _check_ref(ref: ArrayRef) -> np.dtype[Any]:
    """Refuse a malformed reference (a forged or corrupted one) before anything is opened:
    every field of the right type, and the array it describes inside its bytes."""
    if ref.kind not in ("path", "fd"):
        raise ValueError(f"bad ArrayRef: kind must be 'path' or 'fd', not {ref.kind!r}")
    if not isinstance(ref.path, str):
        raise TypeError(f"bad ArrayRef: path must be a str, not {type(ref.path).__name__}")
    for field in ("device", "inode", "offset", "length", "data_offset"):
        value = getattr(ref, field)
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"bad ArrayRef: {field} must be an int, not {value!r}")
        if value < 0:
            raise ValueError(f"bad ArrayRef: {field} must be non-negative, got {value}")
    _check_stamp(ref.stamp)
    if not isinstance(ref.writeable, (bool, np.bool_)):
        raise TypeError(f"bad ArrayRef: writeable must be a bool, not {ref.writeable!r}")
    dt = ref.dtype
    if not isinstance(dt, np.dtype):
        raise TypeError(f"bad ArrayRef: dtype must be a numpy dtype, not {dt!r}")
    if dt.hasobject:
        raise TypeError(f"bad ArrayRef: cannot map arrays of Python objects (dtype {dt})")
    shape, strides = shape_tuple(ref.shape), tuple(operator.index(s) for s in ref.strides)
    if len(strides) != len(shape):
        raise ValueError(f"bad ArrayRef: {len(shape)} dimensions but {len(strides)} strides")
    if 0 not in shape:
        low, high = strided_extent(shape, strides, dt.itemsize)
        lo, hi = ref.data_offset + low, ref.data_offset + high
        if lo < 0 or hi > ref.length:
            raise ValueError(
                f"bad ArrayRef: its array (bytes {lo}..{hi}) does not lie inside "
                f"the {ref.length} bytes it references"
            )
    return dt


def _check_stamp(stamp: Any) -> None:
    """A stamp is what file_identity() gives: one or two (name, int) pairs, names distinct."""
    ok = isinstance(stamp, tuple) and 1 <= len(stamp) <= 2
    for pair in stamp if ok else ():
        ok = ok and (
            isinstance(pair, tuple)
            and len(pair) == 2
            and pair[0] in _STAMP_NAMES
            and isinstance(pair[1], int)
            and not isinstance(pair[1], bool)
        )
    if not ok or len({pair[0] for pair in stamp}) != len(stamp):
        raise TypeError(f"bad ArrayRef: stamp must be (name, value) pairs, not {stamp!r}")


_STAMP_NAMES = {"btime": "birth time", "generation": "inode generation", "ctime": "change time"}


def _open_path(ref: ArrayRef) -> int:
    """A descriptor of the file ``ref.path`` names, or an OSError that says why not."""
    # O_NONBLOCK: a path that now names a FIFO must not block the open
    flags = (os.O_RDWR if ref.writeable else os.O_RDONLY) | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        return os.open(ref.path, flags)
    except FileNotFoundError:
        what = (
            "the process holding this memory exited or closed it"
            if ref.kind == "fd"
            else "the file was deleted or moved"
        )
        raise FileNotFoundError(
            errno.ENOENT, f"cannot open the memory behind an ArrayRef: {what}", ref.path
        ) from None
    except PermissionError:
        how = "reading and writing" if ref.writeable else "reading"
        raise PermissionError(
            errno.EACCES,
            f"cannot open the memory behind an ArrayRef for {how}: this process "
            "lacks the permission (it may run as another user than the sender)",
            ref.path,
        ) from None


def _what_changed(ref: ArrayRef, device: int, inode: int, stamp: Any) -> str:
    if (device, inode) != (ref.device, ref.inode):
        return f"device/inode {device}/{inode}, expected {ref.device}/{ref.inode}"
    now, then = dict(stamp), dict(ref.stamp)
    changed = [
        _STAMP_NAMES[n] for n in sorted(now.keys() | then.keys()) if now.get(n) != then.get(n)
    ]
    how = f"a new file with the same inode number: its {' and '.join(changed)} "
    if list(now) == list(then) == ["ctime"]:
        return how + (
            "differs; this file system keeps neither a birth time nor an inode generation, "
            "so a write or chmod since the reference was made looks the same"
        )
    return how + ("differs" if len(changed) == 1 else "differ")


def check_identity(ref: ArrayRef, fd: int) -> None:
    """OSError(ESTALE) naming ``ref.path`` unless ``fd`` is the file ``ref`` was made of
    (device, inode and stamp) and still holds the referenced bytes."""
    device, inode, size, stamp = file_identity(fd)
    if (device, inode) != (ref.device, ref.inode) or stamp != ref.stamp:
        raise OSError(
            errno.ESTALE,
            "stale ArrayRef: the file was replaced since the reference was made "
            f"({_what_changed(ref, device, inode, stamp)})",
            ref.path,
        )
    if size - ref.offset < ref.length:
        raise OSError(
            errno.ESTALE,
            f"stale ArrayRef: the file was truncated to {size} bytes since the "
            f"reference was made ({ref.file_size} bytes); the array needs bytes "
            f"{ref.offset}..{ref.offset + ref.length}",
            ref.path,
        )


def open_ref(ref: ArrayRef, fd: int | None) -> np.ndarray[Any, Any]:
    """Map ``ref``; ``fd`` is a descriptor of the file when one was passed along (it is
    checked too: a forged reference must not pair one file's descriptor with another's
    description)."""
    dt = _check_ref(ref)
    if ref.length == 0:
        empty = np.ndarray(ref.shape, dt, strides=ref.strides)
        empty.flags.writeable = bool(ref.writeable)
        return empty
    own = fd is None
    if fd is None:
        fd = _open_path(ref)
    try:
        check_identity(ref, fd)
        name = ref.path if ref.kind == "path" else None
        reg = Region(
            fd, ref.length, ref.offset, access="w" if ref.writeable else "r", shared=True, name=name
        )
    finally:
        if own:
            os.close(fd)
    base = _ndarray(reg, np.uint8, (ref.length,))
    return np.ndarray(ref.shape, dt, buffer=base, offset=ref.data_offset, strides=ref.strides)


def _name_of(reg: Region, fd: int) -> tuple[str, str] | None:
    """(kind, path) for a reference to the file open on ``fd`` (a duplicate of ``reg``'s
    descriptor): its path while it has one, else ``/proc/<pid>/fd/<n>`` with ``reg``'s
    own number, which lives as long as the region (None once the region was closed)."""
    if reg.name is not None and os.fstat(fd).st_nlink > 0:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = os.path.abspath(reg.name)
        # " (deleted)": the name we opened is gone (another hard link may remain)
        if not target.endswith(" (deleted)"):
            return "path", target
    try:
        number = reg.fileno()  # only a name: check_identity() refuses another file behind it
    except ValueError:
        return None
    return "fd", f"/proc/{os.getpid()}/fd/{number}"


def describe(a: np.ndarray[Any, Any]) -> tuple[ArrayRef, int] | None:
    """An ArrayRef for ``a`` and a descriptor of its file that the caller owns (and must
    close), or None when ``a`` is not shareable.

    The descriptor is a duplicate (``Region.dup()``) taken first: everything the
    reference says is read from it, so a concurrent ``close()`` of the region cannot
    make it describe whatever file reuses the region's descriptor number."""
    reg = region(a)
    if reg is None or not reg.shared or reg.access == "c" or reg.closed or a.dtype.hasobject:
        return None
    try:
        fd = reg.dup()
    except ValueError:  # closed meanwhile, or private anonymous memory (no descriptor)
        return None
    try:
        low, length, data_offset = array_extent(a)
        rel = low - reg.address if length else 0
        if length and (rel < 0 or reg.size - rel < length):
            raise ValueError("not inside the region")  # cannot happen for views, be safe anyway
        device, inode, size, stamp = file_identity(fd)
        named = _name_of(reg, fd)
        if named is None:
            raise ValueError("closed")
    except ValueError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    ref = ArrayRef(
        named[0],
        named[1],
        device,
        inode,
        size,
        stamp,
        reg.offset + rel,
        length,
        data_offset,
        a.shape,
        a.strides,
        a.dtype,
        bool(a.flags.writeable),
    )
    return ref, fd


def share(a: np.ndarray[Any, Any]) -> ArrayRef:
    """Return a small picklable reference to an array in shareable memory.

    Any view works (slices, steps, negative strides, transposes, dtype views).
    Send the reference by any transport (sockets, queues, dask) and call
    :meth:`ArrayRef.open` on the other side to map the same pages: writes are
    seen both ways. Arrays sent through ``multiprocessing`` need no call to
    ``share``: they travel by reference on their own.

    Parameters
    ----------
    a : numpy.ndarray
        An array over a file mapped ``MAP_SHARED`` (``open(..., 'r'/'r+')``,
        ``create``, ``memmap``), ``anonymous(shared=True)`` memory or ``named()``
        named memory.

    Returns
    -------
    ArrayRef
        For a named file, the reference holds its path and identity (device,
        inode, size) and stays valid while the file does. For anonymous memory
        it names ``/proc/<pid>/fd/<n>`` and is valid only while this process
        keeps the array's region open.

    Raises
    ------
    ValueError
        ``a`` is private (copy-on-write) memory, not backed by mmarray, or its
        region was closed.

    Examples
    --------
    >>> import mmarray, pickle
    >>> a = mmarray.anonymous((3, 4), "f8")
    >>> ref = mmarray.share(a[::-1, 1:3])
    >>> len(pickle.dumps(ref)) < 1024
    True
    >>> b = ref.open()
    >>> b[0, 0] = 5.0
    >>> float(a[2, 1])
    5.0
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"share() needs a numpy array, not {type(a).__name__}")
    got = describe(a)
    if got is None:
        raise ValueError(
            "share() needs an array over shareable memory: a file mapped shared "
            "(mode 'r' or 'r+'), anonymous(shared=True) or named() memory, with its "
            "region still open; copy-on-write and ordinary arrays can only be copied"
        )
    os.close(got[1])
    return got[0]
