"""Errors (both body shapes, SDK codes on our status classes), safe retries, Retry-After, rate-limit facts."""

from __future__ import annotations

import datetime as dt
import socket
import time

import pytest

from aioagents._exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    OutcomeUnknownError,
    RateLimitError,
)
from aioagents.testing import Fault
from aioagents.workflows import (
    RateLimitInfo,
    SimAuthenticationError,
    SimBadRequestError,
    SimInternalServerError,
    SimNotFoundError,
    SimRateLimitError,
    SimServiceUnavailableError,
    SimUsageLimitError,
    WorkflowsClient,
)
from aioagents.workflows.errors import code_for_status
from aioagents.workflows.models import parse_reset

from .conftest import API_KEY

V1 = "/api/workflows/workflow-id/execute"
V2 = "/api/v2/workflows/workflow-id/execute"
USAGE = "/api/users/me/usage-limits"


# -- error shapes and codes ---------------------------------------------------------------------------------------
async def test_v1_401_without_code_gets_unauthorized_from_the_status(sim) -> None:
    async with WorkflowsClient(api_key="wrong", base_url=sim.url) as client:
        with pytest.raises(SimAuthenticationError) as info:
            await client.execute("workflow-id")
    err = info.value
    assert isinstance(err, AuthenticationError)
    assert (err.code, err.status, err.message) == ("UNAUTHORIZED", 401, "Invalid API key")
    assert err.request_id


async def test_v2_error_object_is_decoded(sim, client_v2) -> None:
    with pytest.raises(SimNotFoundError) as info:
        await client_v2.execute("missing")
    assert (info.value.code, info.value.message, info.value.server_code) == (
        "NOT_FOUND",
        "Workflow not found",
        "NOT_FOUND",
    )


async def test_usage_limit_402_is_final(sim, client, instant_retries) -> None:
    sim.usage_exceeded = True
    with pytest.raises(SimUsageLimitError) as info:
        await client.execute("workflow-id")
    assert info.value.code == "USAGE_LIMIT_EXCEEDED"
    assert len(sim.requests) == 1


async def test_invalid_json_400_gets_the_sdk_code(sim, client) -> None:
    sim.inject(sim.error_fault(400, "Invalid JSON in request body"), path=V1)
    with pytest.raises(SimBadRequestError) as info:
        await client.execute("workflow-id")
    assert info.value.code == "INVALID_JSON"


async def test_flat_error_code_is_kept(sim, client) -> None:
    sim.inject(sim.error_fault(404, "Job not found", code="JOB_NOT_FOUND"), path="/api/jobs/j1")
    with pytest.raises(SimNotFoundError, match="Job not found") as info:
        await client.get_job_status("j1")
    assert info.value.code == "JOB_NOT_FOUND"


async def test_non_json_error_page_becomes_http_status_reason(sim, client, instant_retries) -> None:
    sim.inject(Fault.raw(b"<html>Bad Gateway</html>", status=502), path=USAGE, times=3)
    with pytest.raises(SimInternalServerError) as info:
        await client.get_usage_limits()
    assert (info.value.message, info.value.code) == ("HTTP 502: Bad Gateway", "EXECUTION_ERROR")
    assert len(sim.requests_to(USAGE)) == 3


@pytest.mark.parametrize(
    ("status", "message", "code"),
    [
        (400, "Invalid request body", "BAD_REQUEST"),
        (400, "Invalid JSON in request body", "INVALID_JSON"),
        (401, "", "UNAUTHORIZED"),
        (402, "", "USAGE_LIMIT_EXCEEDED"),
        (403, "", "FORBIDDEN"),
        (404, "", "NOT_FOUND"),
        (408, "", "TIMEOUT"),
        (409, "", "CONFLICT"),
        (413, "", "PAYLOAD_TOO_LARGE"),
        (429, "", "RATE_LIMIT_EXCEEDED"),
        (499, "", "CLIENT_CLOSED_REQUEST"),
        (500, "", "EXECUTION_ERROR"),
        (503, "", "SERVICE_UNAVAILABLE"),
    ],
)
def test_code_for_status_table(status, message, code) -> None:
    assert code_for_status(status, message) == code


# -- retries that are safe for execute ----------------------------------------------------------------------------
async def test_429_with_retry_after_2_waits_at_least_2_seconds(sim, client_v2) -> None:
    sim.inject(sim.rate_limited_fault(retry_after=2), path=V2)
    started = time.monotonic()
    result = await client_v2.execute("workflow-id")
    elapsed = time.monotonic() - started
    assert result.success
    assert elapsed >= 2.0
    assert elapsed < 4.5  # 2 s plus at most 25 % jitter, plus a loaded machine
    assert len(sim.requests_to(V2)) == 2


async def test_v1_429_without_retry_after_is_retried_with_backoff(sim, client, instant_retries) -> None:
    sim.inject(sim.rate_limited_fault(generation="v1", retry_after=None), path=V1, times=2)
    assert (await client.execute("workflow-id")).success
    assert len(sim.requests_to(V1)) == 3


