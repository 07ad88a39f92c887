"""A fake Sim Studio server: the v1 and v2 workflow APIs as the contract describes them, on a loopback port.

What it serves (see ``shared/contracts/sim-workflows.md``):

* v1: ``POST /api/workflows/{id}/execute`` (sync JSON, SSE with ``stream``, 202 jobs with
  ``X-Execution-Mode: async``), ``GET /api/workflows/{id}/status``, ``GET /api/jobs/{jobId}``,
  ``GET /api/users/me/usage-limits``.
* v2 (behind :attr:`FakeSimServer.v2_enabled`): ``POST /api/v2/workflows/{id}/execute`` (``{"data": …}``
  envelope, strict body) and ``GET /api/v2/workflows/{id}/runs/{runId}``.

Every answer carries ``x-request-id``; v2 answers also carry ``Cache-Control: private, no-store`` and the
``X-RateLimit-*`` trio with an ISO reset. Jobs and runs progress one step per poll. The error bodies keep the
two generations apart: v1 sends ``{"error": "<msg>"}`` (sometimes with a flat ``code``), v2 sends
``{"error": {"code", "message"}}``. Rate-limit and overload answers are queued with the ``*_fault``
builders and the base class's :meth:`~aioagents.testing.FakeServer.inject`::

    srv = FakeSimServer()
    srv.add_workflow(FakeWorkflow(id="wf", chunks=["One", ", two"], chunk_delay=0.2))
    srv.inject(srv.rate_limited_fault(retry_after=2), path="/api/v2/workflows/wf/execute")
"""

from __future__ import annotations

import asyncio
import base64
import datetime as _dt
import itertools
import json
import re
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import attrs
from aiohttp import web

from aioagents.testing._server import FakeServer, Fault
from aioagents.workflows.client import V1_CONTROL_KEYS as _CLIENT_CONTROL_KEYS

__all__ = ["FakeSimServer", "FakeToolCall", "FakeWorkflow", "SimJob", "data_url", "sse_frame"]

# Keys of a v1 body that steer the run and are therefore not part of the workflow input [contract §3.1]: the list the
# client refuses as input field names, less isClientSession, which the server refuses (400) for API-key callers
# instead of stripping it.
V1_CONTROL_KEYS = _CLIENT_CONTROL_KEYS - {"isClientSession"}
# The v2 body schema is strict: any other key is a 400 [contract §3.2].
V2_BODY_KEYS = frozenset(
    {
        "input",
        "async",
        "stream",
        "selectedOutputs",
        "executionTimeoutSeconds",
        "includeThinking",
        "includeToolCalls",
        "includeFileBase64",
        "base64MaxBytes",
    }
)
MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_EXECUTION_TIMEOUT_SECONDS = 604_800
STREAM_PROTOCOL = "agent-events-v1"
V2_DISABLED_BODY: Mapping[str, Any] = {"error": {"code": "NOT_FOUND", "message": "Not found"}}
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

DoneStyle = Literal["quoted", "bare", "event"]


@attrs.frozen(kw_only=True)
class FakeToolCall:
    """A tool call the fake agent block reports (``event: tool``, phase start then end)."""

    id: str
    name: str
    status: str = "success"


@attrs.frozen(kw_only=True)
class FakeWorkflow:
    """One deployed (or not) workflow and how its runs behave.

    ``output`` is the run's output; when it is a callable it is called with the workflow input. ``None`` means
    "echo": ``{"content": <all chunks joined>, "input": <input>}``. ``error`` makes every run fail with that
    message (v1: HTTP 500 ``success:false``; v2: HTTP 200 ``status:"failed"``; stream: ``final`` with
    ``success:false``). ``response_block=(status, body)`` makes a v1 sync run answer with that block's own status
    and body instead of the envelope. ``chunk_delay`` paces the SSE frames so a test can see a chunk before the run
    ends.
    """

    id: str
    deployed: bool = True
    public: bool = False
    needs_redeployment: bool = False
    deployed_at: str | None = "2026-01-01T00:00:00.000Z"
    output: Any = None
    chunks: Sequence[str] = ("Hello", ", world")
    block_id: str = "7b7735b9-19e5-4bd6-818b-46aae2596e9f"
    chunk_delay: float = 0.0
    error: str | None = None
    error_code: str = "EXECUTION_FAILED"
    v2_status: str | None = None
    thinking: Sequence[str] = ()
    tool_calls: Sequence[FakeToolCall] = ()
    reset_after: int | None = None
    stream_error_after: int | None = None
    stream_error: str = "Provider hiccup"
    abort_stream: str | None = None
    response_block: tuple[int, Any] | None = None
    polls_to_complete: int = 2
    duration_ms: int = 10


