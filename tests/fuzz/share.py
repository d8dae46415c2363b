"""Fuzz targets: share and ArrayRef (forged references included), named memory, lock,
and map_chunks."""

from __future__ import annotations

import math
import os
import pickle
import stat
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import mmarray

from .internals import REF_FIELDS, ref_fields
from .oracle import (
    PAGE,
    attempt,
    count,
    dtype_or_none,
    expand,
    mappable,
    norm_shape,
    same_bytes,
    shm_name,
)
from .sources import (
    native_dtypes,
    odd_names,
    shareable,
    small_shapes,
    sources,
    stat_inputs,
    views_of,
)

# ---- share / ArrayRef --------------------------------------------------------------------------

garbage = {
    "kind": st.sampled_from(["fd", "path", "x", 3]),
    "path": st.sampled_from(["/nonexistent", "", "/dev/zero", "/dev/null", 3, "/proc/self/fd/999"]),
    "device": st.sampled_from([0, -1, "x", 2**70]),
    "inode": st.sampled_from([0, -1, "x", 2**70]),
    "file_size": st.sampled_from([0, -1, "x", 2**70]),
    "stamp": st.sampled_from(
        [
            (),
            "x",
            None,
            (("btime", 0),),
            (("nope", 1),),
            (("btime", "x"),),
            (("generation", 1), ("btime", 2), ("ctime", 3)),
            (("ctime", 1),),
        ]
    ),
    "offset": st.sampled_from([-1, 1, PAGE, 2**40, 2**63, 2**70, "x", 1.5]),
    "length": st.sampled_from([0, -1, 1, PAGE, 2**40, 2**63, "x"]),
    "data_offset": st.sampled_from([-1, 1, 8, 2**40, 2**63, "x"]),
    "shape": st.sampled_from([(10**6,), (), (-1,), ("x",), (2**62, 2**62), (0,), (3,), None]),
    "strides": st.sampled_from([(0,), (-8,), (2**62,), (), (1,), None, ("x",)]),
    "dtype": st.sampled_from(
        [
            np.dtype(object),
            np.dtype("V0"),
            np.dtype("f8"),
            "not",
            None,
            np.dtype([("a", "O")]),
            np.dtype("u1"),
        ]
    ),  # fmt: skip
    "writeable": st.sampled_from([True, False, "x", None]),
}


def expected_from_ref(ref: mmarray.ArrayRef) -> np.ndarray:
    """What ref.open() must return, read with os.pread from the referenced file."""
    fd = os.open(ref.path, os.O_RDONLY)
    try:
        buf = os.pread(fd, ref.length, ref.offset)
    finally:
        os.close(fd)
    return np.ndarray(ref.shape, ref.dtype, buffer=buf, offset=ref.data_offset, strides=ref.strides)


@given(src=sources(), data=st.data(), forge=st.lists(st.sampled_from(REF_FIELDS), max_size=3))
def t_share(src, data, forge):
    count("share")
    try:
        v = data.draw(views_of(src.a))
        ok, ref = attempt("share", lambda: mmarray.share(v))
        if not ok:
            assert not shareable(src) or isinstance(ref, OSError), f"{src.kind}: {ref!r}"
            return
        assert shareable(src), f"shared a {src.kind} array"
        assert pickle.loads(pickle.dumps(ref)) == ref
        b = ref.open()
        same_bytes(b, v)
        assert b.flags.writeable == v.flags.writeable
        if b.size and b.flags.writeable:
            b.reshape(-1)[:1] = 0 if b.dtype.kind != "V" else b.reshape(-1)[:1]
            same_bytes(b, v)  # the same pages
        del b
        if not forge:
            return
        fields = dict(zip(REF_FIELDS, ref_fields(ref), strict=True))
        for f in forge:
            fields[f] = data.draw(garbage[f])
        forged = mmarray.ArrayRef(*fields.values())
        ok, b = attempt("share", forged.open)
        if ok:
            assert isinstance(fields["dtype"], np.dtype) and not fields["dtype"].hasobject
            if fields["length"] == 0:
                # elements of a zero-byte dtype (V0) read nothing: any number is fine
                assert b.nbytes == 0, "a reference to no bytes gave an array of bytes"
            else:
                same_bytes(b, expected_from_ref(forged))
    finally:
        src.cleanup()


# ---- named shared memory ------------------------------------------------------------------------

bad_names = st.sampled_from(["", "/", "a/b", "..", ".", "/..", "../x", "x/..", "a\0b", "x" * 300,
                             "é" * 200, "//x", "x/", 3, b"bytes", None])  # fmt: skip


