"""Exact median and quantiles: mmarray against np.median, the multiprocessing recipes,
the libraries a user would pick instead (polars, pyarrow, duckdb) and the floor.

Groups (the case named ``mmarray`` is the reference; ratios are peer / mmarray; a
case named ``floor`` bounds the group, see ``conftest.ReadOnce``):

- ``median-int16``: 1 GiB int16 file. Peers: ``np.median``; ``Pool(2).map(np.median,
  chunks)`` with pickled chunks (approximate); ``Pool(2)`` workers that reopen the
  file (approximate); polars, pyarrow, duckdb; and mmarray again on a fresh mapping
  per call (``open_and_median``). Extra: peak extra anonymous memory (``RssAnon``)
  of mmarray.
- ``median-float64``, ``median-float32``: 1 GiB float64 and 512 MiB float32 files
  against ``np.median`` (float64 also against polars, pyarrow, duckdb).
- ``quantile9-float64``: 9 quantiles in one call against one median (bar: the
  median peer's ratio is at least 1/1.5), and against the peers' 9 quantiles.
- ``scaling-int16``, ``scaling-float64``: in RAM, ``workers=2`` (reference) against
  ``workers=1``.

Every case reduces the same array, mapped once from the file and kept (what a user
does: ``a = mmarray.open(path)``, then ``timeit`` on the call). The peers are timed
as a user calls them on that numpy array, the conversion included:
``pl.Series(a).median()`` (zero-copy for a contiguous numeric array),
``pyarrow.compute.quantile(a, q, interpolation='linear')`` (pyarrow wraps the numpy
buffer without a copy), ``duckdb.sql("select median(x) from arr")`` with
``arr = {"x": a}`` (duckdb scans the numpy array in place; ``quantile_cont`` with the
list of 9 for the quantiles). polars takes the 9 quantiles in one call where its
version accepts a list (``Series.quantile([...])``), else one call per quantile.
Each peer's answer is checked against numpy's before it is timed: medians and
quantiles within 4 ulp (integer medians exactly: a half-integer is exact in any
formula), and the report says which are bit-identical (pyarrow and
duckdb compute the linear interpolation with their own formula: some of the 9
quantiles differ from numpy's in the last bit; polars and every median agree bit
for bit in the runs so far).
"""

from __future__ import annotations

import functools
import os
import threading
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pytest

import mmarray

from .conftest import ROUNDS, SLOW_ROUNDS, ReadOnce, time_floor, timed

CHUNKS = 16  # chunks of the multiprocessing recipes


@functools.cache
def exact_median(path: Path, dtype: str) -> float:
    return float(np.median(np.fromfile(path, dtype=dtype)))


@functools.cache
def exact_quantiles(path: Path) -> np.ndarray:
    return np.quantile(np.fromfile(path, dtype=np.float64), Q9)


Q9 = np.linspace(0.1, 0.9, 9)


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


def pool_pickled(a: np.ndarray, chunks: int = CHUNKS, processes: int = 2) -> float:
    parts = [np.asarray(c) for c in np.array_split(a, chunks)]
    with Pool(processes) as pool:
        return float(np.median(pool.map(np.median, parts)))


def pool_reopen(
    path: Path | str, dtype: str, n: int, chunks: int = CHUNKS, processes: int = 2
) -> float:
    bounds = np.linspace(0, n, chunks + 1).astype(int)
    jobs = [(str(path), dtype, int(bounds[i]), int(bounds[i + 1])) for i in range(chunks)]
    with Pool(processes) as pool:
        return float(np.median(pool.map(chunk_median_reopen, jobs)))


# ---- the peers: what a user would pick instead --------------------------------------


def polars_median(a: np.ndarray) -> float:
    import polars as pl

    return pl.Series(a).median()


def polars_quantiles(a: np.ndarray, q: np.ndarray) -> list[float]:
    import polars as pl

    s = pl.Series(a)
    try:
        return list(s.quantile([float(v) for v in q], interpolation="linear"))
    except TypeError:  # a polars that takes one quantile per call
        return [s.quantile(float(v), interpolation="linear") for v in q]


def pyarrow_median(a: np.ndarray) -> float:
    import pyarrow.compute as pc

    return pc.quantile(a, q=0.5, interpolation="linear")[0].as_py()


def pyarrow_quantiles(a: np.ndarray, q: np.ndarray) -> list[float]:
    import pyarrow.compute as pc

    return pc.quantile(a, q=[float(v) for v in q], interpolation="linear").to_pylist()


def duckdb_median(a: np.ndarray) -> float:
    import duckdb

    arr = {"x": a}  # noqa: F841 - duckdb finds the local by its name in the query
    return duckdb.sql("select median(x) from arr").fetchall()[0][0]


def duckdb_quantiles(a: np.ndarray, q: np.ndarray) -> list[float]:
    import duckdb

    arr = {"x": a}  # noqa: F841 - duckdb finds the local by its name in the query
    qs = [float(v) for v in q]
    return duckdb.sql(f"select quantile_cont(x, {qs}) from arr").fetchall()[0][0]


