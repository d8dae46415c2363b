"""``flush(a)``: make the writes under an array durable."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import Region
from ._extent import region_extent
from ._region import target_region

__all__ = ["flush"]


def flush(a: np.ndarray[Any, Any] | Region) -> None:
    """Make the writes into ``a`` durable: write its pages back to the file and wait.

    The common last step of "write, then make it durable": ``msync(MS_SYNC)`` of the
    pages that hold ``a``'s bytes (a view flushes only its own span), then
    ``fdatasync`` of the file, so that the data survives a crash of the machine, not
    only of the process (a shared mapping's writes are in the page cache, and so in
    the file for every reader, as soon as they are made). It is
    ``mmarray.region(a).flush(offset, size)`` over ``a``'s bytes; the Region is held
    for the call, so a ``close()`` in another thread waits for it. Writes to a
    read-only or copy-on-write mapping never reach a file: nothing to do there;
    anonymous memory has no file either.

    Parameters
    ----------
    a : numpy.ndarray or Region
        An array over mmarray memory (from ``open``, ``create``, ``memmap``,
        ``named``, ``anonymous``) or any view of one, or a Region (all of it).

    Raises
    ------
    TypeError
        ``a`` is not over mmarray memory (a plain numpy array has no file to flush).
    ValueError
        Its Region was closed.
    OSError
        ``msync`` or ``fdatasync`` failed (an I/O error of the disk, say), with the path.

    Examples
    --------
    >>> import mmarray, numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "log.npy")
    >>> a = mmarray.create(path, 6, "i4")
    >>> a[2:4] = 7
    >>> mmarray.flush(a[2:4])                  # just those bytes' pages
    >>> mmarray.flush(a)                       # the whole array
    >>> np.load(path)
    array([0, 0, 7, 7, 0, 0], dtype=int32)
    """
    reg = target_region(a, "flush()")
    if isinstance(a, Region):
        reg.flush()
        return
    lo, hi = region_extent(a, reg)
    if hi > lo:
        reg.flush(lo, hi - lo)
