"""Fixtures of these tests; the servers and helpers are in tests/harness/airq_platform.py."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "harness"))

from airq_platform import Platform  # noqa: E402


@pytest.fixture
def platform():
    p = Platform()
    yield p
    p.close()
