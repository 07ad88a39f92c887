"""WorkflowsClient against the fake: sync runs, input encoding per generation, auto-detection, async jobs."""

from __future__ import annotations

import io
import time

import pytest

from aioagents import _retry
from aioagents._exceptions import ClientClosedError, PollTimeoutError
from aioagents.testing import Fault
from aioagents.testing._sim import FakeSimServer, FakeWorkflow, data_url
from aioagents.workflows import (
    ExecutionResult,
    Job,
    SimAuthenticationError,
    SimConflictError,
    SimInvalidRequestError,
    SimNotFoundError,
    SimServiceUnavailableError,
    WorkflowFailedError,
    WorkflowsClient,
)

from .conftest import API_KEY

V1 = "/api/workflows/workflow-id/execute"
V2 = "/api/v2/workflows/workflow-id/execute"


# -- sync runs, v1 ------------------------------------------------------------------------------------------------
async def test_v1_execute_spreads_a_dict_at_the_body_root(sim, client) -> None:
    result = await client.execute("workflow-id", {"message": "Hello"})
    assert isinstance(result, ExecutionResult)
    assert (result.success, result.status, result.http_status) == (True, "completed", 200)
    assert result.output["input"] == {"message": "Hello"}
    assert result.execution_id
    req = sim.requests_to(V1)[0]
    assert req.json() == {"message": "Hello"}
    assert req.header("X-API-Key") == API_KEY
    assert req.header("X-Execution-Mode") is None


@pytest.mark.parametrize(
    ("value", "body"), [("NVDA", {"input": "NVDA"}), (42, {"input": 42}), ([1, 2], {"input": [1, 2]}), (None, {})]
)
async def test_v1_non_dict_input_is_wrapped(sim, client, value, body) -> None:
    await client.execute("workflow-id", value)
    assert sim.requests_to(V1)[0].json() == body


async def test_v1_refuses_an_input_field_named_like_a_control_key_before_sending(sim, client) -> None:
    with pytest.raises(SimInvalidRequestError, match="stream"):
        await client.execute("workflow-id", {"stream": "my data"})
    assert sim.requests == []


async def test_v1_selected_outputs_and_execution_id(sim, client) -> None:
    await client.execute("workflow-id", {"a": 1}, selected_outputs=["agent1.content"], execution_id="exec-1")
    req = sim.requests_to(V1)[0]
    assert req.json() == {"a": 1, "selectedOutputs": ["agent1.content"]}
    assert req.header("X-Execution-Id") == "exec-1"
    with pytest.raises(SimConflictError) as info:
        await client.execute("workflow-id", {"a": 1}, execution_id="exec-1")
    assert (info.value.code, info.value.status) == ("EXECUTION_ID_CONFLICT", 409)


async def test_v1_failed_run_is_returned_as_data_not_raised(sim, client) -> None:
    sim.add_workflow(FakeWorkflow(id="bad", error="Agent exploded"))
    result = await client.execute("bad")
    assert (result.success, result.error, result.http_status, result.status) == (False, "Agent exploded", 500, "failed")
    assert len(sim.requests_to("/api/workflows/bad/execute")) == 1
    with pytest.raises(WorkflowFailedError) as info:
        result.raise_for_status()
    assert (info.value.code, info.value.status, str(info.value)) == ("EXECUTION_ERROR", 500, "Agent exploded")


async def test_v1_sync_timeout_408_is_a_failed_result_with_code_timeout(sim, client) -> None:
    sim.inject(
        Fault.status_code(
            408, {"success": False, "output": {}, "error": "Workflow execution timed out", "metadata": {}}
        ),
        path=V1,
    )
    result = await client.execute("workflow-id")
    assert (result.success, result.error_code, result.http_status) == (False, "TIMEOUT", 408)
    with pytest.raises(WorkflowFailedError) as info:
        result.raise_for_status()
    assert info.value.code == "TIMEOUT"


