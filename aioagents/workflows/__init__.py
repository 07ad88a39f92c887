"""Sim Studio workflows: run a workflow, stream its events for real, queue it and poll, watch rate limits.

>>> from aioagents.workflows import WorkflowsClient, Chunk
>>> async with WorkflowsClient(api_key="sk-…") as sim:
...     result = await sim.execute("wf-id", {"message": "Hello"})
...     async with sim.execute_stream("wf-id", {"message": "Count to five"}) as events:
...         async for event in events:
...             if isinstance(event, Chunk):
...                 print(event.text, end="", flush=True)

The event classes ``StreamError`` and ``Error`` are stream *events* (data), not exceptions; the exceptions are the
``Sim*Error`` classes: aioagents' error tree, each with the SDK-style ``code``. The SDK's ``SimStudioError`` is in
:mod:`aioagents.compat.simstudio`.
"""

from aioagents.workflows.client import (
    DEFAULT_BASE_URL,
    DEFAULT_STREAM_IDLE_TIMEOUT,
    MAX_EXECUTION_TIMEOUT_SECONDS,
    WorkflowsClient,
    encode_files,
)
from aioagents.workflows.errors import (
    SimAPIStatusError,
    SimAuthenticationError,
    SimBadRequestError,
    SimConflictError,
    SimInternalServerError,
    SimInvalidRequestError,
    SimNotFoundError,
    SimPermissionDeniedError,
    SimRateLimitError,
    SimRequestTooLargeError,
    SimServiceUnavailableError,
    SimUsageLimitError,
    WorkflowFailedError,
)
from aioagents.workflows.events import (
    Chunk,
    ChunkReset,
    Error,
    Final,
    StreamCollector,
    StreamError,
    Thinking,
    ToolCall,
    Unknown,
    WorkflowEvent,
    collect_result,
    collect_result_sync,
    is_terminal,
)
from aioagents.workflows.jobs import Job, JobPoller
from aioagents.workflows.models import (
    ApiVersion,
    ExecutionResult,
    JobState,
    JobStatus,
    RateLimitBucket,
    RateLimitInfo,
    StorageUsage,
    Submission,
    Usage,
    UsageLimits,
    WorkflowStatus,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_STREAM_IDLE_TIMEOUT",
    "MAX_EXECUTION_TIMEOUT_SECONDS",
    "ApiVersion",
    "Chunk",
    "ChunkReset",
    "Error",
    "ExecutionResult",
    "Final",
    "Job",
    "JobPoller",
    "JobState",
    "JobStatus",
    "RateLimitBucket",
    "RateLimitInfo",
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
    "StorageUsage",
    "StreamCollector",
    "StreamError",
    "Submission",
    "Thinking",
    "ToolCall",
    "Unknown",
    "Usage",
    "UsageLimits",
    "WorkflowEvent",
    "WorkflowFailedError",
    "WorkflowStatus",
    "WorkflowsClient",
    "collect_result",
    "collect_result_sync",
    "encode_files",
    "is_terminal",
]
