"""Transport over real loopback sockets: the retry table end to end, caps, redirects, sessions, cancellation."""

from __future__ import annotations

import asyncio
import email.utils
import gc
import logging
import threading
import time
from collections.abc import Iterator

import aiohttp
import pytest

from aioagents._config import Timeout
from aioagents._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    InternalServerError,
    OutcomeUnknownError,
    RateLimitError,
    RedirectError,
    ResponseTooLargeError,
    ResponseValidationError,
    ServiceUnavailableError,
    UnprocessableEntityError,
)
from aioagents._ratelimit import RateLimiter
from aioagents._retry import RetryPolicy
from aioagents._streaming import SSEDecoder
from aioagents._transport import Transport, _Connector
from aioagents.testing import Fault

from .conftest import CANARY, CoreServer, acquired_connections, free_port, pooled_connections, server_connections


class CountingLimiter(RateLimiter):
    """A real rate limiter that also counts the permits it handed out."""

    __slots__ = ("taken",)

    def __init__(self, rate: float, *, per: float = 1.0, burst: float | None = None) -> None:
        super().__init__(rate, per=per, burst=burst)
        self.taken = 0

    async def acquire(self, amount: float = 1.0) -> None:
        await super().acquire(amount)
        self.taken += 1


def retry_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "aioagents" and r.getMessage().startswith("retrying")]


# -- the retry table -------------------------------------------------------------------------------------------
RETRY_TABLE = [
    # (faults queued on /ok, method, idempotent, expected error or None, requests the server saw)
    pytest.param([(Fault.reset(after_body=True), 2)], "GET", True, None, 3, id="reset-twice-then-ok"),
    pytest.param([(Fault.status_code(429, retry_after="1"), 1)], "GET", True, None, 2, id="429-retry-after-seconds"),
    pytest.param([(Fault.status_code(503), 2)], "GET", True, None, 3, id="503-twice-then-ok"),
    pytest.param([(Fault.status_code(500), 1)], "GET", True, None, 2, id="500-then-ok"),
    pytest.param([(Fault.status_code(502), 1)], "PUT", True, None, 2, id="502-then-ok"),
    pytest.param([(Fault.status_code(503), 3)], "GET", True, ServiceUnavailableError, 3, id="503-until-attempts-end"),
    pytest.param([(Fault.status_code(422), 1)], "GET", True, UnprocessableEntityError, 1, id="422-never-retried"),
    pytest.param([(Fault.status_code(404), 1)], "GET", True, APIStatusError, 1, id="404-never-retried"),
    pytest.param(
        [(Fault.status_code(400, headers={"X-Should-Retry": "true"}), 1)], "GET", True, None, 2, id="x-should-retry"
    ),
    pytest.param(
        [(Fault.status_code(503, headers={"X-Should-Retry": "false"}), 1)],
        "GET",
        True,
        ServiceUnavailableError,
        1,
        id="x-should-not-retry",
    ),
    pytest.param([(Fault.status_code(429), 1)], "POST", False, None, 2, id="nonidem-429-retried"),
    pytest.param(
        [(Fault.status_code(503, retry_after="1"), 1)], "POST", False, None, 2, id="nonidem-503-retry-after-retried"
    ),
    pytest.param([(Fault.status_code(503), 1)], "POST", False, ServiceUnavailableError, 1, id="nonidem-503-final"),
    pytest.param([(Fault.status_code(500), 1)], "POST", False, InternalServerError, 1, id="nonidem-500-final"),
    pytest.param(
        [(Fault.reset(after_body=True), 1)], "POST", False, OutcomeUnknownError, 1, id="nonidem-reset-outcome-unknown"
    ),
    pytest.param(
        [(Fault.reset(after_body=True), 1)], "PUT", False, OutcomeUnknownError, 1, id="nonidem-put-reset-not-resent"
    ),
]


@pytest.mark.usefixtures("instant_retries")
@pytest.mark.parametrize(("faults", "method", "idempotent", "error", "seen"), RETRY_TABLE)
async def test_retry_table(
    srv: CoreServer,
    transport: Transport,
    faults: list[tuple[Fault, int]],
    method: str,
    idempotent: bool,
    error: type[Exception] | None,
    seen: int,
) -> None:
    for fault, times in faults:
        srv.inject(fault, path="/ok", times=times)
    if error is None:
        resp = await transport.request(method, "/ok", idempotent=idempotent)
        assert resp.json() == {"ok": True, "method": method}
    else:
        with pytest.raises(error):
            await transport.request(method, "/ok", idempotent=idempotent)
    assert len(srv.requests_to("/ok")) == seen


