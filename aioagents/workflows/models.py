"""Results of the Sim workflow API, and how the two API generations' answers map onto them.

The wire differs per generation (contract §3): v1 answers a sync run with ``{"success", "executionId", "output",
"error", "metadata"}`` and v2 with ``{"data": {"runId", "status", "output", "error": {code, message}, …}}``. Both
become one :class:`ExecutionResult`. The answers are irregular (an envelope or not, a string or an object error,
``limit`` or ``requestsPerMinute``), so each model has a small ``from_wire`` reader instead of a converter hook; all
readers are lenient: an unknown field is ignored and a missing one becomes ``None``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from aioagents.workflows.errors import WorkflowFailedError

__all__ = [
    "ApiVersion",
    "ExecutionResult",
    "JobState",
    "JobStatus",
    "RateLimitBucket",
    "RateLimitInfo",
    "StorageUsage",
    "Submission",
    "Usage",
    "UsageLimits",
    "WorkflowStatus",
    "parse_reset",
]

ApiVersion = Literal["v1", "v2", "auto"]
JobState = Literal["queued", "running", "paused", "completed", "failed", "cancelled"]

_SUCCESS_STATUSES = frozenset({"completed", "paused"})
# v1 jobs say pending/processing, v2 runs queued/pending/running/redacting; one vocabulary for both.
_STATE_NAMES: Mapping[str, JobState] = {
    "queued": "queued",
    "pending": "queued",
    "processing": "running",
    "running": "running",
    "redacting": "running",
    "paused": "paused",
    "completed": "completed",
    "success": "completed",
    "failed": "failed",
    "error": "failed",
    "cancelled": "cancelled",
    "canceled": "cancelled",
}
_TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
_ENVELOPE_KEYS = frozenset({"success", "output", "error", "executionId", "metadata"})


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list_or_none(value: Any) -> list[Any] | None:
    return list(value) if isinstance(value, list) else None


def _error_text(error: Any) -> tuple[str | None, str | None]:
    """(message, code) from a string or ``{code, message}`` error."""
    if error is None:
        return None, None
    if isinstance(error, Mapping):
        msg = error.get("message")
        code = error.get("code")
        return (None if msg is None else str(msg)), (None if code is None else str(code))
    return str(error), None


@attrs.frozen(kw_only=True)
class ExecutionResult:
    """A finished run. ``success`` is True for ``completed`` and ``paused``; a failed run is returned, not raised
    (call :meth:`raise_for_status` to raise :class:`WorkflowFailedError` instead).

    ``status`` is ``completed``/``failed``/``paused``/``cancelled``; ``execution_id`` the v1 execution id or v2 run id;
    ``error_code`` the v2 execution error code (``TIMEOUT``, ``BLOCK_EXECUTION_FAILED`` …); ``http_status`` the HTTP
    status of the answer (v1 failures come as 500 or 408). ``logs`` and ``trace_spans`` are the run's block logs and
    trace spans when the server sends them (v1 servers before Nov 2025 did; current ones do not): else None.
    """

    success: bool
    output: Any = None
    error: str | None = None
    error_code: str | None = None
    status: str = "completed"
    execution_id: str | None = None
    duration_ms: float | None = None
    started_at: str | None = None
    ended_at: str | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    http_status: int = 200
    text: str | None = None
    logs: Sequence[Any] | None = None
    trace_spans: Sequence[Any] | None = None

    def raise_for_status(self) -> ExecutionResult:
        """Raise :class:`WorkflowFailedError` unless the run succeeded; return ``self`` otherwise."""
        if not self.success:
            raise WorkflowFailedError(self)
        return self

    @classmethod
    def from_wire(cls, body: Any, *, http_status: int = 200) -> ExecutionResult:
        """Read a sync answer of either generation (the v2 one has a ``data`` envelope)."""
        if isinstance(body, Mapping) and isinstance(body.get("data"), Mapping):
            return cls._from_v2(body["data"], http_status)
        if not isinstance(body, Mapping) or not _ENVELOPE_KEYS & body.keys():
            # A workflow ending in a Response block answers with that block's own body (any JSON, any status)
            # instead of the envelope: the body is the output [contract §3.1].
            return cls(success=200 <= http_status < 300, output=body, http_status=http_status)
        message, code = _error_text(body.get("error"))
        meta = _mapping(body.get("metadata"))
        success = bool(body.get("success", 200 <= http_status < 300))
        duration = meta.get("duration", body.get("totalDuration"))
        return cls(
            success=success,
            output=body.get("output"),
            error=message,
            error_code=code or ("TIMEOUT" if http_status == 408 else None),
            status="completed" if success else "failed",
            execution_id=body.get("executionId") or meta.get("executionId"),
            duration_ms=duration if isinstance(duration, (int, float)) else None,
            started_at=meta.get("startTime"),
            ended_at=meta.get("endTime"),
            metadata=dict(meta),
            http_status=http_status,
            logs=_list_or_none(body.get("logs")),
            trace_spans=_list_or_none(body.get("traceSpans")),
        )

    @classmethod
    def _from_v2(cls, data: Mapping[str, Any], http_status: int) -> ExecutionResult:
        message, code = _error_text(data.get("error"))
        status = str(data.get("status") or ("failed" if message else "completed"))
        duration = data.get("durationMs")
        return cls(
            success=status in _SUCCESS_STATUSES,
            output=data.get("output"),
            error=message,
            error_code=code,
            status=status,
            execution_id=data.get("runId"),
            duration_ms=duration if isinstance(duration, (int, float)) else None,
            started_at=data.get("startedAt"),
            ended_at=data.get("endedAt"),
            metadata={
                "duration": duration,
                "runId": data.get("runId"),
                "startTime": data.get("startedAt"),
                "endTime": data.get("endedAt"),
            },
            http_status=http_status,
        )


@attrs.frozen(kw_only=True)
class Submission:
    """What an async submit answered: the job (v1) or run (v2) id and where to poll it."""

    id: str
    kind: Literal["job", "run"]
    workflow_id: str
    status_url: str | None = None
    execution_id: str | None = None
    message: str = "Workflow execution queued"
    created_at: str | None = None

    @classmethod
    def from_wire(cls, body: Any, *, workflow_id: str) -> Submission | None:
        """Read a 202 of any generation: v2 ``{data:{runId,statusUrl}}``, v1 ``{jobId,statusUrl}``, or the
        2025-07 ``{taskId,links:{status}}``. ``None`` when the body is none of them."""
        if not isinstance(body, Mapping):
            return None
        data = body.get("data")
        if isinstance(data, Mapping) and isinstance(data.get("runId"), str):
            return cls(id=data["runId"], kind="run", workflow_id=workflow_id, status_url=data.get("statusUrl"))
        job_id = body.get("jobId") or body.get("taskId")
        if not isinstance(job_id, str):
            return None
        links = _mapping(body.get("links"))
        return cls(
            id=job_id,
            kind="job",
            workflow_id=workflow_id,
            status_url=body.get("statusUrl") or links.get("status"),
            execution_id=body.get("executionId"),
            message=str(body.get("message") or "Workflow execution queued"),
            created_at=body.get("createdAt"),
        )


@attrs.frozen(kw_only=True)
class JobStatus:
    """One poll of a job (v1) or run (v2). ``state`` is normalised (``queued``, ``running``, ``paused``,
    ``completed``, ``failed``, ``cancelled``); ``raw_status`` is what the server said; ``raw`` the whole answer."""

    id: str
    state: JobState
    raw_status: str
    output: Any = None
    error: str | None = None
    error_code: str | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    raw: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def done(self) -> bool:
        """Whether the job reached a final state (completed, failed or cancelled)."""
        return self.state in _TERMINAL

    @classmethod
    def from_wire(cls, body: Any, *, fallback_id: str) -> JobStatus:
        """Read ``GET /api/jobs/{id}`` (flat) or ``GET /api/v2/…/runs/{id}`` (``data`` envelope)."""
        payload: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
        if isinstance(payload.get("data"), Mapping):
            payload = payload["data"]
        raw_status = str(payload.get("status") or "queued")
        message, code = _error_text(payload.get("error"))
        meta = _mapping(payload.get("metadata"))
        if "durationMs" in payload:
            meta = {
                **meta,
                "duration": payload.get("durationMs"),
                "startedAt": payload.get("startedAt"),
                "completedAt": payload.get("endedAt"),
            }
        return cls(
            id=str(payload.get("taskId") or payload.get("runId") or fallback_id),
            state=_STATE_NAMES.get(raw_status.lower(), "running"),
            raw_status=raw_status,
            output=payload.get("output"),
            error=message,
            error_code=code,
            metadata=dict(meta),
            raw=dict(body) if isinstance(body, Mapping) else {},
        )

    def to_result(self) -> ExecutionResult:
        """The finished job as the result a sync run would have given."""
        return ExecutionResult(
            success=self.state in _SUCCESS_STATUSES,
            output=self.output,
            error=self.error,
            error_code=self.error_code,
            status=self.state,
            execution_id=self.id,
            duration_ms=self.metadata.get("duration"),
            started_at=self.metadata.get("startedAt"),
            ended_at=self.metadata.get("completedAt"),
            metadata=dict(self.metadata),
        )


@attrs.frozen(kw_only=True)
class WorkflowStatus:
    """A workflow's deployment state."""

    is_deployed: bool
    deployed_at: str | None = None
    needs_redeployment: bool = False
    is_published: bool | None = None

    @classmethod
    def from_wire(cls, body: Any) -> WorkflowStatus:
        payload: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
        published = payload.get("isPublished")
        return cls(
            is_deployed=bool(payload.get("isDeployed", False)),
            deployed_at=payload.get("deployedAt"),
            needs_redeployment=bool(payload.get("needsRedeployment", False)),
            is_published=None if published is None else bool(published),
        )


