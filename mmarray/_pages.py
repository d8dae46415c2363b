"""Pages and files: sparse files, holes, page-cache advice, residency, growing arrays.

The Python half of ``src/pages.c``: it turns arrays (any view) into exact byte
ranges of their :class:`Region` and chooses policy (which advice, which
fallback); the C functions do one syscall each over a page-rounded range.
"""

from __future__ import annotations

import contextlib
import errno
import html
import math
import operator
import os
import stat
import sys
from typing import Any, NamedTuple

import numpy as np

from . import _core, _npy
from ._api import region as _region_of
from ._core import Region
from ._core import ndarray as _ndarray

__all__ = [
    "ADVICE",
    "DiskUsage",
    "Residency",
    "advise",
    "disk_usage",
    "evict",
    "extents",
    "grow",
    "prefetch",
    "punch",
    "residency",
]

PAGESIZE: int = _core.PAGESIZE

#: The advice names :func:`advise` accepts.
ADVICE = ("normal", "sequential", "random", "willneed", "dontneed", "hugepage", "nohugepage")
# Advice a kernel may lack at run time (built without transparent huge pages).
_OPTIONAL = frozenset({"hugepage", "nohugepage"})
# errno values that mean "this kernel (or sandbox) does not do that".
_MISSING = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})
# Above this many separate blocks, a strided view is treated as its whole span.
_MAX_BLOCKS = 1 << 20
# Set to False once MADV_POPULATE_READ turns out to be missing (tests set it too).
_have_populate = True


class DiskUsage(NamedTuple):
    """``(apparent, allocated)`` bytes of a file: what ``ls -l`` and ``du`` show."""

    apparent: int
    allocated: int


# ---- arrays to byte ranges ---------------------------------------------------------------


def _target(x: Any, what: str) -> Region:
    """The open Region behind x (an ndarray over one, or a Region), or a clear TypeError
    (not mmarray memory) or ValueError (a closed Region)."""
    if isinstance(x, Region):
        reg: Region | None = x
    elif not isinstance(x, np.ndarray):
        raise TypeError(f"{what} needs a numpy array or a Region, not {type(x).__name__}")
    else:
        reg = _region_of(x)
    if reg is None:
        raise TypeError(
            f"{what} needs an array whose memory is an mmarray Region (from mmarray.open, "
            "create, anonymous or memmap); this array's memory is not"
        )
    if reg.closed:  # refused even when there is nothing to do (an empty view)
        raise ValueError(f"{what}: operation on a closed Region")
    return reg


def _span(a: np.ndarray[Any, Any], reg: Region) -> tuple[int, int]:
    """The bytes ``[lo, hi)`` between the lowest and the highest byte a touches,
    counted from the region's first byte (negative strides allowed)."""
    if a.size == 0:
        return (0, 0)
    lo = hi = a.__array_interface__["data"][0] - reg.address
    for n, s in zip(a.shape, a.strides, strict=True):
        if s < 0:
            lo += (n - 1) * s
        else:
            hi += (n - 1) * s
    hi += a.itemsize
    if lo < 0 or hi > reg.size:
        raise ValueError(f"array bytes [{lo}, {hi}) lie outside its region ({reg.size} bytes)")
    return lo, hi


