"""Sharing between processes.

1. The mmap post's recipe, ``Pool(2).map(np.median, chunks)`` over 16 MiB chunks of a
   1 GiB int16 file: the same code over ``np.memmap`` chunks (pickled by value) and
   over mmarray chunks (sent by reference), beside the hand-written recipe where each
   worker reopens the file itself.
2. A 1 GiB array through a ``Pipe``: pickle protocol 5 with out-of-band buffers vs
   an mmarray reference.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
from collections.abc import Iterator
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mmarray

I2 = np.dtype("int16")
CHUNK_ITEMS = (16 << 20) // I2.itemsize


def _bounds(n: int) -> list[tuple[int, int]]:
    return [(i, min(i + CHUNK_ITEMS, n)) for i in range(0, n, CHUNK_ITEMS)]


def _median_of_range(args: tuple[str, int, int]) -> float:
    """The hand-written recipe: the worker reopens the file and slices its own chunk."""
    path, lo, hi = args
    return float(np.median(np.memmap(path, dtype=I2, mode="r")[lo:hi]))


@pytest.fixture(scope="module")
def pool() -> Iterator[Any]:
    with mp.get_context("fork").Pool(2) as p:
        yield p


@pytest.fixture(scope="module")
def medians(int16_1gib: Path) -> list[float]:
    a = np.memmap(int16_1gib, dtype=I2, mode="r")
    return [float(np.median(a[lo:hi])) for lo, hi in _bounds(a.shape[0])]


def _task_bytes(chunk: Any) -> int:
    """Bytes multiprocessing pickles for one task of Pool.map(np.median, chunks)."""
    return len(ForkingPickler.dumps((np.median, (chunk,))))


def _naive(pool: Any, chunks: list[Any]) -> list[float]:
    return [float(m) for m in pool.map(np.median, chunks)]


@pytest.mark.benchmark(group="Pool(2).map(np.median) over 16 MiB chunks of 1 GiB int16")
def test_pool_median_mmarray_chunks(benchmark, pool, int16_1gib, medians):
    a = mmarray.open(int16_1gib, dtype=I2)
    chunks = [a[lo:hi] for lo, hi in _bounds(a.shape[0])]
    assert _naive(pool, chunks) == medians
    nbytes = _task_bytes(chunks[0])
    assert nbytes < 1024
    benchmark.extra_info["bytes_pickled_per_task"] = nbytes
    benchmark.pedantic(_naive, (pool, chunks), rounds=3, iterations=1)


@pytest.mark.benchmark(group="Pool(2).map(np.median) over 16 MiB chunks of 1 GiB int16")
def test_pool_median_np_memmap_chunks(benchmark, pool, int16_1gib, medians):
    a = np.memmap(int16_1gib, dtype=I2, mode="r")
    chunks = [a[lo:hi] for lo, hi in _bounds(a.shape[0])]
    assert _naive(pool, chunks) == medians
    benchmark.extra_info["bytes_pickled_per_task"] = _task_bytes(chunks[0])
    benchmark.pedantic(_naive, (pool, chunks), rounds=3, iterations=1)


@pytest.mark.benchmark(group="Pool(2).map(np.median) over 16 MiB chunks of 1 GiB int16")
def test_pool_median_reopen_in_worker(benchmark, pool, int16_1gib, medians):
    n = int16_1gib.stat().st_size // I2.itemsize
    tasks = [(str(int16_1gib), lo, hi) for lo, hi in _bounds(n)]

    def run() -> list[float]:
        return pool.map(_median_of_range, tasks)

    assert run() == medians
    benchmark.extra_info["bytes_pickled_per_task"] = len(
        ForkingPickler.dumps((_median_of_range, (tasks[0],)))
    )
    benchmark.pedantic(run, rounds=3, iterations=1)


# ---- 1 GiB through a Pipe -----------------------------------------------------------------


def _pipe_server(conn: Any) -> None:
    """Receive arrays (by reference, or protocol 5 with out-of-band buffers); reply a checksum."""
    while True:
        kind = conn.recv()
        if kind is None:
            return
        if kind == "ref":
            a = conn.recv()
        else:
            nbuf = conn.recv()
            data = conn.recv_bytes()
            bufs = [conn.recv_bytes() for _ in range(nbuf)]
            a = pickle.loads(data, buffers=bufs)
        conn.send(float(a[:: 1 << 16].sum()))
        del a


@pytest.fixture(scope="module")
def pipe_server() -> Iterator[Any]:
    ctx = mp.get_context("fork")
    here, there = ctx.Pipe()
    p = ctx.Process(target=_pipe_server, args=(there,))
    p.start()
    yield here
    here.send(None)
    p.join(30)


def _send_ref(conn: Any, a: Any) -> float:
    conn.send("ref")
    conn.send(a)
    return conn.recv()


def _send_oob(conn: Any, a: Any) -> float:
    bufs: list[pickle.PickleBuffer] = []
    data = pickle.dumps(a, protocol=5, buffer_callback=bufs.append)
    conn.send("oob")
    conn.send(len(bufs))
    conn.send_bytes(data)
    for b in bufs:
        conn.send_bytes(b.raw())
    return conn.recv()


@pytest.fixture(scope="module")
def f8_array(float64_1gib: Path) -> Any:
    a = mmarray.open(float64_1gib, dtype="f8")
    np.add.reduce(a[::512])  # touch every page once, so both cases start from a warm cache
    return a


@pytest.mark.benchmark(group="1 GiB float64 through a Pipe")
def test_pipe_mmarray_reference(benchmark, pipe_server, f8_array):
    expect = float(f8_array[:: 1 << 16].sum())
    assert _send_ref(pipe_server, f8_array) == expect
    benchmark.extra_info["bytes_pickled"] = len(ForkingPickler.dumps(f8_array))
    benchmark(_send_ref, pipe_server, f8_array)


@pytest.mark.benchmark(group="1 GiB float64 through a Pipe")
def test_pipe_pickle5_out_of_band(benchmark, pipe_server, f8_array):
    expect = float(f8_array[:: 1 << 16].sum())
    assert _send_oob(pipe_server, f8_array) == expect
    benchmark.extra_info["bytes_sent"] = f8_array.nbytes
    benchmark.pedantic(_send_oob, (pipe_server, f8_array), rounds=3, iterations=1)
