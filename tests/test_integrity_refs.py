"""A reference never resolves to the wrong bytes, and a failed one never hangs a pool.

Issue 13, "A file's identity is more than device and inode" and the pickling part of
"Descriptor numbers are not identities": each test is named after the fault it shows.
"""

from __future__ import annotations

import concurrent.futures
import errno
import multiprocessing as mp
import os
import pickle
import sys
import threading
import time
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest

import mmarray

SIZE = 64 * 1024


def _replace_with_same_size(path, fill):
    """Delete ``path`` and create a new file of the same size there, filled with ``fill``:
    ext4 hands the new file the inode number just freed. Returns (old, new) inodes."""
    old = os.stat(path).st_ino
    os.unlink(path)
    with open(path, "wb") as f:
        f.write(bytes([fill]) * SIZE)
    return old, os.stat(path).st_ino


def _new_file(path, fill):
    return mmarray.create(path, SIZE, "u1", fill=fill)


def _drop(a):
    """Close a's region, so that nothing of this process keeps its inode allocated."""
    mmarray.region(a).close()


def test_share_of_a_file_replaced_by_one_with_the_same_inode_raises_estale(tmp_path):
    path = tmp_path / "f.raw"
    reused = 0
    for _ in range(20):
        a = _new_file(path, 1)
        ref = mmarray.share(a[100:200])
        _drop(a)
        del a
        old, new = _replace_with_same_size(path, 2)
        reused += old == new
        with pytest.raises(OSError) as ei:
            b = ref.open()
            pytest.fail(f"mapped the new file's bytes {b[:4]} (inode reused: {old == new})")
        assert ei.value.errno == errno.ESTALE and ei.value.filename == str(path)
        assert "replaced" in str(ei.value)
        os.unlink(path)
    print(f"inode numbers reused: {reused} of 20")  # ext4: all of them; tmpfs: none


def _send_and_exit(path, q):
    a = mmarray.open(path, "r", dtype="u1")
    q.put(a[10:20])  # the feeder thread sends it before the process exits


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_array_queued_from_a_file_replaced_by_one_with_the_same_inode_raises_estale(
    tmp_path, method
):
    ctx = mp.get_context(method)
    path = tmp_path / "q.raw"
    _drop(_new_file(path, 1))
    q = ctx.Queue()
    p = ctx.Process(target=_send_and_exit, args=(path, q))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    # the sender is gone, its array unmapped: the inode is free for the next file
    _replace_with_same_size(path, 2)
    got = q.get(timeout=30)
    with pytest.raises(OSError) as ei:
        b = np.asarray(got)
        pytest.fail(f"received the new file's bytes {b[:4]}")
    assert ei.value.errno == errno.ESTALE and ei.value.filename == str(path)


def test_pipe_of_a_file_replaced_by_one_with_the_same_inode_raises_estale(tmp_path):
    path = tmp_path / "p.raw"
    here, there = mp.Pipe()
    for _ in range(20):
        a = _new_file(path, 1)
        here.send(a[::7])
        _drop(a)
        del a
        _replace_with_same_size(path, 2)
        got = there.recv()
        with pytest.raises(OSError) as ei:
            np.asarray(got)
        assert ei.value.errno == errno.ESTALE
        os.unlink(path)


def test_a_reference_with_another_stamp_is_stale_and_a_malformed_stamp_is_refused(tmp_path):
    a = _new_file(tmp_path / "s.raw", 3)
    ref = mmarray.share(a)
    fields = dict(zip(mmarray.ArrayRef.__slots__, ref._fields(), strict=True))
    assert {name for name, _ in ref.stamp} <= {"btime", "generation", "ctime"}
    other = tuple((name, value + 1) for name, value in ref.stamp)
    with pytest.raises(OSError, match="same inode number") as ei:
        mmarray.ArrayRef(*{**fields, "stamp": other}.values()).open()
    assert ei.value.errno == errno.ESTALE
    for bad in (
        (),
        "x",
        (("btime",),),
        (("mtime", 1),),
        (("btime", 1.5),),
        (("btime", 1),) * 2,
        (("ctime", 1),) * 3,
    ):
        with pytest.raises(TypeError, match="stamp"):
            mmarray.ArrayRef(*{**fields, "stamp": bad}.values()).open()
    assert (ref.open() == 3).all()


