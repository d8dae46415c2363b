"""The bar behind ``progress=True``: tqdm, looked for before any work, in the form
that suits where Python runs.

In a Jupyter kernel that has ipywidgets the bar is tqdm's widget
(``tqdm.notebook``); everywhere else, a notebook without ipywidgets included, it is
tqdm's text bar (``tqdm.std``). The choice is made here rather than by
``tqdm.auto``, which warns (``TqdmWarning: IProgress not found``) in a kernel
without ipywidgets. tqdm itself is optional (``pip install mmarray[progress]``):
without it ``progress=True`` fails at once, saying so, whatever the input's size.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["INSTALL", "bar_class", "in_notebook"]

#: What the error without tqdm tells the user to run.
INSTALL = "pip install mmarray[progress]"


def in_notebook() -> bool:
    """True inside a Jupyter kernel whose front end draws widgets: an IPython shell
    served over ZMQ (ipykernel), other than the Qt console and Spyder, which show
    text only."""
    if "ipykernel.zmqshell" not in sys.modules:
        return False
    if any(k == "QT_API" or k.startswith("SPYDER") for k in os.environ):
        return False
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)()
    name = type(shell).__name__.lower()
    return shell is not None and "zmq" in name and "qt" not in name and "spyder" not in name


def _widget_bar() -> Any:
    """tqdm's widget bar, or None where ipywidgets (or its progress widget) is missing."""
    try:
        import ipywidgets  # noqa: F401
        from tqdm import notebook
    except ImportError:
        return None
    return notebook.tqdm if notebook.IProgress is not None else None


def bar_class(progress: object) -> Any:
    """The tqdm class that ``progress`` asks for: None for a callable or a false
    value, else a tqdm class (the widget in a notebook with ipywidgets, text
    elsewhere).

    Raises
    ------
    ModuleNotFoundError
        ``progress`` asks for a bar and tqdm cannot be imported; the message says
        to install mmarray's ``progress`` extra.
    """
    if callable(progress) or not progress:
        return None
    try:
        from tqdm import std
    except ImportError as e:
        raise ModuleNotFoundError(
            f"progress=True draws its bar with tqdm, which is not installed ({e}); "
            f"install it with: {INSTALL}, or pass a callable as progress=",
            name="tqdm",
        ) from e
    widget = _widget_bar() if in_notebook() else None
    return widget if widget is not None else std.tqdm
