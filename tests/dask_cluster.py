"""The real cluster the dask tests run on: two worker processes of one thread each."""

from __future__ import annotations

from collections.abc import Iterator

import distributed

TIMEOUT = 60  # seconds for the cluster to start, stop, or give one result


def local_client() -> Iterator[distributed.Client]:
    """Yield a client of a fresh LocalCluster (2 processes x 1 thread, 1 GiB each), both
    closed afterwards; a module-scoped fixture yields from it."""
    cluster = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        dashboard_address=":0",
        silence_logs=40,
        memory_limit="1GiB",
    )
    c = distributed.Client(cluster, timeout=TIMEOUT)
    try:
        c.wait_for_workers(2, timeout=TIMEOUT)
        yield c
    finally:
        c.close(timeout=TIMEOUT)
        cluster.close(timeout=TIMEOUT)