def test_file_identity_of_a_bad_descriptor_raises():
    from mmarray import _core

    for fd in (-1, 2**20):
        with pytest.raises(OSError) as ei:
            _core.file_identity(fd)
        assert ei.value.errno == errno.EBADF
    with pytest.raises(TypeError):
        _core.file_identity("3")
    r, w = os.pipe()
    try:  # a pipe has an identity too (no birth time or generation: its change time)
        device, inode, size, stamp = _core.file_identity(r)
        assert (device, inode) == (os.fstat(r).st_dev, os.fstat(r).st_ino) and stamp
    finally:
        os.close(r)
        os.close(w)


# ---- pickling holds the region's descriptor: no reference to whatever reuses the number ----


def _share_and_open(a):
    return mmarray.share(a).open()


def _send_and_receive(a):
    return np.asarray(pickle.loads(ForkingPickler.dumps(a)))


def test_describe_during_a_concurrent_close_never_names_another_file(tmp_path):
    """Thread 1 pickles arrays while thread 2 closes their regions and thread 3 opens
    another file to catch the freed descriptor numbers: every reference made must map
    the original bytes or fail, never the other file's."""
    ours, other = tmp_path / "ours.raw", tmp_path / "other.raw"
    _drop(_new_file(ours, 1))
    with open(other, "wb") as f:
        f.write(b"\x02" * SIZE)
    stop = time.monotonic() + 3.0
    arrays: list[np.ndarray] = []
    wrong: list[str] = []
    done = threading.Event()

    def closer():
        while not done.is_set():
            try:
                _drop(arrays[-1])
            except IndexError:  # between two iterations
                pass

    def squatter():
        while not done.is_set():
            fds = [os.open(other, os.O_RDONLY) for _ in range(4)]
            for fd in fds:
                os.close(fd)

    threads = [threading.Thread(target=closer), threading.Thread(target=squatter)]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for t in threads:
            t.start()
        n = 0
        while time.monotonic() < stop:
            a = mmarray.open(ours, "r", dtype="u1")
            arrays.append(a)
            for make in (_share_and_open, _send_and_receive):
                try:
                    b = make(a)
                except (ValueError, OSError):
                    continue  # closed meanwhile: refused, or stale
                if b[0] != 1:
                    wrong.append(f"iteration {n}: got byte {b[0]}")
            arrays.clear()
            n += 1
    finally:
        done.set()
        for t in threads:
            t.join(10)
        sys.setswitchinterval(old)
    assert n > 100 and not wrong, wrong[:5]


# ---- a worker that cannot rebuild a reference reports the error, it does not hang ----