@attrs.define
class SimJob:
    """A queued async run (a v1 job or a v2 run), advanced one step by each poll."""

    id: str
    workflow: FakeWorkflow
    input: Any
    generation: Literal["v1", "v2"]
    execution_id: str
    created_at: str
    execution_timeout_seconds: int | None = None
    polls: int = 0


def _now_iso(offset_seconds: float = 0.0) -> str:
    moment = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=offset_seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _upper_snake(message: str) -> str:
    # The legacy v1 reads derive their `code` from the message this way [contract §3.3].
    return re.sub(r"[^A-Za-z0-9]+", "_", message).strip("_").upper()


def sse_frame(payload: Any) -> bytes:
    """One SSE frame the way the server encodes it: ``data: <JSON>`` and a blank line."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class FakeSimServer(FakeServer):
    """A contract-faithful Sim server (v1 and v2) with jobs, runs, SSE, rate-limit headers and API-key checks.

    Attributes a test may set before or between calls:

    * ``api_keys``: the keys that authenticate (``X-API-Key``; a Bearer token never does).
    * ``v2_enabled``: when False every v2 route answers the exact "flag off" 404.
    * ``done_style``: the end-of-stream marker: ``"quoted"`` (the server's ``data: "[DONE]"``), ``"bare"``
      (``data: [DONE]``) or ``"event"`` (the docs' ``{"event":"done",…}`` frame then ``data: [DONE]``).
    * ``legacy_async_shape``: answer a v1 async submit the 2025-07 way (``taskId``, ``links``).
    * ``legacy_sync_shape``: answer a v1 sync run the pre-Nov-2025 way: the whole result minus ``logs``, so with
      ``traceSpans`` and ``totalDuration``.
    * ``usage_shape``: ``"current"`` (``requestsPerMinute``/``maxBurst``/``storage``) or ``"legacy"``
      (``limit``).
    * ``usage_exceeded``: every execute answers 402.
    * ``rate_limit``: the token count a fresh bucket holds; ``enforce_rate_limit`` turns an empty bucket
      into 429.
    * ``v1_rate_limit_reset``: send ``X-RateLimit-*`` on v1 answers too, with the reset as ``"epoch"`` or
      ``"iso"``.
    """

    def __init__(self, *, api_keys: Sequence[str] = ("sk-test",)) -> None:
        self.api_keys: set[str] = set(api_keys)
        self.workflows: dict[str, FakeWorkflow] = {}
        self.jobs: dict[str, SimJob] = {}
        self.v2_enabled = True
        self.done_style: DoneStyle = "quoted"
        self.legacy_async_shape = False
        self.legacy_sync_shape = False
        self.usage_shape: Literal["current", "legacy"] = "current"
        self.usage_exceeded = False
        self.rate_limit = 100
        self.enforce_rate_limit = False
        self.v1_rate_limit_reset: Literal["epoch", "iso"] | None = None
        self.plan = "pro"
        self.current_period_cost = 3.5
        self.usage_limit = 20.0
        # Streams whose handler is still running: a client that leaks or abandons a connection shows here.
        self.open_streams = 0
        self.streams_started = 0
        self.streams_completed = 0
        self._remaining = self.rate_limit
        self._seen_execution_ids: set[str] = set()
        self._seen_run_ids: set[str] = set()
        self._ids = itertools.count(1)
        self._state_lock = threading.Lock()
        super().__init__()
        self.add_workflow(FakeWorkflow(id="workflow-id"))

    # -- configuration --------------------------------------------------------------------------------------
    def add_workflow(self, workflow: FakeWorkflow) -> FakeWorkflow:
        """Register (or replace) a workflow and return it."""
        self.workflows[workflow.id] = workflow
        return workflow

    def reset_rate_limit(self, tokens: int | None = None) -> None:
        """Refill the bucket (to ``tokens`` or :attr:`rate_limit`)."""
        with self._state_lock:
            if tokens is not None:
                self.rate_limit = tokens
            self._remaining = self.rate_limit

    # -- fault builders: the shapes the real server sends, for FakeServer.inject -----------------------------
    def rate_limited_fault(self, *, retry_after: int | None = 1, generation: Literal["v1", "v2"] = "v2") -> Fault:
        """A throttled answer. v2: ``RATE_LIMITED`` with the ``X-RateLimit-*`` trio and ``Retry-After``;
        v1: the bare ``{"error": …}`` a preprocess 429 sends (no headers at all unless ``retry_after``)."""
        if generation == "v1":
            return Fault.status_code(
                429,
                {"error": "Rate limit exceeded. Please try again later."},
                retry_after=None if retry_after is None else str(retry_after),
            )
        details: dict[str, Any] = {"code": "RATE_LIMIT_EXCEEDED"}
        if retry_after is not None:
            details["retryAfter"] = _now_iso(retry_after)
        headers = {**self._v2_static_headers(), **self._rate_headers(remaining=0, reset_format="iso")}
        return Fault.status_code(
            429,
            {"error": {"code": "RATE_LIMITED", "message": "Rate limit exceeded", "details": details}},
            retry_after=None if retry_after is None else str(retry_after),
            headers=headers,
        )

    def admission_gate_fault(self) -> Fault:
        """The v1 admission-gate 429: a flat body with ``code``, ``Retry-After: 5``, no ``X-RateLimit-*``."""
        return Fault.status_code(
            429,
            {
                "error": "Too many requests",
                "message": "Server is at capacity. Please retry shortly.",
                "code": "ADMISSION_GATE_CAPACITY",
                "retryable": True,
                "retryAfterSeconds": 5,
            },
            retry_after="5",
        )

    def unavailable_fault(self, *, retry_after: int | None = 5, generation: Literal["v1", "v2"] = "v2") -> Fault:
        """A 503 ``SERVICE_UNAVAILABLE`` (v2 or v1 shape), with or without Retry-After."""
        ra = None if retry_after is None else str(retry_after)
        if generation == "v1":
            return Fault.status_code(503, {"error": "Service temporarily unavailable"}, retry_after=ra)
        return Fault.status_code(
            503,
            {"error": {"code": "SERVICE_UNAVAILABLE", "message": "Service temporarily unavailable"}},
            retry_after=ra,
            headers=self._v2_static_headers(),
        )

    def enqueue_ambiguous_fault(self) -> Fault:
        """The v1 async 503 of unknown outcome: ``ASYNC_ENQUEUE_AMBIGUOUS``, on purpose no Retry-After."""
        execution_id = str(uuid.uuid4())
        return Fault.status_code(
            503,
            {
                "error": "Async execution enqueue could not be confirmed",
                "code": "ASYNC_ENQUEUE_AMBIGUOUS",
                "executionId": execution_id,
            },
            headers={"X-Execution-Id": execution_id},
        )

    def error_fault(
        self, status: int, message: str, *, code: str | None = None, generation: Literal["v1", "v2"] = "v1"
    ) -> Fault:
        """An error in either shape: v1 ``{"error": msg[, "code"]}``, v2 ``{"error": {code, message}}``."""
        if generation == "v2":
            return Fault.status_code(
                status,
                {"error": {"code": code or "INTERNAL_ERROR", "message": message}},
                headers=self._v2_static_headers(),
            )
        body: dict[str, Any] = {"error": message}
        if code is not None:
            body["code"] = code
        return Fault.status_code(status, body)

    # -- routes ---------------------------------------------------------------------------------------------
    def setup_routes(self, app: web.Application) -> None:
        app.on_response_prepare.append(self._stamp_request_id)
        app.router.add_post("/api/workflows/{workflow_id}/execute", self._v1_execute)
        app.router.add_get("/api/workflows/{workflow_id}/status", self._v1_status)
        app.router.add_get("/api/jobs/{job_id}", self._v1_job)
        app.router.add_get("/api/users/me/usage-limits", self._usage_limits)
        app.router.add_post("/api/v2/workflows/{workflow_id}/execute", self._v2_execute)
        app.router.add_get("/api/v2/workflows/{workflow_id}/runs/{run_id}", self._v2_run)

    @staticmethod
    async def _stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
        # Every route runs inside the server's `withRouteHandler`, which sets the id [contract §2].
        response.headers.setdefault("x-request-id", uuid.uuid4().hex)

    # -- shared helpers -------------------------------------------------------------------------------------
    def _next_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):04d}-{uuid.uuid4().hex[:8]}"

    @staticmethod
    def _key(request: web.Request) -> str | None:
        return request.headers.get("X-API-Key")

    def _auth(self, request: web.Request) -> Literal["ok", "missing", "invalid"]:
        key = self._key(request)
        if key is None:
            return "missing"
        return "ok" if key in self.api_keys else "invalid"

    @staticmethod
    def _v2_static_headers() -> dict[str, str]:
        return {"Cache-Control": "private, no-store"}

    def _rate_headers(self, *, remaining: int, reset_format: Literal["epoch", "iso"]) -> dict[str, str]:
        reset_epoch = int(_dt.datetime.now(_dt.timezone.utc).timestamp()) + 60
        reset = _now_iso(60) if reset_format == "iso" else str(reset_epoch)
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(remaining, 0)),
            "X-RateLimit-Reset": reset,
        }

    def _spend_token(self) -> int | None:
        """Take one token; the remaining count, or None when the bucket is empty and enforced."""
        with self._state_lock:
            if self._remaining <= 0 and self.enforce_rate_limit:
                return None
            self._remaining = max(self._remaining - 1, 0)
            return self._remaining

    def _v1_json(self, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
        hdrs = dict(headers or {})
        if self.v1_rate_limit_reset is not None:
            hdrs.update(self._rate_headers(remaining=self._remaining, reset_format=self.v1_rate_limit_reset))
        return web.json_response(payload, status=status, headers=hdrs)

    def _v2_json(
        self, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None, *, remaining: int
    ) -> web.Response:
        hdrs = {**self._v2_static_headers(), **self._rate_headers(remaining=remaining, reset_format="iso")}
        hdrs.update(headers or {})
        return web.json_response(payload, status=status, headers=hdrs)

    def _v2_error(
        self,
        status: int,
        code: str,
        message: str,
        *,
        remaining: int | None = None,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        err: dict[str, Any] = {"code": code, "message": message}
        if details is not None:
            err["details"] = details
        rem = self._remaining if remaining is None else remaining
        return self._v2_json({"error": err}, status, headers, remaining=rem)

    @staticmethod
    async def _read_json(request: web.Request) -> tuple[Any, str | None]:
        raw = await request.read()
        if len(raw) > MAX_BODY_BYTES:
            return None, "too_large"
        if not raw:
            return {}, None
        try:
            return json.loads(raw), None
        except ValueError:
            return None, "bad_json"

    @staticmethod
    def _output_for(workflow: FakeWorkflow, workflow_input: Any) -> Any:
        if callable(workflow.output):
            return workflow.output(workflow_input)
        if workflow.output is not None:
            return workflow.output
        return {"content": "".join(workflow.chunks), "input": workflow_input}

    @staticmethod
    def _metadata(workflow: FakeWorkflow) -> dict[str, Any]:
        return {"duration": workflow.duration_ms, "startTime": _now_iso(), "endTime": _now_iso()}

    # -- v1 -------------------------------------------------------------------------------------------------
    async def _v1_execute(self, request: web.Request) -> web.StreamResponse:
        workflow = self.workflows.get(request.match_info["workflow_id"])
        auth = self._auth(request)
        if auth == "invalid" or (auth == "missing" and not (workflow is not None and workflow.public)):
            # An invalid key never falls back to public access [contract §2].
            return web.json_response({"error": "Invalid API key" if auth == "invalid" else "Unauthorized"}, status=401)
        body, problem = await self._read_json(request)
        if problem == "too_large":
            return web.json_response({"error": "Workflow execution request body exceeds maximum size"}, status=413)
        if problem == "bad_json":
            return web.json_response({"error": "Invalid JSON in request body"}, status=400)
        if not isinstance(body, dict):
            return web.json_response(
                {"error": "Invalid request body", "details": [{"path": "", "message": "Expected object"}]},
                status=400,
            )
        if workflow is None:
            return web.json_response({"error": "Workflow not found"}, status=404)
        if not workflow.deployed:
            return web.json_response({"error": "Workflow is not deployed"}, status=403)
        if auth == "ok":
            for forbidden in ("isClientSession", "workflowStateOverride", "useDraftState"):
                if forbidden in body:
                    return web.json_response({"error": f"{forbidden} is not allowed for API callers"}, status=400)
            if body.get("triggerType", "api") != "api":
                return web.json_response({"error": "Invalid triggerType for API callers"}, status=400)
        if self.usage_exceeded:
            return web.json_response({"error": "Usage limit exceeded. Please upgrade your plan."}, status=402)

        execution_id = request.headers.get("X-Execution-Id")
        if execution_id is not None:
            with self._state_lock:
                if execution_id in self._seen_execution_ids:
                    return web.json_response(
                        {"error": "Execution id already used", "code": "EXECUTION_ID_CONFLICT"}, status=409
                    )
                self._seen_execution_ids.add(execution_id)
        execution_id = execution_id or str(uuid.uuid4())

        workflow_input: Any = {k: v for k, v in body.items() if k not in V1_CONTROL_KEYS}
        if not workflow_input and "input" in body:
            workflow_input = body["input"]
        selected = body.get("selectedOutputs") or []

        if request.headers.get("X-Execution-Mode") == "async":
            if auth != "ok":
                return web.json_response({"error": "Async execution requires an API key"}, status=400)
            if selected or "includeFileBase64" in body or "base64MaxBytes" in body:
                return web.json_response(
                    {"error": "Async execution does not support draft or override execution controls"},
                    status=400,
                )
            timeout_header = request.headers.get("X-Execution-Timeout-Seconds")
            timeout_s: int | None = None
            if timeout_header is not None:
                if not timeout_header.isdecimal() or not 1 <= int(timeout_header) <= MAX_EXECUTION_TIMEOUT_SECONDS:
                    return web.json_response({"error": "Invalid X-Execution-Timeout-Seconds"}, status=400)
                timeout_s = int(timeout_header)
            job = self._new_job(workflow, workflow_input, "v1", execution_id, timeout_s)
            status_path = f"/api/jobs/{job.id}"
            if self.legacy_async_shape:
                return self._v1_json(
                    {
                        "success": True,
                        "taskId": job.id,
                        "status": "queued",
                        "createdAt": job.created_at,
                        "links": {"status": status_path},
                    },
                    202,
                )
            return self._v1_json(
                {
                    "success": True,
                    "async": True,
                    "jobId": job.id,
                    "executionId": execution_id,
                    "message": "Workflow execution queued",
                    "statusUrl": f"{self.url}{status_path}",
                },
                202,
            )

        if body.get("stream") is True or request.headers.get("X-Stream-Response") == "true":
            return await self._stream(request, workflow, workflow_input, body)

        if workflow.response_block is not None:
            status, payload = workflow.response_block
            return self._v1_json(payload, status)
        if workflow.error is not None:
            return self._v1_json(
                {
                    "success": False,
                    "output": {},
                    "error": workflow.error,
                    "metadata": self._metadata(workflow),
                },
                500,
            )
        answer: dict[str, Any] = {
            "success": True,
            "executionId": execution_id,
            "output": self._output_for(workflow, workflow_input),
            "metadata": self._metadata(workflow),
        }
        if self.legacy_sync_shape:
            answer["traceSpans"] = [
                {
                    "id": f"span-{workflow.block_id}",
                    "name": "Agent 1",
                    "type": "agent",
                    "duration": workflow.duration_ms,
                    "status": "success",
                }
            ]
            answer["totalDuration"] = workflow.duration_ms
        return self._v1_json(answer)

    async def _v1_status(self, request: web.Request) -> web.StreamResponse:
        if self._auth(request) != "ok":
            return web.json_response({"error": "Unauthorized"}, status=401)
        workflow = self.workflows.get(request.match_info["workflow_id"])
        if workflow is None:
            return web.json_response({"error": "Workflow not found", "code": "WORKFLOW_NOT_FOUND"}, status=404)
        return web.json_response(
            {
                "isDeployed": workflow.deployed,
                "deployedAt": workflow.deployed_at if workflow.deployed else None,
                "needsRedeployment": workflow.needs_redeployment,
            }
        )

    async def _v1_job(self, request: web.Request) -> web.StreamResponse:
        auth = self._auth(request)
        if auth != "ok":
            message = "Authentication required" if auth == "missing" else "Invalid API key"
            return self._v1_json({"error": message, "code": _upper_snake(message)}, 401)
        job = self.jobs.get(request.match_info["job_id"])
        if job is None or job.generation != "v1":
            return self._v1_json({"error": "Task not found", "code": "TASK_NOT_FOUND"}, 404)
        state = self._advance(job)
        payload: dict[str, Any] = {
            "success": True,
            "taskId": job.id,
            "status": {"queued": "pending", "running": "processing"}.get(state, state),
            "metadata": {"startedAt": job.created_at},
        }
        if state == "completed":
            payload["output"] = self._output_for(job.workflow, job.input)
            payload["metadata"].update(completedAt=_now_iso(), duration=job.workflow.duration_ms)
        elif state == "failed":
            payload["error"] = job.workflow.error
            payload["metadata"].update(completedAt=_now_iso(), duration=job.workflow.duration_ms)
        else:
            payload["estimatedDuration"] = job.workflow.duration_ms
        return self._v1_json(payload)

    async def _usage_limits(self, request: web.Request) -> web.StreamResponse:
        auth = self._auth(request)
        if auth != "ok":
            message = "Authentication required" if auth == "missing" else "Invalid API key"
            return self._v1_json({"error": message, "code": _upper_snake(message)}, 401)
        reset_at = _now_iso(60)
        per_minute = {"sync": 150, "async": 1000}

        def bucket(kind: str) -> dict[str, Any]:
            rpm = per_minute[kind]
            if self.usage_shape == "legacy":
                return {"isLimited": False, "limit": rpm, "remaining": rpm - 1, "resetAt": reset_at}
            return {
                "isLimited": False,
                "requestsPerMinute": rpm,
                "maxBurst": 2 * rpm,
                "remaining": 2 * rpm - 1,
                "resetAt": reset_at,
            }

        payload: dict[str, Any] = {
            "success": True,
            "rateLimit": {"sync": bucket("sync"), "async": bucket("async"), "authType": "api"},
            "usage": {
                "currentPeriodCost": self.current_period_cost,
                "limit": self.usage_limit,
                "plan": self.plan,
            },
        }
        if self.usage_shape == "current":
            used = 1_048_576
            limit = 5 * 1_073_741_824
            payload["storage"] = {
                "usedBytes": used,
                "limitBytes": limit,
                "percentUsed": round(used / limit * 100, 4),
            }
        return self._v1_json(payload)

    # -- v2 -------------------------------------------------------------------------------------------------
    def _v2_gate(self, request: web.Request, workflow: FakeWorkflow | None) -> web.Response | int:
        """The checks every v2 route makes first; an error answer, or the remaining token count."""
        if not self.v2_enabled:
            return web.json_response(V2_DISABLED_BODY, status=404)
        auth = self._auth(request)
        if auth == "invalid" or (auth == "missing" and not (workflow is not None and workflow.public)):
            return self._v2_error(
                401,
                "UNAUTHORIZED",
                "Invalid API key" if auth == "invalid" else "API key required",
                headers={"WWW-Authenticate": 'SimApiKey realm="Sim API", header="x-api-key"'},
            )
        remaining = self._spend_token()
        if remaining is None:
            return self._v2_error(
                429,
                "RATE_LIMITED",
                "Rate limit exceeded",
                remaining=0,
                details={"code": "RATE_LIMIT_EXCEEDED"},
                headers={"Retry-After": "1"},
            )
        return remaining

    async def _v2_execute(self, request: web.Request) -> web.StreamResponse:
        workflow = self.workflows.get(request.match_info["workflow_id"])
        gate = self._v2_gate(request, workflow)
        if isinstance(gate, web.Response):
            return gate
        remaining = gate
        anonymous = self._auth(request) == "missing"
        body, problem = await self._read_json(request)
        if problem == "too_large":
            return self._v2_error(413, "PAYLOAD_TOO_LARGE", "Request body exceeds maximum size")
        if problem == "bad_json":
            return self._v2_error(400, "BAD_REQUEST", "Invalid JSON in request body")
        if not isinstance(body, dict):
            return self._v2_error(400, "BAD_REQUEST", "Invalid request body")
        unknown = sorted(set(body) - V2_BODY_KEYS)
        if unknown:
            return self._v2_error(
                400,
                "BAD_REQUEST",
                "Invalid request body",
                details=[{"path": k, "message": "Unrecognized key"} for k in unknown],
            )
        workflow_input = body.get("input", {})
        if not isinstance(workflow_input, dict):
            return self._v2_error(
                400,
                "BAD_REQUEST",
                "Invalid request body",
                details=[{"path": "input", "message": "Expected object"}],
            )
        is_async = body.get("async", False) is True
        is_stream = body.get("stream", False) is True
        shaping = [
            k
            for k in (
                "selectedOutputs",
                "includeThinking",
                "includeToolCalls",
                "includeFileBase64",
                "base64MaxBytes",
            )
            if k in body
        ]
        if is_async and is_stream:
            return self._v2_error(400, "BAD_REQUEST", "async and stream cannot be combined")
        if is_async and shaping:
            return self._v2_error(400, "BAD_REQUEST", "Async execution does not support output-shaping options")
        if "executionTimeoutSeconds" in body:
            t = body["executionTimeoutSeconds"]
            if not is_async:
                return self._v2_error(400, "BAD_REQUEST", "executionTimeoutSeconds requires async")
            if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= MAX_EXECUTION_TIMEOUT_SECONDS:
                return self._v2_error(400, "BAD_REQUEST", "executionTimeoutSeconds out of range")
        if (body.get("includeThinking") or body.get("includeToolCalls")) and (
            not is_stream or request.headers.get("X-Sim-Stream-Protocol") != STREAM_PROTOCOL
        ):
            return self._v2_error(400, "BAD_REQUEST", "includeThinking/includeToolCalls need stream and the protocol")
        if workflow is None:
            return self._v2_error(404, "NOT_FOUND", "Workflow not found", remaining=remaining)
        if not workflow.deployed:
            return self._v2_error(403, "FORBIDDEN", "Workflow is not deployed", remaining=remaining)
        if self.usage_exceeded:
            return self._v2_error(402, "USAGE_LIMIT_EXCEEDED", "Usage limit exceeded", remaining=remaining)

        run_id = request.headers.get("X-Run-Id")
        if run_id is not None:
            if not _RUN_ID_RE.match(run_id):
                return self._v2_error(400, "BAD_REQUEST", "Invalid X-Run-Id", remaining=remaining)
            with self._state_lock:
                if run_id in self._seen_run_ids:
                    # A one-shot uniqueness claim, not an idempotency key [contract §2].
                    return self._v2_error(
                        409,
                        "CONFLICT",
                        "Run id already used",
                        remaining=remaining,
                        details={"code": "RUN_ID_CONFLICT"},
                    )
                self._seen_run_ids.add(run_id)
        run_id = run_id or self._next_id("run")

        if is_async:
            if anonymous:
                return self._v2_error(400, "BAD_REQUEST", "Async execution requires an API key", remaining=remaining)
            job = self._new_job(workflow, workflow_input, "v2", run_id, body.get("executionTimeoutSeconds"), run_id)
            return self._v2_json(
                {
                    "data": {
                        "runId": job.id,
                        "statusUrl": f"{self.url}/api/v2/workflows/{workflow.id}/runs/{job.id}",
                    }
                },
                202,
                {"X-Run-Id": job.id},
                remaining=remaining,
            )
        if is_stream:
            return await self._stream(
                request,
                workflow,
                workflow_input,
                body,
                extra_headers={**self._v2_static_headers(), "X-Run-Id": run_id},
            )

        status = workflow.v2_status or ("failed" if workflow.error is not None else "completed")
        error = None
        if workflow.error is not None:
            error = {"code": workflow.error_code, "message": workflow.error}
        return self._v2_json(
            {
                "data": {
                    "runId": run_id,
                    "workflowId": workflow.id,
                    "status": status,
                    "output": None if workflow.error is not None else self._output_for(workflow, workflow_input),
                    "error": error,
                    "startedAt": _now_iso(),
                    "endedAt": _now_iso(),
                    "durationMs": workflow.duration_ms,
                }
            },
            headers={"X-Run-Id": run_id},
            remaining=remaining,
        )

    async def _v2_run(self, request: web.Request) -> web.StreamResponse:
        workflow = self.workflows.get(request.match_info["workflow_id"])
        gate = self._v2_gate(request, None)
        if isinstance(gate, web.Response):
            return gate
        job = self.jobs.get(request.match_info["run_id"])
        if job is None or job.generation != "v2" or workflow is None or job.workflow.id != workflow.id:
            # Cross-tenant or unknown ids are concealed as a plain 404 [contract §6].
            return self._v2_error(404, "NOT_FOUND", "Run not found", remaining=gate)
        state = self._advance(job)
        terminal = state in ("completed", "failed", "cancelled")
        include_output = request.query.get("includeOutput") == "true"
        output: Any = None
        block_outputs: Any = None
        if include_output and state == "completed":
            output = self._output_for(job.workflow, job.input)
            selected = [s for s in request.query.get("selectedOutputs", "").split(",") if s]
            if selected:
                # Only block ids are honoured here; a name selects nothing [contract §3.3].
                block_outputs = {s: output for s in selected if s.split(".")[0] == job.workflow.block_id}
        return self._v2_json(
            {
                "data": {
                    "runId": job.id,
                    "workflowId": job.workflow.id,
                    "status": state,
                    "trigger": "api",
                    "startedAt": job.created_at,
                    "endedAt": _now_iso() if terminal else None,
                    "durationMs": job.workflow.duration_ms if terminal else None,
                    "paused": False,
                    "cost": {"total": 0.001} if terminal else None,
                    "error": (
                        {"code": job.workflow.error_code, "message": job.workflow.error} if state == "failed" else None
                    ),
                    "output": output,
                    "blockOutputs": block_outputs,
                }
            },
            remaining=gate,
        )

    # -- jobs -----------------------------------------------------------------------------------------------
    def _new_job(
        self,
        workflow: FakeWorkflow,
        workflow_input: Any,
        generation: Literal["v1", "v2"],
        execution_id: str,
        timeout_s: int | None,
        job_id: str | None = None,
    ) -> SimJob:
        job = SimJob(
            id=job_id or self._next_id("job"),
            workflow=workflow,
            input=workflow_input,
            generation=generation,
            execution_id=execution_id,
            created_at=_now_iso(),
            execution_timeout_seconds=timeout_s,
        )
        self.jobs[job.id] = job
        return job

    def _advance(self, job: SimJob) -> str:
        """One poll: queued on the first, running until ``polls_to_complete``, then the terminal state."""
        with self._state_lock:
            job.polls += 1
            polls = job.polls
        if polls >= job.workflow.polls_to_complete + 1 or job.workflow.polls_to_complete <= 0:
            if job.workflow.error is not None:
                return "failed"
            return job.workflow.v2_status or "completed"
        return "queued" if polls == 1 else "running"

    # -- SSE ------------------------------------------------------------------------------------------------
    async def _stream(
        self,
        request: web.Request,
        workflow: FakeWorkflow,
        workflow_input: Any,
        body: Mapping[str, Any],
        *,
        extra_headers: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        protocol = request.headers.get("X-Sim-Stream-Protocol") == STREAM_PROTOCOL
        headers = {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Connection": "keep-alive",
            "X-Accel-Buffering": "no",
        }
        headers.update(extra_headers or {})
        if protocol:
            headers["X-Sim-Stream-Protocol"] = STREAM_PROTOCOL
        resp = web.StreamResponse(status=200, headers=headers)
        with self._state_lock:
            self.open_streams += 1
            self.streams_started += 1
        try:
            await resp.prepare(request)
            for frame in self._frames(workflow, workflow_input, body, protocol):
                if frame is None:
                    await asyncio.sleep(workflow.chunk_delay)
                    continue
                if frame == b"RESET":
                    # The connection dies mid-stream, as when a proxy or the pod goes away.
                    assert request.transport is not None
                    request.transport.abort()
                    raise asyncio.CancelledError
                await resp.write(frame)
            await resp.write_eof()
            with self._state_lock:
                self.streams_completed += 1
        except ConnectionResetError:
            # The client went away mid-stream: the real server aborts the run; there is no one to answer.
            pass
        finally:
            with self._state_lock:
                self.open_streams -= 1
        return resp

    def _frames(
        self, workflow: FakeWorkflow, workflow_input: Any, body: Mapping[str, Any], protocol: bool
    ) -> Iterator[bytes | None]:
        """The frames of one streamed run, in order, made one at a time (a 10k-event stream costs no memory);
        ``None`` marks a pause of ``chunk_delay``."""
        bid = workflow.block_id
        want_thinking = protocol and bool(body.get("includeThinking"))
        want_tools = protocol and bool(body.get("includeToolCalls"))
        if want_thinking:
            yield from (sse_frame({"blockId": bid, "event": "thinking", "data": t}) for t in workflow.thinking)
        if want_tools:
            for call in workflow.tool_calls:
                yield sse_frame({"blockId": bid, "event": "tool", "phase": "start", "id": call.id, "name": call.name})
                yield (
                    sse_frame(
                        {
                            "blockId": bid,
                            "event": "tool",
                            "phase": "end",
                            "id": call.id,
                            "name": call.name,
                            "status": call.status,
                        }
                    )
                )
            if workflow.tool_calls and protocol:
                # After a tool round the agent's provisional text is discarded [contract §4].
                yield sse_frame({"blockId": bid, "event": "chunk_reset"})
        for index, text in enumerate(workflow.chunks):
            if index and workflow.chunk_delay:
                yield None
            if workflow.reset_after is not None and index == workflow.reset_after:
                yield b"RESET"
                return
            if workflow.stream_error_after is not None and index == workflow.stream_error_after:
                yield sse_frame({"blockId": bid, "event": "stream_error", "error": workflow.stream_error})
            yield sse_frame({"blockId": bid, "chunk": text})
        if workflow.chunk_delay:
            yield None
        if workflow.abort_stream is not None:
            yield sse_frame({"blockId": bid, "event": "error", "error": workflow.abort_stream})
        elif self.done_style == "event":
            # The docs' invented terminal frame, for clients written against them.
            yield (
                sse_frame(
                    {
                        "event": "done",
                        "success": workflow.error is None,
                        "output": {},
                        "metadata": {"duration": workflow.duration_ms},
                    }
                )
            )
        else:
            data: dict[str, Any] = {
                "success": workflow.error is None,
                "output": self._final_output(workflow, workflow_input, body),
            }
            if workflow.error is not None:
                data["error"] = workflow.error
            if workflow.v2_status == "paused":
                data["status"] = "paused"
            yield sse_frame({"event": "final", "data": data})
        yield b'data: "[DONE]"\n\n' if self.done_style == "quoted" else b"data: [DONE]\n\n"

    def _final_output(self, workflow: FakeWorkflow, workflow_input: Any, body: Mapping[str, Any]) -> Any:
        selected = body.get("selectedOutputs") or []
        if workflow.error is not None:
            return {}
        if not selected:
            return self._output_for(workflow, workflow_input)
        # Selected outputs already streamed as chunks are left out of `final` [contract §4].
        streamed = {workflow.block_id, "agent1", "agent"}
        rest = [s for s in selected if s.replace("_", ".").split(".")[0] not in streamed]
        return {s.split(".")[0]: {".".join(s.split(".")[1:]) or "content": None} for s in rest}


def data_url(content: bytes, content_type: str = "application/octet-stream") -> str:
    """The ``data:`` URL a file input is sent as, for assertions."""
    return f"data:{content_type};base64,{base64.b64encode(content).decode()}"
