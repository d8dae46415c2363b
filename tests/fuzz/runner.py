"""The fuzz's driver: the targets and their weights, the environment, the safety limits,
one hypothesis run per target, the summary lines and the exit status."""

from __future__ import annotations

import os
import pathlib
import random
import resource
import shutil
import signal
import tempfile
import time
import traceback
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase

from . import oracle
from .create import t_anonymous, t_create, t_memmap
from .files import t_open_npy, t_open_raw
from .oracle import AS_LIMIT, COUNTS, FSIZE_LIMIT
from .pages import t_grow, t_pages
from .region import t_region
from .share import t_lock, t_map_chunks, t_named, t_share
from .stats import t_median_estimate, t_stats

# name (for FUZZ_ONLY and the summary) -> (target, its share of the cases)
TARGETS: dict[str, tuple[Any, float]] = {
    "open_raw": (t_open_raw, 10),
    "open_npy": (t_open_npy, 10),
    "create": (t_create, 8),
    "anonymous": (t_anonymous, 4),
    "memmap": (t_memmap, 8),
    "region": (t_region, 8),
    "stats": (t_stats, 22),
    "median_estimate": (t_median_estimate, 3),
    "map_chunks": (t_map_chunks, 3),
    "share": (t_share, 6),
    "named": (t_named, 4),
    "lock": (t_lock, 4),
    "pages": (t_pages, 7),
    "grow": (t_grow, 4),
}


def shard_targets(targets: dict[str, tuple[Any, float]], n: int) -> list[list[str]]:
    """Split the targets into n lists of about equal weight (for n parallel processes)."""
    shards: list[list[str]] = [[] for _ in range(n)]
    load = [0.0] * n
    for name, (_, w) in sorted(targets.items(), key=lambda kv: -kv[1][1]):
        i = load.index(min(load))
        shards[i].append(name)
        load[i] += w
    return shards


def _limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if soft == resource.RLIM_INFINITY or soft > value:
        resource.setrlimit(which, (value, hard))


def set_limits() -> None:
    """The safety net: address space, file size, no core dumps; EFBIG instead of death
    by SIGXFSZ (it then arrives as OSError)."""
    if os.environ.get("MMARRAY_SANITIZER") != "asan":  # ASan's shadow needs terabytes
        _limit(resource.RLIMIT_AS, AS_LIMIT)
    _limit(resource.RLIMIT_FSIZE, FSIZE_LIMIT)
    _limit(resource.RLIMIT_CORE, 0)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def chosen_targets() -> tuple[dict[str, tuple[Any, float]], float]:
    """The targets of this process (FUZZ_ONLY, then FUZZ_SHARD), and the weight of every
    target FUZZ_ONLY selects (the cases are shared out over all of them)."""
    only = [s for s in os.environ.get("FUZZ_ONLY", "").split(",") if s]
    targets = {k: v for k, v in TARGETS.items() if not only or k in only}
    weight = sum(w for _, w in targets.values())
    shard, nshards = (int(x) for x in os.environ.get("FUZZ_SHARD", "0/1").split("/"))
    return {k: targets[k] for k in shard_targets(targets, nshards)[shard]}, weight


def run_target(fn: Any, cases: int, seed: int, phases: list[Phase]) -> bool:
    """Run one target for ``cases`` cases from ``seed``; False (and the traceback, with
    the falsifying example, printed) when a case failed."""
    test = hypothesis.seed(seed)(
        hypothesis.settings(
            max_examples=cases,
            database=None,
            deadline=None,
            derandomize=False,
            phases=phases,
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
            print_blob=True,
        )(fn)
    )
    try:
        test()
    except Exception:
        traceback.print_exc()
        return False
    return True


def empty_dir(tmp: pathlib.Path) -> None:
    """Remove what the cases left in the fuzz directory (keep it small)."""
    for p in tmp.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink()


def remove_named_memory() -> None:
    """Unlink the named memory this process left in /dev/shm."""
    for leftover in os.listdir("/dev/shm"):
        if leftover.startswith(oracle.shm_prefix()):
            os.unlink("/dev/shm/" + leftover)


def main() -> int:
    """Run the fuzz as the environment says; 0 when every case passed, else 1."""
    total = int(os.environ.get("FUZZ_CASES", "10000"))
    seed = int(os.environ.get("FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    shrink = os.environ.get("FUZZ_SHRINK") == "1"
    set_limits()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mmarray-fuzz-"))
    os.chmod(tmp, 0o755)
    oracle.set_workdir(tmp)
    targets, weight = chosen_targets()
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    print(f"fuzz: seed {seed}, {total} cases, {tmp}", flush=True)
    failed = []
    try:
        for name, (fn, w) in targets.items():
            t0 = time.perf_counter()
            if not run_target(fn, max(1, round(total * w / weight)), seed, phases):
                failed.append(name)
            dt = time.perf_counter() - t0
            print(f"fuzz: {name:16s} {COUNTS.get(name, 0):6d} cases {dt:6.1f} s", flush=True)
            empty_dir(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_named_memory()
    done = sum(COUNTS.values())
    print(f"FUZZ-TOTAL {done}", flush=True)
    if failed:
        print(f"FUZZ-FAILED {','.join(failed)} (seed {seed})", flush=True)
        return 1
    return 0
