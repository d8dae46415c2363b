"""The benchmark report prints a "vs floor" column from a run's JSON (no timing here)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _case(name: str, group: str, median: float, **extra: str) -> dict:
    return {
        "name": name,
        "group": group,
        "stats": {"min": median * 0.9, "median": median},
        "extra_info": extra,
    }


def _rows(out: str) -> dict[str, list[str]]:
    """Table rows by case name: the cells after the group's."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 6 and cells[0] != "group" and "---" not in cells[0]:
            rows[cells[1]] = cells[2:]
    return rows


def test_report_prints_floor_column(tmp_path):
    data = {
        "benchmarks": [
            _case("test_median_int16_mmarray", "median-int16", 0.060),
            _case("test_median_int16_numpy", "median-int16", 4.2),
            _case("test_median_int16_floor[mapped]", "median-int16", 0.040, floor="mapping"),
            _case("test_median_int16_floor[pread]", "median-int16", 0.050),
            _case("test_open_raw_mmarray", "open 1 GiB raw", 12e-6),
            _case("test_open_raw_floor_region_open", "open 1 GiB raw", 10e-6),
            _case("test_warm_np_memmap", "no floor here", 0.05),
        ]
    }
    path = tmp_path / "last.json"
    path.write_text(json.dumps(data))
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.report", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.splitlines()[0].rstrip().endswith("| vs mmarray | vs floor |")
    rows = _rows(out)
    # median, vs mmarray, vs floor: the fastest floor of the group is the floor
    assert rows["median_int16_mmarray"][1:] == ["60.0 ms", "1 (reference)", "1.50x"]
    assert rows["median_int16_numpy"][1:] == ["4.20 s", "70.00x", "105.00x"]
    assert rows["median_int16_floor[mapped]"][3] == "1.00x (floor)"
    assert rows["median_int16_floor[pread]"][3] == "1.25x"
    assert rows["open_raw_mmarray"][1:] == ["12.0 us", "1 (reference)", "1.20x"]
    assert rows["open_raw_floor_region_open"][3] == "1.00x (floor)"
    assert rows["warm_np_memmap"][2:] == ["-", ""]  # neither a reference nor a floor
    assert "median_int16_floor[mapped]: floor" in out  # its extra_info, on a row of its own


def test_report_prints_the_npy_over_raw_open_ratio(tmp_path):
    """The cross-group ratio of the .npy open bar: medians and best samples."""
    data = {
        "benchmarks": [
            _case("test_open_raw_mmarray", "open 1 GiB raw", 10e-6),
            _case("test_open_npy_mmarray", "open 1 GiB npy", 12e-6),
            _case("test_open_npy_np_load", "open 1 GiB npy", 30e-6),
        ]
    }
    path = tmp_path / "last.json"
    path.write_text(json.dumps(data))
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.report", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    line = next(s for s in out.splitlines() if s.startswith("- .npy open / raw open"))
    assert "1.20x (medians), 1.20x (best samples); bar: at most 1.3x" in line
