"""Transport: every HTTP call of every client goes through here.

One attempt loop for every kind of call: take a rate-limit permit → send one attempt (``_send``) → classify the answer
→ retry by the one ``RetryPolicy``, within the endpoint's ``RetryBudget``. ``request()`` reads the whole body;
``stream()`` stops at the response head and hands the body to an ``EventStream`` (once the first event is out, nothing
is retried); ``open()`` gives a raw byte stream (downloads). Redirects are followed inside the attempt, only within the
same origin: credentials live in custom headers that a redirect to another host would carry along.

Ownership: the Transport creates its aiohttp session lazily, inside the running loop, one per event loop (the sync API
runs one loop per thread), and closes them all in ``aclose()``. A session passed in by the user is used as is and never
closed. Idle pooled connections are dropped after ``DEFAULT_KEEPALIVE`` seconds, before common servers drop them; a
request that still races a server's idle close is sent again, since that server never read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import errno
import functools
import io
import ipaddress
import logging
import os
import ssl
import sys
import time
import urllib.request
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from threading import get_ident
from typing import Any, TypedDict, TypeVar

import aiohttp
import attrs
from multidict import CIMultiDictProxy
from yarl import URL

from aioagents import _json, _retry
from aioagents._config import DEFAULT_TIMEOUT, TimeoutLike, to_timeout
from aioagents._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    OutcomeUnknownError,
    RateLimitError,
    RedirectError,
    ResponseTooLargeError,
    ResponseValidationError,
    status_error_class,
    translate_transport_error,
)
from aioagents._loops import loop_owner
from aioagents._ratelimit import RateLimiter
from aioagents._retry import RetryBudget, RetryPolicy, parse_retry_after
from aioagents._streaming import Decoder, EventStream

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - exercised on Python 3.10 only
    from typing_extensions import Unpack

__all__ = ["DEFAULT_KEEPALIVE", "MISSING", "ByteStream", "Response", "Transport", "default_error"]

log = logging.getLogger("aioagents")


class StreamRequest(TypedDict, total=False):
    """The request keywords of :meth:`Transport.stream` and :meth:`Transport.open`, declared once (both hand them to
    the one ``_open``): the body (``json`` or ``data``), ``params``, ``headers``, ``timeout``, the retry knobs and
    a per-call ``base_url``."""

    json: Any
    data: Any
    params: Mapping[str, str] | None
    headers: Mapping[str, str] | None
    timeout: TimeoutLike
    max_attempts: int | None
    retry: RetryPolicy | None
    base_url: str | None


T = TypeVar("T")

MISSING: Any = object()

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_JSON_HEADERS = {"Content-Type": "application/json"}


@attrs.frozen(kw_only=True)
class Response:
    """A complete (non-streamed) response."""

    status: int
    headers: CIMultiDictProxy[str]
    content: bytes
    method: str
    url: str
    request_id: str | None = None

    def json(self) -> Any:
        """The body parsed as JSON, whatever the Content-Type says (some servers label JSON as text/html)."""
        try:
            return _json.loads(self.content)
        except ValueError as exc:
            raise ResponseValidationError(
                f"{self.method} {self.url}: the response is not JSON: {self.content[:200]!r}",
                body=self.content[:1000],
                method=self.method,
                url=self.url,
            ) from exc

    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


_set_status, _set_headers, _set_content, _set_method, _set_url, _set_request_id = (
    Response.__dict__[name].__set__ for name in ("status", "headers", "content", "method", "url", "request_id")
)


def _response(
    status: int, headers: CIMultiDictProxy[str], content: bytes, method: str, url: str, request_id: str | None
) -> Response:
    """A :class:`Response` with its slots filled directly: the attrs ``__init__`` of a frozen class sets each field
    through ``object.__setattr__`` (~0.8 µs for six); every successful call builds one."""
    response = object.__new__(Response)
    _set_status(response, status)
    _set_headers(response, headers)
    _set_content(response, content)
    _set_method(response, method)
    _set_url(response, url)
    _set_request_id(response, request_id)
    return response


ErrorFactory = Callable[[Response], APIStatusError]
ResponseHook = Callable[[int, Mapping[str, str]], None]


def default_error(response: Response) -> APIStatusError:
    """Build the status error from the common body shapes: ``{"error": {"message", "code"}}``, ``{"error": str,
    "code"?}``, ``{"detail": …}``, ``{"message": …}``, or plain text."""
    body: Any
    try:
        body = _json.loads(response.content) if response.content else None
    except ValueError:
        body = response.text()
    message, code = _message_and_code(body)
    if not message:
        message = _reason(response.status)
    return status_error_class(response.status)(
        message,
        status=response.status,
        body=body,
        headers=response.headers,
        request_id=response.request_id,
        code=code,
        retry_after=parse_retry_after(response.headers),
        method=response.method,
        url=response.url,
    )


def _message_and_code(body: Any) -> tuple[str, str | None]:
    if isinstance(body, str):
        return body.strip()[:500], None
    if not isinstance(body, dict):
        return "", None
    err = body.get("error")
    if isinstance(err, dict):
        msg = err.get("message") or err.get("msg") or ""
        code = err.get("code") or err.get("type")
        return str(msg), (str(code) if code is not None else None)
    code = body.get("code")
    code_s = str(code) if code is not None else None
    if isinstance(err, str):
        return err, code_s
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail, code_s
    if isinstance(detail, list) and detail:
        parts = []
        for item in detail[:5]:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
        return "; ".join(parts), code_s
    msg = body.get("message") or body.get("msg")
    return (str(msg) if msg else ""), code_s


def _reason(status: int) -> str:
    try:
        from http import HTTPStatus

        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return (url.scheme, url.host, url.port)


DEFAULT_KEEPALIVE = 4.0
"""Seconds an idle pooled connection is kept: below the common server idle timeouts (uvicorn's and Node's 5 s), so
the client, not the server, closes it. (A server that closes sooner, say gunicorn's 2 s, is covered by the resend of a
request that provably never reached it.)"""


class _Connector(aiohttp.TCPConnector):
    """A TCPConnector that counts the connections it opens: a request that failed while the count did not move went
    out on a pooled connection."""

    created = 0

    async def _create_connection(self, *args: Any, **kwargs: Any) -> Any:
        self.created += 1
        return await super()._create_connection(*args, **kwargs)


class Transport:
    """One endpoint: base URL, headers (some secret), timeouts, retry policy and budget, rate limiter, error decoding.

    ``trust_env`` (the default) honours the environment as requests-based SDKs do: ``HTTP_PROXY`` / ``HTTPS_PROXY`` /
    ``ALL_PROXY`` with ``NO_PROXY``, and a CA bundle from ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` / ``REQUESTS_CA_BUNDLE``
    / ``CURL_CA_BUNDLE``; ``trust_env=False`` ignores all of them. (``.netrc`` is not read: this library's
    credentials are explicit.) ``trace_configs`` are aiohttp ``TraceConfig`` objects given to every session the
    Transport creates: they see every attempt of a retried call. ``retry_budget`` bounds what retries add to the load
    during an outage (``None`` turns it off).
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        secret_headers: Mapping[str, str] | None = None,
        timeout: TimeoutLike = None,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
        session: aiohttp.ClientSession | None = None,
        max_response_size: int = 64 * 1024 * 1024,
        max_event_size: int = 16 * 1024 * 1024,
        error_factory: ErrorFactory = default_error,
        response_hook: ResponseHook | None = None,
        request_id_headers: Sequence[str] = ("x-request-id", "request-id"),
        connection_limit: int = 256,
        keepalive_timeout: float = DEFAULT_KEEPALIVE,
        trust_env: bool = True,
        trace_configs: Sequence[aiohttp.TraceConfig] | None = None,
        retry_budget: RetryBudget | None = MISSING,
    ) -> None:
        self.base_url = base_url
        self.retry_budget: RetryBudget | None = RetryBudget() if retry_budget is MISSING else retry_budget
        self.trust_env = trust_env
        self.trace_configs: tuple[aiohttp.TraceConfig, ...] = tuple(trace_configs or ())
        self._keepalive_timeout = keepalive_timeout
        # From the environment (trust_env), read once: {scheme: (proxy URL without credentials, its auth)}.
        self._proxies: dict[str, tuple[URL, Mapping[str, str] | None]] = (
            _env_proxies() if trust_env and session is None else {}
        )
        self._proxy_cache: dict[str, URL | None] = {}
        self.timeout = to_timeout(timeout, DEFAULT_TIMEOUT)
        self.retry = retry or RetryPolicy()
        self.rate_limiter = rate_limiter
        self.max_response_size = max_response_size
        self.max_event_size = max_event_size
        self.error_factory = error_factory
        self.response_hook = response_hook
        self.request_id_headers = tuple(request_id_headers)
        self._connection_limit = connection_limit
        self._headers: dict[str, str] = dict(headers or {})
        self._secret_names: set[str] = set()
        self._public: dict[str, str] = dict(self._headers)
        self._secrets: dict[str, str] = {}
        self._json_call_headers: dict[str, str] = dict(_JSON_HEADERS)  # the secrets + the JSON content type
        for name, value in (secret_headers or {}).items():
            self.set_header(name, value, secret=True)
        self._user_session = session
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._closers: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}
        # The last loop used, its session, and whether the loop says which thread runs it (asyncio's own loops).
        self._last: tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession, bool] | None = None
        self._policies: dict[object, RetryPolicy] = {}
        self._urls: dict[str, URL] = {}
        self._shown_urls: dict[str, str] = {}
        self._closed = False
        # A Transport made by derive() takes its sessions from the one that owns the pool (``_pool``), whose
        # sessions carry the owner's headers as defaults: a derived one sends its public headers on each request.
        self._pool: Transport | None = None
        self._headers_per_request = session is not None

    def __repr__(self) -> str:
        shown = {k: ("***" if k.lower() in self._secret_names else v) for k, v in self._headers.items()}
        return f"Transport({_loggable(self.base_url)!r}, headers={shown})"

    @property
    def base_url(self) -> str:
        return self._base_url

    @base_url.setter
    def base_url(self, value: str) -> None:
        self._base_url = value.rstrip("/")

    @property
    def closed(self) -> bool:
        return self._closed

    def set_header(self, name: str, value: str | None, *, secret: bool = False) -> None:
        """Set (or with ``None`` remove) a header sent on every request. Secret values never appear in reprs/logs."""
        for key in [k for k in self._headers if k.lower() == name.lower()]:
            del self._headers[key]
        if value is None:
            self._secret_names.discard(name.lower())
        else:
            self._headers[name] = value
            if secret:
                self._secret_names.add(name.lower())
        self._public = {k: v for k, v in self._headers.items() if k.lower() not in self._secret_names}
        self._secrets = {k: v for k, v in self._headers.items() if k.lower() in self._secret_names}
        self._json_call_headers = {**self._secrets, **_JSON_HEADERS}
        # Our own sessions carry the public headers as their defaults (cheaper than merging per request); secrets go
        # per request, and only to the origin they belong to.
        for session in getattr(self, "_sessions", {}).values():
            session.headers.popall(name, None)
            if value is not None and not secret:
                session.headers[name] = value

    # -- sessions ------------------------------------------------------------------------------------------
    def _session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("this client is closed; create a new one")
        if self._user_session is not None:
            return self._user_session
        if self._pool is not None:
            return self._pool._session()
        last = self._last
        # The loop of the last call is running in this very thread: it is the running loop (a thread runs one loop
        # at a time). Cheaper than asyncio.get_running_loop(), which makes a getpid() system call on Python 3.11.
        # (Only for asyncio's own loops, which keep the id of the thread running them.)
        if last is not None and last[2] and last[0]._thread_id == get_ident():  # type: ignore[attr-defined]
            return last[1]
        loop = asyncio.get_running_loop()
        if last is not None and last[0] is loop:
            return last[1]
        session = self._sessions.get(loop)
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                connector=_Connector(
                    limit=self._connection_limit,
                    limit_per_host=0,
                    keepalive_timeout=self._keepalive_timeout,
                    ssl=_env_ssl_context() if self.trust_env else True,
                ),
                timeout=self.timeout.for_aiohttp(),
                headers=self._public,
                # API clients have no use for cookies; a jar costs CPU on every request and response.
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
                # aiohttp's own trust_env costs two thread hops per request (netrc, proxy lookup) and would add .netrc
                # credentials: the environment is read here once instead (proxies, CA bundle).
                trust_env=False,
                trace_configs=list(self.trace_configs) or None,
            )
            if "_retry_connection" in aiohttp.ClientSession.ATTRS:
                # aiohttp >= 3.10 silently re-sends GET/PUT/DELETE once when a connection drops; our one retry loop
                # decides that (a PUT may be a non-idempotent run), so the hidden retry is turned off.
                session._retry_connection = False
            self._sessions[loop] = session
            for other in [lp for lp in self._sessions if lp.is_closed()]:
                del self._sessions[other]
                self._closers.pop(other, None)
            bridge = loop_owner()
            # A loop of the sync API's bridge: close this session before the bridge closes the loop (at exit, or
            # when its thread has died), so no session outlives its loop.
            if bridge is None or not bridge.on_loop_close(loop, session.close):
                # Any other loop (asyncio.run, a test runner): close the session when the loop shuts down its async
                # generators, just before it closes. Without it, `asyncio.run(client.call())` twice without
                # aclose() left the first session unclosed on a dead loop (ResourceWarning, leaked sockets).
                self._closers[loop] = _park_closer(session)
        self._last = (loop, session, isinstance(loop, asyncio.BaseEventLoop))
        return session

    def derive(
        self,
        *,
        timeout: TimeoutLike = None,
        max_attempts: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Transport:
        """A Transport with other defaults (``None`` keeps this one's) that shares this one's connection pool,
        rate limiter and retry budget. Closing it closes nothing shared; closing the pool's owner stops it too."""
        other = copy.copy(self)
        other._pool = self._pool or self
        other._user_session = self._user_session
        other._headers_per_request = True
        other._sessions, other._closers, other._last = {}, {}, None
        other._policies, other._urls, other._shown_urls = {}, dict(self._urls), dict(self._shown_urls)
        other._headers = dict(self._headers)
        other._secret_names = set(self._secret_names)
        other._public, other._secrets = dict(self._public), dict(self._secrets)
        other._json_call_headers = dict(self._json_call_headers)
        if timeout is not None:
            other.timeout = to_timeout(timeout, self.timeout)
        if max_attempts is not None and max_attempts != self.retry.max_attempts:
            other.retry = self.retry.evolve(max_attempts=max_attempts)
        for name, value in (headers or {}).items():
            other.set_header(name, value, secret=name.lower() in self._secret_names)
        return other

    async def aclose(self) -> None:
        """Close the sessions this Transport created (on every loop). A user's session is left open."""
        self._closed = True
        if self._pool is not None:
            return  # the pool belongs to the Transport this one was derived from
        self._last = None
        sessions, self._sessions = self._sessions, {}
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        closers, self._closers = self._closers, {}
        closer = closers.pop(current, None) if current is not None else None
        if closer is not None:
            await closer.aclose()  # closes this loop's session; the others' closers find theirs closed
        bridge = loop_owner()
        for loop, session in sessions.items():
            if session.closed or loop.is_closed():
                continue
            if loop is current:
                await session.close()
            elif bridge is not None and bridge.owns(loop):
                # A loop of the sync API's bridge may stop or start between a look and a hand-over (its thread
                # is between two calls): the bridge reaches it under the loop's own lock, so this cannot hang.
                await bridge.arun_on(loop, session.close)
            elif loop.is_running():
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(session.close(), loop))
            else:
                # An idle loop of another thread (the sync API): run the close on it from a worker thread.
                await asyncio.to_thread(loop.run_until_complete, session.close())

    # -- requests ------------------------------------------------------------------------------------------
    def _policy(self, max_attempts: int | None, retry: RetryPolicy | None = None) -> RetryPolicy:
        base = self.retry if retry is None else retry
        if max_attempts is None or max_attempts == base.max_attempts:
            return base
        key = (base, max_attempts) if retry is not None else max_attempts
        policy = self._policies.get(key)
        if policy is None:
            policy = self._policies[key] = base.evolve(max_attempts=max_attempts)
        return policy

    def _build(
        self,
        method: str,
        path: str,
        base_url: str | None,
        json: Any,
        data: Any,
        headers: Mapping[str, str] | None,
    ) -> tuple[str, Any, dict[str, str]]:
        absolute = path.startswith(("http://", "https://"))
        url = path if absolute else (base_url.rstrip("/") if base_url else self._base_url) + path
        if not absolute and not self._headers_per_request and not self._proxies:
            # The common call: the endpoint's own URL on our session, which sends the public headers itself. The
            # secrets (and the JSON content type) come from one dict made when the headers last changed.
            if json is not MISSING:
                data = _json.dumps(json)
                hdrs = self._json_call_headers.copy()
            else:
                hdrs = self._secrets.copy()
            if headers:
                hdrs.update(headers)
            return url, data, hdrs
        # Our sessions send the public headers as defaults; a user's session needs them on each request.
        hdrs = dict(self._public) if self._headers_per_request else {}
        # Credentials go to the endpoint (or a per-call endpoint the caller named), never to an absolute URL of
        # another origin (a status URL a server handed us, say).
        if self._secrets and (not absolute or _origin(URL(url)) == _origin(URL(self._base_url))):
            hdrs.update(self._secrets)
        if self._proxies and url.startswith("http://"):
            # A plain-HTTP request goes to the proxy itself, so its credentials ride on the request (aiohttp only
            # moves a deprecated BasicAuth there); an HTTPS one carries them on the CONNECT (proxy_headers).
            proxy_headers = self._proxy_headers_for(url)
            if proxy_headers:
                hdrs.update(proxy_headers)
        if json is not MISSING:
            data = _json.dumps(json)
            hdrs.update(_JSON_HEADERS)
        if headers:
            hdrs.update(headers)
        return url, data, hdrs

    async def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        json: Any = MISSING,
        data: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: TimeoutLike = None,
        max_attempts: int | None = None,
        retry: RetryPolicy | None = None,
        base_url: str | None = None,
        cost: float = 1.0,
        permits: Iterable[tuple[RateLimiter, float]] = (),
        max_response_size: int | None = None,
    ) -> Response:
        """Send one logical request (with retries) and return the whole response; errors raise.

        ``data`` may be bytes, an aiohttp payload, or a zero-argument callable that makes a fresh body for each
        attempt (a streamed upload that can be retried). A one-shot body (an async iterator) is never re-sent.
        ``retry`` replaces the Transport's policy for this call (``max_attempts`` still applies on top).
        """
        url, body, hdrs = self._build(method, path, base_url, json, data, headers)
        tmo = self.timeout if timeout is None else to_timeout(timeout, self.timeout)
        replayable = type(body) is bytes or body is None or isinstance(body, (bytes, str)) or callable(body)
        args = (
            method,
            url,
            body,
            params,
            hdrs,
            tmo._aiohttp or tmo.for_aiohttp(),  # (built on first use: aiohttp is imported lazily)
            tmo.total,
            max_response_size or self.max_response_size,
            replayable,
        )
        # Before sending: a bad max_attempts raises here.
        policy = self.retry if max_attempts is None and retry is None else self._policy(max_attempts, retry)
        # The first attempt inline (the common, successful case pays for no extra coroutine); any failure goes to
        # the one attempt loop, which decides and runs the retries.
        started = time.perf_counter()
        try:
            limiter = self.rate_limiter
            if limiter is not None and (type(limiter) is not RateLimiter or not limiter._take_now(cost)):
                await limiter.acquire(cost)  # (a permit that needs no wait is taken inline, without a coroutine)
            for extra, amount in permits:
                await extra.acquire(amount)
            response: Response = await self._send(*args, 1)
        except APIError as err:
            result: Response = await self._attempts(
                self._send, args, policy, idempotent, replayable, method, url, cost, permits, (err, started)
            )
            return result
        budget = self.retry_budget
        if budget is not None and budget._tokens < budget.capacity:
            budget.record_success()
        return response

    async def _attempts(
        self,
        send: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        policy: RetryPolicy,
        idempotent: bool,
        replayable: bool,
        method: str,
        url: str,
        cost: float,
        permits: Iterable[tuple[RateLimiter, float]],
        failed: tuple[APIError, float] | None = None,
    ) -> T:
        """THE attempt loop, for plain, streamed and raw requests alike: take the permits, run one attempt
        (``send(*args, attempt)``), and on a failure let the policy and the retry budget decide. ``failed`` is the
        error (and start time) of a first attempt the caller already ran."""
        attempt = 1
        while True:
            if failed is None:
                started = time.perf_counter()
                try:
                    if self.rate_limiter is not None or permits:
                        await self._permits(cost, permits)
                    result = await send(*args, attempt)
                except APIError as exc:
                    failed = (exc, started)
                else:
                    budget = self.retry_budget
                    if budget is not None:
                        budget.record_success(retried=attempt > 1)
                    return result
            err, started = failed
            if not replayable and attempt == 1 and not (isinstance(err, APIConnectionError) and not err.sent):
                policy = policy.evolve(max_attempts=1)  # a one-shot body was spent by this attempt
            await self._after_failure(err, policy, attempt, idempotent, method, url, started)
            failed = None
            attempt += 1

    async def _permits(self, cost: float, permits: Iterable[tuple[RateLimiter, float]]) -> None:
        if self.rate_limiter is not None:
            await self.rate_limiter.acquire(cost)
        for limiter, amount in permits:
            await limiter.acquire(amount)

    async def _after_failure(
        self,
        err: APIError,
        policy: RetryPolicy,
        attempt: int,
        idempotent: bool,
        method: str,
        url: str,
        started: float,
    ) -> None:
        """Raise ``err`` (or what it means) when it is final; otherwise wait before the next attempt."""
        decision = policy.decide(err, attempt=attempt, idempotent=idempotent)
        reason = decision.reason
        if decision.retry and self.retry_budget is not None and not self.retry_budget.withdraw(err):
            decision = _retry.RetryDecision(False, error=err)
            reason = (
                "not retried: the retry budget is spent (most recent calls to this endpoint failed; retries resume "
                "as calls succeed again)"
            )
        status = err.status if isinstance(err, APIStatusError) else None
        request_id = err.request_id if isinstance(err, APIStatusError) else None
        if not decision.retry:
            if not idempotent and type(err) is APIConnectionError and err.sent:
                raise OutcomeUnknownError(
                    f"{err.message}; the request was sent, so it may or may not have run (not retried)",
                    method=method,
                    url=_loggable(url),
                ) from err
            if reason:
                err.message = f"{err.message} ({reason})"
                err.args = (err.message,)
            raise err
        if isinstance(err, RateLimitError) and err.retry_after and self.rate_limiter is not None:
            self.rate_limiter.pause(err.retry_after)
        level = logging.WARNING if isinstance(err, APITimeoutError) else logging.INFO
        if log.isEnabledFor(level):
            extra = (
                " (the first attempt may still be running on the server)" if isinstance(err, APITimeoutError) else ""
            )
            log.log(
                level,
                "retrying %s %s in %.2fs after attempt %d of %d failed: %s%s",
                method,
                _loggable(url),
                decision.delay,
                attempt,
                policy.max_attempts,
                err,
                extra,
                extra=_fields(method, url, attempt, status, time.perf_counter() - started, request_id),
            )
        await _retry.sleep(decision.delay)

    async def _send(
        self,
        method: str,
        url: str,
        body: Any,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str],
        client_timeout: aiohttp.ClientTimeout,
        shown_timeout: float | None,
        cap: int | None,
        replayable: bool,
        attempt: int,
    ) -> Any:
        """One attempt, for every kind of request: send, follow same-origin redirects, turn an error status into its
        exception; then, with a size ``cap``, read the whole body into a :class:`Response`, or without one (streams,
        downloads) return the unread ``aiohttp.ClientResponse``.

        A request that fails on a pooled keep-alive connection before any byte of an answer, while no new connection
        was opened, raced the server closing that idle connection: the server never read it, so it is sent again at
        once on a fresh connection, idempotent or not (as Go's and urllib3's pools do for a connection that went stale).
        """
        session = self._session()
        connector = session.connector
        counting = type(connector) is _Connector
        redirects = 0
        resent = False
        debug = log.isEnabledFor(logging.DEBUG)
        while True:
            created = connector.created if counting else -1  # type: ignore[union-attr]
            started = time.perf_counter() if debug else 0.0
            try:
                resp = await session.request(
                    method,
                    self._url(url),
                    data=_attempt_body(body),
                    params=params,
                    headers=headers or None,
                    timeout=client_timeout,
                    allow_redirects=False,
                    proxy=self._proxy_for(url) if self._proxies else None,
                    proxy_headers=self._proxy_headers_for(url) if self._proxies and url.startswith("https:") else None,
                )
            except RuntimeError:
                if self._closed:
                    # aclose() from another thread closed the session between this call's check and its send.
                    raise ClientClosedError("this client is closed; create a new one") from None
                raise
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                if (
                    counting
                    and not resent
                    and replayable
                    and connector.created == created  # type: ignore[union-attr]
                    and _dropped_before_answer(exc)
                ):
                    resent = True
                    if debug:
                        log.debug(
                            "%s %s: the pooled connection was closed by the server as the request went out; "
                            "sending it again on a new connection",
                            method,
                            _loggable(url),
                            extra=_fields(method, url, attempt, None, time.perf_counter() - started, None),
                        )
                    continue
                raise translate_transport_error(exc, method=method, url=_loggable(url), timeout=shown_timeout) from exc
            status = resp.status
            if debug:
                request_id = self._request_id(resp.headers)
                log.debug(
                    "%s %s -> %d (attempt %d, %.1f ms to the response head, request id %s)",
                    method,
                    _loggable(url),
                    status,
                    attempt,
                    (time.perf_counter() - started) * 1000,
                    request_id,
                    extra=_fields(method, url, attempt, status, time.perf_counter() - started, request_id),
                )
            if status in _REDIRECTS:
                try:
                    url = self._redirect_target(resp, url, method)
                finally:
                    resp.release()
                if status == 303:
                    method, body = "GET", None
                redirects += 1
                if redirects > _MAX_REDIRECTS:
                    raise _too_many_redirects(status, method, url)
                continue
            if self.response_hook is not None:
                self.response_hook(status, resp.headers)
            if status < 400:
                if cap is None:
                    return resp
                # Read here rather than in a helper coroutine: every successful call comes this way. A body of a
                # known length within the cap is read at once; anything else is read in chunks against the cap.
                length = resp.content_length
                try:
                    if length is not None and length <= cap and "Content-Encoding" not in resp.headers:
                        content = await resp.read()
                    else:
                        content = await self._read_capped(resp, cap, method, url)
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                    resp.close()
                    raise translate_transport_error(
                        exc, method=method, url=_loggable(url), timeout=shown_timeout
                    ) from exc
                except BaseException:
                    resp.close()
                    raise
                resp.release()
                resp_headers = resp.headers
                request_id = self._request_id(resp_headers)
                return _response(status, resp_headers, content, method, self._shown(url), request_id)
            if status >= 500:
                _no_reuse(resp)
            try:
                content = await self._read_capped(resp, self.max_response_size, method, url)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise translate_transport_error(exc, method=method, url=_loggable(url), timeout=shown_timeout) from exc
            finally:
                resp.release()
            raise self._scrub(
                self.error_factory(
                    Response(
                        status=status,
                        headers=resp.headers,
                        content=content,
                        method=method,
                        url=_loggable(url),
                        request_id=self._request_id(resp.headers),
                    )
                )
            )

    def _scrub(self, err: APIStatusError) -> APIStatusError:
        """Mask our secrets in an error's message: some servers echo a rejected key back ("Incorrect API key
        provided: sk-…"), and the message ends up in logs and tracebacks."""
        message = err.message
        for name, value in self._headers.items():
            if name.lower() not in self._secret_names:
                continue
            # The whole value, and its last word alone (the key in "Bearer <key>"); short words are not secrets.
            for secret in {value, value.rsplit(" ", 1)[-1]}:
                if len(secret) >= 8 and secret in message:
                    message = message.replace(secret, "***")
        if message != err.message:
            err.message = message
            err.args = (message,)
        return err

    def _url(self, url: str) -> URL:
        # Parsing a URL costs several µs; an API client calls the same few URLs over and over.
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) > 1024:
                self._urls.clear()
            parsed = self._urls[url] = URL(url)
        return parsed

    def _shown(self, url: str) -> str:
        """``_loggable(url)``, remembered: every response names its URL, and it is one of a few."""
        shown = self._shown_urls.get(url)
        if shown is None:
            if len(self._shown_urls) > 1024:
                self._shown_urls.clear()
            shown = self._shown_urls[url] = _loggable(url)
        return shown

    def _proxy_for(self, url: str) -> URL | None:
        """The proxy for ``url`` from the environment (``None``: go direct, NO_PROXY matched or none is set)."""
        key = url.split("/", 3)
        origin = "/".join(key[:3])
        try:
            return self._proxy_cache[origin]
        except KeyError:
            pass
        target = self._url(url)
        chosen = self._proxies.get(target.scheme) or self._proxies.get("all")
        proxy = None
        if chosen is not None and not _no_proxy(target.host or "", target.port):
            proxy = chosen[0]
        if len(self._proxy_cache) > 256:
            self._proxy_cache.clear()
        self._proxy_cache[origin] = proxy
        return proxy

    def _proxy_headers_for(self, url: str) -> Mapping[str, str] | None:
        proxy = self._proxy_for(url)
        if proxy is None:
            return None
        for candidate, headers in self._proxies.values():
            if candidate == proxy:
                return headers
        return None

    def _request_id(self, headers: Mapping[str, str]) -> str | None:
        for name in self.request_id_headers:
            value = headers.get(name)
            if value:
                return value
        return None

    def _redirect_target(self, resp: aiohttp.ClientResponse, url: str, method: str) -> str:
        location = resp.headers.get("Location")
        if not location:
            raise RedirectError(
                "redirect without a Location header", status=resp.status, method=method, url=_loggable(url)
            )
        current = URL(url)
        target = current.join(URL(location))
        if _origin(target) != _origin(current):
            raise RedirectError(
                f"refused a redirect from {current.origin()} to another origin ({target.origin()}): it would carry "
                "credentials there",
                status=resp.status,
                method=method,
                url=_loggable(url),
            )
        return str(target)

    async def _read_capped(self, resp: aiohttp.ClientResponse, cap: int, method: str, url: str) -> bytes:
        length = resp.content_length
        if length is not None and "Content-Encoding" not in resp.headers:
            if length > cap:
                resp.close()
                raise ResponseTooLargeError(
                    f"{method} {_loggable(url)}: response of {length} bytes passes the cap of {cap} bytes"
                )
            return await resp.read()
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = await resp.content.readany()
            if not chunk:
                break
            total += len(chunk)
            if total > cap:
                resp.close()
                raise ResponseTooLargeError(
                    f"{method} {_loggable(url)}: response passed the cap of {cap} bytes (after decompression)"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    # -- streams ------------------------------------------------------------------------------------------
    async def _open(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        idle_timeout: float | None = 60.0,
        cost: float = 1.0,
        permits: Iterable[tuple[RateLimiter, float]] = (),
        **request: Unpack[StreamRequest],
    ) -> aiohttp.ClientResponse:
        """Send with retries (the same attempt loop as ``request``) until a non-error response head arrives; return
        it unread. ``functools.partial`` of it is the opener of a stream (sent when the stream is entered)."""
        url, body, hdrs = self._build(
            method,
            path,
            request.get("base_url"),
            request.get("json", MISSING),
            request.get("data"),
            request.get("headers"),
        )
        tmo = to_timeout(request.get("timeout"), self.timeout)
        # As in request(): a one-shot body (an async iterator) is spent by the first attempt and must not be re-sent.
        replayable = body is None or isinstance(body, (bytes, str)) or callable(body)
        result: aiohttp.ClientResponse = await self._attempts(
            self._send,
            (
                method,
                url,
                body,
                request.get("params"),
                hdrs,
                tmo.for_stream(idle_timeout),
                tmo.connect,
                None,
                replayable,
            ),
            self._policy(request.get("max_attempts"), request.get("retry")),
            idempotent,
            replayable,
            method,
            url,
            cost,
            permits,
        )
        return result

    def stream(
        self,
        method: str,
        path: str,
        *,
        decoder: Decoder[Any],
        parse: Callable[[Any], T | None],
        idempotent: bool,
        terminal: Callable[[T], bool] | None = None,
        require_terminal: bool = False,
        idle_timeout: float | None = 60.0,
        cost: float = 1.0,
        permits: Iterable[tuple[RateLimiter, float]] = (),
        what: str = "stream",
        **request: Unpack[StreamRequest],
    ) -> EventStream[T]:
        """A lazily opened stream of typed events; retries happen only before the first byte of the body."""
        opener = functools.partial(
            self._open,
            method,
            path,
            idempotent=idempotent,
            idle_timeout=idle_timeout,
            cost=cost,
            permits=permits,
            **request,
        )
        return EventStream(
            opener,
            decoder,
            parse,
            terminal=terminal,
            require_terminal=require_terminal,
            idle_timeout=idle_timeout,
            what=what,
            idempotent=idempotent,
        )

    def open(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool = True,
        idle_timeout: float | None = 60.0,
        **request: Unpack[StreamRequest],
    ) -> ByteStream:
        """A raw body stream (downloads): ``async with transport.open("GET", p) as body: async for chunk in body``."""
        opener = functools.partial(
            self._open, method, path, idempotent=idempotent, idle_timeout=idle_timeout, **request
        )
        return ByteStream(opener, idle_timeout=idle_timeout, what=f"{method} {_loggable(path)}", idempotent=idempotent)


class _RawDecoder:
    __slots__ = ()

    def feed(self, chunk: bytes) -> list[bytes]:
        return [chunk]

    def end(self) -> list[bytes]:
        return []


def _identity(chunk: bytes) -> bytes:
    return chunk


class ByteStream(EventStream[bytes]):
    """The body of a response as a stream of byte chunks (``headers`` and ``status`` once open)."""

    def __init__(
        self,
        open_response: Callable[[], Awaitable[aiohttp.ClientResponse]],
        *,
        idle_timeout: float | None,
        what: str,
        idempotent: bool = True,
    ) -> None:
        super().__init__(
            open_response, _RawDecoder(), _identity, idle_timeout=idle_timeout, what=what, idempotent=idempotent
        )

    async def __aenter__(self) -> ByteStream:
        await super().__aenter__()
        return self

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body (optionally capped)."""
        out = bytearray()
        async for chunk in self:
            out += chunk
            if limit is not None and len(out) > limit:
                await self.aclose()
                raise ResponseTooLargeError(f"{self._what}: body passed the cap of {limit} bytes")
        return bytes(out)


async def _close_at_loop_end(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        if not session.closed:
            await session.close()


def _park_closer(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """An async generator, run to its ``yield`` now, that closes ``session`` when it is closed: by the loop's
    ``shutdown_asyncgens()`` (asyncio.run and asyncio.Runner call it before closing the loop), or by the loop's
    finalizer when the Transport is garbage-collected. Unlike a parked task, it shows in no ``all_tasks()``."""
    closer = _close_at_loop_end(session)
    step: Any = closer.__anext__()  # the loop registers the generator here (its first-iteration hook)
    with contextlib.suppress(StopIteration):  # StopIteration: it is parked at its yield
        step.send(None)
    return closer


def _no_reuse(resp: aiohttp.ClientResponse) -> None:
    """Keep this response's connection out of the pool. Servers (uvicorn) drop the connection after an unhandled
    error without a "Connection: close"; reused, it would fail the next request.

    aiohttp hands a connection back to the pool the moment the body ends, so closing the response after reading is
    too late: a body still coming gets its connection marked to close on release; a body that came with the head
    (its connection is already idle in the pool, and no other task has run since) has its connection closed now.
    """
    connection = resp.connection
    if connection is not None:
        if connection.protocol is not None:
            connection.protocol.force_close()
        return
    protocol = getattr(resp, "_protocol", None)
    if protocol is not None:
        protocol.close()


def _too_many_redirects(status: int, method: str, url: str) -> RedirectError:
    # A redirect loop is the server's configuration, not a passing failure: final, never retried.
    return RedirectError(
        f"too many redirects (more than {_MAX_REDIRECTS}) for {method} {_loggable(url)}",
        status=status,
        method=method,
        url=_loggable(url),
    )


_LARGE_BODY = 1 << 20


def _attempt_body(body: Any) -> Any:
    """The body for one attempt: a factory is called afresh; large bytes go as a file-like object, which aiohttp
    streams in chunks instead of writing (and warning about) one huge buffer."""
    if type(body) is bytes and len(body) <= _LARGE_BODY:
        return body  # the common case (a JSON body) first
    if callable(body):
        return body()
    if isinstance(body, (bytes, bytearray)) and len(body) > _LARGE_BODY:
        return io.BytesIO(body)
    return body


def _dropped_before_answer(exc: BaseException) -> bool:
    """The connection ended before a single byte of an answer: a clean close with nothing parsed, or a reset."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        # aiohttp puts the partly parsed response head in ``message`` when some of it came; else a plain string.
        return isinstance(exc.message, str)
    if isinstance(exc, aiohttp.ClientOSError) and not isinstance(exc, aiohttp.ClientConnectorError):
        if exc.errno in (errno.ECONNRESET, errno.EPIPE):
            return True
        # "Can not write request body": the write found the transport already closing (the server's close had
        # arrived), so not even the request went out.
        cause = exc.__cause__ or exc.__context__
        return isinstance(cause, (ConnectionResetError, BrokenPipeError))
    return False


def _fields(
    method: str, url: str, attempt: int, status: int | None, elapsed: float, request_id: str | None
) -> dict[str, Any]:
    """The structured attributes of a log record (``extra=``): never a header, never a query string."""
    return {
        "method": method,
        "url": _loggable(url),
        "attempt": attempt,
        "status": status,
        "elapsed": elapsed,
        "request_id": request_id,
    }


def _env_proxies() -> dict[str, tuple[URL, Mapping[str, str] | None]]:
    """``HTTP_PROXY`` and friends (upper or lower case, as urllib reads them), each split into the proxy URL and
    its credentials, so credentials go only in the proxy's ``Proxy-Authorization`` header and never into a log line
    or a repr."""
    out: dict[str, tuple[URL, Mapping[str, str] | None]] = {}
    for scheme, value in urllib.request.getproxies_environment().items():
        if scheme not in ("http", "https", "all") or not value:
            continue
        proxy = URL(value if "://" in value else f"http://{value}")
        if proxy.scheme not in ("http", "https"):
            # aiohttp speaks to HTTP(S) proxies only; a socks5:// ALL_PROXY is for other tools.
            log.debug("ignoring the %s proxy from the environment: only http(s) proxies are supported", proxy.scheme)
            continue
        auth = (
            {"Proxy-Authorization": aiohttp.encode_basic_auth(proxy.user, proxy.password or "")} if proxy.user else None
        )
        out[scheme] = (proxy.with_user(None), auth)
    return out


def _no_proxy(host: str, port: int | None) -> bool:
    """Whether ``NO_PROXY`` (or ``no_proxy``) exempts ``host``: ``*``, a host or domain suffix (a leading dot
    optional), ``host:port``, or an IP network such as ``10.0.0.0/8``, as requests reads it."""
    raw = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
    host = host.lower().strip("[]")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in raw.split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if address is not None and "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name, sep, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if sep and entry_port.isdigit():
            if port is None or int(entry_port) != port:
                continue
        else:
            name = entry
        name = name.lstrip(".").strip("[]")
        if host == name or host.endswith("." + name):
            return True
    return False


def _env_ssl_context() -> ssl.SSLContext | bool:
    """A verifying SSL context on the CA bundle the environment names (``True``: aiohttp's default context, which
    already reads ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` as they were when it was made)."""
    cafile = os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    capath = os.environ.get("SSL_CERT_DIR")
    if not cafile and not capath:
        return True
    return _ssl_context(cafile or None, capath or None)


# What aiohttp's default context (made when aiohttp was imported, just before this module) loaded: the environment's
# SSL_CERT_FILE / SSL_CERT_DIR of that moment, else OpenSSL's defaults.
_VERIFY_PATHS_AT_IMPORT = ssl.get_default_verify_paths()


@functools.lru_cache(maxsize=8)
def _ssl_context(cafile: str | None, capath: str | None) -> ssl.SSLContext | bool:
    # Loading a bundle takes tens of milliseconds: once per process and bundle, shared by every session (an
    # SSLContext may serve many connections, threads and loops). The system's own bundle is aiohttp's default.
    defaults = _VERIFY_PATHS_AT_IMPORT
    if cafile in (None, defaults.cafile) and capath in (None, defaults.capath):
        return True
    return ssl.create_default_context(cafile=cafile, capath=capath)


def _loggable(url: str) -> str:
    """The URL without its query string (which may carry keys) or userinfo."""
    cut = url.split("?", 1)[0]
    scheme, sep, rest = cut.partition("://")
    if sep:
        # Userinfo lives in the authority only: an "@" in the path (a file name, a user id) stays.
        authority, slash, path = rest.partition("/")
        if "@" in authority:
            cut = f"{scheme}://{authority.rsplit('@', 1)[1]}{slash}{path}"
    return cut
