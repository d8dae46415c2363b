"""Fuzz targets: mmarray.create (sizes, fills, allocation, existing files, umask),
mmarray.anonymous, and mmarray.memmap against np.memmap."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import pathlib
import stat
import warnings
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import mmarray

from .oracle import (
    PAGE,
    SPARSE_MAX,
    TOUCH_MAX,
    attempt,
    count,
    dtype_or_none,
    expand,
    fresh,
    mappable,
    nbytes_of,
    norm_shape,
    numpy_outcome,
    same_bytes,
    workdir,
)
from .sources import any_dtypes, any_shapes, fuzz_paths, good_dtypes, orders, small_shapes

# ---- create ------------------------------------------------------------------------------

fills = st.one_of(
    st.none(),
    st.none(),
    st.sampled_from([0, 1, -1, 1.5, float("nan"), float("inf"), 2**70, "x", "7", b"ab", True]),
    st.sampled_from([(1, 2.0), (1, 2.0, 3), [1, 2], [[1]], np.arange(3), np.float32(2.5)]),
    st.sampled_from([complex(1, 2), None, -(2**63), 2**64 - 1]),
)


def create_model(
    kind: str, dtype: Any, shape: Any, fill: Any, allocate: Any, exist: str, order: Any
) -> tuple[bool, bool, Any, np.ndarray | None] | None:
    """What numpy makes of create's arguments: (valid, valid but the file exists, the
    dtype, the array it must hold or None); None for a size this fuzz does not touch."""
    dt = dtype_or_none(dtype)
    shp = norm_shape(shape)
    valid = kind == "file" and mappable(dt, shp) and allocate in ("sparse", "reserve")
    valid = valid and order in ("C", "F")
    valid_but_exists = valid and exist == "file"
    valid = valid and exist != "file"
    want = None
    if valid:
        assert dt is not None and shp is not None
        shp, dt = expand(shp, dt)
        nbytes = nbytes_of(shp, dt)
        if nbytes > SPARSE_MAX or (
            nbytes > TOUCH_MAX and (fill is not None or allocate != "sparse")
        ):
            return None  # not a size this fuzz touches
        if nbytes <= TOUCH_MAX and math.prod(shp) > TOUCH_MAX:
            return None  # items of no bytes, too many to visit (numpy fills them one by one)
        if nbytes <= TOUCH_MAX:
            # as np.ndarray makes it over a buffer (np.zeros would turn 'S0' into 'S1')
            want = np.ndarray(shp, dt, buffer=bytearray(nbytes), order=order)
            if fill is not None:
                w_ok, _ = numpy_outcome(lambda: want.__setitem__(..., np.asarray(fill, dtype=dt)))
                valid = w_ok
    elif kind == "file" and mappable(dt, shp):
        assert dt is not None and shp is not None
        if nbytes_of(shp, dt) > TOUCH_MAX and fill is not None:
            return None
    return valid, valid_but_exists, dt, want


def create_under_umask(
    arg: Any, shape: Any, dtype: Any, fill: Any, allocate: Any, exist: str, order: Any, umask: int
) -> tuple[bool, Any]:
    """attempt(create) with the process's umask set to ``umask``."""
    old_umask = os.umask(umask)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return attempt(
                "create",
                lambda: mmarray.create(
                    arg,
                    shape,
                    dtype,
                    fill=fill,
                    allocate=allocate,
                    exist_ok=exist == "exist_ok",
                    order=order,
                ),  # fmt: skip
            )
    finally:
        os.umask(old_umask)


def check_created(
    a: np.ndarray,
    arg: Any,
    dt: np.dtype,
    want: np.ndarray | None,
    mode: int,
    before: list[str],
) -> None:
    """An accepted create: the file's mode, its format (.npy or raw), its bytes, and
    no other file made or removed."""
    path = pathlib.Path(os.fsdecode(arg))
    st_ = path.stat()
    assert stat.S_IMODE(st_.st_mode) == mode, (oct(st_.st_mode), oct(mode))
    is_npy = path.name.endswith(".npy")
    with open(path, "rb") as f:
        head = f.read(6)
    assert (head == b"\x93NUMPY") == is_npy, f"{path.name}: npy={is_npy} head={head!r}"
    assert a.flags.writeable and a.dtype == dt
    if want is not None:
        same_bytes(a, want)
        if is_npy:
            if dt.itemsize:  # np.load cannot reshape huge arrays of 0-byte items
                same_bytes(np.load(path), want)
        else:
            assert path.read_bytes() == want.tobytes(order="A")
    elif a.size:
        assert a.reshape(-1)[-1:].tobytes() == bytes(a.itemsize)  # one page of a sparse file
    assert sorted(os.listdir(workdir())) == sorted(set(before) | {os.fsdecode(path.name)})
    path.unlink()


