"""Public constructors: open, create, anonymous."""

from __future__ import annotations

import errno
import operator
import os
import secrets
import stat
import sys
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import DTypeLike

from . import _npy
from ._cache import advise, prefetch
from ._core import Region
from ._core import ndarray as _ndarray
from ._extent import contiguous_nbytes
from ._grow import NoGrowDuring
from ._shape import checked_dtype, expand_subarray, order_is_fortran, shape_tuple

__all__ = ["open", "create", "anonymous"]

_OPEN_MODES = {"r": ("r", True), "r+": ("w", True), "c": ("c", False)}
_ALLOCATE = ("sparse", "reserve")
_pyopen = open
_NEW_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def open(  # noqa: A001 - the public name is mmarray.open
    path: str | os.PathLike[str],
    mode: str = "r",
    *,
    dtype: DTypeLike | None = None,
    shape: int | tuple[int, ...] | None = None,
    offset: int | None = None,
    order: str = "C",
    advice: str | None = None,
    populate: bool = False,
) -> np.ndarray[Any, Any]:
    """Map an existing raw or ``.npy`` file and return a numpy array over it.

    No data is read: pages are loaded when first touched, so files larger than
    RAM open instantly.

    Parameters
    ----------
    path : str or os.PathLike
        The file. A file that starts with the ``.npy`` magic string is
        self-describing; anything else is raw and needs ``dtype``.
    mode : {'r', 'r+', 'c'}
        ``'r'`` read-only array, ``'r+'`` writes go to the file, ``'c'``
        copy-on-write: writes stay in this process's memory.
    dtype : data-type, optional
        Element type of a raw file. Giving it makes any file raw: a ``.npy``
        file is then mapped from byte ``offset``, which must be given (the
        header's own bytes are data from ``offset=0``; the header's data offset
        skips them). Without ``offset=``, a file named ``*.npy`` that starts
        with the ``.npy`` magic string is refused with a ``ValueError`` that
        names the header's dtype and its data offset, since reading its header
        as data is a mistake more often than not (``np.memmap`` does it
        silently). Other names are not looked into: opening reads nothing.
    shape : int or tuple of ints, optional
        Shape of a raw file's array; by default as many elements as fit after
        ``offset``. For ``.npy`` files it may be given only if it equals the header's.
    offset : int, optional
        Byte offset of a raw file's data (any value, not only page multiples);
        0 if not given. Not allowed for ``.npy`` files opened without ``dtype``.
    order : {'C', 'F'}
        Memory order of a raw file's data.
    advice : str, optional
        ``madvise`` advice for the array's pages, as in :func:`mmarray.advise`.
    populate : bool
        Load every page now, as :func:`mmarray.prefetch` does.

    Returns
    -------
    numpy.ndarray
        A plain ndarray (not a subclass) that keeps the mapping alive;
        ``mmarray.region(a)`` returns the :class:`Region` behind it.

    Raises
    ------
    ValueError
        Bad mode, order, offset or header, or a file too small for the shape
        (the message gives both sizes). ``open`` never grows a file.
    OSError
        The file cannot be opened or mapped (``FileNotFoundError``,
        ``PermissionError``, ``IsADirectoryError``...), with the path.

    Examples
    --------
    >>> import numpy as np, mmarray, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> np.save(path, np.arange(6).reshape(2, 3))
    >>> mmarray.open(path)
    array([[0, 1, 2],
           [3, 4, 5]])
    """
    if advice is not None or populate:
        arr = open(path, mode, dtype=dtype, shape=shape, offset=offset, order=order)
        return _pages_at_open(arr, advice, populate)
    try:
        access, shared = _OPEN_MODES[mode]
    except (KeyError, TypeError):
        raise ValueError(f"mode must be 'r', 'r+' or 'c', not {mode!r}") from None
    fortran = order_is_fortran(order)
    dt = None if dtype is None else checked_dtype(dtype)
    start = 0 if offset is None else operator.index(offset)
    if start < 0:
        raise ValueError(f"offset must be non-negative, got {start}")
    shp = None if shape is None else shape_tuple(shape)
    return _open_mapped(path, access, shared, dt, shp, start, fortran, offset is not None)


