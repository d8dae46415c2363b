"""The page cache: ``madvise`` advice, prefetching, eviction, and the resident-page map.

The Python half of the page-cache calls of ``src/pages.c``: arrays (any view)
become the page-exact byte ranges of their :class:`Region` here, and policy is
chosen here (which advice, which fallback); the C functions do one syscall each
over a page-rounded range.
"""

from __future__ import annotations

import errno
import os
import warnings
from typing import Any

import numpy as np

from . import _core
from ._core import Region
from ._extent import page_ranges
from ._region import open_regular_file, target_region

__all__ = [
    "ADVICE",
    "EvictionWarning",
    "advise",
    "evict",
    "prefetch",
    "resident_map",
    "stream_mode",
]

#: The advice names :func:`advise` accepts.
ADVICE = ("normal", "sequential", "random", "willneed", "dontneed", "hugepage", "nohugepage")
# Advice a kernel may lack at run time (built without transparent huge pages).
_OPTIONAL = frozenset({"hugepage", "nohugepage"})
# errno values that mean "this kernel (or sandbox) does not do that".
_MISSING = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})
# Set to False once MADV_POPULATE_READ turns out to be missing (tests set it too).
_have_populate = True
# A reduction over fewer bytes reads no file ahead (the kernel's read-around suffices).
_STREAM_MIN = 64 << 20
# Reductions over more bytes than this drop the cold pages behind them; None: half of
# the memory available (MemAvailable), read at each call.  The tests set it.
_DROP_BEHIND_BYTES: int | None = None
# Reductions over at least this many bytes read ahead of the pass: below it the kernel's
# own read-around on page faults is as fast (measured on a virtio disk: 256 MiB 20%
# faster without, 1 GiB the same, 4 GiB 1.6-1.8x faster with).  The tests set it.
_READ_AHEAD_MIN = 1 << 30
_READ_AHEAD = 1  # the kernels' stream modes (bits)
_DROP_BEHIND = 2
# File systems whose files live in memory: evict cannot drop their pages.
_MEMORY_FS = frozenset({"tmpfs", "ramfs", "hugetlbfs", "devtmpfs"})


class EvictionWarning(UserWarning):
    """:func:`evict` left pages in the page cache.

    ``stayed`` of the ``pages`` pages asked for are still cached; ``reason`` says
    why, where mmarray can tell (this process still maps the file, a file system
    in memory, or else another process maps them).
    """

    def __init__(self, message: str, stayed: int, pages: int, reason: str) -> None:
        super().__init__(message)
        self.stayed, self.pages, self.reason = stayed, pages, reason


def _refuse_private_writes(reg: Region, what: str) -> None:
    """MADV_DONTNEED on a copy-on-write mapping throws away the private copies."""
    if not reg.shared and reg.access != "r":
        raise ValueError(
            f"{what} would discard this array's copy-on-write changes (a private, writable "
            "mapping: mode 'c' or anonymous(shared=False)); it is refused"
        )


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
    reg = target_region(a, "advise")
    if advice == "dontneed":
        _refuse_private_writes(reg, "advise(a, 'dontneed')")
    for lo, hi in page_ranges(a, reg):
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
    reg = target_region(a, "prefetch")
    for lo, hi in page_ranges(a, reg):
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
    the page cache; so do the pages of memory file systems (tmpfs). Afterwards
    the pages are counted (``mincore``): where some stayed, an
    :class:`EvictionWarning` says how many and why (this process still maps the
    file elsewhere: an array over it is alive; a file system in memory; or
    another process maps them). Shared anonymous memory is never counted: it
    has no file to be re-read from.

    Raises
    ------
    ValueError
        A copy-on-write mapping (mode ``'c'``, ``anonymous(shared=False)``):
        dropping its pages would discard its private changes.

    Warns
    -----
    EvictionWarning
        Pages under ``x`` stayed in the page cache; the warning's ``stayed``,
        ``pages`` and ``reason`` attributes say how many of how many, and why.

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
        fd = open_regular_file(x)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            name = os.fsdecode(os.fspath(x))
            _warn_stayed(*_file_resident(fd, name), os.fstat(fd), name, None)
        finally:
            os.close(fd)
        return
    reg = target_region(x, "evict")
    _refuse_private_writes(reg, "evict")
    dontneed = _core.MADVICE["dontneed"]
    ranges = page_ranges(x, reg)
    for lo, hi in ranges:
        if reg.access == "w" and reg.shared and reg.fileno() >= 0:
            reg.flush(lo, hi - lo)
        _core.madvise(reg, lo, hi, dontneed)
        _core.writeback(reg, lo, hi)  # dirty pages (from any writer) would stay cached
        _core.fadvise(reg, lo, hi, _core.FADV_DONTNEED)
    if ranges and not reg.is_anonymous and reg.fileno() >= 0:
        stayed, pages = _resident(reg, ranges)
        if stayed:
            fd = reg.dup()  # the file itself, held while its status is read
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            _warn_stayed(stayed, pages, st, reg.name or "the file", reg)


