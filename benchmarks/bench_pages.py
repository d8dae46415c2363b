"""Pages and files: cold and warm reads of a 1 GiB file with page-cache advice, and the
24 GiB sparse create from the mmap post.

Cold rounds start from a file evicted with ``mmarray.evict(path)`` (write back, then
``posix_fadvise(DONTNEED)``); each cold group records in ``extra_info`` the resident
fraction measured right after an eviction, so a run on a file system that keeps
evicted pages (tmpfs) shows it instead of passing off warm numbers as cold.

Floors: for the cold rows, the disk's sequential read bandwidth (``floor_disk_read``:
a plain loop of 64 MiB ``readinto`` calls over the evicted file); for the warm rows,
one read of the cached file (``floor[mapped]``, ``floor[pread]``: see
``conftest.ReadOnce``). Every timed call names the file by a str, as a user does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import mmarray

from .conftest import ReadOnce, time_floor

F8 = np.dtype("float64")
ROUNDS = 3


@pytest.fixture(scope="session")
def f8_sum(float64_1gib: Path) -> float:
    """The oracle: numpy's sum of the whole file."""
    return float(np.fromfile(float64_1gib, dtype=F8).sum())


def evicted(path: Path) -> float:
    """Evict the file; return the resident fraction left (0.0 when eviction works)."""
    mmarray.evict(path)
    probe = mmarray.open(path, dtype="u1")
    frac = mmarray.residency(probe).fraction
    del probe
    return frac


def sum_mmarray(path: Path, **kw: object) -> float:
    return float(mmarray.open(path, dtype=F8, **kw).sum())  # type: ignore[arg-type]


def sum_np_memmap(path: Path) -> float:
    return float(np.memmap(path, dtype=F8, mode="r").sum())


def sum_np_fromfile(path: Path) -> float:
    return float(np.fromfile(path, dtype=F8).sum())


def disk_read(path: str, buf: bytearray) -> int:
    """Read the whole file with large ``readinto`` calls into one buffer: the bytes read."""
    done, view = 0, memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            done += n
    return done


def cold(benchmark, path: Path | str, func, expect: float, *args, **kw) -> None:
    path = os.fspath(path)
    assert func(path, *args, **kw) == expect
    benchmark.extra_info["resident after evict"] = f"{evicted(path):.1%}"

    def setup() -> None:  # returns None: pedantic would take a value for the arguments
        evicted(path)

    benchmark.pedantic(func, args=(path, *args), kwargs=kw, setup=setup, rounds=ROUNDS)


def warm(benchmark, path: Path | str, func, expect: float, **kw) -> None:
    path = os.fspath(path)
    assert func(path, **kw) == expect  # also loads the page cache
    benchmark.pedantic(func, args=(path,), kwargs=kw, rounds=ROUNDS, iterations=1)


# ---- cold: read 1 GiB from disk --------------------------------------------------------------


@pytest.mark.benchmark(group="cold sum 1 GiB f8")
def test_cold_mmarray(benchmark, float64_1gib, f8_sum):
    """No advice: the kernel's default read-ahead."""
    cold(benchmark, float64_1gib, sum_mmarray, f8_sum)


@pytest.mark.benchmark(group="cold sum 1 GiB f8")
def test_cold_advice_sequential(benchmark, float64_1gib, f8_sum):
    cold(benchmark, float64_1gib, sum_mmarray, f8_sum, advice="sequential")


@pytest.mark.benchmark(group="cold sum 1 GiB f8")
def test_cold_advice_willneed(benchmark, float64_1gib, f8_sum):
    cold(benchmark, float64_1gib, sum_mmarray, f8_sum, advice="willneed")


@pytest.mark.benchmark(group="cold sum 1 GiB f8")
def test_cold_prefetch(benchmark, float64_1gib, f8_sum):
    """open(populate=True): MADV_POPULATE_READ before the sum (timed together)."""
    cold(benchmark, float64_1gib, sum_mmarray, f8_sum, populate=True)


