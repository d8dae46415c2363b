"""Print the ratio table from the last ``make bench`` run.

Reads the pytest-benchmark JSON (``.benchmarks/last.json``). In each group the
case whose name contains ``mmarray`` is the reference; every other case is
shown as ``peer time / mmarray time`` (above 1: mmarray is faster). In a group
with floor cases (names containing ``floor``: one read of the same bytes, the
disk's sequential read, the syscalls of an open), "vs floor" is each case's time
divided by the fastest floor's (1.00x: at the floor).

Every time is the median of the case's samples and is per call: a sample of
``iterations`` calls (the open cases, like ``timeit``'s ``number``) is divided by
them by pytest-benchmark itself.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def _median(case: dict) -> float:
    return case["stats"]["median"]


def _name(case: dict) -> str:
    name = case["name"].split("[")[0].removeprefix("test_")
    if "[" in case["name"]:
        name += "[" + case["name"].split("[", 1)[1]
    return name


def _vs_mmarray(case: dict, ref: dict | None) -> str:
    if case is ref:
        return "1 (reference)"
    return f"{_median(case) / _median(ref):.2f}x" if ref else "-"


def _vs_floor(case: dict, floor: dict | None) -> str:
    if floor is None:
        return ""
    if case is floor:
        return "1.00x (floor)"
    return f"{_median(case) / _median(floor):.2f}x"


# Ratios across groups, printed under the table: (what, numerator, denominator, bar),
# each side a (group, case name) pair; a pair missing from the run is left out.
CROSS = [
    (
        ".npy open / raw open (mmarray)",
        ("open 1 GiB npy", "test_open_npy_mmarray"),
        ("open 1 GiB raw", "test_open_raw_mmarray"),
        "bar: at most 1.3x",
    ),
]


def cross_ratios(benchmarks: list[dict]) -> list[str]:
    """The CROSS ratios of a run, one line each (median over median, and min over min)."""
    by = {(b.get("group"), b["name"]): b for b in benchmarks}
    lines = []
    for what, num, den, bar in CROSS:
        a, b = by.get(num), by.get(den)
        if a is not None and b is not None:
            med = _median(a) / _median(b)
            best = a["stats"]["min"] / b["stats"]["min"]
            lines.append(f"- {what}: {med:.2f}x (medians), {best:.2f}x (best samples); {bar}")
    return lines


def table(path: Path) -> str:
    data = json.loads(path.read_text())
    groups: dict[str, list[dict]] = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b.get("group") or b["name"]].append(b)
    lines = [
        "| group | case | min | median | vs mmarray | vs floor |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for group in sorted(groups):
        cases = groups[group]
        ref = next((c for c in cases if "mmarray" in c["name"]), None)
        floors = [c for c in cases if "floor" in c["name"]]
        floor = min(floors, key=_median) if floors else None
        for c in sorted(cases, key=_median):
            name = _name(c)
            lines.append(
                f"| {group} | {name} | {fmt(c['stats']['min'])} | {fmt(_median(c))} "
                f"| {_vs_mmarray(c, ref)} | {_vs_floor(c, floor)} |"
            )
            extra = c.get("extra_info") or {}
            for k, v in extra.items():
                lines.append(f"| {group} | &nbsp;&nbsp;{name}: {k} | {v} | | | |")
    cross = cross_ratios(data["benchmarks"])
    if cross:
        lines += ["", *cross]
    return "\n".join(lines)


def fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


if __name__ == "__main__":
    p = Path(sys.argv[1] if len(sys.argv) > 1 else ".benchmarks/last.json")
    print(table(p))
