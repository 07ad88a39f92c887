"""The fake Sim server speaks the contract: raw HTTP over loopback, byte for byte where it matters.

These tests pin the fake itself, so the client tests that run against it prove something about the
real server.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import aiohttp
import pytest

from aioagents.testing import Fault
from aioagents.testing._sim import FakeSimServer, FakeToolCall, FakeWorkflow

from .conftest import API_KEY

KEY = {"X-API-Key": API_KEY}
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def post(http: aiohttp.ClientSession, url: str, body: Any, **headers: str) -> tuple[int, Any, Any]:
    async with http.post(url, json=body, headers={**KEY, **headers}) as resp:
        return resp.status, await resp.json(), resp.headers


async def get(http: aiohttp.ClientSession, url: str, **headers: str) -> tuple[int, Any, Any]:
    async with http.get(url, headers={**KEY, **headers}) as resp:
        return resp.status, await resp.json(), resp.headers


async def sse_body(http: aiohttp.ClientSession, url: str, body: Any, **headers: str) -> bytes:
    async with http.post(url, json=body, headers={**KEY, **headers}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        return await resp.read()


def frames(raw: bytes) -> list[str]:
    """The data payloads of an SSE body; asserts the framing: only `data:` lines, blank-line ends."""
    assert raw.endswith(b"\n\n")
    out = []
    for block in raw.decode().split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        assert "\n" not in block
        out.append(block[len("data: ") :])
    return out


# -- v1 execute ------------------------------------------------------------------------------------
async def test_v1_sync_execute_spreads_body_minus_control_keys_into_the_input(sim, http) -> None:
    status, body, headers = await post(
        http, f"{sim.url}/api/workflows/workflow-id/execute", {"message": "hi", "selectedOutputs": []}
    )
    assert status == 200
    assert body["success"] is True
    assert body["output"]["input"] == {"message": "hi"}
    assert set(body["metadata"]) == {"duration", "startTime", "endTime"}
    assert "x-request-id" in headers
    assert "X-RateLimit-Limit" not in headers


async def test_v1_input_key_is_not_a_control_key(sim, http) -> None:
    url = f"{sim.url}/api/workflows/workflow-id/execute"
    _, alone, _ = await post(http, url, {"input": "NVDA", "stream": False})
    _, mixed, _ = await post(http, url, {"input": "NVDA", "async": True})
    assert alone["output"]["input"] == {"input": "NVDA"}
    assert mixed["output"]["input"] == {"input": "NVDA", "async": True}


async def test_v1_failed_run_is_http_500_with_a_string_error(sim, http) -> None:
    sim.add_workflow(FakeWorkflow(id="bad", error="Agent exploded"))
    status, body, _ = await post(http, f"{sim.url}/api/workflows/bad/execute", {})
    assert status == 500
    assert body["success"] is False
    assert body["error"] == "Agent exploded"


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({"X-API-Key": "wrong"}, 401, "Invalid API key"),
        ({"X-API-Key": "", "Authorization": f"Bearer {API_KEY}"}, 401, "Invalid API key"),
    ],
)
async def test_v1_bad_key_is_401_without_code(sim, http, headers, status, error) -> None:
    async with http.post(f"{sim.url}/api/workflows/workflow-id/execute", json={}, headers=headers) as resp:
        assert resp.status == status
        assert await resp.json() == {"error": error}


async def test_v1_public_workflow_runs_without_key_but_not_with_a_wrong_one(sim, http) -> None:
    sim.add_workflow(FakeWorkflow(id="pub", public=True))
    async with http.post(f"{sim.url}/api/workflows/pub/execute", json={}) as resp:
        assert resp.status == 200
    async with http.post(f"{sim.url}/api/workflows/pub/execute", json={}, headers={"X-API-Key": "x"}) as resp:
        assert resp.status == 401


async def test_v1_bad_json_and_unknown_and_undeployed_workflows(sim, http) -> None:
    sim.add_workflow(FakeWorkflow(id="draft", deployed=False))
    async with http.post(f"{sim.url}/api/workflows/workflow-id/execute", data=b"{nope", headers=KEY) as resp:
        assert (resp.status, await resp.json()) == (400, {"error": "Invalid JSON in request body"})
    assert (await post(http, f"{sim.url}/api/workflows/nope/execute", {}))[:2] == (
        404,
        {"error": "Workflow not found"},
    )
    assert (await post(http, f"{sim.url}/api/workflows/draft/execute", {}))[0] == 403


async def test_v1_usage_exceeded_is_402_with_no_code(sim, http) -> None:
    sim.usage_exceeded = True
    status, body, _ = await post(http, f"{sim.url}/api/workflows/workflow-id/execute", {})
    assert status == 402
    assert "code" not in body


async def test_v1_reused_execution_id_conflicts(sim, http) -> None:
    url = f"{sim.url}/api/workflows/workflow-id/execute"
    assert (await post(http, url, {}, **{"X-Execution-Id": "e1"}))[0] == 200
    status, body, _ = await post(http, url, {}, **{"X-Execution-Id": "e1"})
    assert (status, body["code"]) == (409, "EXECUTION_ID_CONFLICT")


# -- v1 async jobs ---------------------------------------------------------------------------------
async def test_v1_async_submit_is_202_with_job_id_and_status_url(sim, http) -> None:
    status, body, _ = await post(
        http, f"{sim.url}/api/workflows/workflow-id/execute", {"x": 1}, **{"X-Execution-Mode": "async"}
    )
    assert status == 202
    assert set(body) == {"success", "async", "jobId", "executionId", "message", "statusUrl"}
    assert "taskId" not in body
    assert body["statusUrl"] == f"{sim.url}/api/jobs/{body['jobId']}"


async def test_v1_job_progresses_over_polls_to_completed(sim, http) -> None:
    _, sub, _ = await post(
        http, f"{sim.url}/api/workflows/workflow-id/execute", {"x": 1}, **{"X-Execution-Mode": "async"}
    )
    seen = [(await get(http, sub["statusUrl"]))[1] for _ in range(3)]
    assert [s["status"] for s in seen] == ["pending", "processing", "completed"]
    assert seen[-1]["taskId"] == sub["jobId"]
    assert seen[-1]["output"]["input"] == {"x": 1}
    assert "duration" in seen[-1]["metadata"]


async def test_v1_legacy_async_shape_has_task_id_and_links(sim, http) -> None:
    sim.legacy_async_shape = True
    _, body, _ = await post(http, f"{sim.url}/api/workflows/workflow-id/execute", {}, **{"X-Execution-Mode": "async"})
    assert body["status"] == "queued"
    assert body["links"] == {"status": f"/api/jobs/{body['taskId']}"}


async def test_v1_async_refuses_selected_outputs_and_bad_timeouts(sim, http) -> None:
    url = f"{sim.url}/api/workflows/workflow-id/execute"
    assert (await post(http, url, {"selectedOutputs": ["a.b"]}, **{"X-Execution-Mode": "async"}))[0] == 400
    bad = {"X-Execution-Mode": "async", "X-Execution-Timeout-Seconds": "604801"}
    assert (await post(http, url, {}, **bad))[0] == 400
    ok = {"X-Execution-Mode": "async", "X-Execution-Timeout-Seconds": "90"}
    _, body, _ = await post(http, url, {}, **ok)
    assert sim.jobs[body["jobId"]].execution_timeout_seconds == 90


async def test_v1_unknown_job_is_task_not_found(sim, http) -> None:
    assert (await get(http, f"{sim.url}/api/jobs/nope"))[:2] == (
        404,
        {"error": "Task not found", "code": "TASK_NOT_FOUND"},
    )


async def test_v1_failed_job_carries_the_error(sim, http) -> None:
    sim.add_workflow(FakeWorkflow(id="bad", error="boom", polls_to_complete=0))
    _, sub, _ = await post(http, f"{sim.url}/api/workflows/bad/execute", {}, **{"X-Execution-Mode": "async"})
    _, job, _ = await get(http, sub["statusUrl"])
    assert (job["status"], job["error"]) == ("failed", "boom")


# -- v1 reads --------------------------------------------------------------------------------------
async def test_status_reports_deployment(sim, http) -> None:
    sim.add_workflow(FakeWorkflow(id="draft", deployed=False, needs_redeployment=True))
    assert (await get(http, f"{sim.url}/api/workflows/draft/status"))[1] == {
        "isDeployed": False,
        "deployedAt": None,
        "needsRedeployment": True,
    }
    assert (await get(http, f"{sim.url}/api/workflows/nope/status"))[1]["code"] == "WORKFLOW_NOT_FOUND"
    assert (await get(http, f"{sim.url}/api/workflows/nope/status", **{"X-API-Key": "x"}))[:2] == (
        401,
        {"error": "Unauthorized"},
    )


async def test_usage_limits_current_shape(sim, http) -> None:
    _, body, _ = await get(http, f"{sim.url}/api/users/me/usage-limits")
    sync = body["rateLimit"]["sync"]
    assert {"requestsPerMinute", "maxBurst", "remaining", "resetAt", "isLimited"} == set(sync)
    assert "limit" not in sync
    assert set(body["storage"]) == {"usedBytes", "limitBytes", "percentUsed"}


async def test_usage_limits_legacy_shape(sim, http) -> None:
    sim.usage_shape = "legacy"
    _, body, _ = await get(http, f"{sim.url}/api/users/me/usage-limits")
    assert "limit" in body["rateLimit"]["sync"]
    assert "storage" not in body


async def test_usage_limits_401_has_an_upper_snake_code(sim, http) -> None:
    assert (await get(http, f"{sim.url}/api/users/me/usage-limits", **{"X-API-Key": "bad"}))[1] == {
        "error": "Invalid API key",
        "code": "INVALID_API_KEY",
    }


async def test_v1_rate_limit_headers_are_opt_in_with_epoch_or_iso_reset(sim, http) -> None:
    sim.v1_rate_limit_reset = "epoch"
    _, _, h = await get(http, f"{sim.url}/api/users/me/usage-limits")
    assert h["X-RateLimit-Reset"].isdecimal()
    sim.v1_rate_limit_reset = "iso"
    _, _, h = await get(http, f"{sim.url}/api/users/me/usage-limits")
    assert ISO_RE.match(h["X-RateLimit-Reset"])


# -- v2 --------------------------------------------------------------------------------------------
async def test_v2_sync_envelope_and_headers(sim, http) -> None:
    status, body, headers = await post(
        http, f"{sim.url}/api/v2/workflows/workflow-id/execute", {"input": {"message": "Hello"}}
    )
    assert status == 200
    data = body["data"]
    assert data["status"] == "completed"
    assert data["output"]["input"] == {"message": "Hello"}
    assert data["error"] is None
    assert headers["X-Run-Id"] == data["runId"]
    assert headers["Cache-Control"] == "private, no-store"
    assert headers["X-RateLimit-Limit"] == "100"
    assert int(headers["X-RateLimit-Remaining"]) == 99
    assert ISO_RE.match(headers["X-RateLimit-Reset"])


async def test_v2_failed_run_is_http_200_with_status_failed(sim, http) -> None:
    sim.add_workflow(FakeWorkflow(id="bad", error="Agent exploded", error_code="BLOCK_EXECUTION_FAILED"))
    status, body, _ = await post(http, f"{sim.url}/api/v2/workflows/bad/execute", {"input": {}})
    assert status == 200
    assert body["data"]["status"] == "failed"
    assert body["data"]["error"] == {"code": "BLOCK_EXECUTION_FAILED", "message": "Agent exploded"}


@pytest.mark.parametrize(
    "body",
    [
        {"input": "NVDA"},
        {"message": "root keys are not allowed"},
        {"async": True, "stream": True},
        {"executionTimeoutSeconds": 90},
        {"async": True, "executionTimeoutSeconds": 604801},
        {"async": True, "selectedOutputs": ["a.b"]},
        {"stream": True, "includeThinking": True},
    ],
)
async def test_v2_strict_body_rejects(sim, http, body) -> None:
    status, payload, _ = await post(http, f"{sim.url}/api/v2/workflows/workflow-id/execute", body)
    assert status == 400
    assert payload["error"]["code"] == "BAD_REQUEST"


async def test_v2_async_is_202_with_run_id_and_runs_progress(sim, http) -> None:
    status, body, headers = await post(
        http,
        f"{sim.url}/api/v2/workflows/workflow-id/execute",
        {"input": {"q": 1}, "async": True, "executionTimeoutSeconds": 90},
    )
    assert status == 202
    run_id = body["data"]["runId"]
    assert headers["X-Run-Id"] == run_id
    url = body["data"]["statusUrl"] + "?includeOutput=true"
    seen = [(await get(http, url))[1]["data"] for _ in range(3)]
    assert [s["status"] for s in seen] == ["queued", "running", "completed"]
    assert seen[-1]["output"]["input"] == {"q": 1}
    assert sim.jobs[run_id].execution_timeout_seconds == 90


async def test_v2_run_selected_outputs_take_block_ids_only(sim, http) -> None:
    wf = sim.workflows["workflow-id"]
    _, body, _ = await post(http, f"{sim.url}/api/v2/workflows/workflow-id/execute", {"input": {}, "async": True})
    url = body["data"]["statusUrl"]
    for _ in range(2):
        await get(http, url)
    q = f"?includeOutput=true&selectedOutputs=agent.content,{wf.block_id}.content"
    data = (await get(http, url + q))[1]["data"]
    assert list(data["blockOutputs"]) == [f"{wf.block_id}.content"]


async def test_v2_unknown_run_is_a_v2_404(sim, http) -> None:
    status, body, _ = await get(http, f"{sim.url}/api/v2/workflows/workflow-id/runs/nope")
    assert status == 404
    assert body["error"]["code"] == "NOT_FOUND"


async def test_v2_disabled_answers_the_exact_flag_off_404(sim, http) -> None:
    sim.v2_enabled = False
    status, body, _ = await post(http, f"{sim.url}/api/v2/workflows/workflow-id/execute", {"input": {}})
    assert (status, body) == (404, {"error": {"code": "NOT_FOUND", "message": "Not found"}})


async def test_v2_401_shape_and_www_authenticate(sim, http) -> None:
    async with http.post(f"{sim.url}/api/v2/workflows/workflow-id/execute", json={}) as resp:
        assert resp.status == 401
        assert await resp.json() == {"error": {"code": "UNAUTHORIZED", "message": "API key required"}}
        assert resp.headers["WWW-Authenticate"].startswith("SimApiKey")


async def test_v2_reused_run_id_conflicts(sim, http) -> None:
    url = f"{sim.url}/api/v2/workflows/workflow-id/execute"
    assert (await post(http, url, {}, **{"X-Run-Id": "r-1"}))[0] == 200
    status, body, _ = await post(http, url, {}, **{"X-Run-Id": "r-1"})
    assert status == 409
    assert body["error"]["details"] == {"code": "RUN_ID_CONFLICT"}


async def test_v2_enforced_bucket_answers_429_with_retry_after(sim, http) -> None:
    sim.reset_rate_limit(1)
    sim.enforce_rate_limit = True
    url = f"{sim.url}/api/v2/workflows/workflow-id/execute"
    assert (await post(http, url, {}))[0] == 200
    status, body, headers = await post(http, url, {})
    assert status == 429
    assert body["error"]["code"] == "RATE_LIMITED"
    assert headers["Retry-After"] == "1"
    assert headers["X-RateLimit-Remaining"] == "0"


# -- fault builders --------------------------------------------------------------------------------
async def test_rate_limited_fault_v2_with_and_without_retry_after(sim, http) -> None:
    url = f"{sim.url}/api/v2/workflows/workflow-id/execute"
    sim.inject(sim.rate_limited_fault(retry_after=2), path="/api/v2/workflows/workflow-id/execute")
    sim.inject(sim.rate_limited_fault(retry_after=None), path="/api/v2/workflows/workflow-id/execute")
    s1, b1, h1 = await post(http, url, {})
    s2, _, h2 = await post(http, url, {})
    assert (s1, h1["Retry-After"], b1["error"]["code"]) == (429, "2", "RATE_LIMITED")
    assert "X-RateLimit-Reset" in h1
    assert (s2, "Retry-After" in h2) == (429, False)


async def test_v1_faults_have_flat_bodies(sim, http) -> None:
    path = "/api/workflows/workflow-id/execute"
    sim.inject(sim.rate_limited_fault(generation="v1", retry_after=None), path=path)
    sim.inject(sim.admission_gate_fault(), path=path)
    sim.inject(sim.enqueue_ambiguous_fault(), path=path)
    sim.inject(sim.unavailable_fault(generation="v1", retry_after=None), path=path)
    s, b, h = await post(http, sim.url + path, {})
    assert (s, b, "Retry-After" in h) == (
        429,
        {"error": "Rate limit exceeded. Please try again later."},
        False,
    )
    s, b, h = await post(http, sim.url + path, {})
    assert (s, b["code"], h["Retry-After"]) == (429, "ADMISSION_GATE_CAPACITY", "5")
    s, b, h = await post(http, sim.url + path, {})
    assert (s, b["code"], h["X-Execution-Id"]) == (503, "ASYNC_ENQUEUE_AMBIGUOUS", b["executionId"])
    assert "Retry-After" not in h
    s, b, h = await post(http, sim.url + path, {})
    assert (s, "code" in b, "Retry-After" in h) == (503, False, False)


async def test_error_fault_in_both_shapes(sim, http) -> None:
    path = "/api/users/me/usage-limits"
    sim.inject(sim.error_fault(500, "Server error", generation="v2"), path=path)
    sim.inject(sim.error_fault(404, "Job not found", code="JOB_NOT_FOUND"), path=path)
    assert (await get(http, sim.url + path))[:2] == (
        500,
        {"error": {"code": "INTERNAL_ERROR", "message": "Server error"}},
    )
    assert (await get(http, sim.url + path))[:2] == (404, {"error": "Job not found", "code": "JOB_NOT_FOUND"})


# -- SSE -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("generation", ["v1", "v2"])
async def test_sse_grammar_answers_then_final_then_quoted_done(sim, http, generation) -> None:
    prefix = "/api/v2" if generation == "v2" else "/api"
    body: dict[str, Any] = {"stream": True, "input": {"m": 1}} if generation == "v2" else {"stream": True, "m": 1}
    raw = await sse_body(http, f"{sim.url}{prefix}/workflows/workflow-id/execute", body)
    data = frames(raw)
    assert data[-1] == '"[DONE]"'
    parsed = [json.loads(d) for d in data[:-1]]
    wf = sim.workflows["workflow-id"]
    assert parsed[:-1] == [{"blockId": wf.block_id, "chunk": c} for c in wf.chunks]
    assert parsed[-1] == {
        "event": "final",
        "data": {"success": True, "output": {"content": "Hello, world", "input": {"m": 1}}},
    }


async def test_sse_headers(sim, http) -> None:
    async with http.post(f"{sim.url}/api/workflows/workflow-id/execute", json={"stream": True}, headers=KEY) as resp:
        assert resp.headers["Cache-Control"] == "no-cache"
        assert resp.headers["X-Accel-Buffering"] == "no"
        assert "X-Sim-Stream-Protocol" not in resp.headers
        await resp.read()


async def test_x_stream_response_header_streams_too(sim, http) -> None:
    raw = await sse_body(http, f"{sim.url}/api/workflows/workflow-id/execute", {}, **{"X-Stream-Response": "true"})
    assert frames(raw)[-1] == '"[DONE]"'


@pytest.mark.parametrize(("style", "tail"), [("bare", ["[DONE]"]), ("event", ["[DONE]"])])
async def test_sse_alternative_done_markers(sim, http, style, tail) -> None:
    sim.done_style = style
    data = frames(await sse_body(http, f"{sim.url}/api/workflows/workflow-id/execute", {"stream": True}))
    assert data[-1:] == tail
    if style == "event":
        assert json.loads(data[-2])["event"] == "done"


async def test_sse_protocol_events_need_the_header(sim, http) -> None:
    sim.add_workflow(FakeWorkflow(id="agent", thinking=["hmm"], tool_calls=[FakeToolCall(id="t1", name="search")]))
    url = f"{sim.url}/api/workflows/agent/execute"
    body = {"stream": True, "includeThinking": True, "includeToolCalls": True}
    plain = [json.loads(d) for d in frames(await sse_body(http, url, body))[:-1]]
    assert all("event" not in f for f in plain[:-1])
    rich = [
        json.loads(d)
        for d in frames(await sse_body(http, url, body, **{"X-Sim-Stream-Protocol": "agent-events-v1"}))[:-1]
    ]
    events = [f.get("event") for f in rich]
    assert events[:4] == ["thinking", "tool", "tool", "chunk_reset"]
    assert [f.get("phase") for f in rich[1:3]] == ["start", "end"]


async def test_sse_stream_error_is_not_terminal_and_error_is(sim, http) -> None:
    sim.add_workflow(FakeWorkflow(id="flaky", stream_error_after=1))
    sim.add_workflow(FakeWorkflow(id="dead", abort_stream="Execution timed out"))
    flaky = [
        json.loads(d)
        for d in frames(await sse_body(http, f"{sim.url}/api/workflows/flaky/execute", {"stream": True}))[:-1]
    ]
    assert [f.get("event") for f in flaky] == [None, "stream_error", None, "final"]
    dead = frames(await sse_body(http, f"{sim.url}/api/workflows/dead/execute", {"stream": True}))
    assert json.loads(dead[-2]) == {
        "blockId": sim.workflows["dead"].block_id,
        "event": "error",
        "error": "Execution timed out",
    }
    assert dead[-1] == '"[DONE]"'


async def test_sse_failed_run_ends_in_final_with_success_false(sim, http) -> None:
    sim.add_workflow(FakeWorkflow(id="bad", error="boom"))
    data = frames(await sse_body(http, f"{sim.url}/api/workflows/bad/execute", {"stream": True}))
    assert json.loads(data[-2]) == {
        "event": "final",
        "data": {"success": False, "output": {}, "error": "boom"},
    }


async def test_slow_stream_delivers_the_first_frame_before_the_run_ends(sim, http) -> None:
    sim.add_workflow(FakeWorkflow(id="slow", chunks=["a", "b", "c", "d"], chunk_delay=0.25))
    start = time.monotonic()
    async with http.post(f"{sim.url}/api/workflows/slow/execute", json={"stream": True}, headers=KEY) as resp:
        first = await resp.content.readuntil(b"\n\n")
        t_first = time.monotonic() - start
        await resp.read()
        t_all = time.monotonic() - start
    assert json.loads(first[len(b"data: ") :])["chunk"] == "a"
    assert t_all - t_first >= 0.7  # the first frame came long before the last
    assert t_all >= 1.0


async def test_stream_reset_mid_way_drops_the_connection(sim, http) -> None:
    sim.add_workflow(FakeWorkflow(id="cut", chunks=["a", "b", "c"], reset_after=1))
    async with http.post(f"{sim.url}/api/workflows/cut/execute", json={"stream": True}, headers=KEY) as resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


async def test_open_streams_returns_to_zero_when_a_client_leaves_early(sim, http) -> None:
    sim.add_workflow(FakeWorkflow(id="long", chunks=["x"] * 50, chunk_delay=0.02))
    async with http.post(f"{sim.url}/api/workflows/long/execute", json={"stream": True}, headers=KEY) as resp:
        await resp.content.readuntil(b"\n\n")
        assert sim.open_streams == 1
        resp.close()
    for _ in range(100):
        if sim.open_streams == 0:
            break
        await asyncio.sleep(0.02)
    assert sim.open_streams == 0
    assert sim.streams_completed == 0


async def test_base_class_faults_still_apply(sim, http) -> None:
    sim.inject(Fault.reset(after_body=True), path="/api/workflows/workflow-id/execute")
    with pytest.raises(aiohttp.ClientError):
        await post(http, f"{sim.url}/api/workflows/workflow-id/execute", {"a": 1})
    assert len(sim.requests_to("/api/workflows/workflow-id/execute")) == 1


def test_fake_server_runs_in_a_thread_for_blocking_clients() -> None:
    import requests

    with FakeSimServer().in_thread() as srv:
        resp = requests.get(f"{srv.url}/api/workflows/workflow-id/status", headers=KEY, timeout=5)
    assert resp.json()["isDeployed"] is True
