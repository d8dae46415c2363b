"""SIGBUS in mmarray's own C code becomes OSError; everywhere else it still kills.

Every case runs in a child process: if the guard regresses, only the child dies
(and the test reports its return code). The files are truncated under live
mappings with os.truncate, as another process would do.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

import mmarray

PAGE = mmarray.PAGESIZE

PRELUDE = """
import json, os, resource, signal, sys, threading
import numpy as np
import mmarray
from mmarray import _cache, _core
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a child killed by SIGBUS leaves no core

def attempt(fn):
    try:
        return {"value": np.asarray(fn()).tolist()}
    except OSError as e:
        return {"errno": e.errno, "filename": e.filename, "msg": str(e)}

def span(v):
    # the file offsets [lo, hi) of the bytes of v (reversed views included)
    reg = mmarray.region(v)
    first = v.__array_interface__["data"][0] - reg.address + reg.offset
    down = sum(min(0, (n - 1) * st) for n, st in zip(v.shape, v.strides))
    up = sum(max(0, (n - 1) * st) for n, st in zip(v.shape, v.strides))
    return [first + down, first + up + v.itemsize]
"""


def run_child(code: str, *args: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PYTHONFAULTHANDLER", None)  # the children decide
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,  # a broken handler chain loops forever: fail instead
        env=env,
    )


def child_json(code: str, *args: object) -> dict:
    proc = run_child(code, *args)
    assert proc.returncode == 0, f"child died ({proc.returncode}): {proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_fault(res: dict, path: object, lo: int, hi: int, truncated: int, verb="reading"):
    """res is the OSError of a fault at a file offset in [lo, hi), past the truncation."""
    assert "errno" in res, f"expected an OSError, got {res}"
    assert res["errno"] == errno.EFAULT
    assert res["filename"] == str(path)
    assert str(path) in res["msg"]
    assert f"SIGBUS {verb}" in res["msg"]
    assert f"the file has {truncated} bytes" in res["msg"]
    m = re.search(r"file offset (\d+)", res["msg"])
    assert m is not None, res["msg"]
    off = int(m.group(1))
    first_bad = -(-truncated // PAGE) * PAGE  # the page holding the end of file still reads
    assert max(lo, first_bad) <= off < hi, (off, lo, hi, first_bad)


# ---- the selection kernels --------------------------------------------------------------

KERNELS = """
path, truncated = sys.argv[1], int(sys.argv[2])
a = mmarray.open(path, "r+")
data = np.random.default_rng(5).standard_normal(a.shape)
data[::7, 3] = np.nan
a[:] = data
full = os.path.getsize(path)
cases = {  # workers=2 and >= 64 Ki elements: worker threads; smaller: inline, GIL held
    "median, one long lane, threads": (lambda v: mmarray.median(v, workers=2), a),
    "median, short lanes, threads": (lambda v: mmarray.median(v, axis=1, workers=2), a),
    "median, short lanes, inline": (lambda v: mmarray.median(v, axis=1, workers=2), a[-30:]),
    "median, one lane, inline": (lambda v: mmarray.median(v), a[-1]),
    "median int16, 16-bit histogram, threads": (
        lambda v: mmarray.median(v, workers=2), a[-600:].view("i2")),
    "quantile, threads": (lambda v: mmarray.quantile(v, [0.1, 0.9], workers=2), a),
    "quantile, inline": (lambda v: mmarray.quantile(v, 0.3, axis=0), a[-20:]),
    "nanmedian, threads": (lambda v: mmarray.nanmedian(v, workers=2), a),
    "nanmedian, inline": (lambda v: mmarray.nanmedian(v, axis=0), a[-40:]),
    "nanquantile, lanes, threads": (
        lambda v: mmarray.nanquantile(v, 0.5, axis=1, workers=2), a[-200:]),
    # reversed: the lane's first NaN lies past the truncation (a search stops at it)
    "first NaN, threads": (lambda v: _core.first_nan(
        v, 2, np.array([0]), 2, region=mmarray.region(v))[0], a[::-1]),
}
out = {"before": {}, "span": {}, "after": {}}
os.truncate(path, truncated)
for name, (fn, v) in cases.items():
    out["span"][name] = span(v)
    out["before"][name] = attempt(lambda: fn(v))
