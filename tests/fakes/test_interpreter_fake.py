"""The interpreter fake reproduces the original CodeGeeX4 sandbox.py on the wire (raw aiohttp as the client)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import yarl

from aioagents.testing._interpreter import FakeInterpreterServer


@pytest.fixture
async def srv() -> AsyncIterator[FakeInterpreterServer]:
    async with FakeInterpreterServer() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _execute(
    http: aiohttp.ClientSession, srv: FakeInterpreterServer, code: str, timeout: Any = 10
) -> tuple[int, Any]:
    async with http.post(srv.url + "/execute", json={"code": code, "timeout_secs": timeout}) as resp:
        assert resp.content_type == "text/html"  # tornado's label on JSON
        return resp.status, await resp.json(content_type=None)


async def test_ping_reports_last_activity_in_utc(srv: FakeInterpreterServer, http: aiohttp.ClientSession) -> None:
    async with http.get(srv.url + "/") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/html; charset=UTF-8"
        body = await resp.json(content_type=None)
    stamp = body["last_activity"]
    assert stamp.endswith("Z")
    assert len(stamp.split(".")[1]) == 7  # six fractional digits and Z


async def test_state_persists_across_requests(srv: FakeInterpreterServer, http: aiohttp.ClientSession) -> None:
    await _execute(http, srv, "zz = 41")
    status, body = await _execute(http, srv, "zz + 1")
    assert status == 200
    assert body["status"] == "ok"
    assert [e["data"] for e in body["events"]] == [{"variants": {"text/plain": "42"}}]


async def test_events_keep_their_order_and_use_the_stream_key(
    srv: FakeInterpreterServer, http: aiohttp.ClientSession
) -> None:
    code = "import sys\nprint('out')\nprint('err', file=sys.stderr)\ndisplay(3)\nsys.stdout.write('more')\n1/0"
    _, body = await _execute(http, srv, code)
    kinds = [(e["type"], e["data"].get("stream")) for e in body["events"]]
    assert kinds == [
        ("stream", "stdout"),
        ("stream", "stderr"),
        ("display_data", None),
        ("stream", "stdout"),
        ("error", None),
    ]
    assert "name" not in body["events"][0]["data"]
    error = body["events"][-1]["data"]
    assert (error["ename"], error["evalue"]) == ("ZeroDivisionError", "division by zero")
    assert any("\x1b[" in frame for frame in error["traceback"])
    assert body["status"] == "ok"  # an exception is an event, not a status


async def test_syntax_error_is_one_error_event(srv: FakeInterpreterServer, http: aiohttp.ClientSession) -> None:
    _, body = await _execute(http, srv, "def f(:")
    assert [e["data"]["ename"] for e in body["events"]] == ["SyntaxError"]


async def test_matplotlib_figure_is_a_png_display(srv: FakeInterpreterServer, http: aiohttp.ClientSession) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"
    _, body = await _execute(http, srv, code, timeout=60)
    (event,) = body["events"]
    variants = event["data"]["variants"]
    assert variants["text/plain"] == "<Figure size 640x480 with 1 Axes>"
    assert base64.b64decode(variants["image/png"]).startswith(b"\x89PNG\r\n\x1a\n")


async def test_rich_reprs_become_variants(srv: FakeInterpreterServer, http: aiohttp.ClientSession) -> None:
    code = (
        "class R:\n"
        "    def _repr_html_(self): return '<b>x</b>'\n"
        "    def _repr_svg_(self): return '<svg/>'\n"
        "    def _repr_json_(self): return {'a': 1}\n"
        "R()"
    )
    _, body = await _execute(http, srv, code)
    variants = body["events"][0]["data"]["variants"]
    assert variants["text/html"] == "<b>x</b>"
    assert variants["image/svg+xml"] == "<svg/>"
    assert variants["application/json"] == {"a": 1}


async def test_timeout_returns_partial_events_and_the_next_call_waits_behind(
    srv: FakeInterpreterServer, http: aiohttp.ClientSession
) -> None:
    _, body = await _execute(http, srv, "import time\nprint('start')\ntime.sleep(2)\nprint('end')", timeout=1)
    assert body["status"] == "timeout"
    assert [e["data"]["text"] for e in body["events"]] == ["start\n"]
    loop = asyncio.get_running_loop()
    started = loop.time()
    _, body = await _execute(http, srv, "print('next')")
    assert body["status"] == "ok"
    assert [e["data"]["text"] for e in body["events"]] == ["next\n"]  # 'end' belonged to the old request
    assert loop.time() - started > 0.5


@pytest.mark.parametrize("timeout", [None, -1, 0, 1.5, "abc"])
async def test_bad_timeout_secs_is_500_with_an_error_string(
    srv: FakeInterpreterServer, http: aiohttp.ClientSession, timeout: Any
) -> None:
    body: dict[str, Any] = {"code": "1"}
    if timeout is not None:
        body["timeout_secs"] = timeout
    async with http.post(srv.url + "/execute", json=body) as resp:
        assert resp.status == 500
        payload = await resp.json(content_type=None)
    assert payload["error"].startswith("1 validation error for ExecuteRequest")


async def test_bad_json_is_500(srv: FakeInterpreterServer, http: aiohttp.ClientSession) -> None:
    async with http.post(srv.url + "/execute", data=b"{bad") as resp:
        assert resp.status == 500
        assert "Invalid JSON" in (await resp.json(content_type=None))["error"]


async def test_dead_kernel_is_never_recovered(srv: FakeInterpreterServer, http: aiohttp.ClientSession) -> None:
    _, body = await _execute(http, srv, "import os\nprint('bye')\nos._exit(1)", timeout=1)
    assert body["status"] == "timeout"
    assert not srv.kernel_alive
    async with http.get(srv.url + "/") as resp:
        assert resp.status == 500
        assert await resp.json(content_type=None) == {"error": "kernel is not alive"}
    assert await _execute(http, srv, "print(1)", timeout=1) == (200, {"status": "timeout", "events": []})
    srv.restart_kernel()
    _, body = await _execute(http, srv, "print(2)")
    assert body["events"][0]["data"]["text"] == "2\n"


async def test_upload_is_201_and_overwrites(srv: FakeInterpreterServer, http: aiohttp.ClientSession) -> None:
    for payload in (b"first", b"second"):
        async with http.post(srv.url + "/files/upload/-/mnt/data/sub/a.txt", data=payload) as resp:
            assert resp.status == 201
            assert await resp.read() == b""
    assert srv.host_path("/mnt/data/sub/a.txt").read_bytes() == b"second"
    code = "with open('sub/a.txt') as f:\n    print(f.read())"  # relative to the container's /mnt/data
    _, body = await _execute(http, srv, code)
    assert body["events"][0]["data"]["text"] == "second\n"


async def test_upload_empty_body_makes_an_empty_file(srv: FakeInterpreterServer, http: aiohttp.ClientSession) -> None:
    async with http.post(srv.url + "/files/upload/-/mnt/data/empty", data=b"") as resp:
        assert resp.status == 201
    assert srv.host_path("/mnt/data/empty").read_bytes() == b""


async def test_upload_with_get_is_404(srv: FakeInterpreterServer, http: aiohttp.ClientSession) -> None:
    async with http.get(srv.url + "/files/upload/-/mnt/data/x") as resp:
        assert resp.status == 404


async def test_download_headers(srv: FakeInterpreterServer, http: aiohttp.ClientSession) -> None:
    srv.host_path("/mnt/data/my file é.txt").write_bytes(b"\x00\xffdata")
    async with http.get(srv.url + "/files/download/-/mnt/data/my file é.txt") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert resp.headers["Content-Disposition"] == "attachment; filename*=UTF-8''my+file+%C3%A9.txt"
        assert resp.headers["Content-Length"] == "6"
        assert await resp.read() == b"\x00\xffdata"


async def test_download_missing_and_directory(srv: FakeInterpreterServer, http: aiohttp.ClientSession) -> None:
    async with http.get(srv.url + "/files/download/-/mnt/data/nope") as resp:
        assert resp.status == 404
        assert await resp.json(content_type=None) == {"error": "file not found"}
    async with http.get(srv.url + "/files/download/-/mnt/data") as resp:
        assert resp.status == 500
        assert resp.content_type == "text/html"


async def test_dotdot_cannot_leave_the_fake_root(srv: FakeInterpreterServer, http: aiohttp.ClientSession) -> None:
    url = yarl.URL(srv.url + "/files/upload/-/mnt/%2e%2e/%2e%2e/%2e%2e/escape.txt", encoded=True)
    async with http.post(url, data=b"x") as resp:
        assert resp.status == 201
    assert srv.host_path("/escape.txt").read_bytes() == b"x"
    assert not (srv.root.parent / "escape.txt").exists()


def test_in_thread_mode_serves_blocking_clients() -> None:
    import urllib.request

    with FakeInterpreterServer().in_thread() as srv:
        req = urllib.request.Request(
            srv.url + "/execute", data=b'{"code": "print(5)", "timeout_secs": 5}', method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert b'"text":"5\\n"' in resp.read()
