"""The blocking AppBuilder assistants client (generated twins) against the fake running in a thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aioagents.assistants import (
    AssistantServerError,
    MessageEvent,
    RunBegin,
    RunCancelling,
    RunEnd,
    StatusEvent,
    Tool,
    ToolCallsEvent,
    ToolOutput,
)
from aioagents.sync import AssistantsClient
from aioagents.testing._appbuilder import FakeAppBuilderServer, RunScript, ToolCallScript

TOKEN = "fake-appbuilder-token"
WEATHER = ToolCallScript(name="get_cur_whether", arguments={"location": "北京", "unit": "摄氏度"})


@pytest.fixture
def srv() -> Iterator[FakeAppBuilderServer]:
    server = FakeAppBuilderServer(token=TOKEN)
    with server.in_thread():
        yield server


@pytest.fixture
def client(srv: FakeAppBuilderServer) -> Iterator[AssistantsClient]:
    with AssistantsClient(token=TOKEN, base_url=srv.url) as c:
        yield c


def new_thread(client: AssistantsClient, *, tools: bool = False) -> tuple[str, str]:
    assistant = client.assistants.create(
        name="test_assistant", instructions="我是秦始皇", tools=[Tool.from_function("get_cur_whether")] if tools else []
    )
    thread = client.threads.create()
    client.threads.messages.create(thread.id, "hello world")
    return assistant.id, thread.id


def test_assistants_calls(client: AssistantsClient, tmp_path: Path) -> None:
    a = client.assistants.create(name="a1", instructions="x")
    b = client.assistants.create(name="a2")
    assert client.assistants.query(a.id).instructions == "x"
    assert client.assistants.update(a.id, name="renamed").name == "renamed"
    assert [x.id for x in client.assistants.list(limit=1).data] == [b.id]
    assert [x.id for x in client.assistants.iter_all(order="asc", page_size=1)] == [a.id, b.id]
    file = client.files.create(b"x", filename="x.txt")
    assert client.assistants.mount_files(a.id, file.id).assistant_id == a.id
    assert [m.id for m in client.assistants.mounted_files_list(a.id).data] == [file.id]
    assert client.assistants.unmount_files(a.id, file.id).deleted
    assert client.assistants.delete(b.id).deleted


def test_files_calls(client: AssistantsClient, tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text("# notes\n")
    file = client.files.create(path)
    assert file.filename == "notes.md"
    assert [f.id for f in client.files.list().data] == [file.id]
    assert client.files.query(file.id).file_type == "md"
    assert client.files.content(file.id).content == b"# notes\n"
    out = tmp_path / "out"
    out.mkdir()
    assert client.files.download(file.id, out).read_text() == "# notes\n"
    assert client.files.delete(file.id).deleted


def test_threads_and_messages_calls(client: AssistantsClient) -> None:
    thread = client.threads.create(messages=["first"])
    assert client.threads.update(thread.id, metadata={"k": "v"}).metadata == {"k": "v"}
    assert client.threads.query(thread.id).metadata == {"k": "v"}
    msg = client.threads.messages.create(thread.id, "second")
    assert client.threads.messages.query(thread.id, msg.id).text == "second"
    assert client.threads.messages.update(thread.id, msg.id, content="edited").text == "edited"
    assert [m.text for m in client.threads.messages.iter_all(thread.id, order="asc")] == ["first", "edited"]
    assert client.threads.messages.list(thread.id, limit=1).has_more
    assert client.threads.messages.files(thread.id, msg.id).data == []
    assert client.threads.delete(thread.id).deleted
    with pytest.raises(AssistantServerError):
        client.threads.query(thread.id)


def test_run_list_query_steps(client: AssistantsClient) -> None:
    assistant_id, thread_id = new_thread(client)
    run = client.threads.runs.run(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "completed"
    assert run.final_answer is not None
    assert "我是秦始皇" in run.final_answer.text
    assert [r.id for r in client.threads.runs.list(thread_id, limit=5).data] == [run.id]
    assert [r.id for r in client.threads.runs.iter_all(thread_id)] == [run.id]
    assert client.threads.runs.query(thread_id, run.id).status == "completed"
    steps = client.threads.runs.steps.list(thread_id, run.id)
    assert len(steps.data) == 1
    assert client.threads.runs.steps.query(thread_id, run.id, steps.data[0].id).id == steps.data[0].id


def test_non_streaming_function_calling(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    srv.script(RunScript(tool_calls=[WEATHER]), RunScript(tool_calls=[WEATHER]))
    assistant_id, thread_id = new_thread(client, tools=True)
    first = client.threads.runs.run(thread_id=thread_id, assistant_id=assistant_id)
    assert first.status == "requires_action"
    call = first.tool_calls[0]
    second = client.threads.runs.run(
        thread_id=thread_id,
        assistant_id=assistant_id,
        tool_output=ToolOutput(tool_call_id=call.id, output="晴", run_id=first.id),
    )
    assert (second.id, second.status, second.required_action) == (first.id, "completed", None)
    client.threads.messages.create(thread_id, "again")
    looped = client.threads.runs.run_with_tools(
        thread_id=thread_id, assistant_id=assistant_id, tools={"get_cur_whether": lambda location, unit: "多云"}
    )
    assert looped.status == "completed"
    assert looped.final_answer is not None
    assert "多云" in looped.final_answer.text


def test_streaming_function_calling(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    srv.script(RunScript(tool_calls=[WEATHER]), RunScript(tool_calls=[WEATHER]))
    assistant_id, thread_id = new_thread(client, tools=True)
    run_id = ""
    events = []
    with client.threads.runs.stream(thread_id=thread_id, assistant_id=assistant_id) as stream:
        for event in stream:
            events.append(event)
            if isinstance(event, RunBegin):
                run_id = event.run_id or ""
            if isinstance(event, ToolCallsEvent):
                outputs = [ToolOutput(tool_call_id=c.id, output="晴") for c in event.tool_calls]
                client.threads.runs.submit_tool_outputs(thread_id, run_id, outputs)
    assert isinstance(events[-1], RunEnd)
    assert events[-1].status == "completed"
    client.threads.messages.create(thread_id, "again")
    looped = list(
        client.threads.runs.stream_with_tools(
            thread_id=thread_id, assistant_id=assistant_id, tools={"get_cur_whether": lambda **kw: kw}
        )
    )
    assert isinstance(looped[-1], RunEnd)
    assert looped[-1].status == "completed"
    assert "北京" in "".join(e.text for e in looped if isinstance(e, MessageEvent))
    ids = [e.send_id for e in looped if isinstance(e, (StatusEvent, MessageEvent))]
    assert len(ids) == len(set(ids))


def test_cancelled_stream(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    srv.script(RunScript(hang=True))
    assistant_id, thread_id = new_thread(client)
    events = []
    with client.threads.runs.stream(thread_id=thread_id, assistant_id=assistant_id) as stream:
        for event in stream:
            events.append(event)
            if isinstance(event, MessageEvent) and event.message_index == "0":
                client.threads.runs.cancel(thread_id, events[0].run_id)
    assert isinstance(events[-2], RunCancelling)
    end = events[-1]
    assert isinstance(end, RunEnd)
    assert end.status == "cancelled"
    assert end.run is not None
    assert end.run.cancelled_at is not None


def test_leaving_a_stream_early_closes_it(srv: FakeAppBuilderServer, client: AssistantsClient) -> None:
    srv.script(RunScript(hang=True, hang_timeout=5))
    assistant_id, thread_id = new_thread(client)
    with client.threads.runs.stream(thread_id=thread_id, assistant_id=assistant_id) as stream:
        for event in stream:
            if isinstance(event, MessageEvent):
                break
    # The client still works afterwards (the connection was released, not leaked).
    assert client.threads.query(thread_id).id == thread_id