# what remains valid still works, in the same process
valid = a[: (truncated - span(a)[0]) // a.strides[0]]
out["valid"] = [attempt(lambda: mmarray.median(valid, workers=2)),
                attempt(lambda: mmarray.median(valid[-3:]))]
out["valid_numpy"] = [np.median(valid).tolist(), np.median(valid[-3:]).tolist()]
os.truncate(path, full)  # the file is whole again; its lost half reads as zeros
a[:] = data
for name, (fn, v) in cases.items():
    out["after"][name] = attempt(lambda: fn(v))
print(json.dumps(out))
"""


def numpy_oracle(name: str, v: np.ndarray):
    """The numpy result of case `name` of KERNELS on the restored data v."""
    table = {
        "median, one long lane, threads": lambda: np.median(v),
        "median, short lanes, threads": lambda: np.median(v, axis=1),
        "median, short lanes, inline": lambda: np.median(v[-30:], axis=1),
        "median, one lane, inline": lambda: np.median(v[-1]),
        "median int16, 16-bit histogram, threads": lambda: np.median(v[-600:].view("i2")),
        "quantile, threads": lambda: np.quantile(v, [0.1, 0.9]),
        "quantile, inline": lambda: np.quantile(v[-20:], 0.3, axis=0),
        "nanmedian, threads": lambda: np.nanmedian(v),
        "nanmedian, inline": lambda: np.nanmedian(v[-40:], axis=0),
        "nanquantile, lanes, threads": lambda: np.nanquantile(v[-200:], 0.5, axis=1),
        "first NaN, threads": lambda: np.array([np.nan]),
    }
    return table[name]()


def test_kernels_raise_oserror_on_a_truncated_file_and_work_again_when_restored(tmp_path):
    path = tmp_path / "k.npy"
    a = mmarray.create(path, (2049, 1024), "f8")  # 2 Mi elements: a long lane (> 1 Mi)
    header = mmarray.region(a).size - a.nbytes
    del a
    truncated = header + 1000 * 1024 * 8 + 100  # not on a page boundary
    out = child_json(KERNELS, path, truncated)
    assert set(out["before"]) == set(out["after"])
    for name, res in out["before"].items():
        lo, hi = out["span"][name]
        check_fault(res, path, lo, hi, truncated)
    for got, want in zip(out["valid"], out["valid_numpy"], strict=True):
        assert "value" in got, got
        np.testing.assert_array_equal(got["value"], want)
    data = np.random.default_rng(5).standard_normal((2049, 1024))
    data[::7, 3] = np.nan
    for name, res in out["after"].items():
        assert "value" in res, (name, res)
        want = numpy_oracle(name, data)
        np.testing.assert_array_equal(np.asarray(res["value"]), want, err_msg=name)


# ---- page operations ---------------------------------------------------------------------

PAGES = """
path, truncated, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
a = mmarray.open(path, "r+", dtype="u1")
reg = mmarray.region(a)
full = os.path.getsize(path)

def prefetch_by_touch(v):
    _cache._have_populate = False  # the fallback: MADV_WILLNEED, then a read per page
    try:
        mmarray.prefetch(v)
    finally:
        _cache._have_populate = True

faulting = {
    "prefetch": lambda: mmarray.prefetch(a),
    "prefetch by touching": lambda: prefetch_by_touch(a),
    "touch": lambda: _core.touch(reg, 0, reg.size),
    "punch": lambda: mmarray.punch(a[lo:hi]),
}
harmless = {  # page tables and the page cache only: nothing touches the memory
    "residency": lambda: mmarray.residency(a).pages,
    "advise": lambda: mmarray.advise(a, "willneed"),
    "evict": lambda: mmarray.evict(a),
}
os.truncate(path, truncated)
out = {name: attempt(fn) for name, fn in {**faulting, **harmless}.items()}
valid = a[: truncated - truncated % 4096]
out["valid"] = [attempt(lambda: mmarray.prefetch(valid)),
                attempt(lambda: mmarray.residency(valid).fraction)]
os.truncate(path, full)
a[:] = 7
out["after"] = {name: attempt(fn) for name, fn in faulting.items()}
mmarray.prefetch(a)
out["after_residency"] = attempt(lambda: mmarray.residency(a).fraction)
out["after_sum"] = int(a.sum(dtype=np.int64))
print(json.dumps(out))
"""


def test_page_operations_raise_oserror_on_a_truncated_file(tmp_path):
    path = tmp_path / "p.raw"
    size = 64 * PAGE
    path.write_bytes(b"\x07" * size)
    truncated = 20 * PAGE + 123
    lo, hi = 30 * PAGE + 100, 40 * PAGE + 50  # partial pages at both edges: zeroed by writes
    out = child_json(PAGES, path, truncated, lo, hi)
    for name in ("prefetch", "prefetch by touching", "touch"):
        check_fault(out[name], path, 0, size, truncated)
    check_fault(out["punch"], path, lo, lo + 1, truncated, verb="writing")  # the first byte
    assert out["residency"] == {"value": 64}
    assert out["advise"] == out["evict"] == {"value": None}
    assert out["valid"] == [{"value": None}, {"value": 1.0}]
    # the same region, whole again: every operation works
    assert out["after"]["prefetch"] == out["after"]["prefetch by touching"] == {"value": None}
    assert out["after"]["touch"] == {"value": 64}
    assert out["after"]["punch"] == {"value": 9 * PAGE}
    assert out["after_residency"] == {"value": 1.0}
    assert out["after_sum"] == 7 * (size - (hi - lo))


# ---- threads ------------------------------------------------------------------------------

THREADS = """
good_path, bad_path, truncated = sys.argv[1], sys.argv[2], int(sys.argv[3])
good, bad = mmarray.open(good_path), mmarray.open(bad_path)
os.truncate(bad_path, truncated)
results = {"good": [], "bad": [], "bad inline": []}
start = threading.Barrier(3)

def run(key, arr, workers):
    start.wait()
    for _ in range(4):
        results[key].append(attempt(lambda: mmarray.median(arr, workers=workers)))

threads = [
    threading.Thread(target=run, args=("good", good, 2)),
    threading.Thread(target=run, args=("bad", bad, 2)),
    threading.Thread(target=run, args=("bad inline", bad[-1000:], 1)),
]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(results))
"""


def test_threads_fail_alone_on_the_truncated_file(tmp_path):
    rng = np.random.default_rng(7)
    good = rng.standard_normal(3 << 19)
    np.save(tmp_path / "good.npy", good)
    np.save(tmp_path / "bad.npy", rng.standard_normal(3 << 19))
    size = os.path.getsize(tmp_path / "bad.npy")
    truncated = size // 2
    out = child_json(THREADS, tmp_path / "good.npy", tmp_path / "bad.npy", truncated)
    assert out["good"] == [{"value": float(np.median(good))}] * 4
    for res in out["bad"]:
        check_fault(res, tmp_path / "bad.npy", 0, size, truncated)
    for res in out["bad inline"]:
        check_fault(res, tmp_path / "bad.npy", size - 8000, size, truncated)


WINDOW = """
path, truncated = sys.argv[1], int(sys.argv[2])
a = mmarray.open(path, "r+", dtype="i2")
before = _core._test_window_counts()[0]
os.truncate(path, truncated)
out = {"bad": [attempt(lambda: mmarray.median(a, workers=w)) for w in (1, 2)]}
out["sampled"] = _core._test_window_counts()[0] - before
os.truncate(path, a.nbytes)
a[:] = 5
out["after"] = attempt(lambda: mmarray.median(a, workers=2))
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["sample", "window"])
def test_windowed_int16_lane_raises_oserror_on_a_truncated_file(tmp_path, phase):
    # 64 chunks of 1 Mi int16: chunks 0 and 32 are the sample, the others go through the
    # window.  Cut in chunk 32 (bytes from 64 MiB) the sample faults; cut at 100 MiB
    # only the windowed chunks do.
    path = tmp_path / "w.raw"
    n = 64 << 20
    np.random.default_rng(9).integers(-32768, 32768, n, dtype=np.int16).tofile(path)
    truncated = (65 << 20) + 100 if phase == "sample" else (100 << 20) + 100
    out = child_json(WINDOW, path, truncated)
    assert out["sampled"] == 2
    for res in out["bad"]:
        check_fault(res, path, 0, 2 * n, truncated)
    assert out["after"] == {"value": 5.0}


