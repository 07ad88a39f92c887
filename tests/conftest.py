"""Suite-wide settings: strict decoding (drift between a fake and our models fails loudly), and helpers."""

from __future__ import annotations

import os

os.environ.setdefault("AIOAGENTS_STRICT_DECODING", "1")

from collections.abc import Iterator

import pytest

from aioagents import _retry


@pytest.fixture
def instant_retries() -> Iterator[None]:
    """Retry and poll waits take no time (decisions unchanged)."""
    _retry.set_testing(True)
    try:
        yield
    finally:
        _retry.set_testing(False)
