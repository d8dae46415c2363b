"""Print the ratio table from the last ``make bench`` run.

Reads the pytest-benchmark JSON (``.benchmarks/last.json``). In each group the
case whose name contains ``mmarray`` is the reference; every other case is
shown as ``peer time / mmarray time`` (above 1: mmarray is faster).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def table(path: Path) -> str:
    data = json.loads(path.read_text())
    groups: dict[str, list[dict]] = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b.get("group") or b["name"]].append(b)
    lines = ["| group | case | min | median | vs mmarray |", "| --- | --- | --- | --- | --- |"]
    for group in sorted(groups):
        cases = groups[group]
        ref = next((c for c in cases if "mmarray" in c["name"]), None)
        for c in sorted(cases, key=lambda c: c["stats"]["median"]):
            med = c["stats"]["median"]
            ratio = (
                "1 (reference)"
                if c is ref
                else (f"{med / ref['stats']['median']:.2f}x" if ref else "-")
            )
            name = c["name"].split("[")[0].removeprefix("test_")
            if "[" in c["name"]:
                name += "[" + c["name"].split("[", 1)[1]
            lines.append(f"| {group} | {name} | {fmt(c['stats']['min'])} | {fmt(med)} | {ratio} |")
            extra = c.get("extra_info") or {}
            for k, v in extra.items():
                lines.append(f"| {group} | &nbsp;&nbsp;{name}: {k} | {v} | | |")
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
