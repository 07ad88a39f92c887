"""The error tree, and the one place where aiohttp's exceptions are translated into it.

::

    AioAgentsError
    ├── APIError                          something went wrong talking to a service
    │   ├── APIConnectionError            no usable answer came back (``.sent``: may the server have seen it?)
    │   │   ├── APITimeoutError           also a builtin ``TimeoutError``
    │   │   └── OutcomeUnknownError       a non-idempotent request was sent and the answer was lost
    │   │       └── StreamOutcomeUnknownError   … its stream was cut (also an ``IncompleteStreamError``)
    │   ├── APIStatusError                an error status (``status``, ``body``, ``request_id``)
    │   │   ├── BadRequestError 400 · AuthenticationError 401 · PaymentRequiredError 402
    │   │   ├── PermissionDeniedError 403 · NotFoundError 404 · ConflictError 409
    │   │   ├── RequestTooLargeError 413 · UnprocessableEntityError 422 · RateLimitError 429 (``retry_after``)
    │   │   ├── InternalServerError 5xx
    │   │   │   └── ServiceUnavailableError 503
    │   │   └── RedirectError             a redirect to another origin was refused
    │   ├── ResponseValidationError       the body is not what the API promises (bad JSON, wrong shape)
    │   ├── ResponseTooLargeError         the body passed the size cap
    │   └── StreamError                   a streaming response broke
    │       ├── StreamIdleTimeout         no bytes for ``idle_timeout`` seconds (also ``TimeoutError``)
    │       ├── EventTooLargeError        one event passed the size cap
    │       └── IncompleteStreamError     the connection ended before the stream's terminal event
    │                                     (``events``, ``last_event_id``: where a caller could resume)
    ├── PollTimeoutError                  a job did not finish within ``wait(timeout=…)`` (also ``TimeoutError``);
    │                                     the service answered every poll, the job is only slow
    ├── InvalidRequestError               bad input, caught before anything is sent (also ``ValueError``)
    └── ClientClosedError                 the client was used after ``aclose()`` (also ``RuntimeError``)

One rule for "did it run?": a non-idempotent call (run, execute, submit) whose outcome cannot be known raises an
:class:`OutcomeUnknownError`, whether it was a plain request whose answer was lost or a stream cut before its final
event (:class:`StreamOutcomeUnknownError`, which is also an :class:`IncompleteStreamError`). A timeout stays an
:class:`APITimeoutError` / :class:`StreamIdleTimeout` (the server may still be running the call) in both cases.

A failing *program* (in a sandbox, an interpreter, a workflow) is data: a result with a status. An exception means the
infrastructure failed or the request was wrong.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDict

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AioAgentsError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConflictError",
    "EventTooLargeError",
    "IncompleteStreamError",
    "InternalServerError",
    "InvalidRequestError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "PollTimeoutError",
    "RateLimitError",
    "RedirectError",
    "RequestTooLargeError",
    "ResponseTooLargeError",
    "ResponseValidationError",
    "ServiceUnavailableError",
    "StreamError",
    "StreamIdleTimeout",
    "StreamOutcomeUnknownError",
    "UnprocessableEntityError",
]


class AioAgentsError(Exception):
    """The root of every error aioagents raises."""


class APIError(AioAgentsError):
    """Something went wrong talking to a service. ``method`` and ``url`` say which call (never with secrets)."""

    def __init__(self, message: str, *, method: str | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.url = url


class APIConnectionError(APIError):
    """No usable answer came back. ``sent`` is False only when the request provably never reached the server."""

    def __init__(self, message: str, *, method: str | None = None, url: str | None = None, sent: bool = True) -> None:
        super().__init__(message, method=method, url=url)
        self.sent = sent


class APITimeoutError(APIConnectionError, TimeoutError):
    """The call took longer than its timeout. For a run, the server may still be executing it."""


class OutcomeUnknownError(APIConnectionError):
    """A non-idempotent request was sent and its answer was lost: it may or may not have run. Not retried."""


class APIStatusError(APIError):
    """The server answered with an error status.

    ``body`` is the decoded JSON body when there was one (else the text), ``code`` a service error code when the body
    carried one, ``request_id`` the server's request id, ``retry_after`` the wait the server asked for (seconds).
    """

    status: int = 0

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message, method=method, url=url)
        self.status = status
        self.body = body
        # Case-insensitive, like the response headers it copies: "X-Should-Retry" and "x-should-retry" are one header.
        self.headers: Mapping[str, str] = CIMultiDict(headers or {})
        self.request_id = request_id
        self.code = code
        self.retry_after = retry_after
        # None: the retry policy decides; True/False: the service knows better (e.g. a quota 429 is final).
        self.retryable = retryable

    def __str__(self) -> str:
        parts = [f"{self.status} {self.message}"]
        if self.code:
            parts.append(f"code={self.code}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        if self.retry_after is not None:
            parts.append(f"retry_after={self.retry_after:g}s")
        return " ".join(parts)


class BadRequestError(APIStatusError):
    status = 400


class AuthenticationError(APIStatusError):
    status = 401


class PaymentRequiredError(APIStatusError):
    status = 402


class PermissionDeniedError(APIStatusError):
    status = 403


class NotFoundError(APIStatusError):
    status = 404


class ConflictError(APIStatusError):
    status = 409


class RequestTooLargeError(APIStatusError):
    status = 413


class UnprocessableEntityError(APIStatusError):
    status = 422


class RateLimitError(APIStatusError):
    status = 429


class InternalServerError(APIStatusError):
    status = 500


class ServiceUnavailableError(InternalServerError):
    status = 503


class RedirectError(APIStatusError):
    """A redirect to another origin was refused: it would carry credentials to a host the user did not name."""


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: RequestTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def status_error_class(status: int) -> type[APIStatusError]:
    """The exception class for an HTTP status."""
    cls = _STATUS_CLASSES.get(status)
    if cls is not None:
        return cls
    return InternalServerError if status >= 500 else APIStatusError


class ResponseValidationError(APIError):
    """The response is not what the API promises: invalid JSON, or a shape the model cannot read."""

    def __init__(self, message: str, *, body: Any = None, method: str | None = None, url: str | None = None) -> None:
        super().__init__(message, method=method, url=url)
        self.body = body


class ResponseTooLargeError(APIError):
    """The response body passed the client's size cap (counted after decompression)."""


