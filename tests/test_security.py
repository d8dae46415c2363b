"""Security: permissions, the umask, names that could leave /dev/shm, stale or foreign refs.

Permission checks run in a forked child. As root (who ignores permission bits) the
child drops its privileges to nobody (uid/gid 65534) first; as another user it keeps
its own and the files are made unreadable to their owner instead.
"""

from __future__ import annotations

import ast
import errno
import json
import os
import pathlib
import stat
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import mmarray

NOBODY = 65534
ROOT = os.geteuid() == 0


def in_child(fn: Callable[[], Any], *, drop: bool = True, umask: int | None = None) -> dict:
    """Run fn() in a forked child (as nobody when root and ``drop``, under ``umask`` if
    given) and return what happened: {'ok': True, 'result': repr} or {'ok': False,
    'type', 'msg', 'errno', 'filename'}. A child killed by a signal fails the test."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        out: dict[str, Any]
        try:
            os.close(r)
            if umask is not None:
                os.umask(umask)
            if drop and ROOT:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            try:
                out = {"ok": True, "result": repr(fn())}
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                out = {
                    "ok": False,
                    "type": type(e).__name__,
                    "msg": str(e),
                    "errno": getattr(e, "errno", None),
                    "filename": str(getattr(e, "filename", None)),
                }
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"
    assert data, "the child reported nothing"
    return json.loads(data)


@pytest.fixture(scope="module")
def can_drop() -> None:
    if not ROOT:
        return
    got = in_child(lambda: os.getuid())
    if not got["ok"] or got["result"] != str(NOBODY):
        pytest.skip(f"cannot drop root privileges to uid {NOBODY} here: {got}")


@pytest.fixture
def world(can_drop) -> Iterator[pathlib.Path]:
    """A directory every user may enter (pytest's tmp_path may not be)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="mmarray-sec-"))
    d.chmod(0o755)
    yield d
    for p in d.iterdir():
        p.chmod(0o600)
        p.unlink()
    d.rmdir()


def private(path: pathlib.Path) -> pathlib.Path:
    """Make path unreadable to the child: root's 0600 file, or a mode-0 file of our own."""
    path.chmod(0o600 if ROOT else 0)
    return path


def read_only(path: pathlib.Path) -> pathlib.Path:
    path.chmod(0o644 if ROOT else 0o444)
    return path


def assert_permission_error(got: dict, name: str) -> None:
    assert not got["ok"], f"no error: {got}"
    assert got["type"] == "PermissionError", got
    assert got["errno"] in (errno.EACCES, errno.EPERM), got
    assert name in got["msg"] or name in got["filename"], f"{name} not named: {got}"


# ---- files the process may not open --------------------------------------------------------


@pytest.fixture
def secret(world) -> pathlib.Path:
    path = world / "secret.npy"
    np.save(path, np.arange(10))
    return private(path)


@pytest.fixture
def readable(world) -> pathlib.Path:
    path = world / "readable.npy"
    np.save(path, np.arange(10))
    return read_only(path)


CALLS_ON_A_SECRET = {
    "open": lambda p: mmarray.open(p),
    "open raw": lambda p: mmarray.open(p, dtype="u1"),
    "open r+": lambda p: mmarray.open(p, "r+"),
    "open c": lambda p: mmarray.open(p, "c"),
    "memmap": lambda p: mmarray.memmap(p, mode="r"),
    "Region.open": lambda p: mmarray.Region.open(p),
    "extents": lambda p: mmarray.extents(p),
    "evict": lambda p: mmarray.evict(p),
    "create exist_ok": lambda p: mmarray.create(p, 3, "u1", exist_ok=True),
}


@pytest.mark.parametrize("call", list(CALLS_ON_A_SECRET))
def test_a_file_without_permission_is_a_permission_error_naming_it(secret, call):
    got = in_child(lambda: CALLS_ON_A_SECRET[call](secret))
    if call == "create exist_ok":  # the directory is not writable: it is named, not a temp
        assert got["type"] == "PermissionError" and got["filename"] == str(secret), got
        assert f"directory {secret.parent}" in got["msg"] and ".tmp" not in got["msg"], got
    else:
        assert_permission_error(got, str(secret))
    assert np.load(secret).tolist() == list(range(10))  # untouched


@pytest.mark.parametrize(
    "call",
    [
        lambda p: mmarray.open(p, "r+"),
        lambda p: mmarray.memmap(p, mode="r+"),
        lambda p: mmarray.Region.open(p, access="w"),
    ],
)
def test_writing_a_read_only_file_is_a_permission_error_naming_it(readable, call):
    assert_permission_error(in_child(lambda: call(readable)), str(readable))
    got = in_child(lambda: int(mmarray.open(readable).sum()))  # reading is allowed
    assert got == {"ok": True, "result": "45"}


def test_an_exclusive_lock_on_a_read_only_file_is_a_permission_error(readable):
    def lock_it() -> None:
        a = mmarray.open(readable)
        with mmarray.lock(a, exclusive=False):  # a read lock needs read permission only
            pass
        with mmarray.lock(a):
            pass

    got = in_child(lock_it)
    assert_permission_error(got, str(readable))
    assert "exclusive lock needs write permission" in got["msg"]


def test_creating_in_a_directory_without_permission_names_the_path(world):
    if not ROOT:
        world.chmod(0o555)
    target = world / "new.npy"
    try:
        for exist_ok in (False, True):
            got = in_child(lambda e=exist_ok: mmarray.create(target, 3, "u1", exist_ok=e))
            assert_permission_error(got, str(target))
            assert f"cannot create a file in the directory {world}" in got["msg"], got
            assert ".tmp" not in got["msg"] + got["filename"], got
        got = in_child(lambda: mmarray.memmap(target, mode="w+", shape=(3,)))
        assert_permission_error(got, str(target))
    finally:
        world.chmod(0o755)
    assert not target.exists()


# ---- named shared memory -----------------------------------------------------------------------


@pytest.fixture
def shm_name(can_drop) -> Iterator[str]:
    name = f"mmarray-test-sec-{uuid.uuid4().hex[:12]}"
    yield name
    if os.path.lexists("/dev/shm/" + name):
        os.unlink("/dev/shm/" + name)


def test_named_memory_of_another_user_is_a_permission_error_naming_it(shm_name):
    a = mmarray.named(shm_name, 4, "i8", create=True)
    a[:] = 7
    path = "/dev/shm/" + shm_name
    if not ROOT:
        os.chmod(path, 0)
    assert_permission_error(in_child(lambda: mmarray.named(shm_name)), path)
    assert_permission_error(in_child(lambda: mmarray.unlink(shm_name)), path)
    assert os.path.exists(path) and (mmarray.named(shm_name) == 7).all()


@pytest.mark.skipif(not ROOT, reason="giving an object to another user needs root")
def test_named_memory_owned_by_another_user_is_refused_unless_owner_any(shm_name):
    # its owner could truncate it under us: every access past the new end is SIGBUS
    a = mmarray.named(shm_name, 4, "i8", create=True)
    a[:] = 7
    path = "/dev/shm/" + shm_name
    fd = os.open(path, os.O_RDWR)
    try:
        os.fchown(fd, NOBODY, NOBODY)
    finally:
        os.close(fd)
    with pytest.raises(PermissionError) as ei:
        mmarray.named(shm_name)
    msg = str(ei.value)
    assert ei.value.filename == path and f"uid {NOBODY}" in msg and "owner='any'" in msg, msg
    assert "uid 0" in msg  # and who this process is
    assert (mmarray.named(shm_name, owner="any") == 7).all()
    assert in_child(lambda: int(mmarray.named(shm_name).sum())) == {"ok": True, "result": "28"}


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666], ids=oct)
def test_named_memory_that_others_may_write_is_refused_unless_owner_any(shm_name, mode):
    a = mmarray.named(shm_name, 4, "i8", create=True)
    a[:] = 7
    path = "/dev/shm/" + shm_name
    os.chmod(path, mode)
    with pytest.raises(PermissionError) as ei:
        mmarray.named(shm_name)
    msg = str(ei.value)
    assert ei.value.filename == path and oct(mode) in msg and "owner='any'" in msg, msg
    assert (mmarray.named(shm_name, owner="any") == 7).all()
    os.chmod(path, 0o644)  # readable by others is not writable by others
    assert (mmarray.named(shm_name) == 7).all()


