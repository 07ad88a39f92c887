"""A local sandbox server shared by the tests of this directory, and helpers to look for leftovers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aioagents.local import LocalSandbox

UID_BASE = 200_000


@pytest.fixture(scope="session")
def sandbox() -> Iterator[LocalSandbox]:
    """One server on its own loop thread: reachable from blocking SDK calls and from the tests' own loops."""
    with LocalSandbox().in_thread() as sb:
        yield sb


@pytest.fixture(scope="session")
def url(sandbox: LocalSandbox) -> str:
    return sandbox.url


def sandbox_processes(root: Path | None = None) -> list[str]:
    """Processes that belong to sandbox runs: a run uid, or a cwd under ``root``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = f.read()
            uid = int(status.split("\nUid:")[1].split()[0])
            state = status.split("\nState:")[1].split()[0]
            cwd = os.readlink(f"/proc/{entry}/cwd") if root is not None else ""
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError, ValueError):
            continue
        if state == "Z":
            continue
        if UID_BASE <= uid < UID_BASE + 4096 or (root is not None and cwd.startswith(str(root))):
            found.append(f"{entry} uid={uid} {cmdline}")
    return found


def is_root() -> bool:
    return os.geteuid() == 0
