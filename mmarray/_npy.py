"""Reading and writing ``.npy`` headers on top of :mod:`numpy.lib.format`.

The format itself (magic string, header dict, alignment, growth padding) is
numpy's; this module only finds the header inside a mapped region and caches
the parse, so that reopening a file costs no ``literal_eval``.
"""

from __future__ import annotations

import functools
import io
from typing import Any

import numpy as np
from numpy.lib import format as npformat

MAGIC = npformat.MAGIC_PREFIX  # b"\x93NUMPY"
_PREFIX_LEN = {1: 10, 2: 12, 3: 12}  # magic + version + header length field


def is_npy(prefix: bytes) -> bool:
    """Return True when ``prefix`` (the file's first bytes) starts with the .npy magic."""
    return prefix[:6] == MAGIC


def header_span(buf: memoryview, path: object) -> int:
    """Return the number of bytes the .npy header takes at the start of ``buf``.

    Raises ``ValueError`` naming ``path`` for an unknown version or a header
    longer than the file.
    """
    size = len(buf)
    if size < 10:
        raise ValueError(f"{path!s}: truncated .npy file ({size} bytes, no room for a header)")
    major = buf[6]
    if major not in _PREFIX_LEN:
        raise ValueError(
            f"{path!s}: unsupported .npy format version {major}.{buf[7]} "
            "(1.0, 2.0 and 3.0 are known)"
        )
    start = _PREFIX_LEN[major]
    if size < start:
        raise ValueError(f"{path!s}: truncated .npy header ({size} bytes)")
    if major == 1:
        hlen = buf[8] | (buf[9] << 8)
    else:
        hlen = int.from_bytes(buf[8:12], "little")
    if size - start < hlen:
        raise ValueError(
            f"{path!s}: .npy header claims {hlen} bytes but the file has only "
            f"{size - start} after the prefix"
        )
    return start + hlen


@functools.lru_cache(maxsize=256)
def parse_header(raw: bytes) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Parse a complete .npy prefix + header into ``(shape, fortran_order, dtype)``.

    Cached on the header bytes: the parse is pure, and ``literal_eval`` is slow.
    """
    fp = io.BytesIO(raw)
    version = npformat.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = npformat.read_array_header_1_0(fp)
    else:
        shape, fortran, dtype = npformat.read_array_header_2_0(fp)
    if dtype.hasobject:
        raise ValueError("cannot map a .npy file of Python objects (its dtype holds objects)")
    return tuple(shape), bool(fortran), dtype


def make_header(shape: tuple[int, ...], dtype: np.dtype[Any], fortran: bool) -> bytes:
    """Return the bytes of a .npy header for an array of this shape and dtype.

    numpy pads the header so that its length field and the shape along the
    growth axis can change in place; we keep that padding.
    """
    d = {"descr": npformat.dtype_to_descr(dtype), "fortran_order": fortran, "shape": shape}
    out = io.BytesIO()
    try:
        npformat.write_array_header_1_0(out, d)
    except ValueError:
        out = io.BytesIO()
        npformat.write_array_header_2_0(out, d)
    return out.getvalue()
