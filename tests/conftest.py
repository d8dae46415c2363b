"""Shared test fixtures."""

from __future__ import annotations

import os

import hypothesis
import pytest

hypothesis.settings.register_profile(
    "mmarray",
    deadline=None,
    print_blob=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "mmarray"))


@pytest.fixture
def raw_file(tmp_path):
    """A 3-page raw file whose byte i is i % 251."""
    p = tmp_path / "data.raw"
    p.write_bytes(bytes(i % 251 for i in range(3 * 4096 + 100)))
    return p


# Tests that cannot pass under valgrind (`make valgrind` sets MMARRAY_SANITIZER=valgrind),
# each with the reason; they run everywhere else.
VALGRIND_SKIPS = {
    "tests/test_api.py::test_copy_on_write_of_a_file_larger_than_ram": (
        "valgrind's address-space manager refuses a 64 GiB mapping (mmap fails with EINVAL)"
    ),
    "tests/test_share_lock.py::test_threads_exclude_each_other": (
        "valgrind 3.19 runs one thread at a time; a thread blocked in F_OFD_SETLKW was seen "
        "to keep the lock's holder from ever running again (deadlock)"
    ),
    "tests/test_cache.py::test_evict_path_and_region": (
        "valgrind preads the first KiB of every file the program maps (looking for debug "
        "information), which loads pages that the test expects to be evicted"
    ),
    **{
        f"tests/test_median.py::{name}": (
            "128 MiB lanes run some 30x slower under memcheck; the window's C paths (sample, "
            "SSE2 and strided counts, a miss and its second pass) run under valgrind in "
            "test_uint16_even_length_and_offset_start, test_strided_lanes_take_the_scalar_window, "
            "test_a_misleading_sample_costs_a_second_pass and test_progress_on_a_windowed_lane"
        )
        for name in (
            "test_uniform_int16_is_counted_through_the_window",
            "test_ranks_at_the_ends_with_the_extremes_present",
            "test_sorted_data_keeps_the_full_histogram",
            "test_a_wide_window_is_not_taken",
        )
    },
    **{
        f"tests/test_window64.py::{name}": (
            "128 MiB lanes run some 30x slower under memcheck; the 32/64-bit window's C paths "
            "(sample, AVX2 and scalar passes, both misses, a one-key window) run under valgrind "
            "in test_strided_and_reversed_lanes_take_the_scalar_loop, "
            "test_a_misleading_sample_falls_back_to_the_radix_passes, "
            "test_a_window_that_overflows_its_buffer_falls_back and "
            "test_a_window_of_one_key_is_counted_only"
        )
        for name in (
            "test_each_dtype_in_one_pass",
            "test_key_order_of_the_engine",
            "test_nan_propagates",
            "test_sorted_data_skips_the_window",
            "test_too_many_or_too_wide_windows_skip_the_window",
        )
    },
    "docs/pages.md::pages.md": (
        "page-cache and block counts differ under valgrind: it reads the start of every "
        "mapped file (see above), and after punch the file has 9 more blocks allocated"
    ),
}


# Tests that cannot pass under AddressSanitizer (`make asan` sets MMARRAY_SANITIZER=asan).
ASAN_SKIPS = {
    "tests/test_threads.py::test_fork_while_median_threads_run": (
        "gcc 12's libasan has no fork handler for its allocator (compiler-rt added one in "
        "LLVM 18, llvm-project PR 75290): a child forked while another thread holds an "
        "allocator lock can deadlock in malloc; one of 12 children hung in a CI run"
    ),
}


def pytest_collection_modifyitems(config, items):
    which = os.environ.get("MMARRAY_SANITIZER")
    skips = {"valgrind": VALGRIND_SKIPS, "asan": ASAN_SKIPS}.get(which or "")
    if not skips:
        return
    for item in items:
        reason = skips.get(item.nodeid, skips.get(item.nodeid.split("[")[0]))
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"under {which}: {reason}"))
