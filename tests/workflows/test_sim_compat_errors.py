"""The compat client's promises beyond the happy path: every error is the SDK's ``SimStudioError`` (cut and stalled
streams included), 0.1.x's positional arguments, 0.2.x's "submit, then get_workflow_run" under the v1 default, and
``trace_spans``/``logs`` when the server sends them."""

from __future__ import annotations

import json

import pytest

from aioagents import RateLimitError
from aioagents.compat.simstudio import (
    AsyncExecutionResult,
    SimClientClosedError,
    SimStudioClient,
    SimStudioError,
    StreamingExecution,
    WorkflowExecutionResult,
)
from aioagents.testing import Fault
from aioagents.testing._sim import FakeSimServer, FakeWorkflow, sse_frame
from aioagents.workflows import Chunk, SimAuthenticationError, SimRateLimitError, WorkflowsClient

from .conftest import API_KEY

V1 = "/api/workflows/workflow-id/execute"


@pytest.fixture
def sdk(sim_thread: FakeSimServer):  # type: ignore[no-untyped-def]
    with SimStudioClient(api_key=API_KEY, base_url=sim_thread.url) as client:
        yield client


# -- errors ------------------------------------------------------------------------------------------------------
def test_a_stream_cut_mid_event_is_a_sim_studio_error(sim_thread: FakeSimServer, sdk: SimStudioClient) -> None:
    half_an_event = sse_frame({"blockId": "b", "chunk": "a"}) + b'data: {"blockId":"b","chu'
    sim_thread.inject(Fault.raw(half_an_event, content_type="text/event-stream"), path=V1)
    run = sdk.execute_workflow("workflow-id", stream=True)
    assert isinstance(run, StreamingExecution)
    with pytest.raises(SimStudioError) as caught:
        list(run)
    assert caught.value.code == "EXECUTION_ERROR"


def test_a_connection_reset_mid_stream_is_a_sim_studio_error(sim_thread: FakeSimServer, sdk: SimStudioClient) -> None:
    sim_thread.add_workflow(FakeWorkflow(id="cut", chunks=["a", "b", "c"], reset_after=2, chunk_delay=0.05))
    run = sdk.execute_workflow("cut", stream=True)
    assert isinstance(run, StreamingExecution)
    seen = []

    def read_all() -> None:
        for event in run:
            seen.append(event)

    with pytest.raises(SimStudioError) as caught:
        read_all()
    assert caught.value.code == "EXECUTION_ERROR"
    assert [e.text for e in seen if isinstance(e, Chunk)] == ["a", "b"]


def test_result_of_a_cut_stream_is_a_sim_studio_error_too(sim_thread: FakeSimServer, sdk: SimStudioClient) -> None:
    sim_thread.add_workflow(FakeWorkflow(id="cut", chunks=["a", "b"], reset_after=1))
    run = sdk.execute_workflow("cut", stream=True)
    assert isinstance(run, StreamingExecution)
    with pytest.raises(SimStudioError):
        run.result()


def test_a_stalled_stream_is_a_sim_studio_error_with_code_timeout(sim_thread: FakeSimServer) -> None:
    sim_thread.add_workflow(FakeWorkflow(id="stall", chunks=["a", "b"], chunk_delay=2.0))
    with SimStudioClient(api_key=API_KEY, base_url=sim_thread.url, idle_timeout=0.3) as client:
        run = client.execute_workflow("stall", stream=True)
        assert isinstance(run, StreamingExecution)
        with pytest.raises(SimStudioError) as caught:
            list(run)
    assert caught.value.code == "TIMEOUT"


def test_a_call_after_close_is_a_sim_studio_error(sim_thread: FakeSimServer) -> None:
    client = SimStudioClient(api_key=API_KEY, base_url=sim_thread.url)
    client.close()
    with pytest.raises(SimStudioError) as caught:
        client.get_workflow_status("workflow-id")
    assert caught.value.code == "CLIENT_CLOSED"
    assert isinstance(caught.value, (SimClientClosedError, RuntimeError))


