"""Where a worker finds a file: the path map, and who "this worker" is in error messages.

A dask graph from :func:`mmarray.dask.from_file` names each file by the path the
client used. A worker on another machine may see the same shared file system under
another mount point; the path map, read on the worker when a task runs, rewrites
the client's prefix into the worker's. It lives in dask's configuration under the
key ``mmarray.path-map`` (a dict ``{client prefix: worker prefix}``), so a worker
can get it from its own dask configuration file, from the environment
(``DASK_MMARRAY__PATH_MAP='{"/client/data": "/mnt/data"}'``) or from
:func:`path_map` (in the client before the cluster starts, since nannies hand
their configuration to the workers they start, or on running workers with
``client.run(mmarray.dask.path_map, {...})``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import dask.config

__all__ = ["path_map", "resolve", "who"]

CONFIG_KEY = "mmarray.path-map"


def _checked(mapping: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for src, dst in mapping.items():
        if not isinstance(src, str) or not isinstance(dst, str):
            raise TypeError(f"path map entries must be str -> str, not {src!r} -> {dst!r}")
        if not os.path.isabs(src) or not os.path.isabs(dst):
            raise ValueError(f"path map prefixes must be absolute paths, not {src!r} -> {dst!r}")
        out[os.path.normpath(src)] = os.path.normpath(dst)
    return out


def path_map(mapping: Mapping[str, str] | None = None) -> dict[str, str]:
    """Set this process's path map (``None`` or ``{}`` clears it); return the map now in force.

    Each key is a directory prefix as the client names it, each value the same directory
    as this process (a worker) sees it. The longest matching prefix wins, and a
    prefix matches whole path components only (``/data`` maps ``/data/x`` but not
    ``/database``).

    Parameters
    ----------
    mapping : dict of str to str, optional
        Absolute client prefix -> absolute worker prefix.

    Returns
    -------
    dict
        The map in force after the call (the current one when ``mapping`` is omitted).

    Examples
    --------
    >>> import mmarray.dask as md
    >>> md.path_map({"/client/data": "/mnt/data"})
    {'/client/data': '/mnt/data'}
    >>> md.resolve("/client/data/run1.npy")
    '/mnt/data/run1.npy'
    >>> md.path_map({})
    {}

    On a running cluster, set it on every worker with
    ``client.run(mmarray.dask.path_map, {"/client/data": "/mnt/data"})``.
    """
    if mapping is not None:
        dask.config.set({CONFIG_KEY: _checked(mapping)})
    return current()


def current() -> dict[str, str]:
    """The path map in force in this process (dask config ``mmarray.path-map``)."""
    raw = dask.config.get(CONFIG_KEY, default=None)
    return _checked(raw) if raw else {}


def resolve(path: str) -> str:
    """The path under which this process sees the client's ``path``, by the path map."""
    best = ""
    for src in current():
        if len(src) > len(best) and (
            path == src or path.startswith(src.rstrip("/") + "/") or src == "/"
        ):
            best = src
    if not best:
        return path
    dst = current()[best]
    rest = path[len(best) :].lstrip("/") if best != "/" else path.lstrip("/")
    return os.path.join(dst, rest) if rest else dst


def who() -> str:
    """This process, for error messages: the dask worker's address when it is one."""
    try:
        from distributed import get_worker

        address = get_worker().address
    except (ImportError, ValueError):
        address = f"process {os.getpid()}"
    return f"worker {address} on host {socket.gethostname()}"