@given(
    data=st.data(),
    suffix=st.sampled_from([".npy", ".raw", "", ".NPY", ".npy.bak"]),
    shape=any_shapes,
    big=st.sampled_from([None] * 8 + [(SPARSE_MAX,), (2**20, 64), (2**40,), (2**31, 2**31)]),
    dtype=any_dtypes,
    fill=fills,
    allocate=st.sampled_from(["sparse", "reserve", "sparse", "lazy", None]),
    exist=st.sampled_from(["none", "none", "file", "exist_ok"]),
    order=orders,
    umask=st.sampled_from([0o022, 0o077, 0o002, 0o027]),
)
def t_create(data, suffix, shape, big, dtype, fill, allocate, exist, order, umask):
    count("create")
    arg, kind = data.draw(fuzz_paths(suffix=suffix))
    dangling = kind == "dangling" and exist != "none"
    if dangling:  # the link exists (exist='file' has no effect): exist_ok replaces it
        kind = "file"
    if big is not None:
        shape, fill = big, None
        allocate = "sparse" if allocate == "reserve" else allocate
    old = b"old contents"
    old_mode = 0o640
    if kind == "file" and exist != "none" and not dangling:
        pathlib.Path(os.fsdecode(arg)).write_bytes(old)
        os.chmod(arg, old_mode)
    before = sorted(os.listdir(workdir())) if kind == "file" else None
    model = create_model(kind, dtype, shape, fill, allocate, exist, order)
    if model is None:
        return
    valid, valid_but_exists, dt, want = model
    ok, res = create_under_umask(arg, shape, dtype, fill, allocate, exist, order, umask)
    if not ok:
        if (
            big is not None
            and isinstance(res, OSError)
            and res.errno in (errno.EFBIG, errno.ENOMEM)
        ):
            valid = False  # beyond this process's limits
        assert not valid, f"refused a valid create: {res!r}"
        if kind == "file":
            assert sorted(os.listdir(workdir())) == before, "a failed create left files behind"
            if exist != "none" and not dangling:
                assert pathlib.Path(os.fsdecode(arg)).read_bytes() == old
        if exist == "file" and valid_but_exists:
            # or a size that fits numpy's index type but not a file with its header
            too_big = isinstance(res, ValueError) and "too big for a file" in str(res)
            assert isinstance(res, FileExistsError) or too_big, repr(res)
        return
    assert valid, f"accepted an invalid create: shape={shape!r} dtype={dtype!r} fill={fill!r}"
    assert before is not None
    expect_mode = old_mode if exist == "exist_ok" and not dangling else 0o666 & ~umask
    check_created(res, arg, dt, want, expect_mode, before)


# ---- anonymous -------------------------------------------------------------------------------


@given(
    shape=st.one_of(any_shapes, st.sampled_from([(2**30,), (2**28, 8), (3 << 30,)])),
    dtype=any_dtypes,
    shared=st.sampled_from([True, False, 0, 1, "yes", None]),
    order=orders,
)
def t_anonymous(shape, dtype, shared, order):
    count("anonymous")
    ok, res = attempt(
        "anonymous", lambda: mmarray.anonymous(shape, dtype, shared=shared, order=order)
    )
    dt = dtype_or_none(dtype)
    shp = norm_shape(shape)
    valid = mappable(dt, shp) and order in ("C", "F")
    if not ok:
        if valid and nbytes_of(*expand(shp, dt)) > TOUCH_MAX:
            # beyond this process's limits: too large to map, ENOMEM, EFBIG
            assert isinstance(res, (OverflowError, OSError, MemoryError)), repr(res)
            return
        assert not valid, f"refused a valid anonymous: {res!r}"
        return
    assert valid, f"accepted invalid anonymous: {shape!r} {dtype!r} {order!r}"
    a = res
    reg = mmarray.region(a)
    assert reg.shared == bool(shared) and a.flags.writeable
    assert a.dtype == (dt if dt.subdtype is None else dt.base)
    if a.nbytes <= TOUCH_MAX:
        with memoryview(reg) as mv:
            assert not any(mv.cast("B")), "anonymous memory must start zeroed"
        if a.nbytes:
            a.reshape(-1).view(np.uint8)[-1:] = 9 if a.flags.c_contiguous else 0
    if order == "F" and a.ndim > 1 and a.size > 1:
        assert a.flags.f_contiguous


# ---- memmap vs np.memmap -----------------------------------------------------------------


def memmap_arg(p: pathlib.Path, how: str, files: list[Any]) -> Any:
    """The filename argument in the form ``how``: str, Path, bytes or an open file
    (appended to ``files``, for the caller to close)."""
    if how in ("str", "missing", "dir"):
        return str(p)
    if how == "path":
        return p
    if how == "bytes":
        return os.fsencode(p)
    f = open(p, "rb" if how == "fileobj_r" else "r+b")  # noqa: SIM115 - closed by the caller
    files.append(f)
    return f


def check_memmap_refusal(res: Any, how: str, p_mm: pathlib.Path) -> None:
    """Both refused: mmarray's ValueError for a str path names the problem."""
    name = str(p_mm)
    if isinstance(res, ValueError) and how == "str" and "mode" not in str(res):
        assert (
            name in str(res)
            or "shape must be given" in str(res)
            or "order" in str(res)
            or "offset" in str(res)
            or "negative" in str(res)
            or "item" in str(res)
        ), res