WINDOW64 = """
path, truncated = sys.argv[1], int(sys.argv[2])
a = mmarray.open(path, "r+", dtype="f8")
before, hists = np.array(_core._test_window_counts()), _core._test_hist_passes()
os.truncate(path, truncated)
out = {"bad": [attempt(lambda: mmarray.median(a, workers=w)) for w in (1, 2)]}
q9 = np.linspace(0.1, 0.9, 9)  # 9 windows: the histogram pass
out["bad"] += [attempt(lambda: mmarray.quantile(a, q9, workers=w)) for w in (1, 2)]
out["counts"] = (np.array(_core._test_window_counts()) - before).tolist()
out["hists"] = _core._test_hist_passes() - hists
os.truncate(path, a.nbytes)
a[:] = 5
out["after"] = attempt(lambda: mmarray.median(a, workers=2))
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["sample", "pass"])
def test_windowed_float64_lane_raises_oserror_on_a_truncated_file(tmp_path, phase):
    # 16 chunks of 1 Mi float64: the first 64 Ki values of every chunk are the sample,
    # then one pass reads all.  Cut inside chunk 8's sampled block the sample faults; cut
    # in chunk 15 after its sampled block (all sampled blocks read) only the pass does:
    # the compare pass of the median and the histogram pass of 9 quantiles.
    path = tmp_path / "w64.raw"
    n = 16 << 20
    np.random.default_rng(9).standard_normal(n).tofile(path)
    chunk = 8 << 20  # bytes
    truncated = 8 * chunk + 100 if phase == "sample" else 15 * chunk + (1 << 20) + 100
    out = child_json(WINDOW64, path, truncated)
    assert out["counts"] == ([4, 0, 0] if phase == "sample" else [4, 4, 0])
    assert out["hists"] == (0 if phase == "sample" else 2)
    for res in out["bad"]:
        check_fault(res, path, 0, 8 * n, truncated)
    assert out["after"] == {"value": 5.0}


# ---- chaining: a SIGBUS outside mmarray's guards kills as before ------------------------------

CHAIN = """
import faulthandler
path, truncated, how, handler = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
if handler == "faulthandler":
    faulthandler.enable()
