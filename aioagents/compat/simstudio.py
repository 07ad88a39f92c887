"""A drop-in mirror of the ``simstudio-sdk`` public API (0.1.x documentation and 0.2.x code), on the aioagents core.

Change ``from simstudio import …`` to ``from aioagents.compat.simstudio import …`` and the documented examples run
unchanged. What differs, on purpose:

- ``stream=True`` streams: ``execute_workflow`` returns a :class:`StreamingExecution` whose events arrive while the
  workflow runs (the SDK buffered the body, then failed to parse it after the run).
- v1 is the default (``api_version="v1"``, what every deployment serves; 0.2.x needs the server's v2 flag); pass
  ``api_version="v2"`` for 0.2.x's endpoints or ``"auto"`` to try v2 and fall back. An async submit is read in every
  shape the server has used (``taskId``, ``jobId``, ``runId``) instead of being mis-read as a sync success.
- ``get_job_status`` reports the documented statuses (``queued``, ``processing``, …; the server's own word is kept
  in ``rawStatus``) and also polls v2 runs this client queued, so the documented polling loop works on both.
- Retries happen only when nothing ran (429, 503 with Retry-After, a refused connection); a ``Retry-After`` is waited
  in full. ``execute_with_retry`` keeps its signature and ±25 % jitter on top of that rule.
- Every call has a timeout (the SDK's reads had none). ``get_rate_limit_info()`` describes the latest response only
  (never a stale one); ``reset`` is epoch **seconds** for an ISO or epoch header alike (0.2.x returned milliseconds for
  ISO values, which ``datetime.fromtimestamp`` in the documented example cannot take).
- ``get_usage_limits().rate_limit["sync"]["limit"]`` works on current servers too (filled from
  ``requestsPerMinute``); ``storage`` is there when the server reports it.
- ``validate_workflow`` still returns False on any error, as documented.
- Every error out of this module is a :class:`SimStudioError` with the SDK's codes (status errors are also aioagents'
  typed status errors): a timeout, a stalled stream included, is ``code="TIMEOUT"``; a stream cut mid-way and any
  other transport failure ``EXECUTION_ERROR`` (``STATUS_ERROR`` for reads); a call after ``close()`` ``CLIENT_CLOSED``
  (also a ``RuntimeError``). The aioagents error is kept as ``__cause__``.
- Both signatures: 0.1.x's positional ``(workflow_id, input_data, timeout, stream, selected_outputs,
  async_execution)`` and 0.2.x's ``input=`` and keywords.
- ``get_workflow_run(workflow_id, run_id)`` works after an async submit under either API: a v1 job this client
  queued (or any id the v2 route does not know) is read from ``/api/jobs/{id}`` and answered in the v2 run shape.
- ``logs``, ``trace_spans`` and ``total_duration`` are filled when the server sends them (v1 servers before Nov 2025
  did; current ones send none, and the SDK 0.2.x never fills them).
- The default base URL is ``$SIM_BASE_URL`` when set (so the documented examples can run against a local server),
  else ``https://www.sim.ai`` (0.2.1's; the bare domain redirects there).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aioagents import AioAgentsError, ClientClosedError, IncompleteStreamError, sync
from aioagents.workflows.client import DEFAULT_BASE_URL, DEFAULT_STREAM_IDLE_TIMEOUT, WorkflowsClient
from aioagents.workflows.errors import (
    SimAPIStatusError,
    SimInvalidRequestError,
    SimNotFoundError,
    WorkflowFailedError,
)
from aioagents.workflows.events import StreamCollector, WorkflowEvent
from aioagents.workflows.jobs import Job
from aioagents.workflows.models import ApiVersion, ExecutionResult, JobStatus
from aioagents.workflows.models import RateLimitInfo as _NativeRateLimitInfo

__all__ = [
    "AsyncExecutionResult",
    "Client",
    "RateLimitInfo",
    "SimClientClosedError",
    "SimStudioClient",
    "SimStudioError",
    "StreamingExecution",
    "UsageLimits",
    "WorkflowExecutionResult",
    "WorkflowStatus",
]

T = TypeVar("T")
_UNSET: Any = object()
# The documented job vocabulary; servers say "pending" where the docs say "queued". A paused v2 run stays "paused":
# it is at rest, and reporting it as "processing" would keep a polling loop going forever.
_DOC_STATUS = {"queued": "queued", "running": "processing"}


class SimStudioError(Exception):
    """The SDK's error: a message, a ``code`` (``UNAUTHORIZED``, ``TIMEOUT``, ``RATE_LIMIT_EXCEEDED``,
    ``USAGE_LIMIT_EXCEEDED``, ``EXECUTION_ERROR``, ``INVALID_JSON`` …) and the HTTP ``status`` when there was one.

    An error status, a refused argument or a failed run comes out of this module as aioagents' own error (say
    ``aioagents.workflows.SimRateLimitError``, also an ``aioagents.RateLimitError``) that is *also* a
    ``SimStudioError``: both ``except SimStudioError as e: e.code`` and ``except aioagents.RateLimitError`` work.
    """

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        # Any: the aioagents status classes this one is combined with declare it as int; here it may be absent.
        self.status: Any = status


class SimClientClosedError(SimStudioError, RuntimeError):
    """The client was used after ``close()`` (``code="CLIENT_CLOSED"``): misuse, so also a ``RuntimeError``."""


# One class per aioagents Sim error class: that class and SimStudioError together (made on first use).
_SIM_CLASSES: dict[type[AioAgentsError], type[SimStudioError]] = {}


def _also_sim(exc: AioAgentsError) -> SimStudioError:
    """``exc`` as an instance of its own class combined with :class:`SimStudioError`: same attributes (``code``,
    ``status``, ``body`` …), same message."""
    cls = type(exc)
    combined = _SIM_CLASSES.get(cls)
    if combined is None:
        combined = _SIM_CLASSES[cls] = type(
            cls.__name__, (cls, SimStudioError), {"__module__": cls.__module__, "__doc__": cls.__doc__}
        )
    out: SimStudioError = Exception.__new__(combined, *exc.args)
    out.__dict__.update(exc.__dict__)
    return out


def _sim_error(exc: BaseException, failure: str, code: str) -> SimStudioError:
    """The SDK's error for one of ours: an aioagents Sim error (status, bad argument, failed run) also made a
    :class:`SimStudioError`; any other failure a :class:`SimStudioError` with the SDK's code (``TIMEOUT`` for any
    timeout, a stalled stream included)."""
    if isinstance(exc, SimStudioError):
        return exc
    if isinstance(exc, (SimAPIStatusError, SimInvalidRequestError, WorkflowFailedError)):
        return _also_sim(exc)
    if isinstance(exc, ClientClosedError):
        return SimClientClosedError(str(exc), "CLIENT_CLOSED")
    if isinstance(exc, TimeoutError):  # APITimeoutError, StreamIdleTimeout
        return SimStudioError(f"{failure}: {exc}", "TIMEOUT")
    if isinstance(exc, IncompleteStreamError):
        return SimStudioError(f"{failure}: the stream ended early: {exc}", code)
    return SimStudioError(f"{failure}: {exc}", code)


@dataclass
class WorkflowExecutionResult:
    """Result of a workflow execution. ``success`` is True for the ``completed`` and ``paused`` statuses."""

    success: bool
    output: Any | None = None
    error: str | None = None
    logs: list[Any] | None = None
    metadata: dict[str, Any] | None = None
    trace_spans: list[Any] | None = None
    total_duration: float | None = None
    status: str | None = None


@dataclass
class WorkflowStatus:
    """Status of a workflow."""

    is_deployed: bool
    deployed_at: str | None = None
    needs_redeployment: bool = False


@dataclass
class AsyncExecutionResult:
    """Result of an async submit. 0.2.x fields (``run_id``, ``status_url``) and the documented 0.1.x ones
    (``task_id``, ``status``, ``created_at``, ``links``) are all set; ``task_id`` is what ``get_job_status`` takes."""

    success: bool
    run_id: str = ""
    status_url: str = ""
    message: str = ""
    async_execution: bool = True
    task_id: str = ""
    status: str = "queued"
    created_at: str | None = None
    links: dict[str, str] = field(default_factory=dict)


@dataclass
class RateLimitInfo:
    """Rate-limit facts of the latest response: ``reset`` in epoch seconds, ``retry_after`` in milliseconds."""

    limit: int
    remaining: int
    reset: int
    retry_after: int | None = None


@dataclass
class UsageLimits:
    """Usage limits and quota information (``storage`` when the server reports it)."""

    success: bool
    rate_limit: dict[str, Any]
    usage: dict[str, Any]
    storage: dict[str, Any] | None = None


def _to_result(result: ExecutionResult) -> WorkflowExecutionResult:
    return WorkflowExecutionResult(
        success=result.success,
        output=result.output,
        error=result.error,
        logs=None if result.logs is None else list(result.logs),
        metadata=dict(result.metadata),
        trace_spans=None if result.trace_spans is None else list(result.trace_spans),
        total_duration=result.duration_ms,
        status=result.status,
    )


class StreamingExecution:
    """What ``execute_workflow(..., stream=True)`` returns: the run's events, as they arrive.

    >>> run = client.execute_workflow("wf", {"message": "Count to five"}, stream=True)
    >>> for text in run.text():          # prints while the workflow runs
    ...     print(text, end="", flush=True)
    >>> run.success, run.output          # the final result (reads the rest of the stream first)

    Iterating yields the typed events (``Chunk``, ``Final`` … from :mod:`aioagents.workflows`). ``result()`` and the
    ``success``/``output``/``error``/``metadata`` attributes wait for the end. ``close()`` (or leaving a ``with``
    block) drops the connection.
    """

    def __init__(self, events: sync.SyncStream[WorkflowEvent]) -> None:
        self._events = events
        self._collector = StreamCollector()
        self._result: WorkflowExecutionResult | None = None

    def __iter__(self) -> Iterator[WorkflowEvent]:
        try:
            for event in self._events:
                self._collector.feed(event)
                yield event
        except AioAgentsError as exc:
            # A cut stream, a stall past the idle timeout: the SDK's error type, as every other failure.
            raise _sim_error(exc, "Workflow stream failed", "EXECUTION_ERROR") from exc

    def text(self) -> Iterator[str]:
        """Only the answer text, chunk by chunk."""
        for event in self:
            chunk = getattr(event, "text", None)
            if isinstance(chunk, str) and type(event).__name__ == "Chunk":
                yield chunk

    def result(self) -> WorkflowExecutionResult:
        """Read to the end and return the result a non-streamed call gives."""
        if self._result is None:
            for _ in self:
                pass
            self._result = _to_result(self._collector.result())
        return self._result

    @property
    def success(self) -> bool:
        return self.result().success

    @property
    def output(self) -> Any:
        return self.result().output

    @property
    def error(self) -> str | None:
        return self.result().error

    @property
    def metadata(self) -> dict[str, Any] | None:
        return self.result().metadata

    def close(self) -> None:
        """Stop reading and release the connection."""
        self._events.close()

    def __enter__(self) -> StreamingExecution:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __str__(self) -> str:
        return str(self.result())

    def __repr__(self) -> str:
        state = "finished" if self._result is not None else "streaming"
        return f"<StreamingExecution {state}>"


class SimStudioClient:
    """Sim API client for executing workflows (blocking), mirroring ``simstudio.SimStudioClient``.

    Args:
        api_key: your Sim API key
        base_url: the Sim server (default ``$SIM_BASE_URL``, else ``https://www.sim.ai``)
        api_version: ``"v1"`` (default), ``"v2"`` or ``"auto"``
        idle_timeout: the silence a ``stream=True`` run may keep before it fails with ``code="TIMEOUT"`` (default
            :data:`aioagents.workflows.DEFAULT_STREAM_IDLE_TIMEOUT`, above the server's 300 s block limit, since the
            server sends no heartbeats; ``None``: no limit)
    """

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        *,
        api_version: ApiVersion = "v1",
        idle_timeout: float | None = DEFAULT_STREAM_IDLE_TIMEOUT,
    ) -> None:
        self.api_key = api_key
        self.base_url = (base_url or os.environ.get("SIM_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self._client = WorkflowsClient(
            api_key=api_key, base_url=self.base_url, api_version=api_version, idle_timeout=idle_timeout
        )
        # v2 runs this client queued, so get_job_status(task_id) can poll them like v1 jobs; and v1 jobs, so
        # get_workflow_run(workflow_id, run_id) can poll those like v2 runs.
        self._runs: dict[str, str] = {}
        self._jobs: set[str] = set()

    def __repr__(self) -> str:
        return f"SimStudioClient(base_url={self.base_url!r})"

    # -- plumbing -------------------------------------------------------------------------------------------
    @staticmethod
    def _call(coro: Awaitable[T], failure: str, code: str) -> T:
        """Run a coroutine of the async client; every failure becomes the SDK's ``SimStudioError`` (its codes)."""
        try:
            return sync.run(coro)
        except SimStudioError:
            raise
        except AioAgentsError as exc:
            raise _sim_error(exc, failure, code) from exc

    @classmethod
    def _execute(cls, coro: Awaitable[T]) -> T:
        """:meth:`_call` for an execution: a failure is ``EXECUTION_ERROR``."""
        return cls._call(coro, "Failed to execute workflow", "EXECUTION_ERROR")

    # -- execution ------------------------------------------------------------------------------------------
    def execute_workflow(
        self,
        workflow_id: str,
        input_data: Any = None,
        timeout: float = 30.0,
        stream: bool | None = None,
        selected_outputs: Sequence[str] | None = None,
        async_execution: bool | None = None,
        *,
        input: Any = _UNSET,
        execution_timeout_seconds: int | None = None,
    ) -> WorkflowExecutionResult | AsyncExecutionResult | StreamingExecution:
        """Execute a workflow. ``input_data`` (or ``input=``): a dict becomes the workflow's input, any other value
        arrives as ``{"input": value}``; file objects inside are sent as base64. ``async_execution=True`` returns an
        :class:`AsyncExecutionResult` to poll; ``stream=True`` a :class:`StreamingExecution`.

        The positional order is 0.1.x's (``execute_workflow("wf", {"q": 1}, 60.0)``); 0.2.x passes the rest by
        keyword, which works the same."""
        data = input_data if input is _UNSET else input
        if stream and async_execution:
            raise SimStudioError("stream and async_execution cannot be combined", "INVALID_REQUEST")
        if stream:
            opening = self._client.execute(workflow_id, data, stream=True, selected_outputs=selected_outputs)
            try:
                events = sync.open_stream(opening)
            except AioAgentsError as exc:
                raise _sim_error(exc, "Failed to execute workflow", "EXECUTION_ERROR") from exc
            return StreamingExecution(events)
        if async_execution:
            job = self._execute(
                self._client.execute(
                    workflow_id,
                    data,
                    async_execution=True,
                    execution_timeout=execution_timeout_seconds,
                    timeout=timeout,
                )
            )
            return self._async_result(job)
        self._check_timeout(execution_timeout_seconds)
        result = self._execute(
            self._client.execute(workflow_id, data, selected_outputs=selected_outputs, timeout=timeout)
        )
        return _to_result(result)

    @staticmethod
    def _check_timeout(execution_timeout_seconds: int | None) -> None:
        if execution_timeout_seconds is not None:
            refused = SimInvalidRequestError(
                "execution_timeout_seconds is supported only for async executions", "INVALID_EXECUTION_TIMEOUT"
            )
            raise _sim_error(refused, "", "INVALID_EXECUTION_TIMEOUT")

    def _async_result(self, job: Job | ExecutionResult | Any) -> AsyncExecutionResult | WorkflowExecutionResult:
        if not isinstance(job, Job):
            return _to_result(job)  # pragma: no cover - execute(async_execution=True) always gives a Job
        if job.kind == "finished":
            # The server ran it right away (it ignored the async request): that is the result.
            return _to_result(self._execute(job.result()))
        if job.kind == "run":
            self._runs[job.id] = job.workflow_id
        else:
            self._jobs.add(job.id)
        status_url = job.status_url or ""
        link = f"/api/jobs/{job.id}" if job.kind == "job" else status_url
        submission = job.submission
        return AsyncExecutionResult(
            success=True,
            run_id=job.id,
            status_url=status_url,
            message=submission.message if submission is not None else "",
            async_execution=True,
            task_id=job.id,
            status="queued",
            created_at=submission.created_at if submission is not None else None,
            links={"status": link},
        )

    def execute_workflow_sync(
        self,
        workflow_id: str,
        input_data: Any = None,
        timeout: float = 30.0,
        stream: bool | None = None,
        selected_outputs: Sequence[str] | None = None,
        *,
        input: Any = _UNSET,
    ) -> WorkflowExecutionResult | StreamingExecution:
        """Execute a workflow and wait for it (never async); positional order as in 0.1.x."""
        result = self.execute_workflow(
            workflow_id, input_data, input=input, timeout=timeout, stream=stream, selected_outputs=selected_outputs
        )
        assert not isinstance(result, AsyncExecutionResult)
        return result

    def execute_with_retry(
        self,
        workflow_id: str,
        input_data: Any = None,
        timeout: float = 30.0,
        stream: bool | None = None,
        selected_outputs: Sequence[str] | None = None,
        async_execution: bool | None = None,
        max_retries: int = 3,
        initial_delay: float = 1.0,
        max_delay: float = 30.0,
        backoff_multiplier: float = 2.0,
        *,
        input: Any = _UNSET,
        execution_timeout_seconds: int | None = None,
    ) -> WorkflowExecutionResult | AsyncExecutionResult | StreamingExecution:
        """Execute with automatic retries when the server refused before running (429, 503 with Retry-After):
        waits from ``initial_delay`` growing by ``backoff_multiplier`` up to ``max_delay``, ±25 % jitter, and at
        least the server's ``Retry-After``. Positional order as in 0.1.x."""
        data = input_data if input is _UNSET else input
        if not async_execution:
            self._check_timeout(execution_timeout_seconds)
        if stream:
            return self.execute_workflow(workflow_id, data, stream=True, selected_outputs=selected_outputs)
        outcome = self._execute(
            self._client.execute_with_retry(
                workflow_id,
                data,
                async_execution=bool(async_execution),
                selected_outputs=selected_outputs,
                execution_timeout=execution_timeout_seconds,
                timeout=timeout,
                max_retries=max_retries,
                initial_delay=initial_delay,
                max_delay=max_delay,
                backoff_multiplier=backoff_multiplier,
            )
        )
        if isinstance(outcome, Job):
            return self._async_result(outcome)
        assert isinstance(outcome, ExecutionResult)
        return _to_result(outcome)

    # -- reads ----------------------------------------------------------------------------------------------
    def get_workflow_status(self, workflow_id: str) -> WorkflowStatus:
        """Deployment status of a workflow."""
        status = self._call(
            self._client.get_workflow_status(workflow_id), "Failed to get workflow status", "STATUS_ERROR"
        )
        return WorkflowStatus(
            is_deployed=status.is_deployed,
            deployed_at=status.deployed_at,
            needs_redeployment=status.needs_redeployment,
        )

    def validate_workflow(self, workflow_id: str) -> bool:
        """True when the workflow is deployed; False otherwise or on any error."""
        try:
            return self.get_workflow_status(workflow_id).is_deployed
        except SimStudioError:
            return False

    def get_job_status(self, task_id: str) -> dict[str, Any]:
        """The status of an async execution as a dict: ``success``, ``taskId``, ``status`` (``queued``,
        ``processing``, ``completed``, ``failed``, ``cancelled``), ``metadata``, ``output``, ``error``."""
        workflow_id = self._runs.get(task_id)
        if workflow_id is not None:
            status: JobStatus = self._call(
                self._client.get_run_status(workflow_id, task_id), "Failed to get job status", "STATUS_ERROR"
            )
        else:
            status = self._call(self._client.get_job_status(task_id), "Failed to get job status", "STATUS_ERROR")
        payload: dict[str, Any] = dict(status.raw.get("data", status.raw) if workflow_id else status.raw)
        payload.setdefault("success", True)
        payload["taskId"] = status.id
        payload["rawStatus"] = status.raw_status
        payload["status"] = _DOC_STATUS.get(status.state, status.state)
        payload["metadata"] = dict(status.metadata)
        if status.done:
            payload.setdefault("output", status.output)
            payload.setdefault("error", status.error)
        return payload

    def get_workflow_run(
        self,
        workflow_id: str,
        run_id: str,
        *,
        include_output: bool | None = None,
        selected_outputs: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """A run's ``data`` in the v2 shape: ``runId``, ``workflowId``, ``status`` (``queued``, ``running``,
        ``paused``, ``completed``, ``failed``, ``cancelled``), ``error`` (``{code, message}`` or None), ``output``
        when ``include_output``, and the times.

        A v2 run is read from ``/api/v2/workflows/{id}/runs/{runId}`` as the server sent it. A v1 job (what an async
        submit gives under the default ``api_version="v1"``, or an id the v2 route answers 404 for) is read from
        ``/api/jobs/{id}`` and answered in the same shape, so 0.2.x's "submit, then poll the run" works on both."""
        if run_id in self._jobs:
            return self._job_as_run(workflow_id, run_id, include_output)
        try:
            status = self._call(
                self._client.get_run_status(
                    workflow_id, run_id, include_output=include_output, selected_outputs=selected_outputs
                ),
                "Failed to get workflow run",
                "STATUS_ERROR",
            )
        except SimNotFoundError as not_found:
            # v2 switched off, or the id is a v1 job queued elsewhere: the job route may know it.
            try:
                return self._job_as_run(workflow_id, run_id, include_output)
            except SimNotFoundError:
                raise not_found from None
        data = status.raw.get("data")
        if not isinstance(data, Mapping):
            raise SimStudioError("Invalid v2 workflow run response", "STATUS_ERROR")
        return dict(data)

    def _job_as_run(self, workflow_id: str, job_id: str, include_output: bool | None) -> dict[str, Any]:
        status = self._call(self._client.get_job_status(job_id), "Failed to get workflow run", "STATUS_ERROR")
        meta = status.metadata
        run: dict[str, Any] = {
            "runId": status.id,
            "workflowId": workflow_id,
            "status": status.state,
            "startedAt": meta.get("startedAt"),
            "endedAt": meta.get("completedAt"),
            "durationMs": meta.get("duration"),
            "paused": status.state == "paused",
            "error": None
            if status.error is None
            else {"code": status.error_code or "EXECUTION_FAILED", "message": status.error},
        }
        if include_output:
            run["output"] = status.output
        return run

    def get_rate_limit_info(self) -> RateLimitInfo | None:
        """Rate-limit facts of the latest response, or None."""
        info: _NativeRateLimitInfo | None = self._client.get_rate_limit_info()
        if info is None:
            return None
        return RateLimitInfo(
            limit=info.limit or 0,
            remaining=info.remaining or 0,
            reset=info.reset_epoch or 0,
            retry_after=None if info.retry_after is None else int(info.retry_after * 1000),
        )

    def get_usage_limits(self) -> UsageLimits:
        """Current usage limits and quota information."""
        limits = self._call(self._client.get_usage_limits(), "Failed to get usage limits", "USAGE_ERROR")
        raw = limits.raw
        rate = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in dict(raw.get("rateLimit") or {}).items()}
        for name in ("sync", "async"):
            bucket = rate.get(name)
            if isinstance(bucket, dict) and "limit" not in bucket and "requestsPerMinute" in bucket:
                # Servers renamed `limit`; documented code still reads it.
                bucket["limit"] = bucket["requestsPerMinute"]
        storage = raw.get("storage")
        return UsageLimits(
            success=limits.success,
            rate_limit=rate,
            usage=dict(raw.get("usage") or {}),
            storage=dict(storage) if isinstance(storage, Mapping) else None,
        )

    # -- configuration and lifecycle ------------------------------------------------------------------------
    def set_api_key(self, api_key: str) -> None:
        """Update the API key."""
        self.api_key = api_key
        self._client.set_api_key(api_key)

    def set_base_url(self, base_url: str) -> None:
        """Update the base URL (trailing ``/`` stripped)."""
        self.base_url = base_url.rstrip("/")
        self._client.set_base_url(self.base_url)

    def close(self) -> None:
        """Close the underlying HTTP sessions."""
        sync.run(self._client.aclose())

    def __enter__(self) -> SimStudioClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Client = SimStudioClient
"""The SDK's backward-compatible alias."""
