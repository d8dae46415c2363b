"""``mmarray median|quantile FILE``: exact order statistics of a mapped file."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from typing import Any

import numpy as np

import mmarray

from . import _args
from ._report import Failures

__all__ = ["METHODS", "add_parsers", "compute", "show_progress"]

#: numpy.quantile's methods.
METHODS = (
    "inverted_cdf", "averaged_inverted_cdf", "closest_observation", "interpolated_inverted_cdf",
    "hazen", "weibull", "linear", "median_unbiased", "normal_unbiased", "lower", "higher",
    "midpoint", "nearest",
)  # fmt: skip


def show_progress(args: argparse.Namespace) -> bool:
    """A bar only on a terminal, and only where tqdm is installed."""
    if args.no_progress:
        return False
    if importlib.util.find_spec("tqdm") is None:
        return False
    return sys.stderr.isatty()


def _flat(groups: list[list[Any]] | None) -> list[Any] | None:
    """``--q 0.1,0.2 0.3`` arrives as ``[[0.1, 0.2], [0.3]]``: one flat list."""
    return None if groups is None else [x for group in groups for x in group]


def compute(args: argparse.Namespace, path: str) -> Any:
    """The statistic the arguments ask for, over the file at ``path``."""
    a = _args.open_array(args, path)
    axes = _flat(args.axis)
    axis = None if axes is None else axes[0] if len(axes) == 1 else tuple(axes)
    common: dict[str, Any] = dict(axis=axis, workers=args.workers, progress=show_progress(args))
    if args.command == "median":
        median = mmarray.nanmedian if args.nan else mmarray.median
        return median(a, **common)
    qs = _flat(args.q) or []
    q = qs[0] if len(qs) == 1 else qs
    quantile = mmarray.nanquantile if args.nan else mmarray.quantile
    return quantile(a, q, method=args.method, **common)


def as_json(args: argparse.Namespace, path: str, value: Any) -> str:
    """The result as one JSON object: the question asked and the answer."""
    arr = np.asarray(value)
    d: dict[str, Any] = {"file": path, "statistic": args.command}
    if args.command == "quantile":
        qs = _flat(args.q) or []
        d["q"] = qs[0] if len(qs) == 1 else qs
        d["method"] = args.method
    d.update(axis=_flat(args.axis), dtype=str(arr.dtype), shape=list(arr.shape), value=arr.tolist())
    return json.dumps(d)


def run(args: argparse.Namespace, failures: Failures) -> None:
    """Print the statistic, as numpy prints it (its repr) or as JSON."""
    with failures.about(args.file):
        value = compute(args, args.file)
        print(as_json(args, args.file, value) if args.json else repr(value))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="a .npy file, or a raw file with --dtype")
    p.add_argument(
        "--axis",
        type=_args.numbers(int),
        nargs="+",
        metavar="AX",
        help="axis or axes to reduce, e.g. 0 or 0,1 (default: all)",
    )
    p.add_argument("--nan", action="store_true", help="ignore NaNs (nanmedian, nanquantile)")
    p.add_argument("--workers", type=_args.workers, metavar="N", help="threads (default: all CPUs)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    _args.add_raw_options(p)
    p.set_defaults(run=run)


def add_parsers(sub: Any) -> None:
    """Register ``median`` and ``quantile``."""
    p = sub.add_parser(
        "median",
        help="exact median of a file",
        description="Exact median of the array in FILE, as numpy.median computes it, in "
        "parallel and without copying the file. A progress bar is drawn on a terminal "
        "when tqdm is installed (pip install mmarray[progress]).",
    )
    _common(p)
    p = sub.add_parser(
        "quantile",
        help="exact quantiles of a file",
        description="Exact quantiles of the array in FILE, as numpy.quantile computes them.",
    )
    p.add_argument(
        "--q",
        type=_args.numbers(float),
        nargs="+",
        required=True,
        metavar="Q",
        help="quantiles in [0, 1], e.g. 0.5 or 0.25,0.75",
    )
    p.add_argument(
        "--method", default="linear", choices=METHODS, metavar="METHOD",
        help="numpy's method: " + ", ".join(METHODS) + " (default: linear)",
    )  # fmt: skip
    _common(p)
