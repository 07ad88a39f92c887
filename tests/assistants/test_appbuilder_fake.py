"""The AppBuilder fake speaks the contract: raw HTTP against it, no client of ours involved."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from aioagents.testing._appbuilder import FakeAppBuilderServer, RunScript, ToolCallScript

TOKEN = "fake-appbuilder-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Appbuilder-Authorization": f"Bearer {TOKEN}"}
WEATHER = ToolCallScript(name="get_cur_whether", arguments={"location": "北京", "unit": "摄氏度"})


@pytest.fixture
async def srv() -> AsyncIterator[FakeAppBuilderServer]:
    async with FakeAppBuilderServer() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession,
    srv: FakeAppBuilderServer,
    path: str,
    body: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with http.post(srv.url + path, json=body, headers=AUTH if headers is None else headers) as resp:
        return resp.status, await resp.json()


async def sse(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A minimal SSE reader for checking the fake's framing (the client uses the core decoder)."""
    event, data = "message", ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            yield event, json.loads(data)
            event, data = "message", ""
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]


async def setup_thread(
    http: aiohttp.ClientSession, srv: FakeAppBuilderServer, *, tools: bool = False
) -> tuple[str, str]:
    tool = {"type": "function", "function": {"name": "get_cur_whether", "description": "天气", "parameters": {}}}
    _, asst = await post(
        http, srv, "/v2/assistants", {"name": "a", "instructions": "我是秦始皇", "tools": [tool] if tools else []}
    )
    _, thread = await post(http, srv, "/v2/threads", {"messages": [{"role": "user", "content": "hello world"}]})
    return asst["id"], thread["id"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}", "X-Appbuilder-Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
    ],
)
async def test_bad_or_missing_token_is_401(
    srv: FakeAppBuilderServer, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    status, body = await post(http, srv, "/v2/threads", {}, headers=headers)
    assert status == 401
    assert body["error"]["type"] == "authentication_error"


async def test_either_auth_header_alone_is_accepted(srv: FakeAppBuilderServer, http: aiohttp.ClientSession) -> None:
    for name in ("Authorization", "X-Appbuilder-Authorization"):
        status, body = await post(http, srv, "/v2/threads", {}, headers={name: f"Bearer {TOKEN}"})
        assert status == 200
        assert body["id"].startswith("thread_")


async def test_only_post_is_routed(srv: FakeAppBuilderServer, http: aiohttp.ClientSession) -> None:
    async with http.get(srv.url + "/v2/threads/query", headers=AUTH) as resp:
        assert resp.status == 405


async def test_request_id_is_echoed(srv: FakeAppBuilderServer, http: aiohttp.ClientSession) -> None:
    headers = {**AUTH, "X-Appbuilder-Request-Id": "rid-123"}
    async with http.post(srv.url + "/v2/threads", json={}, headers=headers) as resp:
        assert resp.headers["X-Appbuilder-Request-Id"] == "rid-123"


async def test_missing_object_is_200_with_error_body(srv: FakeAppBuilderServer, http: aiohttp.ClientSession) -> None:
    status, body = await post(http, srv, "/v2/threads/query", {"thread_id": "thread_nope"})
    assert status == 200
    assert body["error"]["param"] == "thread_id"
    assert "thread_nope" in body["error"]["message"]


async def test_malformed_request_is_400(srv: FakeAppBuilderServer, http: aiohttp.ClientSession) -> None:
    status, body = await post(http, srv, "/v2/assistants", {"name": "bad@name"})
    assert status == 400
    assert body["error"]["param"] == "name"


async def test_list_pages_with_cursors(srv: FakeAppBuilderServer, http: aiohttp.ClientSession) -> None:
    ids = [(await post(http, srv, "/v2/assistants", {"name": f"a{i}"}))[1]["id"] for i in range(5)]
    _, first = await post(http, srv, "/v2/assistants/list", {"limit": 2, "order": "asc"})
    assert [a["id"] for a in first["data"]] == ids[:2]
    assert first["has_more"] is True
    assert first["last_id"] == ids[1]
    _, second = await post(http, srv, "/v2/assistants/list", {"limit": 2, "order": "asc", "after": ids[1]})
    assert [a["id"] for a in second["data"]] == ids[2:4]
    _, last = await post(http, srv, "/v2/assistants/list", {"limit": 2, "order": "asc", "after": ids[3]})
    assert [a["id"] for a in last["data"]] == ids[4:]
    assert last["has_more"] is False
    _, desc = await post(http, srv, "/v2/assistants/list", {"limit": 20, "order": "desc", "before": ids[1]})
    assert [a["id"] for a in desc["data"]] == list(reversed(ids[2:]))


async def test_plain_run_completes_with_final_answer(srv: FakeAppBuilderServer, http: aiohttp.ClientSession) -> None:
    asst, thread = await setup_thread(http, srv)
    _, run = await post(http, srv, "/v2/threads/runs", {"thread_id": thread, "assistant_id": asst})
    assert run["status"] == "completed"
    assert run["object"] == "run.result"
    assert run["final_answer"]["message"]["content"][0]["text"]["value"] == "我是秦始皇 | 你说: hello world"
    assert run["completed_at"] > 0
    _, steps = await post(http, srv, "/v2/threads/runs/steps/list", {"thread_id": thread, "run_id": run["id"]})
    assert [s["type"] for s in steps["data"]] == ["message_creation"]
    assert steps["data"][0]["step_details"]["message_creation"]["message_id"].startswith("msg_")


async def test_non_streaming_tool_call_resumes_with_tool_output(
    srv: FakeAppBuilderServer, http: aiohttp.ClientSession
) -> None:
    srv.script(RunScript(tool_calls=[WEATHER]))
    asst, thread = await setup_thread(http, srv, tools=True)
    _, first = await post(http, srv, "/v2/threads/runs", {"thread_id": thread, "assistant_id": asst})
    assert first["status"] == "requires_action"
    (call,) = first["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert call["id"] == f"call-{thread}-{first['id']}-step-1"
    assert json.loads(call["function"]["arguments"]) == {"location": "北京", "unit": "摄氏度"}
    resume = {"tool_call_id": call["id"], "output": "晴", "run_id": first["id"]}
    _, second = await post(
        http, srv, "/v2/threads/runs", {"thread_id": thread, "assistant_id": asst, "tool_output": resume}
    )
    assert second["id"] == first["id"]
    assert second["status"] == "completed"
    assert second["required_action"] is None
    assert second["final_answer"]["message"]["content"][0]["text"]["value"].endswith("get_cur_whether 返回: 晴")


async def test_stream_plain_run_event_sequence(srv: FakeAppBuilderServer, http: aiohttp.ClientSession) -> None:
    asst, thread = await setup_thread(http, srv)
    body = {"thread_id": thread, "assistant_id": asst, "stream": True}
    async with http.post(srv.url + "/v2/threads/runs", json=body, headers=AUTH) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = [e async for e in sse(resp)]
    kinds = [(name, payload.get("event_type")) for name, payload in events]
    assert kinds[0] == ("ping", None)
    assert kinds[1] == ("status", "run_begin")
    assert ("status", "message_creation") in kinds
    assert kinds[-1] == ("status", "run_end")
    text = "".join(p["content"][0]["text"]["value"] for n, p in events if n == "message")
    assert text == "我是秦始皇 | 你说: hello world"
    send_ids = [p["send_id"] for n, p in events if n != "ping"]
    assert send_ids == sorted(set(send_ids))
    assert events[-1][1]["status"] == "completed"


async def test_stream_tool_calls_wait_for_submit(srv: FakeAppBuilderServer, http: aiohttp.ClientSession) -> None:
    srv.script(RunScript(tool_calls=[WEATHER]))
    asst, thread = await setup_thread(http, srv, tools=True)
    body = {"thread_id": thread, "assistant_id": asst, "stream": True}
    seen: list[str] = []
    run_id = ""
    async with http.post(srv.url + "/v2/threads/runs", json=body, headers=AUTH) as resp:
        async for name, payload in sse(resp):
            seen.append(payload.get("event_type") or name)
            if payload.get("event_type") == "run_begin":
                run_id = payload["details"]["run_object"]["id"]
            if payload.get("event_type") == "tool_calls":
                assert payload["status"] == "requires_action"
                call = payload["details"]["tool_calls"][0]
                outputs = [{"tool_call_id": call["id"], "output": "晴", "run_id": ""}]
                status, ack = await post(
                    http,
                    srv,
                    "/v2/threads/runs/submit_tool_outputs",
                    {"thread_id": thread, "run_id": run_id, "tool_outputs": outputs},
                )
                assert status == 200
                assert ack["id"] == run_id
            last = payload
    assert seen.index("tool_calls") < seen.index("tool_submitted_output") < seen.index("tool_step_end")
    assert last["event_type"] == "run_end"
    assert last["status"] == "completed"


async def test_stream_cancel_ends_cancelled(srv: FakeAppBuilderServer, http: aiohttp.ClientSession) -> None:
    srv.script(RunScript(hang=True))
    asst, thread = await setup_thread(http, srv)
    body = {"thread_id": thread, "assistant_id": asst, "stream": True}
    seen: list[str] = []
    async with http.post(srv.url + "/v2/threads/runs", json=body, headers=AUTH) as resp:
        async for name, payload in sse(resp):
            seen.append(payload.get("event_type") or name)
            if payload.get("event_type") == "run_begin":
                run_id = payload["details"]["run_object"]["id"]
            if name == "message":
                _, ack = await post(
                    http, srv, "/v2/threads/runs/cancel", {"thread_id": thread, "run_id": run_id, "sync": False}
                )
                assert ack["status"] == "cancelling"
            last = payload
    assert seen[-2:] == ["run_cancelling", "run_end"]
    assert last["status"] == "cancelled"
    assert last["details"]["run_object"]["cancelled_at"] > 0
    assert srv.run_status(run_id) == "cancelled"


async def test_failing_script_reports_error_info(srv: FakeAppBuilderServer, http: aiohttp.ClientSession) -> None:
    srv.script(RunScript(fail="model overloaded"))
    asst, thread = await setup_thread(http, srv)
    body = {"thread_id": thread, "assistant_id": asst, "stream": True}
    async with http.post(srv.url + "/v2/threads/runs", json=body, headers=AUTH) as resp:
        events = [p async for _, p in sse(resp)]
    assert events[-1]["status"] == "failed"
    assert events[-1]["details"]["error_info"] == {"type": "server_error", "message": "model overloaded"}


async def test_upload_download_and_content(srv: FakeAppBuilderServer, http: aiohttp.ClientSession) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"\x00binary\xff" * 1000, filename="pic.png", content_type="image/png")
    async with http.post(srv.url + "/v2/storage/files?purpose=assistant", data=form, headers=AUTH) as resp:
        file = await resp.json()
    assert file["filename"] == "pic.png"
    assert file["bytes"] == 8000
    assert file["create_at"] > 0
    async with http.post(srv.url + "/v2/storage/files/download", json={"file_id": file["id"]}, headers=AUTH) as r:
        assert r.headers["Content-Disposition"] == "attachment; filename=pic.png"
        assert await r.read() == b"\x00binary\xff" * 1000
    async with http.post(srv.url + "/v2/storage/files/content", json={"file_id": file["id"]}, headers=AUTH) as r:
        assert r.content_type == "image/png"
    _, listed = await post(http, srv, "/v2/storage/files/list", {})
    assert listed["data"][0]["censored"] == 1
    assert listed["data"][0]["file_type"] == "png"


async def test_upload_requires_purpose(srv: FakeAppBuilderServer, http: aiohttp.ClientSession) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"x", filename="a.txt")
    async with http.post(srv.url + "/v2/storage/files", data=form, headers=AUTH) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["param"] == "purpose"


