"""Opening mapped files: mmarray.open vs np.memmap vs np.load(mmap_mode='r'), and the
table from the mmap post (10,000,000 x 3 float64: open + sum)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mmarray
from mmarray import Region

from .conftest import GiB, scaled

F8 = np.dtype("float64")


@pytest.fixture(scope="session")
def sparse_raw(bench_dir: Path) -> Path:
    p = bench_dir / "open.raw"
    with open(p, "wb") as f:
        f.truncate(GiB)
    return p


@pytest.fixture(scope="session")
def sparse_npy(bench_dir: Path) -> Path:
    p = bench_dir / "open.npy"
    mmarray.create(p, GiB // 8, F8)
    return p


@pytest.mark.benchmark(group="open 1 GiB raw")
def test_open_raw_mmarray(benchmark, sparse_raw):
    assert mmarray.open(sparse_raw, dtype=F8).shape == (GiB // 8,)
    benchmark(mmarray.open, sparse_raw, dtype=F8)


@pytest.mark.benchmark(group="open 1 GiB raw")
def test_open_raw_np_memmap(benchmark, sparse_raw):
    assert np.memmap(sparse_raw, dtype=F8, mode="r").shape == (GiB // 8,)
    benchmark(np.memmap, sparse_raw, dtype=F8, mode="r")


@pytest.mark.benchmark(group="open 1 GiB raw")
def test_open_raw_floor_region_open(benchmark, sparse_raw):
    """The floor: open + fstat + mmap, then munmap + close, in one C call."""
    assert Region.open(sparse_raw).size == GiB
    benchmark(Region.open, sparse_raw)


@pytest.mark.benchmark(group="open 1 GiB npy")
def test_open_npy_mmarray(benchmark, sparse_npy):
    assert mmarray.open(sparse_npy).shape == (GiB // 8,)
    benchmark(mmarray.open, sparse_npy)


@pytest.mark.benchmark(group="open 1 GiB npy")
def test_open_npy_np_load(benchmark, sparse_npy):
    assert np.load(sparse_npy, mmap_mode="r").shape == (GiB // 8,)
    benchmark(np.load, sparse_npy, mmap_mode="r")


# ---- the post's table: 10,000,000 x 3 float64, open + sum ----------------------

ROWS = scaled(10_000_000 * 24, 24)


@pytest.fixture(scope="session")
def table_files(bench_dir: Path) -> tuple[Path, Path, float]:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 1000, size=(ROWS, 3)).astype(F8)  # short CSV fields
    raw = bench_dir / "table.raw"
    data.tofile(raw)
    csv = bench_dir / "table.csv"
    np.savetxt(csv, data, fmt="%d")
    return raw, csv, float(data.sum())


@pytest.mark.benchmark(group="post table: 10M x 3 open + sum")
def test_table_mmarray_open(benchmark, table_files):
    raw, _, total = table_files
    fn = lambda: mmarray.open(raw, dtype=F8, shape=(ROWS, 3)).sum()  # noqa: E731
    assert fn() == total
    benchmark(fn)


@pytest.mark.benchmark(group="post table: 10M x 3 open + sum")
def test_table_np_memmap(benchmark, table_files):
    raw, _, total = table_files
    fn = lambda: np.memmap(raw, dtype=F8, mode="r", shape=(ROWS, 3)).sum()  # noqa: E731
    assert fn() == total
    benchmark(fn)


@pytest.mark.benchmark(group="post table: 10M x 3 open + sum")
def test_table_np_fromfile(benchmark, table_files):
    raw, _, total = table_files
    fn = lambda: np.fromfile(raw, dtype=F8).sum()  # noqa: E731
    assert fn() == total
    benchmark(fn)


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
    benchmark(mmarray.open, p, dtype=F8)