def _open_mapped(
    path: str | os.PathLike[str],
    access: str,
    shared: bool,
    dt: np.dtype[Any] | None,
    shp: tuple[int, ...] | None,
    offset: int,
    fortran: bool,
    explicit: bool = True,
) -> np.ndarray[Any, Any]:
    """Map the file (a .npy file whole, ``dt`` None; a raw one from ``offset``) and
    build its array; the region is closed again if that fails. A raw open of a .npy
    file is refused unless the offset was ``explicit``."""
    start = 0 if dt is None else offset  # a .npy file is mapped whole
    if access == "r":
        reg = Region.open(path, 0, start)
    else:
        reg = Region.open(path, 0, start, access=access, shared=shared)
    try:
        if dt is None:
            fast = _open_npy_at_rest(reg, shp, offset)
            if fast is not None:
                return fast
            # under grow's lock, shared: the header and the size are those of one moment
            fd = reg.dup()
            try:
                with NoGrowDuring(fd, reg.name):
                    reg = _mapped_to_the_end(reg, fd, access, shared)
                    return _open_npy(reg, shp, offset)
            finally:
                os.close(fd)
        if not explicit and os.fsdecode(os.fspath(path)).endswith(".npy"):
            _refuse_npy_as_raw(reg, dt)  # reads the first page: only where the name says
        avail = reg.size
        if shp is None:
            if dt.itemsize == 0:
                raise ValueError(
                    f"{reg.name}: the {dt} item size is 0, so shape= cannot be inferred; give it"
                )
            if avail % dt.itemsize:
                raise ValueError(
                    f"{reg.name}: {avail} bytes after offset {offset} are not a multiple of "
                    f"the {dt} item size ({dt.itemsize})"
                )
            shp = (avail // dt.itemsize,)
        else:
            try:
                _npy.check_shape(shp, dt.itemsize)
            except ValueError as e:
                raise ValueError(f"{reg.name}: {e}") from None
            need = contiguous_nbytes(shp, dt.itemsize)
            if need > avail:
                raise ValueError(
                    f"{reg.name}: shape {shp} of {dt} needs {need} bytes after offset {offset}, "
                    f"but the file has {avail}"
                )
        return _ndarray(reg, dt, shp, 0, fortran)
    except BaseException:
        reg.close()
        raise


def _mapped_to_the_end(reg: Region, fd: int, access: str, shared: bool) -> Region:
    """``reg`` (a whole file's mapping), or, when a grow changed the file's size since it
    was mapped, a new mapping of the whole file as it is now (``reg`` closed)."""
    if os.fstat(fd).st_size == reg.size:
        return reg
    new = Region(fd, 0, 0, access=access, shared=shared, name=reg.name)
    reg.close()
    return new


def _refuse_npy_as_raw(reg: Region, dt: np.dtype[Any]) -> None:
    """Raise ValueError if the file mapped from byte 0 by ``reg`` is a .npy file: given
    ``dtype=`` without ``offset=``, its header would be read as data."""
    with memoryview(reg) as buf:
        if len(buf) < 6 or not _npy.is_npy(buf[:6].tobytes()):
            return
        try:
            span = _npy.header_span(buf, reg.name)
            shp, _, hdt = _npy.parse_header(buf[:span].tobytes())
            header = f"its header says shape {shp} of {hdt}, data at byte {span}"
            skip = f"offset={span}"
        except ValueError:
            header, skip = "its header cannot be read", "offset= past the header"
    raise ValueError(
        f"{reg.name}: a .npy file ({header}); with dtype={dt} and no offset= its header "
        f"would be read as data: pass {skip} to skip the header (offset=0 to read it "
        "too), or leave dtype= out to use the header"
    )


def _pages_at_open(
    arr: np.ndarray[Any, Any], advice: str | None, populate: bool
) -> np.ndarray[Any, Any]:
    """Apply open's ``advice=`` and ``populate=`` (see mmarray._cache)."""
    if advice is not None:
        advise(arr, advice)
    if populate:
        prefetch(arr)
    return arr


def _open_npy_at_rest(
    reg: Region, shape: tuple[int, ...] | None, offset: int
) -> np.ndarray[Any, Any] | None:
    """The array of a mapped .npy file whose header's data ends exactly at the file's
    end, read without grow's lock; None for anything else (read again under the lock).

    Such a header and size are those of one moment: a grow extends the file before it
    rewrites the header (its commit), so a header read during a grow sees a file longer
    than the header says, and a torn header's shape could match the size only by being
    the new one. This saves the lock's syscalls on every open of a file at rest."""
    try:
        return _open_npy(reg, shape, offset, at_rest=True)
    except ValueError:
        return None


@overload
def _open_npy(
    reg: Region, shape: tuple[int, ...] | None, offset: int, at_rest: Literal[False] = ...
) -> np.ndarray[Any, Any]: ...
@overload
def _open_npy(
    reg: Region, shape: tuple[int, ...] | None, offset: int, at_rest: bool
) -> np.ndarray[Any, Any] | None: ...
def _open_npy(
    reg: Region, shape: tuple[int, ...] | None, offset: int, at_rest: bool = False
) -> np.ndarray[Any, Any] | None:
    """Build the array of a mapped .npy file (reg maps the whole file); with ``at_rest``,
    None unless the header's data ends exactly at the file's end. The header is
    read with ``pread`` from the region's own descriptor, not through the mapping: a
    first touch of the mapping (a page fault, then page tables to tear down at unmap)
    costs more than the whole open (see `mmarray._npy.read_head`)."""
    head = _npy.read_head(reg.fileno(), reg.size)
    known = _npy.known_header(head)
    if known is None:
        if len(head) < 6 or not _npy.is_npy(head[:6]):
            raise ValueError(
                f"{reg.name}: not a .npy file (no magic string); a raw file needs dtype="
            )
    if offset:
        raise ValueError(f"{reg.name}: offset is not allowed for .npy files")
    if known is None:
        span = _npy.header_span(head, reg.name, reg.size)
        raw = head[:span] if span <= len(head) else _npy.read_head(reg.fileno(), span, span)
        try:
            shp, fortran, dt = _npy.parse_header(raw)
        except ValueError as e:
            raise ValueError(f"{reg.name}: bad .npy header: {e}") from None
        _npy.remember_header(head, span, (shp, fortran, dt))
    else:
        span, shp, fortran, dt = known
    if shape is not None and shape != shp:
        raise ValueError(f"{reg.name}: shape {shape} does not match the .npy header's {shp}")
    need = contiguous_nbytes(shp, dt.itemsize)
    if at_rest and reg.size - span != need:
        return None
    if reg.size - span < need:
        raise ValueError(
            f"{reg.name}: .npy header says shape {shp} of {dt} ({need} bytes) but the "
            f"file holds {reg.size - span} bytes of data"
        )
    return _ndarray(reg, dt, shp, span, fortran)


def create(
    path: str | os.PathLike[str],
    shape: int | tuple[int, ...],
    dtype: DTypeLike,
    *,
    fill: Any = None,
    allocate: str = "sparse",
    exist_ok: bool = False,
    order: str = "C",
) -> np.ndarray[Any, Any]:
    """Create a new raw or ``.npy`` file and return it mapped writable.

    Parameters
    ----------
    path : str or os.PathLike
        A path ending in ``.npy`` makes a ``.npy`` file (readable by ``np.load``);
        any other path a raw file.
    shape : int or tuple of ints
    dtype : data-type
        Object dtypes are refused. A subarray dtype such as ``('f4', (3,))``
        adds its dimensions to ``shape``, as numpy's arrays do.
    fill : scalar, optional
        Value written to every element. Zero (the default content) is free.
    allocate : {'sparse', 'reserve'}
        ``'sparse'``: the file is sized with ``ftruncate``; instant, and the
        disk blocks are allocated on first write (a full disk then means
        SIGBUS). ``'reserve'``: ``posix_fallocate`` reserves every block now,
        so a full disk fails here with ``OSError(ENOSPC)`` instead.
    exist_ok : bool
        Replace an existing file. The new file is prepared beside it and
        renamed over it only once it is complete, so a failure leaves the old
        file intact. It keeps the old file's permission bits (as ``open(path,
        'w')`` would), and its owner and group where the process may (root may;
        where the group cannot be kept, the group bits are dropped); these hold
        from its first byte: the file beside it is created ``0o600`` with a random
        name and is removed on any failure. A new file gets ``0o666`` less the
        umask. Only a regular file is replaced (a device, FIFO or directory raises
        an error).
    order : {'C', 'F'}

    Returns
    -------
    numpy.ndarray
        Writable, write-through (``MAP_SHARED``) array over the new file.

    Examples
    --------
    >>> import mmarray, tempfile, os
    >>> a = mmarray.create(os.path.join(tempfile.mkdtemp(), "z.npy"), (2, 2), "f4", fill=1.5)
    >>> a
    array([[1.5, 1.5],
           [1.5, 1.5]], dtype=float32)
    """
    shp, dt = expand_subarray(shape_tuple(shape), checked_dtype(dtype))
    fortran = order_is_fortran(order)
    if allocate not in _ALLOCATE:
        raise ValueError(f"allocate must be 'sparse' or 'reserve', not {allocate!r}")
    _npy.check_shape(shp, dt.itemsize)
    path = os.fspath(path)
    header = _npy.make_header(shp, dt, fortran) if os.fsdecode(path).endswith(".npy") else b""
    total = len(header) + contiguous_nbytes(shp, dt.itemsize)
    if total > sys.maxsize:
        raise ValueError(f"shape {shp} of {dt} needs {total} bytes: too big for a file")
    target = path
    if exist_ok:
        fd, path = _open_replacement(target)
    else:
        fd = _open_new(target)
    ok = False
    try:
        _prepare_file(fd, header, total, allocate, target)
        reg = Region(fd, total, 0, access="w", name=os.fspath(target))
        arr = _ndarray(reg, dt, shp, len(header), fortran)
        if fill is not None:
            _fill(arr, fill, dt)
        if exist_ok:
            os.replace(path, target)
        ok = True
    finally:
        os.close(fd)
        if not ok:
            _remove_quietly(path)
    return arr


def _prepare_file(fd: int, header: bytes, total: int, allocate: str, target: Any) -> None:
    """Give a new file its header and its size (``total`` bytes, reserved on disk for
    ``allocate='reserve'``)."""
    if header:
        os.pwrite(fd, header, 0)
    try:
        if allocate == "reserve" and total:
            os.posix_fallocate(fd, 0, total)
        else:
            os.ftruncate(fd, total)
    except OSError as e:
        raise OSError(
            e.errno, f"cannot size the file to {total} bytes: {e.strerror}", target
        ) from None


def _fill(arr: np.ndarray[Any, Any], fill: Any, dt: np.dtype[Any]) -> None:
    """Write ``fill`` to every element of a new (zero) array; a zero fill is free."""
    value = np.asarray(fill, dtype=dt)
    _check_fill_shape(value, arr.shape)  # a zero fill is skipped: check it anyway
    if value.tobytes() != bytes(dt.itemsize):
        arr[...] = value


def _check_fill_shape(value: np.ndarray[Any, Any], shape: tuple[int, ...]) -> None:
    """Raise ValueError unless ``arr[...] = value`` works for an array of this shape
    (numpy drops the value's leading length-1 dimensions, then broadcasts)."""
    v = value
    while v.ndim > len(shape) and v.shape[0] == 1:
        v = v[0]
    try:
        np.broadcast_to(v, shape)
    except ValueError:
        raise ValueError(
            f"could not broadcast the fill value of shape {value.shape} into shape {shape}"
        ) from None


def _open_new(target: Any) -> int:
    """Create ``target`` (``O_EXCL``, ``0o666`` less the umask, as ``open()`` makes it)
    and return its descriptor; an error names the directory it could not be made in."""
    try:
        return os.open(target, _NEW_FLAGS, 0o666)
    except FileExistsError:
        raise FileExistsError(
            errno.EEXIST,
            f"{os.strerror(errno.EEXIST)} (pass exist_ok=True to replace it)",
            os.fsdecode(target),
        ) from None
    except OSError as e:
        raise _in_directory(e, target) from None


def _open_replacement(target: Any) -> tuple[int, Any]:
    """Create the temporary file that ``create(..., exist_ok=True)`` prepares beside
    ``target`` and renames over it; return its descriptor and path.

    It has its final permissions before its first byte is written: created ``0o600``
    (``O_EXCL``, a random name, in ``target``'s directory), then given the replaced
    file's owner and group where the process may (root may; others keep their own
    uid), then the replaced file's permission bits, as ``open(path, 'w')`` keeps them.
    Where the group could not be kept, the group bits are dropped (another group must
    not read a file meant for the old one). A new file gets ``0o666`` less the umask.
    """
    d, base = os.path.split(target)
    if not base:
        err = errno.ENOENT if not d else errno.EISDIR
        raise OSError(err, os.strerror(err), target)
    try:
        st: os.stat_result | None = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), target)
    if st is not None and not stat.S_ISREG(st.st_mode):
        # renaming over a device, a FIFO or a socket would remove it (as root, /dev/null)
        raise ValueError(
            f"{os.fsdecode(target)}: exists and is not a regular file; exist_ok=True "
            "replaces regular files only"
        )
    fd, tmp = _open_temporary(d, base, target, 0o600 if st is not None else 0o666)
    if st is not None:
        try:
            _take_over(fd, st)
        except BaseException:
            os.close(fd)
            _remove_quietly(tmp)
            raise
    return fd, tmp