async def test_files_are_sent_as_base64_data_url_objects_and_rewound(sim, client) -> None:
    doc = io.BytesIO(b"hello pdf")
    doc.name = "/secret/dir/report.pdf"
    doc.content_type = "application/pdf"  # type: ignore[attr-defined]
    doc.seek(2)
    await client.execute("workflow-id", {"files": [doc], "note": "x"})
    sent = sim.requests_to(V1)[0].json()
    assert sent["files"] == [
        {
            "type": "file",
            "data": data_url(b"llo pdf", "application/pdf"),
            "name": "report.pdf",
            "mime": "application/pdf",
        }
    ]
    assert doc.tell() == 2


# -- sync runs, v2 ------------------------------------------------------------------------------------------------
async def test_v2_execute_nests_the_input(sim, client_v2) -> None:
    result = await client_v2.execute("workflow-id", {"message": "Hello"}, selected_outputs=["agent.content"])
    assert sim.requests_to(V2)[0].json() == {"input": {"message": "Hello"}, "selectedOutputs": ["agent.content"]}
    assert (result.success, result.status) == (True, "completed")
    assert result.metadata["runId"] == result.execution_id
    assert result.duration_ms == 10


@pytest.mark.parametrize("value", ["NVDA", 42, [1, 2]])
async def test_v2_non_dict_input_becomes_input_input(sim, client_v2, value) -> None:
    await client_v2.execute("workflow-id", value)
    assert sim.requests_to(V2)[0].json() == {"input": {"input": value}}


@pytest.mark.parametrize(
    ("workflow", "success", "status"),
    [
        (FakeWorkflow(id="w", error="boom", error_code="BLOCK_EXECUTION_FAILED"), False, "failed"),
        (FakeWorkflow(id="w", v2_status="paused"), True, "paused"),
        (FakeWorkflow(id="w", v2_status="cancelled"), False, "cancelled"),
    ],
)
async def test_v2_terminal_statuses_map_to_success(sim, client_v2, workflow, success, status) -> None:
    sim.add_workflow(workflow)
    result = await client_v2.execute("w")
    assert (result.success, result.status) == (success, status)
    if status == "failed":
        assert (result.error, result.error_code) == ("boom", "BLOCK_EXECUTION_FAILED")


async def test_v2_run_id_reuse_is_a_conflict(sim, client_v2) -> None:
    await client_v2.execute("workflow-id", execution_id="run-a")
    with pytest.raises(SimConflictError) as info:
        await client_v2.execute("workflow-id", execution_id="run-a")
    assert info.value.code == "CONFLICT"
    assert info.value.body["error"]["details"]["code"] == "RUN_ID_CONFLICT"


# -- generation auto-detection ------------------------------------------------------------------------------------
async def test_auto_uses_v2_when_the_server_has_it(sim) -> None:
    async with WorkflowsClient(api_key=API_KEY, base_url=sim.url, api_version="auto") as client:
        await client.execute("workflow-id", {"a": 1})
        await client.execute("workflow-id", {"a": 2})
    assert [r.path for r in sim.requests] == [V2, V2]


async def test_auto_falls_back_to_v1_for_good_when_v2_is_switched_off(sim) -> None:
    sim.v2_enabled = False
    async with WorkflowsClient(api_key=API_KEY, base_url=sim.url, api_version="auto") as client:
        first = await client.execute("workflow-id", {"a": 1})
        await client.execute("workflow-id", {"a": 2})
    assert first.output["input"] == {"a": 1}
    assert [r.path for r in sim.requests] == [V2, V1, V1]


async def test_auto_does_not_fall_back_on_an_ordinary_404(sim) -> None:
    async with WorkflowsClient(api_key=API_KEY, base_url=sim.url, api_version="auto") as client:
        with pytest.raises(SimNotFoundError):
            await client.execute("missing")
    assert [r.path for r in sim.requests] == ["/api/v2/workflows/missing/execute"]


# -- async jobs ---------------------------------------------------------------------------------------------------
async def test_v1_async_job_is_polled_to_completion(sim, client) -> None:
    job = await client.execute("workflow-id", {"data": "large"}, async_execution=True, execution_timeout=90)
    assert isinstance(job, Job)
    assert job.kind == "job"
    req = sim.requests_to(V1)[0]
    assert req.header("X-Execution-Mode") == "async"
    assert req.header("X-Execution-Timeout-Seconds") == "90"
    assert req.json() == {"data": "large"}
    first = await job.status()
    assert (first.state, first.raw_status, first.done) == ("queued", "pending", False)
    final = await job.wait(poll_interval=0.01)
    assert (final.state, final.done) == ("completed", True)
    result = await job.result()
    assert result.success
    assert result.output["input"] == {"data": "large"}


