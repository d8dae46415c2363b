"""Many threads opening, slicing, reducing and closing the same files at once."""

from __future__ import annotations

import threading
import time

import numpy as np

import mmarray


def test_threads_share_files_without_crashing(tmp_path):
    # numpy issue 29126: threads opening the same file could crash np.memmap users.
    raw = tmp_path / "t.raw"
    npy = tmp_path / "t.npy"
    data = np.arange(50_000, dtype="<i8")
    data.tofile(raw)
    np.save(npy, data)
    want = int(data.sum())
    errors: list[BaseException] = []
    counts = [0] * 8
    stop = time.monotonic() + 2.0

    def worker(i: int) -> None:
        try:
            while time.monotonic() < stop:
                a = mmarray.open(raw, dtype="<i8") if i % 2 else mmarray.open(npy)
                assert int(a.sum()) == want
                v = a[i::7][::-1]
                assert int(v.sum()) == int(data[i::7].sum())
                reg = mmarray.region(a)
                assert reg is not None
                reg.close()  # deferred: a and v stay valid
                assert int(v[:3].sum()) == int(data[i::7][::-1][:3].sum())
                m = mmarray.memmap(raw, dtype="<i8", mode="r", shape=(100,), offset=8 * i)
                assert int(m[0]) == i
                m.close()
                counts[i] += 1
        except BaseException as e:  # reported after the join
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(c > 0 for c in counts)
