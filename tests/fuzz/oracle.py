"""The fuzz's oracle: what each function may raise, and numpy's view of its arguments.

Every case either succeeds, and then its result is compared with numpy's (``same_bytes``,
``assert_same_result``) or with a model of what must succeed (the dtype and shape model:
``dtype_or_none``, ``norm_shape``, ``shape_ok``, ``mappable``, ``expand``), or raises one
of the exceptions ``ALLOWED`` for that function (``attempt``).  This module also keeps
the per-target case counters and the fuzz's scratch directory.
"""

from __future__ import annotations

import itertools
import math
import operator
import os
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np

import mmarray

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
TMP = pathlib.Path(".")  # the fuzz directory: set by the runner (set_workdir)
_serial = itertools.count()


# ---- bookkeeping: counters, the scratch directory, fresh names ---------------------------


def count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


def set_workdir(path: pathlib.Path) -> None:
    global TMP
    TMP = path


def workdir() -> pathlib.Path:
    """The fuzz directory: every file a case makes lies in it."""
    return TMP


def serial() -> int:
    """A number that no case used before."""
    return next(_serial)


def fresh(suffix: str = "") -> pathlib.Path:
    """A path in the fuzz directory that no case used before."""
    return TMP / f"f{serial()}{suffix}"


def shm_prefix() -> str:
    """The prefix of this process's named memory (the runner unlinks what is left)."""
    return f"mmfz-{os.getpid()}-"


def shm_name() -> str:
    """A name for named memory that no case used before."""
    return f"{shm_prefix()}{serial()}"


# ---- outcomes ----------------------------------------------------------------------------


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


# ---- the dtype and shape model -----------------------------------------------------------


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


def mappable(dt: np.dtype | None, shp: tuple[int, ...] | None) -> bool:
    """Whether a dtype and a shape (from dtype_or_none and norm_shape) make an array
    that can live in mapped memory: no object fields, a shape numpy accepts."""
    return dt is not None and not dt.hasobject and shp is not None and shape_ok(shp, dt)


def expand(shape: tuple[int, ...], dt: np.dtype) -> tuple[tuple[int, ...], np.dtype]:
    """numpy's view of a subarray dtype: its dimensions join the shape."""
    if dt.subdtype is None:
        return shape, dt
    return shape + dt.subdtype[1], dt.subdtype[0]


