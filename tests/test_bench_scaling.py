"""The scaling table script runs and reports every worker count the machine allows."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_scaling_table_smoke():
    env = dict(os.environ, MMARRAY_BENCH_SCALE="0.002")
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.scaling", "--repeat", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    counts = [int(r.split("|")[1]) for r in rows[1:]]
    cpus = len(os.sched_getaffinity(0))
    assert counts == [w for w in (1, 2, 4, 8, 16) if w <= cpus]
    first = [cell.strip() for cell in rows[1].split("|")[1:-1]]
    assert first[0] == "1" and first[2] == first[4] == "1.00x"  # workers=1: the reference