async def test_v2_async_run_is_polled_to_completion(sim, client_v2) -> None:
    job = await client_v2.execute("workflow-id", {"q": 1}, async_execution=True, execution_timeout=90)
    assert job.kind == "run"
    assert sim.requests_to(V2)[0].json() == {"input": {"q": 1}, "async": True, "executionTimeoutSeconds": 90}
    result = await job.result(poll_interval=0.01)
    assert (result.success, result.status) == (True, "completed")
    assert result.output["input"] == {"q": 1}
    polls = [r for r in sim.requests if "/runs/" in r.path]
    assert len(polls) == 3
    assert polls[0].query == {"includeOutput": "true"}


async def test_legacy_task_id_answer_is_understood(sim, client) -> None:
    sim.legacy_async_shape = True
    job = await client.execute("workflow-id", async_execution=True)
    assert job.kind == "job"
    assert job.status_url == f"/api/jobs/{job.id}"
    assert (await job.wait(poll_interval=0.01)).state == "completed"


async def test_failed_job_result_is_data(sim, client) -> None:
    sim.add_workflow(FakeWorkflow(id="bad", error="boom", polls_to_complete=1))
    job = await client.execute("bad", async_execution=True)
    result = await job.result(poll_interval=0.01)
    assert (result.success, result.error, result.status) == (False, "boom", "failed")


async def test_wait_polls_with_growing_intervals_and_times_out_with_the_last_status(sim, client) -> None:
    sim.add_workflow(FakeWorkflow(id="slowjob", polls_to_complete=1000))
    job = await client.execute("slowjob", async_execution=True)
    started = time.monotonic()
    with pytest.raises(PollTimeoutError) as info:
        await job.wait(timeout=0.6, poll_interval=0.05, max_interval=0.2)
    elapsed = time.monotonic() - started
    assert 0.55 <= elapsed < 3.0
    assert info.value.last.state == "running"
    polls = len(sim.requests_to(f"/api/jobs/{job.id}"))
    # Fixed 0.05 s polling would make ~12 requests; growing waits make fewer.
    assert 2 <= polls <= 9


async def test_a_server_that_ignores_the_async_request_gives_a_finished_job(sim, client) -> None:
    sim.inject(Fault.status_code(200, {"success": True, "output": {"x": 1}, "metadata": {"duration": 5}}), path=V1)
    job = await client.execute("workflow-id", async_execution=True)
    assert job.kind == "finished"
    assert (await job.status()).state == "completed"
    assert (await job.result()).output == {"x": 1}
    assert len(sim.requests) == 1


async def test_execution_timeout_is_validated_before_sending(sim, client) -> None:
    for kwargs in ({"execution_timeout": 90}, {"execution_timeout": 604801, "async_execution": True}):
        with pytest.raises(SimInvalidRequestError) as info:
            await client.execute("workflow-id", **kwargs)
        assert info.value.code == "INVALID_EXECUTION_TIMEOUT"
    assert sim.requests == []


async def test_ambiguous_enqueue_is_not_retried_and_says_so(sim, client, instant_retries) -> None:
    sim.inject(sim.enqueue_ambiguous_fault(), path=V1)
    with pytest.raises(SimServiceUnavailableError) as info:
        await client.execute("workflow-id", async_execution=True)
    assert info.value.code == "ASYNC_ENQUEUE_AMBIGUOUS"
    assert "may or may not" in str(info.value)
    assert len(sim.requests_to(V1)) == 1


async def test_unknown_job_is_not_found_with_the_server_code(sim, client) -> None:
    with pytest.raises(SimNotFoundError) as info:
        await client.get_job_status("nope")
    assert (info.value.code, info.value.message) == ("TASK_NOT_FOUND", "Task not found")


async def test_job_handle_from_an_id(sim, client_v2) -> None:
    job = await client_v2.execute("workflow-id", async_execution=True)
    again = client_v2.job(job.id, workflow_id="workflow-id")
    assert (await again.wait(poll_interval=0.01)).state == "completed"


