"""numpy's own memmap test-suite ideas, one by one, run on mmarray.memmap and np.memmap.

Each test does the same thing with both classes and checks that they agree (and,
where numpy's suite states it, what they agree on). ``impl`` is the class under
test; a result that numpy gives as ``np.memmap`` must be ``impl``.
"""

from __future__ import annotations

import mmap
import os
import pathlib
import pickle
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import mmarray

IMPLS = [np.memmap, mmarray.memmap]
SHAPE = (3, 4)
DATA = np.arange(12, dtype="float32").reshape(SHAPE)


def both(fn: Callable[[Any], Any]) -> Any:
    """fn(impl) for numpy and for mmarray; assert they agree and return the result."""
    ours, numpys = fn(mmarray.memmap), fn(np.memmap)
    assert ours == numpys
    return ours


@pytest.fixture
def fn(tmp_path: pathlib.Path) -> Callable[[Any], pathlib.Path]:
    """A fresh file name per implementation (both may run in one test)."""
    return lambda impl: tmp_path / f"{impl.__module__}.dat"


@pytest.fixture
def filled(fn: Callable[[Any], pathlib.Path]) -> Callable[[Any], Any]:
    """impl -> a 'w+' memmap of DATA's shape, filled with DATA."""

    def make(impl: Any) -> Any:
        fp = impl(fn(impl), dtype=DATA.dtype, mode="w+", shape=SHAPE)
        fp[:] = DATA
        return fp

    return make


def test_roundtrip(fn):
    def run(impl):
        fp = impl(fn(impl), dtype=DATA.dtype, mode="w+", shape=SHAPE)
        fp[:] = DATA[:]
        fp.flush()
        del fp
        newfp = impl(fn(impl), dtype=DATA.dtype, mode="r", shape=SHAPE)
        return newfp.tolist(), fn(impl).read_bytes()

    got = both(run)
    assert got == (DATA.tolist(), DATA.tobytes())


def test_shape_inferred_from_the_file(fn):
    def run(impl):
        p = fn(impl)
        np.arange(10, dtype="<i4").tofile(p)
        whole = impl(p, dtype="<i4", mode="r")
        after = impl(p, dtype="<i4", mode="r", offset=8)
        as_u2 = impl(p, dtype="<u2", mode="r", offset=2)
        return whole.shape, whole.tolist(), after.shape, after[0], as_u2.shape

    assert both(run) == ((10,), list(range(10)), (8,), 2, (19,))


def test_no_shape_on_a_file_object_with_buffered_data():
    def run(impl):
        with tempfile.NamedTemporaryFile() as f:
            f.write(b"a" * 16)
            return impl(f, dtype="float64").shape

    assert both(run) == (2,)


def test_shape_types(fn):
    def run(impl):
        shapes = [3, SHAPE, list(SHAPE), np.asarray(SHAPE), np.int16(5)]
        return [impl(fn(impl), shape=s, mode="w+").shape for s in shapes]

    assert both(run) == [(3,), SHAPE, SHAPE, SHAPE, (5,)]


def test_attributes(fn):
    def run(impl):
        p = fn(impl)
        fp = impl(p, dtype=DATA.dtype, mode="w+", shape=SHAPE)
        got = [(fp.offset, fp.mode)]
        for mode in ("r", "r+", "c", "readonly", "copyonwrite", "readwrite"):
            m = impl(p, dtype=DATA.dtype, mode=mode, offset=4, shape=(2,))
            got.append((m.offset, m.mode, m[1:].offset, m[1:].mode))
        return got

    got = both(run)
    assert got[0] == (0, "w+") and got[1] == (4, "r", 4, "r")


def test_offset_greater_than_the_allocation_granularity(fn):
    def run(impl):
        size = 5 * mmap.ALLOCATIONGRANULARITY
        offset = mmap.ALLOCATIONGRANULARITY + 1
        fp = impl(fn(impl), shape=size, mode="w+", offset=offset)
        fp[-1] = 9
        fp.flush()
        return fp.offset, fp.shape, fn(impl).stat().st_size, fn(impl).read_bytes()[-1]

    assert both(run) == (
        mmap.ALLOCATIONGRANULARITY + 1,
        (5 * mmap.ALLOCATIONGRANULARITY,),
        6 * mmap.ALLOCATIONGRANULARITY + 1,
        9,
    )


def test_empty_array_at_an_offset_that_is_a_multiple_of_the_granularity():
    def run(impl):
        with tempfile.NamedTemporaryFile() as f:
            f.write(b"a" * mmap.ALLOCATIONGRANULARITY)  # buffered, as in numpy's suite
            offset = mmap.ALLOCATIONGRANULARITY
            fp = impl(f, shape=0, mode="w+", offset=offset)
            return fp.offset, fp.shape, os.fstat(f.fileno()).st_size

    assert both(run) == (mmap.ALLOCATIONGRANULARITY, (0,), mmap.ALLOCATIONGRANULARITY)


