"""Helpers shared by the page-cache and residency-picture tests."""

from __future__ import annotations

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
