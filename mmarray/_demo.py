"""The walk-through behind ``python -m mmarray demo`` (and ``make demo``)."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import tempfile
import time
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np

import mmarray

from ._picture import format_bytes

GiB = 1 << 30


def _best_us(fn: Callable[[], Any], number: int = 200, repeat: int = 5) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def _flush(a: np.ndarray[Any, Any]) -> None:
    reg = mmarray.region(a)
    assert reg is not None
    reg.flush()


def _child_fill(a: np.ndarray[Any, Any]) -> None:
    a[:] = np.arange(a.size, dtype=a.dtype).reshape(a.shape)


def sparse_section(d: str, say: Callable[[str], None]) -> None:
    say("1. A 24 GiB array on disk, created instantly (a sparse file)")
    path = os.path.join(d, "sparse.npy")
    t0 = time.perf_counter()
    a = mmarray.create(path, (GiB, 3), "float64")
    dt = time.perf_counter() - t0
    a[:10] = np.arange(10).reshape(10, 1)
    use = mmarray.disk_usage(path)
    say(f"   mmarray.create({path!r}, (2**30, 3), 'float64') took {dt * 1e3:.2f} ms")
    say(f"   apparent size (ls -l): {format_bytes(use.apparent)}")
    say(f"   allocated     (du)   : {format_bytes(use.allocated)}")
    _flush(a)
    del a
    b = mmarray.open(path)
    ok = bool((b[:10] == np.arange(10).reshape(10, 1)).all() and not b[10:1000].any())
    say(f"   re-opened with mmarray.open: shape {b.shape}, first rows intact: {ok}")
    if not ok:
        raise SystemExit("demo: the data read back is wrong")
    del b
    os.unlink(path)


def roundtrip_section(d: str, say: Callable[[str], None]) -> None:
    say("2. Write a file, re-open it, check the data")
    path = os.path.join(d, "table.npy")
    rng = np.random.default_rng(0)
    want = rng.standard_normal((1000, 3))
    a = mmarray.create(path, want.shape, want.dtype)
    a[:] = want
    _flush(a)
    del a
    same_np = np.array_equal(np.load(path), want)
    same_mm = np.array_equal(mmarray.open(path), want)
    say(f"   np.load reads what mmarray wrote: {same_np}; mmarray.open too: {same_mm}")
    if not (same_np and same_mm):
        raise SystemExit("demo: round trip failed")


def sharing_section(say: Callable[[str], None]) -> None:
    say("3. Share anonymous memory with a child process")
    a = mmarray.anonymous((4, 5), "int64")
    p = mp.get_context("fork").Process(target=_child_fill, args=(a,))
    p.start()
    p.join()
    say(f"   the child wrote, the parent sees: sum = {int(a.sum())} (expected {sum(range(20))})")
    if int(a.sum()) != sum(range(20)):
        raise SystemExit("demo: the parent did not see the child's writes")


def open_bench_section(d: str, say: Callable[[str], None]) -> None:
    say("4. Opening a 1 GiB file (best of 5 x 200 opens; the array dropped after each)")
    raw = os.path.join(d, "one-gib.raw")
    with open(raw, "wb") as f:
        f.truncate(GiB)
    npy = os.path.join(d, "one-gib.npy")
    mmarray.create(npy, GiB // 8, "float64")
    f8 = np.dtype("float64")
    rows = [
        ("mmarray.open (raw)", lambda: mmarray.open(raw, dtype=f8)),
        ("np.memmap    (raw)", lambda: np.memmap(raw, dtype=f8, mode="r")),
        ("mmarray.open (.npy)", lambda: mmarray.open(npy)),
        ("np.load(mmap_mode='r')", lambda: np.load(npy, mmap_mode="r")),
    ]
    times = {name: _best_us(fn) for name, fn in rows}
    for name, us in times.items():
        say(f"   {name:<24} {us:8.1f} us")
    raw_ratio = times["np.memmap    (raw)"] / times["mmarray.open (raw)"]
    npy_ratio = times["np.load(mmap_mode='r')"] / times["mmarray.open (.npy)"]
    say(f"   mmarray is {raw_ratio:.1f}x faster than np.memmap, {npy_ratio:.1f}x than np.load")


def median_section(d: str, say: Callable[[str], None]) -> None:
    n = 128 << 20  # 256 MiB of int16
    say(f"5. Exact median of a {format_bytes(2 * n)} int16 file (np.median copies it first)")
    path = os.path.join(d, "random.i2")
    a = mmarray.create(path, n, "int16")
    rng = np.random.default_rng(0)
    step = 16 << 20
    for i in range(0, n, step):
        a[i : i + step] = rng.integers(-(2**15), 2**15, size=min(step, n - i), dtype=np.int16)
    _flush(a)
    del a
    data = mmarray.open(path, dtype="int16")
    t0 = time.perf_counter()
    ours = mmarray.median(data)
    t1 = time.perf_counter()
    theirs = np.median(data)
    t2 = time.perf_counter()
    est = mmarray.median_estimate(data)
    say(f"   mmarray.median: {ours} in {(t1 - t0) * 1e3:.0f} ms")
    slower = (t2 - t1) / (t1 - t0)
    say(f"   np.median     : {theirs} in {(t2 - t1) * 1e3:.0f} ms ({slower:.0f}x slower)")
    say(f"   median_estimate (median of chunk medians, approximate): {est}")
    if ours != theirs:
        raise SystemExit("demo: mmarray.median differs from np.median")


def by_reference_section(d: str, say: Callable[[str], None]) -> None:
    from multiprocessing.reduction import ForkingPickler

    say("6. Chunks sent to a multiprocessing Pool travel by reference, not by value")
    data = mmarray.open(os.path.join(d, "random.i2"), dtype="int16")
    chunk = data[: 8 << 20]
    sent = len(ForkingPickler.dumps(chunk))
    say(f"   a {format_bytes(chunk.nbytes)} chunk pickles to {sent} bytes through multiprocessing")
    with mp.get_context("fork").Pool(2) as pool:
        parts = pool.map(np.median, [data[i : i + (8 << 20)] for i in range(0, data.size, 8 << 20)])
    say(f"   Pool(2).map(np.median, chunks) -> median of medians {np.median(parts)}")


def main(directory: str | None = None, say: Callable[[str], None] = print) -> None:
    """Run the walk-through in ``directory`` (a fresh temporary directory by default)."""
    d = tempfile.mkdtemp(prefix="mmarray-demo-", dir=directory)
    say(f"mmarray {mmarray.__version__} demo: writing under {d} (removed at the end)")
    try:
        sparse_section(d, say)
        roundtrip_section(d, say)
        sharing_section(say)
        open_bench_section(d, say)
        median_section(d, say)
        by_reference_section(d, say)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    say("done: everything was cleaned up")