@pytest.mark.benchmark(group="cold sum 1 GiB f8")
def test_cold_np_memmap(benchmark, float64_1gib, f8_sum):
    cold(benchmark, float64_1gib, sum_np_memmap, f8_sum)


@pytest.mark.benchmark(group="cold sum 1 GiB f8")
def test_cold_np_fromfile(benchmark, float64_1gib, f8_sum):
    cold(benchmark, float64_1gib, sum_np_fromfile, f8_sum)


@pytest.mark.benchmark(group="cold sum 1 GiB f8")
def test_cold_floor_disk_read(benchmark, float64_1gib):
    """The disk's sequential read bandwidth: the bytes read from the evicted file, no sum."""
    buf = bytearray(64 << 20)
    cold(benchmark, float64_1gib, disk_read, float64_1gib.stat().st_size, buf)


# ---- warm: the same with the file in the page cache ------------------------------------------


@pytest.mark.benchmark(group="warm sum 1 GiB f8")
def test_warm_mmarray(benchmark, float64_1gib, f8_sum):
    warm(benchmark, float64_1gib, sum_mmarray, f8_sum)


@pytest.mark.benchmark(group="warm sum 1 GiB f8")
def test_warm_prefetch(benchmark, float64_1gib, f8_sum):
    """Populating page tables up front instead of one fault per 4 KiB page."""
    warm(benchmark, float64_1gib, sum_mmarray, f8_sum, populate=True)


@pytest.mark.benchmark(group="warm sum 1 GiB f8")
def test_warm_np_memmap(benchmark, float64_1gib, f8_sum):
    warm(benchmark, float64_1gib, sum_np_memmap, f8_sum)


@pytest.mark.benchmark(group="warm sum 1 GiB f8")
def test_warm_np_fromfile(benchmark, float64_1gib, f8_sum):
    warm(benchmark, float64_1gib, sum_np_fromfile, f8_sum)


@pytest.mark.benchmark(group="warm sum 1 GiB f8")
@pytest.mark.parametrize("kind", ["mapped", "pread"])
def test_warm_floor(benchmark, float64_1gib, read_once: ReadOnce, kind):
    time_floor(benchmark, read_once, float64_1gib, kind)


# ---- sparse create of 24 GiB -----------------------------------------------------------------

SHAPE = (2**30, 3)  # 24 GiB of float64, whatever the scale: it is sparse


def _create_rounds(benchmark, path: Path, make) -> None:
    def fresh() -> None:
        path.unlink(missing_ok=True)

    fresh()
    a = make(path)
    assert a.shape == SHAPE and a.dtype == F8 and a[-1, -1] == 0.0
    use = mmarray.disk_usage(path)
    assert use.apparent >= 24 * 2**30
    benchmark.extra_info["allocated bytes"] = use.allocated
    del a
    benchmark.pedantic(make, args=(path,), setup=fresh, rounds=20, iterations=1)
    fresh()


@pytest.mark.benchmark(group="sparse create 24 GiB")
def test_create_sparse_mmarray(benchmark, bench_dir):
    _create_rounds(benchmark, bench_dir / "sparse.npy", lambda p: mmarray.create(p, SHAPE, F8))


@pytest.mark.benchmark(group="sparse create 24 GiB")
def test_create_sparse_np_memmap_raw(benchmark, bench_dir):
    _create_rounds(
        benchmark, bench_dir / "sparse.raw", lambda p: np.memmap(p, F8, mode="w+", shape=SHAPE)
    )


@pytest.mark.benchmark(group="sparse create 24 GiB")
def test_create_sparse_np_open_memmap_npy(benchmark, bench_dir):
    _create_rounds(
        benchmark,
        bench_dir / "sparse2.npy",
        lambda p: np.lib.format.open_memmap(p, mode="w+", dtype=F8, shape=SHAPE),
    )
