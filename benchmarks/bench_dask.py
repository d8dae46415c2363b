"""mmarray.dask on a LocalCluster of 2 worker processes against mmarray in one process.

Group ``dask-sum-float64``: the sum of a 1 GiB float64 file. The reference is
``mmarray.open(path, dtype="f8").sum()`` in this process (a fresh mapping per call);
the peer ``mmarray.dask.from_file(path, dtype="f8").sum().compute()`` on the cluster,
the graph built inside the timed call (its tasks map their chunks afresh each time).
Bar: the dask case within 1.5x of the single-process one (report: peer / mmarray).
Both answers are checked before timing: the two sums add in different orders, so
they agree to within ``1e-12`` of the sum of the absolute values.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import mmarray

from .conftest import ROUNDS, timed

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
