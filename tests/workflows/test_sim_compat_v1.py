"""The compat client in its default v1 mode: the documented 0.1.x API (``input_data``, ``task_id``, ``links``,
``get_job_status``) against the server as it is today, plus what the SDK could not do (real streaming)."""

from __future__ import annotations

import io
import json
import time

import pytest

from aioagents.compat.simstudio import AsyncExecutionResult, SimStudioClient, SimStudioError, WorkflowExecutionResult
from aioagents.testing import Fault
from aioagents.testing._sim import FakeWorkflow, data_url
from aioagents.workflows import Chunk, Final

from .conftest import API_KEY

V1 = "/api/workflows/workflow-id/execute"


@pytest.fixture
def sdk(sim_thread):
    with SimStudioClient(api_key=API_KEY, base_url=sim_thread.url) as client:
        yield client


def test_v1_input_data_is_spread_at_the_root(sim_thread, sdk) -> None:
    result = sdk.execute_workflow("workflow-id", input_data={"message": "Hello", "user_id": "12345"})
    assert isinstance(result, WorkflowExecutionResult)
    assert result.success
    assert result.metadata["duration"] == 10
    assert json.loads(sim_thread.requests_to(V1)[0].body) == {"message": "Hello", "user_id": "12345"}


def test_v1_async_uses_the_header_and_reads_job_id(sim_thread, sdk) -> None:
    result = sdk.execute_workflow("workflow-id", {"data": "large dataset"}, async_execution=True)
    assert isinstance(result, AsyncExecutionResult)
    assert result.task_id
    assert result.links == {"status": f"/api/jobs/{result.task_id}"}
    req = sim_thread.requests_to(V1)[0]
    assert req.header("X-Execution-Mode") == "async"
    assert json.loads(req.body) == {"data": "large dataset"}


def test_v1_execution_timeout_is_a_header(sim_thread, sdk) -> None:
    sdk.execute_workflow("workflow-id", {"a": 1}, async_execution=True, execution_timeout_seconds=90)
    assert sim_thread.requests_to(V1)[0].header("X-Execution-Timeout-Seconds") == "90"


def test_v1_legacy_task_id_answer_is_not_mis_read_as_a_sync_success(sim_thread, sdk) -> None:
    sim_thread.legacy_async_shape = True
    result = sdk.execute_workflow("workflow-id", async_execution=True)
    assert isinstance(result, AsyncExecutionResult)
    assert result.created_at


def test_documented_polling_loop_reaches_completed(sim_thread, sdk) -> None:
    result = sdk.execute_workflow("workflow-id", {"data": "x"}, async_execution=True)
    seen = []
    status = sdk.get_job_status(result.task_id)
    while status["status"] in ["queued", "processing"]:
        seen.append(status["status"])
        status = sdk.get_job_status(result.task_id)
    assert seen == ["queued", "processing"]
    assert status["status"] == "completed"
    assert status["output"]["input"] == {"data": "x"}
    assert "duration" in status["metadata"]


def test_get_job_status_polls_a_v2_run_this_client_queued(sim_thread) -> None:
    with SimStudioClient(api_key=API_KEY, base_url=sim_thread.url, api_version="v2") as client:
        result = client.execute_workflow("workflow-id", {"q": 1}, async_execution=True)
        states = [client.get_job_status(result.task_id)["status"] for _ in range(3)]
    assert states == ["queued", "processing", "completed"]
    assert all("/runs/" in r.path for r in sim_thread.requests[1:])


def test_failed_v1_run_is_returned_with_success_false(sim_thread, sdk) -> None:
    sim_thread.add_workflow(FakeWorkflow(id="bad", error="Agent exploded"))
    result = sdk.execute_workflow("bad")
    assert (result.success, result.error, result.status) == (False, "Agent exploded", "failed")


def test_files_are_base64_data_urls(sim_thread, sdk) -> None:
    f = io.BytesIO(b"abc")
    f.name = "notes.txt"
    sdk.execute_workflow("workflow-id", {"doc": f})
    assert json.loads(sim_thread.requests_to(V1)[0].body)["doc"]["data"] == data_url(b"abc")


def test_stream_really_streams_from_blocking_code(sim_thread, sdk) -> None:
    sim_thread.add_workflow(FakeWorkflow(id="slow", chunks=["One", ", two", ", three"], chunk_delay=0.4))
    started = time.monotonic()
    run = sdk.execute_workflow("slow", {"message": "Count"}, stream=True, selected_outputs=["agent1.content"])
    stamps = [(event, time.monotonic() - started) for event in run]
    first_chunk = next(t for e, t in stamps if isinstance(e, Chunk))
    final = next(t for e, t in stamps if isinstance(e, Final))
    assert final - first_chunk >= 0.75  # the first chunk was in hand long before the run ended
    assert final >= 1.1
    assert run.result().success
    assert json.loads(sim_thread.requests[0].body) == {
        "message": "Count",
        "stream": True,
        "selectedOutputs": ["agent1.content"],
    }


def test_stream_result_prints_like_a_result(sim_thread, sdk) -> None:
    run = sdk.execute_workflow("workflow-id", {"m": 1}, stream=True)
    assert "success=True" in str(run)
    assert run.output == {"content": "Hello, world", "input": {"m": 1}}


def test_stream_open_errors_raise_at_the_call(sim_thread, sdk) -> None:
    with pytest.raises(SimStudioError) as info:
        sdk.execute_workflow("missing", stream=True)
    assert info.value.code == "NOT_FOUND"


def test_leaving_a_stream_early_frees_the_server(sim_thread, sdk) -> None:
    sim_thread.add_workflow(FakeWorkflow(id="long", chunks=["x"] * 100, chunk_delay=0.02))
    with sdk.execute_workflow("long", stream=True) as run:
        next(iter(run))
    for _ in range(100):
        if sim_thread.open_streams == 0:
            break
        time.sleep(0.02)
    assert sim_thread.open_streams == 0


def test_transport_timeout_is_the_timeout_code(sim_thread, sdk) -> None:
    sim_thread.inject(Fault.delay(2.0), path=V1)
    with pytest.raises(SimStudioError) as info:
        sdk.execute_workflow("workflow-id", timeout=0.3)
    assert info.value.code == "TIMEOUT"


def test_connection_lost_after_sending_is_an_execution_error_saying_outcome_unknown(sim_thread, sdk) -> None:
    sim_thread.inject(Fault.reset(after_body=True), path=V1)
    with pytest.raises(SimStudioError, match="may or may not have run") as info:
        sdk.execute_workflow("workflow-id", {"a": 1})
    assert info.value.code == "EXECUTION_ERROR"
    assert len(sim_thread.requests_to(V1)) == 1


def test_error_codes_from_status_on_v1(sim_thread) -> None:
    with SimStudioClient(api_key="wrong", base_url=sim_thread.url) as client, pytest.raises(SimStudioError) as info:
        client.execute_workflow("workflow-id")
    assert (info.value.code, info.value.status) == ("UNAUTHORIZED", 401)
    sim_thread.usage_exceeded = True
    with SimStudioClient(api_key=API_KEY, base_url=sim_thread.url) as client, pytest.raises(SimStudioError) as info:
        client.execute_workflow("workflow-id")
    assert info.value.code == "USAGE_LIMIT_EXCEEDED"


def test_compat_is_usable_from_many_threads(sim_thread, sdk) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda i: sdk.execute_workflow("workflow-id", {"i": i}).output["input"]["i"], range(32))
        )
    assert results == list(range(32))