def test_empty_file_refused_in_mode_r_mapped_in_mode_w_plus(fn):
    def run(impl):
        p = fn(impl)
        p.write_bytes(b"")
        with pytest.raises(ValueError, match="empty file"):
            impl(p, shape=(0, 4), mode="r")
        first = impl(p, shape=(0, 4), mode="w+")  # mapped: the file grows to one byte
        second = impl(p, shape=(0, 4), mode="w+")  # the file is not empty now
        return first.shape, second.shape, p.stat().st_size

    assert both(run) == ((0, 4), (0, 4), 1)


def test_modes(fn):
    def run(impl):
        p = fn(impl)
        p.write_bytes(bytes(range(8)))
        ro = impl(p, mode="r")
        with pytest.raises(ValueError, match="read-only"):
            ro[0] = 1
        cow = impl(p, mode="c")
        cow[:] = 7  # private: the file keeps its bytes
        cow.flush()
        rw = impl(p, mode="r+")
        rw[0] = 99
        rw.flush()
        got = cow.tolist(), p.read_bytes(), ro.tolist(), ro.flags.writeable
        del ro, cow, rw  # before 'w+' truncates their file under them
        w = impl(p, mode="w+", shape=(3,))  # truncates, then grows to the shape
        return got, p.read_bytes(), w.tolist()

    written = bytes([99, *range(1, 8)])
    assert both(run) == (([7] * 8, written, list(written), False), bytes(3), [0, 0, 0])


def test_open_with_a_str_filename(fn):
    def run(impl):
        p = fn(impl)
        fp = impl(str(p), dtype=DATA.dtype, mode="w+", shape=SHAPE)
        fp[:] = DATA
        ok = fp.filename == os.path.abspath(p) and fp[:1].filename == fp.filename
        del fp
        return ok

    assert both(run) is True


def test_relative_filename_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def run(impl):
        name = f"rel-{impl.__module__}.dat"
        fp = impl(name, dtype="u1", mode="w+", shape=(4,))
        return fp.filename == str(tmp_path / name), fp[1:].filename == fp.filename

    assert both(run) == (True, True)


def test_filename_as_a_path(fn):
    def run(impl):
        p = fn(impl)
        fp = impl(p, dtype=DATA.dtype, mode="w+", shape=SHAPE)
        return isinstance(fp.filename, pathlib.Path), fp.filename == p.resolve()

    assert both(run) == (True, True)


@pytest.mark.parametrize("open_mode,mode", [("rb", "r"), ("r+b", "r+"), ("rb", "c")])
def test_filename_as_a_file_object(fn, open_mode, mode):
    def run(impl):
        p = fn(impl)
        DATA.tofile(p)
        with open(p, open_mode) as f:
            fp = impl(f, dtype=DATA.dtype, mode=mode, shape=SHAPE)
            if fp.flags.writeable:
                fp[0, 0] = -1
                fp.flush()
            return fp.filename == os.path.abspath(p), fp.tolist(), p.read_bytes()

    both(run)


def test_file_object_without_a_path():
    def run(impl):
        with tempfile.TemporaryFile() as f:
            fp = impl(f, dtype=DATA.dtype, mode="w+", shape=SHAPE)
            fp[:] = DATA
            fp.flush()
            f.seek(0)
            return fp.filename, f.read()

    assert both(run) == (None, DATA.tobytes())


def test_flush(filled):
    def run(impl):
        fp = filled(impl)
        fp.flush()
        return fp.tolist()

    both(run)


def test_flush_on_views(filled, fn):
    def run(impl):
        fp = filled(impl)
        view = fp[1:, ::2]
        view[:] = -5
        view.flush()
        view[None].flush()
        fp.T.flush()
        return np.fromfile(fn(impl), dtype=DATA.dtype).tolist()

    got = both(run)
    assert got[4] == got[6] == -5 and got[5] == 5


def test_del_flushes(fn):
    """Dropping the last array writes the data back (the pages reach the file)."""

    def run(impl):
        p = fn(impl)
        fp = impl(p, dtype="<i2", mode="w+", shape=(1000,))
        view = fp[10:20]
        fp[:] = 3
        view[:] = 4
        del fp, view
        return np.fromfile(p, dtype="<i2").tolist()

    assert both(run) == [3] * 10 + [4] * 10 + [3] * 980


