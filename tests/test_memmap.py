"""mmarray.memmap behaves as numpy.memmap: the same code runs on both."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

import mmarray

IMPLS = [np.memmap, mmarray.memmap]


def both(fn):
    """Run fn(impl, tmp) for numpy and mmarray and return both results."""
    return [fn(impl) for impl in IMPLS]


def test_readme_style_round_trip(tmp_path):
    def run(impl):
        fn = tmp_path / f"rt-{impl.__module__}.dat"
        fp = impl(fn, dtype="float32", mode="w+", shape=(3, 4))
        fp[:] = np.arange(12).reshape(3, 4)
        fp.flush()
        del fp
        newfp = impl(fn, dtype="float32", mode="r", shape=(3, 4))
        ro = (
            newfp.sum(),
            type(newfp.sum()),
            newfp.mode,
            newfp.offset,
            os.path.basename(newfp.filename),
        )
        cow = impl(fn, dtype="float32", mode="c", shape=(3, 4))
        cow[0, :] = 0
        off = impl(fn, dtype="float32", mode="r", offset=16)
        return ro[:4], ro[4][:2], cow.sum(), np.asarray(off).tolist(), cow.mode, off.offset

    np_res, mm_res = both(run)
    assert np_res == mm_res


@pytest.mark.parametrize(
    "alias,mode", [("readonly", "r"), ("copyonwrite", "c"), ("readwrite", "r+"), ("write", "w+")]
)
def test_mode_aliases(tmp_path, alias, mode):
    fn = tmp_path / "m.dat"
    fn.write_bytes(bytes(8))
    for impl in IMPLS:
        m = impl(fn, mode=alias, shape=(8,))
        assert m.mode == mode


def test_views_keep_the_class_and_reductions_do_not(tmp_path):
    fn = tmp_path / "v.dat"
    for impl in IMPLS:
        m = impl(fn, dtype="f8", mode="w+", shape=(4, 5))
        m[:] = 1
        assert type(m[1:]) is impl
        assert type(m.T) is impl
        assert type(m[::-1, ::2]) is impl
        assert type(m.sum(axis=0)) is np.ndarray
        assert type(m + 1) is np.ndarray
        assert type(np.sqrt(m)) is np.ndarray
        assert type(m.sum()) is np.float64
        assert type(m[0, 0]) is np.float64
        assert type(m[[0, 1]]) is np.ndarray  # fancy indexing copies
        assert m[1:].filename == m.filename and m[1:].offset == 0
        assert m.copy().filename is None


def test_shape_int_order_and_offset(tmp_path):
    fn = tmp_path / "o.dat"
    np.arange(40, dtype="<i2").tofile(fn)
    res = []
    for impl in IMPLS:
        m = impl(fn, dtype="<i2", mode="r", shape=(4, 3), offset=6, order="F")
        res.append(
            (m.tolist(), m.flags.f_contiguous, impl(fn, dtype="<i2", mode="r", shape=5).shape)
        )
    assert res[0] == res[1]


def test_r_plus_and_w_plus_grow_the_file_like_numpy(tmp_path):
    sizes = []
    for impl in IMPLS:
        fn = tmp_path / f"g{len(sizes)}.dat"
        fn.write_bytes(b"ab")
        impl(fn, dtype="u1", mode="r+", shape=(10,), offset=3)
        sizes.append(fn.stat().st_size)
    assert sizes == [13, 13]


def test_file_objects_and_pathlike(tmp_path):
    fn = tmp_path / "f.dat"
    np.arange(6, dtype="f8").tofile(fn)
    for impl in IMPLS:
        with open(fn, "rb") as f:
            m = impl(f, dtype="f8", mode="r")
        assert m.filename == os.path.abspath(fn) and m.sum() == 15
        p = impl(pathlib.Path(fn), dtype="f8", mode="r")
        assert isinstance(p.filename, pathlib.Path)


@pytest.mark.parametrize(
    "kwargs,exc",
    [
        ({"mode": "x"}, ValueError),
        ({"mode": "w+"}, ValueError),  # no shape
        ({"mode": "r", "dtype": "f8", "offset": 3}, ValueError),  # not a multiple of the item size
    ],
)
def test_same_errors(tmp_path, kwargs, exc):
    fn = tmp_path / "e.dat"
    fn.write_bytes(bytes(16))
    for impl in IMPLS:
        with pytest.raises(exc):
            impl(fn, **kwargs)


def test_missing_and_empty_files(tmp_path):
    for impl in IMPLS:
        with pytest.raises(FileNotFoundError):
            impl(tmp_path / "missing.dat", mode="r")
        empty = tmp_path / "empty.dat"
        empty.write_bytes(b"")
        with pytest.raises(ValueError):
            impl(empty, mode="r")


def test_close_is_safe_with_live_views(tmp_path):
    fn = tmp_path / "c.dat"
    m = mmarray.memmap(fn, dtype="i4", mode="w+", shape=(100,))
    m[:] = 3
    view = m[10:20]
    r = mmarray.region(m)
    m.close()
    m.close()  # idempotent
    assert r.closed and r.mapped
    assert view.sum() == 30 and m.sum() == 300  # still valid after close
    m.flush()  # a no-op after close, as for a flushed np.memmap
    assert np.fromfile(fn, dtype="i4").sum() == 300  # close flushed
    del m, view
    assert not r.mapped


def test_object_dtype_refused(tmp_path):
    with pytest.raises(TypeError):
        mmarray.memmap(tmp_path / "o.dat", dtype=object, mode="w+", shape=(2,))
