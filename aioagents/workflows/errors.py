"""Sim workflow errors: aioagents' status classes, each with the SDK-style ``code`` the SDK would have given.

::

    (aioagents' tree)
    ├── SimAPIStatusError                  an aioagents.APIStatusError (any other status), ``server_code``
    ├── SimBadRequestError                 also BadRequestError 400 (code BAD_REQUEST, INVALID_JSON …)
    ├── SimAuthenticationError             also AuthenticationError 401 (UNAUTHORIZED)
    ├── SimUsageLimitError                 also PaymentRequiredError 402 (USAGE_LIMIT_EXCEEDED)
    ├── SimPermissionDeniedError           also PermissionDeniedError 403 (FORBIDDEN)
    ├── SimNotFoundError                   also NotFoundError 404 (NOT_FOUND, TASK_NOT_FOUND …)
    ├── SimConflictError                   also ConflictError 409 (CONFLICT, EXECUTION_ID_CONFLICT)
    ├── SimRequestTooLargeError            also RequestTooLargeError 413 (PAYLOAD_TOO_LARGE)
    ├── SimRateLimitError                  also RateLimitError 429 (always RATE_LIMIT_EXCEEDED)
    ├── SimInternalServerError             also InternalServerError 5xx (EXECUTION_ERROR)
    │   └── SimServiceUnavailableError     also ServiceUnavailableError 503 (SERVICE_UNAVAILABLE,
    │                                      ASYNC_ENQUEUE_AMBIGUOUS)
    ├── SimInvalidRequestError             also InvalidRequestError: caught before sending (INVALID_EXECUTION_TIMEOUT)
    └── WorkflowFailedError                a run that failed, raised by ``ExecutionResult.raise_for_status()``

``code`` is always set (derived from the status when the body names none), so ``except aioagents.RateLimitError as
e: e.code`` reads as the SDK's. The SDK's own class, ``SimStudioError``, is a compat concern: it lives in
:mod:`aioagents.compat.simstudio`, whose client raises these same errors as ``SimStudioError`` s.
When the body carries no code (the v1 routes mostly do not, contract §6) the code is derived from the HTTP status.
Both body shapes are read: v1 ``{"error": "<msg>", "code"?}`` and v2 ``{"error": {"code", "message", "details"?}}``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aioagents._exceptions import (
    AioAgentsError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    InvalidRequestError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ServiceUnavailableError,
)
from aioagents._retry import parse_retry_after

if TYPE_CHECKING:
    from aioagents._transport import Response
    from aioagents.workflows.models import ExecutionResult

__all__ = [
    "SimAPIStatusError",
    "SimAuthenticationError",
    "SimBadRequestError",
    "SimConflictError",
    "SimInternalServerError",
    "SimInvalidRequestError",
    "SimNotFoundError",
    "SimPermissionDeniedError",
    "SimRateLimitError",
    "SimRequestTooLargeError",
    "SimServiceUnavailableError",
    "SimUsageLimitError",
    "WorkflowFailedError",
    "code_for_status",
    "sim_error",
]


class SimAPIStatusError(APIStatusError):
    """An error status the more specific classes do not cover."""

    #: The code the server sent, when it sent one (``code`` may be derived or forced).
    server_code: str | None = None


class SimBadRequestError(BadRequestError, SimAPIStatusError):
    """400: the request was refused (``BAD_REQUEST``; ``INVALID_JSON`` for a body the server could not parse)."""


class SimAuthenticationError(AuthenticationError, SimAPIStatusError):
    """401: the API key is missing or wrong (``UNAUTHORIZED``)."""


class SimUsageLimitError(PaymentRequiredError, SimAPIStatusError):
    """402: the account's usage limit is reached (``USAGE_LIMIT_EXCEEDED``). Never retried."""


class SimPermissionDeniedError(PermissionDeniedError, SimAPIStatusError):
    """403: not allowed, or the workflow is not deployed (``FORBIDDEN``)."""


class SimNotFoundError(NotFoundError, SimAPIStatusError):
    """404: no such workflow, job or run, or the v2 API is switched off on this server (``NOT_FOUND``)."""


class SimConflictError(ConflictError, SimAPIStatusError):
    """409: a reused execution or run id (``EXECUTION_ID_CONFLICT``, ``CONFLICT``)."""


class SimRequestTooLargeError(RequestTooLargeError, SimAPIStatusError):
    """413: the request body passed the server's 10 MiB limit (``PAYLOAD_TOO_LARGE``)."""


class SimRateLimitError(RateLimitError, SimAPIStatusError):
    """429: throttled (``RATE_LIMIT_EXCEEDED``, whatever the server called it); ``retry_after`` in seconds."""


class SimInternalServerError(InternalServerError, SimAPIStatusError):
    """5xx (``EXECUTION_ERROR`` unless the server sent a code)."""


