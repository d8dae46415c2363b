"""progress=: tqdm looked for before any work, and the kind of bar for where Python runs.

Oracles: numpy for the values; for the bar, which tqdm class `mmarray._progress`
picks (text, or the notebook widget) with the modules that decide it present or
hidden (tqdm, ipywidgets, a Jupyter kernel's shell), and that no warning is raised.
The notebook run on a real kernel is tests/test_notebook.py.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
import types
import warnings

import numpy as np
import pytest

import mmarray
from mmarray import _harness, _progress

tqdm = pytest.importorskip("tqdm")


class _Hide(importlib.abc.MetaPathFinder):
    """Makes the named top-level packages (and their submodules) unimportable."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden by the test)")
        return None


def hide(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """As if ``names`` were not installed, for the rest of the test."""
    for mod in list(sys.modules):
        if mod.split(".")[0] in names:
            monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(sys, "meta_path", [_Hide(*names), *sys.meta_path])


STATS = {
    "median": lambda a, **kw: mmarray.median(a, **kw),
    "nanmedian": lambda a, **kw: mmarray.nanmedian(a, **kw),
    "quantile": lambda a, **kw: mmarray.quantile(a, 0.3, **kw),
    "nanquantile": lambda a, **kw: mmarray.nanquantile(a, [0.3, 0.5], **kw),
    "percentile": lambda a, **kw: mmarray.percentile(a, 30, **kw),
    "nanpercentile": lambda a, **kw: mmarray.nanpercentile(a, 30, axis=0, **kw),
}
INPUTS = {
    "small": lambda: np.arange(10.0),
    "numpy's path (complex)": lambda: np.arange(10) + 1j,
    "empty": lambda: np.zeros(0),
    "over the bar's threshold": lambda: np.zeros(_harness._PROGRESS_MIN, dtype=np.uint8),
}


@pytest.mark.parametrize("size", list(INPUTS))
@pytest.mark.parametrize("name", list(STATS))
def test_progress_true_without_tqdm_fails_before_any_work(monkeypatch, name, size):
    a = INPUTS[size]()
    hide(monkeypatch, "tqdm")
    touched: list[object] = []
    monkeypatch.setattr(_harness, "kernel_array", lambda x: touched.append(x))
    with pytest.raises(ModuleNotFoundError, match=r"pip install mmarray\[progress\]") as e:
        STATS[name](a, progress=True)
    assert e.value.name == "tqdm" and "tqdm" in str(e.value)
    assert touched == []  # refused before the input was looked at


def test_without_tqdm_a_callable_or_no_progress_still_works(monkeypatch):
    a = np.random.default_rng(3).integers(0, 255, _harness._PROGRESS_MIN, dtype=np.uint8)
    hide(monkeypatch, "tqdm")
    seen: list[float] = []
    assert mmarray.median(a, progress=seen.append) == np.median(a)
    assert seen[-1] == 1.0
    assert mmarray.median(a, progress=False) == np.median(a)
    assert mmarray.quantile(a, 0.25) == np.quantile(a, 0.25)
    assert "tqdm" not in sys.modules


class ZMQInteractiveShell:
    """Stands for ipykernel's shell: only its class name and presence matter."""


def fake_kernel(monkeypatch: pytest.MonkeyPatch, shell: object) -> None:
    """As if this were a Jupyter kernel whose IPython shell is ``shell``."""
    try:
        import IPython
    except ImportError:
        IPython = types.ModuleType("IPython")
        monkeypatch.setitem(sys.modules, "IPython", IPython)
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell, raising=False)
    if "ipykernel.zmqshell" not in sys.modules:
        zmqshell = types.ModuleType("ipykernel.zmqshell")
        monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", zmqshell)
    for k in [k for k in os.environ if k == "QT_API" or k.startswith("SPYDER")]:
        monkeypatch.delenv(k)


def test_in_notebook_detection(monkeypatch):
    assert not _progress.in_notebook()  # pytest is no kernel
    fake_kernel(monkeypatch, ZMQInteractiveShell())
    assert _progress.in_notebook()
    monkeypatch.setenv("QT_API", "pyqt5")  # the Qt console draws no widgets
    assert not _progress.in_notebook()
    monkeypatch.delenv("QT_API")
    fake_kernel(monkeypatch, None)  # IPython imported, but no shell running
    assert not _progress.in_notebook()


def test_outside_a_notebook_the_bar_is_text(monkeypatch):
    from tqdm import std

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _progress.bar_class(True) is std.tqdm
    assert _progress.bar_class(False) is None
    assert _progress.bar_class(print) is None


def test_a_notebook_without_ipywidgets_gets_text_and_no_warning(monkeypatch, capsys):
    from tqdm import std

    fake_kernel(monkeypatch, ZMQInteractiveShell())
    hide(monkeypatch, "ipywidgets")
    a = np.zeros(_harness._PROGRESS_MIN, dtype=np.uint8)
    a[::3] = 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tqdm.auto warns "IProgress not found" here
        assert _progress.bar_class(True) is std.tqdm
        assert mmarray.median(a, progress=True) == np.median(a)
    err = capsys.readouterr().err
    assert "mmarray:" in err and "IProgress" not in err


def test_a_notebook_with_ipywidgets_gets_the_widget(monkeypatch):
    pytest.importorskip("ipywidgets")
    from tqdm import notebook

    fake_kernel(monkeypatch, ZMQInteractiveShell())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _progress.bar_class(True) is notebook.tqdm
