"""joblib.Parallel and loky: mmarray arrays reach the workers by reference.

Every case runs under each backend and start method: loky with its own default
('loky') and 'spawn' and 'forkserver' (loky refuses 'fork' for its reusable executor),
and the multiprocessing backend with 'fork', 'spawn' and 'forkserver'. One Parallel
object (one pool of workers) serves every test of a case. Its settings are joblib's
defaults (``max_nbytes='1M'``, ``mmap_mode='r'``) except ``timeout`` (a hang fails)
and ``batch_size=1`` (one message per task, so that the bytes of a task can be read).
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import pickle
import subprocess
import sys
import uuid

import joblib
import joblib.pool
import numpy as np
import pytest
from joblib import _memmapping_reducer
from joblib.externals import loky
from joblib.externals.loky.backend import context as loky_context
from joblib.externals.loky.backend import queues as loky_queues
from joblib.externals.loky.backend import reduction as loky_reduction

import mmarray

CASES = [
    ("loky", "loky"),
    ("loky", "spawn"),
    ("loky", "forkserver"),
    ("multiprocessing", "fork"),
    ("multiprocessing", "spawn"),
    ("multiprocessing", "forkserver"),
]
KINDS = ["create", "open", "anonymous", "memmap", "named"]
VIEWS = {
    "whole": lambda a: a,
    "slice": lambda a: a[3:17, 2:9],
    "steps": lambda a: a[1::3, ::4],
    "reversed": lambda a: a[::-1, ::-2],
    "transpose": lambda a: a.T,
    "dtype": lambda a: a.view("u1")[5:9, 7:200:3],
    "column": lambda a: a[:, 5],
}
BIG = (4, 2**16)  # 2 MiB of float64: over joblib's max_nbytes, which it would memmap


_FORKED_FROM_HERE = False  # True in this process once a case starts, and in its forks


@pytest.fixture(scope="module", params=CASES, ids=["-".join(c) for c in CASES])
def case(request):
    """(backend, start method, an entered Parallel whose workers serve the whole case)."""
    global _FORKED_FROM_HERE
    _FORKED_FROM_HERE = True
    backend, method = request.param
    if backend == "loky":
        loky_context.set_start_method(method, force=True)
        loky.get_reusable_executor(reuse=True).shutdown(wait=True)  # next one: new method
        spec = "loky"
    else:
        spec = mp.get_context(method)  # joblib's way: a context as backend is "multiprocessing"
    try:
        with joblib.Parallel(n_jobs=2, backend=spec, batch_size=1, timeout=60) as parallel:
            yield backend, method, parallel
    finally:
        if backend == "loky":
            loky.get_reusable_executor(reuse=True).shutdown(wait=True)
            loky_context.set_start_method(None, force=True)


def _how_started():
    return _FORKED_FROM_HERE, os.getppid(), " ".join(sys.orig_argv)


def test_workers_start_as_the_case_says(case):
    backend, method, parallel = case
    forked, ppid, command = parallel([joblib.delayed(_how_started)()])[0]
    assert forked == (method == "fork")
    assert (ppid != os.getpid()) == (method == "forkserver")
    if method != "fork":
        main = {"loky": "loky.backend.popen_loky_posix", "spawn": "multiprocessing.spawn"}
        assert main.get(method, "multiprocessing.forkserver") in command


@pytest.fixture
def make(tmp_path):
    """make(kind, shape): a zeroed writable array of that kind (named memory unlinked after)."""
    names = []

    def make(kind, shape, dtype="f8"):
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if kind == "create":
            return mmarray.create(tmp_path / f"c{len(names)}.npy", shape, dtype)
        if kind == "open":
            path = tmp_path / f"o{len(names)}.raw"
            path.write_bytes(bytes(n))
            return mmarray.open(path, "r+", dtype=dtype, shape=shape)
        if kind == "anonymous":
            return mmarray.anonymous(shape, dtype)
        if kind == "memmap":
            return mmarray.memmap(tmp_path / f"m{len(names)}.raw", dtype, "w+", shape=shape)
        names.append(f"mmarray-test-joblib-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        return mmarray.named(names[-1], shape, dtype, create=True)

    yield make
    for name in names:
        mmarray.unlink(name)


def _fill(v, value):
    """Write value into v; say what arrived: metadata, writeability, by reference or not."""
    try:
        v[...] = value
        error = None
    except ValueError as e:
        error = str(e)
    return v.shape, v.strides, bool(v.flags.writeable), type(v).__name__, error, _by_ref(v)


def _by_ref(v):
    return mmarray.region(v) is not None


def _write_row(a, i):
    a[i] = i + 1
    return _by_ref(a)


@pytest.mark.parametrize("kind", KINDS)
def test_workers_write_into_every_view_of_every_kind(case, make, kind):
    _, _, parallel = case
    base = make(kind, (len(VIEWS), 40, 30))
    views = [f(base[k]) for k, f in enumerate(VIEWS.values())]
    got = parallel(joblib.delayed(_fill)(v, k + 1) for k, v in enumerate(views))
    expected = np.zeros(base.shape)
    for k, f in enumerate(VIEWS.values()):
        f(expected[k])[...] = k + 1
    # the workers' writes are in the caller's memory, byte for byte, and nothing else
    assert np.asarray(base).tobytes() == expected.tobytes()
    typename = "memmap" if kind == "memmap" else "ndarray"
    assert got == [(v.shape, v.strides, True, typename, None, True) for v in views]


@pytest.mark.parametrize("kind", KINDS)
def test_arrays_over_max_nbytes_are_not_copied(case, make, kind):
    _, _, parallel = case
    a = make(kind, BIG)
    assert a.nbytes > 1e6  # joblib's default max_nbytes: it would memmap a read-only copy
    assert parallel(joblib.delayed(_write_row)(a, i) for i in range(4)) == [True] * 4
    assert (np.asarray(a) == np.arange(1, 5)[:, None]).all()
    assert parallel(joblib.delayed(_write_row)(a[::-1, ::3], i) for i in range(4)) == [True] * 4
    assert (np.asarray(a)[::-1, ::3] == np.arange(1, 5)[:, None]).all()


class _Recorder:
    """The sizes of the messages that carry tasks to the workers, for either backend."""

    def __init__(self, backend, monkeypatch):
        self.sizes = []
        if backend == "loky":
            dumps = loky_queues.dumps

            def recording(obj, reducers=None):
                data = dumps(obj, reducers=reducers)
                self.sizes.append(len(data))
                return data

            monkeypatch.setattr(loky_queues, "dumps", recording)
        else:
            sizes = self.sizes

            class Recording(joblib.pool.CustomizablePickler):
                def dump(self, obj):
                    start = self._out.tell()
                    super().dump(obj)
                    sizes.append(self._out.tell() - start)

                def __init__(self, writer, *args, **kwargs):
                    super().__init__(writer, *args, **kwargs)
                    self._out = writer

            monkeypatch.setattr(joblib.pool, "CustomizablePickler", Recording)

    def largest(self, parallel, tasks):
        self.sizes.clear()
        parallel(tasks)
        return max(self.sizes)


@pytest.mark.parametrize("kind", KINDS)
def test_a_task_costs_under_1kb(case, make, kind, monkeypatch):
    backend, _, parallel = case
    a = make(kind, BIG)
    rec = _Recorder(backend, monkeypatch)
    base = rec.largest(parallel, (joblib.delayed(_by_ref)(None) for _ in range(2)))
    whole = rec.largest(parallel, (joblib.delayed(_by_ref)(a) for _ in range(2)))
    view = rec.largest(parallel, (joblib.delayed(_by_ref)(a[1:, ::-7]) for _ in range(2)))
    # the array adds less than 1 KB to the task that carries it (it is 2 MiB of data)
    assert whole - base < 1024 and view - base < 1024, (base, whole, view)


def test_read_only_arrays_stay_read_only(case, tmp_path):
    _, _, parallel = case
    f = mmarray.create(tmp_path / "r.npy", BIG, "f8")
    f[...] = 3.0
    del f
    ro = mmarray.open(tmp_path / "r.npy", "r")
    got = parallel(joblib.delayed(_fill)(v, -1.0) for v in (ro, ro[1:3, ::5], ro.T))
    read_only = (False, "ndarray", "assignment destination is read-only", True)
    assert [g[2:] for g in got] == [read_only] * 3
    assert (ro == 3.0).all()


def test_plain_numpy_arrays_behave_as_joblib_makes_them(case, tmp_path):
    """Arrays that mmarray does not back take joblib's own way: small ones by value, big
    ones as a read-only temporary memmap, a numpy memmap by its file."""
    _, _, parallel = case
    small, big = np.zeros(100), np.zeros(BIG)
    cow = mmarray.create(tmp_path / "cow.npy", BIG, "f8")
    del cow
    cow = mmarray.open(tmp_path / "cow.npy", "c")  # copy-on-write: mmarray cannot share it
    npm = np.memmap(tmp_path / "np.raw", "f8", "w+", shape=BIG)
    got = parallel(joblib.delayed(_fill)(x, 5.0) for x in (small, big, cow, npm))
    read_only = "assignment destination is read-only"
    assert [g[2:] for g in got] == [
        (True, "ndarray", None, False),  # a private copy: the write is lost, as in joblib
        (False, "memmap", read_only, False),
        (False, "memmap", read_only, False),
        (True, "memmap", None, False),  # joblib maps the file again: the write is seen
    ]
    assert not small.any() and not big.any() and not cow.any()
    assert (npm == 5.0).all()


def _back(a):
    return a[1:3, ::-1]


@pytest.mark.parametrize("kind", ["anonymous", "memmap"])
def test_results_come_back_by_value_as_joblib_sends_them(case, make, kind):
    _, _, parallel = case
    a = make(kind, (4, 50))
    a[...] = np.arange(200).reshape(4, 50)
    (back,) = parallel([joblib.delayed(_back)(a)])
    assert type(back) is np.ndarray and mmarray.region(back) is None
    assert np.array_equal(back, a[1:3, ::-1])


# ---- the pickling itself, in this process ----------------------------------------------


def _pool_dumps(obj, reducers):
    buf = io.BytesIO()
    joblib.pool.CustomizablePickler(buf, reducers).dump(obj)
    return buf.getvalue()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pickler", ["loky", "multiprocessing"])
def test_joblib_reducers_make_references(make, kind, pickler, tmp_path):
    # what joblib's pools and executors call (by their own names: mmarray wraps them all)
    get = _memmapping_reducer.get_memmapping_reducers
    assert get is joblib.pool.get_memmapping_reducers is joblib.executor.get_memmapping_reducers
    forward, _ = get(temp_folder_resolver=lambda: str(tmp_path / "tmp"))
    a = make(kind, (40, 4000))  # 1.3 MB: over max_nbytes
    a[...] = np.arange(a.size).reshape(a.shape)
    for name, f in VIEWS.items():
        v = f(a)
        if pickler == "loky":
            data = bytes(loky_reduction.dumps(v, reducers=forward))
        else:
            data = _pool_dumps(v, forward)
        assert len(data) < 1024, name
        b = pickle.loads(data)
        assert type(b) is type(v) and b.strides == v.strides and np.array_equal(b, v), name
        assert mmarray.region(b) is not None, name
    assert not (tmp_path / "tmp").exists()  # nothing was dumped to joblib's folder


def _return_region_flag(a):
    a[0] += 1
    return _by_ref(a)


def test_a_loky_executor_of_its_own_shares_too():
    """loky's pickler (no joblib reducers) has mmarray's reducer in its table."""
    a = mmarray.anonymous(BIG, "f8")
    with loky.ProcessPoolExecutor(1) as ex:
        assert ex.submit(_return_region_flag, a[1:]).result(timeout=60)
    assert (a[1] == 1).all() and not a[0].any()


# ---- registration: lazy, whatever the import order, optional ----------------------------

_CHECK = """
import tempfile, os, numpy as np, joblib
def f(a, i):
    a[i] = i + 1
