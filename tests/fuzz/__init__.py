"""Hypothesis fuzz of every public function of mmarray (run by tests/test_fuzz.py).

Run it as a program, in a child process with resource limits (tests/test_fuzz.py does
that), never inside the pytest process: a crash must fail a test, not kill the run::

    python tests/fuzz                   # FUZZ_CASES cases in all (default 10000)
    FUZZ_ONLY=open_raw,stats FUZZ_SEED=1 FUZZ_SHRINK=1 python tests/fuzz
    FUZZ_SHARD=0/2 python tests/fuzz    # the first of two halves of the targets

It prints one line per target and ``FUZZ-TOTAL <cases>``; the exit status is 1 when
a case failed (its traceback and the falsifying example are printed, with the seed).

Every case either succeeds, and then the result is checked against numpy (the
oracle: ``np.median``, ``np.load``, ``np.memmap``, ``np.fromfile``...) or against a
model of what must succeed, or raises one of the exceptions allowed for that
function (``oracle.ALLOWED``). Anything else (another exception type, a wrong result,
a crash, a hang) fails the run.

Safety: arrays whose memory is touched (filled, read in full, prefetched) hold at
most ``oracle.TOUCH_MAX`` bytes; bigger shapes are only mapped (sparse files, memfds),
never read. The runner lowers ``RLIMIT_AS`` and ``RLIMIT_FSIZE`` and ignores
``SIGXFSZ`` as a safety net (``EFBIG`` then arrives as ``OSError``).

The modules, by area:

- ``oracle``: the exceptions allowed per function, ``attempt``, the case counters,
  the scratch directory, the dtype and shape model, the comparisons with numpy;
- ``internals``: every private name of mmarray the fuzz uses;
- ``sources``: argument strategies, paths good and bad, mapped arrays of every kind
  and their views, statistics inputs;
- ``files``: open (raw files, .npy files with corrupt headers, named memory);
- ``create``: create, anonymous, memmap (against np.memmap);
- ``region``: Region;
- ``stats``: median, quantile, percentile and their nan-forms; median_estimate;
- ``share``: share and ArrayRef, named memory, lock, map_chunks;
- ``pages``: advise, prefetch, evict, residency, punch, disk_usage, extents; grow;
- ``runner`` (and ``__main__``): the targets, the environment, the limits, the loop.
"""