def test_named_owner_must_be_self_or_any(shm_name):
    with pytest.raises(ValueError, match="owner must be 'self' or 'any'"):
        mmarray.named(shm_name, owner="me")
    assert not os.path.exists("/dev/shm/" + shm_name)


@pytest.mark.parametrize("umask", [0, 0o022, 0o077])
def test_named_memory_is_created_0600_whatever_the_umask(shm_name, umask):
    got = in_child(lambda: mmarray.named(shm_name, 3, "u1", create=True).shape, umask=umask)
    assert got["ok"], got
    assert stat.S_IMODE(os.stat("/dev/shm/" + shm_name).st_mode) == 0o600


BAD_NAMES = ["..", ".", "", "/", "//x", "x/", "a/b", "../x", "/../x", "a/../b", "../../etc/passwd",
             "..\x00", "a\x00b", "x" * 251, "é" * 128]  # fmt: skip


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_that_could_leave_dev_shm_are_refused(name):
    before = set(os.listdir("/dev/shm"))
    with pytest.raises(ValueError, match="bad shared memory name"):
        mmarray.named(name, 1, "u1", create=True)
    with pytest.raises(ValueError, match="bad shared memory name"):
        mmarray.named(name)
    with pytest.raises(ValueError, match="bad shared memory name"):
        mmarray.unlink(name)
    assert set(os.listdir("/dev/shm")) == before


