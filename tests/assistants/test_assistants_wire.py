"""Wire details: tolerant decoding of the service's shape changes, the SSE quirks, and our request bodies against
what the official SDK sends (recorded in sdk_requests.json by record_sdk_requests.py)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from aioagents._exceptions import ResponseValidationError
from aioagents._streaming import ServerSentEvent
from aioagents.assistants import (
    AssistantsClient,
    AssistantServerError,
    FinalAnswer,
    MessageEvent,
    Run,
    RunStep,
    StatusEvent,
    Tool,
    ToolCallsEvent,
    ToolOutput,
    UnknownEvent,
)
from aioagents.assistants.client import _AppBuilderSSE
from aioagents.assistants.events import parse_event
from aioagents.assistants.models import File, structure
from aioagents.testing import Fault
from aioagents.testing._appbuilder import FakeAppBuilderServer, RunScript, ToolCallScript

TOKEN = "fake-appbuilder-token"
HERE = Path(__file__).parent
SDK_REQUESTS: list[dict[str, Any]] = json.loads((HERE / "sdk_requests.json").read_text(encoding="utf-8"))


# -- tolerant decoding, end to end with the fake's legacy switches ---------------------------------------------------
async def test_final_answer_as_one_object_and_step_datail() -> None:
    async with (
        FakeAppBuilderServer(token=TOKEN, final_answer_content_as_object=True, step_details_key="step_datail") as srv,
        AssistantsClient(token=TOKEN, base_url=srv.url) as client,
    ):
        assistant = await client.assistants.create(name="a", instructions="hi")
        thread = await client.threads.create(messages=["q"])
        run = await client.threads.runs.run(thread_id=thread.id, assistant_id=assistant.id)
        assert run.final_answer is not None
        assert run.final_answer.text == "hi | 你说: q"
        steps = await client.threads.runs.steps.list(thread.id, run.id)
        details = steps.data[0].step_details
        assert details is not None
        assert details.message_creation is not None
        assert details.message_creation.message_id.startswith("msg_")


async def test_tool_step_action_info_is_camel_case(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    srv.script(RunScript(tool_calls=[ToolCallScript(name="f", arguments={"x": 1})]))
    assistant = await client.assistants.create(name="a", tools=[Tool.from_function("f")])
    thread = await client.threads.create(messages=["q"])
    run = await client.threads.runs.run(thread_id=thread.id, assistant_id=assistant.id)
    await client.threads.runs.run(
        thread_id=thread.id,
        assistant_id=assistant.id,
        tool_output=ToolOutput(tool_call_id=run.tool_calls[0].id, output="42", run_id=run.id),
    )
    step = await client.threads.runs.steps.query(thread.id, run.id, "step-1")
    assert step.step_details is not None
    assert step.step_details.action_info is not None
    assert step.step_details.action_info.tool_name == "f"
    assert step.step_details.tool_info is not None
    assert step.step_details.tool_info[0].output == "42"


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (0, None),
        (None, None),
        (1713868218144, datetime(2024, 4, 23, 10, 30, 18, 144000, tzinfo=timezone.utc)),
    ],
)
def test_timestamps_are_milliseconds_with_zero_unset(wire: Any, expected: datetime | None) -> None:
    assert structure({"id": "run_1", "created_at": wire}, Run).created_at == expected


@pytest.mark.parametrize(
    ("wire", "message"),
    [("", None), (None, None), ("boom", "boom"), ({"type": "server_error", "message": "x"}, "x")],
)
def test_step_last_error_forms(wire: Any, message: str | None) -> None:
    step = structure({"id": "step-1", "last_error": wire}, RunStep)
    assert (step.last_error.message if step.last_error else None) == message


@pytest.mark.parametrize("key", ["create_at", "created_at"])
def test_file_creation_time_spellings(key: str) -> None:
    assert structure({"id": "file-1", key: 1000}, File).created_at == datetime(1970, 1, 1, 0, 0, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "content",
    [
        {"type": "text", "text": {"value": "hi", "annotations": None}},
        [{"type": "text", "text": {"value": "hi", "annotations": None}}],
    ],
)
def test_final_answer_content_object_or_list(content: Any) -> None:
    answer = structure({"type": "message", "message": {"message_id": "chatmsg_1", "content": content}}, FinalAnswer)
    assert answer.text == "hi"


def test_null_metadata_in_lists_is_empty() -> None:
    from aioagents.assistants import Assistant

    assert structure({"id": "asst_1", "metadata": None, "tools": None}, Assistant).metadata == {}


def test_drift_is_a_validation_error_in_strict_mode() -> None:
    with pytest.raises(ResponseValidationError):
        structure({"id": "run_1", "brand_new_field": 1}, Run)


# -- SSE quirks --------------------------------------------------------------------------------------------------
def frames(raw: bytes) -> list[ServerSentEvent]:
    decoder = _AppBuilderSSE(1 << 20)
    # Byte by byte: the decoder must not depend on how the body is chunked.
    out = [f for i in range(len(raw)) for f in decoder.feed(raw[i : i + 1])]
    return out + decoder.end()


def test_bare_json_error_line_is_an_error() -> None:
    (frame,) = frames(b'{"error": {"code": "QPS", "message": "too many"}}\n\n')
    with pytest.raises(AssistantServerError, match="too many"):
        parse_event(frame)


def test_json_error_body_without_newline_is_dispatched() -> None:
    (frame,) = frames(b'{"error": {"code": "X", "message": "bad thread"}}')
    with pytest.raises(AssistantServerError, match="bad thread"):
        parse_event(frame, request_id="rid-1")


def test_ping_is_skipped_and_unknowns_pass_through() -> None:
    got = [
        parse_event(f)
        for f in frames(
            b"event: ping\ndata: {}\n\n"
            b": a comment\n"
            b'event: status\ndata: {"status":"in_progress","event_type":"new_kind","send_id":3}\n\n'
            b'event: usage\ndata: {"tokens": 5}\n\n'
            b'event: message\ndata: {"is_end":1,"message_id":"m","message_index":"0",\n'
            b'data: "content":[{"type":"text","text":{"value":"hi","annotations":null}}]}\n\n'
        )
    ]
    assert got[0] is None
    assert type(got[1]) is StatusEvent
    assert got[1].event_type == "new_kind"
    assert got[2] == UnknownEvent(event="usage", data={"tokens": 5})
    assert isinstance(got[3], MessageEvent)
    assert got[3].text == "hi"
    assert got[3].is_end is True


def test_broken_json_in_an_event_is_a_validation_error() -> None:
    (frame,) = frames(b"event: status\ndata: {not json\n\n")
    with pytest.raises(ResponseValidationError):
        parse_event(frame)


async def test_bare_json_error_mid_stream_raises(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    srv.inject(
        Fault.raw(
            b'event: status\ndata: {"status":"queued","event_type":"run_begin","send_id":1}\n\n'
            b'{"error": {"code": "QPS", "message": "quota exceeded"}}\n\n',
            content_type="text/event-stream",
        ),
        path="/v2/threads/runs",
    )
    seen: list[Any] = []

    async def drain() -> None:
        async for event in client.threads.runs.stream(thread_id="t", assistant_id="a"):
            seen.append(event)

    with pytest.raises(AssistantServerError, match="quota exceeded"):
        await drain()
    assert len(seen) == 1


# -- request bodies against the official SDK's -------------------------------------------------------------------
def sdk_body_keys(path: str) -> set[frozenset[str]]:
    return {frozenset(r["body"]) for r in SDK_REQUESTS if r["path"] == path and isinstance(r["body"], dict)}


# Deliberate differences from the SDK: a message update leaves out the parts not being changed (the SDK sends
# `file_ids: []`, which drops the message's files).
ALLOWED = {"/v2/threads/messages/update": {frozenset({"thread_id", "message_id", "content"})}}


async def test_bodies_have_the_sdk_keys(srv: FakeAppBuilderServer, client: AssistantsClient, tmp_path: Path) -> None:
    srv.script(RunScript(), RunScript(tool_calls=[ToolCallScript(name="get_cur_whether")]), RunScript(hang=True))
    assistant = await client.assistants.create(name="test_assistant", instructions="i")
    thread = await client.threads.create()
    message = await client.threads.messages.create(thread.id, "hello world")
    run = await client.threads.runs.run(thread_id=thread.id, assistant_id=assistant.id)
    await client.threads.runs.list(thread.id, limit=5)
    await client.threads.runs.query(thread.id, run.id)
    steps = await client.threads.runs.steps.list(thread.id, run.id)
    await client.threads.runs.steps.query(thread.id, run.id, steps.data[0].id)
    run_id = ""
    await client.threads.messages.create(thread.id, "weather?")
    async for event in client.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id):
        run_id = run_id or event.run_id or "" if isinstance(event, StatusEvent) else run_id
        if isinstance(event, ToolCallsEvent):
            outputs = [ToolOutput(tool_call_id=event.tool_calls[0].id, output="o")]
            await client.threads.runs.submit_tool_outputs(thread.id, run_id, outputs)
    run_id = ""
    await client.threads.messages.create(thread.id, "long answer please")
    async for event in client.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id):
        run_id = run_id or event.run_id or "" if isinstance(event, StatusEvent) else run_id
        if isinstance(event, MessageEvent) and event.message_index == "0":
            await client.threads.runs.cancel(thread.id, run_id)
    file = await client.files.create(b"hello file", filename="hello.txt")
    await client.files.list()
    await client.files.query(file.id)
    await client.files.content(file.id)
    await client.files.download(file.id, tmp_path)
    await client.assistants.mount_files(assistant.id, file.id)
    await client.assistants.mounted_files_list(assistant.id)
    await client.assistants.unmount_files(assistant.id, file.id)
    await client.assistants.update(assistant.id, name="renamed")
    await client.assistants.list(limit=5)
    await client.assistants.query(assistant.id)
    await client.threads.query(thread.id)
    await client.threads.update(thread.id, metadata={"k": "v"})
    await client.threads.messages.files(thread.id, message.id)
    await client.threads.messages.update(thread.id, message.id, content="edited")
    await client.threads.messages.list(thread.id, limit=3)
    await client.threads.messages.query(thread.id, message.id)
    await client.files.delete(file.id)
    await client.threads.delete(thread.id)
    await client.assistants.delete(assistant.id)

    ours = {r.path for r in srv.requests}
    assert ours == {r["path"] for r in SDK_REQUESTS}
    for req in srv.requests:
        if req.path == "/v2/storage/files":
            continue
        keys = frozenset(req.json())
        assert keys in sdk_body_keys(req.path) | ALLOWED.get(req.path, set()), req.path


def test_sdk_fixture_covers_every_contract_path() -> None:
    contract = {
        "/v2/assistants", "/v2/assistants/update", "/v2/assistants/list", "/v2/assistants/query",
        "/v2/assistants/delete", "/v2/assistants/files", "/v2/assistants/files/list", "/v2/assistants/files/delete",
        "/v2/storage/files", "/v2/storage/files/list", "/v2/storage/files/query", "/v2/storage/files/delete",
        "/v2/storage/files/download", "/v2/storage/files/content", "/v2/threads", "/v2/threads/query",
        "/v2/threads/update", "/v2/threads/delete", "/v2/threads/messages", "/v2/threads/messages/update",
        "/v2/threads/messages/list", "/v2/threads/messages/query", "/v2/threads/messages/files/list",
        "/v2/threads/runs", "/v2/threads/runs/submit_tool_outputs", "/v2/threads/runs/cancel",
        "/v2/threads/runs/list", "/v2/threads/runs/query", "/v2/threads/runs/steps/list",
        "/v2/threads/runs/steps/query",
    }  # fmt: skip
    assert {r["path"] for r in SDK_REQUESTS} == contract


def test_run_body_equals_the_sdk_run_body() -> None:
    from aioagents.assistants.client import _run_body

    body, options = _run_body({"assistant_id": "<asst>", "thread_id": "<thread>"}, stream=False)
    assert options == {}
    sdk = next(r["body"] for r in SDK_REQUESTS if r["path"] == "/v2/threads/runs")
    assert body == sdk


_PRETTY_ERROR = b"""{
  "error": {
    "code": "ThreadNotFound",
    "message": "thread thread_x not found",
    "type": "invalid_request_error"
  }
}
"""


def test_pretty_printed_json_error_body_is_the_services_error() -> None:
    (frame,) = frames(_PRETTY_ERROR)
    with pytest.raises(AssistantServerError, match="thread_x not found"):
        parse_event(frame)


def test_pretty_printed_json_body_after_blank_lines_is_one_event() -> None:
    (frame,) = frames(b"\r\n\n" + _PRETTY_ERROR)
    with pytest.raises(AssistantServerError, match="thread_x not found"):
        parse_event(frame)


async def test_streaming_run_answered_with_a_pretty_printed_error_raises_it(
    srv: FakeAppBuilderServer, client: AssistantsClient
) -> None:
    srv.inject(Fault.raw(_PRETTY_ERROR, content_type="application/json"), path="/v2/threads/runs")
    with pytest.raises(AssistantServerError, match="thread_x not found") as caught:
        await client.threads.runs.stream(thread_id="t", assistant_id="a").collect()
    assert caught.value.code == "ThreadNotFound"
