"""Command line: ``python -m mmarray demo [--dir DIR]``."""

from __future__ import annotations

import argparse
import sys

from ._version import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmarray", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mmarray {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the walk-through a newcomer runs first")
    demo.add_argument("--dir", default=None, help="where to write (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from . import _demo

        _demo.main(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
