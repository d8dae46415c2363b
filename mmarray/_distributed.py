"""dask.distributed: arrays in shareable memory travel between client and workers by reference.

distributed serializes a numpy array by the function that its ``dask_serialize``
dispatch holds for ``numpy.ndarray`` (``distributed.protocol.numpy``), which sends
the array's bytes. An mmarray array is a plain ``numpy.ndarray`` whose ``.base``
chain ends at a :class:`~mmarray.Region`, so mmarray registers its own function for
``numpy.ndarray`` (and the memmap classes) in that dispatch: an array that
:func:`~mmarray._ref.describe` can name travels as a pickled reference (a few hundred
bytes) whenever the receiver can map the same memory, and every other array goes on
to distributed's own numpy serializer, unchanged.

* A file with a name (``open(..., 'r'/'r+')``, ``create``, a file ``memmap``) goes by
  reference to any receiver: a worker finds it at the sender's path or through the
  path map (``mmarray.dask.path_map``). On the sender's machine the receiver checks
  the whole identity of :class:`~mmarray.ArrayRef` (device, inode, stamp, size); on
  another machine, where the device number differs, the checks of
  ``mmarray.dask.from_file``'s tasks (inode and size, and the modification time for a
  read-only array).
* Memory that only this machine can reach (``anonymous(shared=True)``, a file deleted
  while mapped: both named ``/proc/<pid>/fd/<n>`` of the sender; ``named()`` memory
  under ``/dev/shm``) goes by reference only on a connection whose two ends have the
  same IP address, and by value otherwise (and when distributed serializes without a
  connection, as when a worker spills to disk).
* Copy-on-write (``mode='c'``) and ordinary arrays always go by value.

The reference is sent as distributed's numpy pickle format (``{"pickle": True}``,
plus ``"mmarray": "reference"``), so a receiver that never imported mmarray
unpickles it with distributed's own deserializer, which imports mmarray. A reference
that cannot be mapped on the receiver (the file replaced: ``ESTALE``; not there; the
sender of a memfd gone; another machine's memory) arrives as an
:class:`~mmarray.UnavailableArray`, which raises that error (naming the path and the
worker) when the task uses it, rather than breaking the connection it came on.

Registered once something imports ``distributed.protocol``
(:func:`~mmarray._import_hook.when_imported`): ``import mmarray`` never imports dask.
"""

from __future__ import annotations

import errno
import os
import pickle
import socket
from types import ModuleType
from typing import Any

import numpy as np

from ._import_hook import when_imported
from ._memmap import memmap
from ._reducer import UnavailableArray
from ._ref import ArrayRef, describe, open_ref
from ._region import region

__all__ = ["install", "reference_frame", "serialize_array"]

_SHM = "/dev/shm/"
_numpy_serialize: Any = None  # distributed's own serializer, once registered


def _host() -> str:
    """This machine: its boot id (a new one at each boot), else its host name."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return socket.gethostname()


_HOST = _host()


def _local_only(ref: ArrayRef) -> bool:
    """Memory that no other machine can reach under the reference's path."""
    return ref.kind == "fd" or ref.path.startswith(_SHM)


def _same_host(context: Any) -> bool:
    """True when the connection distributed serializes for has the same IP at both ends."""
    try:
        from distributed.comm.addressing import get_address_host

        ends = [get_address_host(context[k]["address"]) for k in ("sender", "recipient")]
    except (KeyError, TypeError, ValueError):
        return False
    return ends[0] == ends[1]


class _Sent:
    """What travels: the ArrayRef, the file's mtime (for another machine) and this host."""

    __slots__ = ("ref", "mtime_ns", "host")

    def __init__(self, ref: ArrayRef, mtime_ns: int, host: str) -> None:
        self.ref, self.mtime_ns, self.host = ref, mtime_ns, host

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.ref, self.mtime_ns, self.host))


