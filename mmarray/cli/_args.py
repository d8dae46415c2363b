"""Argument types and the raw-file options shared by the commands of ``mmarray``.

The converters raise ``argparse.ArgumentTypeError`` so that a bad value is a usage
error (exit status 2, argparse's one-line message), never a traceback.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Callable
from typing import Any

import numpy as np

import mmarray

__all__ = [
    "add_raw_options", "check_fill", "count", "dtype", "fill_value", "numbers", "open_array",
    "shape", "workers",
]  # fmt: skip


def shape(text: str) -> tuple[int, ...]:
    """``'1000,3'`` (or ``'1000x3'``) as ``(1000, 3)``; ``''`` or ``'()'`` is 0-d.

    >>> shape("1000,3"), shape("7"), shape("2x3x4"), shape("()")
    ((1000, 3), (7,), (2, 3, 4), ())
    """
    body = text.strip().strip("()").replace("x", ",")
    parts = [p.strip() for p in body.split(",")]
    if parts and parts[-1] == "":
        parts.pop()  # "7," is (7,)
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a shape: give integers separated by commas, e.g. 1000,3"
        ) from None
    if any(n < 0 for n in dims):
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape: a dimension is negative")
    return dims


def dtype(text: str) -> np.dtype[Any]:
    """A numpy dtype from its name (``float64``, ``f8``, ``<i2``...)."""
    try:
        return np.dtype(text)
    except TypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a numpy dtype") from None


def count(text: str) -> int:
    """A non-negative integer (rows, offsets)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return n


def numbers(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    """A converter of ``'0.25,0.75'`` into ``[0.25, 0.75]`` (each item by ``kind``).

    >>> numbers(float)("0.25,0.75"), numbers(int)("1")
    ([0.25, 0.75], [1])
    """

    def convert(text: str) -> list[Any]:
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a {kind.__name__} or a list of them (e.g. 1,2); "
                "FILE goes before the options that take several values"
            ) from None

    convert.__name__ = kind.__name__  # argparse names it in "invalid ... value"
    return convert


def workers(text: str) -> int:
    """A number of threads, at least 1."""
    n = count(text)
    if n < 1:
        raise argparse.ArgumentTypeError("--workers must be at least 1")
    return n


def fill_value(text: str) -> Any:
    """A Python literal (``1.5``, ``-3``, ``True``, ``1+2j``) or ``nan``/``inf``.

    >>> fill_value("1.5"), fill_value("-3"), fill_value("nan")
    (1.5, -3, nan)
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def check_fill(fill: Any, dt: np.dtype[Any]) -> None:
    """Refuse a fill value that the dtype would change (1.5 for an integer dtype).

    >>> check_fill(1.5, np.dtype("i4"))
    Traceback (most recent call last):
    ...
    ValueError: --fill 1.5 does not fit dtype int32 (numpy would store 1)
    """
    value = np.asarray(fill)
    if not np.can_cast(value.dtype, dt, casting="same_kind"):
        stored = value.astype(dt)
        raise ValueError(f"--fill {fill!r} does not fit dtype {dt} (numpy would store {stored})")


def add_raw_options(p: argparse.ArgumentParser) -> None:
    """``--dtype --shape --offset --order``: how to read a raw (headerless) file."""
    g = p.add_argument_group("raw files (a .npy file describes itself)")
    g.add_argument("--dtype", type=dtype, help="element type of a raw file, e.g. float64")
    g.add_argument(
        "--shape", type=shape, help="shape of a raw file, e.g. 1000,3 (default: all of it, 1-D)"
    )
    g.add_argument("--offset", type=count, default=0, help="byte offset of a raw file's data")
    g.add_argument("--order", choices=("C", "F"), default="C", help="memory order of a raw file")


def open_array(args: argparse.Namespace, path: str, mode: str = "r") -> np.ndarray[Any, Any]:
    """Map ``path`` as its .npy header says, or as the raw options say."""
    raw = args.dtype is not None
    if not raw and (args.shape is not None or args.offset):
        raise ValueError("--shape and --offset describe a raw file: give --dtype too")
    if not raw:
        try:
            return mmarray.open(path, mode)
        except ValueError as e:
            if "no magic string" not in str(e):
                raise
            raise ValueError("not a .npy file; for a raw file give --dtype (and --shape)") from None
    return mmarray.open(
        path, mode, dtype=args.dtype, shape=args.shape, offset=args.offset, order=args.order
    )