def _truncated_chunks(tmp_path):
    """Chunks of a file that is then truncated: every worker's rebuild fails (ESTALE)."""
    path = tmp_path / "t.raw"
    a = mmarray.create(path, (8, SIZE // 8), "u1", fill=1)
    os.truncate(path, 0)  # a stays mapped here (and is never read again)
    return path, a, [a[i : i + 2] for i in range(0, 8, 2)]


def test_pool_map_whose_worker_cannot_rebuild_a_reference_raises_instead_of_hanging(tmp_path):
    path, a, chunks = _truncated_chunks(tmp_path)
    pool = mp.get_context("fork").Pool(2)
    try:
        res = pool.map_async(np.sum, chunks)
        with pytest.raises(OSError) as ei:
            res.get(timeout=20)  # mp.TimeoutError (not an OSError) where the pool hangs
        assert ei.value.errno == errno.ESTALE and ei.value.filename == str(path)
        assert "truncated" in str(ei.value)
        assert pool.apply(int, (7,)) == 7  # the pool still works
    finally:
        pool.terminate()
        pool.join()


def test_process_pool_executor_whose_worker_cannot_rebuild_a_reference_raises_the_error(
    tmp_path,
):
    path, a, chunks = _truncated_chunks(tmp_path)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as ex:
        with pytest.raises(OSError) as ei:
            list(ex.map(np.sum, chunks, timeout=20))
        assert ei.value.errno == errno.ESTALE and ei.value.filename == str(path)
        assert ex.submit(int, 7).result(timeout=20) == 7  # not broken


def test_map_chunks_whose_worker_cannot_rebuild_a_chunk_raises_the_error(tmp_path):
    path, a, _ = _truncated_chunks(tmp_path)
    with pytest.raises(OSError) as ei:
        mmarray.map_chunks(np.sum, a, chunk=2, workers=2, backend="process")
    assert ei.value.errno == errno.ESTALE and ei.value.filename == str(path)
    assert any("a[0:2]" in note for note in ei.value.__notes__)


def test_unavailable_array_raises_its_error_on_any_use():
    from mmarray._reducer import UnavailableArray

    err = OSError(errno.ESTALE, "stale ArrayRef", "/x")
    x = pickle.loads(pickle.dumps(UnavailableArray(err)))
    uses = [np.asarray, np.sum, np.median, len, bool, iter, lambda c: c.shape]
    uses += [lambda c: c[0], lambda c: c + 1, lambda c: 1 - c, lambda c: c.sum()]
    for use in uses:
        with pytest.raises(OSError, match="stale ArrayRef"):
            use(x)
    assert "stale ArrayRef" in repr(x)


# ---- anonymous memory from a sender that exited before it was received -----------------


def _put_anonymous_and_exit(q):
    a = mmarray.anonymous(1000, "i8")
    a[:] = 5
    q.put(a[::2])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_anonymous_memory_from_a_sender_that_exited_says_what_happened(method):
    ctx = mp.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=_put_anonymous_and_exit, args=(q,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    got = q.get(timeout=30)  # ConnectionRefusedError here before
    with pytest.raises(ProcessLookupError, match="exited before it was received") as ei:
        np.asarray(got)
    assert "named()" in str(ei.value) and ei.value.errno == errno.ESRCH


def _anonymous_result():
    a = mmarray.anonymous(1000, "i8")
    a[:] = 5
    return a


def test_anonymous_memory_returned_by_a_worker_that_exits_arrives_or_says_why():
    ctx = mp.get_context("spawn")
    seen = set()
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=1) as ex:
        for _ in range(3):
            got = ex.submit(_anonymous_result).result(timeout=60)  # BrokenProcessPool before
            try:
                seen.add("arrived" if (np.asarray(got) == 5).all() else "wrong bytes")
            except ProcessLookupError as e:
                assert "exited before it was received" in str(e)
                seen.add("explained")
    assert "wrong bytes" not in seen, seen


# ---- the descriptor travels where it can: with a process being started -----------------


def _report_first_bytes(arrays, q):
    out = []
    for a in arrays:
        try:
            out.append(int(np.asarray(a)[0]))
        except OSError as e:
            out.append(f"{type(e).__name__}: {e}")
    q.put(out)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_file_among_a_started_process_arguments_travels_by_descriptor(tmp_path, method):
    """The path is replaced while the child starts: the child still maps the file the
    parent sent (its descriptor went with the process), as a copy would have given."""
    ctx = mp.get_context(method)
    path = tmp_path / "arg.raw"
    ro, rw = _new_file(path, 1), mmarray.open(path, "r+", dtype="u1")
    q = ctx.Queue()
    p = ctx.Process(target=_report_first_bytes, args=([ro[5:], rw[::3], ro], q))
    p.start()
    with open(tmp_path / "new.raw", "wb") as f:
        f.write(b"\x02" * SIZE)
    os.replace(tmp_path / "new.raw", path)  # before the child unpickles: it imports first
    p.join(60)
    assert p.exitcode == 0  # a child whose arguments fail to unpickle dies
    assert q.get(timeout=10) == [1, 1, 1]