PEERS = {"polars": "polars", "pyarrow": "pyarrow.compute", "duckdb": "duckdb"}
TIMED = {
    "polars": "pl.Series(a) (zero-copy) + .median() / .quantile(q, interpolation='linear')",
    "pyarrow": "pc.quantile(a, q, interpolation='linear') on the numpy array (wrapped, no copy)",
    "duckdb": "duckdb.sql('select median(x) / quantile_cont(x, [q]) from arr'), arr={'x': a}",
}


def check_peer(benchmark, got: object, want: object) -> None:
    """got equals numpy's want within 4 ulp; extra_info says whether bit for bit."""
    g = np.asarray(got, dtype=np.float64)
    w = np.asarray(want, dtype=np.float64)
    assert g.shape == w.shape
    ulps = float((np.abs(g - w) / np.spacing(np.abs(w))).max())
    assert ulps <= 4, f"{got} != numpy's {want}"
    benchmark.extra_info["answer vs numpy"] = (
        "bit-identical" if ulps == 0 else f"within {ulps:.0f} ulp (its own interpolation formula)"
    )


def time_peer(benchmark, peer: str, fn, want: object, *args: object) -> None:
    """Check the peer's answer (its warm-up call), then time it like every case."""
    pytest.importorskip(PEERS[peer], reason="the bench extra: pip install -e '.[bench]'")
    t0 = time.perf_counter()
    got = fn(*args)
    seconds = time.perf_counter() - t0
    if isinstance(args[0], np.ndarray) and args[0].dtype.kind in "iu":
        assert got == want, f"{peer}: median {got} != numpy's {want}"  # exact in any formula
    check_peer(benchmark, got, want)
    benchmark.extra_info["timed"] = TIMED[peer]
    timed(benchmark, fn, *args, rounds=ROUNDS if seconds < 1 else SLOW_ROUNDS)


