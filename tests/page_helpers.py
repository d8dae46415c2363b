"""Helpers shared by the page-cache and residency-picture tests."""

from __future__ import annotations

import os
import select
import subprocess
import sys

import numpy as np

import mmarray

P = mmarray.PAGESIZE


def private_anon(npages: int) -> np.ndarray:
    """Private anonymous memory of ``npages`` pages, resident exactly where written."""
    a = mmarray.anonymous(npages * P, "u1", shared=False)
    try:
        mmarray.advise(a, "nohugepage")  # one fault must bring in one page
    except NotImplementedError:
        pass
    return a


# A second process that maps a file, loads it, says so and waits for its stdin to close.
MAP_AND_WAIT = """
import sys, mmarray
a = mmarray.open(sys.argv[1], dtype="u1", offset=0)
mmarray.prefetch(a)
print("mapped", flush=True)
sys.stdin.read()
"""


def mapped_elsewhere(path) -> subprocess.Popen:
    """A child process that holds path mapped and resident until its stdin closes."""
    child = subprocess.Popen(
        [sys.executable, "-c", MAP_AND_WAIT, os.fspath(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    if not select.select([child.stdout], [], [], 60)[0]:  # a hung child fails the test
        child.kill()
        child.communicate()
        raise AssertionError("the child that maps the file did not start within 60 s")
    line = child.stdout.readline()
    if line != "mapped\n":
        child.kill()
        child.communicate()
        raise AssertionError(f"the child that maps the file failed: {line!r}")
    return child


def release(child: subprocess.Popen) -> None:
    """Lets the child exit (bounded: a hung child fails the test)."""
    child.communicate(timeout=30)
    assert child.returncode == 0
