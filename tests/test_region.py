"""The C Region type: mapping, buffer export, close policy, errors."""

from __future__ import annotations

import ctypes
import gc
import mmap
import os
import sys

import numpy as np
import pytest

from mmarray import PAGESIZE, Region
from mmarray._core import ndarray as core_ndarray


def expected(raw_file, start, stop=None):
    return raw_file.read_bytes()[start:stop]


@pytest.mark.parametrize("offset", [0, 1, 100, PAGESIZE - 1, PAGESIZE, PAGESIZE + 7])
def test_any_byte_offset_exposes_exactly_the_requested_bytes(raw_file, offset):
    with Region.open(raw_file, offset=offset) as r:
        assert r.offset == offset
        assert len(r) == r.size == raw_file.stat().st_size - offset
        assert bytes(memoryview(r)) == expected(raw_file, offset)
    with Region.open(raw_file, 10, offset) as r:
        assert bytes(memoryview(r)) == expected(raw_file, offset, offset + 10)


def test_region_from_fileno_dups_the_descriptor(raw_file):
    fd = os.open(raw_file, os.O_RDONLY)
    r = Region(fd, 5, 3, name=str(raw_file))
    os.close(fd)  # the region has its own descriptor
    assert bytes(memoryview(r)) == expected(raw_file, 3, 8)
    assert r.fileno() not in (-1, fd) or r.fileno() >= 0
    assert os.fstat(r.fileno()).st_ino == raw_file.stat().st_ino
    r.close()


def test_read_only_region_refuses_writable_buffers(raw_file):
    r = Region.open(raw_file)
    assert r.access == "r" and r.shared
    assert memoryview(r).readonly
    a = np.asarray(r)
    assert not a.flags.writeable
    with pytest.raises(BufferError, match="read-only"):
        get = ctypes.pythonapi.PyObject_GetBuffer
        get.argtypes = [ctypes.py_object, ctypes.c_void_p, ctypes.c_int]
        view = ctypes.create_string_buffer(256)  # room for a Py_buffer
        get(r, ctypes.addressof(view), 1)  # PyBUF_WRITABLE
    assert r.exports == 1  # only the array above; the refused request was not counted
    with pytest.raises(ValueError):
        np.frombuffer(r, dtype=np.uint8).setflags(write=True)
    with pytest.raises((TypeError, BufferError)):
        memoryview(r)[0] = 1


def test_write_access_writes_through_to_the_file(raw_file):
    with Region.open(raw_file, access="w") as r:
        assert r.access == "w" and r.shared
        m = memoryview(r)
        m[5:8] = b"xyz"
        m.release()
        r.flush()
    assert raw_file.read_bytes()[5:8] == b"xyz"


@pytest.mark.parametrize("how", [{"access": "c"}, {"access": "w", "shared": False}])
def test_copy_on_write_never_touches_the_file(raw_file, how):
    before = raw_file.read_bytes()
    with Region.open(raw_file, **how) as r:
        assert r.access == "c" and not r.shared
        m = memoryview(r)
        assert not m.readonly
        m[:4] = b"ABCD"
        assert bytes(m[:4]) == b"ABCD"
        m.release()
        r.flush()
    assert raw_file.read_bytes() == before


def test_exports_are_counted_by_every_zero_copy_consumer(raw_file):
    r = Region.open(raw_file)
    assert r.exports == 0
    m = memoryview(r)
    a = np.frombuffer(r, dtype=np.uint8)
    b = np.asarray(r)
    c = core_ndarray(r, np.uint8, (10,), 3)
    assert r.exports == 4
    assert a.ctypes.data == b.ctypes.data == r.address == c.ctypes.data - 3
    del m, a, b
    gc.collect()
    assert r.exports == 1
    view = c[::2]
    del c
    assert r.exports == 1  # the view keeps its base (and so the export) alive
    del view
    assert r.exports == 0


