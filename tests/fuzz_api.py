"""Hypothesis fuzz of every public function of mmarray (run by tests/test_fuzz.py).

Run it as a script, in a child process with resource limits (tests/test_fuzz.py does
that), never inside the pytest process: a crash must fail a test, not kill the run::

    python tests/fuzz_api.py            # FUZZ_CASES cases in all (default 10000)
    FUZZ_ONLY=open_raw,stats FUZZ_SEED=1 FUZZ_SHRINK=1 python tests/fuzz_api.py
    FUZZ_SHARD=0/2 python tests/fuzz_api.py   # the first of two halves of the targets

It prints one line per target and ``FUZZ-TOTAL <cases>``; the exit status is 1 when
a case failed (its traceback and the falsifying example are printed, with the seed).

Every case either succeeds, and then the result is checked against numpy (the
oracle: ``np.median``, ``np.load``, ``np.memmap``, ``np.fromfile``...) or against a
model of what must succeed, or raises one of the exceptions allowed for that
function (``ALLOWED``). Anything else (another exception type, a wrong result, a
crash, a hang) fails the run.

Safety: arrays whose memory is touched (filled, read in full, prefetched) hold at
most ``TOUCH_MAX`` bytes; bigger shapes are only mapped (sparse files, memfds),
never read. ``main`` lowers ``RLIMIT_AS`` and ``RLIMIT_FSIZE`` and ignores
``SIGXFSZ`` as a safety net (``EFBIG`` then arrives as ``OSError``).
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import math
import operator
import os
import pathlib
import pickle
import random
import resource
import shutil
import signal
import stat
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import hypothesis
import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st

import mmarray
from mmarray import _core

TOUCH_MAX = 4 << 20  # bytes: the most any case reads, writes or fills
SPARSE_MAX = 256 << 20  # bytes: the biggest file a case creates on purpose (never read)
AS_LIMIT = 8 << 30  # RLIMIT_AS of the fuzzing process
FSIZE_LIMIT = 1 << 30  # RLIMIT_FSIZE of the fuzzing process
PAGE = mmarray.PAGESIZE

# Exceptions each function may raise on bad input (OSError includes FileNotFoundError,
# PermissionError, IsADirectoryError, TimeoutError...; numpy's AxisError is a ValueError
# and an IndexError).
BASE = (ValueError, TypeError, OSError, OverflowError, MemoryError)
ALLOWED: dict[str, tuple[type[BaseException], ...]] = {
    "open": BASE,
    "create": BASE,
    "anonymous": BASE,
    "memmap": BASE,
    "Region": BASE + (BufferError,),
    "stats": BASE + (IndexError,),
    "median_estimate": BASE + (IndexError,),
    "map_chunks": (ValueError, TypeError, OverflowError),
    "share": (ValueError, TypeError, OSError, OverflowError),
    "named": BASE,
    "lock": (ValueError, TypeError, OSError),
    "pages": BASE + (NotImplementedError,),
    "grow": BASE,
}

COUNTS: dict[str, int] = {}
TMP = pathlib.Path(".")  # set by main()
_serial = itertools.count()


def count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


def fresh(suffix: str = "") -> pathlib.Path:
    """A path in the fuzz directory that no case used before."""
    return TMP / f"f{next(_serial)}{suffix}"


def attempt(kind: str, fn: Callable[[], Any]) -> tuple[bool, Any]:
    """(True, result) or (False, exception) for the exceptions allowed for ``kind``;
    any other exception propagates and fails the case."""
    try:
        return True, fn()
    except ALLOWED[kind] as e:
        return False, e


def numpy_outcome(fn: Callable[[], Any]) -> tuple[bool, Any]:
    """numpy's outcome: any exception counts as a refusal."""
    try:
        return True, fn()
    except Exception as e:  # noqa: BLE001 - the oracle may raise anything
        return False, e


def shape_ok(shape: Any, dtype: np.dtype) -> bool:
    """Whether numpy can make an array of this shape and dtype (a zero-strided one,
    so nothing is allocated: the same dimension and size checks as a real one)."""
    try:
        shp = tuple(operator.index(n) for n in shape)
        if any(n < 0 for n in shp):
            return False
        buf = np.zeros(max(dtype.itemsize, 1), np.uint8)
        np.ndarray(shp, dtype, buffer=buf, strides=(0,) * len(shp))
        return True
    except Exception:  # noqa: BLE001
        return False


def dtype_or_none(dtype: Any) -> np.dtype | None:
    """numpy's dtype of the argument, or None where numpy refuses it."""
    try:
        return np.dtype(dtype)
    except TypeError:
        return None


def norm_shape(shape: Any) -> tuple[int, ...] | None:
    """mmarray's documented shape argument: an int or a sequence of ints; None if bad."""
    try:
        if isinstance(shape, (int, np.integer)):
            return (operator.index(shape),)
        return tuple(operator.index(n) for n in shape)
    except TypeError:
        return None