def parse_reset(value: str | None) -> _dt.datetime | None:
    """``X-RateLimit-Reset`` as an aware UTC datetime: an ISO-8601 timestamp (v2), else epoch seconds (or epoch
    milliseconds when the number is too large to be seconds). ``None`` for anything else: a quota hint never fails
    the call it came with."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        try:
            parsed = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.timezone.utc)
    if number != number or number < 0 or number in (float("inf"),):
        return None
    if number > 10_000_000_000:  # past year 2286 as seconds: it is milliseconds
        number /= 1000.0
    try:
        return _dt.datetime.fromtimestamp(number, tz=_dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


@attrs.frozen(kw_only=True)
class RateLimitInfo:
    """The rate-limit facts of the most recent response: ``limit`` and ``remaining`` requests, when the bucket
    ``reset`` s, and the ``retry_after`` (seconds) the server asked for. A field the response did not carry is
    ``None``; nothing is carried over from an older response."""

    limit: int | None = None
    remaining: int | None = None
    reset: _dt.datetime | None = None
    retry_after: float | None = None

    @property
    def reset_epoch(self) -> int | None:
        """``reset`` as epoch seconds."""
        return None if self.reset is None else int(self.reset.timestamp())

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], retry_after: float | None) -> RateLimitInfo | None:
        """From one response's headers; ``None`` when it carried no rate-limit header at all."""
        limit = headers.get("x-ratelimit-limit")
        remaining = headers.get("x-ratelimit-remaining")
        reset = headers.get("x-ratelimit-reset")
        if limit is None and remaining is None and reset is None and retry_after is None:
            return None
        return cls(limit=_int(limit), remaining=_int(remaining), reset=parse_reset(reset), retry_after=retry_after)


