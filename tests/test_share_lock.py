"""mmarray.lock: inter-process byte-range locks."""

from __future__ import annotations

import multiprocessing as mp
import threading

import numpy as np
import pytest

import mmarray


def _increment(counter, n, go=None):
    if go is not None:
        go.wait(60)  # start together, so that the processes really contend
    for _ in range(n):
        with mmarray.lock(counter):
            v = int(counter[0])
            counter[0] = v + 1


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_four_processes_count_to_8000(tmp_path, method):
    counter = mmarray.create(tmp_path / "counter.raw", 4, "i8")
    if method == "forkserver":  # also the shareable anonymous memory, sent by descriptor
        counter = mmarray.anonymous(4, "i8")
    ctx = mp.get_context(method)
    go = ctx.Event()
    procs = [ctx.Process(target=_increment, args=(counter[1:2], 2000, go)) for _ in range(4)]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 4
    assert counter[1] == 8000 and counter[0] == 0 and counter[2] == 0


def test_threads_exclude_each_other():
    counter = mmarray.anonymous(1, "i8")
    threads = [threading.Thread(target=_increment, args=(counter, 500)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter[0] == 2000


def test_timeout_shared_and_disjoint_ranges(tmp_path):
    a = mmarray.create(tmp_path / "l.raw", 100, "u1")
    with mmarray.lock(a[10:20]):
        with pytest.raises(TimeoutError, match="within"):
            with mmarray.lock(a[15:30], timeout=0.05):
                pass
        with pytest.raises(TimeoutError):
            with mmarray.lock(a[::-1], exclusive=False, timeout=0):
                pass
        with mmarray.lock(a[20:30], timeout=0):  # disjoint: no conflict
            pass
    with mmarray.lock(a, exclusive=False):
        with mmarray.lock(a, exclusive=False, timeout=0):  # readers share
            pass
        with pytest.raises(TimeoutError):
            with mmarray.lock(a[0:1], timeout=0):
                pass
    with mmarray.lock(a, timeout=0):  # everything was released
        pass


def test_named_and_read_only_arrays(tmp_path):
    import uuid

    name = f"mmarray-lock-{uuid.uuid4().hex[:10]}"
    s = mmarray.named(name, 8, "f8", create=True)
    try:
        with mmarray.lock(s[2:4]):
            with pytest.raises(TimeoutError):
                with mmarray.lock(s[3:], timeout=0):
                    pass
    finally:
        mmarray.unlink(name)
    path = tmp_path / "r.npy"
    np.save(path, np.zeros(10))
    ro = mmarray.open(path, "r")
    with mmarray.lock(ro, exclusive=False):
        pass


def test_arrays_without_a_file_are_refused():
    for a in (np.zeros(3), mmarray.anonymous(3, "u1", shared=False)):
        with pytest.raises(ValueError, match="lock"):
            with mmarray.lock(a):
                pass


def test_lock_released_on_exception(tmp_path):
    a = mmarray.create(tmp_path / "e.raw", 10, "u1")
    with pytest.raises(RuntimeError):
        with mmarray.lock(a):
            raise RuntimeError("boom")
    with mmarray.lock(a, timeout=0):
        pass
