"""The generated blocking SandboxClient: from plain code, from 16 threads sharing one client, and inside a running
event loop (as in Jupyter)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest

from aioagents.sandbox import RunCodeRequest, RunStatus
from aioagents.sync import SandboxClient
from aioagents.testing._sandbox_fusion import FakeSandboxFusionServer


@pytest.fixture
def srv() -> Iterator[FakeSandboxFusionServer]:
    with FakeSandboxFusionServer().in_thread() as server:
        yield server  # type: ignore[misc]


def test_blocking_calls(srv: FakeSandboxFusionServer) -> None:
    with SandboxClient(srv.url) as client:
        assert client.ping()
        assert client.run_code("print(9)").stdout == "9\n"
        assert client.run_jupyter(["print(1)"]).cells[0].stdout == "1\n"


def test_sixteen_threads_share_one_client(srv: FakeSandboxFusionServer) -> None:
    errors: list[BaseException] = []
    outputs: dict[int, str] = {}
    with SandboxClient(srv.url) as client:

        def work(t: int) -> None:
            try:
                for i in range(10):
                    outputs[t * 100 + i] = client.run_code(f"print({t * 100 + i})").stdout
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert outputs == {k: f"{k}\n" for k in outputs}
    assert len(outputs) == 160


async def test_inside_a_running_loop(srv: FakeSandboxFusionServer) -> None:
    with SandboxClient(srv.url) as client:
        assert client.run_code("print(4)").stdout == "4\n"


def test_run_many_as_a_blocking_iterator(srv: FakeSandboxFusionServer) -> None:
    requests = [RunCodeRequest(code=f"print({i})", language="python") for i in range(20)]
    with SandboxClient(srv.url) as client, client.run_many(requests, concurrency=4) as results:
        got = {item.index: item.unwrap().stdout for item in results}
    assert got == {i: f"{i}\n" for i in range(20)}


def test_from_a_plain_script(srv: FakeSandboxFusionServer) -> None:
    script = textwrap.dedent(
        f"""
        import warnings
        warnings.simplefilter("error")
        from aioagents.sync import SandboxClient
        client = SandboxClient({srv.url!r})
        print(client.run_code("print(11)").status.value, end="")
        client.close()
        """
    )
    out = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == RunStatus.Success.value
    assert out.stderr == ""
