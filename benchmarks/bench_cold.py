"""Cold files: the exact median of an evicted file against the disk's sequential read
bandwidth, and two opt-in runs at full size.

- ``cold median 4 GiB int16``: ``mmarray.median(mmarray.open(p, dtype=np.int16))`` on
  a file evicted before every round (``mmarray.evict``): as it runs by default
  (``mmarray``: the kernels read ahead from 1 GiB up), without the kernels' read-ahead
  (``no_readahead``), and with no stream at all (``no_stream``: as before
  src/select/readahead.c; the same as ``no_readahead`` below the drop-behind size). Floors:
  ``floor_disk_read``, a plain loop of 64 MiB ``readinto`` calls over the evicted file,
  and ``floor_disk_direct``, the same with ``O_DIRECT`` (no page cache, no copy: the
  device's own bandwidth). Bar: the median at least at 90% of the faster floor's
  bandwidth ("vs floor" at most 1.11x).
- ``MMARRAY_BENCH_HUGE=1``: ``cold median > memory int16``, a file 10% larger than the
  memory available (``MemAvailable``, or this process's memory cgroup limit where it is
  lower), reduced once with drop-behind (``mmarray``, the default at that size) and once
  without read-ahead or drop-behind (``no_stream``); before and after each, the resident
  fraction of another cached 1 GiB file is recorded (``extra_info``): drop-behind must
  leave it in memory. Floor: ``floor_disk_direct`` (a plain read loop would itself
  evict every other file).
- ``MMARRAY_BENCH_POST=1``: the mmap post's 10 GB int16 median at its full size (5 Gi
  values): ``mmarray.median`` cold (against the direct-read floor) and warm (against
  the post's two ``multiprocessing.Pool`` recipes with its 128 Mi-value chunks, on the
  same cached file, and the mapped-read floor).

The answers are checked against numpy's: for these sizes numpy's median of int16 is
computed from ``np.bincount`` counts gathered while the file is written (the two middle
values' mean, as ``np.median`` takes it). Every file is deleted after its module; none
is created where the file system has less than its size plus 8 GiB free.
"""

from __future__ import annotations

import mmap
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import mmarray
from mmarray import _cache

from .bench_median import pool_pickled, pool_reopen
from .bench_pages import disk_read, evicted
from .conftest import FLOOR_WHAT, SCALE, WORKERS, GiB, ReadOnce, _sum_words, timed

I2 = np.dtype("int16")
ROUNDS = 3
POST_CHUNK = 128 * 1024 * 1024  # values per chunk of the post's Pool recipes
MARGIN = 8 * GiB  # free space left on the file system after a file is written


# ---- files with their numpy median ----------------------------------------------------


