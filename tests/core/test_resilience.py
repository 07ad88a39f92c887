"""Issue 12 / 15 transport points, each over a real loopback server: stale keep-alive connections, the retry budget,
cut streams, proxies from the environment, TraceConfigs and structured log records."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from aioagents import (
    AioAgentsError,
    APIConnectionError,
    IncompleteStreamError,
    OutcomeUnknownError,
    ServiceUnavailableError,
    StreamOutcomeUnknownError,
    setup_logging,
)
from aioagents._retry import RetryBudget, RetryPolicy
from aioagents._streaming import ServerSentEvent, SSEDecoder
from aioagents._transport import Transport
from aioagents.testing import Fault

from .conftest import CANARY, CoreServer


class _App:
    """A bare aiohttp.web app on a loopback port, with its own keep-alive timeout."""

    def __init__(self, app: web.Application, *, keepalive_timeout: float = 75.0) -> None:
        self.app = app
        self.keepalive_timeout = keepalive_timeout
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> _App:
        self.runner = web.AppRunner(self.app, keepalive_timeout=self.keepalive_timeout)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


# -- stale keep-alive connections ---------------------------------------------------------------------------------
async def test_a_post_racing_the_servers_idle_close_is_sent_again_and_runs_once() -> None:
    seen: dict[int, int] = {}

    async def run(request: web.Request) -> web.Response:
        n = (await request.json())["n"]
        seen[n] = seen.get(n, 0) + 1
        return web.json_response({"n": n})

    app = web.Application()
    app.router.add_post("/run", run)
    # The server drops idle connections after 0.2 s; the client keeps them longer (its default is 4 s), so spaced
    # calls keep landing on a connection the server is closing at that very moment.
    async with _App(app, keepalive_timeout=0.2) as server:
        t = Transport(server.url, retry=RetryPolicy(max_attempts=1))
        rng = random.Random(12)
        try:
            for n in range(120):
                resp = await t.request("POST", "/run", idempotent=False, json={"n": n})
                assert resp.json() == {"n": n}
                await asyncio.sleep(0.2 + rng.uniform(-0.01, 0.01))
        finally:
            await t.aclose()
    assert seen == dict.fromkeys(range(120), 1)


async def test_a_post_dropped_on_a_fresh_connection_is_not_sent_again(srv: CoreServer) -> None:
    # A new connection that dies before the answer proves nothing: the server may have run the request.
    srv.inject(Fault.reset(), path="/ok")
    t = Transport(srv.url)
    try:
        with pytest.raises(OutcomeUnknownError):
            await t.request("POST", "/ok", idempotent=False, json={})
    finally:
        await t.aclose()
    # Had it been sent again, the second try would have succeeded (the fault is spent): it raised, so it was not.


# -- the retry budget -------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("instant_retries")
async def test_an_outage_spends_the_retry_budget_and_recovery_is_immediate() -> None:
    hits = 0
    healthy = False

    async def flaky(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        if healthy:
            return web.json_response({"ok": True})
        return web.json_response({"detail": "down"}, status=503)

    app = web.Application()
    app.router.add_get("/x", flaky)
    async with _App(app) as server:
        t = Transport(server.url, retry=RetryPolicy(max_attempts=3))
        try:
            offered = 300
            for _ in range(offered):
                with pytest.raises(ServiceUnavailableError):
                    await t.request("GET", "/x", idempotent=True)
            # Without a budget every call would have been tried 3 times (900 hits).
            assert hits <= 1.2 * offered
            assert t.retry_budget is not None
            assert t.retry_budget.tokens < t.retry_budget.retry_cost
            healthy = True
            before = hits
            resp = await t.request("GET", "/x", idempotent=True)
            assert resp.status == 200
            assert hits == before + 1  # the first call after the heal goes through at once
        finally:
            await t.aclose()


@pytest.mark.usefixtures("instant_retries")
async def test_without_a_budget_an_outage_is_amplified_by_every_retry() -> None:
    # The same outage with the budget off: the figure the budget exists to cut (and proof the test above can fail).
    hits = 0

    async def down(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.json_response({"detail": "down"}, status=503)

    app = web.Application()
    app.router.add_get("/x", down)
    async with _App(app) as server:
        t = Transport(server.url, retry=RetryPolicy(max_attempts=3), retry_budget=None)
        try:
            for _ in range(50):
                with pytest.raises(ServiceUnavailableError):
                    await t.request("GET", "/x", idempotent=True)
        finally:
            await t.aclose()
    assert hits == 150


def test_the_retry_budget_is_refilled_by_successes() -> None:
    budget = RetryBudget(10, retry_cost=5, success_refund=1)
    err = ServiceUnavailableError("down", status=503)
    assert budget.withdraw(err)
    assert budget.withdraw(err)
    assert not budget.withdraw(err)
    for _ in range(5):
        budget.record_success()
    assert budget.withdraw(err)
    budget.record_success(retried=True)
    assert budget.tokens == 5


# -- cut streams --------------------------------------------------------------------------------------------------
def _sse_stream(t: Transport, *, idempotent: bool) -> object:
    return t.stream(
        "POST",
        "/sse",
        decoder=SSEDecoder(),
        parse=lambda e: e if isinstance(e, ServerSentEvent) else None,
        idempotent=idempotent,
        terminal=lambda e: e.event == "done",
        require_terminal=True,
        what="test stream",
    )


@pytest.mark.parametrize("idempotent", [True, False])
async def test_a_cut_stream_says_how_many_events_arrived_and_the_last_event_id(
    srv: CoreServer, transport: Transport, idempotent: bool
) -> None:
    srv.script = [(0, b"id: e1\ndata: one\n\n"), (0, b"id: e2\ndata: two\n\n"), (0, b"data: thr")]
    srv.cut_after_script = True
    received: list[str] = []

    async def read() -> None:
        async with _sse_stream(transport, idempotent=idempotent) as events:  # type: ignore[attr-defined]
            async for event in events:
                received.append(event.data)

    with pytest.raises(IncompleteStreamError) as info:
        await read()
    assert received == ["one", "two"]
    assert info.value.events == 2
    assert info.value.last_event_id == "e2"
    # One rule: the stream of a non-idempotent call that is cut leaves its outcome unknown.
    assert isinstance(info.value, OutcomeUnknownError) is (not idempotent)
    assert isinstance(info.value, StreamOutcomeUnknownError) is (not idempotent)


async def test_a_stream_that_ends_cleanly_before_its_final_event_is_incomplete(
    srv: CoreServer, transport: Transport
) -> None:
    srv.script = [(0, b"data: one\n\n")]
    with pytest.raises(StreamOutcomeUnknownError) as info:
        await _sse_stream(transport, idempotent=False).collect()  # type: ignore[attr-defined]
    assert info.value.events == 1
    assert info.value.last_event_id is None


# -- proxies from the environment --------------------------------------------------------------------------------
class _Proxy:
    """A tiny forwarding HTTP proxy: takes absolute-form requests and replays them to their target."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.auth: list[str | None] = []
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self.server = _App(app)
        self.session: aiohttp.ClientSession | None = None

    async def _forward(self, request: web.Request) -> web.Response:
        self.seen.append(str(request.url))
        self.auth.append(request.headers.get("Proxy-Authorization"))
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "proxy-authorization")}
        async with self.session.request(
            request.method, request.url, headers=headers, data=await request.read()
        ) as upstream:
            body = await upstream.read()
            return web.Response(status=upstream.status, body=body, content_type=upstream.content_type)

    async def __aenter__(self) -> _Proxy:
        self.session = aiohttp.ClientSession()
        await self.server.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.__aexit__()
        assert self.session is not None
        await self.session.close()