def _open_temporary(d: Any, base: Any, target: Any, mode: int) -> tuple[int, Any]:
    """Create a file of a random, unused name beside ``target`` with ``O_EXCL`` and
    ``mode`` (less the umask); return its descriptor and path."""
    stem = b"." + os.fsencode(base)[:200] + b"."  # within NAME_MAX whatever the name
    for _ in range(100):
        name = stem + secrets.token_hex(8).encode() + b".tmp"
        tmp = os.path.join(d, name if isinstance(base, bytes) else os.fsdecode(name))
        try:
            return os.open(tmp, _NEW_FLAGS, mode), tmp
        except FileExistsError:
            continue
        except OSError as e:
            raise _in_directory(e, target) from None
    raise FileExistsError(errno.EEXIST, "no unused temporary name beside it", target)


def _take_over(fd: int, st: os.stat_result) -> None:
    """Give the new (still empty, ``0o600``) file behind ``fd`` the owner, group and
    permission bits of the file ``st`` describes, as far as the process may."""
    mode = stat.S_IMODE(st.st_mode) & 0o777
    try:
        os.fchown(fd, st.st_uid, st.st_gid)  # root: both; others: only their own uid
    except PermissionError:
        try:
            os.fchown(fd, -1, st.st_gid)  # a group the process belongs to
        except PermissionError:
            pass
    if os.fstat(fd).st_gid != st.st_gid:
        mode &= ~0o070
    os.fchmod(fd, mode)