async def test_429_on_every_attempt_raises_rate_limit_exceeded(sim, client_v2, instant_retries) -> None:
    sim.inject(sim.rate_limited_fault(retry_after=1), path=V2, times=10)
    with pytest.raises(SimRateLimitError) as info:
        await client_v2.execute("workflow-id")
    assert isinstance(info.value, RateLimitError)
    assert (info.value.code, info.value.status, info.value.retry_after) == ("RATE_LIMIT_EXCEEDED", 429, 1.0)
    assert len(sim.requests_to(V2)) == 3


async def test_503_with_retry_after_is_retried_for_execute(sim, client_v2, instant_retries) -> None:
    sim.inject(sim.unavailable_fault(retry_after=5), path=V2)
    assert (await client_v2.execute("workflow-id")).success
    assert len(sim.requests_to(V2)) == 2


async def test_503_without_retry_after_is_not_retried_for_execute(sim, client_v2, instant_retries) -> None:
    sim.inject(sim.unavailable_fault(retry_after=None), path=V2)
    with pytest.raises(SimServiceUnavailableError):
        await client_v2.execute("workflow-id")
    assert len(sim.requests_to(V2)) == 1


async def test_500_is_not_retried_for_execute_but_reads_are(sim, client_v2, instant_retries) -> None:
    sim.inject(sim.error_fault(500, "Server error", generation="v2"), path=V2)
    with pytest.raises(SimInternalServerError, match="Server error"):
        await client_v2.execute("workflow-id")
    assert len(sim.requests_to(V2)) == 1
    sim.inject(sim.unavailable_fault(retry_after=None, generation="v1"), path=USAGE, times=2)
    assert (await client_v2.get_usage_limits()).success
    assert len(sim.requests_to(USAGE)) == 3


async def test_connection_reset_after_sending_is_not_retried_and_the_outcome_is_unknown(sim, client, instant_retries):
    sim.inject(Fault.reset(after_body=True), path=V1)
    with pytest.raises(OutcomeUnknownError) as info:
        await client.execute("workflow-id", {"charge": 100})
    assert "may or may not have run" in str(info.value)
    assert len(sim.requests_to(V1)) == 1


async def test_connection_reset_on_a_read_is_retried(sim, client, instant_retries) -> None:
    sim.inject(Fault.reset(after_body=True), path=USAGE)
    assert (await client.get_usage_limits()).success
    assert len(sim.requests_to(USAGE)) == 2


async def test_connection_refused_is_a_connection_error_that_never_reached_the_server(instant_retries) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with WorkflowsClient(api_key=API_KEY, base_url=f"http://127.0.0.1:{port}") as client:
        with pytest.raises(APIConnectionError) as info:
            await client.execute("workflow-id")
    assert not isinstance(info.value, OutcomeUnknownError)
    assert info.value.sent is False


async def test_every_call_has_a_default_timeout(sim, instant_retries) -> None:
    sim.inject(Fault.delay(2.0), path="/api/workflows/workflow-id/status", times=5)
    async with WorkflowsClient(api_key=API_KEY, base_url=sim.url, timeout=0.3, max_attempts=2) as client:
        with pytest.raises(APITimeoutError):
            await client.get_workflow_status("workflow-id")
    assert len(sim.requests_to("/api/workflows/workflow-id/status")) == 2


async def test_execute_timeout_is_not_retried(sim, instant_retries) -> None:
    sim.inject(Fault.delay(2.0), path=V1)
    async with WorkflowsClient(api_key=API_KEY, base_url=sim.url, execute_timeout=0.3) as client:
        with pytest.raises(APITimeoutError):
            await client.execute("workflow-id")
    assert len(sim.requests_to(V1)) == 1


# -- execute_with_retry -------------------------------------------------------------------------------------------
async def test_execute_with_retry_succeeds_first_time_with_one_post(sim, client_v2) -> None:
    assert (await client_v2.execute_with_retry("workflow-id", {"m": 1})).success
    assert len(sim.requests_to(V2)) == 1


async def test_execute_with_retry_uses_its_own_backoff(sim, client_v2) -> None:
    sim.inject(sim.rate_limited_fault(retry_after=None), path=V2, times=2)
    started = time.monotonic()
    result = await client_v2.execute_with_retry("workflow-id", max_retries=3, initial_delay=0.2, backoff_multiplier=2)
    elapsed = time.monotonic() - started
    assert result.success
    assert len(sim.requests_to(V2)) == 3
    # 0.2 s then 0.4 s, each ±25 %.
    assert 0.45 <= elapsed < 2.5


async def test_execute_with_retry_gives_up_after_max_retries(sim, client_v2, instant_retries) -> None:
    sim.inject(sim.rate_limited_fault(retry_after=1), path=V2, times=10)
    with pytest.raises(SimRateLimitError, match="Rate limit exceeded") as info:
        await client_v2.execute_with_retry("workflow-id", max_retries=2)
    assert info.value.code == "RATE_LIMIT_EXCEEDED"
    assert len(sim.requests_to(V2)) == 3


