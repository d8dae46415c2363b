"""``mmarray info FILE...``: what a file holds and where its bytes are.

Each file is mapped once, whole, as bytes (no page is read in doing so), and every
fact comes from that one mapping: the ``.npy`` header from its first bytes, the
sizes from ``fstat`` of its descriptor, the holes from ``lseek(SEEK_DATA)`` over it
and the resident pages from ``mincore``. A file renamed or replaced meanwhile
cannot mix two files' facts.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

import mmarray
from mmarray import _npy

from . import _args
from ._report import Failures

__all__ = ["add_parser", "file_info"]


def _layout(whole: np.ndarray[Any, Any], args: argparse.Namespace, name: str) -> dict[str, Any]:
    """format, shape, dtype, order and the header and data byte ranges of a file."""
    size = whole.size
    if args.dtype is None and _npy.is_npy(whole[:6].tobytes()):
        if args.shape is not None or args.offset:
            raise ValueError("--shape and --offset describe a raw file: give --dtype too")
        span = _npy.header_span(memoryview(whole.data), name)
        try:
            shp, fortran, dt = _npy.parse_header(whole[:span].tobytes())
        except ValueError as e:
            raise ValueError(f"bad .npy header: {e}") from None
        nbytes = int(np.prod(shp, dtype=object)) * dt.itemsize
        if size - span < nbytes:
            raise ValueError(
                f".npy header says shape {shp} of {dt} ({nbytes} bytes) but the file holds "
                f"{size - span} bytes of data"
            )
        return dict(format="npy", version=f"{whole[6]}.{whole[7]}", shape=list(shp),
                    dtype=str(dt), order="F" if fortran else "C", header_offset=0,
                    header_bytes=span, data_offset=span, data_bytes=nbytes)  # fmt: skip
    if args.dtype is None:
        if args.shape is not None:
            raise ValueError("--shape describes a raw file's array: give --dtype too")
        return dict(format="raw", version=None, shape=None, dtype=None, order=None,
                    header_offset=None, header_bytes=0, data_offset=args.offset,
                    data_bytes=max(size - args.offset, 0))  # fmt: skip
    shp, nbytes = _raw_extent(size, args)
    return dict(format="raw", version=None, shape=list(shp), dtype=str(args.dtype),
                order=args.order, header_offset=None, header_bytes=0,
                data_offset=args.offset, data_bytes=nbytes)  # fmt: skip


def _raw_extent(size: int, args: argparse.Namespace) -> tuple[tuple[int, ...], int]:
    """The shape and byte size of a raw file's array, as ``mmarray.open`` would map it."""
    dt: np.dtype[Any] = args.dtype
    avail = size - args.offset
    if avail < 0:
        raise ValueError(f"offset {args.offset} is past the end of the file ({size} bytes)")
    if args.shape is None:
        if dt.itemsize == 0 or avail % dt.itemsize:
            raise ValueError(
                f"{avail} bytes after offset {args.offset} are not a multiple of the {dt} "
                f"item size ({dt.itemsize}); give --shape"
            )
        return (avail // dt.itemsize,), avail
    need = int(np.prod(args.shape, dtype=object)) * dt.itemsize
    if need > avail:
        raise ValueError(
            f"shape {args.shape} of {dt} needs {need} bytes after offset {args.offset}, "
            f"but the file has {avail}"
        )
    return args.shape, need


def file_info(path: str, args: argparse.Namespace) -> dict[str, Any]:
    """The facts ``mmarray info`` reports about one file, as a JSON-ready dict."""
    whole = mmarray.open(path, dtype="u1", offset=0)  # the whole file, as bytes, mapped once
    res = mmarray.residency(whole)  # first: reading the header makes the kernel read ahead
    out: dict[str, Any] = {"file": path}
    out.update(_layout(whole, args, path))
    use = mmarray.disk_usage(whole)
    data: list[tuple[int, int]] = mmarray.extents(whole) if whole.size else []
    holes, pos = [], 0
    for start, stop in data:
        if start > pos:
            holes.append([pos, start])
        pos = stop
    if pos < whole.size:
        holes.append([pos, int(whole.size)])
    out.update(apparent=use.apparent, allocated=use.allocated, holes=holes,
               hole_bytes=sum(e - s for s, e in holes), pages=res.pages,
               resident_pages=res.resident, resident_fraction=res.fraction)  # fmt: skip
    return out


def _bytes(n: int) -> str:
    """``'24576 bytes (24.0 KiB)'``."""
    if n < 1024:
        return f"{n} bytes"
    value, units = n / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value /= 1024
        units.pop(0)
    return f"{n} bytes ({value:.1f} {units[0]})"


def as_text(d: dict[str, Any]) -> str:
    """The dict of :func:`file_info` as lines for a terminal."""
    if d["format"] == "npy":
        kind = f".npy {d['version']}"
        header = f"{d['header_bytes']} bytes at offset {d['header_offset']}"
    else:
        kind, header = "raw", "none"
    shape = "unknown (raw file: give --dtype)" if d["shape"] is None else str(tuple(d["shape"]))
    lines = [
        f"{d['file']}:",
        f"  format       {kind}",
        f"  shape        {shape}",
        f"  dtype        {d['dtype'] or '-'}",
        f"  order        {d['order'] or '-'}",
        f"  header       {header}",
        f"  data         {d['data_bytes']} bytes at offset {d['data_offset']}",
        f"  apparent     {_bytes(d['apparent'])}",
        f"  allocated    {_bytes(d['allocated'])}",
        f"  holes        {len(d['holes'])}, {_bytes(d['hole_bytes'])}",
        f"  resident     {d['resident_pages']} of {d['pages']} pages "
        f"({d['resident_fraction']:.1%}) in the page cache",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace, failures: Failures) -> None:
    """Print the facts of each file; a file that fails is reported and skipped."""
    found = []
    for path in args.files:
        with failures.about(path):
            d = file_info(path, args)
            found.append(d)
            if not args.json:
                print(as_text(d))
    if args.json and found:
        print(json.dumps(found[0] if len(args.files) == 1 else found, indent=2))
    sys.stdout.flush()


def add_parser(sub: Any) -> None:
    """Register ``info``."""
    p = sub.add_parser(
        "info",
        help="shape, dtype, offsets, sizes, holes and cached pages of files",
        description="Describe each FILE: format, shape, dtype, order, the header and data "
        "offsets, the apparent size (ls -l) and the allocated size (du), the holes "
        "(ranges without disk blocks) and the share of its pages in the page cache.",
    )
    p.add_argument(
        "files", nargs="+", metavar="FILE", help=".npy or raw files (raw: --dtype shows the array)"
    )
    p.add_argument(
        "--json", action="store_true", help="one JSON object per file (a list for several)"
    )
    _args.add_raw_options(p)
    p.set_defaults(run=run)
