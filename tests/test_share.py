"""Sharing between processes: references through multiprocessing, share/ArrayRef, COW."""

from __future__ import annotations

import errno
import gc
import multiprocessing as mp
import os
import pickle
from multiprocessing.reduction import ForkingPickler

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

import mmarray

START_METHODS = ["fork", "spawn", "forkserver"]


def fp_roundtrip(a):
    """What multiprocessing does to an argument: ForkingPickler out, pickle.loads in."""
    data = bytes(ForkingPickler.dumps(a))
    return data, pickle.loads(data)


@pytest.fixture
def npy_file(tmp_path):
    path = tmp_path / "a.npy"
    a = mmarray.create(path, (64, 48), "i4")
    a[...] = np.arange(a.size, dtype="i4").reshape(a.shape)
    return path


def _sources(tmp_path):
    """One writable array of each shareable kind, filled with 0..n-1."""
    f = mmarray.create(tmp_path / "f.raw", (40, 30), "f8")
    m = mmarray.anonymous((40, 30), "f8")
    out = [("file", f), ("memfd", m)]
    for _, a in out:
        a[...] = np.arange(a.size).reshape(a.shape)
    return out


VIEWS = {
    "whole": lambda a: a,
    "slice": lambda a: a[3:17, 2:9],
    "steps": lambda a: a[1::3, ::4],
    "reversed": lambda a: a[::-1],
    "reversed2": lambda a: a[::-2, ::-3],
    "transpose": lambda a: a.T,
    "reshape": lambda a: a.reshape(30, 40),
    "dtype": lambda a: a.view("u1")[5:9, 7:200:3],
    "column": lambda a: a[:, 5],
    "scalar-ish": lambda a: a[4:5, 6:7],
}


# ---- in-process: what travels, and what arrives ---------------------------------------


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_views_travel_by_reference_and_alias(tmp_path, view):
    for kind, src in _sources(tmp_path):
        v = VIEWS[view](src)
        data, w = fp_roundtrip(v)
        assert len(data) < 1024, (kind, len(data))
        assert w.shape == v.shape and w.strides == v.strides and w.dtype == v.dtype
        assert w.flags.writeable
        np.testing.assert_array_equal(w, v)
        assert mmarray.region(w) is not mmarray.region(v)
        # writes are seen both ways: the two arrays are the same pages
        w.flat[0] = 99
        assert v.flat[0] == 99
        v.flat[-1] = 77
        assert w.flat[-1] == 77


def test_plain_pickle_stays_by_value(tmp_path):
    for _, src in _sources(tmp_path):
        data = pickle.dumps(src)
        assert len(data) > src.nbytes
        back = pickle.loads(data)
        back[0, 0] = -1
        assert src[0, 0] == 0


def test_private_and_plain_arrays_travel_by_value(npy_file):
    cow = mmarray.open(npy_file, "c")
    private = mmarray.anonymous((64, 48), "i4", shared=False)
    plain = np.arange(64 * 48, dtype="i4").reshape(64, 48)
    for a in (cow, private, plain):
        data, b = fp_roundtrip(a)
        assert len(data) > a.nbytes
        np.testing.assert_array_equal(a, b)
        b[0, 0] = 12345
        assert a[0, 0] != 12345
    assert np.array_equal(mmarray.open(npy_file)[0], np.arange(48))


def test_read_only_arrives_read_only_and_writable_arrives_writable(npy_file):
    ro = mmarray.open(npy_file, "r")
    _, b = fp_roundtrip(ro[2:5])
    assert not b.flags.writeable
    with pytest.raises(ValueError):
        b[0, 0] = 1
    rw = mmarray.open(npy_file, "r+")
    view = rw[2:5]
    view.flags.writeable = False  # a read-only view of a writable mapping stays read-only
    _, c = fp_roundtrip(view)
    assert not c.flags.writeable
    _, d = fp_roundtrip(rw[2:5])
    assert d.flags.writeable


