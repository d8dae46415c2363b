"""The hypothesis fuzz of every public function (tests/fuzz/), run in child processes.

A crash (a signal), a hang (the timeout) or a wrong answer in a child fails the test
instead of killing pytest. The children run under resource limits (address space, file
size, no core dumps) as a safety net on top of the fuzz's own caps on touched memory.

Environment: ``MMARRAY_FUZZ_CASES`` (default 10000 cases in all, split over two
processes), ``MMARRAY_FUZZ_SEED`` (default: a new random seed; a failure prints it).
"""

from __future__ import annotations

import os
import pathlib
import re
import resource
import signal
import subprocess
import sys

import pytest

FUZZ = pathlib.Path(__file__).with_name("fuzz")  # a package: python tests/fuzz runs it
CASES = int(os.environ.get("MMARRAY_FUZZ_CASES", "10000"))
SHARDS = 2  # one process per core of the development machine
TIMEOUT = 600  # seconds for each child: a hang fails the test
Job = tuple[list[str], dict[str, str]]


# Under AddressSanitizer (`make asan`: the children inherit its LD_PRELOAD) the address
# space stays unlimited: ASan reserves terabytes of it for its shadow memory at start-up.
ASAN = os.environ.get("MMARRAY_SANITIZER") == "asan"
LIMITS = [
    (resource.RLIMIT_AS, 8 << 30),  # address space: no runaway allocation
    (resource.RLIMIT_FSIZE, 1 << 30),  # no file (nor memfd, nor /dev/shm) above 1 GiB
    (resource.RLIMIT_CORE, 0),
][ASAN:]


def _limits() -> None:
    """preexec_fn of the children: a safety net, whatever the fuzz does."""
    for which, value in LIMITS:
        hard = resource.getrlimit(which)[1]
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, hard))


def run_children(jobs: list[Job], cwd: pathlib.Path) -> list[str]:
    """Run the commands in parallel under _limits and return their outputs; fail, with
    the tail of its output, for any that does not exit with status 0 (a signal, a hang)."""
    procs = [
        subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_limits,
            text=True,
        )  # fmt: skip
        for cmd, env in jobs
    ]
    outputs, failures = [], []
    for (cmd, _), p in zip(jobs, procs, strict=True):
        try:
            out, _ = p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            failures.append(f"{cmd}: no answer within {TIMEOUT} s (a hang)\n{out[-8000:]}")
            continue
        outputs.append(out)
        if p.returncode < 0:
            name = signal.Signals(-p.returncode).name
            failures.append(f"{cmd}: killed by {name} (a crash)\n{out[-8000:]}")
        elif p.returncode != 0:
            failures.append(f"{cmd}: exit status {p.returncode}\n{out[-8000:]}")
    assert not failures, "\n\n".join(failures)
    return outputs


def fuzz(tmp_path: pathlib.Path, cases: int) -> int:
    """Run the fuzz in SHARDS processes; return the number of cases that ran."""
    env = dict(os.environ, FUZZ_CASES=str(cases), TMPDIR=str(tmp_path))
    if os.environ.get("MMARRAY_FUZZ_SEED"):
        env["FUZZ_SEED"] = os.environ["MMARRAY_FUZZ_SEED"]
    jobs = [([sys.executable, str(FUZZ)], dict(env, FUZZ_SHARD=f"{i}/{SHARDS}")) for i in
            range(SHARDS)]  # fmt: skip
    outputs = run_children(jobs, tmp_path)
    return sum(int(n) for out in outputs for n in re.findall(r"^FUZZ-TOTAL (\d+)$", out, re.M))


@pytest.mark.slow
def test_fuzz_every_public_function(tmp_path):
    done = fuzz(tmp_path, CASES)
    assert done >= CASES, f"only {done} of {CASES} cases ran"


def test_fuzz_smoke(tmp_path):
    """A few hundred cases, so that ``make test-fast`` runs every fuzz target too."""
    assert fuzz(tmp_path, 300) >= 300


def test_a_crash_or_a_failure_in_a_child_fails_the_test(tmp_path):
    env = dict(os.environ)
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    # ASan catches the SIGSEGV, reports it and aborts
    with pytest.raises(AssertionError, match="killed by SIGABRT" if ASAN else "killed by SIGSEGV"):
        run_children([(crash, env)], tmp_path)
    fail = [sys.executable, "-c", "raise SystemExit(3)"]
    with pytest.raises(AssertionError, match="exit status 3"):
        run_children([(fail, env)], tmp_path)


def test_children_run_under_resource_limits(tmp_path):
    show = [sys.executable, "-c", "import resource as r; print(*(r.getrlimit(k)[0] for k in "
            "(r.RLIMIT_AS, r.RLIMIT_FSIZE, r.RLIMIT_CORE)))"]  # fmt: skip
    (out,) = run_children([(show, dict(os.environ))], tmp_path)
    as_, fsize, core = (int(x) for x in out.split())
    assert 0 < fsize <= 1 << 30 and core == 0
    if not ASAN:
        assert 0 < as_ <= 8 << 30
