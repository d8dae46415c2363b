"""Opening mapped files: mmarray.open vs np.memmap vs np.load(mmap_mode='r'), and the
table from the mmap post (10,000,000 x 3 float64: open + sum).

An open is timed as ``timeit.repeat(lambda: mmarray.open(p, dtype=F8), number=200)``
with ``p`` a str: each sample is 200 calls, each call drops its array (the ``munmap``
and ``close`` are in the time, as in a user's loop). See ``conftest`` for why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mmarray
from mmarray import Region

from .conftest import GiB, scaled, timed, timed_like_timeit

F8 = np.dtype("float64")
NUMBER = 200  # calls per sample of an open (timeit's number)


@pytest.fixture(scope="session")
def raw_1gib(float64_1gib: Path) -> str:
    """The 1 GiB float64 data file, named by a str as a user types it."""
    return os.fspath(float64_1gib)


@pytest.fixture(scope="session")
def npy_1gib(bench_dir: Path, float64_1gib: Path) -> str:
    """A 1 GiB ``.npy`` of the same data (header, then the raw file's bytes)."""
    p = bench_dir / "open.npy"
    n = float64_1gib.stat().st_size // F8.itemsize
    with open(p, "wb") as out, open(float64_1gib, "rb") as src:
        np.lib.format.write_array_header_1_0(
            out, {"descr": F8.str, "fortran_order": False, "shape": (n,)}
        )
        shutil.copyfileobj(src, out, 64 << 20)
        out.flush()
        os.fsync(out.fileno())
    return os.fspath(p)


@pytest.mark.benchmark(group="open 1 GiB raw")
def test_open_raw_mmarray(benchmark, raw_1gib):
    n = os.path.getsize(raw_1gib) // F8.itemsize
    assert mmarray.open(raw_1gib, dtype=F8).shape == (n,)
    timed_like_timeit(benchmark, lambda: mmarray.open(raw_1gib, dtype=F8), NUMBER)


@pytest.mark.benchmark(group="open 1 GiB raw")
def test_open_raw_np_memmap(benchmark, raw_1gib):
    n = os.path.getsize(raw_1gib) // F8.itemsize
    assert np.memmap(raw_1gib, dtype=F8, mode="r").shape == (n,)
    timed_like_timeit(benchmark, lambda: np.memmap(raw_1gib, dtype=F8, mode="r"), NUMBER)


@pytest.mark.benchmark(group="open 1 GiB raw")
def test_open_raw_floor_region_open(benchmark, raw_1gib):
    """The floor: open + fstat + mmap, then munmap + close, in one C call."""
    assert Region.open(raw_1gib).size == os.path.getsize(raw_1gib)
    timed_like_timeit(benchmark, lambda: Region.open(raw_1gib), NUMBER)


@pytest.mark.benchmark(group="open 1 GiB npy")
def test_open_npy_mmarray(benchmark, npy_1gib):
    assert np.array_equal(mmarray.open(npy_1gib)[:4], np.load(npy_1gib, mmap_mode="r")[:4])
    timed_like_timeit(benchmark, lambda: mmarray.open(npy_1gib), NUMBER)


@pytest.mark.benchmark(group="open 1 GiB npy")
def test_open_npy_np_load(benchmark, npy_1gib):
    assert np.load(npy_1gib, mmap_mode="r").dtype == F8
    timed_like_timeit(benchmark, lambda: np.load(npy_1gib, mmap_mode="r"), NUMBER)


@pytest.mark.benchmark(group="open 1 GiB npy")
def test_open_npy_floor_region_open(benchmark, npy_1gib):
    """The floor: the same syscalls as a raw open, on the .npy file (no header read)."""
    assert Region.open(npy_1gib).size == os.path.getsize(npy_1gib)
    timed_like_timeit(benchmark, lambda: Region.open(npy_1gib), NUMBER)


# ---- the post's table: 10,000,000 x 3 float64, open + sum ----------------------

ROWS = scaled(10_000_000 * 24, 24)


@pytest.fixture(scope="session")
def table_files(bench_dir: Path) -> tuple[str, str, float]:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 1000, size=(ROWS, 3)).astype(F8)  # short CSV fields
    raw = bench_dir / "table.raw"
    with open(raw, "wb") as f:
        data.tofile(f)
        f.flush()
        os.fsync(f.fileno())
    csv = bench_dir / "table.csv"
    np.savetxt(csv, data, fmt="%d")
    return os.fspath(raw), os.fspath(csv), float(data.sum())


@pytest.mark.benchmark(group="post table: 10M x 3 open + sum")
def test_table_mmarray_open(benchmark, table_files):
    raw, _, total = table_files
    fn = lambda: mmarray.open(raw, dtype=F8, shape=(ROWS, 3)).sum()  # noqa: E731
    assert fn() == total
    timed(benchmark, fn, rounds=15)


@pytest.mark.benchmark(group="post table: 10M x 3 open + sum")
def test_table_np_memmap(benchmark, table_files):
    raw, _, total = table_files
    fn = lambda: np.memmap(raw, dtype=F8, mode="r", shape=(ROWS, 3)).sum()  # noqa: E731
    assert fn() == total
    timed(benchmark, fn, rounds=15)


@pytest.mark.benchmark(group="post table: 10M x 3 open + sum")
def test_table_np_fromfile(benchmark, table_files):
    raw, _, total = table_files
    fn = lambda: np.fromfile(raw, dtype=F8).sum()  # noqa: E731
    assert fn() == total
    timed(benchmark, fn, rounds=15)


@pytest.mark.benchmark(group="post table: 10M x 3 open + sum")
def test_table_np_loadtxt(benchmark, table_files):
    _, csv, total = table_files
    fn = lambda: np.loadtxt(csv).sum()  # noqa: E731
    assert benchmark.pedantic(fn, rounds=1, iterations=1) == total


# ---- zero copy: peak RSS of opening a 10 GiB sparse file -------------------------

PEAK = """
import sys, numpy as np, mmarray
def hwm():
    return int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])
before = hwm()
a = mmarray.open(sys.argv[1], dtype='float64')
assert a.nbytes == 10 * 2**30
print(hwm() - before)
"""


@pytest.mark.benchmark(group="open 10 GiB sparse: peak RSS")
def test_zero_copy_peak_rss_mmarray(benchmark, bench_dir):
    p = bench_dir / "ten.raw"
    with open(p, "wb") as f:
        f.truncate(10 * GiB)
    out = subprocess.run([sys.executable, "-c", PEAK, str(p)], capture_output=True, text=True)
    kib = int(out.stdout)
    assert kib < 1024
    benchmark.extra_info["peak RSS increase (KiB)"] = kib
    timed_like_timeit(benchmark, lambda: mmarray.open(os.fspath(p), dtype=F8), NUMBER)
