"""mmarray.open / create / anonymous / region against numpy as the oracle."""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import stat

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.lib import format as npformat

import mmarray
from mmarray import PAGESIZE

NUMERIC = [
    np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64,
    np.float16, np.float32, np.float64, np.complex64, np.complex128, np.longdouble,
]  # fmt: skip
STRUCTURED = [
    np.dtype([("x", "<f8"), ("n", "<i4"), ("tag", "S3")]),
    np.dtype([("pos", "<f4", (3,)), ("id", ">u2")]),
    np.dtype(">i4"),
    np.dtype("<M8[ns]"),
    np.dtype("U5"),
]


def save_with_version(path, arr, version):
    with open(path, "wb") as f:
        npformat.write_array(f, arr, version=version)


# ---- open ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", NUMERIC + STRUCTURED, ids=str)
@pytest.mark.parametrize("order", ["C", "F"])
def test_open_npy_matches_np_load(tmp_path, dtype, order):
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, size=4 * 6 * np.dtype(dtype).itemsize, dtype=np.uint8)
    arr = np.asarray(np.frombuffer(raw.tobytes(), dtype=dtype).reshape(4, 6), order=order)
    p = tmp_path / "a.npy"
    np.save(p, arr)
    got = mmarray.open(p)
    want = np.load(p)
    assert type(got) is np.ndarray
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.flags.f_contiguous == want.flags.f_contiguous
    assert got.tobytes(order="A") == want.tobytes(order="A")
    assert not got.flags.writeable


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_open_npy_header_versions(tmp_path, version):
    arr = np.arange(12, dtype="<i8").reshape(3, 4)
    p = tmp_path / "v.npy"
    save_with_version(p, arr, version)
    np.testing.assert_array_equal(mmarray.open(p), arr)


def test_open_npy_0d_and_empty(tmp_path):
    for arr in [
        np.array(3.5),
        np.zeros((0,)),
        np.zeros((3, 0, 2), dtype="i2"),
        np.zeros((0, 4), "S2"),
    ]:
        p = tmp_path / "x.npy"
        np.save(p, arr)
        got = mmarray.open(p)
        assert got.shape == arr.shape and got.dtype == arr.dtype
        np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("mode", ["r", "r+", "c"])
def test_open_modes(tmp_path, mode):
    p = tmp_path / "m.npy"
    np.save(p, np.arange(10.0))
    a = mmarray.open(p, mode)
    assert a.flags.writeable == (mode != "r")
    if mode != "r":
        a[3] = -1
        assert a[3] == -1
        mmarray.region(a).flush()
    on_disk = np.load(p)
    assert on_disk[3] == (-1 if mode == "r+" else 3)


def test_copy_on_write_of_a_file_larger_than_ram(tmp_path):
    p = tmp_path / "huge.raw"
    with open(p, "wb") as f:
        f.truncate(64 << 30)  # sparse, larger than this machine's memory
    a = mmarray.open(p, "c", dtype="u1")
    a[5] = 1
    assert a[5] == 1 and a.size == 64 << 30
    del a
    assert p.stat().st_blocks * 512 < 1 << 20  # the file was never written


def test_open_copy_on_write_is_private_to_the_array(tmp_path):
    p = tmp_path / "c.raw"
    np.arange(100, dtype="u1").tofile(p)
    a = mmarray.open(p, "c", dtype="u1")
    b = mmarray.open(p, "r", dtype="u1")
    a[:] = 0
    assert b[50] == 50 and p.read_bytes()[50] == 50


