"""The page cache: advise, prefetch, evict and the resident-page map.

Oracles: the set of pages a view's bytes fall on (computed element by element) for
the page-exact operations, and numpy for contents.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from page_helpers import mapped_elsewhere, private_anon, release

import mmarray
from mmarray import _cache, _core

P = mmarray.PAGESIZE


# ---- helpers ---------------------------------------------------------------------------------


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


def eviction_observable(a: np.ndarray) -> None:
    """Skip unless evict() really drops this file's pages (not so on tmpfs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mmarray.EvictionWarning)
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


# ---- advise ----------------------------------------------------------------------------------


@pytest.mark.parametrize("advice", _cache.ADVICE)
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
        assert advice in _cache._OPTIONAL and advice in str(e)
        pytest.skip(f"this kernel lacks {advice!r}: {e}")
    assert int(a.sum()) == 3 * 64 * P  # advice never changes shared data


def test_advise_errors(tmp_path):
    a = mmarray.anonymous(P, "u1")
    with pytest.raises(ValueError) as e:
        mmarray.advise(a, "fast")
    for name in _cache.ADVICE:
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
    monkeypatch.setattr(_cache, "_have_populate", populate_read)
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


# ---- evict says which pages stayed, and why ---------------------------------------------------


def no_warning(f, *args) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f(*args)


def test_evict_path_says_how_many_pages_this_process_still_maps(tmp_path):
    path = tmp_path / "f.raw"
    path.write_bytes(b"\x05" * 32 * P)
    a = mmarray.open(path, dtype="u1")
    eviction_observable(a)
    mmarray.prefetch(a[: 20 * P])
    with pytest.warns(mmarray.EvictionWarning, match=r"\d+ of 32 pages of .*f.raw stayed") as rec:
        mmarray.evict(path)
    (w,) = rec
    # what the warning says is so (the kernel may have mapped a few pages past the 20
    # around the last fault: fault-around)
    assert w.message.pages == 32 and w.message.stayed == mmarray.residency(a).resident >= 20
    assert f"{w.message.stayed} of 32 pages" in str(w.message)
    assert "this process still maps the file (1 other mapping:" in w.message.reason
    assert w.filename == __file__  # points at the caller
    mmarray.evict(a)  # this process's own mapping: dropped, no warning
    no_warning(mmarray.evict, path)
    assert mmarray.residency(a).resident == 0


def test_evict_array_counts_the_other_mappings_of_its_file(tmp_path):
    path = tmp_path / "f.raw"
    a = mmarray.create(path, 256 * P, "u1", fill=9)
    b = mmarray.open(path, dtype="u1")
    c = mmarray.open(path, dtype="u1")
    eviction_observable(a)
    mmarray.prefetch(b[64 * P : 80 * P])
    mmarray.prefetch(c[96 * P : 112 * P])
    no_warning(mmarray.evict, a[: 32 * P])  # far from b's and c's pages
    with pytest.warns(mmarray.EvictionWarning) as rec:
        mmarray.evict(a[32 * P : 128 * P])
    (w,) = rec
    # b and c map 32 of these pages (the kernel may map a few more around a fault:
    # fault-around); the count is what mincore says after
    assert w.message.pages == 96
    assert w.message.stayed == mmarray.residency(a[32 * P : 128 * P]).resident >= 32
    assert "(2 other mappings: arrays over it are alive" in w.message.reason
    with pytest.warns(mmarray.EvictionWarning, match="2 other mappings"):
        mmarray.evict(c)  # b maps some of c's pages
    del c  # unmapped
    with pytest.warns(mmarray.EvictionWarning, match="of 256 pages") as rec:
        mmarray.evict(a)
    assert rec[0].message.stayed == mmarray.residency(b).resident >= 16
    assert "(1 other mapping: an array over it is alive" in rec[0].message.reason
    mmarray.evict(b)
    no_warning(mmarray.evict, a)
    assert int(a.sum()) == 9 * 256 * P


def test_evict_says_when_another_process_maps_the_pages(tmp_path):
    path = tmp_path / "f.raw"
    a = mmarray.create(path, 8 * P, "u1", fill=1)
    eviction_observable(a)
    del a
    child = mapped_elsewhere(path)
    try:
        with pytest.warns(mmarray.EvictionWarning, match="8 of 8 pages") as rec:
            mmarray.evict(path)
        assert rec[0].message.reason.startswith("another process maps them")
    finally:
        release(child)
    no_warning(mmarray.evict, path)


def test_evict_says_when_the_file_lives_in_memory():
    if not os.path.isdir("/dev/shm") or not os.access("/dev/shm", os.W_OK):
        pytest.skip("no writable /dev/shm")
    path = f"/dev/shm/mmarray-test-{os.getpid()}.raw"
    try:
        a = mmarray.create(path, 4 * P, "u1", fill=2)
        with pytest.warns(mmarray.EvictionWarning, match="4 of 4 pages") as rec:
            mmarray.evict(a)
        assert rec[0].message.reason.startswith("the file lives in memory (tmpfs)")
        del a
    finally:
        os.unlink(path)


def test_evict_of_anonymous_memory_does_not_warn():
    a = mmarray.anonymous(8 * P, "u1")
    a[:] = 3
    no_warning(mmarray.evict, a)
    assert int(a.sum()) == 3 * 8 * P


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
    b = mmarray.open(path, dtype="u1", offset=0, advice="random")  # the whole file, raw
    assert b.size == path.stat().st_size
    with pytest.raises(ValueError, match="unknown advice"):
        mmarray.open(path, advice="soon")


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
