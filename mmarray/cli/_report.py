"""Errors as one line: ``mmarray: FILE: what went wrong``, and the exit status."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["USER_ERRORS", "Failures", "describe"]

#: What bad input raises; anything else is a bug and keeps its traceback.
USER_ERRORS = (OSError, ValueError, TypeError, OverflowError)


def _strip_name(message: str, path: str) -> str:
    """Drop a leading ``path: `` (or a trailing ``: 'path'``) that the library put in
    its message already.

    >>> _strip_name("x.raw: too small", "x.raw"), _strip_name("not regular: 'x.raw'", "x.raw")
    ('too small', 'not regular')
    """
    for name in (path, os.path.abspath(path), repr(path)):
        if message.startswith(name + ": "):
            return message[len(name) + 2 :]
    for name in (repr(path), repr(os.path.abspath(path))):
        if message.endswith(": " + name):
            return message[: -len(name) - 2]
    return message


def describe(path: str | None, exc: BaseException) -> str:
    """The one line that reports ``exc`` about ``path`` (None: no file involved).

    >>> describe("x.npy", FileNotFoundError(2, "open: No such file or directory", "x.npy"))
    'mmarray: x.npy: open: No such file or directory'
    >>> describe("x.raw", ValueError("x.raw: shape (9,) needs 72 bytes"))
    'mmarray: x.raw: shape (9,) needs 72 bytes'
    """
    if isinstance(exc, OSError) and exc.strerror:
        message = exc.strerror
        other = exc.filename
        if (
            other is not None
            and path is not None
            and os.fsdecode(other)
            not in (
                path,
                os.path.abspath(path),
            )
        ):
            message += f": {os.fsdecode(other)}"  # about another file (a directory...)
    else:
        message = str(exc) or type(exc).__name__
    message = " ".join(message.split())  # one line
    if path is None:
        return f"mmarray: {message}"
    return f"mmarray: {path}: {_strip_name(message, path)}"


class Failures:
    """Collects the user errors of a command: each printed at once, on stderr."""

    def __init__(self) -> None:
        self.count = 0

    @contextlib.contextmanager
    def about(self, path: str | None) -> Iterator[None]:
        """Report a user error raised in the block as being about ``path``, and go on."""
        try:
            yield
        except BrokenPipeError:
            raise  # the reader went away (`| head`): not the file's fault
        except USER_ERRORS as e:
            self.count += 1
            sys.stdout.flush()
            print(describe(path, e), file=sys.stderr, flush=True)
