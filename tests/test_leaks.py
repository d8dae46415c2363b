"""Many cycles of every public operation keep descriptors, mappings, RSS and refcounts flat.

Each operation runs a warm-up, then its cycles; before and after, the test reads the
open descriptors (/proc/self/fd), the mappings (/proc/self/maps: all of them, and those
of files, memfds and /dev/shm objects), the RSS, the number of objects the garbage
collector tracks, and the refcounts of the objects the cycles use (dtype, arrays,
paths).  A leaked descriptor, mapping, thread stack, Region, array or reference shows
up as growth: descriptors, file mappings and refcounts must be exactly flat; anonymous
mappings and object counts may move by a few (allocator pools), RSS by 4 MiB.

Cycle counts: 100,000 for every operation; the slowest (creating, growing or evicting
a file, starting the median's threads) take a few tens of seconds.  The 4 MiB RSS bound
catches a leak of 42 bytes a cycle.

Under a sanitizer (``make asan`` and ``make valgrind`` set MMARRAY_SANITIZER) the
allocator keeps freed memory in quarantine and maps its own pools, so RSS and the
count of all mappings are not compared there, and fewer cycles run (a tenth under
ASan, a five-hundredth under valgrind, which runs every cycle about 50 times slower).
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mmarray
from mmarray import Region

SANITIZER = os.environ.get("MMARRAY_SANITIZER", "")
CYCLE_DIVISOR = {"": 1, "asan": 10, "valgrind": 500}.get(SANITIZER, 10)
RSS_SLACK_KIB = 4096


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


class Ctx:
    """Files and arrays the cycles use, made once per test."""

    def __init__(self, d: Path) -> None:
        self.d = d
        self.dt = np.dtype("f8")
        self.raw = str(d / "a.raw")
        self.npy = str(d / "a.npy")
        np.arange(1000, dtype="f8").tofile(self.raw)
        np.save(self.npy, np.arange(1000, dtype="f8"))
        self.base = mmarray.create(str(d / "base.npy"), (4096,), "i4", fill=3)
        self.small = mmarray.anonymous(101, "f8")
        self.small[:] = np.arange(101.0)[::-1] % 17
        self.want_median = float(np.median(np.asarray(self.small)))
        self.want_q = np.quantile(np.asarray(self.small), [0.1, 0.5, 0.9])
        # 2**17 elements: above the kernels' parallel threshold, so workers start
        self.mid = mmarray.anonymous(1 << 17, "f4")
        self.mid[:] = np.arange(1 << 17, dtype="f4") % 1001
        self.want_mid = float(np.median(np.asarray(self.mid)))
        self.grow_path = str(d / "g.raw")
        self.shm_name = f"mmarray-leak-{os.getpid()}"
        self.tracked: list[Any] = [self.dt, self.base, self.small, self.raw, self.npy]


def op_open_raw(c: Ctx, i: int) -> None:
    a = mmarray.open(c.raw, dtype=c.dt, offset=8 * (i % 4))
    v = a[::3]
    assert v[1] == 3.0 + i % 4
    r = mmarray.region(a)
    assert r is not None
    r.close()  # deferred: a and v stay valid until dropped


def op_open_npy(c: Ctx, i: int) -> None:
    a = mmarray.open(c.npy, "r" if i % 2 else "c")
    assert a[999] == 999.0


def op_create(c: Ctx, i: int) -> None:
    p = c.d / f"new{i % 2}.npy"
    a = mmarray.create(p, (8,), "f4", fill=i % 5)
    assert a[7] == i % 5
    del a
    os.unlink(p)


def op_anonymous_shared(c: Ctx, i: int) -> None:
    a = mmarray.anonymous(i % 64 + 1, "u1")
    a[-1] = 7
    assert mmarray.region(a).fileno() >= 0  # type: ignore[union-attr]


def op_anonymous_private(c: Ctx, i: int) -> None:
    a = mmarray.anonymous(i % 64 + 1, "u1", shared=False)
    a[-1] = 7


def op_memmap(c: Ctx, i: int) -> None:
    m = mmarray.memmap(c.raw, dtype=c.dt, mode="r", shape=(10,), offset=8 * (i % 8))
    assert m[0] == i % 8
    m.close()


def op_region_objects(c: Ctx, i: int) -> None:
    with Region.open(c.raw, 16, i % 100) as r:
        memoryview(r).release()
    r = Region.anonymous(4096, shared=bool(i % 2))
    m = memoryview(r)
    r.close()  # deferred while m is alive
    m.release()
    fd = os.open(c.raw, os.O_RDONLY)
    try:
        r = Region(fd, 64, 8)
    finally:
        os.close(fd)
    r.close()


def op_region_of_view(c: Ctx, i: int) -> None:
    assert mmarray.region(c.base[i % 7 :: 3]) is not None


def op_median(c: Ctx, i: int) -> None:
    assert mmarray.median(c.small) == c.want_median


def op_quantile(c: Ctx, i: int) -> None:
    q = mmarray.quantile(c.small, [0.1, 0.5, 0.9])
    assert q[1] == c.want_q[1]


def op_median_threads(c: Ctx, i: int) -> None:
    assert mmarray.median(c.mid, workers=2) == c.want_mid


def op_share(c: Ctx, i: int) -> None:
    b = mmarray.share(c.base[i % 5 :: 2]).open()
    assert b[0] == 3


def op_shared(c: Ctx, i: int) -> None:
    a = mmarray.named(c.shm_name, 8, "u1", create=True)
    a[3] = i % 200
    b = mmarray.named(c.shm_name)
    mmarray.unlink(c.shm_name)
    assert b[3] == i % 200


def op_lock(c: Ctx, i: int) -> None:
    with mmarray.lock(c.base[: 1 + i % 100], exclusive=not i % 2):
        pass


def op_disk_usage_extents(c: Ctx, i: int) -> None:
    assert mmarray.disk_usage(c.base).apparent > 0
    mmarray.extents(c.base)


def op_pages(c: Ctx, i: int) -> None:
    mmarray.advise(c.base, "willneed" if i % 2 else "normal")
    mmarray.prefetch(c.base[: 1024 * (1 + i % 4)])
    assert mmarray.residency(c.base).pages > 0


def op_evict(c: Ctx, i: int) -> None:
    mmarray.evict(c.base)


def op_grow(c: Ctx, i: int) -> None:
    with open(c.grow_path, "wb") as f:
        f.write(bytes(16))
    a = mmarray.open(c.grow_path, "r+", dtype="u1")
    b = mmarray.grow(a, 16)
    assert b.shape == (32,)


# every public operation, 100,000 cycles each (fewer under a sanitizer: CYCLE_DIVISOR)
N_CYCLES = 100_000
CYCLES: dict[str, Callable[[Ctx, int], None]] = {
    "open_raw": op_open_raw,
    "open_npy": op_open_npy,
    "create": op_create,
    "anonymous_shared": op_anonymous_shared,
    "anonymous_private": op_anonymous_private,
    "memmap": op_memmap,
    "region_objects": op_region_objects,
    "region_of_view": op_region_of_view,
    "median_small": op_median,
    "quantile_small": op_quantile,
    "median_threads": op_median_threads,
    "share_open": op_share,
    "shared_unlink": op_shared,
    "lock": op_lock,
    "disk_usage_extents": op_disk_usage_extents,
    "advise_prefetch_residency": op_pages,
    "evict": op_evict,
    "grow": op_grow,
}


def n_file_maps() -> int:
    """Mappings of files, memfds and /dev/shm objects (what a leaked Region would hold)."""
    with open("/proc/self/maps") as f:
        return sum(
            1 for line in f if len(line.split()) >= 6 and not line.split()[5].startswith("[")
        )


def measure(c: Ctx, m: dict[str, int]) -> None:
    """Fills m (a dict made before the first measurement, so that it is counted alike)."""
    gc.collect()
    m["gc_objects"] = len(gc.get_objects())
    m["fds"] = n_fds()
    m["file_maps"] = n_file_maps()
    m["maps"] = n_maps()
    m["rss_kib"] = rss_kib()
    for k, obj in enumerate(c.tracked):
        m[f"refcount[{k}]"] = sys.getrefcount(obj)


# Growth allowed: the allocators (pymalloc arenas, malloc's mmap threshold) may add or
# drop a few anonymous mappings and objects; a per-cycle leak adds thousands.
SLACK = {"gc_objects": 16, "maps": 16, "fds": 0, "file_maps": 0}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CYCLES))
def test_cycles_stay_flat(tmp_path, name):
    op, n = CYCLES[name], N_CYCLES
    if SANITIZER:
        n = max(n // CYCLE_DIVISOR, 100)
    c = Ctx(tmp_path)
    for i in range(max(n // 50, 200)):  # warm caches, pools and free lists
        op(c, i)
    before: dict[str, int] = {}
    after: dict[str, int] = {}
    measure(c, before)
    for i in range(n):
        op(c, i)
    measure(c, after)
    grew = {k: after[k] - before[k] for k in before}
    for k, v in grew.items():
        if k.startswith("refcount"):
            assert v == 0, (name, n, k, grew)
        elif k in SLACK and not (SANITIZER and k == "maps"):
            assert v <= SLACK[k], (name, n, k, grew)
    if not SANITIZER:
        assert grew["rss_kib"] < RSS_SLACK_KIB, f"{name}: RSS grew by {grew['rss_kib']} KiB"


def test_failed_opens_leak_no_descriptors(tmp_path):
    p = tmp_path / "small.raw"
    p.write_bytes(bytes(10))

    # all mappings, except under a sanitizer, whose allocator maps pools of its own
    def count() -> tuple[int, int, int]:
        return n_fds(), n_file_maps(), 0 if SANITIZER else n_maps()

    before = count()
    for _ in range(500):
        with pytest.raises(ValueError):
            mmarray.open(p, dtype="f8", shape=100)
        with pytest.raises(ValueError):
            mmarray.open(p)
        with pytest.raises(ValueError):
            Region.open(p, offset=11)
    assert count() == before
