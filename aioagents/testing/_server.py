"""The base of every fake server: a real aiohttp.web app on a loopback port, a request log and fault injection.

A fake is a subclass that adds routes in ``setup_routes``. Tests talk to it over a real socket, either from the
test's own event loop (``async with FakeX() as srv``) or, for blocking clients such as the official SDKs, from a
server loop in a background thread (``with FakeX().in_thread() as srv``).

Faults are queued with :meth:`FakeServer.inject` and consumed one per matching request, before the route runs::

    srv.inject(Fault.status(503, retry_after="2"), path="/run_code", times=2)
    srv.inject(Fault.reset(after_body=True))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Literal

import attrs
from aiohttp import web

__all__ = ["FakeServer", "Fault", "RecordedRequest"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@attrs.frozen(kw_only=True)
class RecordedRequest:
    """One request as the fake server read it off the wire."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """A header's value, looked up case-insensitively."""
        lname = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lname:
                return value
        return None


FaultKind = Literal["status", "delay", "reset", "truncate", "raw"]


@attrs.frozen(kw_only=True)
class Fault:
    """One injected misbehaviour. Build it with the class methods."""

    kind: FaultKind
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    seconds: float = 0.0
    after_body: bool = False
    close: bool = False

    @classmethod
    def status_code(
        cls,
        status: int,
        body: Any = None,
        *,
        retry_after: str | None = None,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> Fault:
        """Answer with ``status`` and a JSON body (default ``{"detail": "injected"}``); ``close`` drops the
        connection afterwards, as uvicorn does after an unhandled exception."""
        hdrs = dict(headers or {})
        if retry_after is not None:
            hdrs["Retry-After"] = retry_after
        payload = body if isinstance(body, bytes) else json.dumps(
            {"detail": "injected"} if body is None else body
        ).encode()
        hdrs.setdefault("Content-Type", "application/json")
        return cls(kind="status", status=status, body=payload, headers=hdrs, close=close)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait ``seconds`` before the route runs (the route still answers)."""
        return cls(kind="delay", seconds=seconds)

    @classmethod
    def reset(cls, *, after_body: bool = False) -> Fault:
        """Drop the connection with no answer, before reading the request body or after it."""
        return cls(kind="reset", after_body=after_body)

    @classmethod
    def truncate(cls, body: bytes = b'{"status": "Succ', *, declared: int = 4096) -> Fault:
        """Promise ``declared`` bytes in Content-Length, send ``body``, then close."""
        return cls(kind="truncate", body=body, seconds=float(declared))

    @classmethod
    def raw(cls, body: bytes, *, status: int = 200, content_type: str = "text/html") -> Fault:
        """Answer with arbitrary bytes (non-JSON bodies, HTML error pages)."""
        return cls(kind="raw", status=status, body=body, headers={"Content-Type": content_type})


@attrs.define
class _Pending:
    fault: Fault
    path: str | None
    method: str | None
    times: int


class FakeServer:
    """A real HTTP server on 127.0.0.1 with a request log and a fault queue."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Pending] = []
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self.app = web.Application(middlewares=[self._middleware], client_max_size=1 << 30)
        self.setup_routes(self.app)

    # -- for subclasses -------------------------------------------------------------------------------------
    def setup_routes(self, app: web.Application) -> None:
        """Add the fake's routes."""

    # -- lifecycle ------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>``."""
        if not self._port:
            raise RuntimeError("the fake server is not running")
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self._port = sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[FakeServer]:
        """Run the server on its own loop in a background thread, for blocking clients."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        stop: asyncio.Event | None = None

        async def main() -> None:
            nonlocal stop
            stop = asyncio.Event()
            await self.start()
            ready.set()
            await stop.wait()
            await self.close()

        thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
        thread.start()
        ready.wait(10)
        try:
            yield self
        finally:
            assert stop is not None
            loop.call_soon_threadsafe(stop.set)
            thread.join(10)
            loop.close()

    # -- faults ---------------------------------------------------------------------------------------------
    def inject(self, fault: Fault, *, path: str | None = None, method: str | None = None, times: int = 1) -> None:
        """Queue ``fault`` for the next ``times`` requests that match ``path`` (and ``method``)."""
        with self._lock:
            self._faults.append(_Pending(fault, path, method, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The recorded requests whose path is ``path``."""
        return [r for r in self.requests if r.path == path]

    def _take_fault(self, request: web.Request) -> Fault | None:
        with self._lock:
            for pending in self._faults:
                if pending.path is not None and pending.path != request.path:
                    continue
                if pending.method is not None and pending.method != request.method:
                    continue
                pending.times -= 1
                if pending.times <= 0:
                    self._faults.remove(pending)
                return pending.fault
        return None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        fault = self._take_fault(request)
        if fault is not None and fault.kind == "reset" and not fault.after_body:
            return await _reset(request)
        body = await request.read()
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=body,
            )
        )
        if fault is None:
            return await handler(request)
        if fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
            return await handler(request)
        if fault.kind == "reset":
            return await _reset(request)
        if fault.kind == "truncate":
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            resp.content_length = int(fault.seconds)
            await resp.prepare(request)
            await resp.write(fault.body)
            assert request.transport is not None
            request.transport.close()
            return resp
        resp = web.Response(status=fault.status, body=fault.body, headers=dict(fault.headers))
        if fault.close:
            resp.force_close()
        return resp


async def _reset(request: web.Request) -> web.StreamResponse:
    transport = request.transport
    if transport is not None:
        transport.abort()
    # The peer is gone; this response is never written.
    raise asyncio.CancelledError
