"""The CodeGeeX4 interpreter API of the local sandbox: one persistent kernel, events, timeouts, files."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from aioagents.local import LocalSandbox

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def interp() -> Any:
    # A server of its own: these tests kill and restart its kernel.
    with LocalSandbox().in_thread() as sb:
        yield sb


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def execute(http: aiohttp.ClientSession, url: str, code: str, timeout: float = 30) -> dict[str, Any]:
    async with http.post(f"{url}/execute", json={"code": code, "timeout_secs": timeout}) as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def test_state_persists_and_events_come_in_order(interp: LocalSandbox, http: aiohttp.ClientSession) -> None:
    await execute(http, interp.url, "zz = 41")
    body = await execute(
        http, interp.url, "print('a', flush=True)\nimport sys; print('b', file=sys.stderr, flush=True)\nzz + 1"
    )
    assert body["status"] == "ok"
    kinds = [(e["type"], e["data"].get("stream")) for e in body["events"]]
    assert kinds == [("stream", "stdout"), ("stream", "stderr"), ("display_data", None)]
    assert body["events"][2]["data"] == {"variants": {"text/plain": "42"}}
    assert body["events"][0]["timestamp"].endswith("Z")


async def test_an_error_is_an_error_event_with_status_ok(interp: LocalSandbox, http: aiohttp.ClientSession) -> None:
    body = await execute(http, interp.url, "1/0")
    assert body["status"] == "ok"
    [event] = body["events"]
    assert event["type"] == "error"
    assert event["data"]["ename"] == "ZeroDivisionError"
    assert event["data"]["traceback"]


async def test_a_timeout_interrupts_the_kernel_and_keeps_its_state(
    interp: LocalSandbox, http: aiohttp.ClientSession
) -> None:
    await execute(http, interp.url, "kept = 'yes'")
    started = time.monotonic()
    body = await execute(http, interp.url, "import time\nprint('start', flush=True)\ntime.sleep(60)", timeout=1)
    assert body["status"] == "timeout"
    assert [e["data"]["text"] for e in body["events"]] == ["start\n"]
    # The original leaves the cell running and the next call waits behind it; here it is interrupted.
    after = await execute(http, interp.url, "print(kept)", timeout=10)
    assert time.monotonic() - started < 6
    assert after["events"][0]["data"]["text"] == "yes\n"
    assert "kernel_restarted" not in after


async def test_a_dead_kernel_is_restarted_and_reported(interp: LocalSandbox, http: aiohttp.ClientSession) -> None:
    await execute(http, interp.url, "before = 1")
    body = await execute(http, interp.url, "import os; os._exit(3)")
    assert body["kernel_restarted"] is True
    assert body["events"][-1]["data"]["ename"] == "KernelDied"
    async with http.get(f"{interp.url}/") as r:
        assert r.status == 200
    after = await execute(http, interp.url, "print('before' in globals())")
    assert after["events"][0]["data"]["text"] == "False\n"


async def test_ping_reports_last_activity(interp: LocalSandbox, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{interp.url}/") as r:
        assert r.status == 200
        stamp = (await r.json())["last_activity"]
    assert stamp.endswith("Z")
    assert len(stamp.split(".")[1]) == 7  # six fractional digits and the Z


async def test_ndjson_streams_events_then_a_status_line(interp: LocalSandbox, http: aiohttp.ClientSession) -> None:
    code = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.3)"
    arrivals: list[float] = []
    lines: list[dict[str, Any]] = []
    async with http.post(
        f"{interp.url}/execute",
        json={"code": code, "timeout_secs": 10},
        headers={"Accept": "application/x-ndjson"},
    ) as r:
        assert r.headers["Content-Type"].startswith("application/x-ndjson")
        async for raw in r.content:
            lines.append(json.loads(raw))
            arrivals.append(time.monotonic())
    assert [line["data"]["text"] for line in lines[:-1]] == ["0\n", "1\n", "2\n"]
    assert lines[-1] == {"type": "status", "status": "ok"}
    assert arrivals[2] - arrivals[0] > 0.4  # streamed as produced, not buffered to the end


@pytest.mark.parametrize("body", [{"code": 1}, {"timeout_secs": 5}, {"code": "1", "timeout_secs": 0}, "x"])
async def test_bad_execute_bodies_are_400(interp: LocalSandbox, http: aiohttp.ClientSession, body: Any) -> None:
    async with http.post(f"{interp.url}/execute", json=body) as r:
        assert r.status == 400
        assert "error" in await r.json()


async def test_upload_creates_then_conflicts_then_overwrites(interp: LocalSandbox, http: aiohttp.ClientSession) -> None:
    url = f"{interp.url}/files/upload/-/up/a file.txt"
    async with http.post(url, data=b"one") as r:
        assert r.status == 201
    async with http.post(url, data=b"two") as r:
        assert r.status == 409
        assert await r.json() == {"error": "file already exists"}
    async with http.post(url + "?overwrite=true", data=b"three") as r:
        assert r.status == 201
    assert (interp.data_dir / "up" / "a file.txt").read_bytes() == b"three"
    body = await execute(http, interp.url, "print(open('up/a file.txt').read())")
    assert body["events"][0]["data"]["text"] == "three\n"


async def test_download_streams_with_an_attachment_name(interp: LocalSandbox, http: aiohttp.ClientSession) -> None:
    await execute(http, interp.url, "open('résumé 1.bin', 'wb').write(bytes(range(256)) * 1000)")
    async with http.get(f"{interp.url}/files/download/-/résumé 1.bin") as r:
        assert r.status == 200
        assert await r.read() == bytes(range(256)) * 1000
        assert r.headers["Content-Disposition"] == "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9%201.bin"
        assert r.headers["Content-Length"] == "256000"


async def test_absolute_paths_inside_the_data_dir_are_accepted(
    interp: LocalSandbox, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{interp.url}/files/upload/-{interp.data_dir}/abs.txt", data=b"abs") as r:
        assert r.status == 201
    async with http.get(f"{interp.url}/files/download/-/mnt/data/abs.txt") as r:
        assert r.status == 200
        assert await r.read() == b"abs"


async def test_download_of_a_missing_file_is_404(interp: LocalSandbox, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{interp.url}/files/download/-/nope.txt") as r:
        assert r.status == 404
        assert await r.json() == {"error": "file not found"}


@pytest.mark.parametrize("path", ["etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "a/%2E%2E/%2E%2E/x", "..%2f..%2fetc"])
async def test_paths_outside_the_data_dir_are_refused(
    interp: LocalSandbox, http: aiohttp.ClientSession, path: str
) -> None:
    async with http.get(f"{interp.url}/files/download/-/{path}") as r:
        assert r.status in (400, 404)
        assert "error" in await r.json()
    async with http.post(f"{interp.url}/files/upload/-/{path}", data=b"x") as r:
        assert r.status in (201, 400, 404)
    # Whatever was accepted landed inside the data directory.
    assert not (interp.data_dir.parent / "etc").exists()


async def test_a_symlink_planted_by_the_kernel_is_not_followed(
    interp: LocalSandbox, http: aiohttp.ClientSession
) -> None:
    await execute(http, interp.url, "import os\nos.symlink('/etc/passwd', 'pw')\nos.symlink('/etc', 'etcdir')")
    async with http.get(f"{interp.url}/files/download/-/pw") as r:
        assert r.status == 404
    async with http.get(f"{interp.url}/files/download/-/etcdir/passwd") as r:
        assert r.status == 404
    async with http.post(f"{interp.url}/files/upload/-/etcdir/aioagents-probe", data=b"x") as r:
        assert r.status == 409
    assert not await asyncio.to_thread(os.path.exists, "/etc/aioagents-probe")


async def test_concurrent_executes_are_serialised_and_each_gets_its_own_events(
    interp: LocalSandbox, http: aiohttp.ClientSession
) -> None:
    codes = [f"import time\ntime.sleep(0.2)\nprint({i})" for i in range(3)]
    bodies = await asyncio.gather(*(execute(http, interp.url, c) for c in codes))
    assert [b["events"][0]["data"]["text"] for b in bodies] == ["0\n", "1\n", "2\n"]


async def test_a_kernel_killed_between_requests_is_replaced_and_reported(
    interp: LocalSandbox, http: aiohttp.ClientSession
) -> None:
    await execute(http, interp.url, "lost = 1")
    kernel = interp.interpreter._kernel
    assert kernel is not None
    os.kill(kernel.pid, 9)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        async with http.get(f"{interp.url}/") as r:
            if r.status == 200 and interp.interpreter._kernel is not kernel:
                break
            if r.status == 500:
                assert await r.json() == {"error": "kernel is not alive"}
        await asyncio.sleep(0.1)
    body = await execute(http, interp.url, "print('lost' in globals())")
    assert body["kernel_restarted"] is True
    assert body["events"][0]["data"]["text"] == "False\n"
    again = await execute(http, interp.url, "1")
    assert "kernel_restarted" not in again


async def test_a_streaming_client_that_hangs_up_interrupts_its_cell(interp: LocalSandbox) -> None:
    code = "import time\nfor i in range(300):\n    print(i, flush=True)\n    time.sleep(0.1)"
    async with aiohttp.ClientSession() as s:
        resp = await s.post(
            f"{interp.url}/execute", json={"code": code, "timeout_secs": 60}, headers={"Accept": _NDJSON}
        )
        first = await resp.content.readline()
        assert json.loads(first)["data"]["text"] == "0\n"
        resp.close()  # hang up mid-stream
    started = time.monotonic()
    async with aiohttp.ClientSession() as s:
        body = await execute(s, interp.url, "print('next')", timeout=20)
    assert body["events"][-1]["data"]["text"] == "next\n"
    assert time.monotonic() - started < 8  # not stuck behind the 30 s cell


_NDJSON = "application/x-ndjson"
