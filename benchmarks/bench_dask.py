"""mmarray.dask on a LocalCluster of 2 worker processes against mmarray in one process.

Group ``dask-sum-float64``: the sum of a 1 GiB float64 file. The reference is
``mmarray.open(path, dtype="f8").sum()`` in this process (a fresh mapping per call);
the peer ``mmarray.dask.from_file(path, dtype="f8").sum().compute()`` on the cluster,
the graph built inside the timed call (its tasks map their chunks afresh each time).
Bar: the dask case within 1.5x of the single-process one (report: peer / mmarray).
Both answers are checked before timing: the two sums add in different orders, so
they agree to within ``1e-12`` of the sum of the absolute values.

Groups ``dask-median-int16`` and ``dask-median-float64``: the exact median of a 1 GiB
file on the same cluster. The reference is ``mmarray.dask.median(from_file(...))``
(the distributed radix selection); the peers are dask's approximate
``da.percentile(da.from_array(np.memmap(...)), 50)``, ``da.median(..., axis=0)`` on
the 1-d array (it rechunks the axis into one chunk) and single-process
``mmarray.median`` (``one_process``). Bars: the approximate percentile at least 5x
(int16) and 3x (float64) slower, ``da.median`` at least 10x, ``one_process`` at least
1/3 (the dask median within 3x of it). Groups ``dask-quantiles9-*``: 9 quantiles
(``np.linspace(0, 1, 9)``) against ``da.percentile`` of the same 9. The exact answers
are checked against numpy's (``np.median`` / ``np.quantile`` of the file, once).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import mmarray

from .conftest import ROUNDS, SLOW_ROUNDS, timed

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
md = pytest.importorskip("mmarray.dask")


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=":0",
            silence_logs=40,
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        c.wait_for_workers(2, timeout=120)
        yield c


@functools.cache
def abs_sum(path: Path) -> float:
    return float(np.abs(np.fromfile(path, dtype="f8")).sum())


def check_sum(got: float, path: Path) -> None:
    want = float(mmarray.open(path, dtype="f8").sum())
    assert abs(got - want) <= 1e-12 * abs_sum(path), (got, want)


@pytest.mark.benchmark(group="dask-sum-float64")
def test_sum_float64_mmarray(benchmark, float64_1gib):
    p = os.fspath(float64_1gib)
    fn = lambda: mmarray.open(p, dtype="f8").sum()  # noqa: E731
    check_sum(fn(), float64_1gib)
    timed(benchmark, fn, rounds=ROUNDS)


@pytest.mark.benchmark(group="dask-sum-float64")
def test_sum_float64_dask_from_file(benchmark, float64_1gib, client):
    p = os.fspath(float64_1gib)
    fn = lambda: md.from_file(p, dtype="f8").sum().compute()  # noqa: E731
    check_sum(fn(), float64_1gib)
    benchmark.extra_info["workers"] = "LocalCluster: 2 processes x 1 thread"
    timed(benchmark, fn, rounds=ROUNDS)


# ---- exact median and quantiles ----------------------------------------------------------

Q9 = np.linspace(0, 1, 9)
DTYPES = {"int16": "i2", "float64": "f8"}


@pytest.fixture(params=sorted(DTYPES))
def stats_file(request, int16_1gib, float64_1gib) -> tuple[str, str]:
    path = int16_1gib if request.param == "int16" else float64_1gib
    return os.fspath(path), DTYPES[request.param]


@functools.cache
def numpy_answers(path: str, dtype: str) -> tuple[object, np.ndarray]:
    a = np.fromfile(path, dtype=dtype)
    return np.median(a), np.quantile(a, Q9)


def _same(got: object, want: object) -> None:
    g, w = np.asarray(got), np.asarray(want)
    assert g.dtype == w.dtype and np.array_equal(g, w), (got, want)


def _bench(benchmark, fn, check=None, rounds=ROUNDS) -> None:
    got = fn()
    if check is not None:
        check(got)
    benchmark.extra_info["workers"] = "LocalCluster: 2 processes x 1 thread"
    timed(benchmark, fn, rounds=rounds)


def _group(benchmark, what: str, dtype: str) -> None:
    name = "int16" if dtype == "i2" else "float64"
    benchmark.group = f"dask-{what}-{name}"


def test_median_mmarray_dask(benchmark, stats_file, client):
    p, dt = stats_file
    _group(benchmark, "median", dt)
    fn = lambda: md.median(md.from_file(p, dtype=dt))  # noqa: E731
    _bench(benchmark, fn, lambda got: _same(got, numpy_answers(p, dt)[0]))


def test_median_da_percentile_approximate(benchmark, stats_file, client):
    p, dt = stats_file
    _group(benchmark, "median", dt)
    fn = lambda: da.percentile(da.from_array(np.memmap(p, dtype=dt, mode="r")), 50).compute()  # noqa: E731
    _bench(benchmark, fn)


def test_median_da_median_axis0(benchmark, stats_file, client):
    p, dt = stats_file
    _group(benchmark, "median", dt)
    fn = lambda: da.median(da.from_array(np.memmap(p, dtype=dt, mode="r")), axis=0).compute()  # noqa: E731
    _bench(benchmark, fn, lambda got: _same(got, numpy_answers(p, dt)[0]), rounds=SLOW_ROUNDS)


def test_median_one_process(benchmark, stats_file):
    p, dt = stats_file
    _group(benchmark, "median", dt)
    fn = lambda: mmarray.median(mmarray.open(p, dtype=dt))  # noqa: E731
    _bench(benchmark, fn, lambda got: _same(got, numpy_answers(p, dt)[0]))
    benchmark.extra_info["workers"] = "this process, every CPU's thread"


def test_quantiles9_mmarray_dask(benchmark, stats_file, client):
    p, dt = stats_file
    _group(benchmark, "quantiles9", dt)
    fn = lambda: md.quantile(md.from_file(p, dtype=dt), Q9)  # noqa: E731
    _bench(benchmark, fn, lambda got: _same(got, numpy_answers(p, dt)[1]))


def test_quantiles9_da_percentile_approximate(benchmark, stats_file, client):
    p, dt = stats_file
    _group(benchmark, "quantiles9", dt)
    x = lambda: da.from_array(np.memmap(p, dtype=dt, mode="r"))  # noqa: E731
    fn = lambda: da.percentile(x(), Q9 * 100).compute()  # noqa: E731
    _bench(benchmark, fn)
