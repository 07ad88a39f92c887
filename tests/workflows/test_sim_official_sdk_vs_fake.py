"""The official blocking SDK (simstudio-sdk 0.2.1) as a real client of the fake.

Proof that the fake's wire is the one the SDK was written against, the SDK's failures included."""

from __future__ import annotations

import io

import pytest
import simstudio

from aioagents.testing._sim import FakeSimServer, FakeWorkflow, data_url

from .conftest import API_KEY


@pytest.fixture
def sdk(sim_thread: FakeSimServer):
    with simstudio.SimStudioClient(api_key=API_KEY, base_url=sim_thread.url + "/") as client:
        yield client


def test_sdk_sync_execute_reads_the_v2_envelope(sdk, sim_thread) -> None:
    result = sdk.execute_workflow("workflow-id", {"message": "Hello"})
    assert isinstance(result, simstudio.WorkflowExecutionResult)
    assert (result.success, result.status) == (True, "completed")
    assert result.output["input"] == {"message": "Hello"}
    req = sim_thread.requests_to("/api/v2/workflows/workflow-id/execute")[0]
    assert req.json() == {"input": {"message": "Hello"}}
    assert req.header("X-API-Key") == API_KEY
    assert req.header("X-Sim-Client-Info").startswith("sdk-python/0.2.1")


def test_sdk_failed_run_is_returned_not_raised(sdk, sim_thread) -> None:
    sim_thread.add_workflow(FakeWorkflow(id="bad", error="boom"))
    result = sdk.execute_workflow("bad")
    assert (result.success, result.status, result.error) == (False, "failed", "boom")


def test_sdk_async_then_run_polling_reaches_completed(sdk, sim_thread) -> None:
    sub = sdk.execute_workflow("workflow-id", {"q": 1}, async_execution=True, execution_timeout_seconds=90)
    assert isinstance(sub, simstudio.AsyncExecutionResult)
    assert sub.status_url.endswith(f"/runs/{sub.run_id}")
    statuses = [sdk.get_workflow_run("workflow-id", sub.run_id, include_output=True)["status"] for _ in range(3)]
    assert statuses == ["queued", "running", "completed"]
    assert sim_thread.jobs[sub.run_id].execution_timeout_seconds == 90


def test_sdk_stream_true_fails_after_the_run_as_the_contract_says(sdk) -> None:
    with pytest.raises(simstudio.SimStudioError) as info:
        sdk.execute_workflow("workflow-id", {"m": 1}, stream=True, selected_outputs=["agent1.content"])
    assert info.value.code == "EXECUTION_ERROR"


def test_sdk_rate_limited_fault_gives_rate_limit_exceeded_and_info(sdk, sim_thread) -> None:
    sim_thread.inject(sim_thread.rate_limited_fault(retry_after=2), path="/api/v2/workflows/workflow-id/execute")
    with pytest.raises(simstudio.SimStudioError) as info:
        sdk.execute_workflow("workflow-id")
    assert (info.value.code, info.value.status) == ("RATE_LIMIT_EXCEEDED", 429)
    rl = sdk.get_rate_limit_info()
    assert (rl.limit, rl.remaining, rl.retry_after) == (100, 0, 2000)
    assert rl.reset > 1_700_000_000_000  # the ISO reset, as epoch ms


def test_sdk_v2_error_body_is_decoded(sdk, sim_thread) -> None:
    with pytest.raises(simstudio.SimStudioError) as info:
        sdk.execute_workflow("missing")
    assert (info.value.code, info.value.status, str(info.value)) == ("NOT_FOUND", 404, "Workflow not found")


def test_sdk_cannot_talk_to_a_server_with_v2_off(sdk, sim_thread) -> None:
    sim_thread.v2_enabled = False
    with pytest.raises(simstudio.SimStudioError) as info:
        sdk.execute_workflow("workflow-id")
    assert (info.value.code, info.value.status) == ("NOT_FOUND", 404)


def test_sdk_status_validate_usage_and_jobs(sdk, sim_thread) -> None:
    sim_thread.add_workflow(FakeWorkflow(id="draft", deployed=False))
    assert sdk.get_workflow_status("workflow-id").is_deployed is True
    assert sdk.validate_workflow("draft") is False
    limits = sdk.get_usage_limits()
    assert limits.rate_limit["sync"]["requestsPerMinute"] == 150
    with pytest.raises(simstudio.SimStudioError) as info:
        sdk.get_job_status("nope")
    assert (info.value.code, str(info.value)) == ("TASK_NOT_FOUND", "Task not found")


def test_sdk_files_arrive_as_data_urls(sdk, sim_thread) -> None:
    doc = io.BytesIO(b"%PDF-1.4 hello")
    doc.name = "/tmp/report.pdf"
    sdk.execute_workflow("workflow-id", {"doc": doc})
    sent = sim_thread.requests[-1].json()["input"]["doc"]
    assert sent == {
        "type": "file",
        "data": data_url(b"%PDF-1.4 hello"),
        "name": "report.pdf",
        "mime": "application/octet-stream",
    }
