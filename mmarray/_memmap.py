"""``mmarray.memmap``: a drop-in replacement for ``numpy.memmap`` backed by a Region."""

from __future__ import annotations

import operator
import os
import stat
import sys
from typing import Any

import numpy as np

from ._core import Region
from ._core import ndarray as _ndarray
from ._extent import contiguous_nbytes

__all__ = ["memmap"]

_MODE_ALIASES = {"readonly": "r", "copyonwrite": "c", "readwrite": "r+", "write": "w+"}
_MODES = ("r", "c", "r+", "w+")
_ACCESS = {"r": "r", "c": "c", "r+": "w", "w+": "w"}
_OPEN_FLAGS = {
    "r": os.O_RDONLY,
    "c": os.O_RDONLY,
    "r+": os.O_RDWR,
    "w+": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
}


class memmap(np.memmap):
    """Create a memory-map to an array stored in a binary file on disk.

    A subclass of :class:`numpy.memmap` with the same constructor, attributes and
    behaviour, so code written for ``np.memmap`` (and libraries that test
    ``isinstance(a, np.memmap)``) runs unchanged. Differences: the mapping is a
    :class:`mmarray.Region` (``m._mmap``, also ``mmarray.region(m)``), and
    :meth:`close` (or ``m._mmap.close()``) releases it without ever leaving an array
    pointing at unmapped memory.

    Parameters
    ----------
    filename : str, bytes, os.PathLike or file object
        A file object's buffered writes are flushed before its size is read, and its
        position is left at the end of the file, as numpy does. One without a path
        (``tempfile.TemporaryFile()``) gives ``filename=None``.
    dtype : data-type, default uint8
    mode : {'r+', 'r', 'w+', 'c'} or 'readwrite', 'readonly', 'write', 'copyonwrite'
        As in numpy: ``'r+'`` and ``'w+'`` grow the file when it is too small
        for ``offset + shape``; ``'w+'`` creates or truncates it.
    offset : int
    shape : int or tuple of ints, optional
    order : {'C', 'F'}

    Examples
    --------
    >>> import mmarray, numpy as np, tempfile, os
    >>> fn = os.path.join(tempfile.mkdtemp(), "m.dat")
    >>> m = mmarray.memmap(fn, dtype="float32", mode="w+", shape=(3, 4))
    >>> m[0] = 1
    >>> m.flush()
    >>> isinstance(m, np.memmap), m._mmap is mmarray.region(m)
    (True, True)
    >>> type(m.sum())
    <class 'numpy.float32'>
    >>> m.close()
    """

    __array_priority__ = -100.0

    _mmap: Region | None
    filename: Any
    offset: Any
    mode: Any

    def __new__(
        subtype,
        filename: Any,
        dtype: Any = np.uint8,
        mode: str = "r+",
        offset: int = 0,
        shape: Any = None,
        order: str = "C",
    ) -> memmap:
        mode, fortran, descr = _checked_arguments(mode, shape, order, dtype, offset)
        own_fd = not hasattr(filename, "read")
        if own_fd:
            name = os.fspath(filename)
            # O_NONBLOCK: opening a FIFO must fail below, not wait for a writer forever
            fd = os.open(name, _OPEN_FLAGS[mode] | os.O_CLOEXEC | os.O_NONBLOCK, 0o666)
        else:
            fd, name = _file_object_fd(filename)
        where = "" if name is None else f"{os.fsdecode(name)}: "
        try:
            shape = _map_shape(fd, descr, mode, offset, shape, where)
            reg = Region(fd, 0, offset, access=_ACCESS[mode], name=name)
        finally:
            if own_fd:
                os.close(fd)
        if not own_fd and hasattr(filename, "seek"):
            filename.seek(0, os.SEEK_END)  # where numpy leaves it
        self: memmap = _ndarray(reg, descr, shape, 0, fortran, subtype)  # type: ignore[assignment]
        self._mmap = reg
        self.offset = offset
        self.mode = mode
        if isinstance(filename, os.PathLike):
            self.filename = filename.resolve() if hasattr(filename, "resolve") else filename
        elif isinstance(name, str):
            self.filename = os.path.abspath(name)
        else:
            self.filename = None
        return self

    def __array_finalize__(self, obj: Any) -> None:
        reg = getattr(obj, "_mmap", None)
        if isinstance(reg, Region) and np.may_share_memory(self, obj):
            self._mmap = reg
            self.filename = obj.filename
            self.offset = obj.offset
            self.mode = obj.mode
        else:
            self._mmap = None
            self.filename = None
            self.offset = None
            self.mode = None

    def flush(self) -> None:
        """Write any changes in the array to the file on disk (``msync`` of the Region).

        Works on views too (they share the Region); a no-op after :meth:`close`
        (which flushed) and on arrays that map nothing (copies, unpickled arrays)."""
        reg = self._mmap
        if reg is not None and not reg.closed:
            reg.flush()

    def close(self) -> None:
        """Close the mapping.

        The region refuses new arrays at once and is unmapped when the last
        array over it (this one and every view) is gone. Changes are flushed
        first. Idempotent. ``m._mmap.close()`` closes it the same way, unflushed
        (the pages are written back by the kernel all the same).
        """
        reg = self._mmap
        if reg is not None and not reg.closed:
            reg.flush()
            reg.close()

    def __array_wrap__(self, arr: Any, context: Any = None, return_scalar: bool = False) -> Any:
        arr = np.ndarray.__array_wrap__(self, arr, context)
        if self is arr or type(self) is not memmap:
            return arr
        if return_scalar:
            return arr[()]
        return arr.view(np.ndarray)

    def __getitem__(self, index: Any) -> Any:
        res = np.ndarray.__getitem__(self, index)
        if type(res) is memmap and res._mmap is None:
            return res.view(type=np.ndarray)
        return res


