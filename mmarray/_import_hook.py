"""Run a function once a module has been imported, without importing it ourselves.

mmarray registers its reducers with multiprocessing, loky and joblib, none of which
``import mmarray`` may import: multiprocessing costs a few milliseconds, and joblib
and loky are optional. :func:`when_imported` runs the registration at once when the
module is already loaded, and otherwise right after it has been executed, through a
meta path finder that wraps the module's loader. A module whose execution fails
keeps its callbacks pending for the next attempt. A callback that raises does not
break the import it runs in: its error becomes a ``RuntimeWarning``.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["when_imported"]

_lock = threading.Lock()
_pending: dict[str, list[Callable[[ModuleType], None]]] = {}


def when_imported(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Call ``callback(module)`` now if module ``name`` is loaded, else once it is."""
    with _lock:
        module = sys.modules.get(name)
        if module is None:
            _pending.setdefault(name, []).append(callback)
            if _Finder not in sys.meta_path:
                sys.meta_path.insert(0, _Finder)
    if module is not None:
        _run(callback, module)


def _run(callback: Callable[[ModuleType], None], module: ModuleType) -> None:
    try:
        callback(module)
    except Exception as e:
        warnings.warn(
            f"mmarray could not register itself with {module.__name__} "
            f"({type(e).__name__}: {e}): arrays passed through it travel by value",
            RuntimeWarning,
            stacklevel=2,
        )


class _CallingLoader:
    """Wraps a module's loader to run the callbacks once the module has executed."""

    def __init__(self, inner: Any, callbacks: list[Callable[[ModuleType], None]]) -> None:
        self._inner = inner
        self._callbacks = callbacks

    def create_module(self, spec: Any) -> Any:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        try:
            self._inner.exec_module(module)
        except BaseException:
            with _lock:  # the import failed: the next attempt runs them
                _pending.setdefault(module.__name__, [])[:0] = self._callbacks
                if _Finder not in sys.meta_path:
                    sys.meta_path.insert(0, _Finder)
            raise
        for callback in self._callbacks:
            _run(callback, module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Finder:
    """Meta path finder that hands the modules in ``_pending`` a :class:`_CallingLoader`."""

    @classmethod
    def find_spec(cls, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in _pending:
            return None
        for finder in [f for f in sys.meta_path if f is not cls]:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        with _lock:
            callbacks = _pending.pop(name, [])
            if not _pending and cls in sys.meta_path:
                sys.meta_path.remove(cls)
        spec.loader = _CallingLoader(spec.loader, callbacks)
        return spec