def expand(shape: tuple[int, ...], dt: np.dtype) -> tuple[tuple[int, ...], np.dtype]:
    """numpy's view of a subarray dtype: its dimensions join the shape."""
    if dt.subdtype is None:
        return shape, dt
    return shape + dt.subdtype[1], dt.subdtype[0]


def nbytes_of(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(shape) * dtype.itemsize


def same_bytes(a: np.ndarray, b: np.ndarray) -> None:
    """a and b hold the same elements, bit for bit (NaNs included)."""
    assert a.shape == b.shape, (a.shape, b.shape)
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    if a.itemsize == 0 or 0 in a.shape:
        return  # no bytes (numpy cannot even copy a huge array of 0-byte items)
    if a.dtype.names:  # field by field: a copy need not keep the padding bytes
        for name in a.dtype.names:
            same_bytes(a[name], b[name])
        return
    assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


# ---- strategies --------------------------------------------------------------------------

NATIVE = ["?", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "c8", "c16"]
native_dtypes = st.sampled_from(NATIVE).map(np.dtype)
field_names = st.sampled_from(["a", "b", "x", "é", "f0"])


@st.composite
def structured_dtypes(draw: Any) -> np.dtype:
    names = draw(st.lists(field_names, min_size=1, max_size=3, unique=True))
    fields = [(n, draw(native_dtypes)) for n in names]
    dt = np.dtype(fields, align=draw(st.booleans()))
    return dt


good_dtypes = st.one_of(
    native_dtypes,
    native_dtypes.map(lambda d: d.newbyteorder()),
    structured_dtypes(),
    st.tuples(native_dtypes, st.integers(1, 3)).map(lambda t: np.dtype((t[0], (t[1],)))),
    st.sampled_from(["S3", "U2", "M8[s]", "m8[ns]", "V5", ">i4", "<f8"]).map(np.dtype),
)
odd_dtypes = st.sampled_from(
    [
        object,
        [("a", "O")],
        [("a", "i4"), ("b", [("c", "O")])],
        "V0",
        [],
        "S0",
        "not a dtype",
        "i9",
        3.5,
        "float64",
        int,
        float,
        bool,
    ]
)
any_dtypes = st.one_of(good_dtypes, good_dtypes, odd_dtypes)

HUGE = [2**31, 2**32, 2**40, 2**62, 2**63 - 1, 2**63, 2**64, 2**70]
small_shapes = st.lists(st.integers(0, 5), max_size=4).map(tuple)
odd_shapes = st.one_of(
    st.lists(st.integers(-3, 5), min_size=1, max_size=3).map(tuple),
    st.lists(st.sampled_from(HUGE + [0, 1, 3]), min_size=1, max_size=3).map(tuple),
    st.sampled_from(
        [(1,) * 65, (2.0,), ("3",), [[1]], "x", None, 2.5, -1, 0, (), 7, np.int64(4), [2, 3]]
    ),
    st.sampled_from(HUGE),
)
any_shapes = st.one_of(small_shapes, small_shapes, odd_shapes)
offsets = st.one_of(
    st.integers(0, 40),
    st.integers(-5, -1),
    st.sampled_from([PAGE - 1, PAGE, PAGE + 3, 2**31, 2**62, 2**63, 2**70, -(2**70)]),
    st.sampled_from([1.5, "3", None, np.int64(2), True]),
)
orders = st.sampled_from(["C", "F", "C", "F", "K", "A", "c", "", None, 1])
modes_open = st.sampled_from(["r", "r+", "c", "r", "w", "w+", "", "rb", None, 1, ("r",)])
odd_names = st.text(
    alphabet=st.sampled_from(list("ab.-_ é\n\t*?'\"\\;$~") + ["\u2603", "\udcff", "日"]),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))


@st.composite
def fuzz_paths(draw: Any, suffix: str = "", exists: bytes | None = None) -> Any:
    """A path argument: odd file names, Path/bytes/str, or a bad path (missing,
    a directory, empty, too long, a FIFO, a dangling symlink, not a path).

    Never a path outside the fuzz directory: a bug (or a create(exist_ok=True)) could
    replace it; running as root, /dev/null once was.
    Returns (argument, kind) where kind is 'file' (a regular file path, existing
    when ``exists`` is given) or the name of the bad kind."""
    kind = draw(
        st.sampled_from(
            ["file"] * 8
            + [
                "missing_dir",
                "dir",
                "empty",
                "long",
                "fifo",
                "dangling",
                "notpath",
                "nul",
            ]
        )  # fmt: skip
    )
    if kind == "file":
        name = draw(odd_names) + suffix
        p = TMP / f"p{next(_serial)}{name}"
        if exists is not None:
            p.write_bytes(exists)
        form = draw(st.sampled_from(["str", "path", "bytes"]))
        arg: Any = {"str": str(p), "path": p, "bytes": os.fsencode(p)}[form]
        return arg, "file"
    if kind == "missing_dir":
        return str(TMP / "no-such-dir" / f"x{suffix}"), kind
    if kind == "dir":
        d = TMP / f"d{next(_serial)}{suffix}"
        d.mkdir()
        return str(d), kind
    if kind == "empty":
        return "", kind
    if kind == "long":
        return str(TMP / ("L" * 300 + suffix)), kind
    if kind == "fifo":
        f = TMP / f"fifo{next(_serial)}{suffix}"
        os.mkfifo(f)
        return str(f), kind
    if kind == "dangling":
        s = TMP / f"dl{next(_serial)}{suffix}"
        os.symlink(TMP / "nowhere", s)
        return str(s), kind
    if kind == "nul":
        return str(TMP / f"a\0b{suffix}"), kind
    return draw(st.sampled_from([3, None, 2.5, ["a"], object()])), kind


