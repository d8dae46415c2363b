"""``mmarray create|grow|punch|evict|prefetch FILE``: make, extend and manage files."""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import numpy as np

import mmarray

from . import _args
from ._report import Failures

__all__ = ["add_parsers", "dig_holes"]

_CHUNK = 8 << 20  # bytes scanned at a time for zero pages


def _create(args: argparse.Namespace) -> str:
    if args.fill is not None:
        _args.check_fill(args.fill, args.dtype)
    try:
        a = mmarray.create(
            args.file, args.shape, args.dtype, fill=args.fill, allocate=args.allocate,
            exist_ok=args.force, order=args.order,
        )  # fmt: skip
    except FileExistsError as e:
        raise FileExistsError(e.errno, "file exists (--force replaces it)", args.file) from None
    use = mmarray.disk_usage(a)
    return (
        f"{args.file}: created, shape {a.shape} of {a.dtype}, {use.apparent} bytes "
        f"({use.allocated} allocated)"
    )


def _grow(args: argparse.Namespace) -> str:
    a = _args.open_array(args, args.file, "r+")
    b = mmarray.grow(a, args.rows)
    return f"{args.file}: grown from shape {a.shape} to {b.shape}"


def _zero_runs(seg: np.ndarray[Any, Any], page: int) -> list[tuple[int, int]]:
    """The byte ranges of ``seg`` made of whole zero pages (the last may be short)."""
    n = -(-seg.size // page)
    padded = seg.size == n * page
    full = seg[: (n if padded else n - 1) * page].reshape(-1, page).any(axis=1)
    busy = full if padded else np.append(full, seg[(n - 1) * page :].any())
    edges = np.flatnonzero(np.diff(np.concatenate(([True], busy, [True])).astype(np.int8)))
    return [(int(s) * page, min(int(e) * page, seg.size)) for s, e in edges.reshape(-1, 2)]


def _scan_ranges(whole: np.ndarray[Any, Any]) -> list[tuple[int, int]]:
    """The byte ranges that may hold allocated blocks: the data extents, or the whole
    file when blocks lie outside them (reserved, never written: ext4 and xfs report
    such unwritten extents as holes, yet they take disk space)."""
    if not whole.size:
        return []
    data = mmarray.extents(whole)
    if sum(e - s for s, e in data) < mmarray.disk_usage(whole).allocated:
        return [(0, int(whole.size))]
    return data


def dig_holes(whole: np.ndarray[Any, Any]) -> int:
    """Punch out the pages of ``whole`` (a file mapped as bytes, writable) that hold
    only zeros; the data read back stays the same. Returns the bytes punched over
    (whole pages, holes included: ``disk_usage`` tells what was handed back)."""
    page = mmarray.PAGESIZE
    freed = 0
    for start, stop in _scan_ranges(whole):
        lo = start - start % page
        while lo < stop:
            hi = min(lo + _CHUNK, stop)
            for s, e in _zero_runs(whole[lo:hi], page):
                freed += mmarray.punch(whole[lo + s : lo + e])
            lo = hi
    return freed


def _punch(args: argparse.Namespace) -> str:
    whole = mmarray.open(args.file, "r+", dtype="u1", offset=0)
    before = mmarray.disk_usage(whole).allocated
    dig_holes(whole)
    after = mmarray.disk_usage(whole).allocated
    return f"{args.file}: allocated {before} -> {after} bytes ({before - after} handed back)"


def _pages(args: argparse.Namespace, what: str) -> str:
    whole = mmarray.open(args.file, dtype="u1", offset=0)
    stayed = ""
    if what == "evict":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", mmarray.EvictionWarning)
            mmarray.evict(whole)
        for w in caught:
            if isinstance(w.message, mmarray.EvictionWarning):
                stayed = f"; {w.message.stayed} could not be evicted: {w.message.reason}"
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    else:
        mmarray.prefetch(whole)
    res = mmarray.residency(whole)
    share = f"{res.resident} of {res.pages} pages in the page cache ({res.fraction:.1%})"
    return f"{args.file}: {share}{stayed}"


def run(args: argparse.Namespace, failures: Failures) -> None:
    """Do the command on its file and print one line about what it did."""
    with failures.about(args.file):
        if args.command == "create":
            print(_create(args))
        elif args.command == "grow":
            print(_grow(args))
        elif args.command == "punch":
            print(_punch(args))
        else:
            print(_pages(args, args.command))


def _add_create(sub: Any) -> None:
    p = sub.add_parser(
        "create",
        help="a new raw or .npy file (sparse: instant)",
        description="Create FILE holding an array of the given shape and dtype: a .npy "
        "file when the name ends in .npy, a raw file otherwise. The file is sparse (no "
        "disk blocks until written) unless --allocate reserve is given.",
    )
    p.add_argument("file", metavar="FILE", help="the new file: .npy if its name ends so, else raw")
    p.add_argument("--shape", type=_args.shape, required=True, help="e.g. 1000,3")
    p.add_argument("--dtype", type=_args.dtype, required=True, help="e.g. float64")
    p.add_argument("--fill", type=_args.fill_value, help="value of every element (default 0)")
    p.add_argument(
        "--allocate", choices=("sparse", "reserve"), default="sparse",
        help="reserve: allocate every disk block now, so a full disk fails here",
    )  # fmt: skip
    p.add_argument("--order", choices=("C", "F"), default="C", help="memory order")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.set_defaults(run=run)


def add_parsers(sub: Any) -> None:
    """Register ``create``, ``grow``, ``punch``, ``evict`` and ``prefetch``."""
    _add_create(sub)
    p = sub.add_parser(
        "grow",
        help="add N zero rows along axis 0",
        description="Extend the array in FILE by N rows along axis 0 (zeros, sparse); a "
        ".npy header is rewritten with the new shape.",
    )
    p.add_argument("file", metavar="FILE", help="a .npy file, or a raw file with --dtype")
    p.add_argument("rows", type=_args.count, metavar="N")
    _args.add_raw_options(p)
    p.set_defaults(run=run)
    p = sub.add_parser(
        "punch",
        help="hand back the disk blocks of zero pages",
        description="Find the pages of FILE that hold only zeros and punch holes there "
        "(fallocate PUNCH_HOLE): the file reads the same, its allocated size drops. Do "
        "not run it while another process writes the file.",
    )
    p.add_argument("file", metavar="FILE", help="any regular file")
    p.set_defaults(run=run)
    for name, text in (
        (
            "evict",
            "write back FILE's dirty pages and drop them from the page cache (says how "
            "many stayed, and why)",
        ),
        ("prefetch", "load all of FILE into the page cache"),
    ):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("file", metavar="FILE", help="any regular file")
        p.set_defaults(run=run)
