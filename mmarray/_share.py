"""Sharing arrays between processes: references, the multiprocessing reducer, named memory.

How an array travels
--------------------
An array whose memory is a shareable :class:`Region` (a file mapped ``MAP_SHARED``,
``anonymous(shared=True)`` memory, which is a memfd, or named shared memory) is
described by an :class:`ArrayRef`: where the bytes live, which file that must be
(device and inode), the byte span the array covers, and its shape, strides, dtype
and writeability. The receiver maps the same pages and rebuilds the same view.

Two ways of naming the file:

* by path: a file that still has a name. The path is read back from
  ``/proc/self/fd`` when the reference is made, so a renamed file is still found;
  the receiver checks device and inode, and that the file still holds the span,
  so a replaced or truncated file raises ``OSError(ESTALE)`` instead of mapping
  the wrong data.
* by descriptor: memfds and deleted files, which have no name. Through
  multiprocessing the descriptor itself travels (``multiprocessing.reduction.DupFd``:
  inherited or passed with the process at start, otherwise sent over a Unix socket
  by the sender's resource sharer), so the receiver holds the memory even if the
  sender drops its array. :func:`share` (any transport) names the descriptor as
  ``/proc/<pid>/fd/<n>`` instead, which works only while the sending process
  keeps the region open.

Only multiprocessing's pickler (``ForkingPickler``) sends references; plain
:func:`pickle.dumps` keeps numpy's by-value format, so a pickle written to disk
never depends on a file staying put. Copy-on-write regions and arrays that
mmarray does not back travel by value everywhere.
"""

from __future__ import annotations

import errno
import math
import operator
import os
import re
import stat
import sys
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from . import _npy
from ._api import _checked_dtype, _expand_subarray, _shape_tuple, region
from ._core import Region
from ._core import ndarray as _ndarray

__all__ = ["ArrayRef", "named", "share", "unlink"]

_SHM_DIR = "/dev/shm"
_NAME_RE = re.compile(r"/?([^/\x00]{1,250})")
_NAME_MAX = 255  # bytes in a file name (NAME_MAX)