def test_the_compat_default_stream_idle_timeout_outlasts_a_300_s_block() -> None:
    client = SimStudioClient(api_key=API_KEY, base_url="http://127.0.0.1:9")
    try:
        assert client._client.idle_timeout is not None
        assert client._client.idle_timeout > 300
    finally:
        client.close()


# -- 0.1.x positional arguments -------------------------------------------------------------------------------------
def test_0_1_positional_timeout(sim_thread: FakeSimServer, sdk: SimStudioClient) -> None:
    result = sdk.execute_workflow("workflow-id", {"message": "Hello"}, 30.0)
    assert isinstance(result, WorkflowExecutionResult)
    assert result.success
    assert json.loads(sim_thread.requests_to(V1)[0].body) == {"message": "Hello"}


def test_0_1_positional_stream_and_selected_outputs(sim_thread: FakeSimServer, sdk: SimStudioClient) -> None:
    run = sdk.execute_workflow("workflow-id", {"message": "Hi"}, 30.0, True, ["agent1.content"])
    assert isinstance(run, StreamingExecution)
    assert run.success
    assert json.loads(sim_thread.requests_to(V1)[0].body)["selectedOutputs"] == ["agent1.content"]


def test_0_1_positional_async_execution(sim_thread: FakeSimServer, sdk: SimStudioClient) -> None:
    result = sdk.execute_workflow("workflow-id", {"m": 1}, 30.0, None, None, True)
    assert isinstance(result, AsyncExecutionResult)
    assert sim_thread.requests_to(V1)[0].header("X-Execution-Mode") == "async"


def test_0_1_positional_sync_and_retry_variants(sim_thread: FakeSimServer, sdk: SimStudioClient) -> None:
    assert sdk.execute_workflow_sync("workflow-id", {"m": 1}, 30.0).success
    assert sdk.execute_with_retry("workflow-id", {"m": 1}, 30.0, None, None, None, 2, 0.01).success


# -- 0.2.x: async submit, then get_workflow_run ----------------------------------------------------------------------
def test_get_workflow_run_after_an_async_submit_under_the_v1_default(
    sim_thread: FakeSimServer, sdk: SimStudioClient
) -> None:
    submitted = sdk.execute_workflow("workflow-id", {"data": "x"}, async_execution=True)
    assert isinstance(submitted, AsyncExecutionResult)
    states = []
    for _ in range(5):
        run = sdk.get_workflow_run("workflow-id", submitted.run_id, include_output=True)
        states.append(run["status"])
        if run["status"] == "completed":
            break
    assert states == ["queued", "running", "completed"]
    assert run["runId"] == submitted.run_id
    assert run["workflowId"] == "workflow-id"
    assert run["error"] is None
    assert run["output"]["input"] == {"data": "x"}
    assert not any("/api/v2/" in r.path for r in sim_thread.requests)


def test_get_workflow_run_reads_a_v1_job_when_v2_is_switched_off(sim_thread: FakeSimServer) -> None:
    sim_thread.v2_enabled = False
    sim_thread.add_workflow(FakeWorkflow(id="bad", error="Agent exploded", polls_to_complete=0))
    with SimStudioClient(api_key=API_KEY, base_url=sim_thread.url) as submitter:
        submitted = submitter.execute_workflow("bad", async_execution=True)
    assert isinstance(submitted, AsyncExecutionResult)
    with SimStudioClient(api_key=API_KEY, base_url=sim_thread.url) as other:  # knows nothing of the job
        run = other.get_workflow_run("bad", submitted.run_id)
    assert run["status"] == "failed"
    assert run["error"]["message"] == "Agent exploded"
    assert "output" not in run


def test_get_workflow_run_of_an_unknown_id_is_the_v2_not_found(sim_thread: FakeSimServer, sdk: SimStudioClient) -> None:
    with pytest.raises(SimStudioError) as caught:
        sdk.get_workflow_run("workflow-id", "no-such-run")
    assert caught.value.status == 404