@attrs.frozen(kw_only=True)
class RateLimitBucket:
    """One execution bucket (``sync`` or ``async``). The server renamed ``limit`` to ``requestsPerMinute`` and
    ``maxBurst``; ``requests_per_minute`` reads either."""

    is_limited: bool = False
    requests_per_minute: int | None = None
    max_burst: int | None = None
    remaining: int | None = None
    reset_at: str | None = None

    @classmethod
    def from_wire(cls, body: Any) -> RateLimitBucket:
        payload: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
        rpm = payload.get("requestsPerMinute", payload.get("limit"))
        return cls(
            is_limited=bool(payload.get("isLimited", False)),
            requests_per_minute=rpm,
            max_burst=payload.get("maxBurst"),
            remaining=payload.get("remaining"),
            reset_at=payload.get("resetAt"),
        )


@attrs.frozen(kw_only=True)
class Usage:
    """Spend in the current billing period against the plan's limit."""

    current_period_cost: float = 0.0
    limit: float | None = None
    plan: str | None = None

    @property
    def percent_used(self) -> float | None:
        """Cost as a percentage of the limit (``None`` without a limit)."""
        if not self.limit:
            return None
        return self.current_period_cost / self.limit * 100


@attrs.frozen(kw_only=True)
class StorageUsage:
    """File storage used against the plan's limit."""

    used_bytes: int = 0
    limit_bytes: int | None = None
    percent_used: float | None = None


@attrs.frozen(kw_only=True)
class UsageLimits:
    """``GET /api/users/me/usage-limits``: the sync and async buckets, spend, and storage (``None`` on servers from
    before storage was reported). ``raw`` is the answer as sent."""

    success: bool
    sync: RateLimitBucket
    async_: RateLimitBucket
    auth_type: str | None = None
    usage: Usage = attrs.field(factory=Usage)
    storage: StorageUsage | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_wire(cls, body: Any) -> UsageLimits:
        payload: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
        rate = _mapping(payload.get("rateLimit"))
        usage = _mapping(payload.get("usage"))
        storage = payload.get("storage")
        return cls(
            success=bool(payload.get("success", True)),
            sync=RateLimitBucket.from_wire(rate.get("sync")),
            async_=RateLimitBucket.from_wire(rate.get("async")),
            auth_type=rate.get("authType"),
            usage=Usage(
                current_period_cost=float(usage.get("currentPeriodCost") or 0.0),
                limit=None if usage.get("limit") is None else float(usage["limit"]),
                plan=usage.get("plan"),
            ),
            storage=(
                StorageUsage(
                    used_bytes=int(storage.get("usedBytes") or 0),
                    limit_bytes=storage.get("limitBytes"),
                    percent_used=storage.get("percentUsed"),
                )
                if isinstance(storage, Mapping)
                else None
            ),
            raw=dict(payload),
        )
