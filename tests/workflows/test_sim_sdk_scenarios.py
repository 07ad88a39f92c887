"""Every test scenario of the official SDK (contract §8, HEAD test_client.py) with a counterpart here: the same
behaviour, checked over a real socket against the fake instead of a mocked ``requests.Session``.

The compat client runs with ``api_version="v2"`` here, because the SDK's suite is the v2-era one. Where we differ on
purpose the test says so (``reset`` in seconds, the www base URL, ``Retry-After`` waited in full).
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from aioagents.compat.simstudio import (
    AsyncExecutionResult,
    Client,
    RateLimitInfo,
    SimStudioClient,
    SimStudioError,
    StreamingExecution,
    UsageLimits,
    WorkflowExecutionResult,
    WorkflowStatus,
)
from aioagents.testing import Fault
from aioagents.testing._sim import FakeWorkflow

from .conftest import API_KEY

V2 = "/api/v2/workflows/workflow-id/execute"


@pytest.fixture
def sdk(sim_thread):
    with SimStudioClient(api_key=API_KEY, base_url=sim_thread.url, api_version="v2") as client:
        yield client


def _v2_ok(**headers: str) -> Fault:
    body = {"data": {"runId": "run-1", "workflowId": "workflow-id", "status": "completed", "output": {}, "error": None}}
    return Fault.status_code(200, body, headers=headers)


# 1
def test_sdk_scenario_01_constructor_stores_key_and_url_and_has_a_default(monkeypatch) -> None:
    monkeypatch.delenv("SIM_BASE_URL", raising=False)
    client = SimStudioClient(api_key="k", base_url="https://example.test")
    assert (client.api_key, client.base_url) == ("k", "https://example.test")
    # 0.2.1's default (the HEAD test still says https://sim.ai, which redirects there).
    assert SimStudioClient(api_key="k").base_url == "https://www.sim.ai"
    assert Client is SimStudioClient
    assert "k" not in repr(client)


# 2
def test_sdk_scenario_02_set_api_key_replaces_the_key(sim_thread) -> None:
    with SimStudioClient(api_key="wrong", base_url=sim_thread.url) as client:
        client.set_api_key(API_KEY)
        assert client.api_key == API_KEY
        assert client.get_workflow_status("workflow-id").is_deployed
    assert sim_thread.requests[-1].header("X-API-Key") == API_KEY


# 3 (two tests)
def test_sdk_scenario_03a_set_base_url_replaces_the_url(sim_thread) -> None:
    with SimStudioClient(api_key=API_KEY, base_url="http://127.0.0.1:9") as client:
        client.set_base_url(sim_thread.url)
        assert client.base_url == sim_thread.url
        assert client.validate_workflow("workflow-id") is True


def test_sdk_scenario_03b_set_base_url_strips_trailing_slashes() -> None:
    client = SimStudioClient(api_key="k", base_url="https://example.test")
    client.set_base_url("https://other.test/")
    assert client.base_url == "https://other.test"


# 4
def test_sdk_scenario_04_validate_is_false_when_the_status_call_fails(sim_thread, sdk) -> None:
    sim_thread.inject(sim_thread.error_fault(500, "boom"), path="/api/workflows/workflow-id/status", times=5)
    assert sdk.validate_workflow("workflow-id") is False
    req = sim_thread.requests[0]
    assert (req.method, req.path, req.query, req.body) == ("GET", "/api/workflows/workflow-id/status", {}, b"")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with SimStudioClient(api_key=API_KEY, base_url=f"http://127.0.0.1:{port}") as offline:
        assert offline.validate_workflow("workflow-id") is False


# 5
def test_sdk_scenario_05_error_carries_message_code_and_status() -> None:
    err = SimStudioError("Test error", "TEST_CODE", 400)
    assert (str(err), err.code, err.status) == ("Test error", "TEST_CODE", 400)


# 6
def test_sdk_scenario_06_dataclasses_construct_plainly() -> None:
    result = WorkflowExecutionResult(success=True, output={"a": 1}, metadata={"duration": 5})
    assert (result.success, result.output, result.error, result.logs) == (True, {"a": 1}, None, None)
    status = WorkflowStatus(is_deployed=True, deployed_at="2024-01-01T00:00:00Z")
    assert (status.is_deployed, status.needs_redeployment) == (True, False)


# 7
def test_sdk_scenario_07_context_manager_closes_the_session(sim_thread) -> None:
    with SimStudioClient(api_key=API_KEY, base_url=sim_thread.url) as client:
        client.get_workflow_status("workflow-id")
        transport = client._client._transport
        assert not transport.closed
    assert transport.closed
    with pytest.raises(RuntimeError):
        client.get_workflow_status("workflow-id")


# 8
def test_sdk_scenario_08_async_v2_returns_run_id_and_status_url(sim_thread, sdk) -> None:
    result = sdk.execute_workflow("workflow-id", {"message": "Hello"}, async_execution=True)
    assert isinstance(result, AsyncExecutionResult)
    assert result.async_execution is True
    assert result.run_id
    assert result.status_url == f"{sim_thread.url}/api/v2/workflows/workflow-id/runs/{result.run_id}"
    req = sim_thread.requests_to(V2)[0]
    assert req.header("X-Execution-Mode") is None
    assert json.loads(req.body) == {"input": {"message": "Hello"}, "async": True}


# 9
def test_sdk_scenario_09_sync_v2_result_and_metadata(sim_thread, sdk) -> None:
    result = sdk.execute_workflow("workflow-id", {"message": "Hello"})
    assert isinstance(result, WorkflowExecutionResult)
    assert (result.success, result.status) == (True, "completed")
    assert result.output["input"] == {"message": "Hello"}
    assert set(result.metadata) == {"duration", "runId", "startTime", "endTime"}
    assert result.metadata["duration"] == 10
    assert not hasattr(result, "task_id")


# 10, 11, 12
@pytest.mark.parametrize(
    ("name", "workflow", "success", "error"),
    [
        ("10_cancelled_is_not_success", FakeWorkflow(id="w", v2_status="cancelled"), False, None),
        ("11_failed_returns_the_message", FakeWorkflow(id="w", error="Block failed"), False, "Block failed"),
        ("12_paused_is_success", FakeWorkflow(id="w", v2_status="paused"), True, None),
    ],
)
def test_sdk_scenario_10_to_12_terminal_statuses(sim_thread, sdk, name, workflow, success, error) -> None:
    sim_thread.add_workflow(workflow)
    result = sdk.execute_workflow("w")
    assert (result.success, result.error) == (success, error)


# 13
def test_sdk_scenario_13_no_async_flag_sends_no_execution_mode_header(sim_thread, sdk) -> None:
    sdk.execute_workflow("workflow-id", {"message": "Hello"})
    assert sim_thread.requests_to(V2)[0].header("X-Execution-Mode") is None


# 14
def test_sdk_scenario_14_execution_timeout_goes_in_the_body(sim_thread, sdk) -> None:
    sdk.execute_workflow("workflow-id", {"m": 1}, async_execution=True, execution_timeout_seconds=90)
    assert json.loads(sim_thread.requests_to(V2)[0].body)["executionTimeoutSeconds"] == 90


# 15, 16
@pytest.mark.parametrize(
    "kwargs", [{"execution_timeout_seconds": 90}, {"execution_timeout_seconds": 604801, "async_execution": True}]
)
def test_sdk_scenario_15_16_invalid_execution_timeout_before_any_request(sim_thread, sdk, kwargs) -> None:
    with pytest.raises(SimStudioError) as info:
        sdk.execute_workflow("workflow-id", {"m": 1}, **kwargs)
    assert info.value.code == "INVALID_EXECUTION_TIMEOUT"
    assert sim_thread.requests == []


# 17
def test_sdk_scenario_17_execute_with_retry_forwards_every_option(sim_thread, sdk) -> None:
    result = sdk.execute_with_retry(
        "workflow-id", {"m": 1}, timeout=30.0, async_execution=True, execution_timeout_seconds=90
    )
    assert isinstance(result, AsyncExecutionResult)
    assert json.loads(sim_thread.requests_to(V2)[0].body) == {
        "input": {"m": 1},
        "async": True,
        "executionTimeoutSeconds": 90,
    }
    sdk.execute_with_retry("workflow-id", {"m": 2}, selected_outputs=["agent.content"])
    assert json.loads(sim_thread.requests_to(V2)[1].body)["selectedOutputs"] == ["agent.content"]


# 18
def test_sdk_scenario_18_get_job_status_returns_the_job_dict(sim_thread) -> None:
    with SimStudioClient(api_key=API_KEY, base_url=sim_thread.url) as client:
        queued = client.execute_workflow("workflow-id", {"x": 1}, async_execution=True)
        status = client.get_job_status(queued.task_id)
    assert sim_thread.requests[-1].path == f"/api/jobs/{queued.task_id}"
    assert (status["success"], status["taskId"], status["status"], status["rawStatus"]) == (
        True,
        queued.task_id,
        "queued",
        "pending",
    )


# 19
def test_sdk_scenario_19_job_404_raises_with_the_message(sim_thread, sdk) -> None:
    sim_thread.inject(sim_thread.error_fault(404, "Job not found", code="JOB_NOT_FOUND"), path="/api/jobs/job-1")
    with pytest.raises(SimStudioError, match="Job not found") as info:
        sdk.get_job_status("job-1")
    assert (info.value.code, info.value.status) == ("JOB_NOT_FOUND", 404)


# 20
def test_sdk_scenario_20_get_workflow_run_sends_params_and_returns_data(sim_thread, sdk) -> None:
    queued = sdk.execute_workflow("workflow-id", {"m": 1}, async_execution=True)
    data = sdk.get_workflow_run("workflow-id", queued.run_id, include_output=True, selected_outputs=["agent.content"])
    req = sim_thread.requests[-1]
    assert (req.path, req.query) == (
        f"/api/v2/workflows/workflow-id/runs/{queued.run_id}",
        {"includeOutput": "true", "selectedOutputs": "agent.content"},
    )
    assert (data["runId"], data["status"]) == (queued.run_id, "queued")


# 21
def test_sdk_scenario_21_run_404_raises_with_the_v2_message(sim_thread, sdk) -> None:
    with pytest.raises(SimStudioError, match="Run not found") as info:
        sdk.get_workflow_run("workflow-id", "nope")
    assert (info.value.code, info.value.status) == ("NOT_FOUND", 404)


# 22
def test_sdk_scenario_22_retry_success_first_time_is_one_post_no_sleep(sim_thread, sdk) -> None:
    assert sdk.execute_with_retry("workflow-id", {"m": 1}).success
    assert len(sim_thread.requests_to(V2)) == 1


# 23
def test_sdk_scenario_23_429_then_200_is_two_posts_and_one_wait(sim_thread, sdk) -> None:
    sim_thread.inject(sim_thread.rate_limited_fault(retry_after=1), path=V2)
    started = time.monotonic()
    assert sdk.execute_with_retry("workflow-id", {"m": 1}).success
    # The Retry-After is waited in full (the SDK could come back after 0.75 s).
    assert time.monotonic() - started >= 1.0
    assert len(sim_thread.requests_to(V2)) == 2


# 24
def test_sdk_scenario_24_429_every_time_raises_after_max_retries_plus_one(sim_thread, sdk, instant_retries) -> None:
    sim_thread.inject(sim_thread.rate_limited_fault(retry_after=1), path=V2, times=10)
    with pytest.raises(SimStudioError, match="Rate limit exceeded") as info:
        sdk.execute_with_retry("workflow-id", {"m": 1}, max_retries=2)
    assert (info.value.code, info.value.status) == ("RATE_LIMIT_EXCEEDED", 429)
    assert len(sim_thread.requests_to(V2)) == 3


# 25
def test_sdk_scenario_25_500_is_raised_without_retry(sim_thread, sdk, instant_retries) -> None:
    sim_thread.inject(sim_thread.error_fault(500, "Server error", generation="v2"), path=V2)
    with pytest.raises(SimStudioError, match="Server error"):
        sdk.execute_with_retry("workflow-id", {"m": 1})
    assert len(sim_thread.requests_to(V2)) == 1


# 26
def test_sdk_scenario_26_no_rate_limit_info_before_any_call(sdk) -> None:
    assert sdk.get_rate_limit_info() is None


# 27
def test_sdk_scenario_27_epoch_headers(sim_thread, sdk) -> None:
    sim_thread.inject(
        _v2_ok(**{"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "95", "X-RateLimit-Reset": "1704067200"}),
        path=V2,
    )
    sdk.execute_workflow("workflow-id", {"m": 1})
    assert sdk.get_rate_limit_info() == RateLimitInfo(limit=100, remaining=95, reset=1704067200, retry_after=None)


# 28
def test_sdk_scenario_28_iso_reset_is_parsed_to_epoch_seconds(sim_thread, sdk) -> None:
    sim_thread.inject(
        _v2_ok(
            **{
                "X-RateLimit-Limit": "100",
                "X-RateLimit-Remaining": "95",
                "X-RateLimit-Reset": "2024-01-01T00:00:00.000Z",
            }
        ),
        path=V2,
    )
    sdk.execute_workflow("workflow-id", {"m": 1})
    # 0.2.x gives 1704067200000 (ms) here and seconds for an epoch value; we give seconds for both.
    assert sdk.get_rate_limit_info().reset == 1704067200


# 29 (two tests)
@pytest.mark.parametrize("reset", ["not-a-timestamp", "²"])
def test_sdk_scenario_29_garbage_reset_is_zero_and_the_call_succeeds(sim_thread, sdk, reset) -> None:
    sim_thread.inject(_v2_ok(**{"X-RateLimit-Limit": "100", "X-RateLimit-Reset": reset}), path=V2)
    assert sdk.execute_workflow("workflow-id", {"m": 1}).success
    info = sdk.get_rate_limit_info()
    assert (info.limit, info.reset) == (100, 0)


# 30
@pytest.mark.parametrize("shape", ["legacy", "current"])
def test_sdk_scenario_30_usage_limits_map_rate_limit_and_usage(sim_thread, sdk, shape) -> None:
    sim_thread.usage_shape = shape
    limits = sdk.get_usage_limits()
    assert isinstance(limits, UsageLimits)
    assert sim_thread.requests[-1].path == "/api/users/me/usage-limits"
    assert limits.success is True
    # The documented `limit` key reads on both the old and the current server shape.
    assert limits.rate_limit["sync"]["limit"] == 150
    assert limits.rate_limit["async"]["remaining"] >= 0
    assert limits.usage == {"currentPeriodCost": 3.5, "limit": 20.0, "plan": "pro"}


# 31
def test_sdk_scenario_31_usage_401_raises_with_the_text(sim_thread, sdk) -> None:
    sim_thread.inject(
        sim_thread.error_fault(401, "Invalid API key", code="UNAUTHORIZED"), path="/api/users/me/usage-limits"
    )
    with pytest.raises(SimStudioError, match="Invalid API key") as info:
        sdk.get_usage_limits()
    assert (info.value.code, info.value.status) == ("UNAUTHORIZED", 401)


# 32
def test_sdk_scenario_32_stream_sends_input_stream_and_selected_outputs_and_streams(sim_thread, sdk) -> None:
    run = sdk.execute_workflow("workflow-id", {"message": "Count"}, stream=True, selected_outputs=["agent1.content"])
    assert isinstance(run, StreamingExecution)
    assert list(run.text()) == ["Hello", ", world"]
    assert run.success is True
    assert json.loads(sim_thread.requests_to(V2)[0].body) == {
        "input": {"message": "Count"},
        "stream": True,
        "selectedOutputs": ["agent1.content"],
    }


# 33, 34, 35
@pytest.mark.parametrize(("name", "value"), [("33_string", "NVDA"), ("34_number", 42), ("35_list", ["a", 1])])
def test_sdk_scenario_33_to_35_non_dict_input_is_wrapped(sim_thread, sdk, name, value) -> None:
    sdk.execute_workflow("workflow-id", value)
    body = json.loads(sim_thread.requests_to(V2)[0].body)
    assert body == {"input": {"input": value}}


# 36
def test_sdk_scenario_36_dict_input_is_the_input(sim_thread, sdk) -> None:
    sdk.execute_workflow("workflow-id", input={"ticker": "NVDA"})
    assert json.loads(sim_thread.requests_to(V2)[0].body) == {"input": {"ticker": "NVDA"}}