@given(
    offset=st.integers(0, 3 * PAGESIZE),
    dtype=st.sampled_from(NUMERIC + STRUCTURED[:2]),
    order=st.sampled_from("CF"),
    cols=st.integers(1, 4),
)
def test_open_raw_with_any_offset_matches_fromfile(tmp_path_factory, offset, dtype, order, cols):
    dt = np.dtype(dtype)
    p = tmp_path_factory.mktemp("raw") / "r.bin"
    data = np.random.default_rng(offset).integers(0, 256, 4 * PAGESIZE, dtype=np.uint8)
    data.tofile(p)
    avail = data.size - offset
    rows = avail // dt.itemsize // cols
    a = mmarray.open(p, dtype=dt, shape=(rows, cols), offset=offset, order=order)
    want = np.fromfile(p, dtype=dt, count=rows * cols, offset=offset).reshape(
        (rows, cols), order=order
    )
    assert a.tobytes(order="A") == want.tobytes(order="A")
    assert a.flags.f_contiguous == want.flags.f_contiguous
    if dt.kind != "V":
        np.testing.assert_array_equal(a, want)


def test_open_raw_default_shape_uses_what_fits(tmp_path):
    p = tmp_path / "r.bin"
    np.arange(10, dtype="<i4").tofile(p)
    np.testing.assert_array_equal(mmarray.open(p, dtype="<i4"), np.arange(10))
    np.testing.assert_array_equal(mmarray.open(p, dtype="<i4", offset=8), np.arange(2, 10))
    with pytest.raises(ValueError, match="not a multiple"):
        mmarray.open(p, dtype="<i4", offset=2)
    assert mmarray.open(p, dtype="<i4", offset=40).shape == (0,)


def test_open_raw_shape_as_int_and_zero_d(tmp_path):
    p = tmp_path / "r.bin"
    np.arange(10, dtype="<f8").tofile(p)
    assert mmarray.open(p, dtype="<f8", shape=4).shape == (4,)
    z = mmarray.open(p, dtype="<f8", shape=(), offset=16)
    assert z.shape == () and z == 2.0


def test_open_raw_too_small_states_both_sizes(tmp_path):
    p = tmp_path / "r.bin"
    p.write_bytes(bytes(100))
    with pytest.raises(ValueError, match=r"needs 800 bytes after offset 4, but the file has 96"):
        mmarray.open(p, dtype="f8", shape=(10, 10), offset=4)
    assert p.stat().st_size == 100  # open never grows a file


def test_open_errors(tmp_path):
    p = tmp_path / "r.bin"
    p.write_bytes(bytes(16))
    with pytest.raises(ValueError, match="mode must be"):
        mmarray.open(p, "w+", dtype="u1")
    with pytest.raises(ValueError, match="not a .npy file"):
        mmarray.open(p)
    with pytest.raises(ValueError, match="order"):
        mmarray.open(p, dtype="u1", order="K")
    with pytest.raises(ValueError, match="offset"):
        mmarray.open(p, dtype="u1", offset=-3)
    with pytest.raises(ValueError, match="past the end"):
        mmarray.open(p, dtype="u1", offset=17)
    with pytest.raises(TypeError, match="objects"):
        mmarray.open(p, dtype=object)
    with pytest.raises(FileNotFoundError):
        mmarray.open(tmp_path / "missing.npy")
    with pytest.raises(IsADirectoryError):
        mmarray.open(tmp_path, dtype="u1")
    ro = tmp_path / "ro.bin"
    ro.write_bytes(bytes(8))
    ro.chmod(stat.S_IRUSR)
    if os.geteuid() != 0:  # root ignores permission bits
        with pytest.raises(PermissionError):
            mmarray.open(ro, "r+", dtype="u1")


def test_open_npy_rejects_mismatched_arguments(tmp_path):
    p = tmp_path / "a.npy"
    np.save(p, np.zeros((2, 3)))
    assert mmarray.open(p, shape=(2, 3)).shape == (2, 3)
    with pytest.raises(ValueError, match="does not match"):
        mmarray.open(p, shape=(3, 2))
    with pytest.raises(ValueError, match="offset"):
        mmarray.open(p, offset=128)