def reference_frame(a: np.ndarray[Any, Any], context: Any) -> bytes | None:
    """The pickled reference that sends ``a`` over the connection ``context`` describes,
    or None when ``a`` must go by value there."""
    try:
        got = describe(a)
    except (OSError, ValueError):
        got = None
    if got is None:
        return None
    ref, fd = got
    try:
        if _local_only(ref) and not _same_host(context):
            return None
        mtime_ns = os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)
    return pickle.dumps(_Sent(ref, mtime_ns, _HOST), protocol=pickle.HIGHEST_PROTOCOL)


def serialize_array(
    a: np.ndarray[Any, Any], context: Any = None
) -> tuple[dict[str, Any], list[Any]]:
    """distributed's ``dask_serialize`` for arrays: a reference where one works, else
    distributed's own numpy serialization."""
    frame = reference_frame(a, context) if not a.dtype.hasobject else None
    if frame is None:
        return _numpy_serialize(a, context=context)  # type: ignore[no-any-return]
    return {"pickle": True, "mmarray": "reference"}, [frame]


def _unreachable(ref: ArrayRef, local: str, e: OSError) -> OSError:
    from .dask._paths import current, who

    where = f"at {local!r} (path map {current()})" if local != ref.path else "at the same path"
    return type(e)(
        e.errno,
        f"mmarray: {who()} cannot open the memory of an array sent by reference {where}: "
        f"{e.strerror}. A file must be on a file system every worker sees, at the "
        "sender's path or through mmarray.dask.path_map",
        ref.path,
    )


def _open_elsewhere(ref: ArrayRef, local: str, mtime_ns: int) -> np.ndarray[Any, Any]:
    """A file reference on another machine: the checks of from_file's tasks (no device)."""
    from .dask._mapping import map_span
    from .dask._refs import FileRef

    mode = "r+" if ref.writeable else "r"
    file = FileRef(
        ref.path, ref.device, ref.inode, ref.file_size, mtime_ns, mode, not ref.writeable
    )
    base = map_span(file, ref.offset, ref.length)
    reg = region(base)
    if reg is not None:
        reg.close()  # the descriptor now; the mapping goes with the last view
    return np.ndarray(
        ref.shape, ref.dtype, buffer=base, offset=ref.data_offset, strides=ref.strides
    )


def _open(ref: ArrayRef, mtime_ns: int, host: str) -> np.ndarray[Any, Any]:
    if _local_only(ref):
        if host != _HOST:
            from .dask._paths import who

            raise OSError(
                errno.EXDEV,
                f"mmarray: {who()} received a reference to memory that only the sender's "
                "machine can map (anonymous or named shared memory): it was forwarded to "
                "another machine; use a file on a shared file system",
                ref.path,
            )
        return open_ref(ref, None)
    from .dask._paths import resolve

    local = resolve(ref.path)
    if host != _HOST and ref.length:
        return _open_elsewhere(ref, local, mtime_ns)
    here = ArrayRef(ref.kind, local, *ref._fields()[2:])
    try:
        return open_ref(here, None)
    except (FileNotFoundError, PermissionError) as e:
        raise _unreachable(ref, local, e) from None


def _rebuild(ref: ArrayRef, mtime_ns: int, host: str) -> Any:
    """Map a reference on the receiver; an UnavailableArray holding the error if it cannot be."""
    try:
        return _open(ref, mtime_ns, host)
    except Exception as e:
        return UnavailableArray(e)


def _register(protocol: ModuleType) -> None:
    global _numpy_serialize
    from distributed.protocol import numpy as distributed_numpy

    _numpy_serialize = distributed_numpy.serialize_numpy_ndarray
    for cls in (np.ndarray, np.memmap, memmap):
        protocol.dask_serialize.register(cls)(serialize_array)


def install() -> None:
    """Register with distributed's serialization, now or once it is imported."""
    when_imported("distributed.protocol", _register)
