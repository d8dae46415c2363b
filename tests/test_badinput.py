"""Bad input: corrupt .npy headers, and one regression test per bug the fuzz found.

Each ``test_bug_*`` is named after the bug it pins (the fuzz in tests/fuzz/ found them).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import mmarray
from mmarray import _grow, _harness

# ---- corrupt .npy headers: a ValueError naming the file, never a mapping past its end -------


def npy_header(text: str, version: tuple[int, int] = (1, 0)) -> bytes:
    """A .npy prefix and header of this dict text, padded as numpy pads it."""
    body = text.encode("utf8" if version[0] == 3 else "latin1")
    start = 10 if version[0] == 1 else 12
    body += b" " * ((64 - (start + len(body) + 1) % 64) % 64) + b"\n"
    width = 2 if version[0] == 1 else 4
    return b"\x93NUMPY" + bytes(version) + len(body).to_bytes(width, "little") + body


def header_dict(descr: str = "'<f8'", fortran: str = "False", shape: str = "(6,)") -> str:
    return f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"


DATA = np.arange(6.0).tobytes()
GOOD = npy_header(header_dict()) + DATA
V3 = npy_header(header_dict(), (3, 0))
CORRUPT = {
    "bad magic": b"\x93NUMPX" + GOOD[6:],
    "empty file": b"",
    "magic only": GOOD[:6],
    "version 0.0": GOOD[:6] + b"\x00\x00" + GOOD[8:],
    "version 1.5": GOOD[:6] + b"\x01\x05" + GOOD[8:],
    "version 4.0": GOOD[:6] + b"\x04\x00" + GOOD[8:],
    "truncated prefix": GOOD[:9],
    "truncated header": GOOD[:40],
    "header longer than the file": GOOD[:8] + (len(GOOD)).to_bytes(2, "little") + GOOD[10:],
    "v2 header length 4 GiB": npy_header(header_dict(), (2, 0))[:8] + b"\xff" * 4 + DATA,
    "header length 0": GOOD[:8] + b"\x00\x00" + GOOD[10:],
    "unclosed brace": npy_header("{"),  # numpy's tokenizer raises TokenError here
    "not a dict": npy_header("[1, 2, 3]") + DATA,
    "a call": npy_header("__import__('os').getpid()") + DATA,
    "missing key": npy_header("{'descr': '<f8', 'shape': (6,)}") + DATA,
    "extra key": npy_header(header_dict()[:-1] + "'x': 1}") + DATA,
    "unknown dtype": npy_header(header_dict(descr="'<q9'")) + DATA,
    "dtype too big": npy_header(header_dict(descr="'|V1099511627776'")) + DATA,
    "object dtype": npy_header(header_dict(descr="'|O'")) + DATA,
    "object field": npy_header(header_dict(descr="[('a', '|O')]")) + DATA,
    "fortran_order garbage": npy_header(header_dict(fortran="'yes'")) + DATA,
    "fortran_order 1": npy_header(header_dict(fortran="1")) + DATA,
    "shape not a tuple": npy_header(header_dict(shape="[6]")) + DATA,
    "shape of floats": npy_header(header_dict(shape="(6.0,)")) + DATA,
    "shape of bools": npy_header(header_dict(shape="(True,)")) + DATA,
    "negative dimension": npy_header(header_dict(shape="(-1, 6)")) + DATA,
    "huge dimension": npy_header(header_dict(shape=f"({2**70},)")) + DATA,
    "zero times huge": npy_header(header_dict(shape=f"(0, {2**70})")) + DATA,
    "size overflows": npy_header(header_dict(shape=f"(0, {2**62}, {2**62})")) + DATA,
    "65 dimensions": npy_header(header_dict(shape="(" + "1, " * 65 + ")")) + DATA,
    "shape larger than the data": npy_header(header_dict(shape="(7,)")) + DATA,
    "data one byte short": npy_header(header_dict()) + DATA[:-1],
    "bad utf-8 in a 3.0 header": V3[:20] + b"\xff" + V3[21:] + DATA,
}  # fmt: skip


@pytest.mark.parametrize("name", list(CORRUPT))
@pytest.mark.parametrize("mode", ["r", "r+", "c"])
def test_corrupt_npy_header_is_a_value_error_naming_the_file(tmp_path, name, mode):
    path = tmp_path / "bad.npy"
    path.write_bytes(CORRUPT[name])
    with pytest.raises(ValueError) as ei:
        mmarray.open(path, mode)
    assert str(path) in str(ei.value)
    assert path.read_bytes() == CORRUPT[name]  # untouched, whatever the mode
    with pytest.raises(Exception):  # noqa: B017 - numpy refuses it too (whatever the type)
        np.load(path, allow_pickle=False)


@pytest.mark.parametrize("name", list(CORRUPT))
def test_corrupt_header_of_named_memory_is_a_value_error_naming_it(name):
    shm = f"mmarray-test-bad-{os.getpid()}"
    path = "/dev/shm/" + shm
    with open(path, "wb") as f:
        f.write(CORRUPT[name])
    os.chmod(path, 0o600)  # as named() makes it: a group-writable one is refused first
    try:
        with pytest.raises(ValueError, match=path):
            mmarray.named(shm)
    finally:
        os.unlink(path)


def test_good_headers_of_every_version_still_open(tmp_path):
    for version in ((1, 0), (2, 0), (3, 0)):
        path = tmp_path / f"v{version[0]}.npy"
        path.write_bytes(npy_header(header_dict(), version) + DATA)
        np.testing.assert_array_equal(mmarray.open(path), np.arange(6.0))
        path.write_bytes(npy_header(header_dict(), version) + DATA + b"trailing bytes")
        np.testing.assert_array_equal(mmarray.open(path), np.arange(6.0))


@pytest.mark.parametrize("mode", ["r", "c"])
def test_memmap_bigger_than_its_file_is_a_value_error_naming_it(tmp_path, mode):
    path = tmp_path / "small.dat"
    path.write_bytes(bytes(10))
    with pytest.raises(ValueError, match=f"{path}.*greater than file size"):
        mmarray.memmap(path, dtype="u1", mode=mode, shape=(11,))
    with pytest.raises(ValueError, match=f"{path}.*greater than file size"):
        mmarray.memmap(path, dtype="u1", mode=mode, shape=(2,), offset=9)
    assert path.stat().st_size == 10


# ---- open, create, anonymous, memmap ---------------------------------------------------------


def test_bug_zero_byte_dtype_without_shape_was_zero_division_error(tmp_path):
    path = tmp_path / "r.bin"
    path.write_bytes(bytes(16))
    for dt in ("V0", np.dtype([]), "S0"):
        with pytest.raises(ValueError, match="item size is 0"):
            mmarray.open(path, dtype=dt)
        with pytest.raises(ValueError, match="item size is 0"):
            mmarray.memmap(path, dtype=dt, mode="r")
    assert mmarray.open(path, dtype="V0", shape=(3,)).shape == (3,)


def test_bug_create_with_a_bytes_path_ending_in_npy_wrote_no_header(tmp_path):
    path = os.fsencode(tmp_path / "b.npy")
    a = mmarray.create(path, 3, "i2", fill=7)
    assert mmarray.region(a).name == path
    np.testing.assert_array_equal(np.load(os.fsdecode(path)), [7, 7, 7])


def test_bug_create_with_a_bytes_path_and_exist_ok_was_type_error(tmp_path):
    path = os.fsencode(tmp_path / "b.npy")
    mmarray.create(path, 3, "i2", fill=1)
    mmarray.create(path, 4, "i2", fill=2, exist_ok=True)
    np.testing.assert_array_equal(np.load(os.fsdecode(path)), [2, 2, 2, 2])
    assert os.listdir(tmp_path) == ["b.npy"]


def test_bug_create_exist_ok_replaced_a_fifo_or_device(tmp_path):
    # as root, the fuzz once replaced /dev/null with a regular file this way
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        mmarray.create(fifo, 3, "u1", exist_ok=True)
    assert os.path.exists(fifo) and not os.path.isfile(fifo)
    with pytest.raises(OSError):
        mmarray.create(tmp_path, 3, "u1", exist_ok=True)  # a directory
    assert sorted(os.listdir(tmp_path)) == ["fifo"]


def test_bug_create_with_a_subarray_dtype_wrote_a_header_that_disagreed(tmp_path):
    path = tmp_path / "s.npy"
    a = mmarray.create(path, (2,), ("<u2", (3,)), fill=5)
    assert a.shape == (2, 3) and a.dtype == np.uint16
    b = np.load(path)
    assert b.shape == (2, 3) and b.dtype == np.uint16
    np.testing.assert_array_equal(b, np.full((2, 3), 5))
    c = mmarray.anonymous(4, ("f4", (2, 2)))
    assert c.shape == (4, 2, 2) and c.dtype == np.float32


def test_bug_create_ignored_a_zero_fill_that_does_not_broadcast(tmp_path):
    for fill in (np.zeros(3), np.zeros((2, 1, 2)), [0, 0, 0]):
        with pytest.raises(ValueError, match="broadcast"):
            mmarray.create(tmp_path / "f.raw", (2, 2), "f8", fill=fill)
        with pytest.raises(ValueError, match="broadcast"):
            mmarray.create(tmp_path / "z.raw", (2, 2), "V0", fill=np.zeros(3, "V0"))
    assert os.listdir(tmp_path) == []
    a = mmarray.create(tmp_path / "ok.raw", (2, 2), "f8", fill=np.zeros((1, 1, 2)))
    assert a.shape == (2, 2) and not a.any()  # numpy drops leading length-1 dimensions


def test_bug_too_big_shapes_raised_overflow_error_from_syscalls(tmp_path):
    with pytest.raises(ValueError, match="too big|too large"):
        mmarray.create(tmp_path / "h.raw", (2**40, 2**40), "u1")
    with pytest.raises(ValueError, match="too big|too large"):
        mmarray.anonymous((2**40, 2**40), "u1")
    with pytest.raises(ValueError, match="too big|too large"):
        mmarray.named(f"mmarray-test-big-{os.getpid()}", (2**40, 2**40), "u1", create=True)
    assert os.listdir(tmp_path) == []


def test_bug_memmap_of_zero_byte_items_with_a_huge_dimension_did_not_name_the_file(tmp_path):
    p = tmp_path / "z.dat"
    p.write_bytes(b"12345678")
    for shape in [(2**70,), (0, 2**70)]:  # zero bytes, so no size check caught it
        with pytest.raises(ValueError, match=f"{p}: dimension {2**70} of shape .* too large"):
            mmarray.memmap(p, dtype="V0", mode="r+", shape=shape)
    assert p.read_bytes() == b"12345678"


def test_bug_open_npy_ignored_a_bad_order(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.arange(3))
    with pytest.raises(ValueError, match="order"):
        mmarray.open(path, order="X")


def test_bug_region_messages_ended_in_none_without_a_name(tmp_path):
    path = tmp_path / "r.bin"
    path.write_bytes(bytes(16))
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(ValueError) as ei:
            mmarray.Region(fd, 0, 17)
        assert str(ei.value) == "offset 17 is past the end of the file (16 bytes)"
        with pytest.raises(ValueError) as ei:  # no signed overflow in offset + length
            mmarray.Region(fd, 2**63 - 1, 5, name="n")
        assert "need a file of 9223372036854775812 bytes" in str(ei.value)
        assert str(ei.value).endswith(": 'n'")
    finally:
        os.close(fd)


def test_bug_memmap_errors_did_not_name_the_file(tmp_path):
    path = tmp_path / "e.dat"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=f"{path}: cannot mmap an empty file"):
        mmarray.memmap(path, mode="r")
    path.write_bytes(bytes(5))
    with pytest.raises(ValueError, match=f"{path}: Size of available data"):
        mmarray.memmap(path, dtype="i4", mode="r")


def test_bug_memmap_offset_past_the_end_without_shape(tmp_path):
    # numpy makes a shape of (-1,) items of it; mmarray says what is wrong
    path = tmp_path / "e.dat"
    path.write_bytes(bytes(4))
    for mode in ("r", "r+", "c"):
        with pytest.raises(ValueError, match="offset 9 is past the end of the file"):
            mmarray.memmap(path, mode=mode, offset=9)
    assert path.stat().st_size == 4


def test_bug_memmap_refused_orders_numpy_memmap_accepts(tmp_path):
    path = tmp_path / "o.dat"
    path.write_bytes(bytes(range(6)))
    for order in ("K", "A", None, "c", "f"):
        m = mmarray.memmap(path, mode="r", shape=(2, 3), order=order)
        ref = np.memmap(path, mode="r", shape=(2, 3), order=order)
        np.testing.assert_array_equal(m, ref)
        assert m.flags.f_contiguous == ref.flags.f_contiguous
    with pytest.raises(ValueError, match="order"):
        mmarray.memmap(path, mode="r", shape=(2, 3), order="x")
    with pytest.raises(TypeError, match="order"):
        mmarray.memmap(path, mode="r", shape=(2, 3), order=1)


FIFO_CALLS = {
    "open": "mmarray.open(p, dtype='u1')",
    "open r+": "mmarray.open(p, 'r+', dtype='u1')",
    "Region.open": "mmarray.Region.open(p)",
    "memmap": "mmarray.memmap(p, mode='r')",
    "extents": "mmarray.extents(p)",
    "evict": "mmarray.evict(p)",
}


@pytest.mark.parametrize("call", list(FIFO_CALLS))
def test_bug_a_fifo_path_blocked_forever(tmp_path, call):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code = textwrap.dedent(f"""
        import mmarray
        p = {str(fifo)!r}
        try:
            {FIFO_CALLS[call]}
        except (ValueError, OSError) as e:
            print("refused:", type(e).__name__, e)
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    ).stdout  # a hang raises TimeoutExpired
    assert out.startswith("refused:") and str(fifo) in out, out


