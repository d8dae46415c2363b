"""Fuzz target: mmarray.Region, made from descriptors of every kind (files read-write,
read-only and write-only, directories, pipes, /dev/zero, closed, negative and huge
numbers, empty and sparse files), by Region.open and by Region.anonymous, then used."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import mmarray

from .internals import core_ndarray, region_html
from .oracle import FSIZE_LIMIT, PAGE, SPARSE_MAX, TOUCH_MAX, attempt, count, fresh, serial, workdir
from .sources import HUGE


@st.composite
def descriptors(draw: Any) -> tuple[int, str, int]:
    """(fd, kind, file size) of something to map; the caller closes fd when >= 0."""
    kind = draw(st.sampled_from(["rw", "rw", "ro", "wo", "dir", "pipe", "zero", "closed",
                                 "minus", "huge", "empty", "sparse"]))  # fmt: skip
    size = draw(st.integers(0, 3 * PAGE))
    p = fresh(".reg")
    if kind in ("rw", "ro", "wo", "closed"):
        p.write_bytes(bytes(i % 251 for i in range(size)))
    if kind == "empty":
        p.write_bytes(b"")
        size, kind = 0, "rw"
    if kind == "sparse":
        p.write_bytes(b"")
        size = draw(st.sampled_from([SPARSE_MAX, FSIZE_LIMIT]))
        os.truncate(p, size)
        kind = "rw"
    flags = {"rw": os.O_RDWR, "ro": os.O_RDONLY, "wo": os.O_WRONLY, "closed": os.O_RDONLY}
    if kind in flags:
        fd = os.open(p, flags[kind])
        if kind == "closed":
            os.close(fd)
            return fd, kind, size
        return fd, kind, size
    if kind == "dir":
        return os.open(workdir(), os.O_RDONLY), kind, 0
    if kind == "pipe":
        r, w = os.pipe()
        os.close(w)
        return r, kind, 0
    if kind == "zero":
        return os.open("/dev/zero", os.O_RDWR), kind, 0
    return (-1 if kind == "minus" else 2**40), kind, 0


lengths = st.one_of(st.integers(0, 4 * PAGE), st.integers(-3, -1), st.sampled_from(HUGE + [1.5]))
reg_offsets = st.one_of(st.integers(0, 4 * PAGE), st.integers(-3, -1), st.sampled_from(HUGE))
accesses = st.sampled_from(["r", "w", "c", "r", "w", "x", "", "rw", None, 1, b"r"])
names = st.sampled_from([None, "name", b"bytes", 3, object(), "é\udcff", ("t",)])


def make_region(
    ctor: str, fdinfo: tuple[int, str, int], length: Any, offset: Any, name: Any, kw: dict
) -> tuple[bool, Any, Any, int, str]:
    """attempt a Region by ``ctor``: (ok, the region or the exception, the length asked
    for, the size of what it maps, the descriptor's kind: 'anon' for anonymous)."""
    fd, kind, size = fdinfo
    if ctor == "init":
        ok, reg = attempt("Region", lambda: mmarray.Region(fd, length, offset, name=name, **kw))
    elif ctor == "open":
        path = (
            os.readlink(f"/proc/self/fd/{fd}")
            if kind in ("rw", "ro", "wo", "dir", "zero")
            else "/nonexistent"
        )
        if kind == "pipe":
            path = str(workdir() / f"fifo{serial()}")
            os.mkfifo(path)
        ok, reg = attempt("Region", lambda: mmarray.Region.open(path, length, offset, **kw))
    else:
        if isinstance(length, int) and length > TOUCH_MAX and length < 2**40:
            length = TOUCH_MAX
        ok, reg = attempt(
            "Region", lambda: mmarray.Region.anonymous(length, **({"shared": kw["shared"]} if
                                                                   "shared" in kw else {}))
        )  # fmt: skip
        size = length if isinstance(length, int) else 0
        kind = "anon"
    return ok, reg, length, size, kind


def region_op(reg: Any, op: str, kind: str, fd: int, flush_args: tuple[Any, Any]) -> None:
    """One operation on a Region; each either works or fails as allowed, and agrees
    with the Region's state (closed, mapped, its size)."""
    if op == "flush":
        attempt("Region", lambda: reg.flush(*flush_args))
    elif op == "len":
        ok2, n = attempt("Region", lambda: len(reg))
        assert not ok2 or n == reg.size
    elif op == "fileno":
        attempt("Region", reg.fileno)
    elif op == "close":
        reg.close()
        reg.close()
        assert reg.closed
    elif op == "mv":
        ok2, mv = attempt("Region", lambda: memoryview(reg))
        if ok2:
            assert len(mv) == reg.size
            if reg.size and kind in ("rw", "ro") and reg.size <= TOUCH_MAX:
                with open(f"/proc/self/fd/{fd}", "rb") as f:
                    f.seek(reg.offset)
                    assert mv[:64].tobytes() == f.read(min(64, reg.size))
            if reg.size and kind == "anon" and reg.size <= TOUCH_MAX:
                assert not any(mv[:4096])
            mv.release()
        else:
            assert reg.closed
    elif op == "repr":
        repr(reg)
        region_html(reg) if not reg.closed else None
    elif op == "enter":
        ok2, r2 = attempt("Region", lambda: reg.__enter__())
        assert ok2 != reg.closed
    elif op == "address":
        ok2, _ = attempt("Region", lambda: reg.address)
        assert ok2 == reg.mapped or reg.size == 0
    elif op == "props":
        props = (reg.size, reg.offset, reg.access, reg.shared, reg.closed, reg.mapped,
                 reg.is_anonymous, reg.exports, reg.name)  # fmt: skip
        assert props[2] in "rwc" and props[0] >= 0
    elif op == "ndarray":
        ok2, arr = attempt("Region", lambda: core_ndarray(reg, "u1", (reg.size,)))
        assert ok2 != reg.closed


@given(
    fdinfo=descriptors(),
    length=lengths,
    offset=reg_offsets,
    access=accesses,
    shared=st.sampled_from([True, False, 1, 0, "x", None]),
    name=names,
    ctor=st.sampled_from(["init", "init", "open", "anonymous"]),
    ops=st.lists(
        st.sampled_from(
            [
                "flush",
                "len",
                "fileno",
                "close",
                "mv",
                "repr",
                "enter",
                "address",
                "props",
                "ndarray",
            ]
        ),
        max_size=6,
    ),  # fmt: skip
    flush_args=st.tuples(
        st.integers(-5, 5 * PAGE), st.one_of(st.none(), st.integers(-5, 5 * PAGE), st.just(1.5))
    ),  # fmt: skip
)
def t_region(fdinfo, length, offset, access, shared, name, ctor, ops, flush_args):
    count("region")
    fd, fd_kind, _ = fdinfo
    try:
        kw: dict[str, Any] = {}
        if access is not None:
            kw["access"] = access
        if shared is not None:
            kw["shared"] = shared
        ok, reg, length, size, kind = make_region(ctor, fdinfo, length, offset, name, kw)
        if not ok:
            return
        # what a Region maps must lie inside the file
        if kind in ("rw", "ro") and ctor != "anonymous":
            assert reg.offset + reg.size <= size, (reg, size)
        if kind == "anon":
            assert reg.size == length
        for op in ops:
            region_op(reg, op, kind, fd, flush_args)
        reg.close()
    finally:
        if fd_kind not in ("closed", "huge", "minus"):
            os.close(fd)