def nbytes_of(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(shape) * dtype.itemsize


def workers_valid(w: Any) -> bool:
    if w is None:
        return True
    try:
        return operator.index(w) >= 1
    except TypeError:
        return False


# ---- comparisons with numpy --------------------------------------------------------------


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


def raw_bytes(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def _kind(x: Any) -> type:
    # numpy's discrete methods return its input's memmap class for an in-RAM result (a
    # quirk of take()); mmarray returns a plain ndarray there: the same array otherwise
    return np.ndarray if isinstance(x, (np.memmap, mmarray.memmap)) else type(x)


def holds_both_zeros(a: Any) -> bool:
    """Whether ``a`` (any array-like) holds both ``+0.0`` and ``-0.0`` (in a real or an
    imaginary part): the one input where a statistic's sign of zero is no contract
    (numpy's follows its partition's order of equal values, mmarray's its total order
    of keys, ``-0.0`` before ``+0.0``; see docs/median.md)."""
    try:
        x = np.asarray(a)
    except Exception:  # noqa: BLE001 - not an array: no zeros
        return False
    if x.dtype.kind not in "fc" or x.size == 0:
        return False
    for part in (x.real, x.imag) if x.dtype.kind == "c" else (x,):
        neg = np.signbit(part[part == 0])
        if neg.any() and not neg.all():
            return True
    return False


def holds_mixed_nans(a: Any) -> bool:
    """Whether ``a`` holds NaNs of two or more bit patterns (signs or payloads): numpy's
    NaN result is then whichever of a lane's NaNs its partition leaves last, mmarray's
    another of them (see docs/median.md). Where every NaN has the same bits (``np.nan``,
    the negative NaN of ``inf - inf`` on x86, one payload), both return those bits."""
    try:
        x = np.asarray(a)
    except Exception:  # noqa: BLE001 - not an array: no NaNs
        return False
    if x.dtype.kind not in "fc" or x.size == 0:
        return False
    parts = (x.real, x.imag) if x.dtype.kind == "c" else (x,)
    return any(np.unique(_bits(p[np.isnan(p)])).size > 1 for p in parts)


def _bits(v: np.ndarray) -> np.ndarray:
    """The stored bits of each value (longdouble, with no unsigned view of its width:
    NaN-ness only, every NaN alike)."""
    w = {2: np.uint16, 4: np.uint32, 8: np.uint64}.get(v.dtype.itemsize)
    if w is None:
        return np.isnan(v)
    return np.ascontiguousarray(v).view(w)


def assert_same_floats(
    ours: np.ndarray, ref: np.ndarray, *, zero_sign: bool = True, nan_bits: bool = True
) -> None:
    """Floating (or complex) results of one dtype and shape hold the same values, NaNs in
    the same places and the same sign bits (``-0.0`` is not ``0.0``), part by part, and
    NaNs of the same bits, sign and payload. ``zero_sign=False`` lets zeros differ in sign
    (for inputs that ``holds_both_zeros``), ``nan_bits=False`` lets NaNs differ in bits
    (for inputs that ``holds_mixed_nans``)."""
    np.testing.assert_array_equal(ours, ref)  # NaNs in the same places compare equal
    complex_ = ours.dtype.kind == "c"
    pairs = ((ours.real, ref.real), (ours.imag, ref.imag)) if complex_ else ((ours, ref),)
    for o, r in ((np.atleast_1d(o), np.atleast_1d(r)) for o, r in pairs):
        nan = np.isnan(r)
        assert np.array_equal(np.isnan(o), nan), "NaNs in other places"
        differ = np.signbit(o) != np.signbit(r)
        if not zero_sign:
            differ &= o != 0
        if not nan_bits:
            differ &= ~nan
        elif nan.any():
            differ |= nan & (_bits(o) != _bits(r))
        if differ.any():
            at = [tuple(i) for i in np.argwhere(differ)[:5].tolist()]
            raise AssertionError(
                f"sign or NaN bits differ at {at}: mmarray {o[differ][:5]!r}, "
                f"numpy {r[differ][:5]!r}"
            )


def assert_same_result(ours: Any, ref: Any, *, inp: Any = None) -> None:
    """mmarray's result is numpy's: type, dtype, shape and value, bit for bit where
    floating (``assert_same_floats``), but for the two documented exceptions of the
    statistics' input ``inp``: both zeros, NaNs of more than one bit pattern."""
    assert _kind(ours) is _kind(ref), (type(ours), type(ref))
    oa, ra = np.asarray(ours), np.asarray(ref)
    assert oa.dtype == ra.dtype, (oa.dtype, ra.dtype)
    assert oa.shape == ra.shape, (oa.shape, ra.shape)
    if oa.dtype.kind in "fc":
        assert_same_floats(
            oa, ra, zero_sign=not holds_both_zeros(inp), nan_bits=not holds_mixed_nans(inp)
        )
    elif oa.dtype.kind == "O":
        for x, y in zip(oa.ravel().tolist(), ra.ravel().tolist(), strict=True):
            assert x == y or (x != x and y != y), (x, y)
    else:
        assert oa.tobytes() == ra.tobytes()


def copy_input(a: Any) -> Any:
    """A copy of an array argument (numpy's overwrite_input may scramble the original)."""
    if isinstance(a, np.ndarray):
        return np.array(a, copy=True, subok=True)
    return a


# ---- paths in error messages -------------------------------------------------------------


def as_str(path: Any) -> str:
    return os.fsdecode(os.fspath(path))


def names_path(msg: Any, path: Any) -> bool:
    """Whether an error message names path (as text or as its repr)."""
    msg = str(msg)
    p = os.fspath(path)
    return any(form in msg for form in (as_str(p), repr(p), str(p), repr(as_str(p))))