def _span(a: np.ndarray[Any, Any]) -> tuple[int, int, int]:
    """Return (lowest byte address, number of bytes, offset of element 0) that ``a`` covers."""
    start = a.__array_interface__["data"][0]
    if a.size == 0:
        return start, 0, 0
    low = high = 0
    for n, s in zip(a.shape, a.strides, strict=True):
        if s < 0:
            low += (n - 1) * s
        else:
            high += (n - 1) * s
    return start + low, high - low + a.itemsize, -low


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
            inode) or truncated below the referenced bytes since the reference was made.
        """
        return _open_ref(self, None)


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
    if not isinstance(ref.writeable, (bool, np.bool_)):
        raise TypeError(f"bad ArrayRef: writeable must be a bool, not {ref.writeable!r}")
    dt = ref.dtype
    if not isinstance(dt, np.dtype):
        raise TypeError(f"bad ArrayRef: dtype must be a numpy dtype, not {dt!r}")
    if dt.hasobject:
        raise TypeError(f"bad ArrayRef: cannot map arrays of Python objects (dtype {dt})")
    shape, strides = _shape_tuple(ref.shape), tuple(operator.index(s) for s in ref.strides)
    if len(strides) != len(shape):
        raise ValueError(f"bad ArrayRef: {len(shape)} dimensions but {len(strides)} strides")
    if 0 not in shape:
        lo = hi = ref.data_offset
        for n, s in zip(shape, strides, strict=True):
            if s < 0:
                lo += (n - 1) * s
            else:
                hi += (n - 1) * s
        if lo < 0 or hi + dt.itemsize > ref.length:
            raise ValueError(
                f"bad ArrayRef: its array (bytes {lo}..{hi + dt.itemsize}) does not lie inside "
                f"the {ref.length} bytes it references"
            )
    return dt


def _open_ref(ref: ArrayRef, fd: int | None) -> np.ndarray[Any, Any]:
    """Map ``ref``; ``fd`` is a descriptor of the file when one was passed along."""
    dt = _check_ref(ref)
    if ref.length == 0:
        empty = np.ndarray(ref.shape, dt, strides=ref.strides)
        empty.flags.writeable = bool(ref.writeable)
        return empty
    own = fd is None
    if fd is None:
        # O_NONBLOCK: a path that now names a FIFO must not block the open
        flags = (os.O_RDWR if ref.writeable else os.O_RDONLY) | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(ref.path, flags)
        except FileNotFoundError:
            what = (
                "the process holding this memory exited or closed it"
                if ref.kind == "fd"
                else ("the file was deleted or moved")
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
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (ref.device, ref.inode):
            raise OSError(
                errno.ESTALE,
                f"stale ArrayRef: the file was replaced since the reference was made "
                f"(device/inode {st.st_dev}/{st.st_ino}, expected {ref.device}/{ref.inode})",
                ref.path,
            )
        if st.st_size - ref.offset < ref.length:
            raise OSError(
                errno.ESTALE,
                f"stale ArrayRef: the file was truncated to {st.st_size} bytes since the "
                f"reference was made ({ref.file_size} bytes); the array needs bytes "
                f"{ref.offset}..{ref.offset + ref.length}",
                ref.path,
            )
        name = ref.path if ref.kind == "path" else None
        reg = Region(
            fd, ref.length, ref.offset, access="w" if ref.writeable else "r", shared=True, name=name
        )
    finally:
        if own:
            os.close(fd)
    base = _ndarray(reg, np.uint8, (ref.length,))
    return np.ndarray(ref.shape, dt, buffer=base, offset=ref.data_offset, strides=ref.strides)


def _describe(a: np.ndarray[Any, Any]) -> tuple[ArrayRef, int] | None:
    """An ArrayRef for ``a`` and its region's descriptor, or None when ``a`` is not shareable."""
    reg = region(a)
    if reg is None or not reg.shared or reg.access == "c" or reg.closed:
        return None
    fd = reg.fileno()
    if fd < 0:
        return None
    if a.dtype.hasobject:
        return None
    low, length, data_offset = _span(a)
    st = os.fstat(fd)
    rel = low - reg.address if length else 0
    if length and (rel < 0 or reg.size - rel < length):
        return None  # not inside the region: cannot happen for views, be safe anyway
    kind, path = "fd", f"/proc/{os.getpid()}/fd/{fd}"
    if reg.name is not None and st.st_nlink > 0:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = os.path.abspath(reg.name)
        # " (deleted)": the name we opened is gone (another hard link may remain)
        if not target.endswith(" (deleted)"):
            kind, path = "path", target
    ref = ArrayRef(
        kind,
        path,
        st.st_dev,
        st.st_ino,
        st.st_size,
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
    got = _describe(a)
    if got is None:
        raise ValueError(
            "share() needs an array over shareable memory: a file mapped shared "
            "(mode 'r' or 'r+'), anonymous(shared=True) or named() memory, with its "
            "region still open; copy-on-write and ordinary arrays can only be copied"
        )
    return got[0]


# ---- the multiprocessing reducer ---------------------------------------------------------


def _rebuild(ref: ArrayRef) -> np.ndarray[Any, Any]:
    return _open_ref(ref, None)


def _rebuild_fd(ref: ArrayRef, dupfd: Any) -> np.ndarray[Any, Any]:
    fd = dupfd.detach()
    try:
        return _open_ref(ref, fd)
    finally:
        # A descriptor from the resource sharer is ours; one passed with a spawned
        # process may be shared by several references, and is left open.
        if type(dupfd).__module__ == "multiprocessing.resource_sharer":
            os.close(fd)


def _rebuild_memmap(
    rebuild: Any, args: tuple[Any, ...], filename: Any, offset: Any, mode: Any
) -> Any:
    from ._memmap import memmap

    arr = rebuild(*args)
    m = arr.view(memmap)
    m._region = region(arr)
    m.filename, m.offset, m.mode = filename, offset, mode
    return m


def _dupfd(fd: int) -> Any:
    """multiprocessing's DupFd for fd, one per descriptor while a process is being started
    (spawn refuses the same descriptor twice in its list of descriptors to pass)."""
    from multiprocessing.context import get_spawning_popen
    from multiprocessing.reduction import DupFd

    popen = get_spawning_popen()
    if popen is None:
        return DupFd(fd)
    cache = popen.__dict__.setdefault("_mmarray_dupfds", {})
    if fd not in cache:
        cache[fd] = DupFd(fd)
    return cache[fd]


def _reduce_array(a: np.ndarray[Any, Any]) -> tuple[Any, ...]:
    """ForkingPickler reducer: a reference for shareable arrays, numpy's own format otherwise."""
    try:
        got = _describe(a)
    except (OSError, ValueError):
        got = None
    if got is None:
        return a.__reduce__()  # type: ignore[return-value]  # numpy's is always a tuple
    ref, fd = got
    if ref.kind == "fd" and ref.length:
        rv: tuple[Any, ...] = (_rebuild_fd, (ref, _dupfd(fd)))
    else:
        rv = (_rebuild, (ref,))
    if type(a) is not np.ndarray:
        attrs = tuple(getattr(a, k, None) for k in ("filename", "offset", "mode"))
        rv = (_rebuild_memmap, (rv[0], rv[1], *attrs))
    return rv


def _register(forking_pickler: Any) -> None:
    from ._memmap import memmap

    forking_pickler.register(np.ndarray, _reduce_array)
    forking_pickler.register(memmap, _reduce_array)


class _RegisteringLoader:
    """Wraps the loader of multiprocessing.reduction to register the reducer once it ran."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def create_module(self, spec: Any) -> Any:
        return self._inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._inner.exec_module(module)
        _register(module.ForkingPickler)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _ReductionHook:
    """Meta path finder: importing multiprocessing costs ~7 ms, so wait until someone does."""

    @classmethod
    def find_spec(cls, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "multiprocessing.reduction":
            return None
        if cls in sys.meta_path:
            sys.meta_path.remove(cls)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


def _install_reducer() -> None:
    mod = sys.modules.get("multiprocessing.reduction")
    if mod is not None:
        _register(mod.ForkingPickler)
    elif _ReductionHook not in sys.meta_path:
        sys.meta_path.insert(0, _ReductionHook)


# ---- named shared memory -----------------------------------------------------------------


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
        shp, dt = _expand_subarray(_shape_tuple(shape), _checked_dtype(dtype))
        _npy.check_shape(shp, dt.itemsize)
        header = _npy.make_header(shp, dt, False)
        total = len(header) + math.prod(shp) * dt.itemsize
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
        if shape is not None and _shape_tuple(shape) != shp:
            raise ValueError(f"{path}: shape {shape} does not match the header's {shp}")
        if dtype is not None and np.dtype(dtype) != dt:
            raise ValueError(f"{path}: dtype {np.dtype(dtype)} does not match the header's {dt}")
        if reg.size - span < math.prod(shp) * dt.itemsize:
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
