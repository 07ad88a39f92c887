"""A local sandbox server shared by the tests of this directory, and helpers to look for leftovers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aioagents.local import LocalSandbox


@pytest.fixture(scope="session")
def sandbox() -> Iterator[LocalSandbox]:
    """One server on its own loop thread: reachable from blocking SDK calls and from the tests' own loops."""
    with LocalSandbox().in_thread() as sb:
        yield sb


@pytest.fixture(scope="session")
def url(sandbox: LocalSandbox) -> str:
    return sandbox.url


def sandbox_processes(root: Path, uids: set[int]) -> list[str]:
    """Processes of one server's runs: one of its run ``uids``, or a cwd under its ``root``.

    Other servers may run at the same time (other test suites), with uids from the same range.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = f.read()
            uid = int(status.split("\nUid:")[1].split()[0])
            state = status.split("\nState:")[1].split()[0]
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                cwd = ""
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError, ValueError):
            continue
        if state == "Z":
            continue
        if uid in uids or cwd.startswith(str(root)):
            found.append(f"{entry} uid={uid} {cmdline}")
    return found


def server_uids(sb: LocalSandbox) -> set[int]:
    pool = sb.engine.uid_pool
    return set() if pool is None else set(pool.handed_out)


def is_root() -> bool:
    return os.geteuid() == 0