a = mmarray.create(os.path.join(tempfile.mkdtemp(), "a.npy"), (4, 2**16), "f8")
joblib.Parallel(n_jobs=2, timeout=60)(joblib.delayed(f)(a, i) for i in range(4))
assert (a == np.arange(1, 5)[:, None]).all(), a[:, 0]
"""


@pytest.mark.parametrize(
    "first",
    [
        # mmarray first: importing it imports neither joblib nor loky
        "import sys, mmarray; assert 'joblib' not in sys.modules and 'loky' not in sys.modules",
        "import joblib, mmarray",
        # joblib made its executor (and reducers) before mmarray was imported
        "import joblib; joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(-1) for _ in range(2)); "
        "import mmarray",
    ],
    ids=["mmarray-first", "joblib-first", "executor-first"],
)
def test_parallel_defaults_share_whatever_the_import_order(first):
    code = first + "\n" + _CHECK
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_import_mmarray_without_joblib():
    code = (
        "import sys; sys.modules['joblib'] = sys.modules['loky'] = None\n"
        "import mmarray, pickle\n"
        "a = mmarray.anonymous(10, 'u1')\n"
        "assert pickle.loads(pickle.dumps(a)).shape == (10,)\n"
        "try:\n    import joblib\nexcept ImportError:\n    pass\n"
        "else:\n    raise AssertionError('joblib imported')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_hooking_twice_wraps_once_and_a_renamed_joblib_warns():
    import types

    from mmarray import _joblib

    cls = _memmapping_reducer.ArrayMemmapForwardReducer
    call, get = cls.__call__, _memmapping_reducer.get_memmapping_reducers
    _joblib._hook_joblib(_memmapping_reducer)
    assert cls.__call__ is call and _memmapping_reducer.get_memmapping_reducers is get
    assert not hasattr(call._mmarray_wraps, "_mmarray_wraps")
    with pytest.warns(RuntimeWarning, match="cannot hook into joblib"):
        _joblib._hook_joblib(types.ModuleType("joblib._memmapping_reducer"))