async def test_retry_after_seconds_is_waited_in_full(srv: CoreServer, transport: Transport) -> None:
    srv.inject(Fault.status_code(429, retry_after="1"), path="/ok")
    started = time.monotonic()
    await transport.request("GET", "/ok", idempotent=True)
    assert time.monotonic() - started >= 1.0
    assert len(srv.requests_to("/ok")) == 2


async def test_retry_after_as_an_http_date_is_waited(srv: CoreServer, transport: Transport) -> None:
    # An HTTP-date has one-second resolution: "now + 2 s" truncated is a wait of more than 1 s.
    srv.inject(Fault.status_code(503, retry_after=email.utils.formatdate(time.time() + 2, usegmt=True)), path="/ok")
    started = time.monotonic()
    await transport.request("GET", "/ok", idempotent=True)
    assert time.monotonic() - started >= 0.95
    assert len(srv.requests_to("/ok")) == 2


async def test_retry_after_beyond_the_cap_fails_at_once_with_the_wait_in_the_error(srv: CoreServer) -> None:
    t = Transport(srv.url, retry=RetryPolicy(max_retry_after=30.0))
    srv.inject(Fault.status_code(429, retry_after="120"), path="/ok")
    started = time.monotonic()
    with pytest.raises(RateLimitError) as info:
        await t.request("GET", "/ok", idempotent=True)
    await t.aclose()
    assert time.monotonic() - started < 1.0
    assert info.value.retry_after == 120.0
    assert "120s" in str(info.value)
    assert len(srv.requests_to("/ok")) == 1


async def test_backoff_is_waited_between_attempts(srv: CoreServer) -> None:
    t = Transport(srv.url, retry=RetryPolicy(initial_delay=0.2, jitter=0.0))
    srv.inject(Fault.status_code(500), path="/ok", times=2)
    started = time.monotonic()
    await t.request("GET", "/ok", idempotent=True)
    await t.aclose()
    assert time.monotonic() - started >= 0.2 + 0.4


@pytest.mark.usefixtures("instant_retries")
async def test_max_attempts_per_call_overrides_the_policy(srv: CoreServer, transport: Transport) -> None:
    srv.inject(Fault.status_code(503), path="/ok", times=5)
    with pytest.raises(ServiceUnavailableError):
        await transport.request("GET", "/ok", idempotent=True, max_attempts=5)
    assert len(srv.requests_to("/ok")) == 5


@pytest.mark.usefixtures("instant_retries")
async def test_a_one_shot_body_is_never_sent_twice(srv: CoreServer, transport: Transport) -> None:
    async def body() -> Iterator[bytes]:  # type: ignore[misc]
        yield b"one-shot"

    srv.inject(Fault.status_code(503), path="/ok")
    with pytest.raises(ServiceUnavailableError):
        await transport.request("PUT", "/ok", idempotent=True, data=body())
    assert len(srv.requests_to("/ok")) == 1


@pytest.mark.usefixtures("instant_retries")
async def test_a_body_factory_makes_a_fresh_body_per_attempt(srv: CoreServer, transport: Transport) -> None:
    made = 0

    def body() -> bytes:
        nonlocal made
        made += 1
        return f"attempt {made}".encode()

    srv.inject(Fault.status_code(503), path="/ok")
    await transport.request("PUT", "/ok", idempotent=True, data=body)
    assert [r.body for r in srv.requests_to("/ok")] == [b"attempt 1", b"attempt 2"]


async def test_a_dropped_connection_is_not_resent_behind_the_retry_policy(
    srv: CoreServer, transport: Transport
) -> None:
    # aiohttp on its own re-sends GET/PUT/DELETE once after a drop; with one attempt allowed, the server sees one.
    srv.inject(Fault.reset(after_body=True), path="/ok")
    with pytest.raises(APIConnectionError):
        await transport.request("GET", "/ok", idempotent=True, max_attempts=1)
    assert len(srv.requests_to("/ok")) == 1