def corrupt_headers():
    good = io.BytesIO()
    np.save(good, np.arange(6.0))
    g = good.getvalue()
    hlen = int.from_bytes(g[8:10], "little")
    yield "bad version", g[:6] + b"\x07\x00" + g[8:]
    yield "truncated prefix", g[:9]
    yield "header longer than file", g[: 10 + hlen // 2]
    yield "shape larger than data", g.replace(b"(6,)", b"(9,)")
    yield "unknown dtype", g.replace(b"'<f8'", b"'<q9'")
    yield "garbage dict", g[:10] + b"{nonsense" + g[19:]
    yield "object dtype", g.replace(b"'<f8'", b"'|O' ")


@pytest.mark.parametrize("case", list(corrupt_headers()), ids=lambda c: c[0])
def test_corrupt_npy_headers_raise_value_error(tmp_path, case):
    p = tmp_path / "bad.npy"
    p.write_bytes(case[1])
    with pytest.raises(ValueError, match=str(p)):
        mmarray.open(p)


# ---- create -------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npy", ".raw"])
@pytest.mark.parametrize("allocate", ["sparse", "reserve"])
def test_create_then_reopen(tmp_path, suffix, allocate):
    p = tmp_path / f"new{suffix}"
    a = mmarray.create(p, (5, 3), "f4", allocate=allocate, fill=2.5)
    assert a.flags.writeable and a.dtype == np.float32 and a.shape == (5, 3)
    a[1] = 7
    mmarray.region(a).flush()
    if suffix == ".npy":
        want = np.load(p)
        b = mmarray.open(p)
    else:
        want = np.fromfile(p, dtype="f4").reshape(5, 3)
        b = mmarray.open(p, dtype="f4", shape=(5, 3))
    np.testing.assert_array_equal(want, [[2.5] * 3, [7] * 3] + [[2.5] * 3] * 3)
    np.testing.assert_array_equal(b, want)


def test_create_fortran_npy(tmp_path):
    p = tmp_path / "f.npy"
    a = mmarray.create(p, (3, 4), "i2", order="F")
    a[:] = np.arange(12).reshape(3, 4)
    b = np.load(p)
    assert b.flags.f_contiguous
    np.testing.assert_array_equal(b, np.arange(12).reshape(3, 4))


def test_create_sparse_allocates_nothing_and_reserve_allocates_all(tmp_path):
    big = 64 << 20
    s = mmarray.create(tmp_path / "s.raw", big, "u1")
    r = mmarray.create(tmp_path / "r.raw", big, "u1", allocate="reserve")
    assert s.size == r.size == big
    s_blocks = os.stat(tmp_path / "s.raw").st_blocks * 512
    r_blocks = os.stat(tmp_path / "r.raw").st_blocks * 512
    if s_blocks >= big:
        pytest.skip("this file system does not support sparse files")
    assert s_blocks < 1 << 20
    assert r_blocks >= big


def test_create_refuses_to_overwrite_unless_asked(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.arange(3))
    with pytest.raises(FileExistsError):
        mmarray.create(p, 3, "i8")
    np.testing.assert_array_equal(np.load(p), np.arange(3))
    a = mmarray.create(p, 4, "f2", exist_ok=True, fill=1)
    a.flags.writeable = True
    np.testing.assert_array_equal(np.load(p), np.ones(4, "f2"))
    assert [f.name for f in tmp_path.iterdir()] == ["x.npy"]  # no temporary left behind


def test_create_failure_keeps_the_old_file_and_leaves_nothing(tmp_path):
    p = tmp_path / "keep.npy"
    np.save(p, np.arange(3))
    with pytest.raises(ValueError):
        mmarray.create(p, 3, "f8", exist_ok=True, fill="not a number")
    np.testing.assert_array_equal(np.load(p), np.arange(3))
    assert [f.name for f in tmp_path.iterdir()] == ["keep.npy"]
    with pytest.raises(ValueError):
        mmarray.create(tmp_path / "new.raw", 3, "f8", fill="nope")
    assert not (tmp_path / "new.raw").exists()


def test_create_errors(tmp_path):
    with pytest.raises(TypeError, match="objects"):
        mmarray.create(tmp_path / "o.npy", 3, object)
    with pytest.raises(TypeError, match="objects"):
        mmarray.create(tmp_path / "o.npy", 3, [("a", "O")])
    with pytest.raises(ValueError, match="negative"):
        mmarray.create(tmp_path / "n.npy", (3, -1), "f8")
    with pytest.raises(ValueError, match="allocate"):
        mmarray.create(tmp_path / "a.npy", 3, "f8", allocate="lazy")
    with pytest.raises(ValueError, match="order"):
        mmarray.create(tmp_path / "a.npy", 3, "f8", order="X")
    with pytest.raises(FileNotFoundError):
        mmarray.create(tmp_path / "no" / "dir.npy", 3, "f8")
    assert list(tmp_path.iterdir()) == []


def test_create_respects_umask(tmp_path):
    old = os.umask(0o027)
    try:
        mmarray.create(tmp_path / "u.raw", 3, "u1")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "u.raw").st_mode) == 0o640


