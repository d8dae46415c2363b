"""The walk-through runs, checks itself and cleans up after itself."""

from __future__ import annotations

import subprocess
import sys

from mmarray import _demo


def test_demo_runs_and_cleans_up(tmp_path):
    lines: list[str] = []
    _demo.main(str(tmp_path), lines.append)
    text = "\n".join(lines)
    assert f"writing under {tmp_path}" in text
    assert "apparent size (ls -l): 24.0 GiB" in text
    assert "first rows intact: True" in text
    assert "sum = 190 (expected 190)" in text
    assert "faster than np.memmap" in text
    assert "mmarray.median:" in text and "np.median     :" in text
    assert "pickles to" in text
    assert list(tmp_path.iterdir()) == []


def test_cli_help_and_bad_command():
    cmd = [sys.executable, "-m", "mmarray"]
    out = subprocess.run([*cmd, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "demo" in out.stdout
    bad = subprocess.run([*cmd, "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_demo_dir_missing_is_one_line_without_traceback(tmp_path):
    missing = tmp_path / "missing"
    cmd = [sys.executable, "-m", "mmarray", "demo", "--dir", str(missing)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr == f"mmarray: {missing}: no such directory\n"


def test_demo_dir_that_is_a_file_is_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    cmd = [sys.executable, "-m", "mmarray", "demo", "--dir", str(afile)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stderr == f"mmarray: {afile}: not a directory\n"
