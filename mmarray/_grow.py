"""Growing a file-backed array along axis 0: ``grow``.

A grow is one atomic step for every process that uses mmarray: it holds an exclusive
open-file-description lock on one byte far above any data (:data:`GROW_BYTE`, so that
it never meets a :func:`mmarray.lock` range) for its whole run, and re-reads the file's
size and ``.npy`` header under it; ``mmarray.open`` takes the same byte shared while it
reads a header, unless the header's data ends exactly at the file's end (a file at rest:
a grow in progress leaves the file longer than its header says). The writes go in the
order that leaves a file ``open`` reads at every instant, so that a process killed at
any point leaves the file as it was or grown:

1. the tail left by a grow that was killed before its header (bytes past the data the
   header describes) is cut off;
2. the file is extended (``ftruncate``): the old header still describes the old rows;
3. the grown array is mapped (and made);
4. the header is rewritten in place with the new shape (one small ``pwrite``): the
   commit. A raw file has no header: the extension is its commit.

A failure before the commit puts the file back to the size the header (or, raw, the
size) committed, never below it; nothing is rolled back after it. None of this calls
``fsync``: ``flush()`` is the durability point (its ``fdatasync`` writes the size).
"""

from __future__ import annotations

import contextlib
import errno
import operator
import os
import sys
from typing import Any

import numpy as np

from . import _npy
from ._core import Region
from ._core import ndarray as _ndarray
from ._extent import array_extent, contiguous_nbytes
from ._lock import Held
from ._region import region_file, target_region

__all__ = ["GROW_BYTE", "NoGrowDuring", "grow"]

GROW_BYTE = 2**63 - 2  # the byte grow() locks: the last lockable one but one (OFF_MAX - 1)