# -- ids, paths, lifecycle ----------------------------------------------------------------------------------------
async def test_ids_cannot_climb_out_of_their_route(sim, client) -> None:
    with pytest.raises(SimInvalidRequestError):
        await client.execute("..")
    with pytest.raises(SimNotFoundError):
        await client.get_workflow_status("workflow-id/../../users/me/usage-limits#")
    # The server saw one path under /api/workflows/ (the id's slashes were escaped), routed nowhere else.
    assert sim.requests_to("/api/users/me/usage-limits") == []
    assert [r.path.endswith("/status") for r in sim.requests] == [True]


async def test_closed_client_refuses_calls(sim) -> None:
    client = WorkflowsClient(api_key=API_KEY, base_url=sim.url)
    await client.execute("workflow-id")
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await client.execute("workflow-id")


async def test_the_api_key_never_shows_in_reprs_or_errors(sim) -> None:
    secret = "sk-very-secret-value"
    async with WorkflowsClient(api_key=secret, base_url=sim.url) as client:
        with pytest.raises(SimAuthenticationError) as info:
            await client.execute("workflow-id")
        assert secret not in repr(client)
        assert secret not in repr(client._transport)
        assert secret not in str(info.value)
        assert secret not in repr(info.value.__dict__.get("headers"))


async def test_set_api_key_and_set_base_url(sim) -> None:
    async with (
        FakeSimServer(api_keys=["other"]) as other,
        WorkflowsClient(api_key="wrong", base_url=other.url + "/") as client,
    ):
        client.set_base_url(sim.url + "///")
        assert client.base_url == sim.url
        client.set_api_key(API_KEY)
        assert (await client.execute("workflow-id")).success
    assert other.requests == []


async def test_env_vars_configure_the_client(sim, monkeypatch) -> None:
    monkeypatch.setenv("SIM_API_KEY", API_KEY)
    monkeypatch.setenv("SIM_BASE_URL", sim.url)
    async with WorkflowsClient() as client:
        assert (await client.get_workflow_status("workflow-id")).is_deployed


def test_the_testing_switch_is_off_by_default() -> None:
    # Timing tests below rely on real waits.
    assert _retry._testing is False


@pytest.mark.parametrize(("status", "body"), [(200, {"answer": 42}), (201, [1, 2]), (200, "plain")])
async def test_a_response_block_answer_is_the_output(sim, client, status, body) -> None:
    sim.add_workflow(FakeWorkflow(id="resp", response_block=(status, body)))
    result = await client.execute("resp")
    assert (result.success, result.output, result.http_status) == (True, body, status)


async def test_wait_returns_a_paused_v2_run_at_once(sim, client_v2) -> None:
    # Paused is a resting state (a human-in-the-loop block waits for a resume call): polling never moves it on.
    sim.add_workflow(FakeWorkflow(id="hitl", v2_status="paused", polls_to_complete=1))
    job = await client_v2.execute("hitl", async_execution=True)
    status = await job.wait(timeout=5, poll_interval=0.01)
    assert status.state == "paused"
    assert not status.done
    assert len([r for r in sim.requests if "/runs/" in r.path]) == 2  # queued, then paused: no more polls
    result = await job.result(poll_interval=0.01)
    assert (result.success, result.status) == (True, "paused")


async def test_wait_without_a_timeout_returns_a_paused_run(sim, client_v2) -> None:
    sim.add_workflow(FakeWorkflow(id="hitl", v2_status="paused", polls_to_complete=0))
    job = await client_v2.execute("hitl", async_execution=True)
    assert (await job.wait(poll_interval=0.01)).state == "paused"


def test_stream_idle_timeout_defaults_above_the_servers_300_s_block_limit() -> None:
    # The server sends no heartbeats and one block may run 300 s in silence: a lower default cuts healthy runs.
    from aioagents.workflows import DEFAULT_STREAM_IDLE_TIMEOUT

    assert DEFAULT_STREAM_IDLE_TIMEOUT > 300
    assert WorkflowsClient(api_key=API_KEY, base_url="http://127.0.0.1:9").idle_timeout == DEFAULT_STREAM_IDLE_TIMEOUT