def test_get_workflow_run_of_a_v2_run_is_the_servers_data(sim_thread: FakeSimServer) -> None:
    with SimStudioClient(api_key=API_KEY, base_url=sim_thread.url, api_version="v2") as client:
        submitted = client.execute_workflow("workflow-id", {"q": 1}, async_execution=True)
        assert isinstance(submitted, AsyncExecutionResult)
        run = client.get_workflow_run("workflow-id", submitted.run_id)
    assert run["runId"] == submitted.run_id
    assert "/runs/" in sim_thread.requests[-1].path


def test_a_paused_v2_run_reads_as_paused_not_processing(sim_thread: FakeSimServer) -> None:
    sim_thread.add_workflow(FakeWorkflow(id="hitl", v2_status="paused", polls_to_complete=0))
    with SimStudioClient(api_key=API_KEY, base_url=sim_thread.url, api_version="v2") as client:
        submitted = client.execute_workflow("hitl", async_execution=True)
        assert isinstance(submitted, AsyncExecutionResult)
        assert client.get_job_status(submitted.task_id)["status"] == "paused"


# -- trace_spans and logs ---------------------------------------------------------------------------------------------
def test_trace_spans_and_total_duration_from_a_pre_nov_2025_server(
    sim_thread: FakeSimServer, sdk: SimStudioClient
) -> None:
    sim_thread.legacy_sync_shape = True
    result = sdk.execute_workflow("workflow-id", {"m": 1})
    assert isinstance(result, WorkflowExecutionResult)
    assert result.trace_spans is not None
    assert result.trace_spans[0]["name"] == "Agent 1"
    assert result.total_duration == 10
    assert result.logs is None  # that server left logs out


def test_logs_when_the_server_sends_them(sim_thread: FakeSimServer, sdk: SimStudioClient) -> None:
    body = {"success": True, "output": {"x": 1}, "logs": [{"blockId": "b", "success": True}], "traceSpans": []}
    sim_thread.inject(Fault.raw(json.dumps(body).encode(), content_type="application/json"), path=V1)
    result = sdk.execute_workflow("workflow-id")
    assert isinstance(result, WorkflowExecutionResult)
    assert result.logs == [{"blockId": "b", "success": True}]
    assert result.trace_spans == []


def test_a_current_server_sends_neither(sim_thread: FakeSimServer, sdk: SimStudioClient) -> None:
    result = sdk.execute_workflow("workflow-id")
    assert isinstance(result, WorkflowExecutionResult)
    assert (result.logs, result.trace_spans) == (None, None)


# -- the SimStudioError tree is compat's ------------------------------------------------------------------------------
def test_a_status_error_is_both_the_sdks_and_aioagents_typed_error(sim_thread: FakeSimServer) -> None:
    sim_thread.inject(sim_thread.rate_limited_fault(retry_after=None, generation="v1"), path=V1, times=10)
    with SimStudioClient(api_key=API_KEY, base_url=sim_thread.url) as client, pytest.raises(SimStudioError) as caught:
        client.execute_workflow("workflow-id")
    err = caught.value
    assert err.code == "RATE_LIMIT_EXCEEDED"
    assert err.status == 429
    assert isinstance(err, RateLimitError)
    assert isinstance(err, SimRateLimitError)


def test_a_refused_argument_is_both_a_sim_studio_error_and_a_value_error(sdk: SimStudioClient) -> None:
    with pytest.raises(SimStudioError) as caught:
        sdk.execute_workflow("workflow-id", execution_timeout_seconds=90)
    assert caught.value.code == "INVALID_EXECUTION_TIMEOUT"
    assert isinstance(caught.value, ValueError)


async def test_the_native_client_raises_aioagents_errors_not_the_sdks(sim: FakeSimServer) -> None:
    async with WorkflowsClient(api_key="wrong", base_url=sim.url) as client:
        with pytest.raises(SimAuthenticationError) as caught:
            await client.execute("workflow-id")
    assert caught.value.code == "UNAUTHORIZED"
    assert not isinstance(caught.value, SimStudioError)