@given(
    good=st.booleans(),
    suffix=odd_names,
    bad=bad_names,
    shape=st.one_of(small_shapes, st.sampled_from([(2**62, 4), (2**70,), (-1,), "x", (5000, 20)])),
    dtype=st.one_of(native_dtypes, st.sampled_from([object, "V0", [], "nope"])),
    attach_shape=st.sampled_from(["same", "none", "other"]),
    attach_dtype=st.sampled_from(["same", "none", "other"]),
    slash=st.booleans(),
)
def t_named(good, suffix, bad, shape, dtype, attach_shape, attach_dtype, slash):
    count("named")
    name = f"{shm_name()}-{suffix}" if good else bad
    if good and slash:
        name = "/" + name
    ok, a = attempt("named", lambda: mmarray.named(name, shape, dtype, create=True))
    if not good:
        assert not ok and isinstance(a, (ValueError, TypeError)), f"name {name!r}: {a!r}"
        return
    dt = dtype_or_none(dtype)
    shp = norm_shape(shape)
    valid = mappable(dt, shp)
    if not ok:
        assert not valid, f"refused a valid named(): {a!r}"
        assert not os.path.exists("/dev/shm/" + name.lstrip("/")), "a failed create left memory"
        return
    try:
        assert valid
        shp, dt = expand(shp, dt)
        assert a.shape == shp and a.dtype == dt
        st_ = os.stat("/dev/shm/" + name.lstrip("/"))
        assert stat.S_IMODE(st_.st_mode) == 0o600
        if a.nbytes:
            a.reshape(-1).view(np.uint8)[-1] = 7
        kw: dict[str, Any] = {}
        if attach_shape != "none":
            kw["shape"] = shp if attach_shape == "same" else shp + (1,)
        if attach_dtype != "none":
            kw["dtype"] = dt if attach_dtype == "same" else ("V3" if dt != np.dtype("V3") else "u1")
        ok, b = attempt("named", lambda: mmarray.named(name, **kw))
        if "other" in (attach_shape, attach_dtype):
            assert not ok and isinstance(b, ValueError), repr(b)
        else:
            assert ok, repr(b)
            same_bytes(b, a)
        ok, e = attempt("named", lambda: mmarray.named(name, shape, dtype, create=True))
        assert not ok and isinstance(e, FileExistsError)
    finally:
        mmarray.unlink(name)
    ok, e = attempt("named", lambda: mmarray.unlink(name))
    assert not ok and isinstance(e, FileNotFoundError)


# ---- lock ---------------------------------------------------------------------------------------


@given(
    src=sources(),
    data=st.data(),
    exclusive=st.sampled_from([True, False, 0, "x"]),
    timeout=st.sampled_from([None, 0, 0.01, 5, -1, float("nan"), float("inf"), "x", 1e300]),
    other=st.sampled_from([None, None, [1, 2], "x", 3]),
)
def t_lock(src, data, exclusive, timeout, other):
    count("lock")
    try:
        v = data.draw(views_of(src.a)) if other is None else other
        has_fd = other is None and src.kind not in ("plain", "anon_private", "closed")
        t_ok = timeout is None or (
            isinstance(timeout, (int, float)) and not math.isnan(timeout) and timeout >= 0
        )
        cm = mmarray.lock(v, exclusive=exclusive, timeout=timeout)
        ok, e = attempt("lock", cm.__enter__)
        if not ok:
            assert not (has_fd and t_ok), f"lock refused: {e!r}"
            return
        try:
            assert has_fd and t_ok, f"lock accepted {src.kind} timeout={timeout!r}"
            # while it is held, an exclusive lock on the same bytes must time out
            cm2 = mmarray.lock(v, timeout=0)
            ok2, e = attempt("lock", cm2.__enter__)
            if ok2:
                cm2.__exit__(None, None, None)
            assert not ok2 and isinstance(e, TimeoutError), repr(e)
        finally:
            cm.__exit__(None, None, None)
        with mmarray.lock(v, timeout=0):  # released: free again
            pass
    finally:
        src.cleanup()


# ---- map_chunks --------------------------------------------------------------------------


def _chunk_copy(c: np.ndarray) -> np.ndarray:
    return np.array(c, copy=True)


def _chunk_fail(c: np.ndarray) -> Any:
    raise ZeroDivisionError("fuzz")


@given(
    inp=stat_inputs(),
    chunk=st.one_of(st.none(), st.integers(1, 7), st.sampled_from([0, -1, 2**70, 1.5])),
    workers=st.one_of(st.none(), st.sampled_from([1, 2, 3, 0, -1, 2**40, 1.5])),
    backend=st.sampled_from(["thread"] * 40 + ["process", "bogus"]),
    fail=st.sampled_from([False, False, False, True]),
)
def t_map_chunks(inp, chunk, workers, backend, fail):
    count("map_chunks")
    a, form = inp
    if form == "big" and np.ndim(a):  # ("big" stays 0-d where the dtype is not resized)
        a = a[:50]
    func = _chunk_fail if fail else _chunk_copy
    try:
        ok, res = attempt(
            "map_chunks",
            lambda: mmarray.map_chunks(
                func, a, chunk=chunk, workers=workers, backend=backend
            ),  # fmt: skip
        )
    except ZeroDivisionError as e:
        assert fail and any("in map_chunks: chunk a[0:" in n for n in e.__notes__), e.__notes__
        return
    arr = np.asarray(a)
    valid = (
        backend in ("thread", "process")
        and arr.ndim > 0
        and (workers is None or (isinstance(workers, int) and workers >= 1))
        and (chunk is None or (isinstance(chunk, int) and chunk >= 1))
    )
    if arr.ndim and arr.shape[0] == 0 and valid:
        assert ok and res == []
        return
    if not ok:
        assert not valid, f"map_chunks refused valid arguments: {res!r}"
        return
    assert valid, f"map_chunks accepted chunk={chunk!r} workers={workers!r} backend={backend!r}"
    if fail:
        raise AssertionError("the failing function's exception was lost")
    if chunk is not None:
        assert all(len(r) == min(chunk, arr.shape[0] - i * chunk) for i, r in enumerate(res))
    lo = 0
    for r in res:  # consecutive chunks, in order, covering every row once
        if backend == "process" and r.dtype == arr.dtype.newbyteorder("="):
            r = r.astype(arr.dtype)  # numpy's pickle protocol 5 makes byte order native
        same_bytes(r, arr[lo : lo + len(r)])
        lo += len(r)
    assert lo == arr.shape[0]