class StreamError(APIError):
    """A streaming response broke."""


class StreamIdleTimeout(StreamError, TimeoutError):
    """No bytes arrived on a stream for its idle timeout."""


class EventTooLargeError(StreamError):
    """One event (or line) passed the size cap; the rest of it was not buffered and the connection was closed."""


class IncompleteStreamError(StreamError):
    """The connection ended before the stream's terminal event.

    ``events`` is how many events the stream delivered before it broke, ``last_event_id`` the id of the last one
    where the protocol has ids (SSE's ``id:`` field; ``None`` otherwise): what a caller needs to resume or account.
    """

    def __init__(
        self,
        message: str,
        *,
        events: int = 0,
        last_event_id: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message, method=method, url=url)
        self.events = events
        self.last_event_id = last_event_id


class StreamOutcomeUnknownError(IncompleteStreamError, OutcomeUnknownError):
    """The stream of a non-idempotent call (an execute, a run) was cut before its final event: the call may or may
    not have finished on the server. Caught by ``except OutcomeUnknownError`` (the one rule for a lost outcome) and by
    ``except IncompleteStreamError``. Never retried."""


class PollTimeoutError(AioAgentsError, TimeoutError):
    """A job or run did not reach a final state within the wait's timeout; ``last`` is the last status seen.

    Not an :class:`APIConnectionError`: every poll was answered, the job is only slow (it may still finish). Also a
    builtin ``TimeoutError``.
    """

    def __init__(self, message: str, *, last: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.last = last


class InvalidRequestError(AioAgentsError, ValueError):
    """Bad input, caught before anything was sent."""


class ClientClosedError(AioAgentsError, RuntimeError):
    """The client (or stream) was used after it was closed."""


def translate_transport_error(exc: BaseException, *, method: str, url: str, timeout: float | None) -> APIError:
    """Map an aiohttp/asyncio/OS error raised while sending or reading into the tree. The single boundary."""
    if isinstance(exc, APIError):
        return exc
    # Imported here, not at module level: the error tree is used by code that never sends a request (the in-process
    # eval), and whoever raised an aiohttp error has imported aiohttp already.
    import aiohttp

    # aiohttp >= 3.10 tells a connect timeout from a read timeout.
    connect_timeout_error: type[BaseException] | None = getattr(aiohttp, "ConnectionTimeoutError", None)
    if connect_timeout_error is not None and isinstance(exc, connect_timeout_error):
        # No connection within the connect timeout (waiting for a pool slot included): the request never left.
        return APITimeoutError(
            f"{method} {url}: no connection within the connect timeout", method=method, url=url, sent=False
        )
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        after = f" after {timeout:g}s" if timeout else ""
        return APITimeoutError(f"{method} {url} timed out{after}", method=method, url=url)
    if isinstance(exc, aiohttp.ClientConnectorError):
        # The TCP connection was never made, so the server cannot have seen the request.
        return APIConnectionError(
            f"cannot connect to {url}: {exc.os_error.strerror or exc.os_error}", method=method, url=url, sent=False
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return APIConnectionError(f"{method} {url}: server disconnected", method=method, url=url)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return APIConnectionError(f"{method} {url}: response body broken ({exc})", method=method, url=url)
    if isinstance(exc, aiohttp.ClientOSError):
        return APIConnectionError(f"{method} {url}: connection error ({exc.strerror or exc})", method=method, url=url)
    if isinstance(exc, aiohttp.ClientError):
        return APIConnectionError(f"{method} {url}: {type(exc).__name__}: {exc}", method=method, url=url)
    if isinstance(exc, OSError):
        return APIConnectionError(f"{method} {url}: {exc.strerror or exc}", method=method, url=url)
    return APIConnectionError(f"{method} {url}: {type(exc).__name__}: {exc}", method=method, url=url)
