"""Shared fixtures for the benchmarks: data files made once per session.

Sizes default to what 2 cores and 24 GiB run in minutes; ``MMARRAY_BENCH_SCALE``
multiplies them (0.01 for a smoke run, 10 for a big machine).

Conventions (read by ``benchmarks/report.py``): every case sets a
``benchmark.group``; inside a group, the case whose name contains ``mmarray``
is the reference and every other case is reported as ``peer / mmarray``.
Each case checks its own result before it is timed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

GiB = 1 << 30
SCALE = float(os.environ.get("MMARRAY_BENCH_SCALE", "1"))


def scaled(nbytes: int, itemsize: int = 1) -> int:
    """Number of items of ``itemsize`` bytes in ``nbytes * SCALE`` bytes (at least 1024)."""
    return max(1024, int(nbytes * SCALE) // itemsize)


@pytest.fixture(scope="session")
def bench_dir() -> Iterator[Path]:
    d = os.environ.get("MMARRAY_BENCH_DIR")
    with tempfile.TemporaryDirectory(prefix="mmarray-bench-", dir=d) as tmp:
        yield Path(tmp)


def write_random(path: Path, n: int, dtype: str, seed: int = 0) -> Path:
    """Write n random values of dtype to a raw file, in 64 MiB pieces."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    step = max(1, (64 << 20) // dt.itemsize)
    with open(path, "wb") as f:
        for start in range(0, n, step):
            m = min(step, n - start)
            if dt.kind == "f":
                block = rng.standard_normal(m).astype(dt)
            else:
                info = np.iinfo(dt)
                block = rng.integers(info.min, info.max, size=m, dtype=dt, endpoint=True)
            block.tofile(f)
    return path


@pytest.fixture(scope="session")
def int16_1gib(bench_dir: Path) -> Path:
    """A raw file of random int16, 1 GiB at scale 1."""
    return write_random(bench_dir / "int16.raw", scaled(GiB, 2), "int16")


@pytest.fixture(scope="session")
def float64_1gib(bench_dir: Path) -> Path:
    """A raw file of random float64, 1 GiB at scale 1."""
    return write_random(bench_dir / "float64.raw", scaled(GiB, 8), "float64", seed=1)


@pytest.fixture(scope="session")
def float32_512mib(bench_dir: Path) -> Path:
    """A raw file of random float32, 512 MiB at scale 1."""
    return write_random(bench_dir / "float32.raw", scaled(GiB // 2, 4), "float32", seed=2)