@pytest.fixture
async def proxy(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[_Proxy]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    async with _Proxy() as p:
        monkeypatch.setenv("HTTP_PROXY", p.server.url)
        yield p


async def test_http_proxy_from_the_environment_is_used_by_default(srv: CoreServer, proxy: _Proxy) -> None:
    t = Transport(srv.url)
    try:
        resp = await t.request("GET", "/ok", idempotent=True)
    finally:
        await t.aclose()
    assert resp.json()["ok"] is True
    assert proxy.seen == [f"{srv.url}/ok"]


async def test_no_proxy_sends_a_host_direct(srv: CoreServer, proxy: _Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "example.org, 127.0.0.1")
    t = Transport(srv.url)
    try:
        await t.request("GET", "/ok", idempotent=True)
    finally:
        await t.aclose()
    assert proxy.seen == []
    assert len(srv.requests_to("/ok")) == 1


async def test_trust_env_false_ignores_the_proxy(srv: CoreServer, proxy: _Proxy) -> None:
    t = Transport(srv.url, trust_env=False)
    try:
        await t.request("GET", "/ok", idempotent=True)
    finally:
        await t.aclose()
    assert proxy.seen == []


async def test_proxy_credentials_never_reach_a_log_record(
    srv: CoreServer, proxy: _Proxy, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.server.url.replace("http://", f"http://user:{CANARY}@"))
    t = Transport(srv.url)
    try:
        with caplog.at_level(logging.DEBUG, logger="aioagents"):
            await t.request("GET", "/ok", idempotent=True)
    finally:
        await t.aclose()
    assert proxy.seen == [f"{srv.url}/ok"]
    assert proxy.auth == [aiohttp.encode_basic_auth("user", CANARY)]  # the credentials go to the proxy only
    assert srv.requests_to("/ok")[0].header("Proxy-Authorization") is None
    assert caplog.records
    assert all(CANARY not in _everything(r) for r in caplog.records)
    assert CANARY not in repr(t)


# -- observability ------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("instant_retries")
async def test_a_trace_config_sees_every_attempt_of_a_retried_call(srv: CoreServer) -> None:
    starts: list[str] = []
    ends: list[int] = []

    async def on_start(session: object, ctx: object, params: aiohttp.TraceRequestStartParams) -> None:
        starts.append(params.url.path)

    async def on_end(session: object, ctx: object, params: aiohttp.TraceRequestEndParams) -> None:
        ends.append(params.response.status)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_end)
    srv.inject(Fault.status_code(503), path="/ok", times=2)
    t = Transport(srv.url, trace_configs=[trace])
    try:
        await t.request("GET", "/ok", idempotent=True)
    finally:
        await t.aclose()
    assert starts == ["/ok", "/ok", "/ok"]
    assert ends == [503, 503, 200]


