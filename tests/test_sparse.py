"""Sparse files: disk_usage, extents, punch.

Oracles: ``du --block-size=1`` and ``stat`` for sizes, a model of written blocks for
extents, numpy for contents.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mmarray
from mmarray import _core, _npy

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


def fsync(path: Path) -> None:
    """Settle delayed allocation of this one file (no global sync on a shared machine)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
