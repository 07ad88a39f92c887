"""aioagents: async-first clients for code sandboxes, interpreters, workflow engines, assistants and LLM functions.

Every service has its own package (``aioagents.sandbox``, ``aioagents.interpreter``, ``aioagents.workflows``,
``aioagents.assistants``, ``aioagents.functions``); this package re-exports the core: errors, timeouts, retry and
rate-limit policies, event streams and batch helpers. Blocking twins of every client live in ``aioagents.sync``.
"""

import importlib as _importlib
import typing as _typing

from aioagents._logging import setup_from_env as _setup_from_env
from aioagents._logging import setup_logging

if _typing.TYPE_CHECKING:
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

# Each public name -> the module defining it. They are imported on first access (PEP 562), so ``import aioagents``
# (which every submodule triggers) pays for no HTTP stack: the in-process eval never imports aiohttp.
_LAZY: dict[str, str] = {
    **dict.fromkeys(["BatchResult", "Progress", "ProgressCallback", "amap", "as_completed"], "aioagents._batch"),
    **dict.fromkeys(["CallOptions", "ClientOptions", "RequestOptions"], "aioagents._client"),
    **dict.fromkeys(["Timeout", "TimeoutLike"], "aioagents._config"),
    **dict.fromkeys(["RateLimiter", "RateLimiterUnavailableError"], "aioagents._ratelimit"),
    "RetryPolicy": "aioagents._retry",
    **dict.fromkeys(["EventStream", "ServerSentEvent"], "aioagents._streaming"),
}
_LAZY.update(
    dict.fromkeys([name for name in __all__ if name not in _LAZY and name not in globals()], "aioagents._exceptions")
)


def __getattr__(name: str) -> object:
    """Import a public name's module on first access and cache the name here (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        if name == "run_concurrent":
            return _moved_run_concurrent()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def _moved_run_concurrent() -> object:
    # ``aioagents.run_concurrent`` was documented before it moved to the compat layer it belongs to: still served,
    # with a warning that names the new home.
    import warnings

    from aioagents.compat.sandbox_fusion import run_concurrent

    warnings.warn(
        "aioagents.run_concurrent moved to aioagents.compat.sandbox_fusion.run_concurrent",
        DeprecationWarning,
        stacklevel=3,
    )
    return run_concurrent


def __dir__() -> list[str]:
    """The module's attributes, the not yet imported public names included."""
    return sorted(set(globals()) | set(__all__))


_setup_from_env()