def test_create_zero_size_and_structured(tmp_path):
    dt = np.dtype([("a", "<i4"), ("b", "<f8")])
    a = mmarray.create(tmp_path / "s.npy", (0, 2), dt)
    assert a.shape == (0, 2)
    b = mmarray.create(tmp_path / "t.npy", 2, dt, fill=(1, 2.0))
    assert np.load(tmp_path / "t.npy").tolist() == [(1, 2.0), (1, 2.0)]
    assert b.dtype == dt


# ---- anonymous and region -------------------------------------------------------


def _child_write(a, value):
    a[:] = value


@pytest.mark.parametrize("shared", [True, False])
def test_anonymous_memory_across_fork(shared):
    ctx = mp.get_context("fork")
    a = mmarray.anonymous((4, 1000), "i4", shared=shared)
    a[:] = 1
    p = ctx.Process(target=_child_write, args=(a, 5))
    p.start()
    p.join()
    assert p.exitcode == 0
    assert (a == (5 if shared else 1)).all()


def _child_reports(a, q):
    q.put(int(a.sum()))
    a[0] = 100
    q.put(int(a.sum()))


def test_private_anonymous_memory_is_copy_on_write_both_ways():
    ctx = mp.get_context("fork")
    a = mmarray.anonymous(10, "i8", shared=False)
    a[:] = 1
    q = ctx.Queue()
    p = ctx.Process(target=_child_reports, args=(a, q))
    a_before_fork = a.copy()
    p.start()
    first, second = q.get(timeout=30), q.get(timeout=30)
    p.join()
    assert first == 10 and second == 109  # the child saw the parent's data, then its own write
    np.testing.assert_array_equal(a, a_before_fork)


def test_anonymous_shapes_and_errors():
    assert mmarray.anonymous((), "f8").shape == ()
    assert mmarray.anonymous((0, 3), "f8").shape == (0, 3)
    f = mmarray.anonymous((2, 3), "f8", order="F")
    assert f.flags.f_contiguous and not f.flags.c_contiguous
    with pytest.raises(ValueError, match="negative"):
        mmarray.anonymous(-1, "f8")
    with pytest.raises(TypeError):
        mmarray.anonymous(3, object)
    with pytest.raises((ValueError, OverflowError)):
        mmarray.anonymous((2**40, 2**40), "f8")


@given(hnp.basic_indices(shape=(6, 5, 4)))
def test_region_of_any_view(index):
    a = mmarray.anonymous((6, 5, 4), "f4")
    r = mmarray.region(a)
    assert r is not None
    v = a[index]
    if isinstance(v, np.ndarray):
        assert mmarray.region(v) is r
        assert mmarray.region(v.T) is r
        if v.ndim:
            assert mmarray.region(v[::-1]) is r
        assert mmarray.region(v.view(np.int32)) is r