class SimServiceUnavailableError(ServiceUnavailableError, SimInternalServerError):
    """503. With ``code == "ASYNC_ENQUEUE_AMBIGUOUS"`` the job may or may not be queued: it is never retried."""


class SimInvalidRequestError(InvalidRequestError):
    """Bad arguments, caught before anything was sent (``INVALID_EXECUTION_TIMEOUT``, ``INVALID_INPUT``)."""

    def __init__(self, message: str, code: str = "INVALID_INPUT") -> None:
        super().__init__(message)
        self.code = code
        self.status: int | None = None


class WorkflowFailedError(AioAgentsError):
    """A workflow run that failed (``EXECUTION_ERROR``, or the run's own code such as ``TIMEOUT``); ``result`` holds
    the whole result, partial output included."""

    def __init__(self, result: ExecutionResult) -> None:
        message = result.error or f"workflow run ended with status {result.status!r}"
        super().__init__(message)
        self.code = result.error_code or ("TIMEOUT" if result.http_status == 408 else "EXECUTION_ERROR")
        self.status = result.http_status
        self.result = result


class FailedRunAnswer(SimAPIStatusError):
    """Internal: a v1 error status whose body is a run result (``{"success": false, "output", "error", …}``).

    The client turns it back into an :class:`ExecutionResult` with ``success=False``: a failed run is data. It is
    never retried (the run happened)."""

    body_result: Any = None


_STATUS_CLASSES: dict[int, type[SimAPIStatusError]] = {
    400: SimBadRequestError,
    401: SimAuthenticationError,
    402: SimUsageLimitError,
    403: SimPermissionDeniedError,
    404: SimNotFoundError,
    409: SimConflictError,
    413: SimRequestTooLargeError,
    429: SimRateLimitError,
    503: SimServiceUnavailableError,
}

_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    402: "USAGE_LIMIT_EXCEEDED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    408: "TIMEOUT",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    423: "LOCKED",
    429: "RATE_LIMIT_EXCEEDED",
    499: "CLIENT_CLOSED_REQUEST",
    503: "SERVICE_UNAVAILABLE",
}


def code_for_status(status: int, message: str = "") -> str:
    """The SDK-style code for an HTTP status when the body names none."""
    if status == 400 and "invalid json" in message.lower():
        return "INVALID_JSON"
    if status in _STATUS_CODES:
        return _STATUS_CODES[status]
    return "EXECUTION_ERROR" if status >= 500 else f"HTTP_{status}"


def _status_class(status: int) -> type[SimAPIStatusError]:
    cls = _STATUS_CLASSES.get(status)
    if cls is not None:
        return cls
    return SimInternalServerError if status >= 500 else SimAPIStatusError


def _decode(content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace")


def _is_run_result(status: int, body: Any) -> bool:
    # A v1 sync run that failed or timed out answers 500/408/4xx with the run envelope; a preprocess failure has
    # only {"error"}; a cancelled request (499) has no output. [contract §3.1]
    return (
        isinstance(body, dict)
        and body.get("success") is False
        and ("output" in body or "metadata" in body)
        and status not in (429, 503)
    )


def sim_error(response: Response) -> APIStatusError:
    """The Transport's error factory for Sim: pick the class by status, read both body shapes, derive the code."""
    status = response.status
    body = _decode(response.content)
    message = ""
    server_code: str | None = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or "")
            server_code = None if err.get("code") is None else str(err["code"])
        elif err is not None:
            message = str(err)
            server_code = None if body.get("code") is None else str(body["code"])
        if not message and isinstance(body.get("message"), str):
            message = body["message"]
    elif isinstance(body, str) and body.strip() and not body.lstrip().startswith("<"):
        message = body.strip()[:300]
    if not message:
        reason = _reason(status)
        message = f"HTTP {status}: {reason}"
    # The SDK forces RATE_LIMIT_EXCEEDED for every 429, whatever the body says (v2 calls it RATE_LIMITED).
    code = "RATE_LIMIT_EXCEEDED" if status == 429 else (server_code or code_for_status(status, message))
    retryable: bool | None = None
    if server_code == "ASYNC_ENQUEUE_AMBIGUOUS":
        # The job may already be queued: sending again could run it twice [contract §3.1].
        retryable = False
        execution = body.get("executionId") if isinstance(body, dict) else None
        message = f"{message} (the job may or may not be queued; execution id {execution})"
    if status == 402:
        retryable = False
    cls: type[SimAPIStatusError] = _status_class(status)
    if _is_run_result(status, body):
        cls, retryable = FailedRunAnswer, False
    err_obj = cls(
        message,
        status=status,
        body=body,
        headers=response.headers,
        request_id=response.request_id,
        code=code,
        retry_after=parse_retry_after(response.headers),
        retryable=retryable,
        method=response.method,
        url=response.url,
    )
    err_obj.server_code = server_code
    return err_obj


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"
