"""Fuzz targets: advise, prefetch, evict, residency, punch, disk_usage and extents on
arrays of every kind, their views, their Regions and their paths; and grow."""

from __future__ import annotations

import io
import math
import os
import pathlib
from typing import Any

import numpy as np
import numpy.lib.format as npformat
from hypothesis import given
from hypothesis import strategies as st

import mmarray

from .internals import ADVICE
from .oracle import PAGE, SPARSE_MAX, TOUCH_MAX, attempt, count, raw_bytes, same_bytes
from .sources import Source, sources, views_of

# ---- pages: advise, prefetch, evict, residency, punch, disk_usage, extents ---------------

ADVICES = list(ADVICE) + ["bogus", None, 3, "WILLNEED"]
BACKED = ("create_npy", "create_raw", "open_r", "open_rplus", "open_c", "anon", "anon_private",
          "memmap", "named")  # fmt: skip
FILE_BACKED = ("create_npy", "create_raw", "open_r", "open_rplus", "open_c", "memmap", "named")
PRIVATE_WRITABLE = ("open_c", "anon_private")


def pages_of(v: np.ndarray) -> int:
    """The number of distinct pages holding at least one byte of v."""
    if v.size == 0:
        return 0
    base = v.__array_interface__["data"][0]
    offs = np.zeros(1, dtype=np.int64)
    for n, s in zip(v.shape, v.strides, strict=True):
        offs = (offs[:, None] + np.arange(n, dtype=np.int64) * s).ravel()
    first = (base + offs) // PAGE
    last = (base + offs + v.itemsize - 1) // PAGE
    return len(set(first.tolist()) | set(last.tolist()))


def pages_target(src: Source, data: Any, target: str, op: str) -> tuple[Any, bool] | None:
    """What the call gets: (a view, a Region, a path, a list or a plain array; whether
    it is backed by a mapping); None where a path makes no sense for op."""
    v: Any = data.draw(views_of(src.a))
    backed = src.kind in BACKED
    if target == "region":
        v = mmarray.region(src.a)
        if v is None:
            v = src.a
    elif target == "path":
        if src.path is None or op not in ("evict", "disk_usage", "extents"):
            return None
        v = data.draw(st.sampled_from([str(src.path), src.path, os.fsencode(src.path)]))
    elif target == "list":
        v, backed = [1, 2], False
    elif target == "plain":
        v, backed = np.zeros(3), False
    return v, backed


def pages_model(
    op: str, src: Source, v: Any, backed: bool, is_path: bool, advice: Any, outcome: tuple
) -> bool:
    """Which calls must succeed (outcome: the call's (ok, result) from attempt)."""
    ok, res = outcome
    is_region = isinstance(v, mmarray.Region)
    if is_path:
        return True
    valid = backed and src.kind != "closed"
    if op == "advise":
        valid = valid and advice in ADVICE
        valid = valid and not (advice == "dontneed" and src.kind in PRIVATE_WRITABLE)
        if not ok and isinstance(res, NotImplementedError):
            valid = valid and advice not in ("hugepage", "nohugepage")  # documented
    elif op == "evict":
        valid = valid and src.kind not in PRIVATE_WRITABLE
    elif op == "punch":
        valid = (
            valid
            and not is_region
            and src.kind in ("create_npy", "create_raw", "open_rplus", "memmap", "named")
            and (v.flags.c_contiguous or v.flags.f_contiguous)
            and v.flags.writeable
        )
    elif op in ("disk_usage", "extents"):
        valid = valid and src.kind in FILE_BACKED
        if op == "extents" and not is_region:
            valid = valid and (v.flags.c_contiguous or v.flags.f_contiguous)
        valid = valid and not (op == "extents" and is_region)
    return valid


def check_pages_result(op: str, res: Any, v: Any, src: Source, is_path: bool) -> None:
    """An accepted call's result: residency's page count, prefetch's residency, the
    file's sizes, extents that are sorted, disjoint and hold every nonzero byte."""
    is_region = isinstance(v, mmarray.Region)
    if op == "residency":
        if is_region:
            lo, n = v.address, v.size
            want_pages = (lo + n - 1) // PAGE - lo // PAGE + 1 if n else 0
        else:
            want_pages = pages_of(np.asarray(v))
        assert res.pages == want_pages, (res.pages, want_pages)
        assert res.map.dtype == bool and 0.0 <= res.fraction <= 1.0
    elif op == "prefetch" and not is_path:
        r = mmarray.residency(v)
        assert r.fraction == 1.0, r
    elif op == "disk_usage":
        st_ = os.stat(src.path if src.path is not None else "/dev/shm/" + src.name)
        assert res == (st_.st_size, st_.st_blocks * 512)
    elif op == "extents":
        assert all(0 <= s < e for s, e in res) and res == sorted(res)
        assert all(res[i][1] < res[i + 1][0] for i in range(len(res) - 1))
        if is_path:
            blob = np.frombuffer(pathlib.Path(os.fsdecode(v)).read_bytes(), np.uint8).copy()
        else:
            blob = np.ravel(v, order="K").copy()
        for s, e in res:
            blob[s:e] = 0
        assert not blob.any(), "data outside the extents"