def test_memmap_subclass_travels_by_reference(tmp_path):
    fn = tmp_path / "m.dat"
    m = mmarray.memmap(fn, dtype="i2", mode="w+", shape=(100, 10))
    data, back = fp_roundtrip(m[10:20])
    assert len(data) < 1024
    assert type(back) is mmarray.memmap and back.filename == m.filename
    back[0, 0] = 5
    assert m[10, 0] == 5
    back.flush()


def test_empty_and_closed_region_arrays_travel_by_value(tmp_path):
    a = mmarray.anonymous((0, 3), "f4")
    _, b = fp_roundtrip(a)
    assert b.shape == (0, 3) and b.dtype == np.float32
    f = mmarray.create(tmp_path / "c.raw", 100, "u1", fill=3)
    mmarray.region(f).close()  # the array stays usable; the region has no descriptor now
    data, g = fp_roundtrip(f)
    assert len(data) > 100 and (g == 3).all()


@settings(max_examples=60)
@given(
    data=st.data(),
    shape=st.lists(st.integers(1, 7), min_size=1, max_size=3),
    dtype=st.sampled_from(["u1", "i2", ">i4", "f8", "c16", [("a", "u1"), ("b", "<f4")]]),
)
def test_any_view_round_trips(tmp_path_factory, data, shape, dtype):
    dt = np.dtype(dtype)
    base = mmarray.anonymous(shape, dt)
    base.view("u1")[...] = (
        np.arange(base.nbytes, dtype=np.uint64).astype("u1").reshape(base.view("u1").shape)
    )
    index = tuple(
        slice(
            data.draw(st.none() | st.integers(-n, n)),
            data.draw(st.none() | st.integers(-n, n)),
            data.draw(st.sampled_from([None, 1, 2, -1, -2, 3])),
        )
        for n in shape
    )
    v = base[index]
    if data.draw(st.booleans()):
        v = v.T
    _, w = fp_roundtrip(v)
    assert w.shape == v.shape and w.dtype == v.dtype
    assert w.strides == v.strides or v.size == 0  # empty arrays travel by value
    assert w.tobytes() == v.tobytes()
    if v.size:
        idx = (0,) * w.ndim
        w[idx] = np.zeros((), dt)
        assert v[idx].tobytes() == bytes(dt.itemsize)


# ---- share() / ArrayRef ---------------------------------------------------------------


def test_share_file_ref_is_small_and_opens(npy_file):
    a = mmarray.open(npy_file, "r+")
    ref = mmarray.share(a[::-2, 3:40:5])
    assert len(pickle.dumps(ref)) < 1024
    ref2 = pickle.loads(pickle.dumps(ref))
    assert ref2 == ref and hash(ref2) == hash(ref) and "ArrayRef" in repr(ref)
    b = ref2.open()
    np.testing.assert_array_equal(b, a[::-2, 3:40:5])
    b[0, 0] = -5
    assert a[-1, 3] == -5
    with pytest.raises(AttributeError):
        ref.shape = (1,)


def test_share_follows_a_renamed_file(npy_file, tmp_path):
    a = mmarray.open(npy_file, "r+")
    os.rename(npy_file, tmp_path / "renamed.npy")
    ref = mmarray.share(a)
    assert ref.path.endswith("renamed.npy")
    assert (ref.open() == a).all()


def test_share_refuses_private_and_plain(npy_file):
    for a in (mmarray.open(npy_file, "c"), np.zeros(3), mmarray.anonymous(3, "u1", shared=False)):
        with pytest.raises(ValueError, match="shareable"):
            mmarray.share(a)
    with pytest.raises(TypeError):
        mmarray.share([1, 2])