def test_region_of_other_things_is_none(tmp_path):
    assert mmarray.region(np.zeros(3)) is None
    assert mmarray.region(np.zeros(3)[1:]) is None
    assert mmarray.region(3) is None
    assert mmarray.region(np.frombuffer(b"abc", np.uint8)) is None
    np.save(tmp_path / "x.npy", np.zeros(3))
    assert mmarray.region(np.load(tmp_path / "x.npy", mmap_mode="r")) is None


# ---- errors a user can act on ------------------------------------------------------------


def test_open_of_a_npy_file_with_dtype_and_no_offset_is_refused_naming_the_header(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.arange(6, dtype="<i8").reshape(2, 3))
    for mode in ("r", "r+", "c"):
        with pytest.raises(ValueError) as ei:
            mmarray.open(p, mode, dtype="<i8")
        msg = str(ei.value)
        assert str(p) in msg and "shape (2, 3) of int64" in msg and "offset=128" in msg, msg
    np.testing.assert_array_equal(mmarray.open(p, dtype="<i8", offset=128), np.arange(6))
    raw = mmarray.open(p, dtype="u1", offset=0)  # explicitly: the header's bytes too
    assert raw[:6].tobytes() == b"\x93NUMPY" and raw.size == 128 + 48
    np.testing.assert_array_equal(mmarray.open(p), np.arange(6).reshape(2, 3))
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"\x93NUMPY\x09\x00" + bytes(120))  # the magic, an unknown version
    with pytest.raises(ValueError, match="header cannot be read.*offset= past the header"):
        mmarray.open(bad, dtype="u1")
    plain = tmp_path / "plain.raw"
    plain.write_bytes(bytes(16))  # no magic: a raw file, offset 0
    assert mmarray.open(plain, dtype="u1").shape == (16,)


@pytest.mark.parametrize("shape", [2.5, (2, 2.5), "3", None, [1, None], object()])
def test_a_shape_that_is_not_ints_says_what_a_shape_must_be(tmp_path, shape):
    p = tmp_path / "s.npy"
    for make in (
        lambda: mmarray.create(p, shape, "u1"),
        lambda: mmarray.anonymous(shape, "u1"),
    ):
        with pytest.raises(TypeError, match="shape must be an int or a tuple of ints, not"):
            make()
    assert not p.exists()


def test_create_on_an_existing_file_says_exist_ok_replaces_it(tmp_path):
    p = tmp_path / "e.raw"
    p.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match=r"pass exist_ok=True to replace it") as ei:
        mmarray.create(p, 3, "u1")
    assert ei.value.filename == str(p)
    assert p.read_bytes() == b"keep"


def test_flush_is_public_and_takes_any_view(tmp_path):
    assert "flush" in mmarray.__all__ and mmarray.flush.__module__ == "mmarray._flush"
    p = tmp_path / "f.npy"
    a = mmarray.create(p, (64, 1024), "f8")
    a[3] = 2.0
    for view in (a, a[3], a[::-1], a[:, ::-7], a[5:5], a.T, a.view("u1")[3:9]):
        assert mmarray.flush(view) is None
    mmarray.flush(mmarray.region(a))
    assert np.load(p)[3].tolist() == [2.0] * 1024
    m = mmarray.memmap(p, dtype="f8", mode="r+", offset=128, shape=(64, 1024))
    m[4] = 3.0
    m.flush()
    m[4:6].flush()
    mmarray.flush(m[4])
    assert np.load(p)[4, 0] == 3.0
    for other in (mmarray.open(p), mmarray.open(p, "c"), mmarray.anonymous(9, "u1")):
        mmarray.flush(other)  # nothing to write back, or no file: no error either


def test_flush_of_what_it_cannot_flush_says_why(tmp_path):
    with pytest.raises(TypeError, match="flush.*mmarray Region"):
        mmarray.flush(np.zeros(3))
    with pytest.raises(TypeError, match="flush"):
        mmarray.flush([1, 2])  # type: ignore[arg-type]
    a = mmarray.create(tmp_path / "c.raw", 10, "u1")
    mmarray.region(a).close()
    with pytest.raises(ValueError, match="closed Region"):
        mmarray.flush(a)
