"""map_chunks: run a function on chunks of an array along axis 0, in threads or processes."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ._core import PAGESIZE
from ._reducer import UnavailableArray
from ._workers import check_workers

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = ["map_chunks"]

T = TypeVar("T")

_TARGET_CHUNK_BYTES = 8 << 20


def _default_chunk(a: np.ndarray[Any, Any]) -> int:
    """Rows per chunk: about 8 MiB, a whole number of pages when a row's size allows."""
    row = a.itemsize * math.prod(a.shape[1:])
    if row == 0:
        return max(1, a.shape[0])
    step = PAGESIZE // math.gcd(PAGESIZE, row)  # rows that make a multiple of the page size
    rows = max(1, _TARGET_CHUNK_BYTES // row)
    return max(step, rows - rows % step)


def _chunk_rows(a: np.ndarray[Any, Any], chunk: int | None) -> int:
    """Rows per chunk: ``chunk`` checked (an integer, at least 1), or the default."""
    if chunk is None:
        return _default_chunk(a)
    rows = operator.index(chunk)
    if rows < 1:
        raise ValueError(f"chunk must be at least 1, got {rows}")
    return rows


def _call(func: Callable[[Any], T], chunk: np.ndarray[Any, Any]) -> T:
    """In the worker: a chunk that could not be mapped again arrives as an
    UnavailableArray; its error is the chunk's, whatever func does with it."""
    if isinstance(chunk, UnavailableArray):
        chunk.reraise()
    return func(chunk)


def _result(fut: Future[T]) -> T:
    """A future's result; a returned array that could not be mapped again here raises
    its error (the worker that returned anonymous memory exited before it arrived)."""
    res = fut.result()
    if isinstance(res, UnavailableArray):
        res.reraise()
    return res


def map_chunks(
    func: Callable[[np.ndarray[Any, Any]], T],
    a: np.ndarray[Any, Any],
    *,
    chunk: int | None = None,
    workers: int | None = None,
    backend: str = "thread",
) -> list[T]:
    """Apply ``func`` to consecutive chunks of ``a`` along axis 0 and return the results in order.

    Parameters
    ----------
    func : callable
        Called with each chunk ``a[start:stop]`` (a view). With
        ``backend='process'`` it must be picklable (a module-level function).
    a : numpy.ndarray
        At least one dimension.
    chunk : int, optional
        Rows per chunk. By default about 8 MiB of rows, rounded so that each
        chunk is a whole number of pages when the row size allows it.
    workers : int, optional
        Threads or processes (at least 1); by default the CPUs this process may
        run on (``os.sched_getaffinity``, at most 256), as for `mmarray.median`.
        Never more than the number of chunks.
    backend : {'thread', 'process'}
        ``'thread'`` suits functions that release the GIL (most numpy
        reductions). ``'process'`` uses a ``ProcessPoolExecutor``; chunks of
        arrays over shareable memory travel by reference, not by copy.

    Returns
    -------
    list
        ``[func(a[0:chunk]), func(a[chunk:2*chunk]), ...]``.

    Raises
    ------
    Exception
        The first failing chunk's exception (in chunk order), re-raised with a
        note naming the chunk's rows.

    Examples
    --------
    >>> import numpy as np, mmarray
    >>> a = mmarray.anonymous(10, "i8")
    >>> a[:] = np.arange(10)
    >>> [int(s) for s in mmarray.map_chunks(np.sum, a, chunk=4)]
    [6, 22, 17]
    """
    if backend not in ("thread", "process"):
        raise ValueError(f"backend must be 'thread' or 'process', not {backend!r}")
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    if a.ndim == 0:
        raise ValueError("map_chunks needs an array with at least one dimension")
    n = a.shape[0]
    chunk = _chunk_rows(a, chunk)
    nworkers = check_workers(workers)
    bounds = [(i, min(i + chunk, n)) for i in range(0, n, chunk)]
    if not bounds:
        return []
    nworkers = min(nworkers, len(bounds))
    if backend == "thread":
        from concurrent.futures import ThreadPoolExecutor as Executor
    else:
        from concurrent.futures import ProcessPoolExecutor as Executor  # type: ignore[assignment]
    with Executor(max_workers=nworkers) as ex:
        futures = [ex.submit(_call, func, a[lo:hi]) for lo, hi in bounds]
        results: list[T] = []
        for (lo, hi), fut in zip(bounds, futures, strict=True):
            try:
                results.append(_result(fut))
            except BaseException as e:
                for f in futures:
                    f.cancel()
                e.add_note(f"in map_chunks: chunk a[{lo}:{hi}] (rows {lo} to {hi - 1} of {n})")
                raise
    return results