def test_ref_to_a_replaced_file_raises(npy_file, tmp_path):
    a = mmarray.open(npy_file, "r")
    ref = mmarray.share(a)
    other = tmp_path / "other.npy"
    np.save(other, np.zeros((64, 48), "i4"))
    os.replace(other, npy_file)
    with pytest.raises(OSError, match="replaced") as ei:
        ref.open()
    assert ei.value.errno == errno.ESTALE


def test_ref_to_a_truncated_file_raises(tmp_path):
    path = tmp_path / "t.raw"
    a = mmarray.create(path, 4 * 4096, "u1", fill=1)
    ref = mmarray.share(a[8192:])
    os.truncate(path, 4096)
    with pytest.raises(OSError, match="truncated") as ei:
        ref.open()
    assert ei.value.errno == errno.ESTALE


def test_ref_to_a_deleted_file_raises(npy_file):
    a = mmarray.open(npy_file, "r")
    ref = mmarray.share(a)
    os.unlink(npy_file)
    with pytest.raises(FileNotFoundError, match="deleted"):
        ref.open()
    # through multiprocessing a deleted file still travels: by descriptor
    data, b = fp_roundtrip(a)
    assert len(data) < 1024 and (b == a).all()


def test_anonymous_ref_names_the_process_descriptor():
    a = mmarray.anonymous(1000, "i8")
    ref = mmarray.share(a[10:20])
    assert ref.kind == "fd" and ref.path.startswith(f"/proc/{os.getpid()}/fd/")
    b = ref.open()
    b[:] = 3
    assert (a[10:20] == 3).all() and a[9] == 0 and a[20] == 0
    mmarray.region(a).close()  # no descriptor left: the reference cannot be opened any more
    with pytest.raises(FileNotFoundError):
        ref.open()


# ---- real processes -------------------------------------------------------------------


def _child_checks(arrays, expected, out, back):
    """In the child: check contents and flags, write 1 + index into each writable array,
    then wait for the parent's writes and report what it sees."""
    res = []
    for a, (e, strides) in zip(arrays, expected, strict=True):
        ok = a.shape == e.shape and a.strides == strides and np.array_equal(a, e)
        res.append((ok, bool(a.flags.writeable), mmarray.region(a) is not None))
    for i, a in enumerate(arrays):  # (m.T and the u1 view overlap: write after checking)
        if a.flags.writeable:
            a[...] = i + 1
    out.put(res)
    back.get(timeout=60)
    out.put([np.asarray(a).ravel()[0].item() for a in arrays])


@pytest.mark.parametrize("method", START_METHODS)
def test_process_arguments_and_queue_share_pages(tmp_path, method):
    ctx = mp.get_context(method)
    f = mmarray.create(tmp_path / "f.npy", (50, 20), "i8")
    f[...] = np.arange(1000).reshape(50, 20)
    m = mmarray.anonymous((50, 20), "f4")
    m[...] = np.arange(1000).reshape(50, 20)
    ro = mmarray.open(tmp_path / "f.npy", "r")[::7]
    arrays = [f[::-1, 3:9], m.T, m[10:20].view("u1")[:, ::-3], ro]
    expected = [(np.array(a), a.strides) for a in arrays]
    out, back = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=_child_checks, args=(arrays, expected, out, back))
    p.start()
    try:
        res = out.get(timeout=60)
        assert res == [(True, True, True)] * 3 + [(True, False, True)]
        # the child's writes are visible here ...
        assert (f[::-1, 3:9] == 1).all() and (m[:10] == 2).all() and (m[20:] == 2).all()
        assert (m[10:20].view("u1")[:, ::-3] == 3).all()
        assert (ro == f[::7]).all() and ro[-1, 3] == 1
        # ... and the parent's writes are visible there
        f[-1, 3] = 42
        m[0, 0] = 43
        f[0, 0] = 44
        back.put("look")
        assert out.get(timeout=60) == [42, 43.0, 3, 44]
    finally:
        back.put("done")
        p.join(30)
    assert p.exitcode == 0


