"""Several server processes on one port: every worker serves runs, the interpreter stays one kernel, nothing is left."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from aioagents.local import LocalSandbox
from aioagents.sandbox import RunCodeRequest, SandboxClient

pytestmark = pytest.mark.timeout(180)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # utime + stime of the process itself


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"


async def test_every_worker_serves_runs_and_none_outlives_close() -> None:
    sandbox = LocalSandbox(workers=3)
    async with sandbox:
        pids = sandbox.worker_pids
        assert len(pids) == 2
        before = {pid: cpu_ticks(pid) for pid in pids}
        # Fresh connections for every request, many at once: the kernel spreads them over the processes in accept.
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            SandboxClient(sandbox.url, session=session) as c,
        ):
            requests = [RunCodeRequest(code=f"print({i} + 1)", language="python") for i in range(120)]
            results = {r.index: r async for r in c.run_many(requests, concurrency=24)}
        assert all(r.ok for r in results.values())
        assert {i: r.value.run_result.stdout for i, r in results.items()} == {i: f"{i + 1}\n" for i in range(120)}
        assert all(cpu_ticks(pid) > before[pid] for pid in pids), "a worker process served nothing"
    assert not any(alive(pid) for pid in pids)


async def test_interpreter_routes_reach_one_kernel_from_every_worker() -> None:
    async with LocalSandbox(workers=3) as sandbox:
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def execute(code: str) -> dict[str, object]:
                async with session.post(f"{sandbox.url}/execute", json={"code": code, "timeout_secs": 30}) as r:
                    assert r.status == 200
                    return await r.json()  # type: ignore[no-any-return]

            await execute("shared = 41")
            replies = await asyncio.gather(*(execute("print(shared + 1)") for _ in range(12)))
            for reply in replies:
                assert reply["status"] == "ok"
                assert any("42" in str(e) for e in reply["events"]), reply  # type: ignore[attr-defined]
            async with session.post(f"{sandbox.url}/files/upload/-/note.txt", data=b"hello") as r:
                assert r.status == 201
            for _ in range(6):
                async with session.get(f"{sandbox.url}/files/download/-/note.txt") as r:
                    assert r.status == 200
                    assert await r.read() == b"hello"


async def test_a_token_guards_every_worker() -> None:
    async with LocalSandbox(workers=2, token="s3cret-token") as sandbox:
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(8):
                async with session.post(
                    f"{sandbox.url}/run_code", json={"code": "print(1)", "language": "python"}
                ) as r:
                    assert r.status == 401
            for _ in range(8):
                async with session.get(f"{sandbox.url}/", headers={"Authorization": "Bearer s3cret-token"}) as r:
                    assert r.status in (200, 500)


def test_serve_workers_command_stops_cleanly_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aioagents.cli", "serve", "--port", "0", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "serving the local sandbox at http://127.0.0.1:" in line
        children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert children
    assert not any(alive(pid) for pid in children)
