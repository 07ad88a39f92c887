"""AppBuilder's errors, mapped onto the aioagents error tree.

HTTP statuses follow the contract's table; the shared ones are the core's classes, the rest are defined here::

    APIStatusError
    ├── BadRequestError 400 · AuthenticationError 401 · PermissionDeniedError 403 · NotFoundError 404
    ├── MethodNotAllowedError 405 · ConflictError 409 · LengthRequiredError 411 · UnprocessableEntityError 422
    ├── FailedDependencyError 424 · PreconditionRequiredError 428 · RateLimitError 429
    ├── InternalServerError 5xx
    │   └── InsufficientStorageError 507
    └── AssistantServerError        HTTP 200 whose JSON body is ``{"error": {...}}`` (also mid-stream)

    InvalidRequestError (ValueError)
    └── AssistantValidationError    arguments rejected before any request (``errors`` lists every problem)
    ToolCallError                   a run asked for a tool the caller did not provide, or the tool failed
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from aioagents._exceptions import (
    AioAgentsError,
    APIStatusError,
    InternalServerError,
    InvalidRequestError,
    ResponseValidationError,
    status_error_class,
)
from aioagents._retry import parse_retry_after
from aioagents._transport import Response

__all__ = [
    "AssistantServerError",
    "AssistantValidationError",
    "FailedDependencyError",
    "InsufficientStorageError",
    "LengthRequiredError",
    "MethodNotAllowedError",
    "PreconditionRequiredError",
    "ToolCallError",
    "error_from_response",
]


class MethodNotAllowedError(APIStatusError):
    """405."""

    status = 405


class LengthRequiredError(APIStatusError):
    """411: the request had no Content-Length."""

    status = 411


class FailedDependencyError(APIStatusError):
    """424."""

    status = 424


class PreconditionRequiredError(APIStatusError):
    """428 (the SDK calls it ``PreconditionFailedException``)."""

    status = 428


class InsufficientStorageError(InternalServerError):
    """507."""

    status = 507


#: The request id the client sent on the call in flight, for errors whose response carries none.
current_request_id: ContextVar[str | None] = ContextVar("appbuilder_request_id", default=None)

_EXTRA: dict[int, type[APIStatusError]] = {
    405: MethodNotAllowedError,
    411: LengthRequiredError,
    424: FailedDependencyError,
    428: PreconditionRequiredError,
    507: InsufficientStorageError,
}


class AssistantServerError(APIStatusError):
    """The service answered (usually with HTTP 200) but its body is ``{"error": {code, message, type, param}}``.

    ``code`` is the service's error code, ``type`` its error type, ``param`` the request field it blames.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body: Any = None,
        request_id: str | None = None,
        code: str | None = None,
        type: str | None = None,
        param: Any = None,
        headers: Mapping[str, str] | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(
            message,
            status=status,
            body=body,
            request_id=request_id,
            code=code,
            headers=headers,
            method=method,
            url=url,
            retryable=False,
        )
        self.type = type
        self.param = param

    @classmethod
    def from_body(
        cls,
        body: Mapping[str, Any],
        *,
        status: int = 200,
        request_id: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> AssistantServerError:
        """Build the error from a body holding an ``error`` key (an object or a plain string)."""
        err = body.get("error")
        if isinstance(err, Mapping):
            message = str(err.get("message") or err.get("msg") or "the service reported an error")
            code = err.get("code")
            return cls(
                message,
                status=status,
                body=dict(body),
                request_id=request_id or _str_or_none(body.get("request_id")),
                code=None if code is None else str(code),
                type=_str_or_none(err.get("type")),
                param=err.get("param", err.get("params")),
                method=method,
                url=url,
            )
        return cls(
            str(err) if err else "the service reported an error",
            status=status,
            body=dict(body),
            request_id=request_id or _str_or_none(body.get("request_id")),
            method=method,
            url=url,
        )

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} param={self.param}" if self.param else text


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def error_from_response(response: Response) -> APIStatusError:
    """The error for a non-2xx answer: the contract's status table, with the body's ``error`` object if any."""
    try:
        body: Any = response.json() if response.content else None
    except ResponseValidationError:  # a non-JSON error page: keep the text
        body = response.text()
    cls = _EXTRA.get(response.status) or status_error_class(response.status)
    message, code = f"HTTP {response.status}", None
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        message = str(body["error"].get("message") or message)
        code = body["error"].get("code")
    elif isinstance(body, str) and body.strip():
        message = body.strip()[:500]
    return cls(
        message,
        status=response.status,
        body=body,
        headers=response.headers,
        request_id=response.request_id or current_request_id.get(),
        code=None if code is None else str(code),
        retry_after=parse_retry_after(response.headers),
        method=response.method,
        url=response.url,
    )


class AssistantValidationError(InvalidRequestError):
    """Arguments the service would reject, caught before anything was sent. ``errors`` names every problem."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


class ToolCallError(AioAgentsError):
    """A run asked for a tool the caller did not provide, or a tool raised (the cause is chained)."""

    def __init__(self, message: str, *, tool_name: str, tool_call_id: str) -> None:
        super().__init__(message)
        self.tool_name = tool_name
        self.tool_call_id = tool_call_id
