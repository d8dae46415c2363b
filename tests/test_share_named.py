"""Named shared memory: create, attach, permissions, unlink, SharedMemory interop."""

from __future__ import annotations

import multiprocessing as mp
import os
import uuid
from multiprocessing import resource_tracker, shared_memory

import numpy as np
import pytest

import mmarray


@pytest.fixture
def name():
    n = f"mmarray-test-{uuid.uuid4().hex[:12]}"
    yield n
    if os.path.exists("/dev/shm/" + n):
        mmarray.unlink(n)


def test_create_attach_and_header(name):
    a = mmarray.named(name, (3, 5), "<f4", create=True)
    assert a.flags.writeable and not a.any()
    a[...] = np.arange(15).reshape(3, 5)
    b = mmarray.named(name)
    assert b.shape == (3, 5) and b.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(a, b)
    b[2, 4] = -1
    assert a[2, 4] == -1
    # the header is a .npy header: numpy reads the object as a file
    np.testing.assert_array_equal(np.load("/dev/shm/" + name), a)
    assert mmarray.named("/" + name).shape == (3, 5)  # POSIX-style leading slash
    assert mmarray.named(name, (3, 5), "f4").shape == (3, 5)


def test_permissions_are_0600(name):
    old = os.umask(0)
    try:
        mmarray.named(name, 10, "u1", create=True)
    finally:
        os.umask(old)
    assert os.stat("/dev/shm/" + name).st_mode & 0o777 == 0o600


def test_errors(name):
    with pytest.raises(FileNotFoundError):
        mmarray.named(name)
    with pytest.raises(TypeError, match="shape and dtype"):
        mmarray.named(name, create=True)
    mmarray.named(name, 4, "i2", create=True)
    with pytest.raises(FileExistsError):
        mmarray.named(name, 4, "i2", create=True)
    with pytest.raises(ValueError, match="shape"):
        mmarray.named(name, (5,))
    with pytest.raises(ValueError, match="dtype"):
        mmarray.named(name, dtype="f8")
    for bad in ("", "a/b", "..", "x" * 300, "a\0b"):
        with pytest.raises(ValueError, match="name"):
            mmarray.named(bad, 1, "u1", create=True)
    with pytest.raises(TypeError):
        mmarray.unlink(3)
    mmarray.unlink(name)
    with pytest.raises(FileNotFoundError):
        mmarray.unlink(name)


def test_unlink_keeps_existing_mappings(name):
    a = mmarray.named(name, 100, "i8", create=True)
    a[:] = 5
    mmarray.unlink(name)
    assert not os.path.exists("/dev/shm/" + name)
    a[:] += 1
    assert (a == 6).all()


def test_shared_memory_interop(name):
    a = mmarray.named(name, (4, 4), "i4", create=True)
    shm = shared_memory.SharedMemory(name)
    try:
        # keep SharedMemory's resource tracker from unlinking our object (Python < 3.13)
        resource_tracker.unregister(shm._name, "shared_memory")
        header = len(shm.buf) - a.nbytes
        view = np.ndarray((4, 4), "i4", buffer=shm.buf, offset=header)
        view[1, 2] = 77
        assert a[1, 2] == 77
        a[3, 3] = 88
        assert view[3, 3] == 88
        del view
    finally:
        shm.close()
    # and the other way: an object SharedMemory created is not ours (no header)
    other = shared_memory.SharedMemory(create=True, size=4096)
    try:
        with pytest.raises(ValueError):
            mmarray.named(other.name)
    finally:
        other.close()
        other.unlink()


def _attach_and_write(n, q):
    b = mmarray.named(n)
    b[0] = 123
    q.put((b.shape, str(b.dtype)))


@pytest.mark.parametrize("method", ["spawn"])
def test_attach_by_name_in_another_process(name, method):
    a = mmarray.named(name, (6, 2), "u2", create=True)
    ctx = mp.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=_attach_and_write, args=(name, q))
    p.start()
    assert q.get(timeout=60) == ((6, 2), "uint16")
    p.join(30)
    assert (a[0] == 123).all() and not a[1:].any()
    assert os.path.exists("/dev/shm/" + name)  # nobody unlinked it behind our back


def test_too_big_for_dev_shm_fails_at_creation(name):
    import errno

    with pytest.raises(OSError) as ei:
        mmarray.named(name, 10**14, "u1", create=True)
    assert ei.value.errno in (errno.ENOSPC, errno.EFBIG)
    assert not os.path.exists("/dev/shm/" + name)  # nothing left behind