async def test_legacy_shapes_are_switchable(http: aiohttp.ClientSession) -> None:
    async with FakeAppBuilderServer(final_answer_content_as_object=True, step_details_key="step_datail") as srv:
        asst, thread = await setup_thread(http, srv)
        _, run = await post(http, srv, "/v2/threads/runs", {"thread_id": thread, "assistant_id": asst})
        assert run["final_answer"]["message"]["content"]["type"] == "text"
        _, steps = await post(http, srv, "/v2/threads/runs/steps/list", {"thread_id": thread, "run_id": run["id"]})
        assert "step_datail" in steps["data"][0]
        assert "step_details" not in steps["data"][0]


async def test_run_rejects_unknown_fields(srv: FakeAppBuilderServer, http: aiohttp.ClientSession) -> None:
    asst, thread = await setup_thread(http, srv)
    status, body = await post(http, srv, "/v2/threads/runs", {"thread_id": thread, "assistant_id": asst, "x": 1})
    assert status == 400
    assert body["error"]["param"] == "x"


async def test_cancel_of_non_streaming_requires_action_run(
    srv: FakeAppBuilderServer, http: aiohttp.ClientSession
) -> None:
    srv.script(RunScript(tool_calls=[WEATHER]))
    asst, thread = await setup_thread(http, srv, tools=True)
    _, run = await post(http, srv, "/v2/threads/runs", {"thread_id": thread, "assistant_id": asst})
    _, cancelled = await post(http, srv, "/v2/threads/runs/cancel", {"thread_id": thread, "run_id": run["id"]})
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelled_at"] > 0
    status, again = await post(http, srv, "/v2/threads/runs/cancel", {"thread_id": thread, "run_id": run["id"]})
    assert status == 400
    assert "already ended" in again["error"]["message"]
