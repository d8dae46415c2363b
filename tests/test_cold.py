"""Cold files: the kernels' read-ahead and drop-behind (src/select/readahead.c) and its
policy (``mmarray._cache.stream_mode``).

Oracles: numpy for every answer; ``mincore`` (``mmarray.residency``) for which pages
stay in the page cache. No timing is asserted (benchmarks/bench_cold.py measures the
speed). The files are 48 MiB: more than the kernels' smallest stream (32 MiB of cold
pages) and a few of their 8 MiB read-ahead blocks; the policy's byte limits are
lowered to match (monkeypatch).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import mmarray
from mmarray import _cache

MiB = 1 << 20
NBYTES = 48 * MiB


def write(path, dtype: str, seed: int = 0, nbytes: int = NBYTES) -> np.ndarray:
    """A file of nbytes of random values of dtype (with -0.0 for floats); returns the
    values."""
    rng = np.random.default_rng(seed)
    n = nbytes // np.dtype(dtype).itemsize
    if np.dtype(dtype).kind == "f":
        v = rng.standard_normal(n).astype(dtype)
        v[7] = -0.0
    else:
        v = rng.integers(-1000, 1000, size=n).astype(dtype)
    v.tofile(path)
    return v


def cold(path, dtype) -> np.ndarray:
    """The file mapped and evicted; skips where eviction leaves the pages (tmpfs)."""
    a = mmarray.open(path, dtype=dtype)
    mmarray.evict(a)
    if mmarray.residency(a).fraction > 0.05:
        pytest.skip("this file system keeps evicted pages in memory (tmpfs?)")
    return a


@pytest.fixture(params=["ahead", "kernel read-around"])
def streaming(request, monkeypatch):
    """Streams from 1 MiB up, reading ahead (as from 1 GiB up) or not (the kernel's
    read-around alone, as below); drop(True) lowers the drop-behind limit to 0 bytes."""
    monkeypatch.setattr(_cache, "_STREAM_MIN", MiB)
    monkeypatch.setattr(_cache, "_READ_AHEAD_MIN", 0 if request.param == "ahead" else 1 << 62)

    def drop(on: bool) -> None:
        monkeypatch.setattr(_cache, "_DROP_BEHIND_BYTES", 0 if on else 1 << 62)

    return drop


# ---- the policy -------------------------------------------------------------------------


def test_stream_mode_reads_ahead_files_and_drops_behind_only_above_the_limit(tmp_path, monkeypatch):
    AHEAD, DROP = _cache._READ_AHEAD, _cache._DROP_BEHIND
    p = tmp_path / "f.raw"
    write(p, "int16")
    a = mmarray.open(p, dtype=np.int16)
    reg = mmarray.region(a)
    monkeypatch.setattr(_cache, "_STREAM_MIN", MiB)
    monkeypatch.setattr(_cache, "_READ_AHEAD_MIN", NBYTES)
    monkeypatch.setattr(_cache, "_DROP_BEHIND_BYTES", NBYTES)
    assert _cache.stream_mode(a, 1, reg) == AHEAD
    monkeypatch.setattr(_cache, "_DROP_BEHIND_BYTES", NBYTES - 1)
    assert _cache.stream_mode(a, 1, reg) == AHEAD | DROP
    monkeypatch.setattr(_cache, "_READ_AHEAD_MIN", NBYTES + 1)  # too small to read ahead
    assert _cache.stream_mode(a, 1, reg) == DROP
    assert _cache.stream_mode(a.reshape(2, -1), 1, reg) == 0  # two lanes: no stream
    assert _cache.stream_mode(a, 1, None) == 0  # not in a Region
    anon = mmarray.anonymous(NBYTES, "u1")
    assert _cache.stream_mode(anon, 1, mmarray.region(anon)) == 0  # no file
    cow = mmarray.open(p, dtype=np.int16, mode="c")
    assert _cache.stream_mode(cow, 1, mmarray.region(cow)) == 0  # private changes: no drop
    monkeypatch.setattr(_cache, "_READ_AHEAD_MIN", NBYTES)
    assert _cache.stream_mode(cow, 1, mmarray.region(cow)) == AHEAD
    monkeypatch.setattr(_cache, "_STREAM_MIN", NBYTES + 1)
    assert _cache.stream_mode(a, 1, reg) == 0  # small
    monkeypatch.setattr(_cache, "_DROP_BEHIND_BYTES", None)  # half of MemAvailable
    monkeypatch.setattr(_cache, "_STREAM_MIN", MiB)
    monkeypatch.setattr(_cache, "_READ_AHEAD_MIN", 1 << 30)  # the default
    big = NBYTES > _cache._memory_available() // 2
    assert _cache.stream_mode(a, 1, reg) == (DROP if big else 0)


# ---- answers on an evicted file ------------------------------------------------------------


@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("dtype", ["int16", "float64", "float32", "uint8"])
def test_median_and_quantiles_of_an_evicted_file_equal_numpys(tmp_path, streaming, drop, dtype):
    streaming(drop)
    p = tmp_path / "f.raw"
    v = write(p, dtype)
    q = [0.0, 0.1, 0.5, 0.99, 1.0]
    a = cold(p, dtype)
    got = mmarray.median(a)
    assert np.array_equal(got, np.median(v), equal_nan=True)
    assert np.signbit(got) == np.signbit(np.median(v))
    mmarray.evict(a)
    np.testing.assert_array_equal(mmarray.quantile(a, q), np.quantile(v, q))
    mmarray.evict(a)
    assert mmarray.median(a[5:-3]) == np.median(v[5:-3])  # unaligned ends
    mmarray.evict(a)
    assert mmarray.median(a[::3]) == np.median(v[::3])  # strided


# ---- what stays in the page cache ------------------------------------------------------------


def test_a_cold_file_is_dropped_behind_the_pass(tmp_path, streaming):
    """Drop mode: the pages the pass brought in leave the page cache (before: all stayed)."""
    streaming(True)
    p = tmp_path / "f.raw"
    v = write(p, "int16")
    a = cold(p, np.int16)
    assert mmarray.median(a) == np.median(v)
    probe = mmarray.open(p, dtype="u1")  # a fresh mapping: the page cache, not our tables
    assert mmarray.residency(probe).fraction < 0.5  # advice: see the test below
    for dtype in ("float64",):  # NaN count, then select: two calls, each dropped behind
        p2 = tmp_path / "g.raw"
        w = write(p2, dtype)
        b = cold(p2, dtype)
        assert mmarray.median(b) == np.median(w)
        assert mmarray.residency(mmarray.open(p2, dtype="u1")).fraction < 0.5


def test_a_warm_file_stays_warm(tmp_path, streaming):
    """Drop mode on a resident file: no page is dropped (clean pages, read back from disk:
    a dirty page would stay cached anyway)."""
    streaming(True)
    p = tmp_path / "f.raw"
    v = write(p, "int16")
    a = cold(p, np.int16)
    mmarray.prefetch(a)
    assert mmarray.residency(a).fraction == 1.0
    assert mmarray.median(a) == np.median(v)
    assert mmarray.residency(mmarray.open(p, dtype="u1")).fraction == 1.0


def test_only_the_pages_that_were_cold_are_dropped(tmp_path, streaming):
    """An eighth of the file warm (and whatever the kernel read ahead of it), the rest
    cold: after the pass every page resident before it still is, and the others are
    gone (mincore before the pass decides, page by page). 96 MiB: the cold part stays
    above the kernels' smallest stream whatever the kernel read ahead."""
    streaming(True)
    p = tmp_path / "f.raw"
    v = write(p, "int16", nbytes=2 * NBYTES)
    a = cold(p, np.int16)
    mmarray.prefetch(a[: a.size // 8])
    probe = mmarray.open(p, dtype="u1")
    before = _cache.resident_map(probe)
    assert 0.1 < before.mean() < 0.5
    assert mmarray.median(a) == np.median(v)
    after = _cache.resident_map(probe)
    assert after[before].all()
    # MADV_PAGEOUT is advice: pages another CPU still holds in its LRU batch stay (a
    # tenth once, under load); without the drop all of them stay
    assert after[~before].mean() < 0.5


def test_read_ahead_without_drop_leaves_the_file_cached(tmp_path, streaming):
    """Below the drop limit the pass leaves the file in the page cache, as before."""
    streaming(False)
    p = tmp_path / "f.raw"
    v = write(p, "int16")
    a = cold(p, np.int16)
    assert mmarray.median(a) == np.median(v)
    assert mmarray.residency(mmarray.open(p, dtype="u1")).fraction > 0.9


# ---- faults ------------------------------------------------------------------------------------

TRUNCATE = """
import os, sys, numpy as np, mmarray
from mmarray import _cache
_cache._STREAM_MIN = 1 << 20
_cache._READ_AHEAD_MIN = 0
_cache._DROP_BEHIND_BYTES = int(sys.argv[2])
path = sys.argv[1]
a = mmarray.open(path, dtype=np.int16)
mmarray.evict(a)
os.truncate(path, os.path.getsize(path) // 3 + 123)
try:
    mmarray.median(a)
except OSError as e:
    print("OSError", e.errno)
else:
    print("no error")
"""


@pytest.mark.parametrize("drop", [0, 1 << 62])
def test_a_file_truncated_under_the_read_ahead_raises_oserror(tmp_path, drop):
    """In a child (a fault must not take pytest down): the streamer advises past the end
    of the file without harm, and the workers' fault is an OSError (EFAULT)."""
    p = tmp_path / "f.raw"
    write(p, "int16")
    out = subprocess.run(
        [sys.executable, "-c", TRUNCATE, os.fspath(p), str(drop)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["OSError", "14"]


RACE = """
import os, sys, threading, time, numpy as np, mmarray
from mmarray import _cache
_cache._STREAM_MIN = 1 << 20
_cache._READ_AHEAD_MIN = 0
_cache._DROP_BEHIND_BYTES = 0
path = sys.argv[1]
v = np.random.default_rng(1).integers(-1000, 1000, 24 << 20).astype(np.int16)
outcomes = set()
for i in range(8):
    v.tofile(path)
    a = mmarray.open(path, dtype=np.int16)
    mmarray.evict(a)
    cut = threading.Timer(0.002 * i, os.truncate, (path, 4096 * 1000 + 7))
    cut.start()
    try:
        outcomes.add("answer" if mmarray.median(a) == np.median(v) else "WRONG")
    except OSError as e:
        outcomes.add(f"OSError {e.errno}")
    cut.join()
    del a
print(" ".join(sorted(outcomes)))
"""


def test_a_file_truncated_during_the_read_ahead_raises_oserror_or_answers(tmp_path):
    """A race, in a child: the file is cut while the streamers and the workers read it,
    at 8 moments; each call gives numpy's answer (done before the cut) or OSError
    (EFAULT), never a crash, a hang (the timeout) or a wrong answer."""
    p = tmp_path / "f.raw"
    out = subprocess.run(
        [sys.executable, "-c", RACE, os.fspath(p)], capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.split("\n")[0].split(" ")) <= {"answer", "OSError", "14"}, out.stdout
    assert "OSError" in out.stdout
