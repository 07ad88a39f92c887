"""Job: a handle on a queued workflow run (a v1 job or a v2 run) that polls through the shared polling helper.

>>> job = await client.execute("wf", {"data": "large"}, async_execution=True)
>>> status = await job.wait(timeout=600, poll_interval=2)     # JobStatus: completed/failed/cancelled, or paused
>>> result = await job.result()                               # ExecutionResult, as a sync run returns it
"""

from __future__ import annotations

from typing import Literal, Protocol

from aioagents._polling import poll_until
from aioagents.workflows.models import ExecutionResult, JobStatus, Submission

__all__ = ["Job", "JobPoller"]


class JobPoller(Protocol):
    """What a :class:`Job` polls through (a :class:`~aioagents.workflows.WorkflowsClient`). A protocol rather than
    the client class, so the two modules (and their generated sync twins) do not import each other."""

    async def get_job_status(self, job_id: str) -> JobStatus: ...

    async def get_run_status(self, workflow_id: str, run_id: str) -> JobStatus: ...


class Job:
    """A queued run. ``id`` is the v1 job id or the v2 run id; ``kind`` says which (``"job"`` or ``"run"``).

    A job whose server ran it right away (old servers ignore the async request) is born finished: ``status()``
    reports ``completed`` (or ``failed``) without a request.
    """

    def __init__(
        self,
        client: JobPoller,
        submission: Submission | None,
        *,
        workflow_id: str = "",
        finished: ExecutionResult | None = None,
    ) -> None:
        if submission is None and finished is None:
            raise ValueError("a Job needs a submission or a finished result")
        self._client = client
        self.submission = submission
        self.workflow_id = submission.workflow_id if submission is not None else workflow_id
        self._finished = finished
        self.last_status: JobStatus | None = None

    def __repr__(self) -> str:
        state = self.last_status.state if self.last_status is not None else "unknown"
        return f"<Job {self.kind} {self.id!r} of workflow {self.workflow_id!r}: {state}>"

    @property
    def id(self) -> str:
        """The job id (v1) or run id (v2); for a born-finished job, its execution id (or ``""``)."""
        if self.submission is not None:
            return self.submission.id
        assert self._finished is not None
        return self._finished.execution_id or ""

    @property
    def kind(self) -> Literal["job", "run", "finished"]:
        """``"job"`` (v1, polled at ``/api/jobs``), ``"run"`` (v2) or ``"finished"`` (the server ran it at once)."""
        return self.submission.kind if self.submission is not None else "finished"

    @property
    def status_url(self) -> str | None:
        """Where the server said to poll (informational: polls are built from the id, never from this URL)."""
        return self.submission.status_url if self.submission is not None else None

    async def status(self) -> JobStatus:
        """Poll once."""
        if self._finished is not None:
            result = self._finished
            state: Literal["completed", "failed"] = "completed" if result.success else "failed"
            status = JobStatus(
                id=self.id,
                state=state,
                raw_status=result.status,
                output=result.output,
                error=result.error,
                error_code=result.error_code,
                metadata=dict(result.metadata),
            )
        elif self.kind == "run":
            status = await self._client.get_run_status(self.workflow_id, self.id)
        else:
            status = await self._client.get_job_status(self.id)
        self.last_status = status
        return status

    async def wait(
        self, *, timeout: float | None = None, poll_interval: float = 1.0, max_interval: float = 10.0
    ) -> JobStatus:
        """Poll until the job comes to rest: completed, failed or cancelled, or ``paused`` (a v2 run waiting for a
        human or a resume call, which no amount of polling moves on: check ``state``). Waits ``poll_interval`` at
        first and longer each time (up to ``max_interval``). Raises :class:`~aioagents.PollTimeoutError` (with
        ``last``) after ``timeout`` seconds; the job keeps running on the server."""
        return await poll_until(
            self.status,
            lambda s: s.done or s.state == "paused",
            timeout=timeout,
            interval=poll_interval,
            max_interval=max(max_interval, poll_interval),
            what=f"workflow {self.kind} {self.id}",
        )

    async def result(self, *, timeout: float | None = None, poll_interval: float = 1.0) -> ExecutionResult:
        """Wait for the job to come to rest and return it as the :class:`ExecutionResult` a sync run gives (a failed
        run has ``success=False``, a paused one ``status="paused"``; call ``raise_for_status()`` to raise)."""
        if self._finished is not None:
            return self._finished
        status = await self.wait(timeout=timeout, poll_interval=poll_interval)
        return status.to_result()