def test_close_with_live_arrays_is_deferred_until_the_last_one_goes(raw_file):
    r = Region.open(raw_file)
    a = core_ndarray(r, np.uint8, (100,), 0)
    r.close()
    assert r.closed and r.mapped
    # The array still reads valid data after close.
    np.testing.assert_array_equal(a, np.frombuffer(expected(raw_file, 0, 100), np.uint8))
    with pytest.raises(ValueError, match="closed"):
        memoryview(r)
    with pytest.raises(ValueError, match="closed"):
        core_ndarray(r, np.uint8, (1,), 0)
    with pytest.raises(ValueError, match="closed"):
        r.flush()
    with pytest.raises(ValueError, match="closed"):
        r.fileno()
    with pytest.raises(ValueError, match="closed"):
        len(r)
    b = a[10:20]
    del a
    assert r.mapped  # b still uses the memory
    del b
    assert not r.mapped and r.exports == 0
    with pytest.raises(ValueError):
        _ = r.address


def test_close_without_exports_unmaps_at_once_and_is_idempotent(raw_file):
    r = Region.open(raw_file)
    r.close()
    assert r.closed and not r.mapped
    r.close()
    r.close()
    assert "closed" in repr(r)


def test_with_block_closes(raw_file):
    with Region.open(raw_file) as r:
        assert not r.closed
    assert r.closed and not r.mapped
    with pytest.raises(ValueError, match="closed"):
        with r:
            pass


def test_dropping_the_region_before_its_arrays_keeps_them_valid(raw_file):
    r = Region.open(raw_file)
    a = core_ndarray(r, np.uint8, (50,), 1)
    del r
    gc.collect()
    np.testing.assert_array_equal(a, np.frombuffer(expected(raw_file, 1, 51), np.uint8))


def test_region_refcount_is_held_by_arrays_only(raw_file):
    r = Region.open(raw_file)
    base = sys.getrefcount(r)
    arrays = [core_ndarray(r, np.uint8, (4,), 0) for _ in range(10)]
    assert sys.getrefcount(r) == base + 10  # each array's memoryview holds the region
    del arrays
    assert sys.getrefcount(r) == base


def test_anonymous_region_is_zeroed_and_writable():
    r = Region.anonymous(3 * PAGESIZE + 5)
    assert r.access == "w" and r.shared and r.name is None and r.is_anonymous
    assert r.fileno() >= 0  # a memfd, so other processes can map it
    a = np.asarray(r)
    assert a.shape == (3 * PAGESIZE + 5,) and not a.any()
    a[:] = 7
    assert memoryview(r)[3 * PAGESIZE + 4] == 7
    p = Region.anonymous(10, shared=False)
    assert p.access == "c" and not p.shared and p.fileno() == -1
    assert "anonymous" in repr(p) and "anonymous" in repr(r)


