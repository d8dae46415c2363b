"""Growing a file-backed array along axis 0: ``grow``.

The file is extended with ``ftruncate`` and a ``.npy`` header rewritten in place;
every check runs before the file changes, and a failure after it puts the file
back as it was.
"""

from __future__ import annotations

import contextlib
import operator
import os
import sys
from typing import Any

import numpy as np

from . import _npy
from ._core import Region
from ._core import ndarray as _ndarray
from ._extent import array_extent, contiguous_nbytes
from ._region import region_fd, target_region

__all__ = ["grow"]


def grow(a: np.ndarray[Any, Any], n: int) -> np.ndarray[Any, Any]:
    """Extend the file under ``a`` by ``n`` rows along axis 0; return the grown array.

    ``a`` must be a writable, C-contiguous array over a shared file mapping
    (``open(path, 'r+')`` or ``create``) that runs to the end of its file: a
    whole ``.npy`` array, or the data of a raw file from the array's first byte
    on. The file is extended with ``ftruncate`` (the new rows are zeros and
    take no disk space until written), then a ``.npy`` header is rewritten in
    place with the new shape. ``a`` stays valid and keeps its shape.

    Parameters
    ----------
    a : numpy.ndarray
    n : int
        Rows to add (0 gives a new array over the same data).

    Returns
    -------
    numpy.ndarray
        A new array of shape ``(a.shape[0] + n,) + a.shape[1:]`` over the grown file.

    Raises
    ------
    ValueError
        ``a`` is read-only, private, anonymous, not C-contiguous, not the whole
        array of its file, 0-d, or its ``.npy`` header has no room for the
        new shape (files from ``np.save`` and :func:`mmarray.create` have it).

    Examples
    --------
    >>> import mmarray, numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "g.npy")
    >>> a = mmarray.create(path, (2, 3), "i4", fill=1)
    >>> b = mmarray.grow(a, 2)
    >>> b[2:] = 5
    >>> np.load(path)
    array([[1, 1, 1],
           [1, 1, 1],
           [5, 5, 5],
           [5, 5, 5]], dtype=int32)
    >>> os.unlink(path)
    """
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"grow adds rows: n must be non-negative, got {n}")
    reg = _growable_region(a)
    fd = region_fd(reg, "grow")
    name = reg.name
    flo, fhi, size = _file_extent(a, reg, fd)
    new_shape = (a.shape[0] + n, *a.shape[1:])
    old_header, header = _grown_header(a, fd, flo, new_shape, name)
    new_size = fhi + n * contiguous_nbytes(a.shape[1:], a.itemsize)
    try:  # before the file changes: numpy must be able to make the grown array
        _npy.check_shape(new_shape, a.itemsize)
        if new_size > sys.maxsize:
            raise ValueError(f"{new_size} bytes are too many for a file")
    except ValueError as e:
        raise ValueError(f"{name}: cannot grow to shape {new_shape}: {e}") from None
    try:
        os.ftruncate(fd, new_size)
    except OSError as e:
        raise OSError(e.errno, f"ftruncate: cannot grow the file to {new_size} bytes", name) from e
    try:
        if header:
            os.pwrite(fd, header, 0)
        new = Region(fd, new_size - flo, flo, access="w", name=name)
        return _ndarray(new, a.dtype, new_shape, 0)
    except BaseException:
        # put the file back as it was: its old size, its old header
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
            if header:
                os.pwrite(fd, old_header, 0)
        raise


def _growable_region(a: Any) -> Region:
    """The Region under ``a``, after the checks that need no system call: ``a`` is a
    writable, C-contiguous array with at least one dimension over a shared mapping."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"grow needs a numpy array, not {type(a).__name__}")
    reg = target_region(a, "grow")
    if a.ndim == 0:
        raise ValueError("grow needs an array with at least one dimension")
    if reg.access != "w" or not reg.shared or not a.flags.writeable:
        raise ValueError(
            "grow needs a writable array over a shared file mapping (open(path, 'r+') or "
            f"create); this one has access {reg.access!r}"
            + ("" if reg.shared else " (copy-on-write)")
        )
    if not a.flags.c_contiguous:
        raise ValueError("grow needs a C-contiguous array (rows are added at the end)")
    return reg


def _file_extent(a: np.ndarray[Any, Any], reg: Region, fd: int) -> tuple[int, int, int]:
    """Return (file offset of a's first byte, of the byte after its last, the file's
    size); ValueError unless the array runs to the end of its file."""
    low, nbytes, _ = array_extent(a)
    flo = reg.offset + low - reg.address
    fhi = flo + nbytes
    size = os.fstat(fd).st_size
    if fhi != size:
        raise ValueError(
            f"{reg.name}: grow needs the array to run to the end of its file; it ends at byte "
            f"{fhi} but the file has {size} bytes"
        )
    return flo, fhi, size


def _grown_header(
    a: np.ndarray[Any, Any], fd: int, flo: int, new_shape: tuple[int, ...], name: Any
) -> tuple[bytes, bytes]:
    """Return (the file's .npy header, the header for ``new_shape`` of the same length),
    or two empty strings for a raw file; ValueError when the array is not the whole
    .npy array or the header has no room for the new shape."""
    if flo < 6 or not _npy.is_npy(os.pread(fd, 6, 0)):
        return b"", b""
    head = os.pread(fd, min(flo, 1 << 16), 0)  # numpy refuses longer headers anyway
    span = _npy.header_span(memoryview(head), name)
    if span != flo:
        raise ValueError(
            f"{name}: grow needs the whole .npy array; this array starts at byte {flo}, "
            f"the data at byte {span}"
        )
    hshape, fortran, dt = _npy.parse_header(head[:span])
    if hshape != a.shape or dt != a.dtype:
        raise ValueError(
            f"{name}: grow needs the array of the .npy header (shape {hshape}, {dt}); "
            f"got shape {a.shape}, {a.dtype}"
        )
    if fortran and a.ndim > 1:
        raise ValueError(f"{name}: cannot grow a Fortran-order .npy file along axis 0")
    try:
        header = _npy.make_header(new_shape, dt, fortran)
    except (ValueError, UnicodeError) as e:
        raise ValueError(f"{name}: cannot write a .npy header for {new_shape}: {e}") from e
    if len(header) != span:
        raise ValueError(
            f"{name}: the .npy header has no room for shape {new_shape}: it needs "
            f"{len(header)} bytes and the file has {span} before the data (rewrite the "
            "file with np.save or mmarray.create, which leave room to grow)"
        )
    return head[:span], header