a = mmarray.open(path)
os.truncate(path, truncated)
def guarded():  # on worker threads, then inline (on faulthandler's alternate stack, if any)
    print("guarded:", attempt(lambda: mmarray.median(a, workers=2))["errno"],
          attempt(lambda: mmarray.median(a[-100:]))["errno"], flush=True)
guarded()
if handler == "faulthandler, enabled later":
    faulthandler.enable()  # on top of the default action, after the guard was removed
    guarded()
elif handler == "faulthandler, enabled during a guarded call":
    # installed over our handler: we cannot leave its chain and never go on top again
    mmarray.median(np.ones(1 << 17), workers=2, progress=lambda f: faulthandler.enable())
good = np.arange(1 << 17, dtype="f8")
if how == "numpy":  # no guarded call runs: our handler is not installed
    float(a[-1])
elif how == "numpy during a guarded call":  # installed; this thread has no guard armed
    mmarray.median(good, workers=2, progress=lambda f: float(a[-1]))
elif how == "kill during a guarded call":  # SIGBUS from kill(): never caught
    mmarray.median(good, workers=2, progress=lambda f: os.kill(os.getpid(), signal.SIGBUS))
print("survived", flush=True)
"""


HOWS = ["numpy", "numpy during a guarded call", "kill during a guarded call"]
HANDLERS = [
    "default",
    "faulthandler",
    "faulthandler, enabled later",
    "faulthandler, enabled during a guarded call",
]


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("handler", HANDLERS)
def test_sigbus_outside_the_guards_still_kills(tmp_path, how, handler):
    path = tmp_path / "c.npy"
    np.save(path, np.ones(1 << 18))
    proc = run_child(CHAIN, path, os.path.getsize(path) // 2, how, handler)
    assert proc.returncode == -signal.SIGBUS, proc.stderr[-3000:]
    guarded = 2 if handler == "faulthandler, enabled later" else 1
    assert proc.stdout.splitlines() == [f"guarded: {errno.EFAULT} {errno.EFAULT}"] * guarded
    dumps = proc.stderr.count("Fatal Python error: Bus error")
    assert dumps == (0 if handler == "default" else 1), proc.stderr
