"""Fixtures for the core tests: a small fake server with the routes the transport and stream tests need.

Every test talks to it over a real loopback socket. The routes are deliberately dumb (fixed bytes, scripted chunks,
sleeps) so each test says in one place what the server does.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from aioagents._transport import Transport
from aioagents.testing import FakeServer

CANARY = "sk-canary-7f3b9c1d2e4a"


class CoreServer(FakeServer):
    """Routes for transport and stream tests. ``script`` is the body ``/sse`` streams: (delay before, chunk) pairs."""

    def __init__(self) -> None:
        self.script: list[tuple[float, bytes]] = []
        self.cut_after_script = False
        self.sent_bytes = 0
        self.finished_at: float | None = None
        # Connections that answered /crash: like uvicorn after an unhandled error, the server drops them without
        # "Connection: close", so the client only finds out when it sends the next request on one.
        self.poisoned: set[object] = set()
        super().__init__()

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/ok", self._ok)
        app.router.add_route("*", "/crash", self._crash)
        app.router.add_get("/headers", self._headers)
        app.router.add_get("/bytes/{n}", self._bytes)
        app.router.add_get("/chunked/{n}", self._chunked)
        app.router.add_get("/gzip/{n}", self._gzip)
        app.router.add_route("*", "/redirect", self._redirect)
        app.router.add_route("*", "/loop", self._loop)
        app.router.add_route("*", "/slow", self._slow)
        app.router.add_route("*", "/sse", self._sse)
        app.router.add_route("*", "/huge-event", self._huge_event)

    async def _ok(self, request: web.Request) -> web.Response:
        if request.transport in self.poisoned:
            request.transport.abort()  # type: ignore[union-attr]
            raise asyncio.CancelledError  # the peer is gone: nothing is written
        return web.json_response({"ok": True, "method": request.method})

    async def _crash(self, request: web.Request) -> web.Response:
        self.poisoned.add(request.transport)
        return web.json_response({"detail": "Internal Server Error"}, status=500)

    async def _headers(self, request: web.Request) -> web.Response:
        return web.json_response(dict(request.headers))

    async def _bytes(self, request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.match_info["n"]), content_type="application/octet-stream")

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        piece = b"y" * 65536
        while n > 0:
            await resp.write(piece[:n])
            n -= len(piece)
        await resp.write_eof()
        return resp

    async def _gzip(self, request: web.Request) -> web.Response:
        # Zeros compress ~1000:1, so a small wire body decompresses past the cap.
        body = gzip.compress(b"\0" * int(request.match_info["n"]))
        return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query.get("to", "/ok"))

    async def _loop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "30")))
        return web.json_response({"ok": True})

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for delay, chunk in self.script:
            if delay:
                await asyncio.sleep(delay)
            await resp.write(chunk)
        if self.cut_after_script:
            assert request.transport is not None
            request.transport.abort()
            return resp
        await resp.write_eof()
        return resp

    async def _huge_event(self, request: web.Request) -> web.StreamResponse:
        """One 8 MiB event sent in 64 KiB pieces, 5 ms apart (about 0.6 s in all); records what went out."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        piece = b"x" * 65536
        try:
            await resp.write(b"data: ")
            for _ in range(128):
                await asyncio.sleep(0.005)
                await resp.write(piece)
                self.sent_bytes += len(piece)
            await resp.write(b"\n\n")
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client hung up, as it should
        finally:
            self.finished_at = time.monotonic()
        return resp


@pytest.fixture
async def srv() -> AsyncIterator[CoreServer]:
    """A core fake server on the test's own loop."""
    server = CoreServer()
    async with server:
        yield server


@pytest.fixture
def thread_srv() -> Iterator[CoreServer]:
    """A core fake server on its own loop in a background thread: the test loop then holds only client tasks."""
    server = CoreServer()
    with server.in_thread():
        yield server


@pytest.fixture
async def transport(srv: CoreServer) -> AsyncIterator[Transport]:
    """A Transport on ``srv`` that retries at most 3 times; closed after the test."""
    t = Transport(srv.url, secret_headers={"X-API-Key": CANARY})
    yield t
    await t.aclose()


def free_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def acquired_connections(t: Transport) -> int:
    """Connections the Transport's pool has handed out and not got back (aiohttp keeps no public count)."""
    session = t._session()
    connector = session.connector
    assert isinstance(connector, aiohttp.TCPConnector)
    return len(connector._acquired)


def pooled_connections(t: Transport) -> int:
    """Idle keep-alive connections in the Transport's pool."""
    session = t._session()
    connector = session.connector
    assert connector is not None
    return sum(len(v) for v in connector._conns.values())


def server_connections(srv: FakeServer) -> int:
    """Open connections as the server sees them (FakeServer keeps its runner private; aiohttp counts them)."""
    runner = srv._runner
    assert runner is not None
    assert runner.server is not None
    return len(runner.server.connections)