def compare_memmaps(
    ours: tuple[bool, Any],
    numpys: tuple[bool, Any],
    case: tuple[Any, str, Any, Any, Any, bytes],
    paths: tuple[pathlib.Path, pathlib.Path],
) -> None:
    """mmarray.memmap's outcome against np.memmap's (case: dtype, how, mode, offset,
    shape, the file's content; paths: numpy's file, mmarray's file)."""
    (ok, res), (ref_ok, ref) = ours, numpys
    dtype, how, mode, offset, shape, content = case
    p_np, p_mm = paths
    shp = norm_shape(shape) if shape is not None else None
    past_end = shape is None and isinstance(offset, int) and offset > len(content)
    if ref_ok and dtype is object:
        # np.memmap maps raw bytes as object pointers (a crash at first touch)
        assert not ok and isinstance(res, TypeError), res
    elif ref_ok and past_end and how not in ("missing", "dir") and mode != "w+":
        # numpy makes a shape of (-1,) of it (then an empty array or an error);
        # mmarray refuses with a clear error, on purpose
        assert not ok and isinstance(res, ValueError) and "past the end" in str(res), res
    elif ref_ok and shp is not None and any(n < 0 for n in shp):
        # np.memmap maps max(size, 1) bytes in modes r+ and w+, then ndarray() makes an
        # empty array of shape (-1,); mmarray refuses a negative dimension, on purpose
        assert not ok and isinstance(res, ValueError), res
        assert "negative dimensions" in str(res), res
    elif ref_ok:
        assert ok, f"np.memmap accepts what mmarray.memmap refuses: {res!r}"
        assert isinstance(res, mmarray.memmap)
        same_bytes(np.asarray(res), np.asarray(ref))
        assert res.offset == ref.offset and res.mode == ref.mode
        if how == "path":
            assert res.filename == p_mm.resolve() and ref.filename == p_np.resolve()
        elif how != "bytes":
            assert res.filename == os.path.abspath(p_mm)
        res.flush()
        ref.flush()
        if how != "dir":
            assert p_mm.stat().st_size == p_np.stat().st_size  # both grew alike
        res.close()
    elif ok:
        raise AssertionError(f"mmarray.memmap accepts what np.memmap refuses ({ref!r})")
    else:
        check_memmap_refusal(res, how, p_mm)


@given(
    content=st.binary(max_size=120),
    how=st.sampled_from(
        ["str", "str", "path", "bytes", "fileobj_r", "fileobj_rw", "missing", "dir"]
    ),
    dtype=st.one_of(good_dtypes, st.sampled_from([np.uint8, "f8", "V0", [], object, "nope"])),
    mode=st.sampled_from(
        ["r", "r+", "w+", "c", "readonly", "readwrite", "write", "copyonwrite", "x", "", 3]
    ),  # fmt: skip
    offset=st.one_of(st.integers(0, 130), st.integers(-3, -1), st.sampled_from([1.5, PAGE + 1])),
    shape=st.one_of(
        st.none(),
        small_shapes,
        st.integers(-2, 40),
        st.sampled_from([(2**62,), (2**70,), (3, -1), "x", (2.0,), ()]),
    ),  # fmt: skip
    order=st.sampled_from(["C", "F", "K", None]),
)
def t_memmap(content, how, dtype, mode, offset, shape, order):
    count("memmap")
    zero = False
    p_np, p_mm = fresh(".dat"), fresh(".dat")
    for p in (p_np, p_mm):
        if how == "dir":
            p.mkdir()
        elif how != "missing":
            p.write_bytes(content)
    files: list[Any] = []
    try:
        shp = norm_shape(shape) if shape is not None else None
        with contextlib.suppress(TypeError):
            zero = np.dtype(dtype).itemsize == 0
        if shp is not None and zero and any(n < 0 for n in shp):
            # numpy divides by the item size to infer a -1 dimension: SIGFPE (a numpy bug)
            ok, res = attempt(
                "memmap",
                lambda: mmarray.memmap(
                    memmap_arg(p_mm, how, files), dtype=dtype, mode=mode, offset=offset, shape=shape
                ),
            )
            assert not ok and isinstance(res, (ValueError, TypeError, OSError)), res
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref_ok, ref = numpy_outcome(
                lambda: np.memmap(
                    memmap_arg(p_np, how, files),
                    dtype=dtype,
                    mode=mode,
                    offset=offset,
                    shape=shape,
                    order=order,
                )
            )
            ok, res = attempt(
                "memmap",
                lambda: mmarray.memmap(
                    memmap_arg(p_mm, how, files),
                    dtype=dtype,
                    mode=mode,
                    offset=offset,
                    shape=shape,
                    order=order,
                ),
            )
        case = (dtype, how, mode, offset, shape, content)
        compare_memmaps((ok, res), (ref_ok, ref), case, (p_np, p_mm))
    finally:
        for f in files:
            f.close()