def _file_object_fd(f: Any) -> tuple[int, str | bytes | None]:
    """The descriptor and path of an open file object, after flushing its buffered
    writes (numpy's ``seek`` does): unflushed, the array would see a short file,
    and the object's later flush would overwrite what was written through the
    array. The path is None where ``f.name`` is not one (an int for
    ``tempfile.TemporaryFile()``)."""
    if hasattr(f, "flush"):
        f.flush()
    fd = f.fileno()
    name = getattr(f, "name", None)
    return fd, name if isinstance(name, (str, bytes)) else None


def _checked_arguments(
    mode: str, shape: Any, order: str | None, dtype: Any, offset: int
) -> tuple[str, bool, np.dtype[Any]]:
    """Check the arguments that need no file, as numpy.memmap does; return
    (mode without its alias, Fortran order or not, the dtype)."""
    mode = _MODE_ALIASES.get(mode, mode)
    if mode not in _MODES:
        valid = list(_MODES) + list(_MODE_ALIASES)
        raise ValueError(f"mode must be one of {valid!r} (got {mode!r})")
    if mode == "w+" and shape is None:
        raise ValueError("shape must be given if mode == 'w+'")
    # as numpy.ndarray reads it: only 'F' (any case) means Fortran order
    if order is not None and not isinstance(order, str):
        raise TypeError(f"order must be str, not {type(order).__name__}")
    if order is not None and order.upper() not in ("C", "F", "A", "K"):
        raise ValueError(f"order must be one of 'C', 'F', 'A', or 'K' (got {order!r})")
    fortran = order is not None and order.upper() == "F"
    descr = np.dtype(dtype)
    if descr.hasobject:
        raise TypeError(f"cannot map arrays of Python objects (dtype {descr})")
    if offset < 0:
        raise ValueError(f"offset must be non-negative, got {offset}")
    return mode, fortran, descr


def _map_shape(
    fd: int, descr: np.dtype[Any], mode: str, offset: int, shape: Any, where: str
) -> tuple[Any, ...]:
    """The shape to map (inferred from the file's size when None), after growing the
    file for modes ``'r+'`` and ``'w+'``; ValueError when the file cannot hold it."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{where}cannot mmap something that is not a regular file")
    flen = st.st_size
    if shape is None:
        shape = _inferred_shape(flen, descr, offset, where)
    else:
        if not isinstance(shape, (tuple, list)):
            try:
                shape = [operator.index(shape)]
            except TypeError:
                pass
        shape = tuple(shape)
    end = offset + contiguous_nbytes(_checked_dims(shape, where), descr.itemsize)
    if mode in ("w+", "r+"):
        end = max(end, 1)
        if flen < end:
            os.ftruncate(fd, end)
            flen = end
    if flen == 0:
        raise ValueError(f"{where}cannot mmap an empty file")
    if end > flen:
        raise ValueError(f"{where}mmap length is greater than file size")
    return shape


def _inferred_shape(flen: int, descr: np.dtype[Any], offset: int, where: str) -> tuple[int]:
    """As many items as the file holds after ``offset``, as numpy.memmap infers them."""
    if descr.itemsize == 0:
        raise ValueError(f"{where}the {descr} item size is 0, so shape= cannot be inferred")
    avail = flen - offset
    if avail < 0:  # numpy makes this a shape of -1 items: an error is clearer
        raise ValueError(f"{where}offset {offset} is past the end of the file ({flen} bytes)")
    if avail % descr.itemsize:
        raise ValueError(f"{where}Size of available data is not a multiple of the data-type size.")
    return (avail // descr.itemsize,)


def _checked_dims(shape: tuple[Any, ...], where: str) -> list[int]:
    """The dimensions of ``shape`` as ints; ValueError for a negative or too large one."""
    dims = []
    for n in shape:
        n = operator.index(n)
        if n < 0:
            raise ValueError(f"negative dimensions are not allowed: {shape}")
        if n > sys.maxsize:  # even of zero-byte items: numpy's dimensions are intp
            raise ValueError(f"{where}dimension {n} of shape {shape} is too large")
        dims.append(n)
    return dims