def test_del_of_a_view_keeps_the_base(fn):
    def run(impl):
        fp_base = impl(fn(impl), dtype=DATA.dtype, mode="w+", shape=SHAPE)
        fp_base[0] = 5
        fp_view = fp_base[0:1]
        first = fp_view[0].tolist()
        del fp_view
        # Should still be able to access and assign values after deleting the view
        second = fp_base[0].tolist()
        fp_base[0] = 6
        return first, second, fp_base[0].tolist()

    assert both(run) == ([5.0] * 4, [5.0] * 4, [6.0] * 4)


def test_slicing_keeps_references(filled):
    for impl in IMPLS:
        fp = filled(impl)
        assert fp[:2, :2]._mmap is fp._mmap
        assert fp[::-1, 1:].T._mmap is fp._mmap
        assert fp[...]._mmap is fp._mmap


def test_arithmetic_drops_references(filled):
    for impl in IMPLS:
        fp = filled(impl)
        tmp = fp + 10
        assert type(tmp) is np.ndarray
        assert getattr(tmp, "_mmap", None) is not fp._mmap


def test_indexing_drops_references(filled):
    for impl in IMPLS:
        fp = filled(impl)
        tmp = fp[(1, 2), (2, 3)]
        assert type(tmp) is np.ndarray
        assert getattr(tmp, "_mmap", None) is not fp._mmap


def test_view(filled):
    for impl in IMPLS:
        fp = filled(impl)
        new1 = fp.view()
        new2 = new1.view()
        assert new1.base is fp and new2.base is fp
        assert type(new1) is impl and new1._mmap is fp._mmap
        assert np.asarray(fp).base is fp


def test_ufunc_return_ndarray(filled):
    def run(impl):
        fp = filled(impl)
        got = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
            for unary_op in (np.sum, np.average, np.prod, np.max, np.mean):
                result = unary_op(fp)
                got.append((np.isscalar(result), type(result), float(result)))
                got.append(type(unary_op(fp, axis=0)))
        for binary_op in (np.add, np.subtract, np.multiply):
            got.append(type(binary_op(fp, DATA)))
            got.append(type(binary_op(DATA, fp)))
            got.append(type(binary_op(fp, fp)))
        fp += 1
        got.append(type(fp) is impl)
        np.add(fp, 1, out=fp)
        got.append(type(fp) is impl)
        got.append((type(np.sqrt(fp)), type(np.sqrt(fp[0, 0])), type(fp.sum(keepdims=True))))
        return got, fp.tolist()

    got, _ = both(run)
    assert got[0] == (True, np.float32, float(DATA.sum()))
    assert got[1] is np.ndarray and got[-3:-1] == [True, True]


def test_getitem(filled):
    def run(impl):
        fp = filled(impl)
        return (
            type(fp[1:, :-1]) is impl,
            type(fp[[0, 1]]),
            type(fp[fp > 5]),
            type(fp[0, 0]),
            type(fp[0]) is impl,
            type(fp[None, ...]) is impl,
        )

    assert both(run) == (True, np.ndarray, np.ndarray, np.float32, True, True)


def test_memmap_subclass(fn):
    """Subclasses keep numpy's earlier behaviour: every result is of the subclass."""

    def run(impl):
        sub = type("MemmapSubClass", (impl,), {})
        fp = sub(fn(impl), dtype=DATA.dtype, mode="w+", shape=SHAPE)
        fp[:] = DATA
        return [type(x) is sub for x in (np.sum(fp, axis=0), fp[1:, :-1], fp[[0, 1]], fp + 1, fp.T)]

    assert both(run) == [True] * 5


def test_pickling(filled):
    """A memmap pickles by value: it comes back with the data, of the same class,
    mapping nothing (no _mmap, no filename), and its slices are plain arrays."""

    def run(impl):
        fp = filled(impl)
        out = []
        for a in (fp, fp[1:, ::2], fp.T):
            back = pickle.loads(pickle.dumps(a))
            out.append(
                (
                    type(back) is impl,
                    back.tolist() == a.tolist(),
                    back._mmap,
                    back.filename,
                    back.offset,
                    back.mode,
                    type(back[1:]),
                    type(back + 1),
                    back.flags.writeable,
                )
            )
        return out

    assert both(run)[0] == (True, True, None, None, None, None, np.ndarray, np.ndarray, True)


def test_copies_map_nothing(filled):
    def run(impl):
        fp = filled(impl)
        return [
            (type(c) is impl, c._mmap, c.filename, type(c[1:]))
            for c in (fp.copy(), fp.astype("f8"), fp.flatten())
        ]

    assert both(run)[0] == (True, None, None, np.ndarray)


def test_repr(filled):
    both(lambda impl: repr(filled(impl)[:1, :2]))
