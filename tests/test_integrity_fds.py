"""Integrity under concurrency and crashes: descriptor numbers, grow, locks and fork.

- An operation on an array whose region another thread closes acts on the array's file
  or fails cleanly; never on the file that reuses the descriptor number.
- ``grow`` is one atomic step: processes growing one file get rows of their own,
  ``open`` during grows gives the array of one moment, and a grower killed at any step
  leaves a file that ``open`` reads and the next ``grow`` repairs.
- A lock follows its owner: a forked child neither releases its parent's lock nor keeps
  it alive once the parent is dead.

Every race here is a real one (threads or processes), bounded in time and rounds.
"""

from __future__ import annotations

import errno
import fcntl
import multiprocessing as mp
import os
import signal
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import mmarray

SECONDS = 1.5  # each race runs this long (and at least MIN_ROUNDS rounds)
MIN_ROUNDS = 300
_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)


# ---- descriptor numbers are not identities --------------------------------------------------


def _close_races(tmp_path, make, op, decoy):
    """Rounds of: a fresh array ``make(i)``; a thread that closes its region and at once
    opens ``decoy`` (which takes the freed descriptor number); ``op(a)`` meanwhile. A
    ValueError (the close came first) is a clean failure. Returns the rounds run."""
    deadline = time.monotonic() + SECONDS
    rounds = 0
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns between any two bytecodes
    try:
        while _race_on(rounds, deadline):
            _close_race(make(rounds), op, decoy)
            rounds += 1
    finally:
        sys.setswitchinterval(switch)
    return rounds


def _race_on(rounds, deadline):
    return rounds < MIN_ROUNDS or (time.monotonic() < deadline and rounds < 20 * MIN_ROUNDS)


def _close_race(a, op, decoy):
    """One round: ``op(a)`` while another thread closes a's region and opens ``decoy``."""
    reg = mmarray.region(a)
    go = threading.Barrier(2, timeout=30)
    taken: list[int] = []

    def close_and_reuse():
        go.wait()
        reg.close()
        taken.append(os.open(decoy, os.O_RDWR | os.O_CLOEXEC))

    t = threading.Thread(target=close_and_reuse)
    t.start()
    go.wait()
    try:
        op(a)
    except ValueError as e:
        assert "closed" in str(e)
    finally:
        t.join(30)
        assert not t.is_alive()
        for fd in taken:
            os.close(fd)


def test_grow_during_a_concurrent_close_never_writes_another_file(tmp_path):
    decoy = tmp_path / "decoy.npy"
    mmarray.create(decoy, (4, 2), "i8", fill=9)  # the same bytes as each grown file
    before = decoy.read_bytes()

    def make(i):
        return mmarray.create(tmp_path / f"g{i}.npy", (4, 2), "i8", fill=9)

    def op(a):
        mmarray.grow(a, 3)
        assert decoy.read_bytes() == before

    _close_races(tmp_path, make, op, decoy)
    assert decoy.read_bytes() == before
    for i in range(3):  # the files themselves: as they were, or grown by 3 rows
        assert np.load(tmp_path / f"g{i}.npy").shape in ((4, 2), (7, 2))


def test_lock_during_a_concurrent_close_never_locks_another_file(tmp_path):
    decoy = tmp_path / "decoy.raw"
    decoy.write_bytes(bytes(64))
    path = tmp_path / "l.raw"
    mmarray.create(path, 64, "u1")
    probe = os.open(path, os.O_RDWR | os.O_CLOEXEC)  # another description of the file
    wrong = []

    def op(a):
        with mmarray.lock(a, timeout=10):
            try:  # the lock must be on a's file: a conflicting one is refused
                fcntl.fcntl(probe, _SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 64, 0))
            except OSError as e:
                assert e.errno in (errno.EAGAIN, errno.EACCES)
            else:
                fcntl.fcntl(probe, _SETLK, struct.pack("hhqqi4x", fcntl.F_UNLCK, 0, 0, 64, 0))
                wrong.append(True)

    try:
        _close_races(tmp_path, lambda i: mmarray.open(path, "r+", dtype="u1"), op, decoy)
    finally:
        os.close(probe)
    assert not wrong, f"{len(wrong)} locks were taken on another file"