def test_bug_shared_attach_followed_a_symlink_planted_in_dev_shm(shm_name, tmp_path):
    # /dev/shm is world-writable: another user can plant a link under a name we use
    victim = tmp_path / "victim.npy"
    np.save(victim, np.zeros(4, "u1"))
    os.symlink(victim, "/dev/shm/" + shm_name)
    with pytest.raises(OSError) as ei:
        mmarray.named(shm_name)
    assert ei.value.errno == errno.ELOOP
    np.testing.assert_array_equal(np.load(victim), np.zeros(4, "u1"))


# ---- the umask -------------------------------------------------------------------------------


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
@pytest.mark.parametrize("how", ["create npy", "create raw", "create reserve", "memmap w+"])
def test_new_files_honour_the_umask_as_open_does(tmp_path, umask, mode, how):
    path = tmp_path / ("f.npy" if "npy" in how else "f.raw")

    def make() -> None:
        if how == "memmap w+":
            mmarray.memmap(path, mode="w+", shape=(4,))
        else:
            mmarray.create(path, 4, "u1", allocate="reserve" if "reserve" in how else "sparse")
        with open(tmp_path / "by-open", "w"):  # the reference: what open() does
            pass

    got = in_child(make, drop=False, umask=umask)
    assert got["ok"], got
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "by-open").stat().st_mode) == mode
    assert not path.stat().st_mode & stat.S_IWOTH  # never world-writable


def test_bug_create_exist_ok_made_a_private_file_readable_to_others(tmp_path):
    path = tmp_path / "private.npy"
    np.save(path, np.arange(3))
    path.chmod(0o600)
    got = in_child(
        lambda: mmarray.create(path, 4, "f8", exist_ok=True).shape, drop=False, umask=0o022
    )
    assert got["ok"], got
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # as open(path, 'w') keeps it
    assert np.load(path).shape == (4,)
    path.chmod(0o640)
    mmarray.create(path, 2, "f8", exist_ok=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def poll_temporaries(d: pathlib.Path, keep: str, modes: list[int], stop: threading.Event) -> None:
    """Until ``stop``, list ``d`` and record the mode of every file in it but ``keep``
    (the temporaries ``create(..., exist_ok=True)`` makes beside it)."""
    while not stop.is_set():
        with os.scandir(d) as entries:
            for e in entries:
                if e.name != keep:
                    try:
                        modes.append(stat.S_IMODE(os.lstat(e.path).st_mode))
                    except FileNotFoundError:
                        pass


def test_the_temporary_of_create_exist_ok_is_never_wider_than_the_file_it_replaces(tmp_path):
    # another user polling the directory must never find the replacement of a private
    # file with wider permissions, not even between its creation and its chmod
    path = tmp_path / "private.raw"
    path.write_bytes(b"secret")
    path.chmod(0o600)

    def replace_many() -> tuple[int, list[int]]:
        modes: list[int] = []
        stop = threading.Event()
        poller = threading.Thread(target=poll_temporaries, args=(tmp_path, path.name, modes, stop))
        poller.start()
        try:
            for i in range(20_000):  # at least 3,000 rounds and 300 temporaries seen
                mmarray.create(path, 16, "u1", exist_ok=True)
                if i >= 3_000 and len(modes) >= 300:
                    break
        finally:
            stop.set()
            poller.join(10)
        return len(modes), sorted({oct(m) for m in modes if m & ~0o600})

    got = in_child(replace_many, drop=False, umask=0o022)
    assert got["ok"], got
    seen, wider = ast.literal_eval(got["result"])
    assert seen > 0, "the poller saw no temporary file"
    assert wider == [], f"temporaries seen with modes {wider} (of {seen} seen)"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.skipif(not ROOT, reason="giving a file to another user needs root")
def test_create_exist_ok_keeps_the_owner_and_group_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "theirs.npy"
    np.save(path, np.arange(3))
    os.chown(path, NOBODY, NOBODY)
    path.chmod(0o640)
    a = mmarray.create(path, 4, "f8", exist_ok=True, fill=2)
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, 0o640)
    assert np.load(path).tolist() == [2.0] * 4 and a.sum() == 8


