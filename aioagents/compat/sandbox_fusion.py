"""A drop-in mirror of the ``sandbox-fusion`` SDK's public API, on the aioagents core.

Change ``from sandbox_fusion import …`` to ``from aioagents.compat.sandbox_fusion import …`` and the SDK's examples run
unchanged. What differs, on purpose:

- connections are pooled (the SDK opens a session per call), and ``run_concurrent`` drives the async core on one event
  loop instead of a thread per request;
- 400/422 are never retried (the SDK retries even those); a retry after a client timeout is logged as a warning, since
  the server is still running the first attempt;
- errors are typed (``SandboxError``, ``UnprocessableEntityError``, …) — all are still ``Exception``s;
- ``Prompt.prompt`` may be a list of messages and ids may be strings, as the server sends them.

Endpoints are read from ``SANDBOX_FUSION_ENDPOINT`` / ``SANDBOX_FUSION_DATASET_ENDPOINT`` at import, as the SDK does.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ParamSpec, TypeVar

import attrs

from aioagents import amap, sync
from aioagents.sandbox.client import DEFAULT_ENDPOINT, SandboxClient, summary_run_code_result
from aioagents.sandbox.models import (
    CommandRunResult,
    CommandRunStatus,
    EvalResult,
    EvalTestCase,
    GetMetricsFunctionRequest,
    GetMetricsRequest,
    GetPromptByIdRequest,
    GetPromptsRequest,
    Prompt,
    RunCodeRequest,
    RunCodeResponse,
    RunJupyterRequest,
    RunJupyterResponse,
    RunStatus,
    SubmitRequest,
    SummaryMapping,
    TestConfig,
    _model,
)

__all__ = [
    "CommandRunResult",
    "CommandRunStatus",
    "EvalResult",
    "EvalTestCase",
    "GetMetricsFunctionRequest",
    "GetMetricsRequest",
    "GetPromptByIdRequest",
    "GetPromptsRequest",
    "Prompt",
    "RunCodeRequest",
    "RunCodeResponse",
    "RunJupyterRequest",
    "RunJupyterResponse",
    "RunStatus",
    "SubmitRequest",
    "SummaryMapping",
    "TestConfig",
    "get_prompt_by_id",
    "get_prompt_by_id_async",
    "get_prompts",
    "get_prompts_async",
    "run_code",
    "run_code_async",
    "run_concurrent",
    "run_concurrent_pure",
    "run_jupyter",
    "run_jupyter_async",
    "set_dataset_endpoint",
    "set_endpoint",
    "set_sandbox_endpoint",
    "submit",
    "submit_async",
    "submit_safe",
    "submit_safe_async",
    "summary_run_code_result",
]

T = TypeVar("T")
M = TypeVar("M")
P = ParamSpec("P")


def _sdk_id(value: Any) -> Any:
    """An id as the SDK's pydantic (v1) ``Union[int, str]`` reads it: whatever ``int()`` takes becomes an int
    (``"11"``, ``11.0``, ``True``), any other string stays a string (``"HumanEval/0"``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _as_model(request: Any, cls: type[M]) -> M:
    # The request as our model: ours as it is, or an SDK (pydantic) model or a dict of its fields, converted; and
    # its id as the SDK would send it, so the server sees the same row key.
    model = _model(cls, request)
    if isinstance(model, (SubmitRequest, GetPromptByIdRequest)):
        sdk_id = _sdk_id(model.id)
        if sdk_id is not model.id:
            return attrs.evolve(model, id=sdk_id)
    return model


class _Config:
    sandbox_endpoint: str = os.environ.get("SANDBOX_FUSION_ENDPOINT", DEFAULT_ENDPOINT)
    dataset_endpoint: str = os.environ.get("SANDBOX_FUSION_DATASET_ENDPOINT", sandbox_endpoint)


def set_endpoint(endpoint: str) -> None:
    """Set both the sandbox and the dataset endpoint."""
    _Config.sandbox_endpoint = endpoint
    _Config.dataset_endpoint = endpoint


def set_sandbox_endpoint(endpoint: str) -> None:
    """Set the endpoint of run_code and run_jupyter."""
    _Config.sandbox_endpoint = endpoint


def set_dataset_endpoint(endpoint: str) -> None:
    """Set the endpoint of the dataset calls (prompts, submit)."""
    _Config.dataset_endpoint = endpoint


def _sandbox(endpoint: str) -> str:
    return (endpoint or _Config.sandbox_endpoint).rstrip("/")


def _dataset(endpoint: str) -> str:
    return (endpoint or _Config.dataset_endpoint).rstrip("/")


# The blocking functions share one client; its connections live on the sync bridge's loops, which close them at exit.
_shared: SandboxClient | None = None


async def _using(use: Callable[[SandboxClient], Awaitable[T]]) -> T:
    """``use(client)`` with the client a call may take: on a loop of the sync bridge (a blocking function,
    ``run_concurrent``) the one shared, pooled client; on a caller's own loop, whose lifetime is unknown, a client for
    this call only, as the SDK."""
    global _shared
    if sync.owns(asyncio.get_running_loop()):
        if _shared is None:
            _shared = SandboxClient(DEFAULT_ENDPOINT)
        return await use(_shared)
    async with SandboxClient(DEFAULT_ENDPOINT) as client:
        return await use(client)


def _blocking(async_fn: Callable[P, Awaitable[T]]) -> Callable[P, T]:
    """The blocking twin of one of this module's ``*_async`` functions: same parameters and documentation, run
    through the sync bridge. ``__aioagents_async__`` names the async function, so ``run_concurrent`` runs it on one
    loop."""
    name = async_fn.__name__.removesuffix("_async")

    @functools.wraps(async_fn)
    def blocking(*args: P.args, **kwargs: P.kwargs) -> T:
        return sync.run(async_fn(*args, **kwargs))

    blocking.__name__ = blocking.__qualname__ = name
    blocking.__doc__ = f"{async_fn.__doc__} Blocking: :func:`{async_fn.__name__}` run to its end."
    blocking.__aioagents_async__ = async_fn  # type: ignore[attr-defined]
    return blocking


#: ``max_attempts`` of a call that has no limits (the dataset reads); ``None`` is a value the SDK's calls accept.
_NO_LIMITS: Any = object()


async def _call(
    method: Callable[..., Awaitable[T]],
    request: Any,
    model: type[Any],
    endpoint: str,
    max_attempts: int | None = _NO_LIMITS,
    client_timeout: float | None = None,
) -> T:
    """``method`` (of :class:`SandboxClient`) on the client a call takes, with the request as our model; the SDK's
    ``max_attempts`` and ``client_timeout`` go to the calls that have them (run and submit), as given."""
    request = _as_model(request, model)
    limits = {} if max_attempts is _NO_LIMITS else {"max_attempts": max_attempts, "client_timeout": client_timeout}
    return await _using(lambda client: method(client, request, endpoint=endpoint, **limits))


# -- run_code, run_jupyter ---------------------------------------------------------------------------------------
async def run_code_async(
    request: RunCodeRequest, endpoint: str = "", max_attempts: int = 5, client_timeout: float | None = None
) -> RunCodeResponse:
    """Run code; returns the result (``Failed`` included), raises on a sandbox or transport failure."""
    return await _call(
        SandboxClient.run_code, request, RunCodeRequest, _sandbox(endpoint), max_attempts, client_timeout
    )


async def run_jupyter_async(
    request: RunJupyterRequest, endpoint: str = "", max_attempts: int = 3, client_timeout: float | None = None
) -> RunJupyterResponse:
    """Run notebook cells in a fresh kernel."""
    return await _call(
        SandboxClient.run_jupyter, request, RunJupyterRequest, _sandbox(endpoint), max_attempts, client_timeout
    )


# -- datasets --------------------------------------------------------------------------------------------------
async def get_prompts_async(request: GetPromptsRequest, endpoint: str = "") -> list[Prompt]:
    """A dataset's prompts."""
    return await _call(SandboxClient.get_prompts, request, GetPromptsRequest, _dataset(endpoint))


async def get_prompt_by_id_async(request: GetPromptByIdRequest, endpoint: str = "") -> Prompt:
    """One prompt by id."""
    return await _call(SandboxClient.get_prompt_by_id, request, GetPromptByIdRequest, _dataset(endpoint))


async def submit_async(
    request: SubmitRequest, endpoint: str = "", max_attempts: int = 5, client_timeout: float | None = None
) -> EvalResult:
    """Evaluate a completion."""
    return await _call(SandboxClient.submit, request, SubmitRequest, _dataset(endpoint), max_attempts, client_timeout)


async def submit_safe_async(
    request: SubmitRequest, endpoint: str = "", max_attempts: int = 5, client_timeout: float | None = None
) -> EvalResult:
    """Evaluate a completion; any failure becomes a rejected result."""
    return await _call(
        SandboxClient.submit_safe, request, SubmitRequest, _dataset(endpoint), max_attempts, client_timeout
    )


# The blocking functions (the SDK's): each its async twin's parameters, run to the end on the sync bridge.
run_code = _blocking(run_code_async)
"""``run_code(request, endpoint="", max_attempts=5, client_timeout=None)``: :func:`run_code_async`, blocking."""
run_jupyter = _blocking(run_jupyter_async)
"""``run_jupyter(request, endpoint="", max_attempts=3, client_timeout=None)``: :func:`run_jupyter_async`, blocking."""
get_prompts = _blocking(get_prompts_async)
"""``get_prompts(request, endpoint="")``: :func:`get_prompts_async`, blocking."""
get_prompt_by_id = _blocking(get_prompt_by_id_async)
"""``get_prompt_by_id(request, endpoint="")``: :func:`get_prompt_by_id_async`, blocking."""
submit = _blocking(submit_async)
"""``submit(request, endpoint="", max_attempts=5, client_timeout=None)``: :func:`submit_async`, blocking."""
submit_safe = _blocking(submit_safe_async)
"""``submit_safe(request, endpoint="", max_attempts=5, client_timeout=None)``: :func:`submit_safe_async`, blocking."""


# -- concurrency -----------------------------------------------------------------------------------------------
def run_concurrent(
    func: Callable[..., Any],
    args: list[list[Any]] | None = None,
    kwargs: list[dict[str, Any]] | None = None,
    concurrency: int = 20,
) -> list[Any]:
    """Call ``func(*args[i], **kwargs[i])`` for every i, at most ``concurrency`` at a time; results in input order.

    A coroutine function — or a sync function that names its async twin in ``__aioagents_async__``, as every
    function of this module does — runs on one event loop; any other callable runs in a thread pool. As in the SDK,
    the first error is raised after every call has finished.
    """
    if args is None and kwargs is None:
        raise ValueError("give args or kwargs")
    if args is not None and kwargs is not None and len(args) != len(kwargs):
        raise ValueError("args and kwargs must have the same length")
    n = len(args) if args is not None else len(kwargs or ())
    call_args = args if args is not None else [[] for _ in range(n)]
    call_kwargs = kwargs if kwargs is not None else [{} for _ in range(n)]

    target = getattr(func, "__aioagents_async__", func)
    if inspect.iscoroutinefunction(target):
        async_func = target
    else:

        async def async_func(*a: Any, **kw: Any) -> Any:
            return await asyncio.to_thread(func, *a, **kw)

    async def call(i: int) -> Any:
        return await async_func(*call_args[i], **call_kwargs[i])

    items = sync.run(amap(call, range(n), concurrency=concurrency))
    for item in items:
        if item.error is not None:
            raise item.error
    return [item.value for item in items]


def run_concurrent_pure(funcs: Iterable[Callable[[], Any]], concurrency: int = 20) -> list[Any]:
    """Call each zero-argument function (any iterable of them, as the SDK), ``concurrency`` at a time; results in
    input order."""
    return run_concurrent(lambda thunk: thunk(), args=[[f] for f in funcs], concurrency=concurrency)
