"""Faults from the file system: killed writers, full disks, file-size limits."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import uuid

import numpy as np
import pytest

import mmarray

KILLED_WRITER = """
import os, signal, sys, numpy as np, mmarray
a = mmarray.create(sys.argv[1], (1000, 4), "int32")
a[:] = np.arange(4000, dtype="int32").reshape(1000, 4)
b = mmarray.open(sys.argv[2], "r+", dtype="u1")
b[:] = 0xAB
os.kill(os.getpid(), signal.SIGKILL)  # no flush, no close, no atexit
"""


def test_writes_survive_sigkill_without_flush(tmp_path):
    new = tmp_path / "k.npy"
    old = tmp_path / "old.raw"
    old.write_bytes(bytes(5000))
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(new), str(old)])
    assert proc.returncode == -signal.SIGKILL
    np.testing.assert_array_equal(np.load(new), np.arange(4000).reshape(1000, 4))
    assert old.read_bytes() == b"\xab" * 5000


def test_flush_reaches_the_file_for_a_reader_with_its_own_descriptor(tmp_path):
    a = mmarray.create(tmp_path / "f.raw", 10_000, "f8")
    a[:] = 1.5
    mmarray.region(a).flush()
    with open(tmp_path / "f.raw", "rb") as f:
        assert np.frombuffer(f.read(), "f8").sum() == 15_000


@contextlib.contextmanager
def small_filesystem(tmp_path, size="1m"):
    """A 1 MiB tmpfs mounted for the test, or None where mounting is not allowed."""
    mnt = tmp_path / f"mnt-{uuid.uuid4().hex[:8]}"
    mnt.mkdir()
    ok = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
            capture_output=True,
        ).returncode
        == 0
    )
    try:
        yield mnt if ok else None
    finally:
        if ok:
            subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("suffix", [".npy", ".raw"])
def test_reserve_on_a_full_disk_fails_up_front_and_leaves_nothing(tmp_path, suffix):
    with small_filesystem(tmp_path) as mnt:
        if mnt is None:
            pytest.skip("cannot mount a small tmpfs here; the RLIMIT_FSIZE test covers this")
        target = mnt / f"big{suffix}"
        with pytest.raises(OSError) as e:
            mmarray.create(target, (4 << 20,), "u1", allocate="reserve")
        assert e.value.errno == 28  # ENOSPC
        assert str(target) in str(e.value)
        assert list(mnt.iterdir()) == []
        # An existing file is kept when its replacement cannot be reserved.
        np.save(mnt / "keep.npy", np.arange(5))
        with pytest.raises(OSError):
            mmarray.create(mnt / "keep.npy", (4 << 20,), "u1", allocate="reserve", exist_ok=True)
        assert [p.name for p in mnt.iterdir()] == ["keep.npy"]
        np.testing.assert_array_equal(np.load(mnt / "keep.npy"), np.arange(5))


FSIZE_CHILD = """
import os, resource, signal, sys, mmarray
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
for allocate in ("reserve", "sparse"):
    try:
        mmarray.create(sys.argv[1], 4 << 20, "u1", allocate=allocate)
    except OSError as e:
        print(allocate, e.errno, os.path.exists(sys.argv[1]))
"""


def test_file_size_limit_fails_up_front_and_leaves_nothing(tmp_path):
    target = tmp_path / "big.raw"
    out = subprocess.run(
        [sys.executable, "-c", FSIZE_CHILD, str(target)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["reserve 27 False", "sparse 27 False"]  # EFBIG
