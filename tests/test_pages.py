"""Pages and files: disk_usage, extents, punch, advise, prefetch, evict, residency, grow.

Oracles: ``du --block-size=1`` and ``stat`` for sizes, a model of written blocks for
extents, numpy for contents, and the set of pages a view's bytes fall on (computed
element by element) for the page-exact operations.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mmarray
from mmarray import _core, _npy, _pages

P = mmarray.PAGESIZE


# ---- helpers ---------------------------------------------------------------------------------


def du_bytes(path: Path) -> int:
    out = subprocess.run(
        ["du", "--block-size=1", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return int(out.split()[0])


def stat_size(path: Path) -> int:
    out = subprocess.run(
        ["stat", "-c", "%s", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return int(out)


def sparse_file(path: Path, size: int, writes: list[tuple[int, bytes]]) -> Path:
    """A file of `size` bytes, made with ftruncate, with `writes` at their offsets."""
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in writes:
            f.seek(off)
            f.write(data)
    return path


def holes_supported(tmp_path: Path) -> bool:
    p = sparse_file(tmp_path / "probe.raw", 1 << 20, [])
    try:
        return mmarray.extents(p) == []
    finally:
        p.unlink()


def pages_of(v: np.ndarray) -> np.ndarray:
    """Sorted page numbers (relative to the region's first page) that hold a byte of v."""
    reg = mmarray.region(v)
    first_page = reg.address // P
    if v.size == 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.indices(v.shape).reshape(v.ndim, -1)
    addr = v.__array_interface__["data"][0] + (np.array(v.strides)[:, None] * idx).sum(axis=0)
    pages = np.concatenate([addr // P, (addr + v.itemsize - 1) // P])
    return np.unique(pages) - first_page


def fsync(path: Path) -> None:
    """Settle delayed allocation of this one file (no global sync on a shared machine)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def same(x: np.ndarray, y: np.ndarray) -> None:
    """Equal shapes, dtypes and bytes (NaNs in structured dtypes compare equal too)."""
    assert x.shape == y.shape and x.dtype == y.dtype
    assert np.ascontiguousarray(x).tobytes() == np.ascontiguousarray(y).tobytes()


def eviction_observable(a: np.ndarray) -> None:
    """Skip unless evict() really drops this file's pages (not so on tmpfs)."""
    mmarray.evict(a)
    if mmarray.residency(a).resident:
        pytest.skip("this file system keeps evicted pages in memory (tmpfs?)")


# A strided view of a 1-D array: a slice, optionally reshaped to 2-D and sliced again.
@st.composite
def views(draw, n: int):
    start = draw(st.integers(0, n - 1))
    stop = draw(st.integers(start, n))
    step = draw(st.sampled_from([1, 1, 2, 3, 7, 512, 1000, 4096, 5000, -1, -4097]))
    if step < 0:
        start, stop = stop - 1, start - 1 if start > 0 else None
    sl = slice(start, stop, step)
    two_d = draw(st.booleans())
    return sl, two_d


def apply_view(a: np.ndarray, spec) -> np.ndarray:
    sl, two_d = spec
    v = a[sl]
    if two_d and v.size >= 4 and v.size % 2 == 0:
        v = v.reshape(2, -1)[:, ::2] if v.flags.c_contiguous else v.reshape(2, -1)
    return v


# ---- disk_usage ------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    size=st.integers(0, 64 * P),
    writes=st.lists(st.tuples(st.integers(0, 64 * P), st.integers(1, 3 * P)), max_size=4),
)
def test_disk_usage_matches_du_and_stat(tmp_path_factory, size, writes):
    path = tmp_path_factory.mktemp("du") / "f.raw"
    sparse_file(path, size, [(off, b"\x01" * n) for off, n in writes])
    fsync(path)
    use = mmarray.disk_usage(path)
    assert use == (stat_size(path), du_bytes(path))
    assert use.apparent == path.stat().st_size


def test_disk_usage_of_array_is_its_file(tmp_path):
    path = tmp_path / "a.npy"
    a = mmarray.create(path, (1000, 3), "f8")
    a[500:] = 1.0
    mmarray.region(a).flush()
    use = mmarray.disk_usage(a[10:20, 1])
    assert use == (stat_size(path), du_bytes(path)) == mmarray.disk_usage(str(path))
    assert mmarray.disk_usage(mmarray.region(a)) == use


def test_disk_usage_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        mmarray.disk_usage(tmp_path / "missing")
    with pytest.raises(ValueError, match="anonymous"):
        mmarray.disk_usage(mmarray.anonymous(10, "u1"))
    with pytest.raises(TypeError, match="Region"):
        mmarray.disk_usage(np.zeros(3))
    with pytest.raises(TypeError):
        mmarray.disk_usage(3)


def test_create_sparse_allocates_almost_nothing(tmp_path):
    path = tmp_path / "big.npy"
    a = mmarray.create(path, (2**30, 3), "f8", allocate="sparse")
    use = mmarray.disk_usage(a)
    assert use.apparent == 2**30 * 3 * 8 + len(_npy.make_header((2**30, 3), np.dtype("f8"), False))
    assert use.allocated < 64 * 1024
    assert du_bytes(path) < 64 * 1024
    del a
    path.unlink()


# ---- extents ---------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    npages=st.integers(1, 48),
    written=st.sets(st.integers(0, 47), max_size=12),
)
def test_extents_match_written_blocks(tmp_path_factory, npages, written):
    tmp = tmp_path_factory.mktemp("ext")
    if not holes_supported(tmp):
        pytest.skip("this file system does not report holes")
    pages = sorted(p for p in written if p < npages)
    path = sparse_file(tmp / "f.raw", npages * P, [(p * P, b"\x07" * P) for p in pages])
    model: list[tuple[int, int]] = []
    for p in pages:
        if model and model[-1][1] == p * P:
            model[-1] = (model[-1][0], (p + 1) * P)
        else:
            model.append((p * P, (p + 1) * P))
    assert mmarray.extents(path) == model
    # The array form: elements of a float64 view starting part-way into page 0.
    a = mmarray.open(path, dtype="f8", offset=24)
    elems = []
    for s, e in model:
        first, last = max(s - 24, 0) // 8, min(-(-(e - 24) // 8), a.size)
        if first < last:
            elems.append((first, last))
    assert mmarray.extents(a) == elems


def test_extents_full_and_empty(tmp_path):
    p = tmp_path / "dense.raw"
    p.write_bytes(b"\x01" * (3 * P + 17))
    assert mmarray.extents(p) == [(0, 3 * P + 17)]
    assert mmarray.extents(mmarray.open(p, dtype="u1")[5:]) == [(0, 3 * P + 12)]
    e = tmp_path / "empty.raw"
    e.write_bytes(b"")
    assert mmarray.extents(e) == []


def test_extents_without_hole_support_is_one_extent():
    # seq_file-backed /proc files refuse SEEK_DATA with EINVAL, like a file system
    # that lacks hole support: everything is reported as data.
    fd = os.open("/proc/self/status", os.O_RDONLY)
    try:
        assert _core.extents(fd, 0, 100) == [(0, 100)]
        assert _core.extents(fd, 10, 10) == []
    finally:
        os.close(fd)


def test_extents_errors(tmp_path):
    with pytest.raises(ValueError, match="contiguous"):
        mmarray.extents(mmarray.create(tmp_path / "x.raw", 100, "u1")[::2])
    with pytest.raises(ValueError, match="anonymous"):
        mmarray.extents(mmarray.anonymous(10, "u1"))
    with pytest.raises(TypeError):
        mmarray.extents(7)
    with pytest.raises(FileNotFoundError):
        mmarray.extents(tmp_path / "missing")
    with pytest.raises(ValueError, match="range"):
        _core.extents(0, 5, 1)
    r, w = os.pipe()
    try:
        with pytest.raises(OSError, match="lseek"):
            _core.extents(r, 0, 10)
    finally:
        os.close(r)
        os.close(w)


def test_extents_restore_the_file_offset(tmp_path):
    p = sparse_file(tmp_path / "f.raw", 8 * P, [(3 * P, b"x")])
    with open(p, "rb") as f:
        f.seek(5)
        _core.extents(f.fileno(), 0, 8 * P)
        assert f.tell() == 5


# ---- punch -----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    dtype=st.sampled_from(["u1", "i2", "f8"]),
    offset=st.sampled_from([0, 3, P - 1]),
)
def test_punch_ranges(tmp_path_factory, data, dtype, offset):
    tmp = tmp_path_factory.mktemp("punch")
    path = tmp / "f.raw"
    dt = np.dtype(dtype)
    n = (12 * P) // dt.itemsize
    rng = np.random.default_rng(0)
    content = rng.integers(1, 255, size=offset + n * dt.itemsize, dtype=np.uint8)
    content.tofile(path)
    a = mmarray.open(path, "r+", dtype=dt, offset=offset)
    model = a.copy()
    i = data.draw(st.integers(0, n), label="start")
    j = data.draw(st.integers(i, n), label="stop")
    order_f = data.draw(st.booleans(), label="2-D Fortran view")
    view = a[i:j]
    if order_f and view.size % 2 == 0 and view.size:
        view = view.reshape(-1, 2).T  # Fortran-contiguous, same bytes
    mmarray.region(a).flush()
    fsync(path)
    before = mmarray.disk_usage(path).allocated
    freed = mmarray.punch(view)
    model[i:j] = 0
    np.testing.assert_array_equal(a, model)
    # Read the file afresh: the change is in the file, not only in this mapping.
    on_disk = np.fromfile(path, dtype=np.uint8)
    np.testing.assert_array_equal(on_disk[:offset], content[:offset])
    np.testing.assert_array_equal(on_disk[offset:].view(dt), model)
    # Exactly the whole pages inside the punched bytes were handed back.
    flo, fhi = offset + i * dt.itemsize, offset + j * dt.itemsize
    whole = max(0, (fhi // P) * P - (-(-flo // P)) * P)
    assert freed == whole
    after = mmarray.disk_usage(path).allocated
    if holes_supported(tmp):
        assert before - after == whole
    del a, view


def test_punch_errors(tmp_path):
    path = tmp_path / "f.raw"
    path.write_bytes(b"\x01" * 4 * P)
    with pytest.raises(ValueError, match="read-only"):
        mmarray.punch(mmarray.open(path, dtype="u1"))
    c = mmarray.open(path, "c", dtype="u1")
    with pytest.raises(ValueError, match="copy-on-write"):
        mmarray.punch(c)
    a = mmarray.open(path, "r+", dtype="u1")
    with pytest.raises(ValueError, match="contiguous"):
        mmarray.punch(a[::2])
    with pytest.raises(ValueError, match="contiguous"):
        mmarray.punch(a.reshape(4, P)[:, :10])
    ro = a[:]
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        mmarray.punch(ro)
    with pytest.raises(ValueError, match="anonymous"):
        mmarray.punch(mmarray.anonymous(P, "u1"))
    with pytest.raises(TypeError, match="Region"):
        mmarray.punch(np.ones(10))
    with pytest.raises(TypeError):
        mmarray.punch([1, 2])
    assert path.read_bytes() == b"\x01" * 4 * P  # nothing was touched
    assert mmarray.punch(a[:0]) == 0


# ---- advise ----------------------------------------------------------------------------------


@pytest.mark.parametrize("advice", _pages.ADVICE)
@pytest.mark.parametrize("kind", ["file", "anonymous"])
def test_every_advice(tmp_path, advice, kind):
    if kind == "file":
        a = mmarray.create(tmp_path / "f.raw", 64 * P, "u1", fill=3)
    else:
        a = mmarray.anonymous(64 * P, "u1")
        a[:] = 3
    try:
        for v in (a, a[5 : 9 * P + 1], a[::-P], a.reshape(64, P)[::3, 7:9]):
            mmarray.advise(v, advice)
    except NotImplementedError as e:
        assert advice in _pages._OPTIONAL and advice in str(e)
        pytest.skip(f"this kernel lacks {advice!r}: {e}")
    assert int(a.sum()) == 3 * 64 * P  # advice never changes shared data


def test_advise_errors(tmp_path):
    a = mmarray.anonymous(P, "u1")
    with pytest.raises(ValueError) as e:
        mmarray.advise(a, "fast")
    for name in _pages.ADVICE:
        assert repr(name) in str(e.value)
    with pytest.raises(TypeError):
        mmarray.advise(np.zeros(3), "normal")
    p = mmarray.anonymous(4 * P, "u1", shared=False)
    p[:] = 9
    with pytest.raises(ValueError, match="copy-on-write"):
        mmarray.advise(p, "dontneed")
    assert int(p.sum()) == 9 * 4 * P


def test_missing_advice_is_not_implemented(monkeypatch):
    monkeypatch.setattr(_core, "MADVICE", {k: v for k, v in _core.MADVICE.items() if k != "random"})
    with pytest.raises(NotImplementedError, match="random"):
        mmarray.advise(mmarray.anonymous(P, "u1"), "random")


def test_advice_the_kernel_rejects_is_not_implemented(monkeypatch):
    # A value no kernel knows stands in for hugepage advice on a kernel without THP.
    monkeypatch.setitem(_core.MADVICE, "hugepage", 12345)
    with pytest.raises(NotImplementedError, match="hugepage"):
        mmarray.advise(mmarray.anonymous(P, "u1"), "hugepage")
    monkeypatch.setitem(_core.MADVICE, "normal", 12345)
    with pytest.raises(OSError, match="madvise"):
        mmarray.advise(mmarray.anonymous(P, "u1"), "normal")


# ---- residency, prefetch, evict --------------------------------------------------------------


def private_anon(npages: int) -> np.ndarray:
    a = mmarray.anonymous(npages * P, "u1", shared=False)
    try:
        mmarray.advise(a, "nohugepage")  # one fault must bring in one page
    except NotImplementedError:
        pass
    return a


@settings(max_examples=60, deadline=None)
@given(touched=st.sets(st.integers(0, 39)), spec=views(40 * P))
def test_residency_map_is_exact(touched, spec):
    # Anonymous private memory is resident exactly where it was written.
    a = private_anon(40)
    for p in touched:
        a[p * P + 11] = 1
    model = np.zeros(40, dtype=bool)
    model[list(touched)] = True
    r = mmarray.residency(a)
    np.testing.assert_array_equal(r.map, model)
    assert r.fraction == model.mean()
    v = apply_view(a, spec)
    pages = pages_of(v)
    rv = mmarray.residency(v)
    assert rv.pages == len(pages)
    np.testing.assert_array_equal(rv.map, model[pages])


@settings(max_examples=30, deadline=None)
@given(spec=views(48 * P))
def test_evict_and_prefetch_cover_exactly_the_pages_of_a_view(tmp_path_factory, spec):
    path = tmp_path_factory.mktemp("ev") / "f.raw"
    a = mmarray.create(path, 48 * P, "u1", fill=5)
    eviction_observable(a)
    mmarray.prefetch(a)
    assert mmarray.residency(a).fraction == 1.0
    v = apply_view(a, spec)
    mmarray.evict(v)
    expect = np.ones(48, dtype=bool)
    expect[pages_of(v)] = False
    np.testing.assert_array_equal(mmarray.residency(a).map, expect)
    mmarray.prefetch(v)
    assert mmarray.residency(v).fraction == 1.0
    assert int(a.sum()) == 5 * 48 * P
    del a, v


@pytest.mark.parametrize("populate_read", [True, False])
def test_prefetch_after_evict(tmp_path, monkeypatch, populate_read):
    monkeypatch.setattr(_pages, "_have_populate", populate_read)
    a = mmarray.create(tmp_path / "f.raw", 256 * P, "f8", fill=2.0)
    mmarray.region(a).flush()
    eviction_observable(a)
    r = mmarray.residency(a)
    assert (r.pages, r.resident, r.fraction) == (256 * 8, 0, 0.0)
    mmarray.prefetch(a)
    assert mmarray.residency(a).fraction == 1.0
    assert float(a.sum()) == 2.0 * a.size


def test_populate_read_or_its_fallback(tmp_path):
    a = mmarray.create(tmp_path / "f.raw", 16 * P, "u1", fill=1)
    eviction_observable(a)
    reg = mmarray.region(a)
    try:
        _core.populate(reg, 0, reg.size)
    except OSError as e:
        assert "MADV_POPULATE_READ" in str(e)
        pytest.skip(f"this kernel lacks MADV_POPULATE_READ: {e}")
    assert mmarray.residency(a).fraction == 1.0


def test_evict_writes_back_dirty_pages(tmp_path):
    path = tmp_path / "f.raw"
    a = mmarray.create(path, 8 * P, "u1")
    a[3 * P : 4 * P] = 42
    mmarray.evict(a[3 * P : 4 * P])
    assert int(a[3 * P]) == 42
    assert np.fromfile(path, dtype=np.uint8)[3 * P] == 42


def test_evict_path_and_region(tmp_path):
    path = tmp_path / "f.raw"
    path.write_bytes(b"\x05" * 32 * P)
    a = mmarray.open(path, dtype="u1")
    mmarray.prefetch(a)
    mmarray.evict(mmarray.region(a))
    eviction_observable(a)
    mmarray.prefetch(mmarray.region(a))
    assert mmarray.residency(mmarray.region(a)).fraction == 1.0
    del a  # no mapping left: the path form can drop every page
    mmarray.evict(path)
    b = mmarray.open(path, dtype="u1")
    assert mmarray.residency(b).resident == 0
    assert int(b.sum()) == 5 * 32 * P


def test_evict_refuses_copy_on_write(tmp_path):
    path = tmp_path / "f.raw"
    path.write_bytes(b"\x01" * 4 * P)
    c = mmarray.open(path, "c", dtype="u1")
    c[:] = 7
    with pytest.raises(ValueError, match="copy-on-write"):
        mmarray.evict(c)
    assert int(c.sum()) == 7 * 4 * P
    with pytest.raises(ValueError, match="copy-on-write"):
        mmarray.evict(mmarray.anonymous(P, "u1", shared=False))


def test_evict_anonymous_shared_keeps_data():
    a = mmarray.anonymous(8 * P, "i4")
    a[:] = np.arange(a.size)
    mmarray.evict(a[100:3000])
    np.testing.assert_array_equal(a, np.arange(a.size))


def test_open_with_advice_and_populate(tmp_path):
    path = tmp_path / "f.npy"
    np.save(path, np.arange(64 * P // 8, dtype="i8"))
    mmarray.evict(path)
    a = mmarray.open(path, advice="sequential", populate=True)
    assert mmarray.residency(a).fraction == 1.0
    np.testing.assert_array_equal(a, np.load(path))
    b = mmarray.open(path, dtype="u1", advice="random")
    assert b.size == path.stat().st_size
    with pytest.raises(ValueError, match="unknown advice"):
        mmarray.open(path, advice="soon")


def test_residency_repr_and_html():
    a = private_anon(10)
    a[: 3 * P] = 1
    r = mmarray.residency(a)
    text = repr(r)
    assert "\n" not in text and "3/10 pages" in text and "30.0%" in text
    h = r._repr_html_()
    assert h.count("<svg") == 1 and "<rect" in h and "3/10 pages" in h
    root = ElementTree.fromstring(h)  # well-formed markup
    rects = root.findall(".//{http://www.w3.org/2000/svg}rect")
    widths = sum(float(r.get("width")) for r in rects)
    assert len(rects) == 2 and abs(widths - 480) < 1  # two runs cover the strip
    big = mmarray.Residency(np.arange(10000) % 3 == 0)
    assert big._repr_html_().count("<rect") <= 240
    empty = mmarray.residency(a[:0])
    assert (empty.pages, empty.fraction) == (0, 1.0)
    assert "<svg" in empty._repr_html_()
    reg = mmarray.region(a)
    assert "<svg" in _pages.region_html(reg)


def test_operations_on_a_closed_region(tmp_path):
    a = mmarray.create(tmp_path / "f.raw", 4 * P, "u1")
    mmarray.region(a).close()
    for f in (mmarray.residency, mmarray.prefetch, mmarray.evict, mmarray.punch):
        with pytest.raises(ValueError, match="closed"):
            f(a)
    with pytest.raises(ValueError, match="closed"):
        mmarray.advise(a, "normal")


def test_core_range_checks():
    a = mmarray.anonymous(2 * P, "u1")
    reg = mmarray.region(a)
    for bad in ((-1, 5), (5, 4), (0, 2 * P + 1)):
        with pytest.raises(ValueError, match="outside the region"):
            _core.mincore(reg, *bad)
    with pytest.raises(TypeError, match="Region"):
        _core.madvise(a, 0, 1, 0)
    assert _core.mincore(reg, 3, 3) == b""
    assert _core.fadvise(reg, 0, 10, _core.FADV_DONTNEED) is False  # anonymous: no file


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
    with pytest.raises(ValueError, match="end of its file"):
        mmarray.grow(a[:3], 1)
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


def test_every_call_releases_its_export(tmp_path):
    a = mmarray.create(tmp_path / "f.raw", 8 * P, "u1", fill=1)
    reg = mmarray.region(a)
    base = reg.exports
    calls = [
        lambda: mmarray.residency(a[::3]),
        lambda: mmarray.prefetch(a),
        lambda: mmarray.evict(a[5:]),
        lambda: mmarray.advise(a, "random"),
        lambda: mmarray.punch(a[: 2 * P]),
        lambda: _core.fadvise(reg, 0, P, _core.FADV_WILLNEED),
        lambda: _core.writeback(reg, 0, P),
        lambda: _core.touch(reg, 0, P),
        lambda: _core.mincore(reg, 0, 9 * P),  # fails: outside the region
        lambda: _core.madvise(reg, 0, P, 12345),  # fails: EINVAL
    ]
    for call in calls:
        for _ in range(50):
            try:
                call()
            except (ValueError, OSError):
                pass
        assert reg.exports == base


def test_close_while_another_thread_works_on_the_pages(tmp_path):
    import threading

    a = mmarray.create(tmp_path / "f.raw", 16 << 20, "u1", fill=1)  # above the GIL threshold
    reg = mmarray.region(a)
    errors: list[BaseException] = []
    started = threading.Event()

    def work() -> None:
        try:
            for _ in range(200):
                mmarray.prefetch(a)
                started.set()  # close() comes while later rounds run
                mmarray.residency(a)
                mmarray.evict(a)
        except ValueError as e:  # the region was closed: refused, never a crash
            errors.append(e)

    t = threading.Thread(target=work)
    t.start()
    started.wait()
    reg.close()
    t.join()
    assert errors  # 200 rounds outlast close()
    assert int(a[-1]) == 1  # the array keeps its mapping after close()
    with pytest.raises(ValueError, match="closed"):
        mmarray.prefetch(a)
    assert all("closed" in str(e) for e in errors)


def test_region_renders_as_html_in_jupyter(tmp_path):
    a = mmarray.create(tmp_path / "h.raw", 4 * P, "u1")
    reg = mmarray.region(a)
    a[:P] = 1  # touch the first page
    html_text = reg._repr_html_()
    assert html_text.startswith("<div><code>&lt;mmarray.Region open") and "<svg" in html_text
    del a
    reg.close()
    assert reg._repr_html_().startswith("<code>") and "closed" in reg._repr_html_()