# -- connection failures ----------------------------------------------------------------------------------------
@pytest.mark.usefixtures("instant_retries")
@pytest.mark.parametrize("idempotent", [True, False])
async def test_connect_refused_is_retried_and_marked_not_sent(
    idempotent: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aioagents")
    t = Transport(f"http://127.0.0.1:{free_port()}", retry=RetryPolicy(max_attempts=3))
    with pytest.raises(APIConnectionError) as info:
        await t.request("POST", "/ok", idempotent=idempotent)
    await t.aclose()
    assert type(info.value) is APIConnectionError
    assert info.value.sent is False
    assert len(retry_logs(caplog)) == 2


async def test_a_timeout_raises_api_timeout_error_which_is_a_timeout_error(srv: CoreServer) -> None:
    t = Transport(srv.url, timeout=0.3, retry=RetryPolicy(max_attempts=1))
    started = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        await t.request("GET", "/slow?s=1", idempotent=True)
    await t.aclose()
    assert isinstance(info.value, APITimeoutError)
    assert time.monotonic() - started < 2.0


async def test_a_read_timeout_alone_applies_on_the_first_request(srv: CoreServer) -> None:
    # A fresh Timeout builds its aiohttp twin on first use (aiohttp is imported lazily): the very first request of
    # a Transport must already carry it, or a read limit without a total would silently not apply.
    t = Transport(srv.url, timeout=Timeout(total=None, read=0.3), retry=RetryPolicy(max_attempts=1))
    with pytest.raises(APITimeoutError):
        await t.request("GET", "/slow?s=1", idempotent=True)
    await t.aclose()


@pytest.mark.usefixtures("instant_retries")
async def test_retrying_after_a_timeout_warns_that_the_first_attempt_may_still_run(
    srv: CoreServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aioagents")
    t = Transport(srv.url, timeout=0.2, retry=RetryPolicy(max_attempts=2))
    with pytest.raises(APITimeoutError):
        await t.request("GET", "/slow?s=1", idempotent=True)
    await t.aclose()
    (record,) = retry_logs(caplog)
    assert record.levelno == logging.WARNING
    assert "may still be running" in record.getMessage()
    assert len(srv.requests_to("/slow")) == 2


async def test_a_non_idempotent_timeout_is_not_retried(srv: CoreServer) -> None:
    t = Transport(srv.url, timeout=0.2, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(APITimeoutError):
        await t.request("POST", "/slow?s=1", idempotent=False)
    await t.aclose()
    assert len(srv.requests_to("/slow")) == 1


@pytest.mark.usefixtures("instant_retries")
async def test_a_non_idempotent_call_waiting_too_long_for_a_pool_slot_is_retried(srv: CoreServer) -> None:
    # One connection, busy for 1 s; the POST times out waiting for it (connect timeout 0.2 s) and, never sent,
    # may be retried until the slot frees.
    t = Transport(
        srv.url, connection_limit=1, timeout=Timeout(total=10, connect=0.2), retry=RetryPolicy(max_attempts=20)
    )
    hog = asyncio.create_task(t.request("GET", "/slow?s=1", idempotent=True))
    await wait_for_requests(srv, "/slow", 1)
    resp = await t.request("POST", "/ok", idempotent=False)
    assert resp.status == 200
    await hog
    await t.aclose()
    assert len(srv.requests_to("/ok")) == 1


async def test_a_connect_timeout_is_a_timeout_marked_not_sent(srv: CoreServer) -> None:
    t = Transport(
        srv.url, connection_limit=1, timeout=Timeout(total=10, connect=0.2), retry=RetryPolicy(max_attempts=1)
    )
    hog = asyncio.create_task(t.request("GET", "/slow?s=1", idempotent=True))
    await wait_for_requests(srv, "/slow", 1)
    with pytest.raises(APITimeoutError) as info:
        await t.request("POST", "/ok", idempotent=False)
    assert info.value.sent is False
    await hog
    await t.aclose()
    assert srv.requests_to("/ok") == []


# -- response size cap ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/bytes/200000", id="content-length"),
        pytest.param("/chunked/200000", id="chunked"),
        pytest.param("/gzip/200000", id="gzip-counted-after-decompression"),
    ],
)
async def test_a_response_over_the_cap_raises(srv: CoreServer, transport: Transport, path: str) -> None:
    with pytest.raises(ResponseTooLargeError):
        await transport.request("GET", path, idempotent=True, max_response_size=100_000)
    assert acquired_connections(transport) == 0


@pytest.mark.parametrize(
    ("path", "content"),
    [
        pytest.param("/bytes/100000", b"x" * 100_000, id="content-length"),
        pytest.param("/chunked/100000", b"y" * 100_000, id="chunked"),
        pytest.param("/gzip/100000", b"\0" * 100_000, id="gzip"),
    ],
)
async def test_a_response_at_the_cap_is_read(srv: CoreServer, transport: Transport, path: str, content: bytes) -> None:
    resp = await transport.request("GET", path, idempotent=True, max_response_size=100_000)
    assert resp.content == content


async def test_a_gzip_body_small_on_the_wire_is_capped_by_its_decompressed_size(srv: CoreServer) -> None:
    t = Transport(srv.url, max_response_size=1_000_000)
    with pytest.raises(ResponseTooLargeError, match="after decompression"):
        await t.request("GET", "/gzip/50000000", idempotent=True)
    await t.aclose()


# -- redirects --------------------------------------------------------------------------------------------------
async def test_a_same_origin_redirect_is_followed_with_the_credentials(srv: CoreServer, transport: Transport) -> None:
    resp = await transport.request("GET", "/redirect?to=/headers", idempotent=True)
    assert resp.json()["X-API-Key"] == CANARY
    assert len(srv.requests_to("/headers")) == 1


async def test_a_cross_origin_redirect_is_refused_and_the_secret_never_reaches_the_other_origin(
    srv: CoreServer, transport: Transport
) -> None:
    async with CoreServer() as other:
        with pytest.raises(RedirectError) as info:
            await transport.request("GET", f"/redirect?to={other.url}/headers", idempotent=True)
        assert other.requests == []
    assert CANARY not in str(info.value)
    assert other.url.split("//")[1] in str(info.value)


async def test_a_redirect_to_the_same_port_under_another_host_name_is_another_origin(
    srv: CoreServer, transport: Transport
) -> None:
    port = srv.url.rsplit(":", 1)[1]
    with pytest.raises(RedirectError):
        await transport.request("GET", f"/redirect?to=http://localhost:{port}/headers", idempotent=True)
    assert srv.requests_to("/headers") == []


async def test_a_redirect_loop_ends_and_is_not_retried(srv: CoreServer, transport: Transport) -> None:
    with pytest.raises(RedirectError, match="too many redirects"):
        await transport.request("GET", "/loop", idempotent=True)
    assert len(srv.requests_to("/loop")) == 6  # the first request and five redirects, one attempt


# -- sessions ---------------------------------------------------------------------------------------------------
async def test_a_user_session_is_used_and_never_closed(srv: CoreServer) -> None:
    async with aiohttp.ClientSession() as session:
        t = Transport(srv.url, session=session)
        await t.request("GET", "/ok", idempotent=True)
        await t.aclose()
        assert not session.closed
        async with session.get(f"{srv.url}/ok") as resp:
            assert resp.status == 200


async def test_a_call_after_aclose_raises_client_closed_error(srv: CoreServer) -> None:
    t = Transport(srv.url)
    await t.request("GET", "/ok", idempotent=True)
    await t.aclose()
    with pytest.raises(ClientClosedError):
        await t.request("GET", "/ok", idempotent=True)
    assert isinstance(ClientClosedError("x"), RuntimeError)


async def test_aclose_twice_is_harmless(srv: CoreServer) -> None:
    t = Transport(srv.url)
    await t.request("GET", "/ok", idempotent=True)
    await t.aclose()
    await t.aclose()
    assert t.closed


class LoopThread:
    """A thread that runs its own event loop forever (as the sync API's threads do)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def test_one_transport_serves_many_loops_and_aclose_closes_every_session(thread_srv: CoreServer) -> None:
    t = Transport(thread_srv.url)
    threads = [LoopThread(), LoopThread()]
    try:
        for lt in threads:
            fut = asyncio.run_coroutine_threadsafe(t.request("GET", "/ok", idempotent=True), lt.loop)
            assert fut.result(10).status == 200
        sessions = list(t._sessions.values())
        assert len(sessions) == 2
        assert sessions[0] is not sessions[1]
        asyncio.run(t.aclose())
        assert all(s.closed for s in sessions)
    finally:
        for lt in threads:
            lt.stop()
    del sessions
    gc.collect()  # an unclosed session would warn here, and warnings are errors


def test_calls_alternating_between_loops_each_go_through_their_own_loops_session(thread_srv: CoreServer) -> None:
    # The Transport remembers the last loop and its session; a call on any other loop (another thread's, or a new
    # loop run after the last one ended in this thread) must find its own.
    t = Transport(thread_srv.url)
    threads = [LoopThread(), LoopThread()]
    try:
        for _ in range(3):
            for lt in threads:
                fut = asyncio.run_coroutine_threadsafe(t.request("GET", "/ok", idempotent=True), lt.loop)
                assert fut.result(10).status == 200
        for _ in range(2):
            assert asyncio.run(t.request("GET", "/ok", idempotent=True)).status == 200
        for lt in threads:
            connector = t._sessions[lt.loop].connector
            assert isinstance(connector, _Connector)
            assert connector.created == 1  # one connection, opened and reused by that loop's calls only
        asyncio.run(t.aclose())
    finally:
        for lt in threads:
            lt.stop()
    gc.collect()


def test_aclose_closes_a_session_on_an_idle_loop_of_another_thread(thread_srv: CoreServer) -> None:
    t = Transport(thread_srv.url)
    loop = asyncio.new_event_loop()
    try:
        worker = threading.Thread(target=loop.run_until_complete, args=(t.request("GET", "/ok", idempotent=True),))
        worker.start()
        worker.join(10)
        (session,) = t._sessions.values()
        asyncio.run(t.aclose())
        assert session.closed
    finally:
        loop.close()
    del session
    gc.collect()


def test_asyncio_run_per_call_without_aclose_leaves_no_unclosed_session(thread_srv: CoreServer) -> None:
    t = Transport(thread_srv.url)

    async def call() -> aiohttp.ClientSession:
        await t.request("GET", "/ok", idempotent=True)
        return t._session()

    first = asyncio.run(call())
    second = asyncio.run(call())  # a new loop, a new session; the first loop is gone
    assert first is not second
    assert first.closed
    assert second.closed
    del first, second
    gc.collect()  # an unclosed session or connector would warn here, and warnings are errors


async def test_a_transport_dropped_without_aclose_closes_its_session(srv: CoreServer) -> None:
    t = Transport(srv.url)
    await t.request("GET", "/ok", idempotent=True)
    session = t._session()
    del t
    gc.collect()
    for _ in range(50):
        if session.closed:
            break
        await asyncio.sleep(0.01)
    assert session.closed


@pytest.mark.usefixtures("instant_retries")
async def test_a_500_that_closes_the_connection_does_not_poison_the_pool(srv: CoreServer, transport: Transport) -> None:
    await transport.request("GET", "/ok", idempotent=True)  # a pooled keep-alive connection now exists
    srv.inject(Fault.status_code(500, close=True), path="/ok")
    with pytest.raises(InternalServerError):
        await transport.request("POST", "/ok", idempotent=False)
    assert pooled_connections(transport) <= 1
    resp = await transport.request("POST", "/ok", idempotent=False, max_attempts=1)
    assert resp.status == 200
    assert len(srv.requests_to("/ok")) == 3


@pytest.mark.usefixtures("instant_retries")
async def test_the_rate_limiter_is_taken_on_every_attempt(srv: CoreServer) -> None:
    limiter = CountingLimiter(1000)
    tokens = CountingLimiter(1000)
    t = Transport(srv.url, rate_limiter=limiter)
    srv.inject(Fault.status_code(503), path="/ok", times=2)
    await t.request("GET", "/ok", idempotent=True, permits=[(tokens, 5)])
    await t.aclose()
    assert limiter.taken == 3
    assert tokens.taken == 3


@pytest.mark.usefixtures("instant_retries")
async def test_a_429_with_retry_after_pauses_the_rate_limiter(srv: CoreServer) -> None:
    limiter = RateLimiter(1000)
    t = Transport(srv.url, rate_limiter=limiter)
    srv.inject(Fault.status_code(429, retry_after="1"), path="/ok")
    started = time.monotonic()
    # Instant retries skip the retry's own wait; the retry's permit still waits out the server's pause.
    await t.request("GET", "/ok", idempotent=True)
    await t.aclose()
    assert time.monotonic() - started >= 0.95


async def test_requests_keep_the_limiters_rate_and_wait_out_its_pause(srv: CoreServer) -> None:
    # A permit that needs no wait is taken inline by the Transport; one that must wait, or a paused limiter, goes to
    # the limiter's acquire. Both keep the rate.
    limiter = RateLimiter(20, per=1, burst=1)
    t = Transport(srv.url, rate_limiter=limiter)
    started = time.monotonic()
    for _ in range(5):
        await t.request("GET", "/ok", idempotent=True)
    assert time.monotonic() - started >= 4 / 20 * 0.9
    await asyncio.sleep(0.1)  # the bucket drains: the next permit needs no wait, but the limiter is paused
    limiter.pause(0.5)
    started = time.monotonic()
    await t.request("GET", "/ok", idempotent=True)
    assert time.monotonic() - started >= 0.45
    await t.aclose()


# -- cancellation -----------------------------------------------------------------------------------------------
async def wait_for_requests(srv: CoreServer, path: str, n: int) -> None:
    for _ in range(500):
        if len(srv.requests_to(path)) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the server never saw {n} requests to {path}")


async def wait_for_server_connections(srv: CoreServer, n: int) -> None:
    for _ in range(300):
        if server_connections(srv) == n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the server still has {server_connections(srv)} connections, expected {n}")


def other_tasks() -> set[asyncio.Task[object]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task() and not task.done()}


async def test_cancel_during_a_request_leaves_no_connection_task_or_permit(thread_srv: CoreServer) -> None:
    limiter = RateLimiter(1000)
    t = Transport(thread_srv.url, rate_limiter=limiter, connection_limit=1)
    # The server's handler sleeps 1 s, then finds the client gone (it would keep a live keep-alive connection).
    task = asyncio.create_task(t.request("GET", "/slow?s=1", idempotent=True))
    await wait_for_requests(thread_srv, "/slow", 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert acquired_connections(t) == 0
    await wait_for_server_connections(thread_srv, 0)  # once its handler is done, the server sees no connection
    assert other_tasks() == set()
    assert limiter._bucket()._waiters == []
    # With a pool of one connection, a leaked connection would make this wait forever.
    resp = await asyncio.wait_for(t.request("GET", "/ok", idempotent=True), 5)
    assert resp.status == 200
    await t.aclose()


async def test_cancel_during_the_backoff_sleep_leaves_no_connection_task_or_permit(thread_srv: CoreServer) -> None:
    limiter = RateLimiter(1000)
    t = Transport(thread_srv.url, rate_limiter=limiter, connection_limit=1)
    thread_srv.inject(Fault.status_code(503, retry_after="30"), path="/ok")
    task = asyncio.create_task(t.request("GET", "/ok", idempotent=True))
    await wait_for_requests(thread_srv, "/ok", 1)
    await asyncio.sleep(0.1)  # the answer is in: the call is now sleeping before its retry
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(thread_srv.requests_to("/ok")) == 1
    assert acquired_connections(t) == 0
    assert pooled_connections(t) + server_connections(thread_srv) <= 2  # at most the idle keep-alive one
    assert other_tasks() == set()
    assert limiter._bucket()._waiters == []
    resp = await asyncio.wait_for(t.request("GET", "/ok", idempotent=True), 5)
    assert resp.status == 200
    await t.aclose()


async def test_cancel_while_waiting_for_a_permit_leaves_no_waiter(thread_srv: CoreServer) -> None:
    limiter = RateLimiter(1, per=60, burst=1)
    t = Transport(thread_srv.url, rate_limiter=limiter)
    await t.request("GET", "/ok", idempotent=True)  # takes the only permit for a minute
    task = asyncio.create_task(t.request("GET", "/ok", idempotent=True))
    await asyncio.sleep(0.1)
    assert not task.done()
    assert len(limiter._bucket()._waiters) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)  # aiolimiter drops a cancelled waiter on its next wake-up
    assert [w for w in limiter._bucket()._waiters if not w[-1].done()] == []
    assert len(thread_srv.requests_to("/ok")) == 1
    assert other_tasks() == set()
    await t.aclose()


@pytest.mark.usefixtures("instant_retries")
async def test_a_connection_the_server_drops_after_a_500_is_not_reused(srv: CoreServer, transport: Transport) -> None:
    # uvicorn closes the connection after an unhandled error without saying so; a pooled connection would fail the
    # next request, and a non-idempotent one would end as "outcome unknown".
    with pytest.raises(InternalServerError):
        await transport.request("POST", "/crash", idempotent=False)
    resp = await transport.request("POST", "/ok", idempotent=False, max_attempts=1)
    assert resp.status == 200


@pytest.mark.usefixtures("instant_retries")
async def test_a_connection_dropped_after_a_500_on_stream_open_is_not_reused(
    srv: CoreServer, transport: Transport
) -> None:
    stream = transport.stream("POST", "/crash", decoder=SSEDecoder(), parse=lambda f: f, idempotent=False)
    with pytest.raises(InternalServerError):
        await stream.collect()
    resp = await transport.request("POST", "/ok", idempotent=False, max_attempts=1)
    assert resp.status == 200


# -- error bodies, hooks, headers, bodies -------------------------------------------------------------------------
ERROR_SHAPES = [
    pytest.param(
        Fault.status_code(400, {"error": {"message": "bad field", "code": "invalid"}}),
        "bad field",
        "invalid",
        id="openai",
    ),
    pytest.param(Fault.status_code(409, {"error": "exists", "code": 17}), "exists", "17", id="error-string-and-code"),
    pytest.param(Fault.status_code(404, {"detail": "no such job"}), "no such job", None, id="fastapi-detail"),
    pytest.param(
        Fault.status_code(422, {"detail": [{"loc": ["body", "code"], "msg": "field required", "type": "missing"}]}),
        "code: field required",
        None,
        id="fastapi-validation",
    ),
    pytest.param(Fault.status_code(403, {"message": "forbidden here"}), "forbidden here", None, id="message"),
    pytest.param(
        Fault.raw(b"upstream broke", status=502, content_type="text/plain"), "upstream broke", None, id="text"
    ),
    pytest.param(Fault.raw(b"", status=418, content_type="text/plain"), "I'm a Teapot", None, id="empty-uses-reason"),
]


@pytest.mark.parametrize(("fault", "message", "code"), ERROR_SHAPES)
async def test_error_bodies_become_messages_and_codes(
    srv: CoreServer, transport: Transport, fault: Fault, message: str, code: str | None
) -> None:
    srv.inject(fault, path="/ok")
    with pytest.raises(APIStatusError) as info:
        await transport.request("POST", "/ok", idempotent=False)
    assert info.value.status == fault.status
    assert info.value.message == message
    assert info.value.code == code


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, "BadRequestError"),
        (401, "AuthenticationError"),
        (402, "PaymentRequiredError"),
        (403, "PermissionDeniedError"),
        (404, "NotFoundError"),
        (409, "ConflictError"),
        (413, "RequestTooLargeError"),
        (422, "UnprocessableEntityError"),
        (429, "RateLimitError"),
        (418, "APIStatusError"),
        (500, "InternalServerError"),
        (502, "InternalServerError"),
        (503, "ServiceUnavailableError"),
    ],
)
async def test_each_status_raises_its_class_with_the_request_id(
    srv: CoreServer, transport: Transport, status: int, cls: str
) -> None:
    srv.inject(Fault.status_code(status, headers={"x-request-id": "req-42"}), path="/ok")
    with pytest.raises(APIStatusError) as info:
        await transport.request("POST", "/ok", idempotent=False, max_attempts=1)
    assert type(info.value).__name__ == cls
    assert info.value.request_id == "req-42"
    assert "request_id=req-42" in str(info.value)


async def test_a_429_carries_retry_after(srv: CoreServer, transport: Transport) -> None:
    srv.inject(Fault.status_code(429, headers={"retry-after-ms": "1500"}), path="/ok")
    with pytest.raises(RateLimitError) as info:
        await transport.request("GET", "/ok", idempotent=True, max_attempts=1)
    assert info.value.retry_after == 1.5


@pytest.mark.usefixtures("instant_retries")
async def test_the_response_hook_sees_every_response_including_errors(srv: CoreServer) -> None:
    seen: list[int] = []
    t = Transport(srv.url, response_hook=lambda status, headers: seen.append(status))
    srv.inject(Fault.status_code(503), path="/ok")
    await t.request("GET", "/ok", idempotent=True)
    await t.aclose()
    assert seen == [503, 200]


async def test_json_bodies_params_and_per_call_headers_go_on_the_wire(srv: CoreServer, transport: Transport) -> None:
    await transport.request(
        "POST", "/ok", idempotent=False, json={"code": "print('é')"}, params={"a": "1"}, headers={"X-Trace": "t-1"}
    )
    (seen,) = srv.requests_to("/ok")
    assert seen.json() == {"code": "print('é')"}
    assert seen.header("Content-Type") == "application/json"
    assert seen.query == {"a": "1"}
    assert seen.header("X-Trace") == "t-1"
    assert seen.header("X-API-Key") == CANARY


async def test_headers_set_after_the_first_request_apply_to_the_next(srv: CoreServer, transport: Transport) -> None:
    await transport.request("GET", "/ok", idempotent=True)  # the session exists now
    transport.set_header("X-API-Key", "rotated-key", secret=True)
    transport.set_header("X-Extra", "1")
    await transport.request("GET", "/ok", idempotent=True)
    transport.set_header("X-Extra", None)
    await transport.request("GET", "/ok", idempotent=True)
    first, second, third = srv.requests_to("/ok")
    assert first.header("X-API-Key") == CANARY
    assert (second.header("X-API-Key"), second.header("X-Extra")) == ("rotated-key", "1")
    assert third.header("X-Extra") is None


async def test_a_user_session_gets_the_transport_headers_too(srv: CoreServer) -> None:
    async with aiohttp.ClientSession() as session:
        t = Transport(srv.url, session=session, secret_headers={"X-API-Key": CANARY})
        await t.request("GET", "/ok", idempotent=True)
        await t.aclose()
    assert srv.requests_to("/ok")[0].header("X-API-Key") == CANARY


async def test_a_per_call_base_url_overrides_the_endpoint(srv: CoreServer, transport: Transport) -> None:
    async with CoreServer() as other:
        resp = await transport.request("GET", "/ok", idempotent=True, base_url=other.url + "/")
        assert resp.status == 200
        assert len(other.requests_to("/ok")) == 1
    assert srv.requests == []


async def test_a_non_json_success_body_raises_validation_error_on_json(srv: CoreServer, transport: Transport) -> None:
    srv.inject(Fault.raw(b"<html>oops</html>", status=200), path="/ok")
    resp = await transport.request("GET", "/ok", idempotent=True)
    with pytest.raises(ResponseValidationError, match="not JSON"):
        resp.json()


async def test_a_per_call_timeout_overrides_the_default(srv: CoreServer, transport: Transport) -> None:
    with pytest.raises(APITimeoutError):
        await transport.request("GET", "/slow?s=1", idempotent=True, timeout=0.2, max_attempts=1)


# -- raw byte streams ------------------------------------------------------------------------------------------
async def test_open_streams_the_raw_body_in_chunks(srv: CoreServer, transport: Transport) -> None:
    async with transport.open("GET", "/chunked/300000") as body:
        assert body.status == 200
        total = b"".join([chunk async for chunk in body])
    assert total == b"y" * 300_000
    assert acquired_connections(transport) == 0


async def test_open_read_with_a_limit_raises_past_it(srv: CoreServer, transport: Transport) -> None:
    async with transport.open("GET", "/chunked/300000") as body:
        with pytest.raises(ResponseTooLargeError):
            await body.read(100_000)
    assert acquired_connections(transport) == 0


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        pytest.param("/files/user@example.com/report.txt", "/files/user@example.com/report.txt", id="at-in-path"),
        pytest.param("/missing?api_key=secret", "/missing", id="query-dropped"),
    ],
)
async def test_error_urls_keep_the_path_and_drop_the_query(
    srv: CoreServer, transport: Transport, path: str, shown: str
) -> None:
    with pytest.raises(APIStatusError) as info:
        await transport.request("GET", path, idempotent=True)
    assert info.value.url == srv.url + shown


async def test_userinfo_in_the_base_url_is_not_shown(srv: CoreServer) -> None:
    t = Transport(srv.url.replace("http://", "http://user:pa55word@") + "/base")
    with pytest.raises(APIStatusError) as info:
        await t.request("GET", "/x@y", idempotent=True)
    await t.aclose()
    assert "pa55word" not in str(info.value.url)
    assert info.value.url == srv.url + "/base/x@y"
