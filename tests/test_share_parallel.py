"""mmarray.map_chunks: order, chunking, backends, errors, the default of workers."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mmarray
from mmarray import _core, _workers
from mmarray._parallel import _default_chunk


def _bounds(c):
    return (int(c[0, 0]), int(c[-1, 0]), c.shape[0])


def _fail_on_seven(c):
    if (c == 7).any():
        raise KeyError("seven")
    return int(c.sum())


def _write_ones(c):
    c[...] = 1
    return c.shape[0]


@settings(max_examples=40)
@given(n=st.integers(1, 300), chunk=st.integers(1, 50), workers=st.integers(1, 4))
def test_thread_results_are_in_order(n, chunk, workers):
    a = np.arange(n * 3).reshape(n, 3)
    got = mmarray.map_chunks(np.sum, a, chunk=chunk, workers=workers)
    assert got == [a[i : i + chunk].sum() for i in range(0, n, chunk)]


def test_process_backend_order_and_shared_writes():
    a = mmarray.anonymous((1000, 4), "i8")
    a[:, 0] = np.arange(1000)
    got = mmarray.map_chunks(_bounds, a, chunk=64, workers=2, backend="process")
    assert got == [(i, min(i + 63, 999), min(64, 1000 - i)) for i in range(0, 1000, 64)]
    # chunks travel by reference: the workers' writes land in a
    counts = mmarray.map_chunks(_write_ones, a[::-1], chunk=300, workers=2, backend="process")
    assert counts == [300, 300, 300, 100] and (a == 1).all()


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_errors_name_the_chunk(backend):
    a = np.arange(20).reshape(10, 2)
    with pytest.raises(KeyError, match="seven") as ei:
        mmarray.map_chunks(_fail_on_seven, a, chunk=3, workers=2, backend=backend)
    assert any("a[3:6]" in note for note in ei.value.__notes__)


def test_default_chunks_are_page_aligned():
    for shape, dt in [((10**6,), "f8"), ((5000, 3), "i2"), ((300, 1000), "u1"), ((7, 0), "f4")]:
        a = np.empty(shape, dt)
        rows = _default_chunk(a)
        row_bytes = a.itemsize * int(np.prod(shape[1:]))
        assert rows >= 1
        if row_bytes:
            assert rows * row_bytes % mmarray.PAGESIZE == 0
    a = mmarray.anonymous(3 * 2**20, "f8")
    assert len(mmarray.map_chunks(len, a)) == 3  # 8 MiB each


def test_bad_arguments():
    a = np.zeros(4)
    with pytest.raises(ValueError, match="backend"):
        mmarray.map_chunks(len, a, backend="gpu")
    with pytest.raises(ValueError, match="chunk"):
        mmarray.map_chunks(len, a, chunk=0)
    with pytest.raises(ValueError, match="dimension"):
        mmarray.map_chunks(len, np.float64(1.0))
    with pytest.raises(ValueError, match="workers"):
        mmarray.map_chunks(len, a, workers=-1)
    assert mmarray.map_chunks(len, np.zeros((0, 3))) == []


def test_default_workers_are_the_cpus_this_process_may_use(monkeypatch):
    # one default for map_chunks and the statistics (map_chunks used os.cpu_count())
    started = []

    class Recording(concurrent.futures.ThreadPoolExecutor):
        def __init__(self, max_workers=None):
            started.append(max_workers)
            super().__init__(max_workers=max_workers)

    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", Recording)
    monkeypatch.setattr(_workers.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(_workers.os, "cpu_count", lambda: 64)
    assert _workers.default_workers() == 3
    assert mmarray.map_chunks(np.sum, np.arange(10), chunk=1) == list(range(10))
    assert started == [3]
    monkeypatch.setattr(_workers.os, "sched_getaffinity", lambda pid: set(range(10_000)))
    assert _workers.default_workers() == _core.MAX_WORKERS
    assert _workers.kernel_workers(None) == _workers.kernel_workers(10**9) == _core.MAX_WORKERS
    assert _workers.check_workers(10**9) == 10**9  # map_chunks: not capped, as before
