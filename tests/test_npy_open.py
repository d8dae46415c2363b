"""Opening ``.npy`` files: the header read with ``pread`` (the mapping untouched) and
remembered by its bytes (``mmarray._npy.known_header``).

Oracles: ``np.load`` for contents, shapes and dtypes; the page table
(``/proc/self/pagemap``) for "the mapping is not touched by the open".
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import mmarray
from mmarray import _npy


def _page_present(addr: int) -> bool:
    """Whether this process's page table maps the page holding ``addr`` (bit 63 of its
    ``/proc/self/pagemap`` entry; the bit is shown to unprivileged processes too)."""
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(addr // mmarray.PAGESIZE * 8)
        entry = int.from_bytes(f.read(8), "little")
    return bool(entry >> 63)


@pytest.mark.skipif(not os.path.exists("/proc/self/pagemap"), reason="Linux pagemap")
def test_an_npy_open_faults_no_page_of_the_mapping(tmp_path):
    """The header is read with ``pread``, not through the mapping: after an open the page
    holding the header and the first values is not in the page table (before: the header
    read faulted it in). The oracle is checked too: one read of a value maps the page.

    (A count of minor faults was the oracle before; a sanitizer's allocator faults pages
    of its own, so the count is not a statement about the mapping.)"""
    p = tmp_path / "a.npy"
    np.save(p, np.arange(1 << 16, dtype=np.float64))
    for _ in range(20):
        a = mmarray.open(p)
        addr = a.__array_interface__["data"][0]
        assert addr % mmarray.PAGESIZE == 128  # the header shares the first page
        assert not _page_present(addr)
    assert float(a[0]) == 0.0
    assert _page_present(addr)


def test_a_rewritten_header_is_read_afresh(tmp_path):
    """The remembered header is keyed by its bytes: a file saved again with another shape
    or dtype opens with the new one."""
    p = tmp_path / "a.npy"
    np.save(p, np.arange(12, dtype=np.int32))
    assert mmarray.open(p).shape == (12,)
    np.save(p, np.arange(12, dtype=np.float64).reshape(3, 4))
    a = mmarray.open(p)
    assert a.shape == (3, 4) and a.dtype == np.float64
    np.testing.assert_array_equal(a, np.load(p))
    np.save(p, np.arange(12, dtype=np.float64).reshape(3, 4).T)  # Fortran order
    a = mmarray.open(p)
    assert a.flags.f_contiguous
    np.testing.assert_array_equal(a, np.load(p))


def test_a_header_longer_than_the_first_read_is_read_whole(tmp_path):
    """A structured dtype of many fields: a header of several KiB (more than read_head's
    first 256 bytes) is read again in full."""
    dt = np.dtype([(f"field_{i:03d}", "<f8") for i in range(200)])
    p = tmp_path / "s.npy"
    v = np.zeros(3, dtype=dt)
    v["field_007"] = [1, 2, 3]
    np.save(p, v)
    with open(p, "rb") as f:
        head = f.read(4096)
    assert _npy.header_span(head, p, p.stat().st_size) > 256
    a = mmarray.open(p)
    assert a.dtype == dt
    np.testing.assert_array_equal(a, np.load(p))


def test_a_known_header_with_too_little_data_still_raises(tmp_path):
    """The data's length is checked on every open, the remembered header's too."""
    p = tmp_path / "a.npy"
    np.save(p, np.arange(100, dtype=np.float64))
    assert mmarray.open(p).shape == (100,)  # remembered
    with open(p, "r+b") as f:
        f.truncate(128 + 8 * 50)
    with pytest.raises(ValueError, match="holds 400 bytes of data"):
        mmarray.open(p)
    with open(p, "r+b") as f:
        f.truncate(100)  # inside the header
    with pytest.raises(ValueError, match="header"):
        mmarray.open(p)


def test_a_file_at_rest_opens_without_grows_lock_and_any_other_under_it(tmp_path, monkeypatch):
    # A header whose data ends at the file's end is one moment's (grow extends the file
    # before it rewrites the header); a longer file (a grow in progress, or a killed
    # grow's tail) is read again under grow's lock, shared.
    import mmarray._api as api

    taken = []
    real = api.NoGrowDuring

    def recording(fd, name):
        taken.append(name)
        return real(fd, name)

    monkeypatch.setattr(api, "NoGrowDuring", recording)
    p = tmp_path / "a.npy"
    np.save(p, np.arange(10.0))
    assert np.array_equal(mmarray.open(p), np.arange(10.0))
    assert taken == []
    with open(p, "ab") as f:
        f.write(b"\0" * 24)  # an uncommitted tail
    assert np.array_equal(mmarray.open(p), np.arange(10.0))
    assert len(taken) == 1