def test_bug_anonymous_and_open_raised_overflow_error_for_unmappable_sizes():
    with pytest.raises(ValueError, match="too big|too large"):
        mmarray.anonymous((2**63 - 1, 2), "u1")


# ---- statistics ----------------------------------------------------------------------------


def test_bug_map_chunks_workers_zero_used_every_cpu():
    a = np.arange(10)
    with pytest.raises(ValueError, match="workers"):
        mmarray.map_chunks(np.sum, a, workers=0)
    with pytest.raises(TypeError):
        mmarray.map_chunks(np.sum, a, workers=1.5)
    with pytest.raises(TypeError):
        mmarray.map_chunks(np.sum, a, chunk=1.5)
    with pytest.raises(ValueError, match="workers"):
        mmarray.map_chunks(np.sum, a[:0], workers=-1)  # even with nothing to do
    assert mmarray.map_chunks(np.sum, a, chunk=4, workers=2**40) == [6, 22, 17]


FALLBACKS = {  # inputs the kernels hand to numpy
    "object": np.arange(5).astype(object),
    "complex": np.arange(5) + 1j,
    "byte-swapped": np.arange(5, dtype=">f8"),
    "empty": np.zeros(0),
}


@pytest.mark.parametrize("kind", list(FALLBACKS))
@pytest.mark.parametrize("func", ["median", "nanmedian", "quantile", "percentile"])
def test_bug_workers_were_not_checked_on_numpy_fallbacks(kind, func):
    a = FALLBACKS[kind]
    args = (a,) if "median" in func else (a, 50 if "percentile" in func else 0.5)
    for bad, exc in ((0, ValueError), (-1, ValueError), (1.5, TypeError), ("2", TypeError)):
        with pytest.raises(exc, match="workers|integer"):
            getattr(mmarray, func)(*args, workers=bad)


