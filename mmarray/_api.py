"""Public constructors: open, create, anonymous, region."""

from __future__ import annotations

import math
import operator
import os
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from . import _npy
from ._core import Region
from ._core import ndarray as _ndarray

__all__ = ["open", "create", "anonymous", "region", "Region"]

_OPEN_MODES = {"r": ("r", True), "r+": ("w", True), "c": ("c", False)}
_ALLOCATE = ("sparse", "reserve")
_pyopen = open


def _shape_tuple(shape: Any) -> tuple[int, ...]:
    """Normalise an int or a sequence of ints into a tuple, rejecting negatives."""
    if isinstance(shape, int):
        shape = (shape,)
    else:
        try:
            shape = (operator.index(shape),)
        except TypeError:
            shape = tuple(operator.index(n) for n in shape)
    for n in shape:
        if n < 0:
            raise ValueError(f"negative dimension {n} in shape {shape}")
    return shape


def _order_is_fortran(order: str) -> bool:
    if order == "C":
        return False
    if order == "F":
        return True
    raise ValueError(f"order must be 'C' or 'F', not {order!r}")


def _checked_dtype(dtype: DTypeLike) -> np.dtype[Any]:
    dt = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
    if dt.hasobject:
        raise TypeError(f"cannot map arrays of Python objects (dtype {dt})")
    return dt


def open(  # noqa: A001 - the public name is mmarray.open
    path: str | os.PathLike[str],
    mode: str = "r",
    *,
    dtype: DTypeLike | None = None,
    shape: int | tuple[int, ...] | None = None,
    offset: int = 0,
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
        Element type of a raw file. For ``.npy`` files it may be given only if
        it equals the header's.
    shape : int or tuple of ints, optional
        Shape of a raw file's array; by default as many elements as fit after
        ``offset``. For ``.npy`` files it may be given only if it equals the header's.
    offset : int
        Byte offset of a raw file's data (any value, not only page multiples).
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
    if offset < 0:
        raise ValueError(f"offset must be non-negative, got {offset}")
    if access == "r":
        reg = Region.open(path, 0, 0 if dtype is None else offset)
    else:
        reg = Region.open(path, 0, 0 if dtype is None else offset, access=access, shared=shared)
    if dtype is None:
        if reg.size < 6 or not _npy.is_npy(memoryview(reg)[:6].tobytes()):
            reg.close()
            raise ValueError(
                f"{reg.name}: not a .npy file (no magic string); a raw file needs dtype="
            )
        return _open_npy(reg, shape, offset, order)
    try:
        dt = _checked_dtype(dtype)
        fortran = _order_is_fortran(order)
    except BaseException:
        reg.close()
        raise
    avail = reg.size
    if shape is None:
        if avail % dt.itemsize:
            reg.close()
            raise ValueError(
                f"{reg.name}: {avail} bytes after offset {offset} are not a multiple of "
                f"the {dt} item size ({dt.itemsize})"
            )
        shp: tuple[int, ...] = (avail // dt.itemsize,)
    else:
        shp = _shape_tuple(shape)
        need = math.prod(shp) * dt.itemsize
        if need > avail:
            reg.close()
            raise ValueError(
                f"{reg.name}: shape {shp} of {dt} needs {need} bytes after offset {offset}, "
                f"but the file has {avail}"
            )
    return _ndarray(reg, dt, shp, 0, fortran)


def _pages_at_open(
    arr: np.ndarray[Any, Any], advice: str | None, populate: bool
) -> np.ndarray[Any, Any]:
    """Apply open's ``advice=`` and ``populate=`` (see mmarray._pages)."""
    from ._pages import advise, prefetch

    if advice is not None:
        advise(arr, advice)
    if populate:
        prefetch(arr)
    return arr


def _open_npy(reg: Region, shape: Any, offset: int, order: str) -> np.ndarray[Any, Any]:
    """Build the array of a mapped .npy file (reg maps the whole file)."""
    try:
        if offset:
            raise ValueError(f"{reg.name}: offset is not allowed for .npy files")
        buf = memoryview(reg)
        try:
            span = _npy.header_span(buf, reg.name)
            raw = buf[:span].tobytes()
        finally:
            buf.release()
        try:
            shp, fortran, dt = _npy.parse_header(raw)
        except ValueError as e:
            raise ValueError(f"{reg.name}: bad .npy header: {e}") from None
        if shape is not None and _shape_tuple(shape) != shp:
            raise ValueError(f"{reg.name}: shape {shape} does not match the .npy header's {shp}")
        need = math.prod(shp) * dt.itemsize
        if reg.size - span < need:
            raise ValueError(
                f"{reg.name}: .npy header says shape {shp} of {dt} ({need} bytes) but the "
                f"file holds {reg.size - span} bytes of data"
            )
        return _ndarray(reg, dt, shp, span, fortran)
    except BaseException:
        reg.close()
        raise


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
        Object dtypes are refused.
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
        file intact.
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
    dt = _checked_dtype(dtype)
    shp = _shape_tuple(shape)
    fortran = _order_is_fortran(order)
    if allocate not in _ALLOCATE:
        raise ValueError(f"allocate must be 'sparse' or 'reserve', not {allocate!r}")
    path = os.fspath(path)
    nbytes = math.prod(shp) * dt.itemsize
    header = _npy.make_header(shp, dt, fortran) if str(path).endswith(".npy") else b""
    total = len(header) + nbytes
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    target = path
    if exist_ok:
        d, base = os.path.split(path)
        path = os.path.join(d, f".{base}.{os.getpid()}.{id(shp):x}.tmp")
    fd = os.open(path, flags, 0o666)
    ok = False
    try:
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
        reg = Region(fd, total, 0, access="w", name=os.fspath(target))
        arr = _ndarray(reg, dt, shp, len(header), fortran)
        if fill is not None:
            value = np.asarray(fill, dtype=dt)
            if value.tobytes() != bytes(dt.itemsize):
                arr[...] = value
        if exist_ok:
            os.replace(path, target)
        ok = True
    finally:
        os.close(fd)
        if not ok:
            os.unlink(path)
    return arr


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
    dt = _checked_dtype(dtype)
    shp = _shape_tuple(shape)
    fortran = _order_is_fortran(order)
    reg = Region.anonymous(math.prod(shp) * dt.itemsize, shared=shared)
    return _ndarray(reg, dt, shp, 0, fortran)


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
