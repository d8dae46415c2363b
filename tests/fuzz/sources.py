"""The fuzz's inputs: argument strategies and the arrays of every kind the cases use.

Argument strategies (dtypes, shapes, offsets, orders, modes, odd file names, paths good
and bad), the mapped arrays of every kind (``sources``: files made by create or opened,
anonymous memory, np.memmap-style files, named memory, plain and closed arrays), views
of them (``views_of``), and the statistics inputs in every form users pass
(``stat_inputs``: plain, views, mapped, lists, scalars, object arrays, a long lane).
"""

from __future__ import annotations

import contextlib
import math
import os
import pathlib
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import strategies as st

import mmarray

from .oracle import PAGE, fresh, serial, shm_name, workdir

# ---- dtypes, shapes, offsets, orders, modes ----------------------------------------------

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


# ---- paths: odd names, and bad paths of every kind ----------------------------------------


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
        p = workdir() / f"p{serial()}{name}"
        if exists is not None:
            p.write_bytes(exists)
        form = draw(st.sampled_from(["str", "path", "bytes"]))
        arg: Any = {"str": str(p), "path": p, "bytes": os.fsencode(p)}[form]
        return arg, "file"
    if kind == "missing_dir":
        return str(workdir() / "no-such-dir" / f"x{suffix}"), kind
    if kind == "dir":
        d = workdir() / f"d{serial()}{suffix}"
        d.mkdir()
        return str(d), kind
    if kind == "empty":
        return "", kind
    if kind == "long":
        return str(workdir() / ("L" * 300 + suffix)), kind
    if kind == "fifo":
        f = workdir() / f"fifo{serial()}{suffix}"
        os.mkfifo(f)
        return str(f), kind
    if kind == "dangling":
        s = workdir() / f"dl{serial()}{suffix}"
        os.symlink(workdir() / "nowhere", s)
        return str(s), kind
    if kind == "nul":
        return str(workdir() / f"a\0b{suffix}"), kind
    return draw(st.sampled_from([3, None, 2.5, ["a"], object()])), kind


# ---- mapped arrays of every kind, and views of them ---------------------------------------

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
        name = shm_name()
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


# ---- statistics inputs, in every form users pass -----------------------------------------

stat_dtypes = st.one_of(
    st.sampled_from(["?", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"]).map(
        np.dtype
    ),
    st.sampled_from([">i4", ">f8", "<c8", "M8[s]", "S2"]).map(np.dtype),
)
workers_st = st.one_of(
    st.none(), st.sampled_from([1, 2, 3, 1, 2, 300, 0, -1, 2**40, 2**70, 1.5, "2", True])
)


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