def _return_view(a):
    return a[::-1]


@pytest.mark.parametrize("method", START_METHODS)
def test_pool_tasks_and_results_travel_by_reference(method):
    ctx = mp.get_context(method)
    m = mmarray.anonymous((8, 1000), "i4")
    m[...] = np.arange(8000).reshape(8, 1000)
    with ctx.Pool(2) as pool:
        sums = pool.map(np.sum, [m[i : i + 2] for i in range(0, 8, 2)])
        back = pool.apply(_return_view, (m[2:6],))
    assert [int(s) for s in sums] == [int(m[i : i + 2].sum()) for i in range(0, 8, 2)]
    # the result is a view of the same memory, not a copy
    assert mmarray.region(back) is not None
    back[0, 0] = -1
    assert m[5, 0] == -1


def _cow_child(a, ev, q):
    a.reshape(-1)[0] = 111
    ev.wait(30)
    q.put((int(a.reshape(-1)[0]), int(a.reshape(-1)[-1])))


def test_copy_on_write_is_isolated_both_ways(npy_file):
    ctx = mp.get_context("fork")
    for a in (mmarray.open(npy_file, "c"), mmarray.anonymous((64, 48), "i4", shared=False)):
        first, last = int(a[0, 0]), int(a[-1, -1])
        ev, q = ctx.Event(), ctx.Queue()
        p = ctx.Process(target=_cow_child, args=(a, ev, q))
        p.start()
        a[-1, -1] = 222  # the parent writes after the fork ...
        ev.set()
        assert q.get(timeout=30) == (111, last)  # ... the child sees only its own write
        p.join(30)
        assert a[0, 0] == first and a[-1, -1] == 222  # and the parent only its own
    assert (mmarray.open(npy_file) == np.arange(64 * 48).reshape(64, 48)).all()  # file intact


def _open_ref(ref, q):
    b = ref.open()
    b[...] = 9
    q.put(int(b.sum()))


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_share_ref_opens_in_an_unrelated_process(npy_file, method):
    ctx = mp.get_context(method)
    a = mmarray.open(npy_file, "r+")
    m = mmarray.anonymous(100, "i2")
    for arr in (a[5:7], m[::2]):
        q = ctx.Queue()
        p = ctx.Process(target=_open_ref, args=(mmarray.share(arr), q))
        p.start()
        assert q.get(timeout=60) == 9 * arr.size
        p.join(30)
        assert (arr == 9).all()


# ---- leaks ----------------------------------------------------------------------------


def _fds_and_maps(path):
    """Open descriptors (number -> target) and the lines of /proc/self/maps of our memory.

    Event descriptors (``anon_inode:[eventfd]``, ``[eventpoll]``) are left out: a round
    trip makes none (files, memfds, sockets and pipes are its kinds), while other
    libraries' threads that earlier tests started (zmq's, asyncio's) open and close
    them at any time."""
    gc.collect()
    fds = {}
    for n in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{n}")
        except OSError:  # the descriptor listdir itself used
            continue
        if not target.startswith("anon_inode:"):
            fds[n] = target
    with open("/proc/self/maps") as f:
        maps = [line for line in f if str(path) in line or "memfd:mmarray" in line]
    return fds, maps


def test_no_leaked_descriptors_or_mappings_after_1000_round_trips(npy_file):
    a = mmarray.open(npy_file, "r+")
    m = mmarray.anonymous((64, 48), "i4")
    for arr in (a[1:9, ::2], m[::-1]):  # warm up (the resource sharer starts its thread)
        fp_roundtrip(arr)
    fds_before, maps_before = _fds_and_maps(npy_file)
    for i in range(1000):
        src = (a, m)[i % 2][i % 7 :: 3]
        _, b = fp_roundtrip(src)
        assert b.shape == src.shape
        del b
        ref = mmarray.share(src).open()
        del ref
    fds_after, maps_after = _fds_and_maps(npy_file)
    # other tests' objects may close descriptors meanwhile; none may appear
    assert set(fds_after.items()) - set(fds_before.items()) == set()
    assert len(maps_after) <= len(maps_before)
    assert sum(str(npy_file) in line for line in maps_after) == 1  # only a's own mapping


