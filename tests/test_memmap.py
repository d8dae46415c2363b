"""mmarray.memmap behaves as numpy.memmap: the same code runs on both."""

from __future__ import annotations

import os
import pathlib
import tempfile
import threading
import time
from typing import Any

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


# ---- issue 15: a file object's buffered writes, file objects without a path ----------------


def test_buffered_writes_of_a_file_object_are_flushed_before_its_size_is_read():
    res = []
    for impl in IMPLS:
        with tempfile.NamedTemporaryFile() as f:
            f.write(np.arange(4, dtype="<f8").tobytes())  # still in the object's buffer
            m = impl(f, dtype="<f8", mode="r")
            res.append((m.shape, m.tolist(), f.tell()))
    assert res[0] == res[1] == ((4,), [0.0, 1.0, 2.0, 3.0], 32)


def test_r_plus_on_a_buffered_file_object_neither_truncates_nor_is_overwritten(tmp_path):
    """The buffered 16 bytes are the array: mode 'r+' keeps the file at 16 bytes, and the
    object's own flush (at close) cannot overwrite what was written through the array."""
    res = []
    for impl in IMPLS:
        p = tmp_path / f"b-{impl.__module__}.dat"
        with open(p, "wb+") as f:
            f.write(b"abcd" * 4)
            m = impl(f, dtype="u1", mode="r+")
            shape, first = m.shape, bytes(m[:4])
            m[:2] = ord("z")
            m.flush()
        res.append((shape, first, p.read_bytes()))
        del m
    assert res[0] == res[1] == ((16,), b"abcd", b"zzcd" + b"abcd" * 3)


def test_r_plus_growing_a_buffered_file_object_keeps_the_arrays_writes():
    res = []
    for impl in IMPLS:
        with tempfile.NamedTemporaryFile() as f:
            f.write(b"\0" * 8)
            m = impl(f, dtype="u1", mode="r+", shape=(12,))
            m[:] = 7
            m.flush()
            f.flush()  # the object has nothing left to write over the array
            f.write(b"!")  # numpy leaves the position at the end of the file
            f.flush()
            f.seek(0)
            res.append(f.read())
            del m
    assert res[0] == res[1] == bytes([7] * 12) + b"!"


def test_temporary_file_without_a_path_maps_with_filename_none():
    res = []
    for impl in IMPLS:
        with tempfile.TemporaryFile() as f:
            assert isinstance(f.name, int)
            m = impl(f, dtype="<i4", mode="w+", shape=(2, 3))
            m[:] = np.arange(6).reshape(2, 3)
            m.flush()
            f.seek(0)
            written = f.read()
            r = impl(f, dtype="<i4", mode="r", shape=(3,), offset=12)
            res.append((m.filename, m[1:].filename, written, r.tolist(), r.filename))
            del m, r
    assert res[0] == res[1] == (None, None, np.arange(6, dtype="<i4").tobytes(), [3, 4, 5], None)


def test_empty_temporary_file_is_refused_in_mode_r():
    for impl in IMPLS:
        with tempfile.TemporaryFile() as f, pytest.raises(ValueError, match="empty file"):
            impl(f, mode="r")


# ---- issue 15: isinstance(m, np.memmap), m._mmap, flush through the Region -----------------


def test_memmap_is_a_numpy_memmap(tmp_path):
    m = mmarray.memmap(tmp_path / "i.dat", dtype="f4", mode="w+", shape=(4, 5))
    assert issubclass(mmarray.memmap, np.memmap)
    assert isinstance(m, np.memmap) and isinstance(m[1:], np.memmap)
    assert not isinstance(m + 1, np.memmap) and not isinstance(m.sum(axis=0), np.memmap)
    assert m._mmap is mmarray.region(m) and m[1:, ::2]._mmap is m._mmap
    assert m.view(np.ndarray).base is m
    mixed = np.memmap(tmp_path / "n.dat", dtype="f4", mode="w+", shape=(4, 5))
    assert type(mixed + m) is np.ndarray and type(m + mixed) is np.ndarray


def test_mmap_close_is_mmarrays_safe_close(tmp_path):
    """``m._mmap.close()``, the idiom taught for np.memmap (which leaves the array
    pointing at unmapped memory), closes the Region: every array stays readable, and
    the memory is unmapped once the last one is gone."""
    fn = tmp_path / "c.dat"
    m = mmarray.memmap(fn, dtype="i8", mode="w+", shape=(1000,))
    m[:] = 2
    view = m[500:]
    reg = m._mmap
    m._mmap.close()
    m._mmap.close()  # idempotent
    assert reg.closed and reg.mapped
    assert m.sum() == 2000 and view.sum() == 1000
    m.flush()  # a no-op on a closed Region
    m.close()
    with pytest.raises(ValueError, match="closed"):
        mmarray.prefetch(m)
    del m, view
    assert not reg.mapped
    assert np.fromfile(fn, dtype="i8").sum() == 2000


class _SpyRegion:
    """Stands in for a Region, to see which calls flush makes."""

    closed = False

    def __init__(self) -> None:
        self.calls = 0

    def flush(self) -> None:
        self.calls += 1


def test_flush_msyncs_through_the_region_also_from_views(tmp_path):
    m = mmarray.memmap(tmp_path / "f.dat", dtype="u1", mode="w+", shape=(8192,))
    reg = m._mmap
    assert reg is not None
    view = m[4096:]
    spy = _SpyRegion()
    m._mmap = view._mmap = spy  # type: ignore[assignment]
    m.flush()
    view.flush()
    assert spy.calls == 2
    m._mmap = view._mmap = reg
    view[:] = 1
    view.flush()  # a real msync of the whole region, as numpy's flush of a view
    assert (tmp_path / "f.dat").read_bytes() == bytes(4096) + bytes([1]) * 4096


def test_mmap_close_races_readers_without_a_dangling_pointer(tmp_path):
    """``m._mmap.close()`` and dropping the array in one thread while two others slice
    and sum it (or a view of it): every sum is right and nothing crashes, memmap after
    memmap for 2 s."""
    fn = tmp_path / "race.dat"
    n = 4096
    mmarray.memmap(fn, dtype="<i4", mode="w+", shape=(n,))[:] = 1
    box: list[Any] = [None]
    stop = threading.Event()
    errors: list[str] = []

    def read() -> None:
        while not stop.is_set():
            a = box[0]
            if a is None:
                continue
            for k in (0, 1000, 4000):
                view = a[k:]
                got, want = int(view.sum()), view.size
                if got != want:
                    errors.append(f"sum of a[{k}:] is {got}, not {want}")
                    stop.set()

    threads = [threading.Thread(target=read, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    deadline, rounds = time.monotonic() + 2.0, 0
    try:
        while (time.monotonic() < deadline or rounds < 100) and not stop.is_set():
            m = mmarray.memmap(fn, dtype="<i4", mode="r+")
            box[0] = m[rounds % 2 :] if rounds % 3 else m
            reg = m._mmap
            time.sleep(0)
            m._mmap.close()
            box[0] = None
            del m
            rounds += 1
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:3]
    assert rounds >= 100 and reg.closed  # over a thousand on an idle machine
