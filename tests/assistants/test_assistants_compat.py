"""aioagents.compat.appbuilder: SDK-shaped calls (positional orders, defaults) against the fake, and the examples."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aioagents.compat.appbuilder as appbuilder
from aioagents.testing._appbuilder import FakeAppBuilderServer, RunScript, ToolCallScript

TOKEN = "fake-appbuilder-token"
HERE = Path(__file__).parent
ROOT = HERE.parent.parent
SDK_REQUESTS: list[dict[str, Any]] = json.loads((HERE / "sdk_requests.json").read_text(encoding="utf-8"))
WEATHER = ToolCallScript(name="get_cur_whether", arguments={"location": "北京", "unit": "摄氏度"})


@pytest.fixture
def srv(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAppBuilderServer]:
    server = FakeAppBuilderServer(token=TOKEN)
    with server.in_thread():
        monkeypatch.setenv("APPBUILDER_TOKEN", TOKEN)
        monkeypatch.setenv("GATEWAY_URL", server.url)
        yield server


def test_missing_token_raises_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APPBUILDER_TOKEN", raising=False)
    with pytest.raises(ValueError, match="APPBUILDER_TOKEN"):
        appbuilder.assistant.threads.create()


def test_sdk_flow_through_compat(srv: FakeAppBuilderServer, tmp_path: Path) -> None:
    """The calls of the SDK recording (sdk_flow.py), with the SDK's argument orders; bodies keep the SDK's keys."""
    srv.script(RunScript(), RunScript(tool_calls=[WEATHER]), RunScript(tool_calls=[WEATHER]), RunScript(hang=True))
    a: Any = appbuilder.assistant  # SDK-shaped code, as untyped as its users'
    assistant = a.assistants.create("test_assistant", "test assistant", instructions="每句话回复前都加上我是秦始皇")
    thread = a.threads.create()
    a.threads.messages.create(thread.id, "hello world")
    run = a.threads.runs.run(assistant.id, thread.id)
    assert run.status == "completed"
    assert [r.id for r in a.threads.runs.list(thread.id, limit=5).data] == [run.id]
    assert a.threads.runs.query(thread.id, run.id).status == "completed"
    steps = a.threads.runs.steps.list(thread.id, run.id)
    assert a.threads.runs.steps.query(thread.id, run.id, steps.data[-1].id).id == steps.data[-1].id

    tool = {"type": "function", "function": {"name": "get_cur_whether", "description": "天气", "parameters": {}}}
    weather = a.assistants.create("weather", "d", instructions="x", tools=[tool])
    th2 = a.threads.create(messages=[{"role": "user", "content": "北京天气", "file_ids": []}])
    first = a.threads.runs.run(assistant_id=weather.id, thread_id=th2.id)
    assert first.status == "requires_action"
    call = first.required_action.submit_tool_outputs.tool_calls[0]
    second = a.threads.runs.run(
        assistant_id=weather.id,
        thread_id=th2.id,
        tool_output={"tool_call_id": call.id, "output": "晴 25度", "run_id": first.id},
    )
    assert (second.id, second.status) == (first.id, "completed")

    a.threads.messages.create(th2.id, "北京天气")
    run_id = ""
    for event in a.threads.runs.stream_run(assistant_id=weather.id, thread_id=th2.id):
        if event.event == "status" and event.event_type == "run_begin":
            run_id = event.details.run_object.id
        if event.event == "status" and event.event_type == "tool_calls":
            tc = event.details.tool_calls[0]
            a.threads.runs.submit_tool_outputs(run_id, th2.id, [{"tool_call_id": tc.id, "output": "晴"}])
        last = event
    assert isinstance(last, appbuilder.StreamRunStatus)
    assert (last.event_type, last.status) == ("run_end", "completed")

    a.threads.messages.create(th2.id, "hi")
    for event in a.threads.runs.stream_run(weather.id, th2.id):
        if event.event == "status" and event.event_type == "run_begin":
            run_id = event.details.run_object.id
        if isinstance(event, appbuilder.StreamRunMessage):
            a.threads.runs.cancel(run_id, th2.id)
        last = event
    assert isinstance(last, appbuilder.StreamRunStatus)
    assert (last.event_type, last.status) == ("run_end", "cancelled")
    assert last.details is not None
    assert last.details.run_object is not None
    assert last.details.run_object.cancelled_at != 0

    path = tmp_path / "hello.txt"
    path.write_text("hello file")
    f = a.assistants.files.create(str(path))
    assert [x.id for x in a.assistants.files.list().data] == [f.id]
    assert a.assistants.files.query(f.id).filename == "hello.txt"
    assert a.assistants.files.content(f.id).content == b"hello file"
    out = tmp_path / "dl"
    out.mkdir()
    a.assistants.files.download(f.id, str(out) + "/")
    assert (out / "hello.txt").read_text() == "hello file"
    a.assistants.mount_files(assistant.id, f.id)
    assert [m.id for m in a.assistants.mounted_files_list(assistant.id).data] == [f.id]
    assert a.assistants.unmount_files(assistant.id, f.id).deleted
    updated = a.assistants.update(assistant.id, "ERNIE-4.0T-8K", "renamed", "d2", instructions="i2")
    assert updated.name == "renamed"
    assert len(a.assistants.list(limit=5).data) == 2
    assert a.assistants.query(assistant.id).instructions == "i2"
    assert a.threads.query(thread.id).id == thread.id
    assert a.threads.update(thread.id, metadata={"k": "v"}).metadata == {"k": "v"}
    m = a.threads.messages.create(thread.id, "with file", file_ids=[f.id])
    assert [x.id for x in a.threads.messages.files(thread.id, m.id).data] == [f.id]
    assert a.threads.messages.update(thread.id, m.id, "edited").file_ids == [f.id]
    assert a.threads.messages.list(thread.id, limit=3).data[0].id == m.id
    assert a.threads.messages.query(thread.id, m.id).content[0].text.value == "edited"
    assert a.assistants.files.delete(f.id).deleted
    assert a.threads.delete(th2.id).deleted
    assert a.assistants.delete(weather.id).deleted
    with pytest.raises(appbuilder.AssistantServerException):
        a.threads.query(th2.id)

    sdk_keys: dict[str, set[frozenset[str]]] = {}
    for r in SDK_REQUESTS:
        if isinstance(r["body"], dict):
            sdk_keys.setdefault(r["path"], set()).add(frozenset(r["body"]))
    # Only the message update differs on purpose (files are left alone unless given).
    sdk_keys["/v2/threads/messages/update"].add(frozenset({"thread_id", "message_id", "content"}))
    assert {r.path for r in srv.requests} == {r["path"] for r in SDK_REQUESTS}
    for req in srv.requests:
        if req.path != "/v2/storage/files":
            assert frozenset(req.json()) in sdk_keys[req.path], req.path


def test_sdk_validation_habits(srv: FakeAppBuilderServer) -> None:
    with pytest.raises(ValueError, match="thread_id and thread"):
        appbuilder.assistant.threads.runs.run("asst_x")
    with pytest.raises(TypeError):
        appbuilder.assistant.assistants.files.query(123)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        appbuilder.assistant.assistants.create("Abc-_123@", "d")
    with pytest.raises(ValueError, match="temperature"):
        appbuilder.assistant.threads.runs.run(
            "asst_x", "thread_x", model_parameters={"chat_parameters": {"temperature": 3}}
        )
    assert srv.requests == []


def run_example(name: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("APPBUILDER_TOKEN", "GATEWAY_URL")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_notebook_example_prints_runs_steps_and_answer() -> None:
    out = run_example("assistants_notebook.py").splitlines()
    # print() of an SDK (pydantic) model: the fields as name=value pairs, timestamps as epoch-ms ints.
    runs = [line for line in out if line.startswith("id='run_")]
    steps = [line for line in out if line.startswith("id='step")]
    assert len(runs) == 3
    assert "status='completed'" in runs[0]
    assert re.search(r" created_at=\d{13} ", runs[0])
    assert len(steps) == 2
    assert out[-1] == "answer: 每句话回复前都加上我是秦始皇 | 你说: hello world"


def test_tools_example_streams_answers_and_cancels() -> None:
    out = run_example("assistants_tools.py")
    assert "tool calls: [('get_cur_whether'," in out
    assert "北京: 晴, 25 摄氏度" in out.replace("answer piece: ", "").replace("\n", "")
    assert "run ended: completed" in out
    assert "run ended: cancelled cancelled_at: 20" in out
