"""The page cache: ``madvise`` advice, prefetching, eviction, and the resident-page map.

The Python half of the page-cache calls of ``src/pages.c``: arrays (any view)
become the page-exact byte ranges of their :class:`Region` here, and policy is
chosen here (which advice, which fallback); the C functions do one syscall each
over a page-rounded range.
"""

from __future__ import annotations

import errno
import os
from typing import Any

import numpy as np

from . import _core
from ._core import Region
from ._extent import page_ranges
from ._region import open_regular_file, target_region

__all__ = ["ADVICE", "advise", "evict", "prefetch", "resident_map", "stream_mode"]

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
        fd = open_regular_file(x)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        return
    reg = target_region(x, "evict")
    _refuse_private_writes(reg, "evict")
    dontneed = _core.MADVICE["dontneed"]
    for lo, hi in page_ranges(x, reg):
        if reg.access == "w" and reg.shared and reg.fileno() >= 0:
            reg.flush(lo, hi - lo)
        _core.madvise(reg, lo, hi, dontneed)
        _core.writeback(reg, lo, hi)  # dirty pages (from any writer) would stay cached
        _core.fadvise(reg, lo, hi, _core.FADV_DONTNEED)


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