def _in_directory(e: OSError, target: Any) -> OSError:
    """The error of creating a file for ``target``, naming the target and its
    directory (never a temporary name)."""
    d = os.path.dirname(os.path.abspath(target))
    return OSError(
        e.errno,
        f"{e.strerror}: cannot create a file in the directory {os.fsdecode(d)}",
        os.fsdecode(target),
    )


def _remove_quietly(path: Any) -> None:
    """Remove a file this call created, on its way out with another error."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def anonymous(
    shape: int | tuple[int, ...],
    dtype: DTypeLike,
    *,
    shared: bool = True,
    order: str = "C",
) -> np.ndarray[Any, Any]:
    """Return a zero-filled array in anonymous mapped memory.

    Parameters
    ----------
    shape : int or tuple of ints
    dtype : data-type
    shared : bool
        ``True`` (``MAP_SHARED`` over a memfd): every process that has the
        array, forked after this call or sent it through ``multiprocessing``
        (see ``docs/sharing.md``), sees the others' writes. ``False``
        (``MAP_PRIVATE``): after a fork, each process keeps its own copy of
        whatever it writes (copy-on-write).
    order : {'C', 'F'}

    Examples
    --------
    >>> import mmarray
    >>> a = mmarray.anonymous((2, 3), "i8")
    >>> a += 7
    >>> int(a.sum())
    42
    """
    shp, dt = expand_subarray(shape_tuple(shape), checked_dtype(dtype))
    fortran = order_is_fortran(order)
    _npy.check_shape(shp, dt.itemsize)
    reg = Region.anonymous(contiguous_nbytes(shp, dt.itemsize), shared=shared)
    return _ndarray(reg, dt, shp, 0, fortran)
