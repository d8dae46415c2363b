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
