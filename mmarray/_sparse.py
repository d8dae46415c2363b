"""Sparse files: apparent and allocated sizes, the ranges that hold data, punching holes.

The Python half of the sparse-file calls of ``src/pages.c`` (``lseek(SEEK_DATA)``,
``fallocate(PUNCH_HOLE)``): arrays become byte ranges of their file here, the C
functions do one syscall each.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np

from . import _core
from ._core import Region
from ._extent import region_extent
from ._region import open_regular_file, region_file, target_region

__all__ = ["DiskUsage", "disk_usage", "extents", "punch"]


class DiskUsage(NamedTuple):
    """``(apparent, allocated)`` bytes of a file: what ``ls -l`` and ``du`` show."""

    apparent: int
    allocated: int


def disk_usage(x: str | os.PathLike[str] | np.ndarray[Any, Any] | Region) -> DiskUsage:
    """Return the apparent and the allocated size of a file, in bytes.

    Parameters
    ----------
    x : path, array or Region
        A path, or an array (any view) over a file-backed :class:`Region`: then
        the numbers are those of the whole file behind it.

    Returns
    -------
    DiskUsage
        ``(apparent, allocated)``: ``st_size`` (what ``ls -l`` shows) and
        ``st_blocks * 512`` (what ``du --block-size=1`` shows). A sparse file
        has ``allocated < apparent``.

    Examples
    --------
    >>> import mmarray, tempfile, os
    >>> a = mmarray.create(os.path.join(tempfile.mkdtemp(), "big.raw"), 1 << 27, "f8")
    >>> use = mmarray.disk_usage(a)
    >>> use.apparent, use.allocated < 65536
    (1073741824, True)
    >>> os.unlink(mmarray.region(a).name)
    """
    if isinstance(x, str | bytes | os.PathLike):
        st = os.stat(x)
    else:
        with region_file(target_region(x, "disk_usage"), "disk_usage") as fd:
            st = os.fstat(fd)
    return DiskUsage(st.st_size, st.st_blocks * 512)


def extents(
    x: str | os.PathLike[str] | np.ndarray[Any, Any],
) -> list[tuple[int, int]]:
    """Return the ranges of a file (or of an array's part of it) that hold data.

    Everything outside these ranges is a hole: unallocated, reading as zeros.
    The ranges come from ``lseek(SEEK_DATA)`` / ``lseek(SEEK_HOLE)``, so they
    have the file system's block granularity; a file system without hole
    support reports one extent covering everything.

    Parameters
    ----------
    x : path or array
        A path: ranges in bytes of the file. A contiguous array over a
        file-backed Region: ranges in elements, in memory order (the flat index
        for C order); an element partly in data counts as data.

    Returns
    -------
    list of (start, stop) tuples
        Sorted, disjoint, half-open.

    Raises
    ------
    ValueError
        A non-contiguous array, or anonymous memory.

    Examples
    --------
    >>> import mmarray, tempfile, os
    >>> a = mmarray.create(os.path.join(tempfile.mkdtemp(), "s.raw"), 4 << 20, "u1")
    >>> mmarray.extents(a)
    []
    >>> a[1 << 20] = 7  # one page becomes data
    >>> mmarray.extents(a)
    [(1048576, 1052672)]
    >>> os.unlink(mmarray.region(a).name)
    """
    if isinstance(x, str | bytes | os.PathLike):
        fd = open_regular_file(x)
        try:
            size = os.fstat(fd).st_size
            return [(int(s), int(e)) for s, e in _core.extents(fd, 0, size, os.fspath(x))]
        finally:
            os.close(fd)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"extents needs a path or a numpy array, not {type(x).__name__}")
    reg = target_region(x, "extents")
    if not (x.flags.c_contiguous or x.flags.f_contiguous):
        raise ValueError("extents needs a contiguous array (its elements are counted in order)")
    lo, hi = region_extent(x, reg)
    flo, fhi = reg.offset + lo, reg.offset + hi
    isz = x.itemsize
    out: list[tuple[int, int]] = []
    with region_file(reg, "extents") as fd:
        found = _core.extents(fd, flo, fhi, reg.name)
    for s, e in found:
        first, last = (s - flo) // isz, -(-(e - flo) // isz)
        if out and first <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def punch(a: np.ndarray[Any, Any]) -> int:
    """Deallocate the storage under a contiguous, writable, file-backed array.

    Whole pages are removed from the file with
    ``fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)``; the array's bytes
    in the partial pages at its edges are set to zero. Afterwards the array
    reads as zeros, the file keeps its size and its allocated size drops.

    Parameters
    ----------
    a : numpy.ndarray
        A C- or Fortran-contiguous view over a Region opened for writing and
        shared (``open(..., 'r+')``, ``create``).

    Returns
    -------
    int
        The number of bytes handed back (whole pages only).

    Raises
    ------
    ValueError
        Read-only, private (copy-on-write), anonymous or non-contiguous arrays.
    OSError
        The file system cannot punch holes (``EOPNOTSUPP``), naming ``fallocate``.

    Examples
    --------
    >>> import mmarray, tempfile, os
    >>> a = mmarray.create(os.path.join(tempfile.mkdtemp(), "p.raw"), 1 << 20, "u1", fill=1)
    >>> mmarray.punch(a[:65536])
    65536
    >>> int(a[:65536].sum()), int(a[65536:].min())
    (0, 1)
    >>> os.unlink(mmarray.region(a).name)
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"punch needs a numpy array, not {type(a).__name__}")
    reg = target_region(a, "punch")
    if reg.access == "r" or not a.flags.writeable:
        raise ValueError("punch needs a writable array; this one is read-only")
    if not reg.shared:
        raise ValueError(
            "punch needs a shared mapping; this array is copy-on-write (private), and its "
            "file must not change"
        )
    if not (a.flags.c_contiguous or a.flags.f_contiguous):
        raise ValueError("punch needs a contiguous array (a hole is one byte range)")
    lo, hi = region_extent(a, reg)
    return int(_core.punch(reg, lo, hi))