def test_extents_during_a_concurrent_close_never_reads_another_file(tmp_path):
    decoy = tmp_path / "decoy.raw"
    decoy.write_bytes(b"\1" * (1 << 20))  # all data
    path = tmp_path / "sparse.raw"
    mmarray.create(path, 1 << 20, "u1")  # all hole
    want = mmarray.extents(path)
    assert want != mmarray.extents(decoy)  # the file system tells holes from data

    def op(a):
        assert mmarray.extents(a) == want

    _close_races(tmp_path, lambda i: mmarray.open(path, dtype="u1"), op, decoy)


def test_disk_usage_during_a_concurrent_close_never_reads_another_file(tmp_path):
    decoy = tmp_path / "decoy.raw"
    decoy.write_bytes(bytes(8192))
    path = tmp_path / "du.raw"
    mmarray.create(path, 100, "u1")

    def op(a):
        assert mmarray.disk_usage(a).apparent == 100

    _close_races(tmp_path, lambda i: mmarray.open(path, dtype="u1"), op, decoy)


# ---- growing a file is one atomic step ------------------------------------------------------


def _grow_rows(path, who, go, seconds, out):
    """Grow ``path`` by one row at a time for ``seconds``, writing a value of its own in
    each new row; put the number of rows added on ``out``."""
    b = mmarray.open(path, "r+")
    go.wait(60)
    deadline = time.monotonic() + seconds
    k = 0
    while time.monotonic() < deadline and k < 20000:
        b = mmarray.grow(b, 1)  # b is stale whenever the other process grew meanwhile
        k += 1
        b[-1] = who * 10**6 + k
    out.put(k)