async def test_execute_with_retry_follows_key_changes(sim, client_v2) -> None:
    await client_v2.execute_with_retry("workflow-id", max_retries=1)
    client_v2.set_api_key("wrong")
    with pytest.raises(SimAuthenticationError):
        await client_v2.execute_with_retry("workflow-id", max_retries=1)


# -- rate-limit info ----------------------------------------------------------------------------------------------
async def test_rate_limit_info_is_none_before_any_call(client) -> None:
    assert client.get_rate_limit_info() is None


async def test_rate_limit_info_from_v2_headers_with_iso_reset(sim, client_v2) -> None:
    await client_v2.execute("workflow-id")
    info = client_v2.get_rate_limit_info()
    assert isinstance(info, RateLimitInfo)
    assert (info.limit, info.remaining, info.retry_after) == (100, 99, None)
    now = dt.datetime.now(dt.timezone.utc)
    assert now < info.reset < now + dt.timedelta(seconds=61)
    assert info.reset_epoch == int(info.reset.timestamp())


async def test_rate_limit_info_is_fresh_on_every_response(sim, client_v2, instant_retries) -> None:
    await client_v2.execute("workflow-id")
    assert client_v2.get_rate_limit_info().limit == 100
    # A v1 answer without any rate-limit header: nothing is carried over from the v2 one.
    await client_v2.get_workflow_status("workflow-id")
    assert client_v2.get_rate_limit_info() is None
    # A Retry-After-only 429 (the admission gate) is reported, not ignored.
    sim.inject(sim.admission_gate_fault(), path=USAGE, times=5)
    with pytest.raises(SimRateLimitError):
        await client_v2.get_usage_limits()
    assert client_v2.get_rate_limit_info() == RateLimitInfo(retry_after=5.0)


async def test_rate_limit_reset_as_epoch_seconds(sim, client) -> None:
    sim.v1_rate_limit_reset = "epoch"
    await client.get_usage_limits()
    info = client.get_rate_limit_info()
    assert info is not None
    assert info.reset is not None
    assert abs(info.reset.timestamp() - (time.time() + 60)) < 5


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-01T00:00:00.000Z", dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)),
        ("2024-01-01T01:00:00+01:00", dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)),
        ("1704067200", dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)),
        ("1704067200000", dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)),
        ("not-a-timestamp", None),
        ("²", None),
        ("-5", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_reset_table(value, expected) -> None:
    assert parse_reset(value) == expected


# -- usage limits -------------------------------------------------------------------------------------------------
async def test_usage_limits_current_shape(sim, client) -> None:
    limits = await client.get_usage_limits()
    assert (limits.sync.requests_per_minute, limits.sync.max_burst, limits.sync.remaining) == (150, 300, 299)
    assert limits.async_.requests_per_minute == 1000
    assert limits.auth_type == "api"
    assert (limits.usage.plan, limits.usage.limit) == ("pro", 20.0)
    assert limits.usage.percent_used == pytest.approx(17.5)
    assert limits.storage is not None
    assert limits.storage.limit_bytes == 5 * 1_073_741_824


async def test_usage_limits_tolerate_the_old_limit_field(sim, client) -> None:
    sim.usage_shape = "legacy"
    limits = await client.get_usage_limits()
    assert (limits.sync.requests_per_minute, limits.sync.max_burst) == (150, None)
    assert limits.storage is None


async def test_usage_limits_401_keeps_the_server_code(sim) -> None:
    async with WorkflowsClient(api_key="bad", base_url=sim.url) as client:
        with pytest.raises(SimAuthenticationError, match="Invalid API key") as info:
            await client.get_usage_limits()
    assert info.value.code == "INVALID_API_KEY"


# -- status -------------------------------------------------------------------------------------------------------
async def test_workflow_status_and_validate(sim, client) -> None:
    from aioagents.testing._sim import FakeWorkflow

    sim.add_workflow(FakeWorkflow(id="draft", deployed=False, needs_redeployment=True))
    status = await client.get_workflow_status("workflow-id")
    assert (status.is_deployed, status.deployed_at) == (True, "2026-01-01T00:00:00.000Z")
    assert await client.validate_workflow("workflow-id") is True
    assert await client.validate_workflow("draft") is False
    assert await client.validate_workflow("missing") is False


async def test_validate_does_not_hide_a_bad_key(sim) -> None:
    async with WorkflowsClient(api_key="bad", base_url=sim.url) as client:
        with pytest.raises(SimAuthenticationError):
            await client.validate_workflow("workflow-id")


async def test_execute_with_retry_stream_retries_only_before_the_first_event(sim, client, instant_retries) -> None:
    from aioagents.workflows import collect_result

    sim.inject(sim.rate_limited_fault(generation="v1", retry_after=None), path=V1, times=2)
    events = await client.execute_with_retry("workflow-id", {"m": 1}, stream=True, max_retries=2)
    result = await collect_result(events)
    assert (result.success, result.text) == (True, "Hello, world")
    assert len(sim.requests_to(V1)) == 3