def kept(path: Path, dtype: object) -> np.ndarray:
    """The array a user keeps: mapped once (from a str path), pages mapped by a first read."""
    a = mmarray.open(os.fspath(path), dtype=dtype)
    np.add.reduce(a[:: mmarray.PAGESIZE // a.itemsize])
    return a


# ---- 1 GiB int16 ----------------------------------------------------------------------


@pytest.mark.benchmark(group="median-int16")
def test_median_int16_mmarray(benchmark, int16_1gib):
    a = kept(int16_1gib, np.int16)
    res, extra = peak_extra_anon(lambda: mmarray.median(a))
    assert res == exact_median(int16_1gib, "int16")
    benchmark.extra_info["peak extra RssAnon MiB"] = round(extra / 2**20, 1)
    assert extra <= 64 << 20
    timed(benchmark, mmarray.median, a)


@pytest.mark.benchmark(group="median-int16")
def test_median_int16_open_and_median(benchmark, int16_1gib):
    """The same with the array dropped: each call maps the file afresh and faults its
    pages in (``mmarray.median(mmarray.open(p, dtype=np.int16))`` in a timeit loop)."""
    path = os.fspath(int16_1gib)
    fn = lambda: mmarray.median(mmarray.open(path, dtype=np.int16))  # noqa: E731
    assert fn() == exact_median(int16_1gib, "int16")
    timed(benchmark, fn)


@pytest.mark.benchmark(group="median-int16")
def test_median_int16_numpy(benchmark, int16_1gib):
    a = np.memmap(os.fspath(int16_1gib), dtype=np.int16, mode="r")
    res, extra = peak_extra_anon(lambda: np.median(a))
    assert res == exact_median(int16_1gib, "int16")
    benchmark.extra_info["peak extra RssAnon MiB"] = round(extra / 2**20, 1)
    timed(benchmark, np.median, a, rounds=SLOW_ROUNDS)


@pytest.mark.benchmark(group="median-int16")
def test_median_int16_pool_pickled(benchmark, int16_1gib):
    a = np.memmap(os.fspath(int16_1gib), dtype=np.int16, mode="r")
    res = pool_pickled(a)
    assert -32768 <= res <= 32767  # approximate: the median of chunk medians
    benchmark.extra_info["bytes pickled"] = int(a.nbytes)
    timed(benchmark, pool_pickled, a, rounds=SLOW_ROUNDS)


@pytest.mark.benchmark(group="median-int16")
def test_median_int16_pool_reopen(benchmark, int16_1gib):
    n = int16_1gib.stat().st_size // 2
    path = os.fspath(int16_1gib)
    res = pool_reopen(path, "int16", n)
    assert abs(res - exact_median(int16_1gib, "int16")) < 100  # approximate
    timed(benchmark, pool_reopen, path, "int16", n, rounds=SLOW_ROUNDS)


@pytest.mark.benchmark(group="median-int16")
def test_median_int16_estimate(benchmark, int16_1gib):
    a = kept(int16_1gib, np.int16)
    res = mmarray.median_estimate(a)
    assert abs(res - exact_median(int16_1gib, "int16")) < 100
    timed(benchmark, mmarray.median_estimate, a)


@pytest.mark.benchmark(group="median-int16")
@pytest.mark.parametrize("peer", ["polars", "pyarrow", "duckdb"])
def test_median_int16_peer(benchmark, int16_1gib, peer):
    a = kept(int16_1gib, np.int16)
    fn = globals()[f"{peer}_median"]
    time_peer(benchmark, peer, fn, exact_median(int16_1gib, "int16"), a)


@pytest.mark.benchmark(group="median-int16")
@pytest.mark.parametrize("kind", ["mapped", "pread"])
def test_median_int16_floor(benchmark, int16_1gib, read_once: ReadOnce, kind):
    time_floor(benchmark, read_once, int16_1gib, kind)


# ---- floats ---------------------------------------------------------------------------


@pytest.mark.benchmark(group="median-float64")
def test_median_float64_mmarray(benchmark, float64_1gib):
    a = kept(float64_1gib, np.float64)
    assert mmarray.median(a) == exact_median(float64_1gib, "float64")
    timed(benchmark, mmarray.median, a)


@pytest.mark.benchmark(group="median-float64")
def test_median_float64_numpy(benchmark, float64_1gib):
    a = np.memmap(os.fspath(float64_1gib), dtype=np.float64, mode="r")
    assert np.median(a) == exact_median(float64_1gib, "float64")
    timed(benchmark, np.median, a, rounds=SLOW_ROUNDS)


@pytest.mark.benchmark(group="median-float64")
@pytest.mark.parametrize("peer", ["polars", "pyarrow", "duckdb"])
def test_median_float64_peer(benchmark, float64_1gib, peer):
    a = kept(float64_1gib, np.float64)
    fn = globals()[f"{peer}_median"]
    time_peer(benchmark, peer, fn, exact_median(float64_1gib, "float64"), a)


@pytest.mark.benchmark(group="median-float64")
@pytest.mark.parametrize("kind", ["mapped", "pread"])
def test_median_float64_floor(benchmark, float64_1gib, read_once: ReadOnce, kind):
    time_floor(benchmark, read_once, float64_1gib, kind)


@pytest.mark.benchmark(group="median-float32")
def test_median_float32_mmarray(benchmark, float32_512mib):
    a = kept(float32_512mib, np.float32)
    assert mmarray.median(a) == exact_median(float32_512mib, "float32")
    timed(benchmark, mmarray.median, a)


@pytest.mark.benchmark(group="median-float32")
def test_median_float32_numpy(benchmark, float32_512mib):
    a = np.memmap(os.fspath(float32_512mib), dtype=np.float32, mode="r")
    assert np.median(a) == exact_median(float32_512mib, "float32")
    timed(benchmark, np.median, a, rounds=SLOW_ROUNDS)


@pytest.mark.benchmark(group="quantile9-float64")
def test_quantile9_float64_mmarray(benchmark, float64_1gib):
    a = kept(float64_1gib, np.float64)
    np.testing.assert_array_equal(mmarray.quantile(a, Q9), exact_quantiles(float64_1gib))
    timed(benchmark, mmarray.quantile, a, Q9)


@pytest.mark.benchmark(group="quantile9-float64")
def test_quantile9_float64_one_median(benchmark, float64_1gib):
    a = kept(float64_1gib, np.float64)
    assert mmarray.median(a) == exact_median(float64_1gib, "float64")
    timed(benchmark, mmarray.median, a)


@pytest.mark.benchmark(group="quantile9-float64")
@pytest.mark.parametrize("peer", ["polars", "pyarrow", "duckdb"])
def test_quantile9_float64_peer(benchmark, float64_1gib, peer):
    a = kept(float64_1gib, np.float64)
    fn = globals()[f"{peer}_quantiles"]
    time_peer(benchmark, peer, fn, exact_quantiles(float64_1gib), a, Q9)


@pytest.mark.benchmark(group="quantile9-float64")
@pytest.mark.parametrize("kind", ["mapped", "pread"])
def test_quantile9_float64_floor(benchmark, float64_1gib, read_once: ReadOnce, kind):
    time_floor(benchmark, read_once, float64_1gib, kind)


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
    timed(benchmark, functools.partial(mmarray.median, workers=2), int16_ram)


@pytest.mark.benchmark(group="scaling-int16")
def test_scaling_int16_workers1(benchmark, int16_ram, int16_1gib):
    assert mmarray.median(int16_ram, workers=1) == exact_median(int16_1gib, "int16")
    timed(benchmark, functools.partial(mmarray.median, workers=1), int16_ram)


@pytest.mark.benchmark(group="scaling-float64")
def test_scaling_float64_mmarray_workers2(benchmark, float64_ram, float64_1gib):
    assert mmarray.median(float64_ram, workers=2) == exact_median(float64_1gib, "float64")
    timed(benchmark, functools.partial(mmarray.median, workers=2), float64_ram)


@pytest.mark.benchmark(group="scaling-float64")
def test_scaling_float64_workers1(benchmark, float64_ram, float64_1gib):
    assert mmarray.median(float64_ram, workers=1) == exact_median(float64_1gib, "float64")
    timed(benchmark, functools.partial(mmarray.median, workers=1), float64_ram)
