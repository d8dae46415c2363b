"""Thread scaling of the exact median: a table for 1, 2, 4, 8 and 16 workers.

``make scaling`` (or ``python -m benchmarks.scaling``) runs ``mmarray.median`` on a
1 GiB int16 array and a 1 GiB float64 array in RAM (``MMARRAY_BENCH_SCALE`` scales
both) with each worker count this process may use (``os.sched_getaffinity``), checks
that every count gives the same answer, and prints the best of ``--repeat`` runs
and the speedup over ``workers=1``, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import mmarray

from .conftest import GiB, scaled

COUNTS = (1, 2, 4, 8, 16)


def data(dtype: str, n: int) -> np.ndarray:
    """n random values of dtype, made in RAM the way the benchmark files are."""
    rng = np.random.default_rng(0)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.standard_normal(n).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=n, dtype=dt, endpoint=True)


def best_of(a: np.ndarray, workers: int, repeat: int) -> tuple[float, object]:
    """The fastest of ``repeat`` calls, and the answer."""
    answer = mmarray.median(a, workers=workers)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        mmarray.median(a, workers=workers)
        best = min(best, time.perf_counter() - t0)
    return best, answer


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    cpus = len(os.sched_getaffinity(0))
    counts = [w for w in COUNTS if w <= cpus]
    columns: dict[str, dict[int, float]] = {}
    for dtype in ("int16", "float64"):
        a = data(dtype, scaled(GiB, np.dtype(dtype).itemsize))
        times, answers = {}, set()
        for w in counts:
            times[w], answer = best_of(a, w, args.repeat)
            answers.add(float(answer))  # type: ignore[arg-type]
        if len(answers) != 1:
            raise SystemExit(f"{dtype}: the answer depends on workers: {answers}")
        columns[f"{dtype} ({a.nbytes / GiB:.2g} GiB)"] = times
        del a
    names = list(columns)
    lines = [
        f"{cpus} CPUs; best of {args.repeat}; speedup = time(workers=1) / time(workers)",
        "",
        "| workers | " + " | ".join(f"{n} | speedup" for n in names) + " |",
        "| --- |" + " --- | --- |" * len(names),
    ]
    for w in counts:
        cells = []
        for n in names:
            t = columns[n]
            cells.append(f"{t[w] * 1e3:.1f} ms | {t[1] / t[w]:.2f}x")
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
