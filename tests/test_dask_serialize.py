"""mmarray arrays through dask.distributed's serialization travel by reference.

On a real LocalCluster of two worker processes (module fixture, every result
bounded by a timeout). Bytes sent are counted where they leave a process: each
TCP comm's frames (``distributed.comm.tcp.to_frames``), in the client and, through
``client.run``, in the workers.
"""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

import mmarray

distributed = pytest.importorskip("distributed")
md = pytest.importorskip("mmarray.dask")
from dask_cluster import local_client  # noqa: E402  (after the skips: it imports distributed)
from distributed.protocol import deserialize, serialize  # noqa: E402

TIMEOUT = 60
N = 1 << 20  # float64 elements: 8 MiB
LIMIT = 64 * 1024  # bytes a by-reference exchange may send (messages included)
SAME_HOST = {
    "sender": {"address": "tcp://127.0.0.1:1"},
    "recipient": {"address": "tcp://127.0.0.1:2"},
}
OTHER_HOST = {
    "sender": {"address": "tcp://10.0.0.1:1"},
    "recipient": {"address": "tcp://10.0.0.2:2"},
}

_sent = [0]


def count_sent():
    """Count the bytes of every frame this process writes on a TCP comm (idempotent)."""
    import distributed.comm.tcp as tcp

    if not hasattr(tcp.to_frames, "_counting"):
        inner = tcp.to_frames

        async def to_frames(*args, **kwargs):
            frames = await inner(*args, **kwargs)
            _sent[0] += sum(memoryview(f).nbytes for f in frames)
            return frames

        to_frames._counting = True
        tcp.to_frames = to_frames
    _sent[0] = 0


def sent_bytes():
    return _sent[0]


@pytest.fixture(scope="module")
def client():
    yield from local_client()


def client_sent(client, action):
    """Bytes the client sent while ``action()`` ran (its result awaited inside)."""
    count_sent()
    out = action()
    return out, sent_bytes()


def workers_sent(client, action):
    client.run(count_sent)
    out = action()
    return out, sum(client.run(sent_bytes).values())


def describe_here(x):
    """In the worker: is ``x`` mapped (not a copy), writeable, its sum."""
    reg = mmarray.region(x)
    return reg is not None and reg.shared, bool(x.flags.writeable), float(np.sum(x))


def write_ones(x):
    x[...] = 1.0
    return True


@pytest.fixture
def file_array(tmp_path):
    a = mmarray.create(tmp_path / "a.npy", (N,), "f8")
    a[:] = np.arange(N, dtype="f8")
    return a


def test_scatter_sends_a_reference(client, file_array):
    fut, nbytes = client_sent(client, lambda: client.scatter(file_array, direct=True))
    assert nbytes < LIMIT < file_array.nbytes
    mapped, writeable, total = client.submit(describe_here, fut).result(timeout=TIMEOUT)
    assert (mapped, writeable, total) == (True, True, float(np.arange(N, dtype="f8").sum()))


def test_a_scattered_view_writes_through(client, file_array):
    view = file_array.reshape(1024, 1024)[::2, 1:]

    def send():
        fut = client.scatter(view, direct=True)
        return client.submit(write_ones, fut, pure=False).result(timeout=TIMEOUT)

    ok, nbytes = client_sent(client, send)
    assert ok and nbytes < LIMIT < view.nbytes
    grid = file_array.reshape(1024, 1024)
    assert (grid[::2, 1:] == 1.0).all() and (grid[1::2] != 1.0).any()
    assert (grid[::2, 0] == np.arange(0, N, 2048)).all()  # bytes outside the view untouched


def test_an_opened_read_only_array_arrives_read_only(client, file_array):
    ro = mmarray.open(mmarray.region(file_array).name, "r")
    fut = client.scatter(ro[10:20], direct=True)
    mapped, writeable, total = client.submit(describe_here, fut).result(timeout=TIMEOUT)
    assert (mapped, writeable, total) == (True, False, float(np.arange(10, 20).sum()))


def open_in_worker(path):
    return mmarray.open(path, "r")


def anonymous_in_worker(n):
    a = mmarray.anonymous((n,), "f8")
    a[:] = 3.0
    return a


@pytest.mark.parametrize("make", ["open", "anonymous"])
def test_a_result_returns_by_reference(client, file_array, make):
    path = mmarray.region(file_array).name
    fn, arg = (open_in_worker, path) if make == "open" else (anonymous_in_worker, N)
    fut = client.submit(fn, arg, pure=False)
    distributed.wait(fut, timeout=TIMEOUT)
    got, nbytes = workers_sent(client, lambda: fut.result(timeout=TIMEOUT))
    assert nbytes < LIMIT < got.nbytes
    assert mmarray.region(got) is not None
    expect = np.arange(N, dtype="f8") if make == "open" else np.full(N, 3.0)
    assert np.array_equal(got, expect)