def _everything(record: logging.LogRecord) -> str:
    return record.getMessage() + " " + " ".join(repr(v) for v in vars(record).values())


@pytest.mark.usefixtures("instant_retries")
async def test_log_records_carry_the_structured_fields_and_no_secret(
    srv: CoreServer, caplog: pytest.LogCaptureFixture
) -> None:
    srv.inject(Fault.status_code(503, headers={"x-request-id": "req-1"}), path="/ok")
    t = Transport(srv.url, secret_headers={"Authorization": f"Bearer {CANARY}"})
    try:
        with caplog.at_level(logging.DEBUG, logger="aioagents"):
            await t.request("GET", f"/ok?api_key={CANARY}", idempotent=True)
    finally:
        await t.aclose()
    records = [r for r in caplog.records if r.name == "aioagents"]
    attempts = [r for r in records if getattr(r, "status", None) is not None and r.levelno == logging.DEBUG]
    assert [(r.attempt, r.status) for r in attempts] == [(1, 503), (2, 200)]  # type: ignore[attr-defined]
    assert attempts[0].request_id == "req-1"  # type: ignore[attr-defined]
    assert all(isinstance(r.elapsed, float) and r.elapsed >= 0 for r in attempts)  # type: ignore[attr-defined]
    retries = [r for r in records if r.levelno == logging.INFO]
    assert len(retries) == 1
    assert (retries[0].attempt, retries[0].status, retries[0].request_id) == (1, 503, "req-1")  # type: ignore[attr-defined]
    for record in records:
        assert CANARY not in _everything(record)
        assert record.url == f"{srv.url}/ok"  # type: ignore[attr-defined]


def test_setup_logging_installs_one_handler_and_refuses_unknown_levels() -> None:
    logger = logging.getLogger("aioagents")
    before = list(logger.handlers), logger.level
    try:
        setup_logging("debug")
        setup_logging("info")
        mine = [h for h in logger.handlers if h.get_name() == "aioagents-setup-logging"]
        assert len(mine) == 1
        assert logger.level == logging.INFO
        with pytest.raises(ValueError, match="unknown log level"):
            setup_logging("loud")
    finally:
        for handler in [h for h in logger.handlers if h not in before[0]]:
            logger.removeHandler(handler)
        logger.setLevel(before[1])


def test_aioagents_log_in_the_environment_turns_on_logging() -> None:
    code = "import logging, aioagents; print(logging.getLogger('aioagents').level)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "AIOAGENTS_LOG": "debug"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(logging.DEBUG)


def test_errors_stay_in_the_tree() -> None:
    assert issubclass(StreamOutcomeUnknownError, APIConnectionError)
    assert issubclass(StreamOutcomeUnknownError, AioAgentsError)


# -- CA bundles from the environment -------------------------------------------------------------------------------
@pytest.fixture
async def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, str]]:
    """An HTTPS server on loopback with a self-signed certificate (made by the openssl CLI): (URL, certificate)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTPS_PROXY", "https_proxy",
                 "ALL_PROXY", "all_proxy"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    args = f"req -x509 -newkey rsa:2048 -nodes -keyout {key} -out {cert} -days 1 -subj /CN=127.0.0.1"
    made = await asyncio.create_subprocess_exec(
        openssl, *args.split(), "-addext", "subjectAltName=IP:127.0.0.1", stderr=asyncio.subprocess.DEVNULL
    )
    assert await made.wait() == 0
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/ok", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"https://127.0.0.1:{port}", cert
    await runner.cleanup()


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
async def test_a_ca_bundle_named_in_the_environment_is_trusted(
    tls_server: tuple[str, str], monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    url, cert = tls_server
    monkeypatch.setenv(variable, cert)
    t = Transport(url, retry=RetryPolicy(max_attempts=1))
    try:
        assert (await t.request("GET", "/ok", idempotent=True)).json() == {"ok": True}
    finally:
        await t.aclose()


async def test_trust_env_false_ignores_the_ca_bundle(
    tls_server: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, cert = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    t = Transport(url, retry=RetryPolicy(max_attempts=1), trust_env=False)
    try:
        with pytest.raises(APIConnectionError):
            await t.request("GET", "/ok", idempotent=True)
    finally:
        await t.aclose()


async def test_a_socks_proxy_in_the_environment_is_ignored(
    srv: CoreServer, proxy: _Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1")
    t = Transport(srv.url)
    try:
        assert (await t.request("GET", "/ok", idempotent=True)).status == 200
    finally:
        await t.aclose()
    assert proxy.seen == []