def _ranges(x: Any, reg: Region) -> list[tuple[int, int]]:
    """Byte ranges (from the region's first byte) whose pages are exactly the pages
    that hold at least one byte of x, sorted and disjoint.

    A view whose gaps between elements are all shorter than a page touches every
    page of its span; for wider gaps the blocks are listed (up to ``_MAX_BLOCKS``
    of them; beyond that the whole span is used).
    """
    if isinstance(x, Region):
        return [(0, reg.size)] if reg.size else []
    a = x
    if a.size == 0:
        return []
    lo, hi = _span(a, reg)
    dims = sorted((abs(s), n) for n, s in zip(a.shape, a.strides, strict=True) if n > 1)
    ext = a.itemsize  # bytes spanned by the block of the inner dimensions
    k = 0
    while k < len(dims) and dims[k][0] - ext < PAGESIZE:
        stride, n = dims[k]
        ext = stride * (n - 1) + ext
        k += 1
    outer = dims[k:]
    if not outer:
        return [(lo, hi)]
    if math.prod(n for _, n in outer) > _MAX_BLOCKS:
        return [(lo, hi)]
    offs = np.zeros(1, dtype=np.int64)
    for stride, n in outer:
        offs = (offs[:, None] + np.arange(n, dtype=np.int64) * stride).ravel()
    offs.sort()
    base = reg.address
    first = (base + lo + offs) // PAGESIZE
    stop = np.maximum.accumulate((base + lo + offs + ext - 1) // PAGESIZE + 1)
    cut = np.flatnonzero(first[1:] > stop[:-1]) + 1
    starts = first[np.concatenate(([0], cut))]
    stops = stop[np.concatenate((cut - 1, [len(stop) - 1]))]
    return [
        (max(int(p) * PAGESIZE - base, 0), min(int(q) * PAGESIZE - base, reg.size))
        for p, q in zip(starts, stops, strict=True)
    ]


def _refuse_private_writes(reg: Region, what: str) -> None:
    """MADV_DONTNEED on a copy-on-write mapping throws away the private copies."""
    if not reg.shared and reg.access != "r":
        raise ValueError(
            f"{what} would discard this array's copy-on-write changes (a private, writable "
            "mapping: mode 'c' or anonymous(shared=False)); it is refused"
        )


def _fd_of(reg: Region, what: str) -> int:
    fd = reg.fileno()
    if fd < 0 or reg.is_anonymous:  # shared anonymous memory has a memfd, but no file
        raise ValueError(f"{what} needs a file-backed array; this one is anonymous memory")
    return fd


def _open_file(path: str | bytes | os.PathLike[str]) -> int:
    """A read-only descriptor of the regular file at ``path``, or a clear OSError/ValueError.

    ``O_NONBLOCK`` so that a FIFO is refused at once instead of blocking the open."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "a directory, not a file", path)
        if not stat.S_ISREG(mode):
            raise ValueError(f"{os.fsdecode(os.fspath(path))}: not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


# ---- sparse files --------------------------------------------------------------------------


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
        st = os.fstat(_fd_of(_target(x, "disk_usage"), "disk_usage"))
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
        fd = _open_file(x)
        try:
            size = os.fstat(fd).st_size
            return [(int(s), int(e)) for s, e in _core.extents(fd, 0, size, os.fspath(x))]
        finally:
            os.close(fd)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"extents needs a path or a numpy array, not {type(x).__name__}")
    reg = _target(x, "extents")
    if not (x.flags.c_contiguous or x.flags.f_contiguous):
        raise ValueError("extents needs a contiguous array (its elements are counted in order)")
    fd = _fd_of(reg, "extents")
    lo, hi = _span(x, reg)
    flo, fhi = reg.offset + lo, reg.offset + hi
    isz = x.itemsize
    out: list[tuple[int, int]] = []
    for s, e in _core.extents(fd, flo, fhi, reg.name):
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
    reg = _target(a, "punch")
    if reg.access == "r" or not a.flags.writeable:
        raise ValueError("punch needs a writable array; this one is read-only")
    if not reg.shared:
        raise ValueError(
            "punch needs a shared mapping; this array is copy-on-write (private), and its "
            "file must not change"
        )
    if not (a.flags.c_contiguous or a.flags.f_contiguous):
        raise ValueError("punch needs a contiguous array (a hole is one byte range)")
    lo, hi = _span(a, reg)
    return int(_core.punch(reg, lo, hi))


# ---- page cache ----------------------------------------------------------------------------


def _advice_value(advice: str) -> int:
    if advice not in ADVICE:
        raise ValueError(
            f"unknown advice {advice!r}; valid advice: {', '.join(repr(v) for v in ADVICE)}"
        )
    value = _core.MADVICE.get(advice)
    if value is None:
        raise NotImplementedError(
            f"advice {advice!r} (MADV_{advice.upper()}) is not known on this platform"
        )
    return int(value)


def advise(a: np.ndarray[Any, Any] | Region, advice: str) -> None:
    """Give the kernel ``madvise`` advice about the pages under ``a``.

    Parameters
    ----------
    a : numpy.ndarray or Region
        Any view over a Region: the advice covers exactly the pages holding at
        least one of its bytes (rounded out to whole pages).
    advice : str
        ``'normal'``, ``'sequential'`` (read ahead aggressively, drop behind),
        ``'random'`` (no read-ahead), ``'willneed'`` (start reading now),
        ``'dontneed'`` (drop the pages from this mapping; file-backed data is
        re-read from the file later), ``'hugepage'``, ``'nohugepage'``.

    Raises
    ------
    ValueError
        Unknown advice (the message lists the valid ones), or ``'dontneed'`` on a
        copy-on-write mapping (it would discard the private changes).
    NotImplementedError
        Advice this kernel lacks (for instance ``'hugepage'`` without
        transparent huge pages), naming it.

    Examples
    --------
    >>> import mmarray
    >>> a = mmarray.anonymous(1 << 20, "u1")
    >>> mmarray.advise(a[::4096], "random")
    >>> mmarray.advise(a, "fast")
    Traceback (most recent call last):
    ...
    ValueError: unknown advice 'fast'; valid advice: 'normal', 'sequential', 'random', \
'willneed', 'dontneed', 'hugepage', 'nohugepage'
    """
    value = _advice_value(advice)
    reg = _target(a, "advise")
    if advice == "dontneed":
        _refuse_private_writes(reg, "advise(a, 'dontneed')")
    for lo, hi in _ranges(a, reg):
        try:
            _core.madvise(reg, lo, hi, value)
        except OSError as e:
            if advice in _OPTIONAL and e.errno in _MISSING:
                raise NotImplementedError(
                    f"advice {advice!r} (MADV_{advice.upper()}) is not supported by this "
                    f"kernel: madvise failed with {errno.errorcode.get(e.errno or 0, e.errno)}"
                ) from e
            raise


def prefetch(a: np.ndarray[Any, Any] | Region) -> None:
    """Load the pages under ``a`` into memory and map them, before they are touched.

    Uses ``madvise(MADV_POPULATE_READ)`` (Linux 5.14+); where the kernel lacks
    it, ``MADV_WILLNEED`` then a read of one byte per page. Afterwards
    :func:`residency` reports every page resident (until memory pressure
    evicts some). Nothing is written: copy-on-write pages stay shared.
    A page the file no longer holds (truncated by another process) raises
    ``OSError`` (``EFAULT``) naming the path and the file offset, instead of
    SIGBUS (see "Truncated files and SIGBUS" in docs/pages.md).

    Examples
    --------
    >>> import mmarray
    >>> a = mmarray.anonymous(1 << 16, "u1")
    >>> mmarray.prefetch(a)
    >>> mmarray.residency(a).fraction
    1.0
    """
    global _have_populate
    reg = _target(a, "prefetch")
    for lo, hi in _ranges(a, reg):
        if _have_populate:
            try:
                _core.populate(reg, lo, hi)
                continue
            except OSError as e:
                if e.errno not in _MISSING:
                    raise
                _have_populate = False
        _core.madvise(reg, lo, hi, _core.MADVICE["willneed"])
        _core.touch(reg, lo, hi)


def evict(x: np.ndarray[Any, Any] | Region | str | os.PathLike[str]) -> None:
    """Drop the pages under ``x`` from this mapping and, when clean, from the page cache.

    For an array (any view) or Region: writable shared mappings are first
    written back (``msync``), then the pages are unmapped from this process
    (``MADV_DONTNEED``), the file's dirty pages in the range written to disk
    (``sync_file_range``) and its pages dropped from the page cache
    (``posix_fadvise(POSIX_FADV_DONTNEED)``). For a path: the whole file is
    written back (``fdatasync``) and dropped. The next read comes from disk,
    which is what cold-cache measurements need.

    Pages that another mapping (in this or another process) still maps stay in
    the page cache; so do the pages of memory file systems (tmpfs).

    Raises
    ------
    ValueError
        A copy-on-write mapping (mode ``'c'``, ``anonymous(shared=False)``):
        dropping its pages would discard its private changes.

    Examples
    --------
    >>> import mmarray, numpy as np, tempfile, os
    >>> a = mmarray.create(os.path.join(tempfile.mkdtemp(), "e.raw"), 1 << 16, "u1", fill=3)
    >>> mmarray.evict(a)
    >>> int(a.sum())  # the data comes back from the file
    196608
    >>> os.unlink(mmarray.region(a).name)
    """
    if isinstance(x, str | bytes | os.PathLike):
        fd = _open_file(x)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        return
    reg = _target(x, "evict")
    _refuse_private_writes(reg, "evict")
    dontneed = _core.MADVICE["dontneed"]
    for lo, hi in _ranges(x, reg):
        if reg.access == "w" and reg.shared and reg.fileno() >= 0:
            reg.flush(lo, hi - lo)
        _core.madvise(reg, lo, hi, dontneed)
        _core.writeback(reg, lo, hi)  # dirty pages (from any writer) would stay cached
        _core.fadvise(reg, lo, hi, _core.FADV_DONTNEED)


# ---- residency -----------------------------------------------------------------------------


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover - the loop always returns


def _shade(f: float) -> str:
    """Grey (nothing resident) to blue (all resident)."""
    g, b = (0xDD, 0xDD, 0xDD), (0x2A, 0x7A, 0xB0)
    return "#" + "".join(f"{round(x + (y - x) * f):02x}" for x, y in zip(g, b, strict=True))


class Residency:
    """Which pages under an array are in memory, from ``mincore``.

    Attributes
    ----------
    map : numpy.ndarray of bool
        One entry per page under the array, in address order: True when the
        page is resident (in the page cache, for file-backed memory).
    page_size : int
    pages, resident : int
        Number of pages, number of resident pages.
    fraction : float
        ``resident / pages`` (1.0 for an empty array: nothing left to load).

    In a terminal the repr is one line; in Jupyter the result renders as a
    strip coloured by residency (``_repr_html_``).
    """

    __slots__ = ("map", "page_size")

    def __init__(self, map: np.ndarray[Any, Any], page_size: int = PAGESIZE) -> None:  # noqa: A002
        self.map = np.asarray(map, dtype=bool)
        self.page_size = int(page_size)

    @property
    def pages(self) -> int:
        return int(self.map.size)

    @property
    def resident(self) -> int:
        return int(np.count_nonzero(self.map))

    @property
    def fraction(self) -> float:
        return self.resident / self.pages if self.pages else 1.0

    def __repr__(self) -> str:
        return (
            f"<Residency {self.resident}/{self.pages} pages resident ({self.fraction:.1%}): "
            f"{_fmt_bytes(self.resident * self.page_size)} of "
            f"{_fmt_bytes(self.pages * self.page_size)}>"
        )

    def _strip(self, width: int = 480, height: int = 14, cells: int = 240) -> str:
        """An inline SVG: the map in at most ``cells`` bins, runs of equal colour merged."""
        n = self.pages
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'role="img" aria-label="resident pages">'
        ]
        if n:
            k = min(n, cells)
            edges = np.linspace(0, n, k + 1).astype(np.int64)
            frac = np.add.reduceat(self.map.astype(np.float64), edges[:-1]) / np.diff(edges)
            colours = [_shade(float(f)) for f in frac]
            w = width / k
            i = 0
            while i < k:
                j = i
                while j + 1 < k and colours[j + 1] == colours[i]:
                    j += 1
                parts.append(
                    f'<rect x="{i * w:.2f}" y="0" width="{(j - i + 1) * w + 0.05:.2f}" '
                    f'height="{height}" fill="{colours[i]}"/>'
                )
                i = j + 1
        else:
            parts.append(f'<rect width="{width}" height="{height}" fill="#f4f4f4"/>')
        parts.append("</svg>")
        return "".join(parts)

    def _repr_html_(self) -> str:
        text = html.escape(repr(self))
        return (
            f'<div class="mmarray-residency">{self._strip()}'
            f'<div style="font-family:monospace;font-size:11px">{text}</div></div>'
        )


def residency(a: np.ndarray[Any, Any] | Region) -> Residency:
    """Report which pages under ``a`` (any view, or a Region) are in memory.

    Examples
    --------
    >>> import mmarray, tempfile, os
    >>> a = mmarray.create(os.path.join(tempfile.mkdtemp(), "r.raw"), 8 * 4096, "u1", fill=1)
    >>> r = mmarray.residency(a[:4096])
    >>> r.pages, r.map.dtype
    (1, dtype('bool'))
    >>> os.unlink(mmarray.region(a).name)
    """
    reg = _target(a, "residency")
    maps = [np.frombuffer(_core.mincore(reg, lo, hi), dtype=np.uint8) for lo, hi in _ranges(a, reg)]
    flat = np.concatenate(maps) if maps else np.zeros(0, dtype=np.uint8)
    return Residency(flat.astype(bool), PAGESIZE)


def region_html(reg: Region) -> str:
    """HTML for a Region in Jupyter: its description and its resident-page strip.

    Meant for ``Region._repr_html_``; a closed region shows its repr only.
    """
    text = html.escape(repr(reg))
    if reg.closed or not reg.mapped:
        return f"<code>{text}</code>"
    return f"<div><code>{text}</code>{residency(reg)._repr_html_()}</div>"


# ---- growing -------------------------------------------------------------------------------


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
    if not isinstance(a, np.ndarray):
        raise TypeError(f"grow needs a numpy array, not {type(a).__name__}")
    reg = _target(a, "grow")
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
    fd = _fd_of(reg, "grow")
    name = reg.name
    lo, hi = _span(a, reg) if a.size else (a.__array_interface__["data"][0] - reg.address,) * 2
    flo, fhi = reg.offset + lo, reg.offset + hi
    size = os.fstat(fd).st_size
    if fhi != size:
        raise ValueError(
            f"{name}: grow needs the array to run to the end of its file; it ends at byte "
            f"{fhi} but the file has {size} bytes"
        )
    shape = a.shape
    new_shape = (shape[0] + n, *shape[1:])
    header = b""
    if flo >= 6 and _npy.is_npy(os.pread(fd, 6, 0)):
        head = os.pread(fd, min(flo, 1 << 16), 0)  # numpy refuses longer headers anyway
        span = _npy.header_span(memoryview(head), name)
        if span != flo:
            raise ValueError(
                f"{name}: grow needs the whole .npy array; this array starts at byte {flo}, "
                f"the data at byte {span}"
            )
        hshape, fortran, dt = _npy.parse_header(head[:span])
        if hshape != shape or dt != a.dtype:
            raise ValueError(
                f"{name}: grow needs the array of the .npy header (shape {hshape}, {dt}); "
                f"got shape {shape}, {a.dtype}"
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
    row = math.prod(shape[1:]) * a.itemsize
    new_size = fhi + n * row
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
                os.pwrite(fd, head[:span], 0)
        raise
