"""A canary API key sent as a secret header never shows up in logs (at DEBUG), reprs or exception text."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from aioagents._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    OutcomeUnknownError,
    ServiceUnavailableError,
)
from aioagents._retry import RetryPolicy
from aioagents._streaming import SSEDecoder
from aioagents._transport import Transport
from aioagents.testing import Fault

from .conftest import CANARY, CoreServer, free_port


@pytest.fixture(autouse=True)
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger at DEBUG (aioagents, aiohttp, asyncio): the canary must not reach any of them."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="aioagents")
    yield caplog
    assert CANARY not in caplog.text
    for record in caplog.records:
        assert CANARY not in record.getMessage()
        assert CANARY not in repr(record.args)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo += [item.__cause__, item.__context__]


def assert_clean(exc: BaseException) -> None:
    for item in chain(exc):
        assert CANARY not in str(item)
        assert CANARY not in repr(item)
        assert CANARY not in repr(item.args)


@pytest.fixture
async def secret_transport(srv: CoreServer) -> AsyncIterator[Transport]:
    t = Transport(srv.url, secret_headers={"Authorization": f"Bearer {CANARY}", "X-API-Key": CANARY})
    yield t
    await t.aclose()


async def test_the_key_is_sent_but_never_logged_on_success(srv: CoreServer, secret_transport: Transport) -> None:
    resp = await secret_transport.request("GET", "/headers", idempotent=True)
    assert resp.json()["X-API-Key"] == CANARY  # it went out on the wire
    assert CANARY not in repr(await secret_transport.request("GET", "/ok", idempotent=True))
    await secret_transport.aclose()


@pytest.mark.usefixtures("instant_retries")
async def test_retries_and_status_errors_do_not_leak_the_key(
    srv: CoreServer, secret_transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    srv.inject(Fault.status_code(503), path="/ok", times=3)
    with pytest.raises(ServiceUnavailableError) as info:
        await secret_transport.request("GET", "/ok", idempotent=True)
    await secret_transport.aclose()
    assert any(r.getMessage().startswith("retrying") for r in caplog.records)  # there were logs to leak into
    assert_clean(info.value)


@pytest.mark.usefixtures("instant_retries")
async def test_a_connection_lost_after_sending_does_not_leak_the_key(
    srv: CoreServer, secret_transport: Transport
) -> None:
    srv.inject(Fault.reset(after_body=True), path="/ok")
    with pytest.raises(OutcomeUnknownError) as info:
        await secret_transport.request("POST", "/ok", idempotent=False, json={"x": 1})
    await secret_transport.aclose()
    assert_clean(info.value)


@pytest.mark.usefixtures("instant_retries")
async def test_connect_errors_do_not_leak_the_key() -> None:
    t = Transport(f"http://127.0.0.1:{free_port()}", secret_headers={"X-API-Key": CANARY})
    with pytest.raises(APIConnectionError) as info:
        await t.request("GET", "/ok", idempotent=True)
    await t.aclose()
    assert_clean(info.value)


async def test_timeouts_do_not_leak_the_key(srv: CoreServer) -> None:
    t = Transport(srv.url, secret_headers={"X-API-Key": CANARY}, timeout=0.2, retry=RetryPolicy(max_attempts=2))
    with pytest.raises(APITimeoutError) as info:
        await t.request("GET", "/slow?s=1", idempotent=True)
    await t.aclose()
    assert_clean(info.value)


@pytest.mark.usefixtures("instant_retries")
async def test_a_key_in_the_query_string_stays_out_of_logs_and_errors(srv: CoreServer) -> None:
    t = Transport(srv.url)
    srv.inject(Fault.status_code(503), path="/ok", times=3)
    with pytest.raises(ServiceUnavailableError) as info:
        await t.request("GET", f"/ok?api_key={CANARY}", idempotent=True)
    await t.aclose()
    assert srv.requests_to("/ok")[0].query["api_key"] == CANARY
    assert_clean(info.value)


async def test_a_server_that_echoes_the_key_in_its_error_does_not_put_it_in_the_exception(
    srv: CoreServer, secret_transport: Transport
) -> None:
    srv.inject(
        Fault.status_code(401, {"error": {"message": f"Incorrect API key provided: {CANARY}", "code": "invalid_key"}}),
        path="/ok",
    )
    with pytest.raises(AuthenticationError) as info:
        await secret_transport.request("GET", "/ok", idempotent=True)
    await secret_transport.aclose()
    assert "Incorrect API key provided" in str(info.value)
    assert_clean(info.value)


async def test_stream_errors_do_not_leak_the_key(srv: CoreServer, secret_transport: Transport) -> None:
    srv.script = [(2.0, b"data: late\n\n")]
    stream = secret_transport.stream(
        "GET", "/sse", decoder=SSEDecoder(), parse=lambda f: f, idempotent=True, idle_timeout=0.2
    )
    with pytest.raises(APIError) as info:
        await stream.collect()
    await secret_transport.aclose()
    assert CANARY not in repr(stream)
    assert_clean(info.value)


def test_the_transport_repr_hides_secret_headers_and_shows_the_others() -> None:
    t = Transport("http://example.invalid", headers={"User-Agent": "ua/1"}, secret_headers={"X-API-Key": CANARY})
    assert CANARY not in repr(t)
    assert "ua/1" in repr(t)
    assert "***" in repr(t)


def test_a_secret_set_later_is_hidden_too() -> None:
    t = Transport("http://example.invalid")
    t.set_header("authorization", f"Bearer {CANARY}", secret=True)
    assert CANARY not in repr(t)
    t.set_header("Authorization", f"Bearer {CANARY}")  # replacing a secret header keeps it hidden
    assert CANARY not in repr(t)


async def test_a_key_echoed_in_an_error_while_opening_a_stream_is_masked(
    srv: CoreServer, secret_transport: Transport
) -> None:
    srv.inject(Fault.status_code(401, {"detail": f"bad key Bearer {CANARY}"}), path="/sse")
    stream = secret_transport.stream("GET", "/sse", decoder=SSEDecoder(), parse=lambda f: f, idempotent=True)
    with pytest.raises(AuthenticationError) as info:
        await stream.collect()
    assert "bad key" in str(info.value)
    assert_clean(info.value)


async def test_a_download_stream_error_does_not_show_the_query(srv: CoreServer) -> None:
    t = Transport(srv.url)
    srv.script = [(1.0, b"late")]
    with pytest.raises(APIError) as info:
        async with t.open("GET", f"/sse?token={CANARY}", idle_timeout=0.2) as body:
            await body.read()
    await t.aclose()
    assert_clean(info.value)


def test_the_transport_repr_hides_credentials_in_the_base_url() -> None:
    t = Transport(f"https://user:{CANARY}@api.example.invalid/v1")
    assert CANARY not in repr(t)
    assert "api.example.invalid/v1" in repr(t)


async def test_secret_headers_go_only_to_their_own_origin() -> None:
    from aiohttp import web

    from aioagents._transport import Transport
    from aioagents.testing import FakeServer

    class Echo(FakeServer):
        def setup_routes(self, app: web.Application) -> None:
            async def ok(request: web.Request) -> web.Response:
                return web.json_response({})

            app.router.add_get("/ok", ok)

    async with Echo() as home, Echo() as other:
        transport = Transport(home.url, headers={"User-Agent": "t"}, secret_headers={"X-API-Key": "canary-origin"})
        try:
            await transport.request("GET", "/ok", idempotent=True)
            await transport.request("GET", home.url + "/ok", idempotent=True)
            await transport.request("GET", other.url + "/ok", idempotent=True)
        finally:
            await transport.aclose()
    assert [r.header("X-API-Key") for r in home.requests] == ["canary-origin", "canary-origin"]
    assert [r.header("X-API-Key") for r in other.requests] == [None]
    assert [r.header("User-Agent") for r in other.requests] == ["t"]