def echo(x):
    return x


@pytest.mark.parametrize("dtype", ["f8", "i2", "?", "c16", "M8[ns]", "V3", "O"])
def test_plain_numpy_arrays_still_go_by_value(client, dtype):
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, size=4096 * 8 * 3, dtype=np.uint8)
    a = raw.view("V3") if dtype == "V3" else raw.view("f8" if dtype == "O" else dtype)
    if dtype == "f8":
        a[:4] = [-0.0, np.nan, np.inf, -np.inf]
    if dtype == "O":
        a = a.view("i8").astype(object)
    got, nbytes = client_sent(
        client, lambda: client.submit(echo, a, pure=False).result(timeout=TIMEOUT)
    )
    assert mmarray.region(got) is None and got.dtype == a.dtype
    if dtype == "O":
        assert (got == a).all()
    else:
        assert got.tobytes() == a.tobytes() and nbytes >= a.nbytes


def test_a_private_array_goes_by_value(client, file_array):
    priv = mmarray.open(mmarray.region(file_array).name, "c")

    def send():
        fut = client.scatter(priv, direct=True)
        return client.submit(write_ones, fut, pure=False).result(timeout=TIMEOUT)

    ok, nbytes = client_sent(client, send)
    assert ok and nbytes >= priv.nbytes
    assert file_array[5] == 5.0 and priv[5] == 5.0  # the worker wrote its own copy


def load_and_sum(header, frames):
    return float(np.sum(deserialize(header, frames)))


def test_a_file_replaced_under_the_path_is_estale(client, file_array, tmp_path):
    path = mmarray.region(file_array).name
    header, frames = serialize(mmarray.open(path, "r"), context=SAME_HOST)
    np.save(tmp_path / "b.npy", np.zeros(N))
    os.replace(tmp_path / "b.npy", path)
    with pytest.raises(OSError) as e:
        client.submit(load_and_sum, header, frames).result(timeout=TIMEOUT)
    assert e.value.errno == errno.ESTALE and e.value.filename == path


def test_a_worker_that_cannot_see_the_file_names_it_then_the_path_map(client, tmp_path):
    (tmp_path / "d").mkdir()
    a = mmarray.create(tmp_path / "d" / "a.npy", (1000,), "f8")
    a[:] = 2.0
    header, frames = serialize(a[:10], context=SAME_HOST)
    del a
    os.rename(tmp_path / "d", tmp_path / "moved")
    with pytest.raises(FileNotFoundError) as e:
        client.submit(load_and_sum, header, frames, pure=False).result(timeout=TIMEOUT)
    assert e.value.filename == str(tmp_path / "d" / "a.npy")
    assert "cannot open" in str(e.value) and "worker tcp://" in str(e.value)
    client.run(md.path_map, {str(tmp_path / "d"): str(tmp_path / "moved")})
    try:
        got = client.submit(load_and_sum, header, frames, pure=False).result(timeout=TIMEOUT)
    finally:
        client.run(md.path_map, {})
    assert got == 20.0


def test_memory_only_this_host_reaches_goes_by_value_to_another(tmp_path):
    anon = mmarray.anonymous((N,), "f8")
    anon[:] = 4.0
    for ctx, by_reference in ((SAME_HOST, True), (OTHER_HOST, False), (None, False)):
        header, frames = serialize(anon, context=ctx)
        size = sum(memoryview(f).nbytes for f in frames)
        assert (size < LIMIT) is by_reference
        assert np.array_equal(deserialize(header, frames), anon)
    # a file with a name goes by reference even without a connection (spilling)
    f = mmarray.create(tmp_path / "f.raw", (N,), "f8")
    header, frames = serialize(f, context=None)
    assert sum(memoryview(x).nbytes for x in frames) < LIMIT


def test_a_reference_forwarded_to_another_machine(tmp_path):
    from mmarray._distributed import _rebuild
    from mmarray._ref import describe

    anon = mmarray.anonymous((100,), "f8")
    ref, fd = describe(anon)
    os.close(fd)
    got = _rebuild(ref, 0, "another-host")
    with pytest.raises(OSError) as e:
        got.sum()
    assert e.value.errno == errno.EXDEV and "only the sender's machine" in str(e.value)
    # a named file on another machine: mapped with from_file's checks (no device number)
    f = mmarray.create(tmp_path / "f.raw", (100,), "f8")
    ref, fd = describe(f[::-2])
    mtime = os.fstat(fd).st_mtime_ns
    os.close(fd)
    there = _rebuild(ref, mtime, "another-host")
    there[0] = 7.0
    assert f[-1] == 7.0 and there.strides == (-16,)
    os.truncate(tmp_path / "f.raw", 400)
    with pytest.raises(OSError) as e:
        _rebuild(ref, mtime, "another-host").sum()
    assert e.value.errno == errno.ESTALE