def grow(a: np.ndarray[Any, Any], n: int) -> np.ndarray[Any, Any]:
    """Extend the file under ``a`` by ``n`` rows along axis 0; return the grown array.

    ``a`` must be a writable, C-contiguous array over a shared file mapping
    (``open(path, 'r+')`` or ``create``) that starts where the file's array starts:
    a whole ``.npy`` array, or the data of a raw file from the array's first byte
    to the end of the file. The file is extended with ``ftruncate`` (the new rows are zeros and
    take no disk space until written), then a ``.npy`` header is rewritten in
    place with the new shape. ``a`` stays valid and keeps its shape.

    ``grow`` is atomic: processes (and threads) growing the same file take turns,
    each reading the file's array as it is when its turn comes and adding its own
    ``n`` rows, which are always the last ``n`` of the array it returns. So an array
    over a ``.npy`` file made before another grow (a stale one, or a view of the first
    rows) grows the file from its current end, and the result has all its rows; over a
    raw file, whose size alone says how many rows it has, it must run to the end of the
    file (else ValueError: open the file again). A process killed during
    ``grow`` leaves the file as it was or grown, never unreadable; the next ``grow``
    drops any tail the killed one left.

    Parameters
    ----------
    a : numpy.ndarray
    n : int
        Rows to add (0 gives a new array over the file's current data).

    Returns
    -------
    numpy.ndarray
        A new array over the grown file: shape ``(a.shape[0] + n,) + a.shape[1:]``
        when no one else grew the file since ``a`` was made, ``n`` rows more than the
        file's array had in any case.

    Raises
    ------
    ValueError
        ``a`` is read-only, private, anonymous, closed, not C-contiguous, 0-d, does
        not start where its ``.npy`` data does, has another dtype or row shape than
        the ``.npy`` header, has more rows than the file, does not run to the end of a
        raw file, or the header has no room
        for the new shape (files from ``np.save`` and :func:`mmarray.create` have it).

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
    low, _, _ = array_extent(a)
    flo = reg.offset + low - reg.address
    with region_file(reg, "grow") as fd, Held(fd, GROW_BYTE, 1, name=reg.name):
        return _grow_locked(a, fd, flo, n, reg.name)


class NoGrowDuring:
    """``with NoGrowDuring(fd, name):`` holds grow's byte shared for the block (what
    ``mmarray.open`` does while it reads a header and the size): no ``grow`` of the file
    runs meanwhile. ``fd`` is a descriptor the caller owns. Where the file system has no
    locks, the block runs unlocked."""

    __slots__ = ("_held",)

    def __init__(self, fd: int, name: Any) -> None:
        self._held: Held | None = Held(fd, GROW_BYTE, 1, exclusive=False, name=name)

    def __enter__(self) -> None:
        assert self._held is not None
        try:
            self._held.__enter__()
        except OSError as e:
            if e.errno not in _NO_LOCKS:
                raise
            self._held = None

    def __exit__(self, *exc: object) -> None:
        if self._held is not None:
            self._held.__exit__(*exc)


_NO_LOCKS = (errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS)


def _grow_locked(
    a: np.ndarray[Any, Any], fd: int, flo: int, n: int, name: Any
) -> np.ndarray[Any, Any]:
    """The grow itself, under grow's exclusive lock: the file's array as it is now, then
    the writes in the order the module docstring gives."""
    size = os.fstat(fd).st_size
    row = contiguous_nbytes(a.shape[1:], a.itemsize)
    old_header, rows = _file_rows(a, fd, flo, size, row, name)
    end = flo + rows * row  # what the header (raw: the size) committed
    new_shape = (rows + n, *a.shape[1:])
    new_size = end + n * row
    header = _grown_header(old_header, new_shape, a.dtype, name)
    try:  # before the file changes: numpy must be able to make the grown array
        _npy.check_shape(new_shape, a.itemsize)
        if new_size > sys.maxsize:
            raise ValueError(f"{new_size} bytes are too many for a file")
    except ValueError as e:
        raise ValueError(f"{name}: cannot grow to shape {new_shape}: {e}") from None
    if size > end:  # the tail of a grow killed before its header: not part of the array
        _truncate(fd, end, name)
    try:
        if new_size != end:
            _truncate(fd, new_size, name)
        grown = _ndarray(
            Region(fd, new_size - flo, flo, access="w", name=name), a.dtype, new_shape, 0
        )
        if header:
            _commit(fd, header, old_header, name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, end)  # never below what the header (or raw size) committed
        raise
    return grown


def _truncate(fd: int, size: int, name: Any) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError as e:
        raise OSError(e.errno, f"ftruncate: cannot grow the file to {size} bytes", name) from e


def _commit(fd: int, header: bytes, old_header: bytes, name: Any) -> None:
    """Write the grown header over the old one (the same length); on a failure or a
    short write, the old one back."""
    try:
        if os.pwrite(fd, header, 0) != len(header):
            raise OSError(0, "pwrite: short write of the .npy header", name)
    except BaseException:
        with contextlib.suppress(OSError):
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


def _file_rows(
    a: np.ndarray[Any, Any], fd: int, flo: int, size: int, row: int, name: Any
) -> tuple[bytes, int]:
    """Return (the file's .npy header, empty for a raw file; the rows of the file's array
    now), or ValueError when ``a`` is not (a first part of) that array."""
    header = _header_at(fd, flo, name)
    if header:
        rows = _header_rows(a, header, name)
        if size - flo < rows * row:
            raise ValueError(
                f"{name}: the .npy header says {rows} rows ({rows * row} bytes) but the file "
                f"holds {size - flo} bytes of data"
            )
    else:  # a raw file: only its size says how many rows it has, so a must be all of them
        rows = a.shape[0]
        if flo + rows * row != size:
            raise ValueError(
                f"{name}: grow needs the array to run to the end of its raw file; it ends at "
                f"byte {flo + rows * row} but the file has {size} bytes (if another process "
                "grew it, open it again)"
            )
    if rows < a.shape[0]:
        raise ValueError(
            f"{name}: the array has {a.shape[0]} rows but the file only {rows}: it shrank "
            "since the array was made"
        )
    return header, rows


def _header_at(fd: int, flo: int, name: Any) -> bytes:
    """The .npy header of the file, empty for a raw one; ValueError when the array does
    not start where the .npy data does."""
    magic = os.pread(fd, 6, 0)
    if len(magic) < 6 or not _npy.is_npy(magic):
        return b""
    head = os.pread(fd, min(flo, 1 << 16), 0)  # numpy refuses longer headers anyway
    span = _npy.header_span(memoryview(head), name)
    if span != flo:
        raise ValueError(
            f"{name}: grow needs the whole .npy array; this array starts at byte {flo}, "
            f"the data at byte {span}"
        )
    return head[:span]


def _header_rows(a: np.ndarray[Any, Any], header: bytes, name: Any) -> int:
    """The rows of the .npy header, after checking that ``a`` is its array (maybe an
    earlier, shorter one)."""
    hshape, fortran, dt = _npy.parse_header(header)
    if hshape[1:] != a.shape[1:] or dt != a.dtype or len(hshape) != a.ndim:
        raise ValueError(
            f"{name}: grow needs the array of the .npy header (shape {hshape}, {dt}); "
            f"got shape {a.shape}, {a.dtype}"
        )
    if fortran and a.ndim > 1:
        raise ValueError(f"{name}: cannot grow a Fortran-order .npy file along axis 0")
    return hshape[0]


def _grown_header(old: bytes, new_shape: tuple[int, ...], dt: np.dtype[Any], name: Any) -> bytes:
    """The header for ``new_shape``, of the old header's length (empty for a raw file);
    ValueError when it has no room."""
    if not old:
        return b""
    fortran = _npy.parse_header(old)[1]  # a 1-d array's flag is kept as it was
    try:
        header = _npy.make_header(new_shape, dt, fortran)
    except (ValueError, UnicodeError) as e:
        raise ValueError(f"{name}: cannot write a .npy header for {new_shape}: {e}") from e
    if len(header) != len(old):
        raise ValueError(
            f"{name}: the .npy header has no room for shape {new_shape}: it needs "
            f"{len(header)} bytes and the file has {len(old)} before the data (rewrite the "
            "file with np.save or mmarray.create, which leave room to grow)"
        )
    return header
