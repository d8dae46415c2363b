"""Reading and writing ``.npy`` headers on top of :mod:`numpy.lib.format`.

The format itself (magic string, header dict, alignment, growth padding) is
numpy's; this module only reads the header (``pread`` from the mapped file's
descriptor, not through the mapping: see `read_head`), finds its length and caches
the parse, so that reopening a file costs no ``literal_eval``.
"""

from __future__ import annotations

import functools
import importlib
import io
import os
from typing import Any

import numpy as np
from numpy.lib import format as npformat

MAGIC = npformat.MAGIC_PREFIX  # b"\x93NUMPY"
_PREFIX_LEN = {(1, 0): 10, (2, 0): 12, (3, 0): 12}  # magic + version + header length field
_MAXDIMS = 64  # numpy's NPY_MAXDIMS
_HEAD_READ = 256  # bytes read for a header at first (numpy writes 128 for most arrays)
_KNOWN_MAX = 256  # headers remembered by `known_header`
_COMMON_SPAN = 128  # the length of numpy's usual header (prefix, dict, padding)
_known: dict[bytes, tuple[int, tuple[int, ...], bool, np.dtype[Any]]] = {}


def _any_version_reader() -> Any:
    """numpy's header reader for any version (3.0 headers are UTF-8, which the public
    ``read_array_header_2_0`` would decode as Latin-1), or None if this numpy hides it."""
    for name in ("numpy.lib._format_impl", "numpy.lib.format"):
        try:
            mod = importlib.import_module(name)
        except ImportError:  # pragma: no cover - depends on the numpy version
            continue
        reader = getattr(mod, "_read_array_header", None)
        if reader is not None:
            return reader
    return None  # pragma: no cover


_read_any_header = _any_version_reader()


def is_npy(prefix: bytes) -> bool:
    """Return True when ``prefix`` (the file's first bytes) starts with the .npy magic."""
    return prefix[:6] == MAGIC


def read_head(fd: int, size: int, limit: int = _HEAD_READ) -> bytes:
    """The first ``min(size, limit)`` bytes of a file of ``size`` bytes, by ``pread``
    from ``fd`` (fewer if the file is shorter by then): by default all of a usual
    header (256 bytes); ``limit=span`` reads a longer header whole.

    A ``pread`` from the page cache costs about 1 us; reading the same bytes through
    a fresh mapping of the file costs about 10 us on a VM (the first touch faults the
    page in, and the page tables it builds are torn down again at ``munmap``), three
    times the rest of an open (measured: open + touch 14.6 us, open + pread 5.2 us,
    the open alone 4.5 us). Raw files are opened without a touch, so this is what
    keeps a ``.npy`` open close to a raw one.
    """
    return os.pread(fd, size if size <= limit else limit, 0)


def known_header(head: bytes) -> tuple[int, tuple[int, ...], bool, np.dtype[Any]] | None:
    """``(span, shape, fortran_order, dtype)`` of a file whose first bytes (``head``, as
    `read_head` returns them) hold a 128-byte header met before (numpy writes that
    length for most arrays), else None: reopening a file then costs one dict lookup
    instead of finding and parsing its header. Headers of other lengths are parsed
    each time (from `parse_header`'s cache)."""
    return _known.get(head[:_COMMON_SPAN])


def remember_header(
    head: bytes, span: int, parsed: tuple[tuple[int, ...], bool, np.dtype[Any]]
) -> None:
    """Remember a valid header of the common length for `known_header`; its bytes alone
    decide the parse (the data's length is checked on every open)."""
    if span == _COMMON_SPAN and len(head) >= span:
        if len(_known) >= _KNOWN_MAX:
            _known.clear()
        _known[head[:span]] = (span, *parsed)


def header_span(buf: bytes | memoryview, path: object, size: int | None = None) -> int:
    """Return the number of bytes the .npy header takes at the start of ``buf``, the
    first bytes of a file of ``size`` bytes (default: ``buf`` is the whole file).

    Raises ``ValueError`` naming ``path`` for an unknown version or a header
    longer than the file.
    """
    if size is None:
        size = len(buf)
    if min(size, len(buf)) < 10:
        raise ValueError(f"{path!s}: truncated .npy file ({size} bytes, no room for a header)")
    version = (buf[6], buf[7])
    start = _PREFIX_LEN.get(version)
    if start is None:
        raise ValueError(
            f"{path!s}: unsupported .npy format version {version[0]}.{version[1]} "
            "(1.0, 2.0 and 3.0 are known)"
        )
    if min(size, len(buf)) < start:
        raise ValueError(f"{path!s}: truncated .npy header ({size} bytes)")
    if start == 10:
        hlen = buf[8] | (buf[9] << 8)
    else:
        hlen = int.from_bytes(buf[8:12], "little")
    if size - start < hlen:
        raise ValueError(
            f"{path!s}: .npy header claims {hlen} bytes but the file has only "
            f"{size - start} after the prefix"
        )
    return start + hlen


def check_shape(shape: tuple[int, ...], itemsize: int) -> None:
    """Raise ``ValueError`` unless numpy can make an array of this shape: at most 64
    non-negative dimensions whose byte size (zero dimensions aside) fits in an ``intp``."""
    if len(shape) > _MAXDIMS:
        raise ValueError(f"{len(shape)} dimensions, more than numpy's {_MAXDIMS}")
    limit = np.iinfo(np.intp).max
    nbytes = itemsize
    for n in shape:
        if n < 0:
            raise ValueError(f"negative dimension {n} in shape {shape}")
        if n > limit:
            raise ValueError(f"dimension {n} of shape {shape} is too large for numpy")
        if n:
            nbytes *= n
            if nbytes > limit:
                raise ValueError(f"shape {shape} is too big: its byte size overflows")


@functools.lru_cache(maxsize=256)
def parse_header(raw: bytes) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Parse a complete .npy prefix + header into ``(shape, fortran_order, dtype)``.

    Cached on the header bytes: the parse is pure, and ``literal_eval`` is slow.
    Any defect (numpy's parser also lets tokenizer errors through) raises ``ValueError``.
    """
    fp = io.BytesIO(raw)
    try:
        version = npformat.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = npformat.read_array_header_2_0(fp)
        elif _read_any_header is None:  # pragma: no cover - depends on the numpy version
            raise ValueError(f"this numpy cannot read .npy format version {version}")
        else:
            shape, fortran, dtype = _read_any_header(fp, version=version)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - tokenize.TokenError, SyntaxError, MemoryError...
        raise ValueError(f"cannot parse the header: {type(e).__name__}: {e}") from None
    if dtype.hasobject:
        raise ValueError("cannot map a .npy file of Python objects (its dtype holds objects)")
    if any(type(n) is not int for n in shape):  # numpy lets bools through
        raise ValueError(f"shape is not valid: {shape!r}")
    shape = tuple(shape)
    check_shape(shape, dtype.itemsize)
    return shape, bool(fortran), dtype


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