def test_two_processes_growing_one_file_get_rows_of_their_own(tmp_path):
    path = tmp_path / "both.npy"
    mmarray.create(path, (1,), "i8")
    ctx = mp.get_context("fork")
    go, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_grow_rows, args=(path, w, go, SECONDS, out)) for w in (1, 2)]
    for p in procs:
        p.start()
    counts = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0  # no SIGBUS, no error
    got = np.load(path)
    assert got.shape == (1 + sum(counts),)
    values = got[1:]
    for w in (1, 2):  # each process's values, each in a row of its own, in order
        mine = values[values // 10**6 == w] % 10**6
        np.testing.assert_array_equal(mine, np.arange(1, len(mine) + 1))
    assert sorted(len(values[values // 10**6 == w]) for w in (1, 2)) == sorted(counts)


def _grow_and_write(path, go, seconds):
    b = mmarray.open(path, "r+")
    go.wait(60)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and b.shape[0] < 50000:
        b = mmarray.grow(b, 1)
        b[-1] = b.shape[0]  # row i holds i + 1, once written


def test_open_during_grows_gives_the_array_of_one_moment(tmp_path):
    path = tmp_path / "o.npy"
    a = mmarray.create(path, (1,), "i8")
    a[0] = 1
    del a
    ctx = mp.get_context("fork")
    go = ctx.Barrier(2)
    p = ctx.Process(target=_grow_and_write, args=(path, go, SECONDS))
    p.start()
    try:
        go.wait(60)
        opens = 0
        while p.is_alive() or opens < MIN_ROUNDS:
            b = mmarray.open(path)  # never an error: the header and size of one moment
            rows = np.arange(1, b.shape[0] + 1)
            done = b[:-1]  # the last row may not be written yet
            np.testing.assert_array_equal(done, rows[:-1])
            assert b[-1] in (0, b.shape[0])
            opens += 1
            del b
    finally:
        p.join(120)
    assert p.exitcode == 0


_KILLED_GROW = """
import os, signal, sys, fcntl
import mmarray
path, kind, nth, when = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
calls = [0]

def killing(f):
    def call(*args):
        calls[0] += 1
        if calls[0] == nth and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        res = f(*args)
        if calls[0] == nth and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return res
    return call

if kind == "npy":
    a = mmarray.open(path, "r+")
else:
    a = mmarray.open(path, "r+", dtype="i4").reshape(-1, 2)
for name in ("ftruncate", "pwrite"):
    setattr(os, name, killing(getattr(os, name)))
mmarray.grow(a, 3)
"""


@pytest.mark.parametrize("kind", ["npy", "raw"])
def test_grow_killed_at_any_step_leaves_a_file_open_reads_and_grow_repairs(tmp_path, kind):
    path = tmp_path / ("k.npy" if kind == "npy" else "k.raw")
    first = np.arange(8, dtype="i4").reshape(4, 2) + 1
    if kind == "npy":
        mmarray.create(path, first.shape, first.dtype)[:] = first
    else:
        path.write_bytes(first.tobytes())
    want = first  # the rows committed so far

    def reopen(mode="r"):
        if kind == "npy":
            return mmarray.open(path, mode)
        return mmarray.open(path, mode, dtype="i4").reshape(-1, 2)

    killed = killed_now = 0
    for nth in range(1, 10):
        if nth > 1 and not killed_now:
            break  # the grow has fewer steps than nth: every one was a kill point
        killed_now = 0
        for when in ("before", "after"):
            r = subprocess.run(
                [sys.executable, "-c", _KILLED_GROW, str(path), kind, str(nth), when],
                timeout=120,
                capture_output=True,
            )
            assert r.returncode in (0, -signal.SIGKILL), r.stderr.decode()
            killed_now += r.returncode == -signal.SIGKILL
            killed += r.returncode == -signal.SIGKILL
            got = reopen()  # as before, or grown by the 3 rows (zeros)
            assert got.shape[0] in (len(want), len(want) + 3)
            np.testing.assert_array_equal(got[: len(want)], want)
            assert not got[len(want) :].any()
            want = np.array(got)
            if kind == "npy":  # numpy reads it the same
                np.testing.assert_array_equal(np.load(path), want)
            # the next grow repairs whatever the killed one left, and extends
            b = mmarray.grow(reopen("r+"), 1)
            b[-1] = len(want) + 100
            want = np.concatenate([want, b[-1:]])
            np.testing.assert_array_equal(reopen(), want)
            del got, b
    assert killed >= (4 if kind == "npy" else 2)  # extension, header (npy): both ways


# ---- locks follow their owner ---------------------------------------------------------------


def _probe_locked(a) -> bool:
    """Whether another description (this process's) finds the bytes of ``a`` locked."""
    try:
        with mmarray.lock(a, timeout=0):
            return False
    except TimeoutError:
        return True


def test_forked_child_leaving_an_inherited_lock_block_keeps_the_parents_lock(tmp_path):
    a = mmarray.create(tmp_path / "f.raw", 16, "u1")
    pid = -1
    try:
        with mmarray.lock(a):
            pid = os.fork()
            if pid:
                _, status = os.waitpid(pid, 0)
                assert os.waitstatus_to_exitcode(status) == 0
                assert _probe_locked(a), "the child released its parent's lock"
    except BaseException:
        if pid == 0:
            os._exit(1)
        raise
    if pid == 0:  # the child left the block: that released nothing of the parent's
        os._exit(0)
    assert not _probe_locked(a)  # the parent's own release works


_HOLDER = """
import os, sys, time, multiprocessing as mp
import mmarray
path, how = sys.argv[1], sys.argv[2]
a = mmarray.open(path, "r+", dtype="u1")
with mmarray.lock(a):
    if how == "fork":
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
    else:
        p = mp.get_context("fork").Process(target=time.sleep, args=(60,))
        p.start()
        pid = p.pid
    print(pid, flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("how", ["fork", "multiprocessing"])
def test_sigkilled_holder_with_a_live_forked_child_frees_its_lock(tmp_path, how):
    path = tmp_path / "h.raw"
    a = mmarray.create(path, 16, "u1")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), how], stdout=subprocess.PIPE
    )
    child = 0
    try:
        child = int(holder.stdout.readline())
        assert _probe_locked(a)  # the holder holds it
        holder.kill()
        holder.wait(60)
        os.kill(child, 0)  # the child lives on
        with mmarray.lock(a, timeout=10):  # the lock died with its holder
            pass
    finally:
        holder.kill()
        holder.wait(60)
        holder.stdout.close()
        if child:
            os.kill(child, signal.SIGKILL)