def test_zero_length_regions(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    for r in (Region.open(empty), Region.anonymous(0)):
        assert len(r) == 0
        assert np.asarray(r).shape == (0,)
        r.flush()
        r.close()


def test_repr_is_one_useful_line(raw_file):
    r = Region.open(raw_file, 10, 5, access="c")
    text = repr(r)
    assert str(raw_file) in text and "offset=5" in text and "size=10" in text
    assert "access='c'" in text and "private" in text and "\n" not in text


def test_flush_ranges_are_checked(raw_file):
    r = Region.open(raw_file, access="w")
    r.flush()
    r.flush(0, 1)
    r.flush(PAGESIZE + 3, 10, sync=False)
    r.flush(r.size)  # empty range at the end
    for off, size in [(-1, None), (r.size + 1, None), (0, r.size + 1), (r.size - 2, 3), (5, -1)]:
        with pytest.raises(ValueError, match="flush"):
            r.flush(off, size)
    with pytest.raises(OverflowError):
        r.flush(0, 2**70)


# ---- errors -------------------------------------------------------------------


def test_offset_past_end_of_file(raw_file):
    size = raw_file.stat().st_size
    with pytest.raises(ValueError, match=f"past the end of the file \\({size} bytes\\)"):
        Region.open(raw_file, offset=size + 1)
    with Region.open(raw_file, offset=size) as r:  # exactly at the end: empty
        assert len(r) == 0


def test_length_larger_than_file_names_both_sizes(raw_file):
    size = raw_file.stat().st_size
    with pytest.raises(ValueError, match=f"need a file of {size + 5} bytes, but it has {size}"):
        Region.open(raw_file, size, 5)


@pytest.mark.parametrize("kw", [{"length": -1}, {"offset": -1}])
def test_negative_length_or_offset(raw_file, kw):
    with pytest.raises(ValueError, match="non-negative"):
        Region.open(raw_file, **kw)
    with pytest.raises(ValueError, match="non-negative"):
        with open(raw_file, "rb") as f:
            Region(f.fileno(), **kw)


def test_overflowing_lengths(raw_file):
    with pytest.raises(OverflowError):
        Region.open(raw_file, 2**64)
    with pytest.raises(OverflowError):
        Region.anonymous(2**63 - 1)
    with pytest.raises(ValueError, match="non-negative"):
        Region.anonymous(-1)


def test_read_only_descriptor_with_write_access(raw_file):
    with open(raw_file, "rb") as f:
        with pytest.raises(PermissionError, match="reading and writing") as e:
            Region(f.fileno(), access="w", name=str(raw_file))
    assert e.value.errno == 13 and e.value.filename == str(raw_file)
    with open(raw_file, "rb") as f:  # copy-on-write only needs read access
        Region(f.fileno(), access="c").close()


def test_write_only_descriptor_is_refused(raw_file):
    fd = os.open(raw_file, os.O_WRONLY)
    try:
        with pytest.raises(PermissionError):
            Region(fd)
    finally:
        os.close(fd)


def test_directory_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError) as e:
        Region.open(tmp_path)
    assert e.value.filename == str(tmp_path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        Region.open(tmp_path / "nope")
    assert e.value.filename == str(tmp_path / "nope")


def test_closed_descriptor(raw_file):
    fd = os.open(raw_file, os.O_RDONLY)
    os.close(fd)
    with pytest.raises(OSError) as e:
        Region(fd)
    assert e.value.errno == 9
    with pytest.raises(OSError):
        Region(-1)


def test_bad_access_values(raw_file):
    with pytest.raises(ValueError, match="access must be"):
        Region.open(raw_file, access="x")
    with pytest.raises(TypeError, match="access must be"):
        Region.open(raw_file, access=1)


def test_non_regular_file_needs_a_length():
    fd = os.open("/dev/zero", os.O_RDONLY)
    try:
        with pytest.raises(ValueError, match="length is required"):
            Region(fd)
        with Region(fd, 100, access="c") as r:
            assert bytes(memoryview(r)) == bytes(100)
    finally:
        os.close(fd)


def test_ndarray_bounds_are_checked(raw_file):
    r = Region.open(raw_file)
    n = r.size
    with pytest.raises(ValueError, match="does not fit"):
        core_ndarray(r, np.uint8, (n + 1,))
    with pytest.raises(ValueError, match="does not fit"):
        core_ndarray(r, np.uint8, (1,), n)
    with pytest.raises(ValueError, match="does not fit"):
        core_ndarray(r, np.uint8, (1,), -1)
    with pytest.raises(ValueError, match="overflows"):
        core_ndarray(r, np.float64, (2**40, 2**40))
    with pytest.raises(ValueError, match="negative"):
        core_ndarray(r, np.uint8, (-1,))
    with pytest.raises(TypeError, match="objects"):
        core_ndarray(r, object, (1,))
    with pytest.raises(TypeError, match="Region"):
        core_ndarray(b"abc", np.uint8, (1,))
    with pytest.raises(TypeError, match="subclass"):
        core_ndarray(r, np.uint8, (1,), 0, False, int)
    assert core_ndarray(r, np.uint8, (0, 5), n).shape == (0, 5)


def test_mmap_peer_agrees(raw_file):
    """The same bytes through Python's own mmap module (a cross-check of the offsets)."""
    with open(raw_file, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        with Region.open(raw_file, 300, PAGESIZE + 11) as r:
            assert bytes(memoryview(r)) == m[PAGESIZE + 11 : PAGESIZE + 311]
        m.close()


def test_repr_html_calls_the_hook_the_python_layer_set():
    # The C core draws nothing and imports nothing: Region._repr_html_ returns what the
    # function set with _set_repr_html returns, and None (plain repr) while none is set.
    from mmarray import _core

    seen = []

    def stand_in(reg):
        seen.append(reg)
        return "<b>stand-in</b>"

    r = Region.anonymous(PAGESIZE)
    previous = _core._set_repr_html(stand_in)
    try:
        assert callable(previous)  # mmarray's own drawing, set at import
        assert r._repr_html_() == "<b>stand-in</b>"
        assert seen == [r]
        assert _core._set_repr_html(None) is stand_in
        assert r._repr_html_() is None
        with pytest.raises(TypeError, match="callable or None"):
            _core._set_repr_html(42)
        assert r._repr_html_() is None  # a refused value leaves the hook as it was
    finally:
        _core._set_repr_html(previous)
    assert "<svg" in r._repr_html_()
    r.close()


def test_flush_holds_the_mapping_against_a_concurrent_close(tmp_path):
    """#13: flush() ran msync without the GIL and without an export, so a close() in
    another thread unmapped under it (OSError ENOMEM) or freed the descriptor that
    fdatasync then used.  Now the flush holds an export and a descriptor of its own: it
    either finishes or, if close() came first, raises ValueError."""
    import threading
    import time

    path = tmp_path / "f.bin"
    path.write_bytes(bytes(4 << 20))
    errors: list[BaseException] = []
    deadline = time.monotonic() + 3.0
    rounds = 0
    while time.monotonic() < deadline or rounds < 50:
        r = Region.open(path, access="w")
        with memoryview(r) as m:
            m[::PAGESIZE] = b"\x01" * len(m[::PAGESIZE])  # dirty every page
        start = threading.Barrier(2)

        def flusher(r: Region = r, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                r.flush()
            except ValueError:
                pass  # closed before the flush began: the documented refusal
            except BaseException as e:  # noqa: BLE001 - the test reports it
                errors.append(e)

        t = threading.Thread(target=flusher)
        t.start()
        start.wait()
        time.sleep(rounds % 7 * 1e-5)
        r.close()
        t.join(10)
        assert not t.is_alive()
        rounds += 1
    assert errors == [], errors[:3]
    assert path.read_bytes()[: PAGESIZE + 1] == b"\x01" + bytes(PAGESIZE - 1) + b"\x01"


def test_dup_owns_a_descriptor_of_the_same_file(raw_file):
    """#13: dup() is what to act on instead of fileno()'s bare number."""
    import fcntl

    r = Region.open(raw_file)
    fd = r.dup()
    try:
        assert fd != r.fileno()
        assert os.fstat(fd).st_ino == os.stat(raw_file).st_ino
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        r.close()
        assert os.pread(fd, 4, 0) == raw_file.read_bytes()[:4]  # still ours after close()
    finally:
        os.close(fd)
    with pytest.raises(ValueError, match="closed"):
        r.dup()
    with pytest.raises(ValueError, match="private anonymous memory has no file descriptor"):
        Region.anonymous(10, shared=False).dup()
    shm = Region.anonymous(10)
    fd = shm.dup()
    try:
        assert os.fstat(fd).st_size == 10
    finally:
        os.close(fd)
