"""The async AppBuilder assistants client against the fake, over loopback: every call of the contract."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from aioagents import RequestOptions
from aioagents import _exceptions as exc
from aioagents.assistants import (
    Assistants,
    AssistantsClient,
    AssistantServerError,
    AssistantValidationError,
    Files,
    MessageCreationEvent,
    MessageEvent,
    Messages,
    ModelParameters,
    RunBegin,
    RunCancelling,
    RunEnd,
    Runs,
    SamplingParameters,
    StatusEvent,
    Steps,
    ThreadMessage,
    Threads,
    Tool,
    ToolCallError,
    ToolCallsEvent,
    ToolOutput,
    ToolStepBegin,
    ToolStepEnd,
    ToolSubmittedOutput,
    models,
)
from aioagents.testing import Fault
from aioagents.testing._appbuilder import FakeAppBuilderServer, RunScript, ToolCallScript

TOKEN = "fake-appbuilder-token"

WEATHER_ARGS = {"location": "北京", "unit": "摄氏度"}
WEATHER = ToolCallScript(name="get_cur_whether", arguments=WEATHER_ARGS)
WEATHER_TOOL = Tool.from_function(
    "get_cur_whether",
    "查询天气",
    {"type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string"}}},
)
INSTRUCTIONS = "每句话回复前都加上我是秦始皇"


async def new_thread(client: AssistantsClient, *, tools: bool = False) -> tuple[str, str]:
    assistant = await client.assistants.create(
        name="test_assistant", instructions=INSTRUCTIONS, tools=[WEATHER_TOOL] if tools else []
    )
    thread = await client.threads.create()
    await client.threads.messages.create(thread.id, "hello world")
    return assistant.id, thread.id


# -- auth and config ------------------------------------------------------------------------------------------------
async def test_token_is_sent_as_bearer_in_both_headers(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    await client.threads.create()
    (req,) = srv.requests_to("/v2/threads")
    assert req.header("Authorization") == f"Bearer {TOKEN}"
    assert req.header("X-Appbuilder-Authorization") == f"Bearer {TOKEN}"


async def test_bearer_prefix_is_not_doubled(srv: FakeAppBuilderServer) -> None:
    async with AssistantsClient(token=f"Bearer {TOKEN}", base_url=srv.url) as client:
        await client.threads.create()
    assert srv.requests[-1].header("Authorization") == f"Bearer {TOKEN}"


async def test_env_vars_configure_the_client(srv: FakeAppBuilderServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPBUILDER_TOKEN", TOKEN)
    monkeypatch.setenv("GATEWAY_URL", srv.url)
    async with AssistantsClient() as client:
        thread = await client.threads.create()
    assert thread.id.startswith("thread_")


async def test_explicit_arguments_beat_env_vars(srv: FakeAppBuilderServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPBUILDER_TOKEN", "wrong-token")
    monkeypatch.setenv("GATEWAY_URL", "http://127.0.0.1:9")
    async with AssistantsClient(token=TOKEN, base_url=srv.url) as client:
        assert (await client.threads.create()).id.startswith("thread_")


def test_missing_token_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APPBUILDER_TOKEN", raising=False)
    with pytest.raises(exc.InvalidRequestError, match="APPBUILDER_TOKEN"):
        AssistantsClient()


def test_bare_gateway_host_gets_https(monkeypatch: pytest.MonkeyPatch) -> None:
    client = AssistantsClient(token=TOKEN, base_url="gateway.example.com")
    assert client.base_url == "https://gateway.example.com"


async def test_token_never_appears_in_repr_or_errors(srv: FakeAppBuilderServer) -> None:
    async with AssistantsClient(token="wrong-secret-token", base_url=srv.url) as client:
        assert "wrong-secret-token" not in repr(client)
        with pytest.raises(exc.AuthenticationError) as info:
            await client.threads.create()
    assert "wrong-secret-token" not in str(info.value)
    assert "wrong-secret-token" not in repr(info.value)


async def test_each_call_sends_its_own_request_id(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    await client.threads.create()
    await client.threads.create()
    ids = [r.header("X-Appbuilder-Request-Id") for r in srv.requests]
    assert len(set(ids)) == 2
    assert all(r.header("X-Bce-Request-Id") == r.header("X-Appbuilder-Request-Id") for r in srv.requests)


# -- errors ---------------------------------------------------------------------------------------------------------
async def test_200_with_error_body_raises_typed_error(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    with pytest.raises(AssistantServerError) as info:
        await client.threads.query("thread_missing")
    err = info.value
    assert err.status == 200
    assert err.code == "NotFound"
    assert err.param == "thread_id"
    assert err.request_id == srv.requests[-1].header("X-Appbuilder-Request-Id")
    assert err.request_id in str(err)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, exc.BadRequestError),
        (401, exc.AuthenticationError),
        (403, exc.PermissionDeniedError),
        (404, exc.NotFoundError),
        (405, "MethodNotAllowedError"),
        (409, exc.ConflictError),
        (411, "LengthRequiredError"),
        (422, exc.UnprocessableEntityError),
        (424, "FailedDependencyError"),
        (428, "PreconditionRequiredError"),
        (429, exc.RateLimitError),
        (500, exc.InternalServerError),
        (507, "InsufficientStorageError"),
        (418, exc.APIStatusError),
    ],
)
async def test_status_table(
    srv: FakeAppBuilderServer,
    client: AssistantsClient,
    status: int,
    cls: type[Exception] | str,
    instant_retries: None,
) -> None:
    import aioagents.assistants as ab

    expected = getattr(ab, cls) if isinstance(cls, str) else cls
    body = {"error": {"code": "E", "message": f"failed with {status}"}}
    srv.inject(Fault.status_code(status, body), path="/v2/threads", times=5)
    with pytest.raises(exc.APIStatusError) as info:
        await client.threads.create()
    assert type(info.value) is expected
    assert info.value.status == status
    assert info.value.request_id == srv.requests[-1].header("X-Appbuilder-Request-Id")
    assert f"failed with {status}" in str(info.value)


async def test_query_is_retried_after_503(
    srv: FakeAppBuilderServer, client: AssistantsClient, instant_retries: None
) -> None:
    thread = await client.threads.create()
    srv.inject(Fault.status_code(503), path="/v2/threads/query")
    assert (await client.threads.query(thread.id)).id == thread.id
    assert len(srv.requests_to("/v2/threads/query")) == 2


async def test_query_is_retried_after_a_reset(
    srv: FakeAppBuilderServer, client: AssistantsClient, instant_retries: None
) -> None:
    thread = await client.threads.create()
    srv.inject(Fault.reset(after_body=True), path="/v2/threads/messages/list")
    page = await client.threads.messages.list(thread.id)
    assert page.data == []
    assert len(srv.requests_to("/v2/threads/messages/list")) == 2


@pytest.mark.parametrize("status", [500, 502])
async def test_run_is_never_blind_retried(
    srv: FakeAppBuilderServer, client: AssistantsClient, instant_retries: None, status: int
) -> None:
    assistant_id, thread_id = await new_thread(client)
    srv.inject(Fault.status_code(status), path="/v2/threads/runs", times=3)
    with pytest.raises(exc.InternalServerError):
        await client.threads.runs.run(thread_id=thread_id, assistant_id=assistant_id)
    assert len(srv.requests_to("/v2/threads/runs")) == 1


async def test_create_lost_answer_is_not_resent(
    srv: FakeAppBuilderServer, client: AssistantsClient, instant_retries: None
) -> None:
    srv.inject(Fault.reset(after_body=True), path="/v2/assistants")
    with pytest.raises(exc.APIConnectionError):
        await client.assistants.create(name="a")
    assert len(srv.requests_to("/v2/assistants")) == 1


# -- validation before any request ----------------------------------------------------------------------------------
async def test_assistant_validation_names_every_problem(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    with pytest.raises(AssistantValidationError) as info:
        await client.assistants.create(
            name="Abc-_123@",
            description="d" * 513,
            instructions="i" * 4097,
            thought_instructions="t" * 4097,
            chat_instructions="c" * 4097,
            tools=[WEATHER_TOOL] * 11,
            file_ids=["f"] * 11,
            metadata={f"k{i}": "v" for i in range(17)},
        )
    assert len(info.value.errors) == 8
    assert isinstance(info.value, ValueError)
    assert srv.requests == []


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"k" * 65: "v"}, "longer than 64"),
        ({"k": "v" * 513}, "at most 512"),
        ({f"k{i}": "v" for i in range(17)}, "more than 16"),
    ],
)
async def test_thread_metadata_limits(
    srv: FakeAppBuilderServer, client: AssistantsClient, metadata: dict[str, str], problem: str
) -> None:
    with pytest.raises(AssistantValidationError, match=problem):
        await client.threads.update("thread_x", metadata=metadata)
    assert srv.requests == []


@pytest.mark.parametrize(
    "params",
    [
        SamplingParameters(temperature=1.5),
        SamplingParameters(temperature=-0.1),
        SamplingParameters(top_p=1.01),
        SamplingParameters(penalty_score=0.9),
        SamplingParameters(penalty_score=2.1),
    ],
)
async def test_model_parameter_ranges(
    srv: FakeAppBuilderServer, client: AssistantsClient, params: SamplingParameters
) -> None:
    with pytest.raises(AssistantValidationError):
        await client.threads.runs.run(
            thread_id="thread_x", assistant_id="asst_x", model_parameters=ModelParameters(chat_parameters=params)
        )
    assert srv.requests == []


async def test_run_needs_a_thread(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    with pytest.raises(AssistantValidationError, match="thread_id or thread"):
        await client.threads.runs.run(assistant_id="asst_x")
    assert srv.requests == []


async def test_empty_ids_are_rejected(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    with pytest.raises(AssistantValidationError, match="file_id"):
        await client.files.query("")
    assert srv.requests == []


# -- assistants -----------------------------------------------------------------------------------------------------
async def test_assistant_lifecycle(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    created = await client.assistants.create(
        name="天气 助手_1", description="d", instructions="i", tools=[WEATHER_TOOL], metadata={"k": "v"}
    )
    assert created.id.startswith("asst_")
    assert created.tools[0].function is not None
    assert created.tools[0].function.name == "get_cur_whether"
    assert created.created_at is not None
    queried = await client.assistants.query(created.id)
    assert queried == created
    updated = await client.assistants.update(created.id, name="renamed", instructions="new", model="DeepSeek-V3.1")
    assert updated.name == "renamed"
    assert updated.model == "DeepSeek-V3.1"
    assert updated.tools == []
    deleted = await client.assistants.delete(created.id)
    assert deleted.deleted is True
    with pytest.raises(AssistantServerError):
        await client.assistants.query(created.id)


async def test_assistants_list_pages_and_iter_all(client: AssistantsClient) -> None:
    ids = [(await client.assistants.create(name=f"a{i}")).id for i in range(5)]
    page = await client.assistants.list(limit=2, order="asc")
    assert [a.id for a in page.data] == ids[:2]
    assert page.has_more is True
    nxt = await client.assistants.list(limit=2, order="asc", after=page.last_id)
    assert [a.id for a in nxt.data] == ids[2:4]
    everything = [a.id async for a in client.assistants.iter_all(order="asc", page_size=2)]
    assert everything == ids
    newest_first = [a.id async for a in client.assistants.iter_all(page_size=3)]
    assert newest_first == list(reversed(ids))


async def test_mount_list_and_unmount_files(client: AssistantsClient, tmp_path: Path) -> None:
    assistant = await client.assistants.create(name="a")
    path = tmp_path / "doc.txt"
    path.write_text("hello")
    file = await client.files.create(path)
    mounted = await client.assistants.mount_files(assistant.id, file.id)
    assert mounted.id == file.id
    assert mounted.assistant_id == assistant.id
    listing = await client.assistants.mounted_files_list(assistant.id)
    assert [m.id for m in listing.data] == [file.id]
    removed = await client.assistants.unmount_files(assistant.id, file.id)
    assert removed.deleted is True
    assert (await client.assistants.mounted_files_list(assistant.id)).data == []


# -- files ----------------------------------------------------------------------------------------------------------
async def test_upload_is_streamed_multipart(
    srv: FakeAppBuilderServer, client: AssistantsClient, tmp_path: Path
) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, several upload chunks
    path = tmp_path / "图片.png"
    path.write_bytes(payload)
    file = await client.files.create(path)
    assert file.filename == "图片.png"
    assert file.bytes == len(payload)
    assert srv.file_contents[file.id] == payload
    (req,) = srv.requests_to("/v2/storage/files")
    assert req.query == {"purpose": "assistant"}
    assert req.header(
        "Content-Type",
    ).startswith("multipart/form-data; boundary=")  # type: ignore[union-attr]
    # Streamed: sent chunked, with no length known up front.
    assert req.header("Transfer-Encoding") == "chunked"
    assert req.header("Content-Length") is None


async def test_upload_of_bytes_needs_a_filename(client: AssistantsClient) -> None:
    with pytest.raises(AssistantValidationError):
        await client.files.create(b"data")
    file = await client.files.create(b"data", filename='we"ird\r\n.txt')
    # HTML5 form encoding (as browsers and urllib3 do): no quote or line break can break out of the header.
    assert file.filename == "we%22ird%0D%0A.txt"


async def test_upload_of_a_missing_file(srv: FakeAppBuilderServer, client: AssistantsClient, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await client.files.create(tmp_path / "nope.txt")
    assert srv.requests == []


async def test_files_list_query_content_download_delete(client: AssistantsClient, tmp_path: Path) -> None:
    file = await client.files.create(b"col1,col2\n1,2\n", filename="data.csv")
    assert file.created_at is not None
    listing = await client.files.list()
    assert [f.id for f in listing.data] == [file.id]
    queried = await client.files.query(file.id)
    assert queried.censored == 1
    assert queried.file_type == "csv"
    content = await client.files.content(file.id)
    assert content.content == b"col1,col2\n1,2\n"
    assert content.content_type == "text/csv"
    saved = await client.files.download(file.id, tmp_path)
    assert saved == tmp_path / "data.csv"
    assert saved.read_bytes() == b"col1,col2\n1,2\n"
    assert (await client.files.delete(file.id)).deleted is True
    assert (await client.files.list()).data == []


async def test_download_name_cannot_escape_the_directory(
    srv: FakeAppBuilderServer, client: AssistantsClient, tmp_path: Path
) -> None:
    file = await client.files.create(b"x", filename="a.txt")
    srv.files[file.id]["filename"] = "../../escape.txt"
    target = tmp_path / "inner"
    target.mkdir()
    saved = await client.files.download(file.id, target)
    assert saved == target / "escape.txt"
    assert not (tmp_path / "escape.txt").exists()


async def test_download_of_missing_file_raises(client: AssistantsClient, tmp_path: Path) -> None:
    with pytest.raises(AssistantServerError, match="not found"):
        await client.files.download("file-missing", tmp_path)


async def test_download_is_retried(
    srv: FakeAppBuilderServer, client: AssistantsClient, tmp_path: Path, instant_retries: None
) -> None:
    file = await client.files.create(b"abc", filename="a.bin")
    srv.inject(Fault.status_code(502), path="/v2/storage/files/download")
    assert (await client.files.download(file.id, tmp_path)).read_bytes() == b"abc"


# -- threads and messages -------------------------------------------------------------------------------------------
async def test_thread_lifecycle_sends_metadata(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    thread = await client.threads.create(messages=["hi", ThreadMessage(content="second")])
    assert len(srv.messages[thread.id]) == 2
    updated = await client.threads.update(thread.id, metadata={"topic": "weather"})
    assert updated.metadata == {"topic": "weather"}
    assert (await client.threads.query(thread.id)).metadata == {"topic": "weather"}
    assert (await client.threads.delete(thread.id)).deleted is True


async def test_messages_calls(client: AssistantsClient) -> None:
    file = await client.files.create(b"x", filename="a.txt")
    thread = await client.threads.create()
    first = await client.threads.messages.create(thread.id, "first", file_ids=[file.id])
    second = await client.threads.messages.create(thread.id, "second")
    assert first.text == "first"
    assert first.role == "user"
    assert first.created_at is not None
    page = await client.threads.messages.list(thread.id, limit=1)
    assert [m.id for m in page.data] == [second.id]
    assert page.has_more is True
    everything = [m.id async for m in client.threads.messages.iter_all(thread.id, order="asc", page_size=1)]
    assert everything == [first.id, second.id]
    assert (await client.threads.messages.query(thread.id, first.id)).file_ids == [file.id]
    files = await client.threads.messages.files(thread.id, first.id)
    assert [(f.id, f.message_id) for f in files.data] == [(file.id, first.id)]
    edited = await client.threads.messages.update(thread.id, first.id, content="edited")
    assert edited.text == "edited"
    # Leaving file_ids out keeps them (the SDK would send [] and drop them).
    assert edited.file_ids == [file.id]


# -- runs -----------------------------------------------------------------------------------------------------------
async def test_run_list_query_and_steps(client: AssistantsClient) -> None:
    assistant_id, thread_id = await new_thread(client)
    run = await client.threads.runs.run(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "completed"
    assert run.assistant_id == assistant_id
    assert run.thread_id == thread_id
    assert run.final_answer is not None
    assert INSTRUCTIONS in run.final_answer.text
    assert run.completed_at is not None
    assert run.cancelled_at is None
    runs = await client.threads.runs.list(thread_id, limit=5)
    assert [r.id for r in runs.data] == [run.id]
    assert [r.id async for r in client.threads.runs.iter_all(thread_id)] == [run.id]
    queried = await client.threads.runs.query(thread_id, run.id)
    assert queried.status == "completed"
    steps = await client.threads.runs.steps.list(thread_id, run.id)
    assert len(steps.data) == 1
    step = await client.threads.runs.steps.query(thread_id, run.id, steps.data[0].id)
    assert step.id == steps.data[0].id
    assert step.step_details is not None
    assert step.step_details.message_creation is not None
    assert step.last_error is None


async def test_run_with_thread_creates_one(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    assistant = await client.assistants.create(name="a", instructions="hi")
    run = await client.threads.runs.run(assistant_id=assistant.id, thread=["new conversation"])
    assert run.status == "completed"
    assert srv.messages[run.thread_id][0]["content"][0]["text"]["value"] == "new conversation"


async def test_non_streaming_function_call_by_hand(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    srv.script(RunScript(tool_calls=[WEATHER]))
    assistant_id, thread_id = await new_thread(client, tools=True)
    first = await client.threads.runs.run(thread_id=thread_id, assistant_id=assistant_id)
    assert first.status == "requires_action"
    (call,) = first.tool_calls
    assert call.function is not None
    assert call.function.name == "get_cur_whether"
    assert call.function.parsed_arguments() == WEATHER_ARGS
    second = await client.threads.runs.run(
        thread_id=thread_id,
        assistant_id=assistant_id,
        tool_output=ToolOutput(tool_call_id=call.id, output="晴 25度", run_id=first.id),
    )
    assert second.id == first.id
    assert second.status == "completed"
    assert second.required_action is None


async def test_run_with_tools_answers_every_call(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    srv.script(RunScript(tool_calls=[WEATHER, ToolCallScript(name="add", arguments={"a": 2, "b": 3})]))
    assistant_id, thread_id = await new_thread(client, tools=True)
    seen: list[dict[str, Any]] = []

    async def get_cur_whether(location: str, unit: str) -> str:
        seen.append({"location": location, "unit": unit})
        return f"{location} 晴 25{unit}"

    def add(a: int, b: int) -> dict[str, int]:
        return {"sum": a + b}

    run = await client.threads.runs.run_with_tools(
        thread_id=thread_id, assistant_id=assistant_id, tools={"get_cur_whether": get_cur_whether, "add": add}
    )
    assert run.status == "completed"
    assert seen == [WEATHER_ARGS]
    assert run.final_answer is not None
    assert "get_cur_whether 返回: 北京 晴 25摄氏度" in run.final_answer.text
    assert 'add 返回: {"sum": 5}' in run.final_answer.text
    assert len(srv.requests_to("/v2/threads/runs")) == 3


async def test_run_with_tools_missing_tool(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    srv.script(RunScript(tool_calls=[WEATHER]))
    assistant_id, thread_id = await new_thread(client, tools=True)
    with pytest.raises(ToolCallError, match="get_cur_whether") as info:
        await client.threads.runs.run_with_tools(thread_id=thread_id, assistant_id=assistant_id, tools={})
    assert info.value.tool_name == "get_cur_whether"


async def test_run_body_matches_the_sdk_shape(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    assistant_id, thread_id = await new_thread(client)
    await client.threads.runs.run(thread_id=thread_id, assistant_id=assistant_id)
    body = srv.requests_to("/v2/threads/runs")[0].json()
    assert body["stream"] is False
    assert body["tool_output"] is None
    assert body["model_parameters"] is None


# -- streaming ------------------------------------------------------------------------------------------------------
async def test_stream_yields_typed_events_once(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    assistant_id, thread_id = await new_thread(client)
    async with client.threads.runs.stream(thread_id=thread_id, assistant_id=assistant_id) as events:
        got = [e async for e in events]
    assert isinstance(got[0], RunBegin)
    assert got[0].status == "queued"
    assert any(isinstance(e, MessageCreationEvent) for e in got)
    assert isinstance(got[-1], RunEnd)
    assert got[-1].status == "completed"
    text = "".join(e.text for e in got if isinstance(e, MessageEvent))
    assert text == f"{INSTRUCTIONS} | 你说: hello world"
    send_ids = [e.send_id for e in got if isinstance(e, (StatusEvent, MessageEvent))]
    assert send_ids == sorted(set(send_ids))  # no event twice, none reordered
    assert [e for e in got if isinstance(e, MessageEvent)][-1].is_end is True


async def test_stream_tool_calls_submitted_while_open(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    srv.script(RunScript(tool_calls=[WEATHER]))
    assistant_id, thread_id = await new_thread(client, tools=True)
    kinds: list[type] = []
    run_id = ""
    async with client.threads.runs.stream(thread_id=thread_id, assistant_id=assistant_id) as events:
        async for event in events:
            kinds.append(type(event))
            if isinstance(event, RunBegin):
                assert event.run_id is not None
                run_id = event.run_id
            if isinstance(event, ToolCallsEvent):
                call = event.tool_calls[0]
                ack = await client.threads.runs.submit_tool_outputs(
                    thread_id, run_id, [ToolOutput(tool_call_id=call.id, output="晴")]
                )
                assert ack.id == run_id
            last = event
    assert kinds.index(ToolStepBegin) < kinds.index(ToolCallsEvent) < kinds.index(ToolSubmittedOutput)
    assert kinds.index(ToolSubmittedOutput) < kinds.index(ToolStepEnd)
    assert isinstance(last, RunEnd)
    assert last.status == "completed"
    body = srv.requests_to("/v2/threads/runs/submit_tool_outputs")[0].json()
    assert body["tool_outputs"] == [{"tool_call_id": call.id, "output": "晴", "run_id": ""}]


async def test_stream_with_tools_loop(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    srv.script(RunScript(tool_calls=[WEATHER]))
    assistant_id, thread_id = await new_thread(client, tools=True)

    async def get_cur_whether(location: str, unit: str) -> str:
        return f"{location}: 晴"

    got = [
        e
        async for e in client.threads.runs.stream_with_tools(
            thread_id=thread_id, assistant_id=assistant_id, tools={"get_cur_whether": get_cur_whether}
        )
    ]
    assert sum(isinstance(e, ToolCallsEvent) for e in got) == 1
    assert isinstance(got[-1], RunEnd)
    assert got[-1].status == "completed"
    assert "北京: 晴" in "".join(e.text for e in got if isinstance(e, MessageEvent))
    ids = [e.send_id for e in got if isinstance(e, (StatusEvent, MessageEvent))]
    assert len(ids) == len(set(ids))


async def test_cancel_mid_stream(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    srv.script(RunScript(hang=True))
    assistant_id, thread_id = await new_thread(client)
    got = []
    async with client.threads.runs.stream(thread_id=thread_id, assistant_id=assistant_id) as events:
        async for event in events:
            got.append(event)
            if isinstance(event, MessageEvent) and len([e for e in got if isinstance(e, MessageEvent)]) == 1:
                ack = await client.threads.runs.cancel(thread_id, got[0].run_id)
                assert ack.status == "cancelling"
    assert isinstance(got[-2], RunCancelling)
    end = got[-1]
    assert isinstance(end, RunEnd)
    assert end.status == "cancelled"
    assert end.run is not None
    assert end.run.cancelled_at is not None
    assert (await client.threads.runs.query(thread_id, end.run.id)).status == "cancelled"
    assert srv.requests_to("/v2/threads/runs/cancel")[0].json()["sync"] is False


async def test_failed_run_ends_with_error_info(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    srv.script(RunScript(fail="model overloaded"))
    assistant_id, thread_id = await new_thread(client)
    got = await client.threads.runs.stream(thread_id=thread_id, assistant_id=assistant_id).collect()
    end = got[-1]
    assert isinstance(end, RunEnd)
    assert end.status == "failed"
    assert end.details.error_info is not None
    assert end.details.error_info.message == "model overloaded"


async def test_stream_error_body_raises(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    with pytest.raises(AssistantServerError, match="not found"):
        await client.threads.runs.stream(thread_id="thread_missing", assistant_id="asst_missing").collect()


async def test_stream_cut_before_run_end_is_incomplete(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    srv.inject(
        Fault.raw(
            b'event: status\ndata: {"event":"status","status":"queued","event_type":"run_begin"}\n\n',
            content_type="text/event-stream",
        ),
        path="/v2/threads/runs",
    )
    with pytest.raises(exc.IncompleteStreamError):
        await client.threads.runs.stream(thread_id="t", assistant_id="a").collect()


async def test_stream_is_not_retried(
    srv: FakeAppBuilderServer, client: AssistantsClient, instant_retries: None
) -> None:
    srv.inject(Fault.status_code(500), path="/v2/threads/runs", times=3)
    with pytest.raises(exc.InternalServerError):
        await client.threads.runs.stream(thread_id="t", assistant_id="a").collect()
    assert len(srv.requests_to("/v2/threads/runs")) == 1


async def test_stream_body_sets_stream_true(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    assistant_id, thread_id = await new_thread(client)
    await client.threads.runs.stream(thread_id=thread_id, assistant_id=assistant_id).collect()
    assert json.loads(srv.requests_to("/v2/threads/runs")[0].body)["stream"] is True


async def test_stream_with_tools_tool_failure_closes_the_stream(
    srv: FakeAppBuilderServer, client: AssistantsClient
) -> None:
    srv.script(RunScript(tool_calls=[WEATHER]))
    assistant_id, thread_id = await new_thread(client, tools=True)

    def broken(**_: Any) -> str:
        raise RuntimeError("sensor offline")

    events = client.threads.runs.stream_with_tools(
        thread_id=thread_id, assistant_id=assistant_id, tools={"get_cur_whether": broken}
    )
    seen: list[Any] = []

    async def drain() -> None:
        async with events:
            async for event in events:
                seen.append(event)

    with pytest.raises(ToolCallError, match="sensor offline") as info:
        await drain()
    assert isinstance(info.value.__cause__, RuntimeError)
    assert isinstance(seen[-1], ToolCallsEvent)
    assert events.run_id == seen[0].run_id
    assert events.thread_id == thread_id
    assert srv.requests_to("/v2/threads/runs/submit_tool_outputs") == []


async def test_stream_with_tools_early_exit_closes(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    srv.script(RunScript(hang=True, hang_timeout=5))
    assistant_id, thread_id = await new_thread(client)
    async with client.threads.runs.stream_with_tools(
        thread_id=thread_id, assistant_id=assistant_id, tools={}
    ) as events:
        async for event in events:
            if isinstance(event, MessageEvent):
                break
    # Closed: asking again is a misuse error, and the client still works.
    with pytest.raises(exc.ClientClosedError):
        await events.__anext__()
    assert (await client.threads.query(thread_id)).id == thread_id


async def test_every_list_has_an_all_pages_iterator(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    srv.script(RunScript(tool_calls=[WEATHER]))
    assistant = await client.assistants.create(name="a", tools=[WEATHER_TOOL])
    files = [await client.files.create(b"x", filename=f"f{i}.txt") for i in range(3)]
    for f in files:
        await client.assistants.mount_files(assistant.id, f.id)
    mounted = [m.id async for m in client.assistants.iter_mounted_files(assistant.id, order="asc", page_size=2)]
    assert mounted == [f.id for f in files]
    thread = await client.threads.create()
    message = await client.threads.messages.create(thread.id, "q", file_ids=[f.id for f in files])
    attached = [m.id async for m in client.threads.messages.iter_files(thread.id, message.id, order="asc", page_size=1)]
    assert attached == [f.id for f in files]
    run = await client.threads.runs.run_with_tools(
        assistant_id=assistant.id, thread_id=thread.id, tools={"get_cur_whether": lambda **kw: "晴"}
    )
    steps = [s.type async for s in client.threads.runs.steps.iter_all(thread.id, run.id, order="asc", page_size=1)]
    assert steps == ["tool_calls", "message_creation"]


async def test_model_parameters_send_only_what_is_set(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    assistant_id, thread_id = await new_thread(client)
    params = ModelParameters(chat_parameters=SamplingParameters(temperature=0.2))
    await client.threads.runs.run(thread_id=thread_id, assistant_id=assistant_id, model_parameters=params)
    body = srv.requests_to("/v2/threads/runs")[0].json()
    assert body["model_parameters"] == {"chat_parameters": {"temperature": 0.2}}


# -- the keywords: request parameters and per-call options declared once ----------------------------------------------
async def test_a_misspelt_keyword_is_a_type_error_and_nothing_is_sent(
    srv: FakeAppBuilderServer, client: AssistantsClient
) -> None:
    with pytest.raises(TypeError, match="instruction"):
        await client.threads.runs.run(assistant_id="a", thread_id="t", instruction="x")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="limt"):
        await client.threads.messages.list("t", limt=5)  # type: ignore[call-arg]
    assert srv.requests == []


async def test_a_missing_assistant_id_is_a_validation_error(
    srv: FakeAppBuilderServer, client: AssistantsClient
) -> None:
    with pytest.raises(AssistantValidationError, match="assistant_id must be a non-empty string"):
        await client.threads.runs.run(thread_id="t")  # type: ignore[typeddict-item]
    assert srv.requests == []


async def test_extra_headers_go_out_but_never_replace_the_request_ids(
    srv: FakeAppBuilderServer, client: AssistantsClient
) -> None:
    await client.threads.create(extra_headers={"X-Trace": "t1", "X-Appbuilder-Request-Id": "mine"})
    (req,) = srv.requests_to("/v2/threads")
    assert req.header("X-Trace") == "t1"
    assert req.header("X-Appbuilder-Request-Id") != "mine"
    assert req.header("X-Appbuilder-Request-Id") == req.header("X-Bce-Request-Id")


async def test_list_sends_the_page_keywords_and_their_defaults(
    srv: FakeAppBuilderServer, client: AssistantsClient
) -> None:
    _, thread_id = await new_thread(client)
    (message,) = (await client.threads.messages.list(thread_id)).data
    await client.threads.messages.list(thread_id, limit=5, order="asc", after=message.id)
    first, second = (r.json() for r in srv.requests_to("/v2/threads/messages/list"))
    assert first == {"thread_id": thread_id, "limit": 20, "order": "desc", "after": "", "before": ""}
    assert second == {"thread_id": thread_id, "limit": 5, "order": "asc", "after": message.id, "before": ""}


async def test_run_with_tools_resumes_with_every_run_parameter_but_the_new_messages(
    srv: FakeAppBuilderServer, client: AssistantsClient
) -> None:
    srv.script(RunScript(tool_calls=[WEATHER]))
    assistant_id, _ = await new_thread(client, tools=True)
    run = await client.threads.runs.run_with_tools(
        assistant_id=assistant_id,
        thread=["weather in Beijing?"],
        metadata={"k": "v"},
        instructions="short",
        tools={"get_cur_whether": lambda **kw: "晴"},
    )
    assert run.status == "completed"
    first, resumed = (r.json() for r in srv.requests_to("/v2/threads/runs"))
    assert first["thread"] == {"messages": [{"role": "user", "content": "weather in Beijing?", "file_ids": []}]}
    assert resumed["thread"] is None
    assert resumed["thread_id"] == run.thread_id
    assert resumed["tool_output"]["run_id"] == run.id
    assert (resumed["metadata"], resumed["instructions"]) == ({"k": "v"}, "short")


RESOURCES = [Assistants, Files, Messages, Runs, Steps, Threads]


@pytest.mark.parametrize("cls", RESOURCES, ids=lambda c: c.__name__)
def test_every_call_takes_its_keywords_from_one_declaration_over_the_request_options(cls: type) -> None:
    for name, method in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("_") or name.startswith("iter_"):
            continue
        params = inspect.signature(method).parameters
        assert not {"timeout", "max_retries", "extra_headers", "limit", "order"} & set(params), (cls.__name__, name)
        (kwargs,) = [p for p in params.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
        declared = getattr(models, kwargs.annotation.removeprefix("Unpack[").removesuffix("]"), None) or RequestOptions
        assert {"timeout", "max_retries", "extra_headers"} <= declared.__required_keys__ | declared.__optional_keys__
