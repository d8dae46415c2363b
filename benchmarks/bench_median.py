"""Exact median and quantiles: mmarray against np.median and the multiprocessing recipes.

Groups (the case named ``mmarray`` is the reference; ratios are peer / mmarray):

- ``median-int16``: 1 GiB int16 file. Peers: ``np.median``; ``Pool(2).map(np.median,
  chunks)`` with pickled chunks (approximate); ``Pool(2)`` workers that reopen the
  file (approximate). Extra: peak extra anonymous memory (``RssAnon``) of mmarray.
- ``median-float64``, ``median-float32``: 1 GiB float64 and 512 MiB float32 files
  against ``np.median``.
- ``quantile9-float64``: 9 quantiles in one call against one median (bar: the
  median peer's ratio is at least 1/1.5).
- ``scaling-int16``, ``scaling-float64``: in RAM, ``workers=2`` (reference) against
  ``workers=1``.
"""

from __future__ import annotations

import functools
import threading
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pytest

import mmarray

CHUNKS = 16  # chunks of the multiprocessing recipes


@functools.cache
def exact_median(path: Path, dtype: str) -> float:
    return float(np.median(np.fromfile(path, dtype=dtype)))


def rss_anon() -> int:
    """Anonymous resident memory of this process in bytes (mapped file pages excluded)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_extra_anon(fn):
    """(fn(), peak RssAnon above the level before the call), sampled every 2 ms."""
    base = rss_anon()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_anon())
            time.sleep(0.002)

    t = threading.Thread(target=sample)
    t.start()
    try:
        res = fn()
    finally:
        stop.set()
        t.join()
    peak[0] = max(peak[0], rss_anon())
    return res, peak[0] - base


def chunk_median_reopen(args: tuple[str, str, int, int]) -> float:
    path, dtype, start, stop = args
    m = np.memmap(path, dtype=dtype, mode="r")
    return float(np.median(m[start:stop]))


def pool_pickled(a: np.ndarray) -> float:
    chunks = [np.asarray(c) for c in np.array_split(a, CHUNKS)]
    with Pool(2) as pool:
        return float(np.median(pool.map(np.median, chunks)))


def pool_reopen(path: Path, dtype: str, n: int) -> float:
    bounds = np.linspace(0, n, CHUNKS + 1).astype(int)
    jobs = [(str(path), dtype, int(bounds[i]), int(bounds[i + 1])) for i in range(CHUNKS)]
    with Pool(2) as pool:
        return float(np.median(pool.map(chunk_median_reopen, jobs)))


# ---- 1 GiB int16 ----------------------------------------------------------------------


@pytest.mark.benchmark(group="median-int16")
def test_median_int16_mmarray(benchmark, int16_1gib):
    a = mmarray.open(int16_1gib, dtype=np.int16)
    res, extra = peak_extra_anon(lambda: mmarray.median(a))
    assert res == exact_median(int16_1gib, "int16")
    benchmark.extra_info["peak extra RssAnon MiB"] = round(extra / 2**20, 1)
    assert extra <= 64 << 20
    benchmark(mmarray.median, a)


@pytest.mark.benchmark(group="median-int16")
def test_median_int16_numpy(benchmark, int16_1gib):
    a = np.memmap(int16_1gib, dtype=np.int16, mode="r")
    res, extra = peak_extra_anon(lambda: np.median(a))
    assert res == exact_median(int16_1gib, "int16")
    benchmark.extra_info["peak extra RssAnon MiB"] = round(extra / 2**20, 1)
    benchmark.pedantic(np.median, (a,), rounds=3, iterations=1)


@pytest.mark.benchmark(group="median-int16")
def test_median_int16_pool_pickled(benchmark, int16_1gib):
    a = np.memmap(int16_1gib, dtype=np.int16, mode="r")
    res = pool_pickled(a)
    assert -32768 <= res <= 32767  # approximate: the median of chunk medians
    benchmark.extra_info["bytes pickled"] = int(a.nbytes)
    benchmark.pedantic(pool_pickled, (a,), rounds=3, iterations=1)


@pytest.mark.benchmark(group="median-int16")
def test_median_int16_pool_reopen(benchmark, int16_1gib):
    n = int16_1gib.stat().st_size // 2
    res = pool_reopen(int16_1gib, "int16", n)
    assert abs(res - exact_median(int16_1gib, "int16")) < 100  # approximate
    benchmark.pedantic(pool_reopen, (int16_1gib, "int16", n), rounds=3, iterations=1)


@pytest.mark.benchmark(group="median-int16")
def test_median_int16_estimate(benchmark, int16_1gib):
    a = mmarray.open(int16_1gib, dtype=np.int16)
    res = mmarray.median_estimate(a)
    assert abs(res - exact_median(int16_1gib, "int16")) < 100
    benchmark(mmarray.median_estimate, a)


# ---- floats ---------------------------------------------------------------------------


@pytest.mark.benchmark(group="median-float64")
def test_median_float64_mmarray(benchmark, float64_1gib):
    a = mmarray.open(float64_1gib, dtype=np.float64)
    assert mmarray.median(a) == exact_median(float64_1gib, "float64")
    benchmark(mmarray.median, a)


@pytest.mark.benchmark(group="median-float64")
def test_median_float64_numpy(benchmark, float64_1gib):
    a = np.memmap(float64_1gib, dtype=np.float64, mode="r")
    assert np.median(a) == exact_median(float64_1gib, "float64")
    benchmark.pedantic(np.median, (a,), rounds=3, iterations=1)


@pytest.mark.benchmark(group="median-float32")
def test_median_float32_mmarray(benchmark, float32_512mib):
    a = mmarray.open(float32_512mib, dtype=np.float32)
    assert mmarray.median(a) == exact_median(float32_512mib, "float32")
    benchmark(mmarray.median, a)


@pytest.mark.benchmark(group="median-float32")
def test_median_float32_numpy(benchmark, float32_512mib):
    a = np.memmap(float32_512mib, dtype=np.float32, mode="r")
    assert np.median(a) == exact_median(float32_512mib, "float32")
    benchmark.pedantic(np.median, (a,), rounds=3, iterations=1)


Q9 = np.linspace(0.1, 0.9, 9)


@pytest.mark.benchmark(group="quantile9-float64")
def test_quantile9_float64_mmarray(benchmark, float64_1gib):
    a = mmarray.open(float64_1gib, dtype=np.float64)
    got = mmarray.quantile(a, Q9)
    np.testing.assert_array_equal(got, np.quantile(np.fromfile(float64_1gib), Q9))
    benchmark(mmarray.quantile, a, Q9)


@pytest.mark.benchmark(group="quantile9-float64")
def test_quantile9_float64_one_median(benchmark, float64_1gib):
    a = mmarray.open(float64_1gib, dtype=np.float64)
    assert mmarray.median(a) == exact_median(float64_1gib, "float64")
    benchmark(mmarray.median, a)


# ---- scaling in RAM ------------------------------------------------------------------


@pytest.fixture(scope="module")
def int16_ram(int16_1gib):
    return np.fromfile(int16_1gib, dtype=np.int16)


@pytest.fixture(scope="module")
def float64_ram(float64_1gib):
    return np.fromfile(float64_1gib, dtype=np.float64)


@pytest.mark.benchmark(group="scaling-int16")
def test_scaling_int16_mmarray_workers2(benchmark, int16_ram, int16_1gib):
    assert mmarray.median(int16_ram, workers=2) == exact_median(int16_1gib, "int16")
    benchmark(mmarray.median, int16_ram, workers=2)


@pytest.mark.benchmark(group="scaling-int16")
def test_scaling_int16_workers1(benchmark, int16_ram, int16_1gib):
    assert mmarray.median(int16_ram, workers=1) == exact_median(int16_1gib, "int16")
    benchmark(mmarray.median, int16_ram, workers=1)


@pytest.mark.benchmark(group="scaling-float64")
def test_scaling_float64_mmarray_workers2(benchmark, float64_ram, float64_1gib):
    assert mmarray.median(float64_ram, workers=2) == exact_median(float64_1gib, "float64")
    benchmark(mmarray.median, float64_ram, workers=2)


@pytest.mark.benchmark(group="scaling-float64")
def test_scaling_float64_workers1(benchmark, float64_ram, float64_1gib):
    assert mmarray.median(float64_ram, workers=1) == exact_median(float64_1gib, "float64")
    benchmark(mmarray.median, float64_ram, workers=1)
