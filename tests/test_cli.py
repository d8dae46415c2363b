"""The ``mmarray`` command line: every command in-process through ``main([...])``, a few
through real processes, outputs checked against numpy and ``os.stat``, errors as one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from page_helpers import mapped_elsewhere, release

import mmarray
from mmarray.cli import main

REPO = Path(__file__).resolve().parent.parent
PAGE = mmarray.PAGESIZE


def run(capsys, *argv: object) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (status, stdout, stderr); usage errors give 2."""
    try:
        rc = main([os.fspath(a) if isinstance(a, Path) else str(a) for a in argv])
    except SystemExit as e:
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str, path: object) -> str:
    """The one line a user error prints, checked: names the file, no traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"mmarray: {path}: "), lines[0]
    return lines[0]


# --- help, version -------------------------------------------------------------------

COMMANDS = ["info", "median", "quantile", "create", "grow", "punch", "evict", "prefetch", "demo"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_is_plain_text(capsys, command):
    rc, out, _ = run(capsys, *([command] if command else []), "--help")
    assert rc == 0 and "usage: mmarray" in out
    for markup in ("``", ":func:", ":class:", ".. ", "`"):
        assert markup not in out, (command, markup)
    assert max(len(line) for line in out.splitlines()) <= 100


def test_help_lists_every_command(capsys):
    _, out, _ = run(capsys, "--help")
    for command in COMMANDS:
        assert f"\n    {command} " in out


def test_version(capsys):
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out.strip() == f"mmarray {mmarray.__version__}"


# --- create --------------------------------------------------------------------------


def test_create_npy_with_fill(capsys, tmp_path):
    p = tmp_path / "a.npy"
    rc, out, err = run(capsys, "create", p, "--shape", "4,3", "--dtype", "float32", "--fill", "1.5")
    assert (rc, err) == (0, "")
    assert "shape (4, 3) of float32" in out
    np.testing.assert_array_equal(np.load(p), np.full((4, 3), 1.5, np.float32))


def test_create_raw_fortran_is_sparse(capsys, tmp_path):
    p = tmp_path / "a.raw"
    rc, out, _ = run(capsys, "create", p, "--shape", "1048576x4", "--dtype", "u2", "--order", "F")
    assert rc == 0
    st = os.stat(p)
    assert st.st_size == 8 << 20 and st.st_blocks * 512 < 1 << 20


def test_create_reserve_allocates_every_block(capsys, tmp_path):
    p = tmp_path / "r.raw"
    argv = ["--shape", "1048576", "--dtype", "u1", "--allocate", "reserve"]
    rc, _, _ = run(capsys, "create", p, *argv)
    assert rc == 0 and os.stat(p).st_blocks * 512 >= 1 << 20


def test_create_refuses_an_existing_file_unless_force(capsys, tmp_path):
    p = tmp_path / "e.npy"
    np.save(p, np.arange(3))
    rc, _, err = run(capsys, "create", p, "--shape", "2", "--dtype", "i1")
    assert one_error_line(err, p) == f"mmarray: {p}: file exists (--force replaces it)"
    assert rc == 1
    np.testing.assert_array_equal(np.load(p), np.arange(3))
    rc, _, _ = run(capsys, "create", p, "--shape", "2", "--dtype", "i1", "--force")
    assert rc == 0 and np.load(p).dtype == np.int8


def test_create_refuses_a_fill_the_dtype_would_change(capsys, tmp_path):
    p = tmp_path / "f.raw"
    rc, _, err = run(capsys, "create", p, "--shape", "3", "--dtype", "i4", "--fill", "1.5")
    assert rc == 1 and "does not fit dtype int32" in one_error_line(err, p)
    rc, _, err = run(capsys, "create", p, "--shape", "3", "--dtype", "i1", "--fill", "300")
    assert rc == 1 and "out of bounds" in one_error_line(err, p)
    assert not p.exists()


# --- info ----------------------------------------------------------------------------


def test_info_npy_matches_the_header_and_stat(capsys, tmp_path):
    p = tmp_path / "i.npy"
    np.save(p, np.asfortranarray(np.arange(600, dtype="<f4").reshape(20, 30)))
    rc, out, err = run(capsys, "info", "--json", p)
    assert (rc, err) == (0, "")
    d = json.loads(out)
    with open(p, "rb") as f:
        version = np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        span = f.tell()
    st = os.stat(p)
    assert d["format"] == "npy" and d["version"] == "{}.{}".format(*version)
    assert (d["shape"], d["dtype"], d["order"]) == ([20, 30], "float32", "F")
    assert (d["header_offset"], d["header_bytes"], d["data_offset"]) == (0, span, span)
    assert d["data_bytes"] == 2400 and span + 2400 == st.st_size
    assert (d["apparent"], d["allocated"]) == (st.st_size, st.st_blocks * 512)
    assert d["pages"] == -(-st.st_size // PAGE)


def test_info_holes_and_residency_of_a_sparse_file(capsys, tmp_path):
    p = tmp_path / "s.raw"
    a = mmarray.create(p, 4 << 20, "u1")
    a[1 << 20 : (1 << 20) + PAGE] = 7
    mmarray.region(a).flush()
    del a
    run(capsys, "evict", p)
    rc, out, _ = run(capsys, "info", "--json", p)
    d = json.loads(out)
    assert rc == 0 and d["format"] == "raw" and d["shape"] is None
    data = mmarray.extents(str(p))
    assert d["holes"] == [[0, data[0][0]], [data[-1][1], 4 << 20]]
    assert d["hole_bytes"] == (4 << 20) - sum(e - s for s, e in data)
    assert d["allocated"] == os.stat(p).st_blocks * 512 < d["apparent"] == 4 << 20
    assert d["pages"] == 1024 and d["resident_pages"] == 0
    run(capsys, "prefetch", p)
    _, out, _ = run(capsys, "info", "--json", p)
    assert json.loads(out)["resident_pages"] == 1024


def test_info_raw_with_dtype_and_text_output(capsys, tmp_path):
    p = tmp_path / "r.i2"
    np.arange(100, dtype="i2").tofile(p)
    rc, out, _ = run(capsys, "info", p, "--dtype", "i2", "--shape", "10,9", "--offset", "20")
    assert rc == 0
    assert f"{p}:" in out and "(10, 9)" in out and "int16" in out
    assert "180 bytes at offset 20" in out and "apparent     200 bytes" in out


def test_info_json_is_a_list_for_several_files(capsys, tmp_path):
    paths = [tmp_path / f"{i}.npy" for i in range(3)]
    for i, p in enumerate(paths):
        np.save(p, np.zeros(i))
    rc, out, _ = run(capsys, "info", "--json", *paths)
    found = json.loads(out)
    assert rc == 0 and [d["file"] for d in found] == [str(p) for p in paths]
    assert [d["shape"] for d in found] == [[0], [1], [2]]


def test_info_reports_a_bad_file_and_goes_on(capsys, tmp_path):
    good = tmp_path / "g.npy"
    np.save(good, np.zeros(2))
    missing = tmp_path / "missing.npy"
    rc, out, err = run(capsys, "info", missing, good)
    assert rc == 1 and f"{good}:" in out
    assert "No such file or directory" in one_error_line(err, missing)


def test_info_of_an_empty_file(capsys, tmp_path):
    p = tmp_path / "empty.raw"
    p.write_bytes(b"")
    rc, out, _ = run(capsys, "info", "--json", p)
    d = json.loads(out)
    assert rc == 0 and (d["apparent"], d["holes"], d["pages"]) == (0, [], 0)


# --- median, quantile ----------------------------------------------------------------


@pytest.fixture
def table(tmp_path):
    """A (300, 7) .npy file of random int16 values, and its contents."""
    want = np.random.default_rng(1).integers(-1000, 1000, size=(300, 7), dtype=np.int16)
    p = tmp_path / "t.npy"
    np.save(p, want)
    return p, want


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_median_equals_numpy(capsys, table, axis):
    p, want = table
    extra = [] if axis is None else ["--axis", str(axis)]
    rc, out, err = run(capsys, "median", p, *extra, "--workers", "2")
    assert (rc, err) == (0, "")
    assert out == repr(np.median(want, axis=axis)) + "\n"


def test_median_of_a_raw_file_equals_numpy(capsys, tmp_path):
    want = np.random.default_rng(2).standard_normal((50, 40))
    p = tmp_path / "d.f8"
    p.write_bytes(b"\0" * 16 + want.tobytes(order="F"))
    argv = ["--dtype", "f8", "--shape", "50,40", "--offset", "16", "--order", "F", "--json"]
    rc, out, _ = run(capsys, "median", p, *argv, "--axis", "0", "1")
    d = json.loads(out)
    assert rc == 0 and d["value"] == float(np.median(want)) and d["dtype"] == "float64"


def test_quantile_equals_numpy_and_json_parses(capsys, table):
    p, want = table
    rc, out, _ = run(capsys, "quantile", p, "--q", "0.1", "0.5", "0.9", "--axis", "0")
    assert rc == 0 and out == repr(np.quantile(want, [0.1, 0.5, 0.9], axis=0)) + "\n"
    rc, out, _ = run(capsys, "quantile", p, "--q", "0.3", "--method", "lower", "--json")
    d = json.loads(out)
    expect = np.quantile(want, 0.3, method="lower")
    assert d["value"] == int(expect) and d["dtype"] == str(expect.dtype)
    assert (d["q"], d["method"], d["shape"]) == (0.3, "lower", [])


def test_lists_with_commas(capsys, table):
    p, want = table
    _, out, _ = run(capsys, "quantile", "--q", "0.2,0.4", "--axis=0,1", p)
    assert out == repr(np.quantile(want, [0.2, 0.4], axis=(0, 1))) + "\n"
    rc, _, err = run(capsys, "quantile", "--q", "0.2", p)  # FILE taken as a q
    assert rc == 2 and "FILE goes before the options" in err
    _, out, _ = run(capsys, "quantile", p, "--q", "0.2,0.4", "0.6", "--json")
    assert json.loads(out)["q"] == [0.2, 0.4, 0.6]


def test_nan_median_and_quantile(capsys, tmp_path):
    want = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, np.nan]])
    p = tmp_path / "n.npy"
    np.save(p, want)
    _, out, _ = run(capsys, "median", p, "--nan", "--axis", "1")
    assert out == repr(np.nanmedian(want, axis=1)) + "\n"
    _, out, _ = run(capsys, "quantile", p, "--nan", "--q", "0.25")
    assert out == repr(np.nanquantile(want, 0.25)) + "\n"
    _, out, _ = run(capsys, "median", p)
    assert out == "np.float64(nan)\n"


def test_progress_bar_only_on_a_terminal(capsys, monkeypatch, table):
    pytest.importorskip("tqdm")
    p, _ = table
    seen: list[object] = []
    real = mmarray.median

    def spy(a, **kw):
        seen.append(kw["progress"])
        return real(a, **kw)

    monkeypatch.setattr(mmarray, "median", spy)
    run(capsys, "median", p)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    run(capsys, "median", p)
    run(capsys, "median", p, "--no-progress")
    assert seen == [False, True, False]


def test_no_progress_bar_without_tqdm(capsys, monkeypatch, table):
    import importlib.util

    p, _ = table
    real_find = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "tqdm" else real_find(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    rc, out, err = run(capsys, "median", p)
    assert (rc, err) == (0, "") and out.startswith("np.float64(")


# --- grow, punch, evict, prefetch ----------------------------------------------------


def test_grow_npy_and_raw(capsys, tmp_path):
    p = tmp_path / "g.npy"
    np.save(p, np.ones((2, 3), "i4"))
    rc, out, _ = run(capsys, "grow", p, "3")
    assert rc == 0 and "to (5, 3)" in out
    np.testing.assert_array_equal(np.load(p), np.vstack([np.ones((2, 3)), np.zeros((3, 3))]))
    r = tmp_path / "g.raw"
    np.arange(4, dtype="u2").tofile(r)
    rc, _, _ = run(capsys, "grow", r, "2", "--dtype", "u2")
    assert rc == 0 and os.stat(r).st_size == 12


def test_punch_hands_back_zero_pages_and_keeps_the_data(capsys, tmp_path):
    p = tmp_path / "z.raw"
    a = mmarray.create(p, 64 * PAGE + 100, "u1", allocate="reserve")
    a[5 * PAGE + 3] = 1
    a[40 * PAGE : 42 * PAGE] = 9
    a[-1] = 2
    want = np.array(a)
    mmarray.region(a).flush()
    del a
    before = os.stat(p).st_blocks * 512
    rc, out, err = run(capsys, "punch", p)
    after = os.stat(p).st_blocks * 512
    assert (rc, err) == (0, "")
    assert f"allocated {before} -> {after} bytes ({before - after} handed back)" in out
    assert after <= 6 * PAGE < before  # 4 data pages, and room for an extent block
    np.testing.assert_array_equal(np.fromfile(p, "u1"), want)
    rc, out, _ = run(capsys, "punch", p)
    assert rc == 0 and f"allocated {after} -> {after} bytes (0 handed back)" in out
    np.testing.assert_array_equal(np.fromfile(p, "u1"), want)


def test_zero_runs_match_a_page_by_page_check():
    from mmarray.cli._files import _zero_runs

    rng = np.random.default_rng(4)
    for size in [0, 1, 15, 16, 17, 64, 100, 160]:
        for _ in range(50):
            seg = (rng.random(size) < 0.03).astype(np.uint8)
            want = [not seg[i : i + 16].any() for i in range(0, size, 16)]
            got = [False] * len(want)
            for s, e in _zero_runs(seg, 16):
                assert s % 16 == 0 and (e % 16 == 0 or e == size) and s < e
                for page in range(s // 16, -(-e // 16)):
                    assert not got[page]
                    got[page] = True
            assert got == want, (seg, _zero_runs(seg, 16))


def test_punch_hands_back_reserved_blocks_never_written(capsys, tmp_path):
    p = tmp_path / "reserved.raw"
    a = mmarray.create(p, 256 * PAGE, "u1", allocate="reserve")
    a[7 * PAGE] = 1
    mmarray.region(a).flush()
    del a
    assert os.stat(p).st_blocks * 512 >= 256 * PAGE
    rc, out, _ = run(capsys, "punch", p)
    assert rc == 0 and os.stat(p).st_blocks * 512 <= 2 * PAGE
    want = np.zeros(256 * PAGE, "u1")
    want[7 * PAGE] = 1
    np.testing.assert_array_equal(np.fromfile(p, "u1"), want)


def test_evict_then_prefetch(capsys, tmp_path):
    p = tmp_path / "c.npy"
    np.save(p, np.arange(1 << 18))
    rc, out, _ = run(capsys, "evict", p)
    assert rc == 0 and out == f"{p}: 0 of 513 pages in the page cache (0.0%)\n"
    rc, out, _ = run(capsys, "prefetch", p)
    assert rc == 0 and out == f"{p}: 513 of 513 pages in the page cache (100.0%)\n"


def test_evict_says_how_many_pages_another_process_keeps(capsys, tmp_path):
    p = tmp_path / "c.npy"
    np.save(p, np.arange(1 << 18))
    run(capsys, "evict", p)
    if mmarray.residency(mmarray.open(p, dtype="u1", offset=0)).resident:
        pytest.skip("this file system keeps evicted pages in memory (tmpfs?)")
    child = mapped_elsewhere(p)
    try:
        rc, out, err = run(capsys, "evict", p)
    finally:
        release(child)
    assert (rc, err) == (0, "")
    assert out == (
        f"{p}: 513 of 513 pages in the page cache (100.0%); 513 could not be evicted: "
        "another process maps them, or they were read again meanwhile\n"
    )
    rc, out, _ = run(capsys, "evict", p)
    assert rc == 0 and out == f"{p}: 0 of 513 pages in the page cache (0.0%)\n"


# --- errors --------------------------------------------------------------------------


def _bad_cases(d: Path) -> list[tuple[list[str], str, str]]:
    """(argv, the file the error names, a piece of its message)."""
    npy, raw, empty = str(d / "ok.npy"), str(d / "ok.i2"), str(d / "empty.npy")
    missing, directory = str(d / "missing.npy"), str(d)
    bad, fifo = str(d / "bad.npy"), str(d / "fifo")
    return [
        (["info", missing], missing, "No such file or directory"),
        (["info", bad], bad, "bad .npy header"),
        (["median", bad], bad, "bad .npy header"),
        (["info", fifo], fifo, "not a regular file"),
        (["median", "/dev/null"], "/dev/null", "not a regular file"),
        (["info", directory], directory, "directory"),
        (["info", npy, "--shape", "3"], npy, "give --dtype"),
        (["info", raw, "--dtype", "f8", "--shape", "99"], raw, "needs 792 bytes"),
        (["info", raw, "--dtype", "f8", "--offset", "4"], raw, "not a multiple"),
        (["info", raw, "--dtype", "i2", "--offset", "999"], raw, "past the end"),
        (["median", missing], missing, "No such file or directory"),
        (["median", raw], raw, "give --dtype"),
        (["median", empty, "--dtype", "i2", "--shape", "1"], empty, "needs 2 bytes"),
        (["median", npy, "--axis", "5"], npy, "axis 5 is out of bounds"),
        (["quantile", npy, "--q", "2"], npy, "range [0, 1]"),
        (["create", npy, "--shape", "2", "--dtype", "f8"], npy, "file exists"),
        (
            ["create", str(d / "no" / "x.npy"), "--shape", "2", "--dtype", "f8"],
            str(d / "no" / "x.npy"),
            "No such file or directory",
        ),  # fmt: skip
        (["create", str(d / "o.npy"), "--shape", "2", "--dtype", "O"], str(d / "o.npy"), "bject"),
        (["grow", missing, "3"], missing, "No such file or directory"),
        (["grow", raw, "3", "--dtype", "i2", "--shape", "2"], raw, "end of"),
        (["punch", missing], missing, "No such file or directory"),
        (["evict", directory], directory, "directory"),
        (["prefetch", missing], missing, "No such file or directory"),
        (["demo", "--dir", str(d / "nowhere")], str(d / "nowhere"), "no such directory"),
    ]


def test_user_errors_print_one_line_and_exit_1(capsys, tmp_path):
    np.save(tmp_path / "ok.npy", np.arange(10.0))
    np.arange(100, dtype="i2").tofile(tmp_path / "ok.i2")
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{garbage       }\n")
    os.mkfifo(tmp_path / "fifo")
    for argv, path, piece in _bad_cases(tmp_path):
        rc, out, err = run(capsys, *argv)
        assert rc == 1, (argv, out, err)
        line = one_error_line(err, path)
        assert piece in line, (argv, line)


@pytest.mark.parametrize(
    "argv",
    [
        ["nope"],
        [],
        ["info"],
        ["median", "x", "--workers", "0"],
        ["create", "x", "--shape", "2,x", "--dtype", "f8"],
        ["create", "x", "--shape", "-1", "--dtype", "f8"],
        ["create", "x", "--shape", "2", "--dtype", "float99"],
        ["create", "x", "--shape", "2", "--dtype", "f8", "--fill", "abc"],
        ["create", "x", "--shape", "2", "--dtype", "f8", "--allocate", "now"],
        ["grow", "x", "-2"],
        ["quantile", "x"],
        ["quantile", "x", "--q", "0.5", "--method", "best"],
        ["quantile", "x", "--q", "half"],
        ["median", "x", "--axis", "0,y"],
    ],
)
def test_usage_errors_exit_2_without_traceback(capsys, argv):
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("mmarray")


# --- real processes ------------------------------------------------------------------


def _commands() -> list[list[str]]:
    found = [[sys.executable, "-m", "mmarray"]]
    script = Path(sys.executable).parent / "mmarray"
    if script.exists():
        found.append([str(script)])
    return found


@pytest.mark.parametrize("cmd", _commands(), ids=lambda c: Path(c[-1]).name)
def test_real_process_median_and_info(cmd, tmp_path):
    p = tmp_path / "p.npy"
    want = np.random.default_rng(3).standard_normal(1001)
    np.save(p, want)
    out = subprocess.run([*cmd, "median", str(p)], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout == repr(np.median(want)) + "\n"
    info = [*cmd, "info", "--json", str(p)]
    out = subprocess.run(info, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout)["apparent"] == os.stat(p).st_size


@pytest.mark.parametrize("cmd", _commands(), ids=lambda c: Path(c[-1]).name)
def test_real_process_error_is_one_line(cmd, tmp_path):
    missing = tmp_path / "missing.npy"
    out = subprocess.run([*cmd, "info", str(missing)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == f"mmarray: {missing}: open: No such file or directory\n"


def test_real_process_output_to_a_closed_pipe(tmp_path):
    p = tmp_path / "big.npy"
    np.save(p, np.arange(4000.0))
    cmd = [sys.executable, "-m", "mmarray", "info", *[str(p)] * 200]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.read(10)
        proc.stdout.close()
        err = proc.stderr.read().decode()
        proc.wait(timeout=60)
    assert "Traceback" not in err and "Broken pipe" not in err


def test_real_process_progress_bar_on_a_terminal_only(tmp_path):
    pytest.importorskip("tqdm")
    import fcntl
    import pty
    import struct
    import termios

    p = tmp_path / "big.i1"
    mmarray.create(p, 1 << 24, "i1", fill=3)  # 16 Mi elements: long enough for a bar
    cmd = [sys.executable, "-m", "mmarray", "median", str(p), "--dtype", "i1"]
    piped = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, "np.float64(3.0)\n", "")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # 0x0 draws nothing
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=slave, timeout=60)
        os.close(slave)
        slave = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert proc.returncode == 0 and proc.stdout == b"np.float64(3.0)\n"
    assert b"mmarray:" in drawn and b"%|" in drawn, drawn


def test_interrupt_exits_130_and_bugs_keep_their_traceback(capsys, monkeypatch, table):
    p, _ = table

    def interrupted(a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(mmarray, "median", interrupted)
    rc, out, err = run(capsys, "median", p)
    assert (rc, out, err) == (130, "", "mmarray: interrupted\n")

    def buggy(a, **kw):
        raise RuntimeError("a bug")

    monkeypatch.setattr(mmarray, "median", buggy)
    with pytest.raises(RuntimeError, match="a bug"):  # not a user error: not hidden
        main(["median", str(p)])
