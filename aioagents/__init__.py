"""aioagents: async-first clients for code sandboxes, interpreters, workflow engines, assistants and LLM functions.

Every service has its own package (``aioagents.sandbox``, ``aioagents.interpreter``, ``aioagents.workflows``,
``aioagents.assistants``, ``aioagents.functions``); this package re-exports the core: errors, timeouts, retry and
rate-limit policies, event streams and batch helpers. Blocking twins of every client live in ``aioagents.sync``.
"""

from aioagents._batch import BatchResult, Progress, ProgressCallback, amap, as_completed
from aioagents._client import CallOptions, ClientOptions, RequestOptions
from aioagents._config import Timeout, TimeoutLike
from aioagents._exceptions import (
    AioAgentsError,
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConflictError,
    EventTooLargeError,
    IncompleteStreamError,
    InternalServerError,
    InvalidRequestError,
    NotFoundError,
    OutcomeUnknownError,
    PaymentRequiredError,
    PermissionDeniedError,
    PollTimeoutError,
    RateLimitError,
    RedirectError,
    RequestTooLargeError,
    ResponseTooLargeError,
    ResponseValidationError,
    ServiceUnavailableError,
    StreamError,
    StreamIdleTimeout,
    StreamOutcomeUnknownError,
    UnprocessableEntityError,
)
from aioagents._logging import setup_from_env as _setup_from_env
from aioagents._logging import setup_logging
from aioagents._ratelimit import RateLimiter, RateLimiterUnavailableError
from aioagents._retry import RetryPolicy
from aioagents._streaming import EventStream, ServerSentEvent

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AioAgentsError",
    "AuthenticationError",
    "BadRequestError",
    "BatchResult",
    "CallOptions",
    "ClientClosedError",
    "ClientOptions",
    "ConflictError",
    "EventStream",
    "EventTooLargeError",
    "IncompleteStreamError",
    "InternalServerError",
    "InvalidRequestError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "PollTimeoutError",
    "Progress",
    "ProgressCallback",
    "RateLimitError",
    "RateLimiter",
    "RateLimiterUnavailableError",
    "RedirectError",
    "RequestOptions",
    "RequestTooLargeError",
    "ResponseTooLargeError",
    "ResponseValidationError",
    "RetryPolicy",
    "ServerSentEvent",
    "ServiceUnavailableError",
    "StreamError",
    "StreamIdleTimeout",
    "StreamOutcomeUnknownError",
    "Timeout",
    "TimeoutLike",
    "UnprocessableEntityError",
    "__version__",
    "amap",
    "as_completed",
    "setup_logging",
]

_setup_from_env()


def __getattr__(name: str) -> object:
    # ``aioagents.run_concurrent`` was documented before it moved to the compat layer it belongs to: still served,
    # with a warning that names the new home.
    if name == "run_concurrent":
        import warnings

        from aioagents.compat.sandbox_fusion import run_concurrent

        warnings.warn(
            "aioagents.run_concurrent moved to aioagents.compat.sandbox_fusion.run_concurrent",
            DeprecationWarning,
            stacklevel=2,
        )
        return run_concurrent
    raise AttributeError(f"module 'aioagents' has no attribute {name!r}")