def as_str(path: Any) -> str:
    return os.fsdecode(os.fspath(path))


def names_path(msg: Any, path: Any) -> bool:
    """Whether an error message names path (as text or as its repr)."""
    msg = str(msg)
    p = os.fspath(path)
    return any(form in msg for form in (as_str(p), repr(p), str(p), repr(as_str(p))))


# ---- open (raw) -----------------------------------------------------------------------------


@given(
    content=st.one_of(st.binary(max_size=200), st.integers(0, 3 * PAGE).map(lambda n: b"\x05" * n)),
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
    arg, kind = path.draw(fuzz_paths(exists=content))
    if kind == "file" and sparse:
        os.truncate(arg, sparse)
    size = os.stat(arg).st_size if kind == "file" else 0
    ok, res = attempt(
        "open",
        lambda: mmarray.open(arg, mode, dtype=dtype, shape=shape, offset=offset, order=order),
    )
    # the model: when must it succeed?
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    shp = None if shape is None else norm_shape(shape)
    big = False
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
    if not ok:
        assert not valid or (big and isinstance(res, OSError) and res.errno == errno.ENOMEM), (
            f"refused a valid open: {res!r}"
        )
        if kind == "file" and isinstance(res, ValueError) and "past the end" in str(res):
            assert names_path(res, arg), res
        return
    assert valid, f"accepted an invalid open: mode={mode!r} dtype={dtype!r} shape={shape!r}"
    a = res
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
        name = f"mmfz-{os.getpid()}-{next(_serial)}"
        shm = "/dev/shm/" + name
        with open(shm, "wb") as f:
            f.write(blob)
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


# ---- create -----------------------------------------------------------------------------------

fills = st.one_of(
    st.none(),
    st.none(),
    st.sampled_from([0, 1, -1, 1.5, float("nan"), float("inf"), 2**70, "x", "7", b"ab", True]),
    st.sampled_from([(1, 2.0), (1, 2.0, 3), [1, 2], [[1]], np.arange(3), np.float32(2.5)]),
    st.sampled_from([complex(1, 2), None, -(2**63), 2**64 - 1]),
)


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
    before = sorted(os.listdir(TMP)) if kind == "file" else None
    # the model (what numpy makes of the arguments)
    dt = dtype_or_none(dtype)
    shp = norm_shape(shape)
    valid = (
        kind == "file"
        and dt is not None
        and not dt.hasobject
        and shp is not None
        and shape_ok(shp, dt)
        and allocate in ("sparse", "reserve")
        and order in ("C", "F")
    )
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
            return  # not a size this fuzz touches
        if nbytes <= TOUCH_MAX:
            # as np.ndarray makes it over a buffer (np.zeros would turn 'S0' into 'S1')
            want = np.ndarray(shp, dt, buffer=bytearray(nbytes), order=order)
            if fill is not None:
                w_ok, _ = numpy_outcome(lambda: want.__setitem__(..., np.asarray(fill, dtype=dt)))
                valid = w_ok
    elif kind == "file" and shp is not None and dt is not None and not dt.hasobject:
        if shape_ok(shp, dt) and nbytes_of(shp, dt) > TOUCH_MAX and fill is not None:
            return
    old_umask = os.umask(umask)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ok, res = attempt(
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
    if not ok:
        if (
            big is not None
            and isinstance(res, OSError)
            and res.errno in (errno.EFBIG, errno.ENOMEM)
        ):
            valid = False  # beyond this process's limits
        assert not valid, f"refused a valid create: {res!r}"
        if kind == "file":
            assert sorted(os.listdir(TMP)) == before, "a failed create left files behind"
            if exist != "none" and not dangling:
                assert pathlib.Path(os.fsdecode(arg)).read_bytes() == old
        if exist == "file" and valid_but_exists:
            # or a size that fits numpy's index type but not a file with its header
            too_big = isinstance(res, ValueError) and "too big for a file" in str(res)
            assert isinstance(res, FileExistsError) or too_big, repr(res)
        return
    assert valid, f"accepted an invalid create: shape={shape!r} dtype={dtype!r} fill={fill!r}"
    a = res
    path = pathlib.Path(os.fsdecode(arg))
    st_ = path.stat()
    expect_mode = old_mode if exist == "exist_ok" and not dangling else 0o666 & ~umask
    assert stat.S_IMODE(st_.st_mode) == expect_mode, (oct(st_.st_mode), oct(expect_mode))
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
    assert sorted(os.listdir(TMP)) == sorted(set(before) | {os.fsdecode(path.name)})
    path.unlink()


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
    valid = (
        dt is not None
        and not dt.hasobject
        and shp is not None
        and shape_ok(shp, dt)
        and order in ("C", "F")
    )
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


# ---- memmap vs np.memmap -------------------------------------------------------------------------


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

    def arg(p: pathlib.Path) -> Any:
        if how in ("str", "missing", "dir"):
            return str(p)
        if how == "path":
            return p
        if how == "bytes":
            return os.fsencode(p)
        f = open(p, "rb" if how == "fileobj_r" else "r+b")  # noqa: SIM115 - closed below
        files.append(f)
        return f

    try:
        shp = norm_shape(shape) if shape is not None else None
        with contextlib.suppress(TypeError):
            zero = np.dtype(dtype).itemsize == 0
        if shp is not None and zero and any(n < 0 for n in shp):
            # numpy divides by the item size to infer a -1 dimension: SIGFPE (a numpy bug)
            ok, res = attempt(
                "memmap",
                lambda: mmarray.memmap(
                    arg(p_mm), dtype=dtype, mode=mode, offset=offset, shape=shape
                ),
            )
            assert not ok and isinstance(res, (ValueError, TypeError, OSError)), res
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref_ok, ref = numpy_outcome(
                lambda: np.memmap(
                    arg(p_np), dtype=dtype, mode=mode, offset=offset, shape=shape, order=order
                )  # fmt: skip
            )
            ok, res = attempt(
                "memmap",
                lambda: mmarray.memmap(
                    arg(p_mm), dtype=dtype, mode=mode, offset=offset, shape=shape, order=order
                ),  # fmt: skip
            )
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
    finally:
        for f in files:
            f.close()


# ---- Region --------------------------------------------------------------------------------------


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
        return os.open(TMP, os.O_RDONLY), kind, 0
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
    fd, kind, size = fdinfo
    fd_kind = kind
    try:
        kw: dict[str, Any] = {}
        if access is not None:
            kw["access"] = access
        if shared is not None:
            kw["shared"] = shared
        if ctor == "init":
            ok, reg = attempt("Region", lambda: mmarray.Region(fd, length, offset, name=name, **kw))
        elif ctor == "open":
            path = (
                os.readlink(f"/proc/self/fd/{fd}")
                if kind in ("rw", "ro", "wo", "dir", "zero")
                else "/nonexistent"
            )
            if kind == "pipe":
                path = str(TMP / f"fifo{next(_serial)}")
                os.mkfifo(path)
            ok, reg = attempt("Region", lambda: mmarray.Region.open(path, length, offset, **kw))
        else:
            if isinstance(length, int) and length > TOUCH_MAX and length < 2**40:
                length = TOUCH_MAX
            ok, reg = attempt(
                "Region", lambda: mmarray.Region.anonymous(length, **({"shared": shared} if
                                                                       shared is not None else {}))
            )  # fmt: skip
            size = length if isinstance(length, int) else 0
            kind = "anon"
        if not ok:
            return
        # what a Region maps must lie inside the file
        if kind in ("rw", "ro") and ctor != "anonymous":
            assert reg.offset + reg.size <= size, (reg, size)
        if kind == "anon":
            assert reg.size == length
        for op in ops:
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
                reg._repr_html_() if not reg.closed else None
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
                ok2, arr = attempt("Region", lambda: _core.ndarray(reg, "u1", (reg.size,)))
                assert ok2 != reg.closed
        reg.close()
    finally:
        if fd_kind not in ("closed", "huge", "minus"):
            os.close(fd)


# ---- median, quantiles, percentiles vs numpy --------------------------------------------------

STATS = ["median", "nanmedian", "quantile", "nanquantile", "percentile", "nanpercentile"]
METHODS = [
    "linear", "linear", "inverted_cdf", "averaged_inverted_cdf", "closest_observation",
    "interpolated_inverted_cdf", "hazen", "weibull", "median_unbiased", "normal_unbiased",
    "lower", "higher", "midpoint", "nearest", "bogus",
]  # fmt: skip
stat_dtypes = st.one_of(
    st.sampled_from(["?", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"]).map(
        np.dtype
    ),
    st.sampled_from([">i4", ">f8", "<c8", "M8[s]", "S2"]).map(np.dtype),
)
workers_st = st.one_of(
    st.none(), st.sampled_from([1, 2, 3, 1, 2, 300, 0, -1, 2**40, 2**70, 1.5, "2", True])
)
axes_st = st.one_of(
    st.none(),
    st.integers(-5, 4),
    st.lists(st.integers(-4, 4), max_size=3).map(tuple),
    st.sampled_from([1.5, "0", [0], (0, 0), (0, -1), np.int64(0)]),
)
q_unit = st.one_of(
    st.floats(0, 1),
    st.sampled_from([0, 1, 0.5, 0.25, -0.1, 1.1, float("nan"), float("inf"), 1e-300]),
)
q_st = st.one_of(
    q_unit,
    q_unit,
    st.lists(q_unit, max_size=4),
    hnp.arrays(np.float64, st.sampled_from([(2, 2), (3,), (0,), (1, 1, 2)]), elements=q_unit),
    st.sampled_from(
        [np.float32(0.3), np.array([0, 1]), np.array(0.5, "f2"), True, 0.5j, "0.5", [], [[0.5]]]
    ),
)


def workers_valid(w: Any) -> bool:
    if w is None:
        return True
    try:
        return operator.index(w) >= 1
    except TypeError:
        return False


@st.composite
def stat_inputs(draw: Any) -> tuple[Any, str]:
    """An input array in one of the forms users pass: plain, views, mapped, lists..."""
    dt = draw(stat_dtypes)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
    a = draw(hnp.arrays(dt, shape))
    form = draw(st.sampled_from(["plain", "plain", "view", "view", "anon", "file", "list", "scalar",
                                 "memmap", "object"]))  # fmt: skip
    if draw(st.sampled_from(["small"] * 80 + ["big"])) == "big":  # a long lane, rarely: slow
        form = "big"
    if form == "view" and a.ndim:
        a = a[tuple(draw(st.slices(n)) for n in a.shape)]
        if a.ndim > 1 and draw(st.booleans()):
            a = a.transpose(draw(st.permutations(range(a.ndim))))
    elif form == "anon" and a.dtype.isnative:
        m = mmarray.anonymous(a.shape, a.dtype)
        m[...] = a
        a = m
    elif form == "file" and a.dtype.isnative:
        m = mmarray.create(fresh(".npy"), a.shape, a.dtype)
        m[...] = a
        a = m
    elif form == "memmap" and a.dtype.isnative and a.size:
        m = mmarray.memmap(fresh(".dat"), dtype=a.dtype, mode="w+", shape=a.shape)
        m[...] = a
        a = m
    elif form == "list":
        return a.tolist(), form
    elif form == "scalar":
        return (a.reshape(-1)[0] if a.size else 1.5), form
    elif form == "object" and a.dtype.kind in "iuf":
        return a.astype(object), form
    elif form == "big" and a.dtype.kind in "iuf" and a.dtype.isnative and a.size:
        n = (1 << 20) + draw(st.integers(0, 3))
        return np.resize(a.reshape(-1), n), form
    return a, form


def _kind(x: Any) -> type:
    # numpy's discrete methods return its input's memmap class for an in-RAM result (a
    # quirk of take()); mmarray returns a plain ndarray there: the same array otherwise
    return np.ndarray if isinstance(x, (np.memmap, mmarray.memmap)) else type(x)


def assert_same_result(ours: Any, ref: Any) -> None:
    assert _kind(ours) is _kind(ref), (type(ours), type(ref))
    oa, ra = np.asarray(ours), np.asarray(ref)
    assert oa.dtype == ra.dtype, (oa.dtype, ra.dtype)
    assert oa.shape == ra.shape, (oa.shape, ra.shape)
    if oa.dtype.kind in "fc":
        np.testing.assert_array_equal(oa, ra)  # NaNs in the same places compare equal
    elif oa.dtype.kind == "O":
        for x, y in zip(oa.ravel().tolist(), ra.ravel().tolist(), strict=True):
            assert x == y or (x != x and y != y), (x, y)
    else:
        assert oa.tobytes() == ra.tobytes()


def _copy_input(a: Any) -> Any:
    if isinstance(a, np.ndarray):
        return np.array(a, copy=True, subok=True)
    return a


@given(
    func=st.sampled_from(STATS),
    inp=stat_inputs(),
    q=q_st,
    axis=axes_st,
    method=st.sampled_from(METHODS),
    keepdims=st.sampled_from([False, True, False]),
    overwrite=st.booleans(),
    workers=workers_st,
    use_out=st.sampled_from([False, False, False, True]),
    weights=st.sampled_from([False] * 9 + [True]),
    progress=st.sampled_from([False, False, True]),
)
def t_stats(func, inp, q, axis, method, keepdims, overwrite, workers, use_out, weights, progress):
    count("stats")
    a, form = inp
    ours_f, np_func = getattr(mmarray, func), getattr(np, func)
    quant = func not in ("median", "nanmedian")

    def np_f(x: Any, *rest: Any, out: Any = None, **kw: Any) -> Any:
        # numpy's unweighted nanquantile splits a 2-d q's axes for a tuple of axes
        # other than one (numpy issue 25731, fixed for one axis only); q's axes first,
        # as in quantile: from the raveled q, whose 1-d path numpy gets right.
        # The whole call first, for numpy's exceptions in numpy's order of checks.
        r = np_func(_copy_input(x), *rest, **kw)
        qa = np.asanyarray(rest[0]) if quant and "weights" not in kw else None
        if (
            np.size(x) > 0  # empty: numpy returns nanmean's result, whatever q is
            and func.startswith("nan")
            and qa is not None
            and qa.ndim == 2
            and qa.size
        ):
            r = np_func(_copy_input(x), qa.ravel(), *rest[1:], **kw)
            r = r.reshape(qa.shape + r.shape[1:])
            if out is None:
                return r
            out[...] = r
            return out
        return r if out is None else np_func(x, *rest, out=out, **kw)

    if quant and "percentile" in func and isinstance(q, (int, float, np.ndarray, list)):
        with contextlib.suppress(Exception):
            q = np.multiply(q, 100) if not isinstance(q, (bool, complex)) else q
    args: tuple[Any, ...] = (a, q) if quant else (a,)
    kw: dict[str, Any] = {"axis": axis, "keepdims": keepdims, "overwrite_input": overwrite}
    if quant:
        kw["method"] = method
        if weights:
            kw["method"] = "inverted_cdf"
            kw["weights"] = np.ones(np.shape(a))
    before = np.array(a, copy=True) if isinstance(a, np.ndarray) else None
    seen: list[float] = []
    pkw: dict[str, Any] = {"workers": workers}
    if progress:
        pkw["progress"] = seen.append
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_ok, ref = numpy_outcome(lambda: np_f(_copy_input(args[0]), *args[1:], **kw))
        ok, res = numpy_outcome(lambda: ours_f(*args, **kw, **pkw))
        if use_out and ref_ok and isinstance(ref, np.ndarray) and ok:
            out1, out2 = np.empty_like(ref), np.empty_like(ref)
            ref_ok, ref = numpy_outcome(
                lambda: np_f(_copy_input(args[0]), *args[1:], out=out1, **kw)
            )
            seen.clear()
            ok, res = numpy_outcome(lambda: ours_f(*args, out=out2, **kw, **pkw))
            if ok:
                assert res is out2
    if before is not None:
        assert np.array(a, copy=True).tobytes() == before.tobytes(), "the input was modified"
    assert all(0.0 <= f <= 1.0 for f in seen) and seen == sorted(seen), seen
    if not workers_valid(workers):
        assert not ok and isinstance(res, (ValueError, TypeError)), f"workers={workers!r}: {res!r}"
        return
    if ref_ok:
        assert ok, f"{func} refused what numpy computes: {res!r}"
        assert_same_result(res, ref)
    else:
        # the same exception as numpy's (numpy may raise ZeroDivisionError, for one)
        assert not ok, f"{func} computed what numpy refuses ({ref!r}): {res!r}"
        assert type(res) is type(ref), f"numpy raised {ref!r}, mmarray {res!r}"
    if not ok and not isinstance(res, ALLOWED["stats"]) and type(res) is not type(ref):
        raise res


@given(
    inp=stat_inputs(),
    chunk=st.one_of(st.none(), st.integers(1, 40), st.sampled_from([0, -1, 2**70, 1.5, "3"])),
    workers=workers_st,
)
def t_median_estimate(inp, chunk, workers):
    count("median_estimate")
    a, form = inp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ok, res = attempt(
            "median_estimate", lambda: mmarray.median_estimate(a, chunk=chunk, workers=workers)
        )

        def model() -> Any:
            if not workers_valid(workers):
                raise ValueError("workers")
            arr = np.asanyarray(a)
            if arr.ndim == 0:
                arr = arr.reshape(1)
            if arr.size == 0:
                return np.median(arr)
            step = 1 << 22 if chunk is None else operator.index(chunk)
            if step < 1:
                raise ValueError("chunk")
            per_row = max(1, arr.size // max(1, arr.shape[0]))
            rows = max(1, step // per_row)
            full = arr.shape[0] // rows  # whole chunks: numpy's median along an axis
            meds = []
            if full:
                blocks = arr[: full * rows].reshape((full, rows) + arr.shape[1:])
                meds = list(np.median(blocks, axis=tuple(range(1, blocks.ndim))))
            meds += [np.median(arr[i : i + rows]) for i in range(full * rows, arr.shape[0], rows)]
            return np.median(np.array(meds))

        ref_ok, ref = numpy_outcome(model)
    if ref_ok:
        assert ok, f"median_estimate refused: {res!r}"
        assert_same_result(res, ref)
    else:
        assert not ok, f"median_estimate computed what the model refuses ({ref!r})"


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


# ---- sources of mapped arrays, views -------------------------------------------------------------

SOURCES = ["create_npy", "create_raw", "open_r", "open_rplus", "open_c", "anon", "anon_private",
           "memmap", "named", "plain", "closed"]  # fmt: skip


class Source:
    """A mapped (or plain) array and what it lives in."""

    def __init__(self, kind: str, a: np.ndarray, path: pathlib.Path | None, name: str | None):
        self.kind, self.a, self.path, self.name = kind, a, path, name

    def cleanup(self) -> None:
        if self.name is not None:
            with contextlib.suppress(FileNotFoundError):
                mmarray.unlink(self.name)


@st.composite
def sources(draw: Any, kinds: list[str] = SOURCES) -> Source:
    kind = draw(st.sampled_from(kinds))
    dt = draw(st.sampled_from(["u1", "i2", "f4", "f8", "i8"]).map(np.dtype))
    shape = draw(st.sampled_from([(0,), (1,), (7,), (3, 5), (PAGE // 2, 3), (3 * PAGE + 5,),
                                  (2, 3, 4), (0, 4), (5000, 9)]))  # fmt: skip
    init = np.arange(math.prod(shape), dtype=dt).reshape(shape)
    path = name = None
    if kind in ("create_npy", "create_raw", "open_r", "open_rplus", "open_c", "closed"):
        path = fresh(".npy" if kind != "create_raw" else ".raw")
        a = mmarray.create(path, shape, dt)
        a[...] = init
        if kind.startswith("open"):
            mode = {"open_r": "r", "open_rplus": "r+", "open_c": "c"}[kind]
            a = mmarray.open(path, mode)
        if kind == "closed":
            mmarray.region(a).close()
    elif kind == "anon":
        a = mmarray.anonymous(shape, dt)
        a[...] = init
    elif kind == "anon_private":
        a = mmarray.anonymous(shape, dt, shared=False)
        a[...] = init
    elif kind == "memmap":
        path = fresh(".dat")
        if init.size == 0:
            a = np.zeros(shape, dt)
            kind, path = "plain", None
        else:
            a = mmarray.memmap(path, dtype=dt, mode="w+", shape=shape)
            a[...] = init
    elif kind == "named":
        name = f"mmfz-{os.getpid()}-{next(_serial)}"
        a = mmarray.named(name, shape, dt, create=True)
        a[...] = init
    else:
        a = init
    return Source(kind, a, path, name)


@st.composite
def views_of(draw: Any, a: np.ndarray) -> np.ndarray:
    how = draw(st.sampled_from(["whole", "slice", "slice", "transpose", "dtype", "step"]))
    if a.ndim == 0 or how == "whole":
        return a
    if how == "transpose" and a.ndim > 1:
        return a.T
    if how == "dtype" and a.flags.c_contiguous and a.shape[-1] * a.itemsize % 2 == 0:
        return a.view(np.uint16 if a.itemsize == 1 else np.uint8)
    if how == "step":
        return a[:: draw(st.sampled_from([2, 3, -1, -2, 700]))]
    return a[tuple(draw(st.slices(n)) for n in a.shape)]


def shareable(src: Source) -> bool:
    return src.kind in (
        "create_npy",
        "create_raw",
        "open_r",
        "open_rplus",
        "anon",
        "memmap",
        "named",
    )


# ---- share / ArrayRef --------------------------------------------------------------------------

REF_FIELDS = list(mmarray.ArrayRef.__slots__)
garbage = {
    "kind": st.sampled_from(["fd", "path", "x", 3]),
    "path": st.sampled_from(["/nonexistent", "", "/dev/zero", "/dev/null", 3, "/proc/self/fd/999"]),
    "device": st.sampled_from([0, -1, "x", 2**70]),
    "inode": st.sampled_from([0, -1, "x", 2**70]),
    "file_size": st.sampled_from([0, -1, "x", 2**70]),
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
        fields = dict(zip(REF_FIELDS, ref._fields(), strict=True))
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
    name = f"mmfz-{os.getpid()}-{next(_serial)}-{suffix}" if good else bad
    if good and slash:
        name = "/" + name
    ok, a = attempt("named", lambda: mmarray.named(name, shape, dtype, create=True))
    if not good:
        assert not ok and isinstance(a, (ValueError, TypeError)), f"name {name!r}: {a!r}"
        return
    dt = dtype_or_none(dtype)
    shp = norm_shape(shape)
    valid = dt is not None and not dt.hasobject and shp is not None and shape_ok(shp, dt)
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


# ---- pages: advise, prefetch, evict, residency, punch, disk_usage, extents ---------------------

ADVICES = list(mmarray._pages.ADVICE) + ["bogus", None, 3, "WILLNEED"]
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


def raw_bytes(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


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
        v: Any = data.draw(views_of(src.a))
        backed = src.kind in BACKED
        if target == "region":
            v = mmarray.region(src.a)
            if v is None:
                v = src.a
        elif target == "path":
            if src.path is None or op not in ("evict", "disk_usage", "extents"):
                return
            v = data.draw(st.sampled_from([str(src.path), src.path, os.fsencode(src.path)]))
        elif target == "list":
            v, backed = [1, 2], False
        elif target == "plain":
            v, backed = np.zeros(3), False
        is_path = target == "path"
        is_region = isinstance(v, mmarray.Region)
        open_ = src.kind != "closed"
        before = raw_bytes(src.a) if open_ else None
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
        # the model: which calls must succeed
        if is_path:
            valid = True
        else:
            valid = backed and open_
            if op == "advise":
                valid = valid and advice in mmarray._pages.ADVICE
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
        new_shape = (v.shape[0] + n, *v.shape[1:])
        assert res.shape == new_shape and res.dtype == v.dtype
        grown = fpath.stat().st_size
        assert grown == len(before) + n * math.prod(v.shape[1:]) * v.itemsize
        if grown <= TOUCH_MAX:
            same_bytes(res[: v.shape[0]], v)
            assert not raw_bytes(res[v.shape[0] :]).strip(b"\0")
            if before[:6] == b"\x93NUMPY":
                same_bytes(np.load(fpath), res)
    finally:
        src.cleanup()


# ---- the driver ---------------------------------------------------------------------------------

TARGETS: dict[str, tuple[Any, float]] = {
    "open_raw": (t_open_raw, 10),
    "open_npy": (t_open_npy, 10),
    "create": (t_create, 8),
    "anonymous": (t_anonymous, 4),
    "memmap": (t_memmap, 8),
    "region": (t_region, 8),
    "stats": (t_stats, 22),
    "median_estimate": (t_median_estimate, 3),
    "map_chunks": (t_map_chunks, 3),
    "share": (t_share, 6),
    "named": (t_named, 4),
    "lock": (t_lock, 4),
    "pages": (t_pages, 7),
    "grow": (t_grow, 4),
}


def shard_targets(targets: dict[str, tuple[Any, float]], n: int) -> list[list[str]]:
    """Split the targets into n lists of about equal weight (for n parallel processes)."""
    shards: list[list[str]] = [[] for _ in range(n)]
    load = [0.0] * n
    for name, (_, w) in sorted(targets.items(), key=lambda kv: -kv[1][1]):
        i = load.index(min(load))
        shards[i].append(name)
        load[i] += w
    return shards


def _limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if soft == resource.RLIM_INFINITY or soft > value:
        resource.setrlimit(which, (value, hard))


def main() -> int:
    global TMP
    total = int(os.environ.get("FUZZ_CASES", "10000"))
    seed = int(os.environ.get("FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    only = [s for s in os.environ.get("FUZZ_ONLY", "").split(",") if s]
    shrink = os.environ.get("FUZZ_SHRINK") == "1"
    if os.environ.get("MMARRAY_SANITIZER") != "asan":  # ASan's shadow needs terabytes
        _limit(resource.RLIMIT_AS, AS_LIMIT)
    _limit(resource.RLIMIT_FSIZE, FSIZE_LIMIT)
    _limit(resource.RLIMIT_CORE, 0)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death by SIGXFSZ
    TMP = pathlib.Path(tempfile.mkdtemp(prefix="mmarray-fuzz-"))
    os.chmod(TMP, 0o755)
    targets = {k: v for k, v in TARGETS.items() if not only or k in only}
    weight = sum(w for _, w in targets.values())  # cases are shared out over every target
    shard, nshards = (int(x) for x in os.environ.get("FUZZ_SHARD", "0/1").split("/"))
    targets = {k: targets[k] for k in shard_targets(targets, nshards)[shard]}
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    print(f"fuzz: seed {seed}, {total} cases, {TMP}", flush=True)
    failed = []
    try:
        for name, (fn, w) in targets.items():
            n = max(1, round(total * w / weight))
            test = hypothesis.seed(seed)(
                hypothesis.settings(
                    max_examples=n,
                    database=None,
                    deadline=None,
                    derandomize=False,
                    phases=phases,
                    suppress_health_check=list(HealthCheck),
                    report_multiple_bugs=False,
                    print_blob=True,
                )(fn)
            )
            t0 = time.perf_counter()
            try:
                test()
            except Exception:
                traceback.print_exc()
                failed.append(name)
            dt = time.perf_counter() - t0
            print(f"fuzz: {name:16s} {COUNTS.get(name, 0):6d} cases {dt:6.1f} s", flush=True)
            for p in TMP.iterdir():  # keep the directory small
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
        for leftover in os.listdir("/dev/shm"):
            if leftover.startswith(f"mmfz-{os.getpid()}-"):
                os.unlink("/dev/shm/" + leftover)
    done = sum(COUNTS.values())
    print(f"FUZZ-TOTAL {done}", flush=True)
    if failed:
        print(f"FUZZ-FAILED {','.join(failed)} (seed {seed})", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
