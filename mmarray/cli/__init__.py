"""The ``mmarray`` command line (console script ``mmarray``, and ``python -m mmarray``).

One module per group of commands: ``_info`` (``info``), ``_stats`` (``median``,
``quantile``), ``_files`` (``create``, ``grow``, ``punch``, ``evict``,
``prefetch``); ``_report`` turns user errors into one line each. The commands use
mmarray's public API only (and ``mmarray._npy`` to read headers).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Sequence
from typing import Any

from .._version import __version__
from . import _files, _info, _stats
from ._report import Failures

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
Memory-mapped numpy arrays from the command line: describe files, compute exact
medians and quantiles without loading them, create and grow sparse files, and
move their pages in and out of the page cache."""

EPILOG = """\
examples:
  mmarray create big.npy --shape 1000000,3 --dtype float64
  mmarray info big.npy
  mmarray median big.npy --axis 0
  mmarray quantile data.i2 --dtype int16 --q 0.25 0.75
  mmarray grow big.npy 1000
  mmarray evict big.npy

Run "mmarray COMMAND --help" for a command's options. Errors print one line,
"mmarray: FILE: what went wrong", and exit with status 1 (2 for bad usage)."""


def _demo(args: argparse.Namespace, failures: Failures) -> None:
    from .. import _demo as demo

    with failures.about(args.dir):
        if args.dir is not None and not os.path.isdir(args.dir):
            if os.path.exists(args.dir):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", args.dir)
            raise FileNotFoundError(errno.ENOENT, "no such directory", args.dir)
        demo.main(args.dir)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush at exit finds no broken pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file (captured): nothing to flush
        pass
    finally:
        os.close(devnull)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (``mmarray --help`` prints it)."""
    parser = argparse.ArgumentParser(
        prog="mmarray",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mmarray {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _info.add_parser(sub)
    _stats.add_parsers(sub)
    _files.add_parsers(sub)
    demo = sub.add_parser(
        "demo",
        help="the walk-through a newcomer runs first",
        description="A walk-through of mmarray: sparse files, sharing, fast opens and "
        "exact medians. Everything is written under a temporary directory and removed.",
    )
    demo.add_argument("--dir", default=None, help="where to write (default: a temporary directory)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit status (0 ok, 1 a command failed).

    Bad usage exits through ``SystemExit(2)``, as argparse does. docs/cli.md has
    examples of every command.
    """
    args = build_parser().parse_args(None if argv is None else list(argv))
    failures = Failures()
    run: Any = args.run
    try:
        run(args, failures)
    except KeyboardInterrupt:
        print("mmarray: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mmarray info ... | head`: stop quietly, as cat does
        _silence_stdout()
        return 1
    return 1 if failures.count else 0