@given(
    src=sources(),
    data=st.data(),
    op=st.sampled_from(
        ["advise", "advise", "prefetch", "evict", "residency", "punch", "disk_usage", "extents"]
    ),  # fmt: skip
    target=st.sampled_from(["view", "view", "view", "region", "path", "list", "plain"]),
    advice=st.sampled_from(ADVICES),
)
def t_pages(src, data, op, target, advice):
    count("pages")
    try:
        chosen = pages_target(src, data, target, op)
        if chosen is None:
            return
        v, backed = chosen
        is_path = target == "path"
        before = raw_bytes(src.a) if src.kind != "closed" else None
        fn = {
            "advise": lambda: mmarray.advise(v, advice),
            "prefetch": lambda: mmarray.prefetch(v),
            "evict": lambda: mmarray.evict(v),
            "residency": lambda: mmarray.residency(v),
            "punch": lambda: mmarray.punch(v),
            "disk_usage": lambda: mmarray.disk_usage(v),
            "extents": lambda: mmarray.extents(v),
        }[op]
        ok, res = attempt("pages", fn)
        valid = pages_model(op, src, v, backed, is_path, advice, (ok, res))
        if not ok:
            assert not valid, f"{op} refused {src.kind} {target}: {res!r}"
            if before is not None:
                assert raw_bytes(src.a) == before
            return
        assert valid, f"{op} accepted {src.kind} {target} advice={advice!r}"
        if op == "punch":
            assert res % PAGE == 0 and 0 <= res <= v.nbytes
            off = v.__array_interface__["data"][0] - src.a.__array_interface__["data"][0]
            want = bytearray(before)
            want[off : off + v.nbytes] = bytes(v.nbytes)
            assert raw_bytes(src.a) == bytes(want), "punch must zero its bytes and only those"
            return
        assert before is None or raw_bytes(src.a) == before, f"{op} changed the data"
        check_pages_result(op, res, v, src, is_path)
    finally:
        src.cleanup()


# ---- grow -----------------------------------------------------------------------------------


@given(
    src=sources(
        [
            "create_npy",
            "create_npy",
            "create_raw",
            "create_raw",
            "open_rplus",
            "open_r",
            "open_c",
            "anon",
            "memmap",
            "named",
            "plain",
            "closed",
        ]
    ),  # fmt: skip
    data=st.data(),
    whole=st.sampled_from([True, True, False]),
    n=st.one_of(st.integers(0, 6), st.sampled_from([-1, 2**40, 2**62, 2**63, 2**70, 1.5, "2"])),
)
def t_grow(src, data, whole, n):
    count("grow")
    try:
        a = src.a
        v = a if whole else data.draw(views_of(a))
        fpath = (
            src.path if src.path is not None else (None if src.name is None else
                                                   pathlib.Path("/dev/shm/" + src.name))
        )  # fmt: skip
        before = fpath.read_bytes() if fpath is not None else None
        ok, res = attempt("grow", lambda: mmarray.grow(v, n))
        row = math.prod(a.shape[1:]) * a.itemsize
        must = (
            whole
            and src.kind in ("create_npy", "create_raw", "open_rplus", "memmap", "named")
            and isinstance(n, int)
            and 0 <= n
            and n * row <= SPARSE_MAX
            and a.shape[0] + n < 2**62
        )
        if not ok:
            assert not must, f"grow refused: {res!r}"
            if fpath is not None:
                assert fpath.read_bytes() == before, "a failed grow changed the file"
                if src.kind != "create_raw" and src.kind != "memmap":
                    np.load(fpath, mmap_mode="r")  # still a valid .npy file
            return
        assert fpath is not None and src.kind not in ("open_r", "open_c", "anon", "plain", "closed")
        # grow adds n rows to the file's array as it is: for a .npy file, all the rows
        # its header says (a view of the first rows grows from the file's end too)
        rows = v.shape[0]
        if before[:6] == b"\x93NUMPY":
            head = io.BytesIO(before)
            major, _ = npformat.read_magic(head)
            read = npformat.read_array_header_1_0 if major == 1 else npformat.read_array_header_2_0
            rows = read(head)[0][0]
        new_shape = (rows + n, *v.shape[1:])
        assert res.shape == new_shape and res.dtype == v.dtype, (src.kind, v.shape, res.shape)
        grown = fpath.stat().st_size
        assert grown == len(before) + n * math.prod(v.shape[1:]) * v.itemsize
        if grown <= TOUCH_MAX:
            same_bytes(res[: v.shape[0]], v)
            assert not raw_bytes(res[rows:]).strip(b"\0")
            if before[:6] == b"\x93NUMPY":
                same_bytes(np.load(fpath), res)
    finally:
        src.cleanup()