def _pipe_echo(conn):
    a = conn.recv()
    a[0] += 1
    conn.send((a[::-1], bool(a.flags.writeable)))
    conn.recv()


@pytest.mark.parametrize("method", ["forkserver"])
def test_pipe_both_ways(method):
    ctx = mp.get_context(method)
    here, there = ctx.Pipe()
    m = mmarray.anonymous(50, "u4")
    p = ctx.Process(target=_pipe_echo, args=(there,))
    p.start()
    try:
        here.send(m[10:20])  # after the start: through the resource sharer, not with the process
        back, writeable = here.recv()
        assert writeable and m[10] == 1
        assert back.strides == (-4,) and mmarray.region(back) is not None
        back[0] = 7  # back[0] is m[19]: the child's reply is a view of the same memory
        assert m[19] == 7
    finally:
        here.send(None)
        p.join(30)
    assert p.exitcode == 0


def _write_and_flag(a, value):
    try:
        a[...] = value
    except ValueError as e:
        return str(e)
    return mmarray.region(a) is not None


@pytest.mark.parametrize("method", START_METHODS)
def test_process_pool_executor_shares_under_every_start_method(tmp_path, method):
    from concurrent.futures import ProcessPoolExecutor

    a = mmarray.anonymous((4, 256), "f8")
    a[...] = 2.0
    f = mmarray.create(tmp_path / "f.npy", (6, 100), "i4")
    ro = mmarray.open(tmp_path / "f.npy", "r")
    with ProcessPoolExecutor(2, mp_context=mp.get_context(method)) as ex:
        total = ex.submit(np.sum, a[:, ::2]).result(timeout=60)
        view = ex.submit(np.transpose, a[1:3]).result(timeout=60)
        wrote = [ex.submit(_write_and_flag, x, 9) for x in (f[::-2, 3:], a[3], ro[1:])]
        wrote = [w.result(timeout=60) for w in wrote]
    assert total == 4 * 128 * 2.0
    assert view.shape == (256, 2) and mmarray.region(view) is not None
    view[0, 0] = 5
    assert a[1, 0] == 5
    # the workers' writes are seen here; the read-only array stayed read-only there
    assert wrote == [True, True, "assignment destination is read-only"]
    assert (f[::-2, 3:] == 9).all() and not f[::-2, :3].any() and not f[-2::-2].any()
    assert (a[3] == 9).all()


@pytest.mark.parametrize(
    "code",
    [
        # mmarray first: importing it must not import multiprocessing (a few ms) ...
        "import sys, mmarray; assert 'multiprocessing' not in sys.modules; "
        "from multiprocessing.reduction import ForkingPickler as F",
        # ... and multiprocessing first
        "from multiprocessing.reduction import ForkingPickler as F; import mmarray",
    ],
)
def test_reducer_is_registered_whatever_the_import_order(code):
    import subprocess
    import sys

    check = (
        "; import numpy as np; a = mmarray.anonymous(10**6, 'u1'); "
        "assert len(F.dumps(a[::-1])) < 1024; assert np.ndarray in F._extra_reducers"
    )
    subprocess.run([sys.executable, "-c", code + check], check=True, timeout=60)


def test_file_unlinked_but_hard_linked_elsewhere_travels_by_descriptor(npy_file, tmp_path):
    a = mmarray.open(npy_file, "r+")
    os.link(npy_file, tmp_path / "other-name.npy")
    os.unlink(npy_file)
    data, b = fp_roundtrip(a[3:5])
    assert len(data) < 1024
    b[...] = -7
    assert (a[3:5] == -7).all()
