"""The async Sim Studio workflows client: sync runs, real SSE streaming, async jobs and runs, rate-limit facts.

>>> async with WorkflowsClient(api_key="sk-…") as sim:
...     result = await sim.execute("wf-id", {"message": "Hello"})
...     async with sim.execute_stream("wf-id", {"message": "Count to five"}) as events:
...         async for event in events:
...             if isinstance(event, Chunk):
...                 print(event.text, end="")
...     job = await sim.execute("wf-id", {"data": "large"}, async_execution=True)
...     done = await job.result(timeout=600)

Two API generations (contract §1): ``api_version="v1"`` (the default; every deployment has it) posts to
``/api/workflows/{id}/execute`` with the input spread at the body's root and async chosen by a header;
``"v2"`` posts to ``/api/v2/workflows/{id}/execute`` with ``{"input": …}`` and a ``{"data": …}`` envelope;
``"auto"`` tries v2 and falls back to v1 for good when the server answers v2's "switched off" 404. Answers are read
by their shape, so a v2-shaped answer is understood whatever was asked.

Retrying an execute is only safe when nothing ran: the connection was never made, a 429, a 503 with Retry-After (and
never ``ASYNC_ENQUEUE_AMBIGUOUS``). A connection that breaks after the request went out raises
:class:`~aioagents.OutcomeUnknownError`. Reads (status, jobs, runs, usage) are retried like any idempotent call.
"""

from __future__ import annotations

import base64
import os
import platform
from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload
from urllib.parse import quote

import attrs

from aioagents import ClientOptions, RequestOptions
from aioagents._client import Endpoint, SentOptions, ServiceClient, Unpack, resolve_attempts, resolve_options
from aioagents._config import Timeout, TimeoutLike, to_timeout
from aioagents._exceptions import ResponseValidationError
from aioagents._retry import RetryPolicy, parse_retry_after
from aioagents._streaming import EventStream, SSEDecoder
from aioagents._transport import Response
from aioagents.workflows.errors import (
    FailedRunAnswer,
    SimInvalidRequestError,
    SimNotFoundError,
    sim_error,
)
from aioagents.workflows.events import WorkflowEvent, is_terminal, parse_event
from aioagents.workflows.jobs import Job
from aioagents.workflows.models import (
    ApiVersion,
    ExecutionResult,
    JobStatus,
    RateLimitInfo,
    Submission,
    UsageLimits,
    WorkflowStatus,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_EXECUTE_TIMEOUT",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_STREAM_IDLE_TIMEOUT",
    "MAX_EXECUTION_TIMEOUT_SECONDS",
    "V1_CONTROL_KEYS",
    "WorkflowsClient",
    "encode_files",
]

DEFAULT_BASE_URL = "https://www.sim.ai"
MAX_EXECUTION_TIMEOUT_SECONDS = 604_800
# A sync run may take the server's own limit (300 s on the free plan) before it answers 408; the client waits a little
# longer so that the server's answer, not a client timeout, ends the call. Reads are quick.
DEFAULT_EXECUTE_TIMEOUT = Timeout(total=310.0, connect=10.0)
DEFAULT_READ_TIMEOUT = Timeout(total=30.0, connect=10.0)
# A stream's idle limit. The server sends no heartbeats and one block may run up to its 300 s limit in silence (a
# long tool call, a slow model before its first token), so a limit below that cuts healthy runs: the default outlasts
# the block limit, as the sync execute timeout does.
DEFAULT_STREAM_IDLE_TIMEOUT = 310.0
STREAM_PROTOCOL = "agent-events-v1"
# Keys the v1 route strips from the body before the rest becomes the workflow input [contract §3.1]: an input field
# with one of these names would silently vanish (or steer the run), so it is refused.
V1_CONTROL_KEYS = frozenset(
    {
        "selectedOutputs",
        "triggerType",
        "stream",
        "useDraftState",
        "inputFromExecutionId",
        "includeFileBase64",
        "base64MaxBytes",
        "workflowStateOverride",
        "deploymentVersionId",
        "triggerBlockId",
        "stopAfterBlockId",
        "runFromBlock",
        "copilotToolCallId",
        "workflowId",
        "parentWorkspaceId",
        "isClientSession",
    }
)
_V2_DISABLED = {"error": {"code": "NOT_FOUND", "message": "Not found"}}
_MAX_DEPTH = 64


def _user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("aioagents")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        ours = "0"
    return f"aioagents/{ours} python/{platform.python_version()}"