def _resident(reg: Region, ranges: list[tuple[int, int]]) -> tuple[int, int]:
    """(resident pages, pages) over the byte ranges of reg (``mincore``)."""
    maps = [np.frombuffer(_core.mincore(reg, lo, hi), dtype=np.uint8) for lo, hi in ranges]
    return sum(int(m.sum()) for m in maps), sum(m.size for m in maps)


def _file_resident(fd: int, name: str) -> tuple[int, int]:
    """(resident pages, pages) of the whole file open as ``fd``, mapped here for
    ``mincore`` without touching it."""
    if os.fstat(fd).st_size == 0:
        return 0, 0
    with Region(fd, access="r", name=name) as whole:
        return _resident(whole, [(0, whole.size)])


def _warn_stayed(
    stayed: int, pages: int, st: os.stat_result, name: str, own: Region | None
) -> None:
    """An EvictionWarning about the ``stayed`` of ``pages`` pages of the file ``st``
    (the status of the descriptor the eviction acted on) that are still cached,
    with the reason; nothing if none stayed. ``own`` is the Region just evicted,
    whose mapping is not counted among this process's other mappings of the file."""
    if stayed == 0:
        return
    span = (own.address, own.address + max(own.size, 1)) if own is not None else None
    mapped = _mappings_here(st.st_dev, st.st_ino, span)
    fs = _filesystem(st.st_dev)
    if mapped == 1:
        reason = (
            "this process still maps the file (1 other mapping: an array over it is "
            "alive; evict or release it first)"
        )
    elif mapped:
        reason = (
            f"this process still maps the file ({mapped} other mappings: arrays over it "
            "are alive; evict or release them first)"
        )
    elif fs in _MEMORY_FS:
        reason = f"the file lives in memory ({fs})"
    else:
        reason = "another process maps them, or they were read again meanwhile"
    message = f"evict: {stayed} of {pages} pages of {name} stayed in the page cache: {reason}"
    warnings.warn(EvictionWarning(message, stayed, pages, reason), stacklevel=3)


def _mappings_here(dev: int, ino: int, own: tuple[int, int] | None) -> int:
    """How many of this process's mappings (``/proc/self/maps``) map the file (dev,
    ino), leaving out those that overlap the address range ``own``."""
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}"
    count = 0
    try:
        with open("/proc/self/maps") as f:
            lines = f.readlines()
    except OSError:
        return 0
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 5 or fields[3] != want or fields[4] != str(ino):
            continue
        lo, hi = (int(v, 16) for v in fields[0].split("-"))
        if own is None or hi <= own[0] or lo >= own[1]:
            count += 1
    return count


def _filesystem(dev: int) -> str | None:
    """The type of the file system mounted from device ``dev`` (``/proc/self/mountinfo``)."""
    want = f"{os.major(dev)}:{os.minor(dev)}"
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[2] == want and " - " in line:
                    return line.split(" - ", 1)[1].split()[0]
    except OSError:
        pass
    return None


def resident_map(a: np.ndarray[Any, Any] | Region) -> np.ndarray[Any, Any]:
    """One bool per page under ``a`` (any view, or a Region), in address order: True
    for a page in memory (``mincore``). :func:`mmarray.residency` wraps it."""
    reg = target_region(a, "residency")
    ranges = page_ranges(a, reg)
    maps = [np.frombuffer(_core.mincore(reg, lo, hi), dtype=np.uint8) for lo, hi in ranges]
    flat = np.concatenate(maps) if maps else np.zeros(0, dtype=np.uint8)
    return flat.astype(bool)


def _memory_available() -> int:
    """MemAvailable from /proc/meminfo, in bytes (else the physical memory)."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def stream_mode(x: np.ndarray[Any, Any], r: int, reg: Region | None) -> int:
    """How the kernels read x (its last r axes one lane) over a file that may be cold,
    as bits: 0, as they come (in memory, several lanes, small); ``_READ_AHEAD``, keep
    several reads in flight ahead of the pass (from `_READ_AHEAD_MIN` bytes, 1 GiB);
    ``_DROP_BEHIND``, hand the pages
    that were not resident before back to the kernel behind the pass (more bytes than
    `_DROP_BEHIND_BYTES`, by default half the memory available: a file larger than
    memory would evict everything else).

    The kernels themselves look at which pages are resident (``mincore``) and do
    nothing where the file is warm; a copy-on-write mapping that may hold private
    changes never drops behind.
    """
    mode = 0
    if reg is not None and not reg.is_anonymous and x.ndim == r and x.nbytes >= _STREAM_MIN:
        if x.nbytes >= _READ_AHEAD_MIN:
            mode |= _READ_AHEAD
        limit = _DROP_BEHIND_BYTES
        if limit is None:
            limit = _memory_available() // 2
        if (reg.shared or reg.access == "r") and x.nbytes > limit:
            mode |= _DROP_BEHIND
    return mode
