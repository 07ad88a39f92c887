"""The process factory's channel: bad requests, cancelled runs and a factory that dies mid-run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aioagents.local import LocalSandbox
from aioagents.local._validate import RunCodeRequest
from tests.local.conftest import sandbox_processes, server_uids

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def sb() -> AsyncIterator[LocalSandbox]:
    async with LocalSandbox() as server:
        yield server


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


async def gone(pid: int, within: float = 5.0) -> bool:
    def poll() -> bool:
        end = time.monotonic() + within
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.02)
        return not alive(pid)

    return await asyncio.to_thread(poll)


async def test_a_request_the_factory_cannot_read_gets_an_error_and_the_factory_keeps_serving(sb: LocalSandbox) -> None:
    channel = await sb.engine.zygote._ensure()
    reply = await channel.request({"op": "no-such-op"})
    assert "unknown op" in reply["error"]
    reply = await channel.request({"op": "spawn"})  # no argv, no cwd: refused in the child, not in the factory
    assert "pid" in reply
    assert (await reply["exited"])["exit"] == 127
    body = await sb.engine.run_code(RunCodeRequest(code="print(3)", language="python"))
    assert body["run_result"]["stdout"] == "3\n"


async def test_a_run_cancelled_while_it_runs_leaves_no_process(sb: LocalSandbox) -> None:
    started = asyncio.Event()
    pids: list[int] = []
    original = sb.engine.zygote._spawn

    async def spying_spawn(*args: object, **kwargs: object) -> object:
        pid, exited = await original(*args, **kwargs)  # type: ignore[arg-type]
        pids.append(pid)
        started.set()
        return pid, exited

    sb.engine.zygote._spawn = spying_spawn  # type: ignore[method-assign]
    task = asyncio.ensure_future(
        sb.engine.run_code(RunCodeRequest(code="import time\ntime.sleep(60)", language="python", run_timeout=60))
    )
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.sleep(0.1)
    assert alive(pids[0])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await gone(pids[0])
    await sb.engine.drain()
    assert sb.engine.root is not None
    assert sandbox_processes(sb.engine.root, server_uids(sb)) == []


async def test_a_factory_killed_mid_run_fails_that_run_at_once_and_the_next_run_works(sb: LocalSandbox) -> None:
    run = asyncio.ensure_future(
        sb.engine.run_code(RunCodeRequest(code="import time\ntime.sleep(60)", language="python", run_timeout=60))
    )
    await asyncio.sleep(0.5)
    proc = sb.engine.zygote._proc
    assert proc is not None
    started = time.monotonic()
    proc.kill()
    body = await asyncio.wait_for(run, 10)
    assert time.monotonic() - started < 5
    assert body["status"] == "SandboxError"
    assert "process factory" in body["message"]
    body = await sb.engine.run_code(RunCodeRequest(code="print(4)", language="python"))
    assert body["run_result"]["stdout"] == "4\n"
    await sb.engine.drain()
    root = sb.engine.root
    assert root is not None
    assert sandbox_processes(root, server_uids(sb)) == []
    assert root.is_dir()


async def test_an_orphan_of_a_run_is_reparented_to_the_factory_which_reaps_it(sb: LocalSandbox) -> None:
    # The factory is a child subreaper (set before it re-executes itself without ctypes loaded).
    code = (
        "import os, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(0.3)\n"
        "        print(os.getppid(), flush=True)\n"  # its parent has exited by now
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "time.sleep(1)\n"
    )
    body = await sb.engine.run_code(RunCodeRequest(code=code, language="python"))
    proc = sb.engine.zygote._proc
    assert proc is not None
    # With full isolation the run is the init of its own PID namespace: its orphans come to it (pid 1 there).
    assert body["run_result"]["stdout"] == ("1\n" if sb.isolation == "full" else f"{proc.pid}\n")
    maps = await asyncio.to_thread(Path(f"/proc/{proc.pid}/maps").read_text)
    # Full isolation calls unshare/setns/mount per run through ctypes; without it the factory stays ctypes-free.
    assert ("libffi" in maps) == (sb.isolation == "full")