def encode_files(value: Any, *, _depth: int = 0) -> Any:
    """Replace every file-like object (anything with ``read()``) nested in dicts, lists and tuples by the file
    object the API takes: ``{"type": "file", "data": "data:<mime>;base64,…", "name", "mime"}``.

    The mime type is the object's ``content_type`` attribute (default ``application/octet-stream``), the name the
    base name of its ``name``; a seekable file is put back where it was.
    """
    if _depth > _MAX_DEPTH:
        raise SimInvalidRequestError("the input is nested too deeply (or contains a cycle)")
    read = getattr(value, "read", None)
    if callable(read) and not isinstance(value, (str, bytes, bytearray)):
        position = value.tell() if callable(getattr(value, "tell", None)) else None
        content = read()
        if position is not None and callable(getattr(value, "seek", None)):
            value.seek(position)
        if isinstance(content, str):
            content = content.encode()
        mime = getattr(value, "content_type", None) or "application/octet-stream"
        name = getattr(value, "name", None)
        name = os.path.basename(name) if isinstance(name, str) else "file"
        return {
            "type": "file",
            "data": f"data:{mime};base64,{base64.b64encode(content).decode()}",
            "name": name,
            "mime": mime,
        }
    if isinstance(value, Mapping):
        return {k: encode_files(v, _depth=_depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_files(v, _depth=_depth + 1) for v in value]
    return value


@attrs.frozen
class _Run:
    """What an execute asks of the server besides its input: one record from the call to the wire encoding."""

    async_execution: bool = False
    selected_outputs: Sequence[str] | None = None
    execution_timeout: int | None = None
    execution_id: str | None = None


def _validate_timeout(execution_timeout: int | None, async_execution: bool) -> None:
    if execution_timeout is None:
        return
    if not async_execution:
        raise SimInvalidRequestError(
            "execution_timeout is supported only for async executions", "INVALID_EXECUTION_TIMEOUT"
        )
    if (
        isinstance(execution_timeout, bool)
        or not isinstance(execution_timeout, int)
        or not 1 <= execution_timeout <= MAX_EXECUTION_TIMEOUT_SECONDS
    ):
        raise SimInvalidRequestError(
            f"execution_timeout must be an integer between 1 and {MAX_EXECUTION_TIMEOUT_SECONDS}",
            "INVALID_EXECUTION_TIMEOUT",
        )


class WorkflowsClient(ServiceClient):
    """Async client of the Sim Studio workflow API (both generations).

    ``api_key`` defaults to ``$SIM_API_KEY`` (``None`` runs public workflows), ``base_url`` to ``$SIM_BASE_URL`` or
    ``https://www.sim.ai``. ``timeout`` bounds reads (default 30 s), ``execute_timeout`` a sync run (default 310 s:
    longer than the server's own 300 s limit), ``idle_timeout`` the silence a stream may keep (no total limit on
    streams; default :data:`DEFAULT_STREAM_IDLE_TIMEOUT`, 310 s: the server sends no heartbeats and a block may
    run 300 s in silence; ``None`` for no limit). ``max_attempts`` counts every attempt of a call, the first included
    (default 3); ``max_retries`` the retries after it (0: one attempt). The calls take ``timeout``, ``max_retries``
    and ``extra_headers`` for themselves; :meth:`with_options` makes a copy with other defaults on the same
    connections (its ``timeout`` is the read timeout; a run keeps ``execute_timeout``).
    """

    endpoint_spec = Endpoint(
        url_env=("SIM_BASE_URL",),
        default_url=DEFAULT_BASE_URL,
        key_env=("SIM_API_KEY",),
        auth_headers=("X-API-Key",),
        auth_scheme=None,
        timeout=DEFAULT_READ_TIMEOUT,
        headers={"User-Agent": _user_agent(), "X-Sim-Client-Info": _user_agent()},
    )

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        api_version: ApiVersion = "v1",
        execute_timeout: TimeoutLike = None,
        idle_timeout: float | None = DEFAULT_STREAM_IDLE_TIMEOUT,
        **options: Unpack[ClientOptions],
    ) -> None:
        if api_version not in ("v1", "v2", "auto"):
            raise SimInvalidRequestError(f"api_version must be 'v1', 'v2' or 'auto', not {api_version!r}")
        self.api_version: ApiVersion = api_version
        # "auto" settles on the first execute; until then v2 is tried.
        self._generation: Literal["v1", "v2"] | None = None if api_version == "auto" else api_version
        self._execute_timeout = DEFAULT_EXECUTE_TIMEOUT if execute_timeout is None else to_timeout(execute_timeout)
        self.idle_timeout = idle_timeout
        self._rate_limit: RateLimitInfo | None = None
        key = self.endpoint_spec.key(api_key)
        self._connect(base_url, options, key=key, error_factory=sim_error, response_hook=self._on_response)

    def _repr_fields(self) -> str:
        return f", api_version={self.api_version!r}"

    # -- configuration --------------------------------------------------------------------------------------
    def set_api_key(self, api_key: str | None) -> None:
        """Use another API key from the next request on (``None``: send none, for public workflows)."""
        self._transport.set_header("X-API-Key", api_key, secret=True)

    def set_base_url(self, base_url: str) -> None:
        """Talk to another server from the next request on (trailing ``/`` stripped)."""
        self._transport.base_url = base_url

    # -- rate limits ----------------------------------------------------------------------------------------
    def _on_response(self, status: int, headers: Mapping[str, str]) -> None:
        # Replaced on every response, so it never describes an older one; None when the last one said nothing.
        self._rate_limit = RateLimitInfo.from_headers(headers, parse_retry_after(headers))

    def get_rate_limit_info(self) -> RateLimitInfo | None:
        """The rate-limit facts of the most recent response (``None`` before any, or when it carried none)."""
        return self._rate_limit

    async def _get(self, path: str, params: Mapping[str, str] | None, options: RequestOptions) -> Response:
        return await self._transport.request("GET", path, idempotent=True, params=params, **resolve_options(options))

    async def get_usage_limits(
        self,
        **options: Unpack[RequestOptions],
    ) -> UsageLimits:
        """The account's rate-limit buckets, spend and storage (``GET /api/users/me/usage-limits``)."""
        resp = await self._get("/api/users/me/usage-limits", None, options)
        return UsageLimits.from_wire(_json(resp))

    # -- workflows ------------------------------------------------------------------------------------------
    async def get_workflow_status(
        self,
        workflow_id: str,
        **options: Unpack[RequestOptions],
    ) -> WorkflowStatus:
        """Whether a workflow is deployed (``GET /api/workflows/{id}/status``)."""
        resp = await self._get(f"/api/workflows/{_seg(workflow_id)}/status", None, options)
        return WorkflowStatus.from_wire(_json(resp))

    async def validate_workflow(
        self,
        workflow_id: str,
        **options: Unpack[RequestOptions],
    ) -> bool:
        """Whether a workflow exists and is deployed. A missing workflow is ``False``; a bad key or a network
        failure raises (the original SDK returned ``False`` for those too, hiding the real problem)."""
        try:
            status = await self.get_workflow_status(workflow_id, **options)
        except SimNotFoundError:
            return False
        return status.is_deployed

    # -- execution ------------------------------------------------------------------------------------------
    @overload
    async def execute(
        self,
        workflow_id: str,
        input: Any = None,
        *,
        stream: Literal[False] = False,
        async_execution: Literal[False] = False,
        selected_outputs: Sequence[str] | None = None,
        execution_timeout: int | None = None,
        execution_id: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> ExecutionResult: ...

    @overload
    async def execute(
        self,
        workflow_id: str,
        input: Any = None,
        *,
        stream: Literal[True],
        async_execution: Literal[False] = False,
        selected_outputs: Sequence[str] | None = None,
        execution_timeout: int | None = None,
        execution_id: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> EventStream[WorkflowEvent]: ...

    @overload
    async def execute(
        self,
        workflow_id: str,
        input: Any = None,
        *,
        stream: Literal[False] = False,
        async_execution: Literal[True],
        selected_outputs: Sequence[str] | None = None,
        execution_timeout: int | None = None,
        execution_id: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> Job: ...

    @overload
    async def execute(
        self,
        workflow_id: str,
        input: Any = None,
        *,
        stream: bool = False,
        async_execution: bool = False,
        selected_outputs: Sequence[str] | None = None,
        execution_timeout: int | None = None,
        execution_id: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> ExecutionResult | EventStream[WorkflowEvent] | Job: ...

    async def execute(
        self,
        workflow_id: str,
        input: Any = None,
        *,
        stream: bool = False,
        async_execution: bool = False,
        selected_outputs: Sequence[str] | None = None,
        execution_timeout: int | None = None,
        execution_id: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> ExecutionResult | EventStream[WorkflowEvent] | Job:
        """Run a workflow.

        * default: wait for the run and return its :class:`ExecutionResult` (a failed run is returned with
          ``success=False``, not raised);
        * ``stream=True``: an open :class:`~aioagents.EventStream` of typed events (see :meth:`execute_stream`);
        * ``async_execution=True``: queue it and return a :class:`Job` to poll (``execution_timeout`` caps the
          server-side run, 1…604800 s).

        ``input``: a dict becomes the workflow's input fields; any other value arrives as ``{"input": value}``.
        File objects inside it are sent as base64 data URLs. ``selected_outputs`` picks block outputs
        (``"agent1.content"``). ``execution_id`` (v1) / run id (v2) is your own id for the run; reusing one is a 409.
        ``timeout``, ``max_retries`` and ``extra_headers`` apply to this call only (``timeout`` defaults to
        ``execute_timeout`` for a run or a stream's set-up, to the read timeout for a queued job).
        """
        if stream and async_execution:
            raise SimInvalidRequestError("stream and async_execution cannot be combined")
        _validate_timeout(execution_timeout, async_execution)
        sent = resolve_options(options, timeout=None if async_execution else self._execute_timeout)
        run = _Run(async_execution, selected_outputs, execution_timeout, execution_id)
        return await self._execute(sent, None, workflow_id, input, stream, run)

    async def _execute(
        self, sent: SentOptions, retry: RetryPolicy | None, workflow_id: str, input: Any, stream: bool, run: _Run
    ) -> ExecutionResult | EventStream[WorkflowEvent] | Job:
        """An execute of either kind once its options are resolved (``retry``: a policy of the call's own)."""
        if stream:
            events = self._stream_on(
                sent, retry, workflow_id, input, selected_outputs=run.selected_outputs, execution_id=run.execution_id
            )
            await events.__aenter__()
            return events
        async_execution = run.async_execution
        if async_execution:
            run = attrs.evolve(run, selected_outputs=None)
        try:
            resp = await self._post_execute(sent, retry, workflow_id, input, run)
        except FailedRunAnswer as failed:
            # v1 answers a failed or timed-out run with 500/408 and the run's envelope: that is data, not an error.
            finished = ExecutionResult.from_wire(failed.body, http_status=failed.status)
            return Job(self, None, workflow_id=workflow_id, finished=finished) if async_execution else finished
        body = _json(resp)
        if not async_execution:
            return ExecutionResult.from_wire(body, http_status=resp.status)
        if resp.status != 202:
            # Servers from Nov 2025 ignored the async header and ran the workflow right away [contract §1]:
            # the answer is the result, so the job is already done.
            return Job(
                self, None, workflow_id=workflow_id, finished=ExecutionResult.from_wire(body, http_status=resp.status)
            )
        submission = Submission.from_wire(body, workflow_id=workflow_id)
        if submission is None:
            raise ResponseValidationError(
                "the async submit answered 202 without a job id or run id",
                body=body,
                method="POST",
                url=resp.url,
            )
        return Job(self, submission)

    def execute_stream(
        self,
        workflow_id: str,
        input: Any = None,
        *,
        selected_outputs: Sequence[str] | None = None,
        include_thinking: bool = False,
        include_tool_calls: bool = False,
        execution_id: str | None = None,
        idle_timeout: float | None = None,
        **options: Unpack[RequestOptions],
    ) -> EventStream[WorkflowEvent]:
        """Run a workflow and stream its events as they happen (Server-Sent Events, read incrementally).

        >>> async with client.execute_stream("wf", {"message": "Count to five"}) as events:
        ...     async for event in events:
        ...         ...

        Events: :class:`Chunk`, :class:`ChunkReset`, :class:`Thinking`, :class:`ToolCall`, :class:`StreamError`
        (a warning), then :class:`Final` or :class:`Error`. ``include_thinking`` / ``include_tool_calls`` ask for the
        agent-events protocol. The stream has no total timeout, only ``idle_timeout`` (default: the client's).
        The request is sent when the stream is entered (or first iterated); it is retried only if nothing ran.
        ``timeout`` bounds the connection set-up; ``max_retries`` and ``extra_headers`` apply to this call only.
        """
        return self._stream_on(
            resolve_options(options, timeout=self._execute_timeout),
            None,
            workflow_id,
            input,
            selected_outputs=selected_outputs,
            include_thinking=include_thinking,
            include_tool_calls=include_tool_calls,
            execution_id=execution_id,
            idle_timeout=idle_timeout,
        )

    def _stream_on(
        self,
        sent: SentOptions,
        retry: RetryPolicy | None,
        workflow_id: str,
        input: Any,
        *,
        selected_outputs: Sequence[str] | None = None,
        include_thinking: bool = False,
        include_tool_calls: bool = False,
        execution_id: str | None = None,
        idle_timeout: float | None = None,
    ) -> EventStream[WorkflowEvent]:
        generation = self._generation or "v1"  # a stream cannot fall back once opened: "auto" streams on v1
        run = _Run(selected_outputs=selected_outputs, execution_id=execution_id)
        body, headers = self._encode(generation, input, run, stream=True, extra_headers=sent["headers"])
        if include_thinking:
            body["includeThinking"] = True
        if include_tool_calls:
            body["includeToolCalls"] = True
        if include_thinking or include_tool_calls:
            headers["X-Sim-Stream-Protocol"] = STREAM_PROTOCOL
        return self._transport.stream(
            "POST",
            self._execute_path(generation, workflow_id),
            retry=retry,
            decoder=SSEDecoder(self._transport.max_event_size),
            parse=parse_event,
            idempotent=False,
            terminal=is_terminal,
            require_terminal=True,
            json=body,
            headers=headers,
            timeout=sent["timeout"],
            max_attempts=sent["max_attempts"],
            idle_timeout=self.idle_timeout if idle_timeout is None else idle_timeout,
            what=f"workflow {workflow_id} stream",
        )

    async def execute_with_retry(
        self,
        workflow_id: str,
        input: Any = None,
        *,
        stream: bool = False,
        async_execution: bool = False,
        selected_outputs: Sequence[str] | None = None,
        execution_timeout: int | None = None,
        timeout: TimeoutLike = None,
        max_retries: int = 3,
        initial_delay: float = 1.0,
        max_delay: float = 30.0,
        backoff_multiplier: float = 2.0,
        extra_headers: Mapping[str, str] | None = None,
    ) -> ExecutionResult | EventStream[WorkflowEvent] | Job:
        """:meth:`execute` with the original SDK's retry knobs: up to ``max_retries`` more attempts, waits from
        ``initial_delay`` growing by ``backoff_multiplier`` up to ``max_delay``, ±25 % jitter.

        Unlike the original, a server's ``Retry-After`` is waited in full (jitter only lengthens it), and a retry
        happens only when nothing ran (429, 503 with Retry-After, a connection that was never made)."""
        if stream and async_execution:
            raise SimInvalidRequestError("stream and async_execution cannot be combined")
        _validate_timeout(execution_timeout, async_execution)
        policy = RetryPolicy(
            max_attempts=resolve_attempts(None, max_retries) or 1,
            initial_delay=initial_delay,
            max_delay=max_delay,
            multiplier=backoff_multiplier,
            jitter=0.25,
            max_retry_after=max(max_delay, self._transport.retry.max_retry_after),
        )
        sent = resolve_options(
            {"timeout": timeout, "extra_headers": extra_headers},
            timeout=None if async_execution else self._execute_timeout,
        )
        run = _Run(async_execution, selected_outputs, execution_timeout)
        return await self._execute(sent, policy, workflow_id, input, stream, run)

    # -- jobs and runs --------------------------------------------------------------------------------------
    async def get_job_status(
        self,
        job_id: str,
        **options: Unpack[RequestOptions],
    ) -> JobStatus:
        """One poll of a v1 async job (``GET /api/jobs/{id}``)."""
        resp = await self._get(f"/api/jobs/{_seg(job_id)}", None, options)
        return JobStatus.from_wire(_json(resp), fallback_id=job_id)

    async def get_run_status(
        self,
        workflow_id: str,
        run_id: str,
        *,
        include_output: bool | None = True,
        selected_outputs: Sequence[str] | None = None,
        **options: Unpack[RequestOptions],
    ) -> JobStatus:
        """One poll of a v2 run (``GET /api/v2/workflows/{id}/runs/{runId}``). ``include_output=None`` leaves the
        parameter out (the server's default); ``selected_outputs`` takes block ids only (names are not resolved)."""
        params: dict[str, str] = {}
        if include_output is not None:
            params["includeOutput"] = "true" if include_output else "false"
        if selected_outputs:
            params["selectedOutputs"] = ",".join(selected_outputs)
        resp = await self._get(f"/api/v2/workflows/{_seg(workflow_id)}/runs/{_seg(run_id)}", params or None, options)
        return JobStatus.from_wire(_json(resp), fallback_id=run_id)

    def job(self, job_id: str, *, workflow_id: str | None = None) -> Job:
        """A handle on an existing job: a v1 job id alone, or a v2 run id with its ``workflow_id``."""
        kind: Literal["job", "run"] = "run" if workflow_id is not None else "job"
        return Job(self, Submission(id=job_id, kind=kind, workflow_id=workflow_id or ""))

    # -- internals ------------------------------------------------------------------------------------------
    @staticmethod
    def _execute_path(generation: Literal["v1", "v2"], workflow_id: str) -> str:
        prefix = "/api/v2" if generation == "v2" else "/api"
        return f"{prefix}/workflows/{_seg(workflow_id)}/execute"

    @staticmethod
    def _encode(
        generation: Literal["v1", "v2"],
        input: Any,
        run: _Run,
        *,
        stream: bool,
        extra_headers: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The body and headers of an execute in one generation's dialect (contract §3.1, §3.2, §7)."""
        async_execution, selected_outputs = run.async_execution, run.selected_outputs
        execution_timeout, execution_id = run.execution_timeout, run.execution_id
        if input is None:
            fields: dict[str, Any] = {}
        elif isinstance(input, Mapping):
            fields = dict(input)
        else:
            fields = {"input": input}
        fields = encode_files(fields)
        # The caller's extra headers first: the protocol's own control headers win over them.
        headers: dict[str, str] = dict(extra_headers) if extra_headers else {}
        if async_execution and selected_outputs:
            raise SimInvalidRequestError("selected_outputs cannot be combined with async_execution")
        if generation == "v2":
            body: dict[str, Any] = {"input": fields}
            if stream:
                body["stream"] = True
            if selected_outputs is not None:
                body["selectedOutputs"] = list(selected_outputs)
            if async_execution:
                body["async"] = True
            if execution_timeout is not None:
                body["executionTimeoutSeconds"] = execution_timeout
            if execution_id is not None:
                headers["X-Run-Id"] = execution_id
            return body, headers
        reserved = sorted(k for k in fields if k in V1_CONTROL_KEYS)
        if reserved and isinstance(input, Mapping):
            raise SimInvalidRequestError(
                f"input field(s) {', '.join(reserved)} are control keys of the v1 API and would not reach the "
                "workflow; rename them or use api_version='v2'"
            )
        body = fields
        if stream:
            body["stream"] = True
        if selected_outputs is not None:
            body["selectedOutputs"] = list(selected_outputs)
        if async_execution:
            headers["X-Execution-Mode"] = "async"
        if execution_timeout is not None:
            headers["X-Execution-Timeout-Seconds"] = str(execution_timeout)
        if execution_id is not None:
            headers["X-Execution-Id"] = execution_id
        return body, headers

    async def _post_execute(
        self, sent: SentOptions, retry: RetryPolicy | None, workflow_id: str, input: Any, run: _Run
    ) -> Response:
        """POST an execute in the current generation; under "auto", fall back to v1 on v2's switched-off 404."""
        if self._generation is not None:
            return await self._post_in(self._generation, sent, retry, workflow_id, input, run)
        try:
            resp = await self._post_in("v2", sent, retry, workflow_id, input, run)
        except SimNotFoundError as err:
            if err.body != _V2_DISABLED:
                raise
            # The v2 flag is off here; a 404 ran nothing, so sending the v1 request is safe.
            self._generation = "v1"
            return await self._post_in("v1", sent, retry, workflow_id, input, run)
        self._generation = "v2"
        return resp

    async def _post_in(
        self,
        generation: Literal["v1", "v2"],
        sent: SentOptions,
        retry: RetryPolicy | None,
        workflow_id: str,
        input: Any,
        run: _Run,
    ) -> Response:
        body, headers = self._encode(generation, input, run, stream=False, extra_headers=sent["headers"])
        return await self._transport.request(
            "POST",
            self._execute_path(generation, workflow_id),
            idempotent=False,
            retry=retry,
            json=body,
            headers=headers,
            timeout=sent["timeout"],
            max_attempts=sent["max_attempts"],
        )


def _seg(value: str) -> str:
    """One path segment: quoted so an id can never add segments or climb out of its route."""
    if not value or value in (".", ".."):
        raise SimInvalidRequestError(f"invalid id {value!r}")
    return quote(value, safe="")


def _json(resp: Response) -> Any:
    return resp.json() if resp.content else None
