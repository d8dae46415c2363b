"""Fuzz targets: mmarray.open of raw files and of .npy files (corrupt headers included),
and named memory holding the same .npy bytes."""

from __future__ import annotations

import errno
import io
import math
import os
import pathlib
import warnings
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import mmarray

from .oracle import (
    AS_LIMIT,
    PAGE,
    SPARSE_MAX,
    TOUCH_MAX,
    as_str,
    attempt,
    count,
    dtype_or_none,
    fresh,
    names_path,
    nbytes_of,
    norm_shape,
    numpy_outcome,
    same_bytes,
    shape_ok,
    shm_name,
)
from .sources import (
    any_dtypes,
    any_shapes,
    fuzz_paths,
    good_dtypes,
    modes_open,
    offsets,
    orders,
    small_shapes,
)

# ---- open (raw) --------------------------------------------------------------------------


def _npy_blob() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(6, dtype="<i8"))
    return buf.getvalue()


NPY_BLOB = _npy_blob()


def open_raw_model(
    kind: str,
    mode: Any,
    dt: np.dtype | None,
    shape: Any,
    offset: Any,
    order: Any,
    size: int,
    npy: bool = False,
) -> tuple[bool, Any, bool]:
    """When must open succeed?  (valid, the shape it maps, whether the mapping is big).
    No ``offset`` is 0, but refuses a ``*.npy`` file that starts with the magic (``npy``)."""
    shp = None if shape is None else norm_shape(shape)
    big = False
    if offset is None:
        if npy:
            return False, shp, big
        offset = 0
    valid = (
        kind == "file"
        and isinstance(mode, str)
        and mode in ("r", "r+", "c")
        and dt is not None
        and not dt.hasobject
        and isinstance(offset, (int, np.integer))
        and 0 <= offset <= size
        and order in ("C", "F")
        and (shape is None or shp is not None)
    )
    if valid:
        assert dt is not None
        if shp is None:
            valid = dt.itemsize > 0 and (size - offset) % dt.itemsize == 0
            shp = ((size - offset) // dt.itemsize,) if dt.itemsize else ()
        else:
            valid = shape_ok(shp, dt) and nbytes_of(shp, dt) <= size - offset
        # the mapping needs address space: a big sparse file may not fit under RLIMIT_AS
        big = size - offset >= AS_LIMIT // 4
    return valid, shp, big


def check_opened(
    a: np.ndarray, arg: Any, mode: str, dt: np.dtype, shp: Any, offset: int, order: str, size: int
) -> None:
    """An accepted open: numpy's view of the file's bytes; r+ writes through, c does not."""
    assert type(a) is np.ndarray and a.dtype == (dt if dt.subdtype is None else dt.base)
    want_shape = shp if dt.subdtype is None else shp + dt.subdtype[1]
    assert a.shape == want_shape, (a.shape, want_shape)
    assert a.flags.writeable == (mode != "r")
    if a.nbytes <= TOUCH_MAX and size <= TOUCH_MAX:
        data = (
            pathlib.Path(arg).read_bytes() if not isinstance(arg, bytes) else open(arg, "rb").read()
        )
        want = np.ndarray(shp, dt, buffer=data, offset=offset, order=order)
        same_bytes(a, want)
        if mode in ("r+", "c") and a.nbytes:
            flat = a.reshape(-1).view(np.uint8) if a.flags.c_contiguous else None
            if flat is not None and flat.size:
                flat[0] ^= 0xFF
                mmarray.region(a).flush()
                after = open(as_str(arg), "rb").read()
                changed = after[offset] != data[offset]
                assert changed == (mode == "r+"), "r+ must write through, c must not"


@given(
    content=st.one_of(
        st.binary(max_size=200),
        st.integers(0, 3 * PAGE).map(lambda n: b"\x05" * n),
        st.just(NPY_BLOB),  # a .npy file opened raw: refused without offset=
    ),
    sparse=st.sampled_from([0] * 6 + [PAGE * 300, SPARSE_MAX]),
    path=st.data(),
    mode=modes_open,
    dtype=any_dtypes,
    shape=st.one_of(st.none(), any_shapes),
    offset=offsets,
    order=orders,
)
def t_open_raw(content, sparse, path, mode, dtype, shape, offset, order):
    count("open_raw")
    suffix = ".npy" if content == NPY_BLOB and path.draw(st.booleans()) else ""
    arg, kind = path.draw(fuzz_paths(suffix=suffix, exists=content))
    if kind == "file" and sparse:
        os.truncate(arg, sparse)
    size = os.stat(arg).st_size if kind == "file" else 0
    ok, res = attempt(
        "open",
        lambda: mmarray.open(arg, mode, dtype=dtype, shape=shape, offset=offset, order=order),
    )
    dt = dtype_or_none(dtype)
    npy = (
        kind == "file"
        and bytes(content[:6]) == b"\x93NUMPY"
        and os.fsdecode(os.fspath(arg)).endswith(".npy")
    )
    valid, shp, big = open_raw_model(kind, mode, dt, shape, offset, order, size, npy)
    offset = 0 if offset is None else offset
    if not ok:
        assert not valid or (big and isinstance(res, OSError) and res.errno == errno.ENOMEM), (
            f"refused a valid open: {res!r}"
        )
        if kind == "file" and isinstance(res, ValueError) and "past the end" in str(res):
            assert names_path(res, arg), res
        return
    assert valid, f"accepted an invalid open: mode={mode!r} dtype={dtype!r} shape={shape!r}"
    check_opened(res, arg, mode, dt, shp, offset, order, size)


# ---- open (.npy), corrupt headers, named memory with the same headers ---------------------------


@st.composite
def npy_arrays(draw: Any) -> np.ndarray:
    """Arrays of any mappable dtype (random bytes, so any bit pattern) and small shapes."""
    dt = draw(good_dtypes)
    shape = draw(st.one_of(small_shapes, st.sampled_from([(0,), (0, 3), (3, 0)])))
    n = math.prod(shape) * dt.itemsize
    return np.ndarray(shape, dt, buffer=draw(st.binary(min_size=n, max_size=n)))


@st.composite
def corruptions(draw: Any, blob: bytes) -> bytes:
    """Damage a .npy file: flip header bytes, truncate, append, edit the header text."""
    how = draw(st.sampled_from(["none", "none", "byte", "truncate", "append", "text", "len"]))
    hlen_end = blob.index(b"\n") + 1 if b"\n" in blob else len(blob)
    if how == "byte":
        i = draw(st.integers(0, max(0, hlen_end - 1)))
        return blob[:i] + bytes([draw(st.integers(0, 255))]) + blob[i + 1 :]
    if how == "truncate":
        return blob[: draw(st.integers(0, len(blob)))]
    if how == "append":
        return blob + draw(st.binary(min_size=1, max_size=64))
    if how == "len":  # the header length field
        major = blob[6]
        width = 2 if major == 1 else 4
        n = draw(st.sampled_from([0, 1, 7, 2**15, 2**16 - 1, 2**32 - 1, 2**31]))
        if n >= 1 << (8 * width):
            n = (1 << (8 * width)) - 1
        return blob[:8] + n.to_bytes(width, "little") + blob[8 + width :]
    if how == "text":
        old = draw(
            st.sampled_from(
                [
                    b"'fortran_order': False",
                    b"'fortran_order': True",
                    b"'shape': (",
                    b"'descr': '",
                    b"), }",
                    b"{'descr'",
                ]
            )  # fmt: skip
        )
        new = draw(
            st.sampled_from(
                [
                    b"'fortran_order': 'yes'",
                    b"'fortran_order': 1",
                    b"'shape': (-1, ",
                    b"'shape': (2**70, ",
                    b"'shape': (9999999999999999999999, ",
                    b"'shape': (True, ",
                    b"'descr': 'O', 'x': '",
                    b"'descr': '|O",
                    b"), 'x': 1}",
                    b"{'descr': '<q9', 'd'",
                    b"'shape': (0, 9223372036854775807, ",
                    b"'shape': (0, 4611686018427387904, 4611686018427387904, ",
                ]
            )  # fmt: skip
        )
        return blob.replace(old, new, 1)
    return blob


def npy_bytes(arr: np.ndarray, version: tuple[int, int] | None) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.lib.format.write_array(out, arr, version=version, allow_pickle=False)
    return out.getvalue()


@given(
    arr=npy_arrays(),
    fortran=st.booleans(),
    version=st.sampled_from([None, (1, 0), (2, 0), (3, 0)]),
    data=st.data(),
    mode=st.sampled_from(["r", "r+", "c"]),
    extra=st.sampled_from(["none", "none", "shape", "bad_shape", "offset", "order"]),
    where=st.sampled_from(["file", "file", "file", "shared"]),
)
def t_open_npy(arr, fortran, version, data, mode, extra, where):
    count("open_npy")
    if fortran:
        arr = np.asfortranarray(arr)
    blob = data.draw(corruptions(npy_bytes(arr, version)))
    p = fresh(".npy")
    p.write_bytes(blob)
    ref_ok, ref = numpy_outcome(lambda: np.load(p, allow_pickle=False))
    if where == "shared":
        name = shm_name()
        shm = "/dev/shm/" + name
        with open(shm, "wb") as f:
            f.write(blob)
        os.chmod(shm, 0o600)  # under any umask: named() refuses group-writable memory
        try:
            ok, res = attempt("named", lambda: mmarray.named(name))
        finally:
            mmarray.unlink(name)
        where_name = shm
    else:
        kw: dict[str, Any] = {}
        if ref_ok:
            kw = {
                "none": {},
                "shape": {"shape": ref.shape},
                "bad_shape": {"shape": ref.shape + (2,)},
                "offset": {"offset": 8},
                "order": {"order": "Q"},
            }[extra]
        ok, res = attempt("open", lambda: mmarray.open(p, mode, **kw))
        where_name = str(p)
        if extra in ("bad_shape", "offset", "order") and kw:
            assert not ok and isinstance(res, ValueError), f"{extra}: {res!r}"
            return
    if ok:
        assert ref_ok, f"mapped a .npy file numpy refuses ({ref!r})"
        same_bytes(res, ref)
        assert res.flags.f_contiguous == ref.flags.f_contiguous or res.ndim < 2
        return
    # refused: numpy must refuse too, with a ValueError naming the file
    assert not ref_ok, f"refused a .npy file numpy reads: {res!r}"
    assert isinstance(res, ValueError), repr(res)
    assert names_path(res, where_name), f"the error does not name the file: {res}"
