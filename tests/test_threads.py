"""Threads: many opening, slicing, reducing and closing the same files at once; a region
closed under a GIL-free kernel; fork while kernel threads run."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time

import numpy as np

import mmarray


def run_all(threads: list[threading.Thread]) -> None:
    """Start every thread, then wait for all of them."""
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_threads_share_files_without_crashing(tmp_path):
    # numpy issue 29126: threads opening the same file could crash np.memmap users.
    raw = tmp_path / "t.raw"
    npy = tmp_path / "t.npy"
    data = np.arange(50_000, dtype="<i8")
    data.tofile(raw)
    np.save(npy, data)
    want = int(data.sum())
    errors: list[BaseException] = []
    counts = [0] * 8
    stop = time.monotonic() + 2.0

    def worker(i: int) -> None:
        try:  # a few seconds, and at least one round each (threads run slowly under valgrind)
            while time.monotonic() < stop or counts[i] == 0:
                a = mmarray.open(raw, dtype="<i8") if i % 2 else mmarray.open(npy)
                assert int(a.sum()) == want
                v = a[i::7][::-1]
                assert int(v.sum()) == int(data[i::7].sum())
                reg = mmarray.region(a)
                assert reg is not None
                reg.close()  # deferred: a and v stay valid
                assert int(v[:3].sum()) == int(data[i::7][::-1][:3].sum())
                m = mmarray.memmap(raw, dtype="<i8", mode="r", shape=(100,), offset=8 * i)
                assert int(m[0]) == i
                m.close()
                counts[i] += 1
        except BaseException as e:  # reported after the join
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    run_all(threads)
    assert not errors, errors
    assert all(c > 0 for c in counts)


def _median_file(tmp_path, n=2_000_000):
    """A raw float32 file of n values (8 MB for the default) and its numpy median."""
    p = tmp_path / "m.raw"
    data = np.random.default_rng(5).standard_normal(n).astype("f4")
    data.tofile(p)
    return p, float(np.median(data))


class _Handshake:
    """A progress callback that, at its first call, says so and waits to be released."""

    def __init__(self) -> None:
        self.running = threading.Event()
        self.release = threading.Event()

    def __call__(self, frac: float) -> None:
        if not self.running.is_set():
            self.running.set()
            assert self.release.wait(10)


def _median_thread(x: np.ndarray, progress: object = None) -> tuple[threading.Thread, list]:
    """Starts mmarray.median(x, workers=2) in a thread; the list gets its result or error."""
    out: list[object] = []

    def work() -> None:
        try:
            out.append(mmarray.median(x, workers=2, progress=progress))
        except BaseException as e:
            out.append(e)

    t = threading.Thread(target=work)
    t.start()
    return t, out


def test_close_during_gil_free_median_defers_unmap(tmp_path):
    # Thread B runs the GIL-free kernel (workers=2) over a mapped file; once the first
    # pass is done (its progress callback), A closes the region and drops its array.
    # The kernel's later passes read the same memory: it must still be mapped.
    p, want = _median_file(tmp_path)
    for drop_only in (False, True):
        a = mmarray.open(p, dtype="f4")
        reg = mmarray.region(a)
        assert reg is not None
        hs = _Handshake()
        t, out = _median_thread(a, hs)
        assert hs.running.wait(10)
        if not drop_only:
            reg.close()
            assert reg.closed
        del a
        gc.collect()
        assert reg.mapped, "unmapped while the kernel still reads it"
        hs.release.set()
        t.join(30)
        assert not t.is_alive()
        assert out == [want], out
        del t
        gc.collect()
        if drop_only:
            reg.close()
        assert not reg.mapped  # the last export went with the kernel's reference
        assert reg.exports == 0


def test_close_at_random_times_during_median(tmp_path):
    # No handshake: the close lands anywhere from before the kernel starts to after it
    # ends.  Every run finishes with the right answer (the unmap waits for the export).
    p, want = _median_file(tmp_path)
    rng = np.random.default_rng(11)
    for i in range(20):
        a = mmarray.open(p, dtype="f4")
        reg = mmarray.region(a)
        assert reg is not None
        t, out = _median_thread(a)
        time.sleep(float(rng.uniform(0, 0.03)))
        if i % 2:
            reg.close()
        del a
        t.join(30)
        assert out == [want], out
        del t
        gc.collect()
        reg.close()
        assert not reg.mapped


def test_threads_swap_and_close_a_shared_array_while_others_reduce(tmp_path):
    # One thread keeps replacing the array everyone reads, closing the old one's region;
    # readers slice and reduce whatever array they grabbed (their reference keeps it
    # mapped).  Also: median over a mapped view from many threads at once.
    raw = tmp_path / "s.raw"
    data = np.arange(200_000, dtype="<i8")
    data.tofile(raw)
    total = int(data.sum())
    slot = [mmarray.open(raw, dtype="<i8")]
    stop = time.monotonic() + 2.0
    errors: list[BaseException] = []
    done = [0] * 6

    def swapper() -> None:
        try:
            while (time.monotonic() < stop or min(done) < 3) and not errors:
                new = mmarray.open(raw, dtype="<i8")
                old, slot[0] = slot[0], new
                reg = mmarray.region(old)
                assert reg is not None
                reg.close()
                del old, new
        except BaseException as e:
            errors.append(e)

    def reader(i: int) -> None:
        try:  # at least 3 rounds each, however slowly threads run (valgrind)
            while time.monotonic() < stop or done[i] < 3:
                a = slot[0]
                assert int(a.sum()) == total
                v = a[i :: 5 + i]
                assert int(v.sum()) == int(data[i :: 5 + i].sum())
                assert mmarray.median(v[:4001]) == np.median(data[i :: 5 + i][:4001])
                done[i] += 1
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=swapper)]
    threads += [threading.Thread(target=reader, args=(i,)) for i in range(6)]
    run_all(threads)
    assert not errors, errors
    assert all(d > 0 for d in done)


_FORK_SCRIPT = r"""
import os, sys, threading, time
import numpy as np
import mmarray

x = mmarray.anonymous(1 << 18, "f8")
x[:] = np.random.default_rng(3).standard_normal(1 << 18)
want = float(np.median(x))
stop = threading.Event()
runs = [0]

def spin():
    while not stop.is_set():
        assert mmarray.median(x, workers=2) == want
        runs[0] += 1

t = threading.Thread(target=spin)
t.start()
while runs[0] < 2:
    time.sleep(0.001)
bad = 0
for k in range(12):
    time.sleep(0.003 * k)  # fork at varying points of the background medians
    pid = os.fork()
    if pid == 0:
        ok = mmarray.median(x, workers=2) == want
        ok = ok and mmarray.quantile(x, 0.25, workers=2) == np.quantile(x, 0.25)
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 30
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            print(f"child {k} deadlocked", flush=True)
            bad += 1
            break
        time.sleep(0.01)
    if got and not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
        print(f"child {k} failed: status {status}", flush=True)
        bad += 1
stop.set()
t.join()
print(f"forks=12 bad={bad} background_runs={runs[0]}")
sys.exit(1 if bad else 0)
"""


def test_fork_while_median_threads_run():
    # Fork from the main thread while a background thread keeps running medians with
    # worker threads: each child runs medians of its own and exits, none deadlocks.
    # In a subprocess, so that pytest's own process never forks with threads running.
    r = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", _FORK_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "forks=12 bad=0" in r.stdout
