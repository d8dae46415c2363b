"""Growing a file-backed array along axis 0: grow.

Oracles: numpy (``np.load``) for contents and ``.npy`` headers.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mmarray
from mmarray import _npy

# ---- helpers ---------------------------------------------------------------------------------


def same(x: np.ndarray, y: np.ndarray) -> None:
    """Equal shapes, dtypes and bytes (NaNs in structured dtypes compare equal too)."""
    assert x.shape == y.shape and x.dtype == y.dtype
    assert np.ascontiguousarray(x).tobytes() == np.ascontiguousarray(y).tobytes()


# ---- grow ------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(0, 300),
    tail=st.sampled_from([(), (3,), (2, 5)]),
    dtype=st.sampled_from(["u1", "<i4", ">f8", "c16", [("x", "<f4"), ("n", "u2")]]),
    n=st.integers(0, 700),
    npy=st.booleans(),
    via_create=st.booleans(),
)
def test_grow(tmp_path_factory, rows, tail, dtype, n, npy, via_create):
    path = tmp_path_factory.mktemp("grow") / ("g.npy" if npy else "g.raw")
    dt = np.dtype(dtype)
    shape = (rows, *tail)
    data = np.arange(int(np.prod(shape)) * dt.itemsize, dtype=np.uint8).view(dt).reshape(shape)
    if via_create:
        a = mmarray.create(path, shape, dt)
        a[...] = data
    elif npy:
        np.save(path, data)
        a = mmarray.open(path, "r+")
    else:
        data.tofile(path)
        a = mmarray.open(path, "r+", dtype=dt, shape=shape)
    b = mmarray.grow(a, n)
    assert b.shape == (rows + n, *tail) and b.dtype == dt
    same(b[:rows], data)
    assert not np.ascontiguousarray(b[rows:]).tobytes().strip(b"\0")
    same(a, data)  # the old array stays valid
    b[rows:] = data[:1] if rows else b[rows:]
    if npy:
        loaded = np.load(path)
        reopened = mmarray.open(path)
    else:
        loaded = np.fromfile(path, dtype=dt).reshape(b.shape)
        reopened = mmarray.open(path, dtype=dt, shape=b.shape)
    same(loaded, b)
    same(reopened, b)
    c = mmarray.grow(b, 1)  # grow again, from the grown array
    assert c.shape[0] == rows + n + 1
    del a, b, c, reopened


def test_grow_across_many_digits(tmp_path):
    path = tmp_path / "g.npy"
    a = mmarray.create(path, (9, 2), "u1", fill=1)
    for _ in range(4):
        a = mmarray.grow(a, a.shape[0] * 10 + 1)  # 9 -> 100 -> 1101 -> ...
        assert np.load(path, mmap_mode="r").shape == a.shape
    b = mmarray.grow(a, 10**9 - a.shape[0])  # a sparse GB: the header still fits
    assert np.load(path, mmap_mode="r").shape == (10**9, 2)
    assert int(b[:9].sum()) == 18
    del a, b
    path.unlink()


def test_npy_header_keeps_its_length_as_the_shape_grows():
    for dt in ("u1", "f8", [("a", "i4"), ("b", "f8", (3,))]):
        lengths = {len(_npy.make_header((10**d, 3), np.dtype(dt), False)) for d in range(0, 19)}
        assert len(lengths) == 1


def test_grow_refuses_a_header_without_room(tmp_path):
    # A version 1.0 header written without numpy's growth padding.
    d = "{'descr':'<i8','fortran_order':False,'shape':(4,)}"
    raw = d.encode() + b" " * (64 - 10 - len(d) - 1) + b"\n"
    assert 10 + len(raw) == 64
    path = tmp_path / "tight.npy"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + len(raw).to_bytes(2, "little") + raw)
        f.write(np.arange(4, dtype="<i8").tobytes())
    a = mmarray.open(path, "r+")
    np.testing.assert_array_equal(a, np.arange(4))
    with pytest.raises(ValueError, match="no room"):
        mmarray.grow(a, 10**30)
    assert path.stat().st_size == 64 + 32  # unchanged
    np.testing.assert_array_equal(np.load(path), np.arange(4))


def test_grow_errors(tmp_path):
    path = tmp_path / "g.npy"
    a = mmarray.create(path, (4, 3), "f4")
    with pytest.raises(ValueError, match="non-negative"):
        mmarray.grow(a, -1)
    with pytest.raises(TypeError):
        mmarray.grow(a, 1.5)
    with pytest.raises(ValueError, match="whole .npy array"):
        mmarray.grow(a[1:], 1)
    assert mmarray.grow(a[:3], 0).shape == (4, 3)  # the file's array, as it is now
    with pytest.raises(ValueError, match="end of its raw file"):
        mmarray.grow(mmarray.create(tmp_path / "r.raw", 7, "u1").reshape(7, 1)[:6].reshape(3, 2), 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        mmarray.grow(a[:, ::2], 1)
    with pytest.raises(ValueError, match="header"):
        mmarray.grow(a.reshape(2, 6), 1)
    with pytest.raises(ValueError, match="writable"):
        mmarray.grow(mmarray.open(path), 1)
    with pytest.raises(ValueError, match="copy-on-write"):
        mmarray.grow(mmarray.open(path, "c"), 1)
    with pytest.raises(ValueError, match="anonymous"):
        mmarray.grow(mmarray.anonymous((4, 3), "f4"), 1)
    with pytest.raises(ValueError, match="at least one dimension"):
        mmarray.grow(mmarray.create(tmp_path / "s.raw", (), "f8"), 1)
    with pytest.raises(TypeError, match="Region"):
        mmarray.grow(np.zeros((2, 2)), 1)
    f = tmp_path / "f.npy"
    np.save(f, np.zeros((3, 2)), allow_pickle=False)
    np.save(f, np.asfortranarray(np.zeros((3, 2))))
    with pytest.raises(ValueError, match="C-contiguous|Fortran"):
        mmarray.grow(mmarray.open(f, "r+"), 1)
    assert mmarray.open(path).shape == (4, 3)  # nothing changed on the way
    assert path.stat().st_size == len(_npy.make_header((4, 3), np.dtype("f4"), False)) + 48