def test_bug_huge_workers_raised_overflow_error_in_median_only():
    a = np.arange(1001.0)
    for f in (mmarray.median, mmarray.nanmedian):
        assert f(a, workers=2**40) == 500.0
    assert mmarray.quantile(a, 0.5, workers=2**70) == 500.0
    assert mmarray.median_estimate(a, chunk=100, workers=2**40) == np.median(
        [np.median(a[i : i + 100]) for i in range(0, 1001, 100)]
    )


def test_bug_median_estimate_started_a_thread_per_chunk(monkeypatch):
    # it ran one Python call per chunk (in a pool of up to `workers` threads): chunk=1
    # over a million elements took minutes; now the chunks are the lanes of one call
    calls = []
    real = _harness.select

    def counting(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(_harness, "select", counting)
    before = threading.active_count()
    a = np.arange(5003.0)[::-1]
    got = mmarray.median_estimate(a, chunk=1, workers=10**6)
    assert got == np.median(a)  # chunks of one value: the estimate is exact
    assert len(calls) <= 3  # whole chunks, the tail chunk, the median of medians
    calls.clear()
    b = np.arange(60.0).reshape(20, 3)
    want = np.median([np.median(b[i : i + 3]) for i in range(0, 20, 3)])
    assert mmarray.median_estimate(b, chunk=10, workers=100) == want
    assert len(calls) <= 3
    assert threading.active_count() == before


@pytest.mark.parametrize(
    "kind,func",
    [(k, f) for k in ("object", "byte-swapped") for f in ("median", "quantile", "nanpercentile")]
    + [("complex", "median"), ("complex", "nanmedian")],
)
def test_bug_overwrite_input_modified_the_input_on_numpy_fallbacks(kind, func):
    a = FALLBACKS[kind][::-1].copy()
    before = a.copy()
    args = (a,) if "median" in func else (a, 0.3 if "quantile" in func else 30)
    want = getattr(np, func)(before.copy(), *args[1:])
    got = getattr(mmarray, func)(*args, overwrite_input=True)
    np.testing.assert_array_equal(a, before)  # "the input is never modified"
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("func", ["nanquantile", "nanpercentile", "quantile"])
@pytest.mark.parametrize("axis", [0, 1, None, (0, 1)])
def test_bug_nanquantile_of_integers_with_no_quantiles_raised_index_error(func, axis):
    a = np.arange(6, dtype="i2").reshape(2, 3)
    got = getattr(mmarray, func)(a, [], axis=axis)
    want = getattr(np, func)(a, [], axis=axis)
    assert got.shape == want.shape and got.dtype == want.dtype


def test_bug_empty_q_of_two_dimensions_was_accepted_where_numpy_raises():
    a = np.arange(6.0)
    for q in (np.zeros((0, 2)), np.zeros((2, 0))):
        with pytest.raises(ValueError) as ours:
            mmarray.quantile(a, q)
        with pytest.raises(ValueError) as theirs:
            np.quantile(a, q)
        assert str(ours.value) == str(theirs.value)


# ---- pages, grow ---------------------------------------------------------------------------


def test_bug_page_functions_refused_bytes_paths(tmp_path):
    path = tmp_path / "p.raw"
    a = mmarray.create(path, 4096, "u1", fill=1)
    mmarray.region(a).flush()
    b = os.fsencode(path)
    assert mmarray.disk_usage(b) == mmarray.disk_usage(path)
    assert mmarray.extents(b) == mmarray.extents(path)
    del a  # unmapped first, so that evict drops every page and has nothing to warn about
    mmarray.evict(b)


def test_bug_extents_of_a_directory_returned_a_data_range(tmp_path):
    with pytest.raises(IsADirectoryError):
        mmarray.extents(tmp_path)


def test_bug_page_functions_accepted_empty_views_of_a_closed_region():
    a = mmarray.anonymous(4096, "u1")
    mmarray.region(a).close()
    for call in (
        lambda: mmarray.advise(a[:0], "normal"),
        lambda: mmarray.prefetch(a[:0]),
        lambda: mmarray.evict(a[:0]),
        lambda: mmarray.residency(a[:0]),
        lambda: mmarray.advise(a, "normal"),
    ):
        with pytest.raises(ValueError, match="closed"):
            call()


def test_bug_grow_to_a_shape_numpy_cannot_make_corrupted_the_header(tmp_path):
    path = tmp_path / "g.npy"
    a = mmarray.create(path, (3, 0), "u1")
    before = path.read_bytes()
    for n in (2**70, 2**63 - 3):
        with pytest.raises(ValueError, match="cannot grow"):
            mmarray.grow(a, n)
        assert path.read_bytes() == before
        assert np.load(path).shape == (3, 0)


def test_bug_grow_left_a_grown_file_when_the_new_mapping_failed(tmp_path, monkeypatch):
    path = tmp_path / "g.npy"
    a = mmarray.create(path, (3, 2), "i4", fill=4)
    before = path.read_bytes()

    def no_array(*args, **kwargs):
        raise OSError(errno.ENOMEM, "mmap: Cannot allocate memory")

    monkeypatch.setattr(_grow, "_ndarray", no_array)
    with pytest.raises(OSError, match="Cannot allocate"):
        mmarray.grow(a, 5)
    assert path.read_bytes() == before  # size and header as they were
    np.testing.assert_array_equal(np.load(path), np.full((3, 2), 4))


# ---- named memory, references, locks ----------------------------------------------------------


def test_bug_shared_names_over_255_bytes_raised_os_error():
    for name in ("é" * 200, "日" * 90):  # at most 250 characters, but over 255 bytes
        with pytest.raises(ValueError, match="255 bytes"):
            mmarray.named(name, 1, "u1", create=True)
        with pytest.raises(ValueError, match="255 bytes"):
            mmarray.unlink(name)


def test_bug_shared_attach_errors_did_not_name_the_object():
    name = f"mmarray-test-noheader-{os.getpid()}"
    with open("/dev/shm/" + name, "wb") as f:
        f.write(b"\x00\x01\x01" + bytes(100))  # byte 6 looks like a version
    os.chmod("/dev/shm/" + name, 0o600)  # under any umask: only its header is wrong
    try:
        with pytest.raises(ValueError, match=f"/dev/shm/{name}: not mmarray shared memory"):
            mmarray.named(name)
    finally:
        os.unlink("/dev/shm/" + name)


def test_bug_lock_with_a_nan_timeout_could_wait_forever():
    a = mmarray.anonymous(8, "u1")
    for bad in (float("nan"), -1, -0.5):
        with pytest.raises(ValueError, match="timeout"), mmarray.lock(a, timeout=bad):
            pass
    with pytest.raises(TypeError, match="timeout"), mmarray.lock(a, timeout="1"):
        pass
    with mmarray.lock(a, timeout=float("inf")):
        pass


def forged(ref: mmarray.ArrayRef, **changes) -> mmarray.ArrayRef:
    fields = dict(zip(mmarray.ArrayRef.__slots__, ref._fields(), strict=True))
    fields.update(changes)
    return mmarray.ArrayRef(*fields.values())


def test_bug_a_forged_empty_reference_returned_uninitialised_memory(tmp_path):
    a = mmarray.create(tmp_path / "r.raw", 16, "f8")
    ref = mmarray.share(a)
    # a reference to no bytes that claims a million elements used to come back as
    # np.ndarray(shape) without a buffer: fresh, uninitialised memory
    with pytest.raises(ValueError, match="does not lie inside"):
        forged(ref, length=0, shape=(10**6,), strides=(8,)).open()
    empty = forged(ref, length=0, shape=(0,), writeable=False).open()
    assert empty.shape == (0,) and not empty.flags.writeable


@pytest.mark.parametrize(
    "changes,exc",
    [
        ({"kind": "socket"}, ValueError),
        ({"path": 3}, TypeError),
        ({"offset": -1}, ValueError),
        ({"length": -8}, ValueError),
        ({"data_offset": -1}, ValueError),
        ({"device": "x"}, TypeError),
        ({"dtype": np.dtype(object)}, TypeError),
        ({"dtype": np.dtype([("a", "O")])}, TypeError),
        ({"dtype": "f8"}, TypeError),
        ({"writeable": "yes"}, TypeError),
        ({"data_offset": 8}, ValueError),  # the last element past the referenced bytes
        ({"strides": (16,)}, ValueError),
        ({"strides": (-8,)}, ValueError),
        ({"shape": (17,)}, ValueError),
        ({"shape": (2, 8)}, ValueError),  # two dimensions, one stride
        ({"inode": 1}, OSError),
    ],
)
def test_bug_forged_references_were_not_checked(tmp_path, changes, exc):
    a = mmarray.create(tmp_path / "r.raw", 16, "f8", fill=1)
    ref = mmarray.share(a)
    with pytest.raises(exc):
        forged(ref, **changes).open()
    np.testing.assert_array_equal(ref.open(), a)  # the real one still opens


def test_bug_npy_3_0_field_names_were_decoded_as_latin_1(tmp_path):
    a = np.zeros(3, dtype=[("é", "<f8"), ("日", "u1")])
    path = tmp_path / "u.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array(f, a, version=(3, 0))
    b = mmarray.open(path)
    assert b.dtype.names == ("é", "日") and b.dtype == np.load(path).dtype


CRASHERS = {
    # numpy infers a -1 dimension by dividing by the item size: SIGFPE for 0-byte items
    "forged ArrayRef": """
        a = mmarray.anonymous(16, "u1")
        f = dict(zip(mmarray.ArrayRef.__slots__, mmarray.share(a).__reduce__()[1]))
        f.update(shape=(-1,), strides=None, dtype=np.dtype("V0"))
        mmarray.ArrayRef(*f.values()).open()
    """,
    "memmap": """
        open(p, "wb").write(b"abc")
        mmarray.memmap(p, dtype="V0", mode="r", shape=-1)  # np.memmap dies here
    """,
    "open": """
        open(p, "wb").write(b"abc")
        mmarray.open(p, dtype="V0", shape=-1)
    """,
}


@pytest.mark.parametrize("case", list(CRASHERS))
def test_bug_a_negative_shape_of_zero_byte_items_killed_the_process(tmp_path, case):
    """A forged ArrayRef did (SIGFPE in numpy); memmap and open must keep refusing it."""
    code = "import numpy as np, mmarray\np = {!r}\ntry:\n{}\nexcept ValueError as e:\n"
    code = code.format(
        str(tmp_path / "f"), textwrap.indent(textwrap.dedent(CRASHERS[case]), "    ")
    )
    code += "    print('refused:', e)\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"status {run.returncode}: {run.stderr}"
    assert run.stdout.startswith("refused:") and "negative" in run.stdout, run.stdout