@pytest.mark.skipif(not ROOT, reason="giving a file to another group needs root")
def test_create_exist_ok_drops_the_group_bits_where_it_cannot_keep_the_group(world):
    # nobody replaces its own group-readable file whose group (root's) it is not in:
    # the new file's group is nobody's own, which must not read what root's group could
    path = world / "group.npy"
    np.save(path, np.arange(3))
    os.chown(path, NOBODY, 0)
    path.chmod(0o660)
    world.chmod(0o777)
    try:
        got = in_child(lambda: mmarray.create(path, 4, "u1", exist_ok=True).shape)
    finally:
        world.chmod(0o755)
    assert got["ok"], got
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, 0o600)


# ---- references: identity checked before mapping, and the receiver's permissions ----------


def test_a_ref_to_a_replaced_file_of_the_same_size_is_refused(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.arange(100))
    ref = mmarray.share(mmarray.open(path))
    other = tmp_path / "b.npy"
    np.save(other, np.arange(100) * 2)  # same size, another inode
    os.replace(other, path)
    with pytest.raises(OSError, match="replaced") as ei:
        ref.open()
    assert ei.value.errno == errno.ESTALE and ei.value.filename == str(path)


def test_a_ref_to_a_shrunk_file_is_refused_and_to_a_grown_one_opens(tmp_path):
    path = tmp_path / "a.raw"
    a = mmarray.create(path, 3 * 4096, "u1", fill=5)
    ref = mmarray.share(a[4096:])
    os.truncate(path, 2 * 4096 + 10)  # the span is no longer all there
    with pytest.raises(OSError, match="truncated") as ei:
        ref.open()
    assert ei.value.errno == errno.ESTALE
    os.truncate(path, 5 * 4096)  # holds the span again (same inode): the same bytes
    b = ref.open()
    assert b.shape == (2 * 4096,) and b[0] == 5


def test_a_ref_to_another_link_of_the_same_inode_opens(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.arange(10))
    ref = mmarray.share(mmarray.open(path))
    os.link(path, tmp_path / "keep.npy")
    os.unlink(path)
    os.link(tmp_path / "keep.npy", path)  # the same file under the referenced name
    np.testing.assert_array_equal(ref.open(), np.arange(10))


def test_an_fd_ref_whose_descriptor_now_names_another_file_is_refused(tmp_path):
    a = mmarray.anonymous(1000, "u1")
    ref = mmarray.share(a)
    n = mmarray.region(a).fileno()
    mmarray.region(a).close()  # closes the descriptor at once; the mapping stays for a
    other = tmp_path / "other.raw"
    other.write_bytes(bytes(4096))
    fd = os.open(other, os.O_RDWR)
    try:
        if fd != n:
            os.dup2(fd, n)
        with pytest.raises(OSError, match="replaced") as ei:
            ref.open()
        assert ei.value.errno == errno.ESTALE
    finally:
        if fd != n:
            os.close(n)
        os.close(fd)


def test_a_ref_the_receiver_may_not_open_is_a_permission_error(secret, readable):
    ref = mmarray.share(mmarray.open(secret))
    got = in_child(ref.open)
    assert_permission_error(got, str(secret))
    assert "ArrayRef" in got["msg"] and "for reading" in got["msg"]
    # a writable reference to a file the receiver may only read
    if ROOT:
        wref = mmarray.share(mmarray.open(readable, "r+"))
        got = in_child(wref.open)
        assert_permission_error(got, str(readable))
        assert "reading and writing" in got["msg"]
        assert in_child(lambda: mmarray.share(mmarray.open(readable)).open().sum())["ok"]


@pytest.mark.skipif(not ROOT, reason="another user's process is needed: run as root")
def test_a_ref_to_another_users_anonymous_memory_is_a_permission_error(can_drop):
    a = mmarray.anonymous(4096, "u1")
    ref = mmarray.share(a)
    assert ref.kind == "fd"
    got = in_child(ref.open)
    assert_permission_error(got, ref.path)
