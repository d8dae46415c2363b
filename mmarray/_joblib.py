"""joblib and loky: arrays in shareable memory reach their workers by reference.

loky's pickler takes extra reducers from a table (``loky.backend.reduction.register``);
mmarray adds its reducer (:func:`~mmarray._reducer.reduce_array`) there, in loky and
in the copy joblib ships (``joblib.externals.loky``), as it does for multiprocessing.

joblib does not use that table for numpy arrays: each of its pools and executors
pickles tasks with reducers of its own, made by
``joblib._memmapping_reducer.get_memmapping_reducers``, whose
``ArrayMemmapForwardReducer`` recognises only memory whose ``.base`` chain ends at an
``mmap.mmap``. It copies every other array over ``max_nbytes`` (1 MB by default)
into a read-only temporary memmap, and pickles the rest by value: either way a
worker's writes never reach the caller's array. joblib offers no public hook, so
mmarray wraps two of its names:

* ``ArrayMemmapForwardReducer.__call__`` first asks mmarray: an array in shareable
  memory that mmarray backs (a file mapped shared, ``anonymous(shared=True)``,
  ``named()``, any view of them) travels as a reference, with its writeability;
  everything else goes on to joblib's own code, unchanged. Patching the class also
  covers executors that joblib made before mmarray was imported (loky reuses them
  with the reducers they were made with).
* ``get_memmapping_reducers`` gives :class:`mmarray.memmap` (a subclass of
  ``numpy.memmap``, which joblib's table names only by exact type) the same
  reducers as ``numpy.ndarray``.

Results coming back from the workers are pickled as joblib pickles arrays that it
does not back (by value). All of this is registered when loky or joblib is imported
(:func:`~mmarray._import_hook.when_imported`), so ``import mmarray`` never imports
either. Where joblib's names have changed, a ``RuntimeWarning`` says that arrays
will be copied.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from ._import_hook import when_imported
from ._memmap import memmap
from ._reducer import reduce_array, reduce_shared

__all__ = ["install"]

_LOKY_REDUCTIONS = ("loky.backend.reduction", "joblib.externals.loky.backend.reduction")
_JOBLIB_REDUCERS = "joblib._memmapping_reducer"
# the modules that hold get_memmapping_reducers under its own name (from ... import)
_HOLDERS = (_JOBLIB_REDUCERS, "joblib.pool", "joblib.executor")


def install() -> None:
    """Register mmarray with loky and joblib, now or once they are imported."""
    for name in _LOKY_REDUCTIONS:
        when_imported(name, _register_loky)
    when_imported(_JOBLIB_REDUCERS, _hook_joblib)


def _register_loky(reduction: ModuleType) -> None:
    reduction.register(np.ndarray, reduce_array)
    reduction.register(memmap, reduce_array)


def _forward_by_reference(joblib_call: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``ArrayMemmapForwardReducer.__call__`` that sends mmarray's shareable arrays by
    reference and hands every other array to ``joblib_call``, joblib's own."""

    @functools.wraps(joblib_call)
    def __call__(self: Any, a: Any) -> Any:
        rv = reduce_shared(a) if isinstance(a, np.ndarray) else None
        return joblib_call(self, a) if rv is None else rv

    __call__._mmarray_wraps = joblib_call  # type: ignore[attr-defined]
    return __call__


def _with_memmap(get: Callable[..., Any]) -> Callable[..., Any]:
    """``get_memmapping_reducers`` that gives :class:`mmarray.memmap` the reducers it
    gives ``numpy.ndarray``, both ways."""

    @functools.wraps(get)
    def get_memmapping_reducers(*args: Any, **kwargs: Any) -> Any:
        forward, backward = get(*args, **kwargs)
        for table in (forward, backward):
            if np.ndarray in table:
                table.setdefault(memmap, table[np.ndarray])
        return forward, backward

    get_memmapping_reducers._mmarray_wraps = get  # type: ignore[attr-defined]
    return get_memmapping_reducers


def _hook_joblib(module: ModuleType) -> None:
    cls = getattr(module, "ArrayMemmapForwardReducer", None)
    get = getattr(module, "get_memmapping_reducers", None)
    if not isinstance(cls, type) or not callable(get) or "__call__" not in cls.__dict__:
        version = getattr(sys.modules.get("joblib"), "__version__", "of this version")
        warnings.warn(
            f"mmarray cannot hook into joblib {version} (its memmapping reducer was "
            "renamed): mmarray arrays passed to joblib.Parallel are copied to the "
            "workers, and their writes are not seen by the caller; pass "
            "mmarray.share(a) and call .open() in the worker instead",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    if not hasattr(cls.__call__, "_mmarray_wraps"):
        setattr(cls, "__call__", _forward_by_reference(cls.__call__))  # noqa: B010
    if hasattr(get, "_mmarray_wraps"):
        return
    wrapped = _with_memmap(get)
    for name in _HOLDERS:
        holder = sys.modules.get(name)
        if holder is not None and getattr(holder, "get_memmapping_reducers", None) is get:
            holder.get_memmapping_reducers = wrapped  # type: ignore[attr-defined]