def write_int16(path: Path, n: int, seed: int) -> float:
    """Write n random int16 to path in 64 MiB pieces (fsync-ed); return numpy's median of
    them, from the counts of every value (np.bincount), as np.median computes it."""
    free = shutil.disk_usage(path.parent).free
    if free < n * 2 + MARGIN:
        pytest.skip(f"{free / GiB:.1f} GiB free: too little for a {n * 2 / GiB:.1f} GiB file")
    rng = np.random.default_rng(seed)
    counts = np.zeros(65536, dtype=np.int64)
    step = 32 << 20
    with open(path, "wb") as f:
        for start in range(0, n, step):
            block = rng.integers(-32768, 32767, size=min(step, n - start), dtype=I2, endpoint=True)
            counts += np.bincount(block.view(np.uint16) ^ 0x8000, minlength=65536)
            block.tofile(f)
        f.flush()
        os.fsync(f.fileno())
    cum = np.cumsum(counts)
    lo, hi = ((n - 1) // 2, n // 2)  # the middle ranks
    vlo = int(np.searchsorted(cum, lo, side="right")) - 32768
    vhi = int(np.searchsorted(cum, hi, side="right")) - 32768
    return float(np.mean(np.array([vlo, vhi], dtype=np.float64)))


def cold_median(path: str) -> float:
    return float(mmarray.median(mmarray.open(path, dtype=I2)))


def cold_median_with(path: str, setting: str, value: int) -> float:
    """cold_median with one of ``mmarray._cache``'s stream settings changed for the call."""
    keep = getattr(_cache, setting)
    setattr(_cache, setting, value)
    try:
        return cold_median(path)
    finally:
        setattr(_cache, setting, keep)


def cold_median_no_stream(path: str) -> float:
    """Neither read-ahead nor drop-behind: ``stream_mode`` off (as before readahead.c)."""
    return cold_median_with(path, "_STREAM_MIN", 1 << 62)


def cold_median_no_readahead(path: str) -> float:
    """The kernels' read-ahead off (drop-behind as by default): page faults alone."""
    return cold_median_with(path, "_READ_AHEAD_MIN", 1 << 62)


def direct_read(path: str) -> int:
    """Read the whole file with O_DIRECT 64 MiB reads into one page-aligned buffer: the
    device's sequential bandwidth, bypassing (and leaving alone) the page cache."""
    buf = mmap.mmap(-1, 64 << 20)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        done = 0
        while (n := os.preadv(fd, [buf], done)) > 0:
            done += n
        return done
    finally:
        os.close(fd)
        buf.close()


def evictor(path: str):
    """pytest-benchmark's setup: evict the file (and return None: no arguments)."""

    def setup() -> None:
        evicted(Path(path))

    return setup


def cold_rounds(benchmark, path: str, fn, expect: object, rounds: int = ROUNDS) -> None:
    """Time fn(path) from an evicted file (evicted before every round); the resident
    fraction right after an eviction and the bandwidth go to extra_info."""
    benchmark.extra_info["resident after evict"] = f"{evicted(Path(path)):.1%}"
    got = benchmark.pedantic(fn, args=(path,), setup=evictor(path), rounds=rounds, iterations=1)
    assert got == expect
    best = benchmark.stats.stats.min
    benchmark.extra_info["GB/s (best round)"] = round(os.path.getsize(path) / best / 1e9, 2)


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


# ---- an evicted 4 GiB file ------------------------------------------------------------


@pytest.fixture(scope="module")
def int16_4gib(bench_dir: Path) -> Iterator[tuple[str, float]]:
    p = bench_dir / "cold4.raw"
    median = write_int16(p, max(1 << 26, int(4 * GiB * SCALE) // 2), seed=4)
    yield os.fspath(p), median
    p.unlink()


@pytest.mark.benchmark(group="cold median 4 GiB int16")
def test_cold4_median_mmarray(benchmark, int16_4gib):
    path, median = int16_4gib
    benchmark.extra_info["machine"] = load()
    cold_rounds(benchmark, path, cold_median, median)


@pytest.mark.benchmark(group="cold median 4 GiB int16")
def test_cold4_median_no_readahead(benchmark, int16_4gib):
    path, median = int16_4gib
    cold_rounds(benchmark, path, cold_median_no_readahead, median)


@pytest.mark.benchmark(group="cold median 4 GiB int16")
def test_cold4_median_no_stream(benchmark, int16_4gib):
    path, median = int16_4gib
    cold_rounds(benchmark, path, cold_median_no_stream, median)


@pytest.mark.benchmark(group="cold median 4 GiB int16")
def test_cold4_floor_disk_read(benchmark, int16_4gib):
    path, _ = int16_4gib
    buf = bytearray(64 << 20)
    cold_rounds(benchmark, path, lambda p: disk_read(p, buf), os.path.getsize(path))


@pytest.mark.benchmark(group="cold median 4 GiB int16")
def test_cold4_floor_disk_direct(benchmark, int16_4gib):
    path, _ = int16_4gib
    cold_rounds(benchmark, path, direct_read, os.path.getsize(path))


# ---- opt-in: a file larger than memory -------------------------------------------------

HUGE = os.environ.get("MMARRAY_BENCH_HUGE") == "1"
POST = os.environ.get("MMARRAY_BENCH_POST") == "1"


def memory_limit() -> int:
    """The memory this process may fill: MemAvailable, or its memory cgroup's limit
    (v2 memory.max, v1 memory.limit_in_bytes) where that is lower."""
    limit = _cache._memory_available()
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        names = ["memory.max"] if controllers == "" else ["memory.limit_in_bytes"]
        if controllers not in ("", "memory") and "memory" not in controllers.split(","):
            continue
        root = "/sys/fs/cgroup" if controllers == "" else "/sys/fs/cgroup/memory"
        for name in names:
            try:
                value = Path(root + rel, name).read_text().strip()
            except OSError:
                continue
            if value.isdigit():
                limit = min(limit, int(value))
    return limit


def resident(path: str) -> float:
    """The resident fraction of a file (a fresh mapping: the page cache, not our tables)."""
    probe = mmarray.open(path, dtype="u1")
    frac = mmarray.residency(probe).fraction
    del probe
    return frac


@pytest.fixture(scope="module")
def huge(bench_dir: Path, int16_1gib: Path) -> Iterator[tuple[str, float, str, int]]:
    if not HUGE:
        pytest.skip("opt-in: MMARRAY_BENCH_HUGE=1")
    limit = memory_limit()
    n = int(limit * 1.1) // 2 // (1 << 20) * (1 << 20)
    p = bench_dir / "huge.raw"
    median = write_int16(p, n, seed=5)
    other = os.fspath(int16_1gib)
    yield os.fspath(p), median, other, limit
    p.unlink()


def huge_once(benchmark, huge, fn) -> None:
    path, median, other, limit = huge
    np.add.reduce(np.fromfile(other, dtype=np.uint64))  # the other file: cached
    benchmark.extra_info["file GiB"] = round(os.path.getsize(path) / GiB, 1)
    benchmark.extra_info["memory limit GiB"] = round(limit / GiB, 1)
    benchmark.extra_info["other file resident before"] = f"{resident(other):.1%}"
    benchmark.extra_info["machine"] = load()
    got = benchmark.pedantic(fn, args=(path,), setup=evictor(path), rounds=1, iterations=1)
    assert got == median
    benchmark.extra_info["other file resident after"] = f"{resident(other):.1%}"
    benchmark.extra_info["this file resident after"] = f"{resident(path):.1%}"
    best = benchmark.stats.stats.min
    benchmark.extra_info["GB/s"] = round(os.path.getsize(path) / best / 1e9, 2)


@pytest.mark.benchmark(group="cold median > memory int16")
def test_huge_median_mmarray(benchmark, huge):
    """Drop-behind on (the default: the file is larger than half the memory available)."""
    a = mmarray.open(huge[0], dtype=I2)
    assert _cache.stream_mode(a, 1, mmarray.region(a)) & _cache._DROP_BEHIND
    del a
    huge_once(benchmark, huge, cold_median)


@pytest.mark.benchmark(group="cold median > memory int16")
def test_huge_median_no_stream(benchmark, huge):
    """Neither read-ahead nor drop-behind: the kernel's read-around and LRU alone."""
    huge_once(benchmark, huge, cold_median_no_stream)


@pytest.mark.benchmark(group="cold median > memory int16")
def test_huge_floor_disk_direct(benchmark, huge):
    path = huge[0]
    benchmark.pedantic(direct_read, args=(path,), rounds=1, iterations=1)
    benchmark.extra_info["GB/s"] = round(os.path.getsize(path) / benchmark.stats.stats.min / 1e9, 2)


# ---- opt-in: the post's 10 GB int16 median at full size --------------------------------


@pytest.fixture(scope="module")
def post_file(bench_dir: Path) -> Iterator[tuple[str, float, int]]:
    if not POST:
        pytest.skip("opt-in: MMARRAY_BENCH_POST=1")
    n = 5 * 1024**3  # 5 Gi values: 10 GiB
    p = bench_dir / "post.raw"
    median = write_int16(p, n, seed=6)
    yield os.fspath(p), median, n
    p.unlink()


@pytest.mark.benchmark(group="post: 10 GiB int16 median, cold")
def test_post_cold_median_mmarray(benchmark, post_file):
    path, median, _ = post_file
    benchmark.extra_info["machine"] = load()
    cold_rounds(benchmark, path, cold_median, median, rounds=1)


@pytest.mark.benchmark(group="post: 10 GiB int16 median, cold")
def test_post_cold_floor_disk_direct(benchmark, post_file):
    path, _, _ = post_file
    cold_rounds(benchmark, path, direct_read, os.path.getsize(path), rounds=1)


@pytest.mark.benchmark(group="post: 10 GiB int16 median, warm")
def test_post_warm_median_mmarray(benchmark, post_file):
    path, median, _ = post_file
    a = mmarray.open(path, dtype=I2)
    mmarray.prefetch(a)
    assert mmarray.median(a) == median
    benchmark.extra_info["machine"] = load()
    timed(benchmark, mmarray.median, a, rounds=3)


@pytest.mark.benchmark(group="post: 10 GiB int16 median, warm")
def test_post_warm_pool_pickled(benchmark, post_file):
    """The post's first recipe: chunks of 128 Mi values pickled to Pool workers."""
    path, median, n = post_file
    a = np.memmap(path, dtype=I2, mode="r")
    fn = lambda: pool_pickled(a, chunks=n // POST_CHUNK, processes=WORKERS)  # noqa: E731
    res = benchmark.pedantic(fn, rounds=1, iterations=1)
    assert abs(res - median) < 100  # approximate: the median of chunk medians


@pytest.mark.benchmark(group="post: 10 GiB int16 median, warm")
def test_post_warm_pool_reopen(benchmark, post_file):
    """The post's second recipe: Pool workers reopen the file and take their chunk."""
    path, median, n = post_file
    fn = lambda: pool_reopen(path, "int16", n, chunks=n // POST_CHUNK, processes=WORKERS)  # noqa: E731
    res = benchmark.pedantic(fn, rounds=1, iterations=1)
    assert abs(res - median) < 100  # approximate


def chunked_checksum(path: str) -> int:
    """ReadOnce.checksum of a file too big to read into memory at once: the 8-byte
    words' sum, 256 MiB at a time (the sum mod 2**64 adds up piece by piece)."""
    total, step = 0, 256 << 20
    with open(path, "rb") as f:
        while piece := f.read(step):
            total += _sum_words(np.frombuffer(piece, dtype=np.uint8))
    return total % (1 << 64)


@pytest.mark.benchmark(group="post: 10 GiB int16 median, warm")
def test_post_warm_floor_mapped(benchmark, post_file, read_once: ReadOnce):
    path = post_file[0]
    assert read_once.mapped(path) == chunked_checksum(path)
    benchmark.extra_info["floor"] = FLOOR_WHAT["mapped"]
    timed(benchmark, read_once.mapped, path, rounds=3)
