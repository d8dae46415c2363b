"""Open/close cycles keep RSS, descriptors, mappings and refcounts flat."""

from __future__ import annotations

import gc
import os
import sys

import numpy as np
import pytest

import mmarray
from mmarray import Region


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def n_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def n_maps() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


@pytest.mark.slow
def test_100k_open_close_cycles_stay_flat(tmp_path):
    raw = tmp_path / "a.raw"
    npy = tmp_path / "a.npy"
    np.arange(1000, dtype="f8").tofile(raw)
    np.save(npy, np.arange(1000, dtype="f8"))
    dt = np.dtype("f8")

    def cycle(n):
        for i in range(n):
            a = mmarray.open(raw, dtype=dt) if i % 2 else mmarray.open(npy)
            r = mmarray.region(a)
            v = a[::3]
            del a, v
            r.close()
            with Region.open(raw, 16, i % 100) as r2:
                memoryview(r2).release()
            mmarray.anonymous(i % 64 + 1, "u1")

    cycle(2000)  # warm caches
    gc.collect()
    before = (rss_kib(), n_fds(), n_maps(), sys.getrefcount(dt), sys.getrefcount(None))
    cycle(100_000)
    gc.collect()
    after = (rss_kib(), n_fds(), n_maps(), sys.getrefcount(dt), sys.getrefcount(None))
    assert after[1:3] == before[1:3], (before, after)
    assert after[3] == before[3], "dtype refcount grew"
    assert abs(after[4] - before[4]) < 100, "None refcount drifted"
    assert after[0] - before[0] < 4096, f"RSS grew by {after[0] - before[0]} KiB"


def test_failed_opens_leak_no_descriptors(tmp_path):
    p = tmp_path / "small.raw"
    p.write_bytes(bytes(10))
    before = n_fds(), n_maps()
    for _ in range(500):
        with pytest.raises(ValueError):
            mmarray.open(p, dtype="f8", shape=100)
        with pytest.raises(ValueError):
            mmarray.open(p)
        with pytest.raises(ValueError):
            Region.open(p, offset=11)
    assert (n_fds(), n_maps()) == before
