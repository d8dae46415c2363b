"""How many threads a call uses: the one default and the one check of ``workers=``."""

from __future__ import annotations

import operator
import os

from . import _core

__all__ = ["check_workers", "default_workers", "kernel_workers"]


def default_workers() -> int:
    """The default number of workers: the CPUs this process may run on.

    Returns
    -------
    int
        ``len(os.sched_getaffinity(0))`` (``os.cpu_count()`` where the platform has
        no affinity), at least 1 and at most ``_core.MAX_WORKERS``.

    Examples
    --------
    >>> from mmarray import _core
    >>> 1 <= default_workers() <= _core.MAX_WORKERS
    True
    """
    try:
        cpus = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        cpus = os.cpu_count() or 1
    return min(cpus, _core.MAX_WORKERS)


def check_workers(workers: int | None) -> int:
    """A ``workers=`` argument, checked.

    Parameters
    ----------
    workers : int or None
        None for `default_workers`, else an integer (anything with ``__index__``).

    Returns
    -------
    int
        `default_workers` for None, else ``workers`` itself (not capped: the callers
        that start threads in C cap it at ``_core.MAX_WORKERS``).

    Raises
    ------
    TypeError
        ``workers`` is not an integer.
    ValueError
        ``workers`` is below 1.

    Examples
    --------
    >>> check_workers(3)
    3
    >>> check_workers(0)
    Traceback (most recent call last):
    ...
    ValueError: workers must be at least 1, got 0
    """
    if workers is None:
        return default_workers()
    count = operator.index(workers)
    if count < 1:
        raise ValueError(f"workers must be at least 1, got {count}")
    return count


def kernel_workers(workers: int | None) -> int:
    """The threads a C kernel starts for ``workers=``: `check_workers`, at most
    ``_core.MAX_WORKERS``.

    Examples
    --------
    >>> from mmarray import _core
    >>> kernel_workers(10**6) == _core.MAX_WORKERS
    True
    """
    if workers is None:  # the hot path of a small median: one call fewer
        return default_workers()
    return min(check_workers(workers), _core.MAX_WORKERS)
