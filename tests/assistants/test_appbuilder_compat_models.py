"""compat.appbuilder's models carry the SDK's field names and types (appbuilder-sdk's
``appbuilder/core/assistant/type/*.py``): every call's answer, checked over loopback against the fake server, is the
SDK's class with the SDK's fields, epoch-millisecond ``int`` timestamps equal to what the server sent, the SDK's
enums, ``step_datail`` and camelCase action info; and the pydantic methods SDK users call on them."""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional, Union

import pytest

import aioagents.compat.appbuilder as appbuilder
from aioagents.testing._appbuilder import FakeAppBuilderServer, RunScript, ToolCallScript

TOKEN = "fake-appbuilder-token"
WEATHER = ToolCallScript(name="get_cur_whether", arguments={"location": "北京", "unit": "摄氏度"})

# Every response and data model of the SDK (its request models aside), field by field in the SDK's order, with the
# annotation as the SDK's source writes it (appbuilder-sdk, python/core/assistant/type/, Jan 2026).
SDK_FIELDS: dict[str, dict[str, str]] = {
    # public_type.py
    "AssistantFunctionCall": {"name": "str", "arguments": "str"},
    "AssistantExample": {"role": "str", "content": "str", "function_call": "AssistantFunctionCall"},
    "AssistantFunctionJsonSchema": {
        "type": "str",
        "properties": "Union[dict, None]",
        "required": "Union[list[str], None]",
    },
    "AssistantFunction": {
        "name": "str",
        "description": "str",
        "parameters": "Union[AssistantFunctionJsonSchema, None]",
        "responses": "Union[AssistantFunctionJsonSchema, None]",
        "examples": "Union[list[list[AssistantExample]], None]",
    },
    "AssistantTool": {"type": "str", "function": "AssistantFunction"},
    "AssistantText": {"value": "str", "annotations": "Optional[list[str]]"},
    "AssistantContent": {"type": "str", "text": "Optional[AssistantText]"},
    "AssistantChatParameters": {
        "temperature": "Optional[float]",
        "top_p": "Optional[float]",
        "penalty_score": "Optional[float]",
    },
    "AssistantThoughtParameters": {
        "temperature": "Optional[float]",
        "top_p": "Optional[float]",
        "penalty_score": "Optional[float]",
    },
    "AssistantModelParameters": {
        "chat_parameters": "Optional[AssistantChatParameters]",
        "thought_parameters": "Optional[AssistantThoughtParameters]",
    },
    "AssistantUserInfo": {
        "id": "Optional[str]",
        "name": "Optional[str]",
        "nickname": "Optional[str]",
        "watermark": "Optional[str]",
        "intro": "Optional[str]",
        "baidu_id": "Optional[str]",
    },
    "AssistantUserLoc": {"loc": "Optional[str]", "uip": "Optional[str]", "uipv6": "Optional[str]"},
    # assistant_type.py
    "AssistantFilesCreateResponse": {
        "id": "str",
        "bytes": "int",
        "object": "str",
        "purpose": "str",
        "create_at": "int",
        "filename": "str",
        "classification_id": "str",
    },
    "AssistantFilesListData": {
        "id": "str",
        "bytes": "int",
        "object": "str",
        "purpose": "str",
        "censored": "AuditStatus",
        "create_at": "int",
        "filename": "str",
        "classification_id": "str",
        "file_type": "str",
    },
    "AssistantFilesListResponse": {"object": "str", "data": "list[AssistantFilesListData]"},
    "AssistantFilesQueryResponse": {
        "id": "str",
        "bytes": "int",
        "object": "str",
        "purpose": "str",
        "censored": "AuditStatus",
        "create_at": "int",
        "filename": "str",
        "classification_id": "str",
        "file_type": "str",
    },
    "AssistantFilesDeleteResponse": {"id": "str", "object": "str", "deleted": "bool"},
    "AssistantCreateResponse": {
        "id": "Optional[str]",
        "object": "Optional[str]",
        "name": "Optional[str]",
        "description": "Optional[str]",
        "instructions": "Optional[str]",
        "tools": "Optional[list[AssistantTool]]",
        "created_at": "Optional[int]",
        "thought_instructions": "Optional[str]",
        "chat_instructions": "Optional[str]",
        "response_format": "Optional[ResponseFormat]",
        "file_ids": "Optional[list[str]]",
        "metadata": "Optional[dict]",
    },
    "AssistantUpdateResponse": {
        "id": "Optional[str]",
        "model": "Optional[str]",
        "name": "Optional[str]",
        "description": "Optional[str]",
        "response_format": "Optional[ResponseFormat]",
        "instructions": "Optional[str]",
        "created_at": "Optional[int]",
        "thought_instructions": "Optional[str]",
        "chat_instructions": "Optional[str]",
        "tools": "Optional[list[AssistantTool]]",
        "file_ids": "Optional[list[str]]",
        "metadata": "Optional[dict]",
    },
    "AssistantListResponse": {
        "object": "str",
        "data": "Optional[list[AssistantCreateResponse]]",
        "first_id": "Optional[str]",
        "last_id": "Optional[str]",
        "has_more": "bool",
    },
    "AssistantQueryResponse": {
        "id": "Optional[str]",
        "object": "Optional[str]",
        "name": "Optional[str]",
        "description": "Optional[str]",
        "instructions": "Optional[str]",
        "tools": "Optional[list[AssistantTool]]",
        "created_at": "Optional[int]",
        "thought_instructions": "Optional[str]",
        "chat_instructions": "Optional[str]",
        "response_format": "Optional[ResponseFormat]",
        "file_ids": "Optional[list[str]]",
        "metadata": "Optional[dict]",
    },
    "AssistantDeleteResponse": {"id": "Optional[str]", "object": "Optional[str]", "deleted": "bool"},
    "AssistantFilesResponse": {
        "id": "Optional[str]",
        "object": "Optional[str]",
        "created_at": "Optional[int]",
        "assistant_id": "Optional[str]",
    },
    "AssistantMountedFilesListResponse": {
        "object": "str",
        "data": "Optional[list[AssistantFilesResponse]]",
        "first_id": "Optional[str]",
        "last_id": "Optional[str]",
        "has_more": "bool",
    },
    "AssistantFilesContentResponse": {"content_type": "Optional[str]", "content": "Optional[bytes]"},
    # thread_type.py
    "AssistantMessage": {"content": "str", "role": "AssistantMessageRole", "file_ids": "Optional[list[str]]"},
    "AssistantMessageCreateResponse": {
        "id": "str",
        "object": "str",
        "role": "AssistantMessageRole",
        "content": "Optional[list[AssistantContent]]",
        "created_at": "int",
        "thread_id": "str",
        "assistant_id": "Optional[str]",
        "run_id": "Optional[str]",
        "file_ids": "Optional[list[str]]",
    },
    "AssistantMessageListResponseData": {
        "id": "str",
        "object": "str",
        "role": "AssistantMessageRole",
        "content": "Optional[list[AssistantContent]]",
        "created_at": "int",
        "thread_id": "str",
        "assistant_id": "Optional[str]",
        "run_id": "Optional[str]",
        "file_ids": "Optional[list[str]]",
    },
    "AssistantMessageListResponse": {
        "object": "str",
        "data": "list[AssistantMessageListResponseData]",
        "first_id": "Optional[str]",
        "last_id": "Optional[str]",
        "has_more": "bool",
    },
    "AssistantMessageQueryResponse": {
        "id": "str",
        "object": "str",
        "role": "AssistantMessageRole",
        "content": "Optional[list[AssistantContent]]",
        "created_at": "int",
        "thread_id": "str",
        "assistant_id": "Optional[str]",
        "run_id": "Optional[str]",
        "file_ids": "Optional[list[str]]",
    },
    "AssistantMessageUpdateResponse": {
        "id": "str",
        "object": "str",
        "role": "AssistantMessageRole",
        "content": "Optional[list[AssistantContent]]",
        "created_at": "int",
        "thread_id": "str",
        "assistant_id": "Optional[str]",
        "run_id": "Optional[str]",
        "file_ids": "Optional[list[str]]",
    },
    "AssistantContentFilesData": {"id": "str", "object": "str", "created_at": "int", "message_id": "str"},
    "AssistantMessageFilesResponse": {
        "object": "str",
        "data": "list[AssistantContentFilesData]",
        "first_id": "Optional[str]",
        "last_id": "Optional[str]",
        "has_more": "bool",
    },
    "AssistantThread": {"messages": "list[AssistantMessage]"},
    "ThreadCreateResponse": {"id": "str", "object": "str", "created_at": "int", "metadata": "dict"},
    "ThreadQueryResponse": {"id": "str", "object": "str", "created_at": "int", "metadata": "dict"},
    "ThreadDeleteResponse": {"id": "str", "object": "str", "deleted": "bool"},
    "ThreadUpdateResponse": {"id": "str", "object": "str", "created_at": "Optional[int]", "metadata": "Optional[dict]"},
    "RunActionInfo": {"toolName": "str", "actionName": "str", "actionContent": "str"},
    "FunctionCall": {"name": "str", "arguments": "str", "output": "str"},
    "ToolCall": {"id": "str", "type": "str", "function": "Union[FunctionCall, None]"},
    "SubmitToolOutput": {"tool_calls": "Union[list[ToolCall], None]"},
    "RequiredAction": {"type": "str", "submit_tool_outputs": "Union[SubmitToolOutput, None]"},
    "LastError": {"type": "Optional[str]", "message": "Optional[str]"},
    "FinalAnswerMessage": {"message_id": "Optional[str]", "content": "Optional[list[AssistantContent]]"},
    "FinalAnswer": {"type": "Optional[str]", "message": "Optional[FinalAnswerMessage]"},
    "RunResult": {
        "id": "str",
        "object": "str",
        "assistant_id": "str",
        "thread_id": "str",
        "model": "str",
        "instructions": "str",
        "thought_instructions": "str",
        "chat_instructions": "str",
        "tools": "Optional[list[AssistantTool]]",
        "file_ids": "Optional[list[str]]",
        "status": "str",
        "required_action": "Optional[RequiredAction]",
        "last_error": "Optional[LastError]",
        "final_answer": "Optional[FinalAnswer]",
        "created_at": "int",
        "started_at": "int",
        "expired_at": "int",
        "cancelled_at": "int",
        "failed_at": "int",
        "completed_at": "int",
    },
    "RunMessageCreation": {"message_id": "str"},
    "ToolInfo": {"type": "str", "name": "str", "arguments": "str", "output": "str"},
    "RunStepDetail": {
        "type": "str",
        "message_creation": "Union[RunMessageCreation, None]",
        "action_info": "Union[RunActionInfo, None]",
        "tool_calls": "Union[list[ToolCall], None]",
        "tool_info": "Union[list[ToolInfo], None]",
    },
    "RunStepResult": {
        "id": "Optional[str]",
        "object": "Optional[str]",
        "assistant_id": "Optional[str]",
        "thread_id": "Optional[str]",
        "run_id": "Optional[str]",
        "status": "Optional[str]",
        "created_at": "Optional[int]",
        "started_at": "Optional[int]",
        "expired_at": "Optional[int]",
        "cancelled_at": "Optional[int]",
        "failed_at": "Optional[int]",
        "completed_at": "Optional[int]",
        "last_error": "Union[LastError, str, None]",
        "type": "Optional[str]",
        "step_datail": "Union[RunStepDetail, None]",
    },
    "StreamRunDetail": {
        "type": "str",
        "message_creation": "Union[RunMessageCreation, None]",
        "run_object": "Union[RunResult, None]",
        "run_step_object": "Union[RunStepResult, None]",
        "tool_calls": "Union[list[ToolCall], None]",
        "error_info": "Union[LastError, None]",
    },
    "StreamRunStatus": {
        "event": "str",
        "status": "str",
        "send_id": "int",
        "message": "str",
        "event_type": "str",
        "details": "Optional[StreamRunDetail]",
    },
    "StreamRunMessage": {
        "event": "str",
        "status": "str",
        "send_id": "int",
        "is_end": "int",
        "message_id": "str",
        "message_index": "str",
        "content": "Optional[list[AssistantContent]]",
    },
    "ToolOutput": {"tool_call_id": "str", "output": "str", "run_id": "str"},
    "RunListResponse": {
        "object": "Optional[str]",
        "first_id": "Optional[str]",
        "last_id": "Optional[str]",
        "has_more": "Optional[bool]",
        "data": "Optional[list[RunResult]]",
    },
    "RunStepListResponse": {
        "object": "Optional[str]",
        "first_id": "Optional[str]",
        "last_id": "Optional[str]",
        "has_more": "Optional[bool]",
        "data": "Optional[list[RunStepResult]]",
    },
}
SDK_ENUMS: dict[str, dict[str, Any]] = {
    "ResponseFormat": {"TEXT": "text", "JSON_OBJECT": "json_object"},
    "AssistantMessageRole": {"USER": "user", "ASSISTANT": "assistant"},
    "AuditStatus": {
        "AUDITING": -1,
        "NOT_AUDITED": 0,
        "APPROVED": 1,
        "REJECTED": 2,
        "NEEDS_FURTHER_AUDIT": 3,
        "AUDIT_FAILED_SERVICE_EXCEPTION": 4,
        "AUDIT_FAILED_TIMEOUT": 5,
    },
}
_NAMESPACE = {**vars(appbuilder), "Optional": Optional, "Union": Union}


def sdk_type(annotation: str) -> Any:
    """An annotation of the table, with the SDK's class names meaning compat.appbuilder's classes."""
    return eval(annotation, _NAMESPACE)  # the table's own literals only


def hints(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def conforms(value: Any, tp: Any) -> bool:
    """Whether ``value`` is what a field annotated ``tp`` holds in the SDK (nested models checked field by field)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(conforms(v, item) for v in value)
    if tp is dict:
        return isinstance(value, dict)
    if tp is int:
        return type(value) is int  # not a bool, not a datetime
    if tp is float:
        return type(value) in (int, float)
    if tp in (str, bool, bytes):
        return type(value) is tp
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return isinstance(value, tp)
    if isinstance(tp, type) and tp.__name__ in SDK_FIELDS:
        return isinstance(value, tp) and all(conforms(getattr(value, k), t) for k, t in hints(tp).items())
    raise AssertionError(f"no rule for {tp!r}")


def assert_sdk_model(value: Any, name: str) -> None:
    cls = getattr(appbuilder, name)
    assert type(value) is cls, (type(value), name)
    for field, annotation in hints(cls).items():
        assert conforms(getattr(value, field), annotation), (name, field, getattr(value, field))


@pytest.fixture
def srv(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAppBuilderServer]:
    server = FakeAppBuilderServer(token=TOKEN)
    with server.in_thread():
        monkeypatch.setenv("APPBUILDER_TOKEN", TOKEN)
        monkeypatch.setenv("GATEWAY_URL", server.url)
        yield server


# -- the classes ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SDK_FIELDS))
def test_each_sdk_model_has_the_sdks_field_names_and_types(name: str) -> None:
    assert name in appbuilder.__all__
    cls = getattr(appbuilder, name)
    got = hints(cls)
    assert list(got) == list(SDK_FIELDS[name])
    for field, annotation in SDK_FIELDS[name].items():
        assert got[field] == sdk_type(annotation), (name, field)


@pytest.mark.parametrize("name", sorted(SDK_ENUMS))
def test_the_sdks_enums(name: str) -> None:
    cls = getattr(appbuilder, name)
    assert issubclass(cls, enum.Enum)
    assert {m.name: m.value for m in cls} == SDK_ENUMS[name]


def test_the_sdks_defaults_and_required_fields() -> None:
    run = appbuilder.RunResult()
    assert (run.id, run.created_at, run.completed_at, run.tools, run.final_answer) == ("", 0, 0, None, None)
    step = appbuilder.RunStepResult()
    assert (step.type, step.step_datail, step.last_error) == ("null", None, None)
    params = appbuilder.AssistantModelParameters()
    assert params.model_dump() == {
        "chat_parameters": {"temperature": 0.8, "top_p": 0.8, "penalty_score": 1.0},
        "thought_parameters": {"temperature": 0.01, "top_p": 0, "penalty_score": 1.0},
    }
    message = appbuilder.AssistantMessage(content="hi")
    assert (message.role, message.file_ids) == (appbuilder.AssistantMessageRole.USER, [])
    with pytest.raises(TypeError):
        appbuilder.AssistantMessage()  # type: ignore[call-arg]  # content is required, as in the SDK
    # Mutable defaults are not shared between instances.
    a, b = appbuilder.ThreadCreateResponse(), appbuilder.ThreadCreateResponse()
    a.metadata["k"] = "v"
    assert b.metadata == {}


# -- what the calls return, over loopback ------------------------------------------------------------------------
def test_every_call_returns_the_sdks_model_with_the_sdks_types(srv: FakeAppBuilderServer, tmp_path: Path) -> None:
    srv.script(RunScript(), RunScript(tool_calls=[WEATHER]), RunScript(hang=True))
    a: Any = appbuilder.assistant  # SDK-shaped code, as untyped as its users'
    path = tmp_path / "notes.txt"
    path.write_text("hello file")

    f = a.assistants.files.create(str(path))
    assert_sdk_model(f, "AssistantFilesCreateResponse")
    assert f.create_at == srv.files[f.id]["create_at"]
    listed_files = a.assistants.files.list()
    assert_sdk_model(listed_files, "AssistantFilesListResponse")
    assert listed_files.data[0].censored is appbuilder.AuditStatus.APPROVED
    assert listed_files.data[0].file_type == "txt"
    queried_file = a.assistants.files.query(f.id)
    assert_sdk_model(queried_file, "AssistantFilesQueryResponse")
    assert queried_file.create_at == f.create_at
    content = a.assistants.files.content(f.id)
    assert_sdk_model(content, "AssistantFilesContentResponse")
    assert content.content == b"hello file"

    tool = appbuilder.AssistantTool(
        function=appbuilder.AssistantFunction(
            name="get_cur_whether",
            description="天气",
            parameters=appbuilder.AssistantFunctionJsonSchema(properties={"location": {"type": "string"}}),
        )
    )
    created = a.assistants.create("weather", "d", instructions="x", tools=[tool], metadata={"k": "v"})
    assert_sdk_model(created, "AssistantCreateResponse")
    assert created.created_at == srv.assistants[created.id]["created_at"] > 0
    assert created.response_format is appbuilder.ResponseFormat.TEXT
    assert created.tools is not None
    assert created.tools[0].function.parameters == tool.function.parameters
    updated = a.assistants.update(created.id, "ERNIE-4.0T-8K", "renamed", "d2", instructions="i2", tools=[tool])
    assert_sdk_model(updated, "AssistantUpdateResponse")
    assert_sdk_model(a.assistants.query(created.id), "AssistantQueryResponse")
    assert_sdk_model(a.assistants.list(limit=5), "AssistantListResponse")
    mounted = a.assistants.mount_files(created.id, f.id)
    assert_sdk_model(mounted, "AssistantFilesResponse")
    assert_sdk_model(a.assistants.mounted_files_list(created.id), "AssistantMountedFilesListResponse")

    thread = a.threads.create(messages=[appbuilder.AssistantMessage(content="北京天气")])
    assert_sdk_model(thread, "ThreadCreateResponse")
    assert thread.created_at == srv.threads[thread.id]["created_at"] > 0
    assert_sdk_model(a.threads.query(thread.id), "ThreadQueryResponse")
    assert_sdk_model(a.threads.update(thread.id, metadata={"k": "v"}), "ThreadUpdateResponse")
    message = a.threads.messages.create(thread.id, "with a file", file_ids=[f.id])
    assert_sdk_model(message, "AssistantMessageCreateResponse")
    assert message.role is appbuilder.AssistantMessageRole.USER
    assert message.created_at == srv.messages[thread.id][-1]["created_at"] > 0
    assert_sdk_model(a.threads.messages.update(thread.id, message.id, "edited"), "AssistantMessageUpdateResponse")
    assert_sdk_model(a.threads.messages.query(thread.id, message.id), "AssistantMessageQueryResponse")
    assert_sdk_model(a.threads.messages.list(thread.id, limit=5), "AssistantMessageListResponse")
    assert_sdk_model(a.threads.messages.files(thread.id, message.id), "AssistantMessageFilesResponse")

    plain = a.assistants.create("plain", "d", instructions="x")
    a.threads.messages.create(thread.id, "hello")
    run = a.threads.runs.run(plain.id, thread.id)
    assert_sdk_model(run, "RunResult")
    wire = srv.runs[run.id]
    assert (run.created_at, run.started_at, run.completed_at) == (wire.created_at, wire.started_at, wire.completed_at)
    assert run.completed_at > 0
    assert (run.expired_at, run.cancelled_at, run.failed_at) == (0, 0, 0)
    assert run.final_answer is not None
    assert run.final_answer.message is not None
    assert_sdk_model(run.final_answer.message.content[0], "AssistantContent")
    assert_sdk_model(a.threads.runs.query(thread.id, run.id), "RunResult")
    assert_sdk_model(a.threads.runs.list(thread.id, limit=5), "RunListResponse")
    steps = a.threads.runs.steps.list(thread.id, run.id)
    assert_sdk_model(steps, "RunStepListResponse")
    assert steps.data
    step = a.threads.runs.steps.query(thread.id, run.id, steps.data[0].id)
    assert_sdk_model(step, "RunStepResult")
    assert step.created_at == wire.steps[0]["created_at"] > 0
    assert (step.expired_at, step.cancelled_at, step.failed_at) == (0, 0, 0)  # unset: the service's 0, not None
    assert step.last_error == ""  # the service's "no error", kept as the SDK keeps it

    a.threads.messages.create(thread.id, "北京天气")
    first = a.threads.runs.run(created.id, thread.id)
    assert first.status == "requires_action"
    assert_sdk_model(first, "RunResult")
    assert first.required_action is not None
    assert_sdk_model(first.required_action, "RequiredAction")
    assert first.required_action.submit_tool_outputs is not None
    call = first.required_action.submit_tool_outputs.tool_calls[0]
    assert_sdk_model(call, "ToolCall")
    output = appbuilder.ToolOutput(tool_call_id=call.id, output="晴", run_id=first.id)
    second = a.threads.runs.run(created.id, thread.id, tool_output=output)
    assert_sdk_model(second, "RunResult")
    assert (second.id, second.status) == (first.id, "completed")

    a.threads.messages.create(thread.id, "wait")
    hung = None
    with a.threads.runs.stream_run(plain.id, thread.id) as events:
        for event in events:
            if event.event == "status" and event.event_type == "run_begin":
                hung = event.details.run_object
                break
    assert hung is not None
    cancelled = a.threads.runs.cancel(hung.id, thread.id)
    assert_sdk_model(cancelled, "RunResult")

    assert_sdk_model(a.assistants.unmount_files(created.id, f.id), "AssistantFilesDeleteResponse")
    assert_sdk_model(a.assistants.files.delete(f.id), "AssistantFilesDeleteResponse")
    assert_sdk_model(a.threads.delete(thread.id), "ThreadDeleteResponse")
    assert_sdk_model(a.assistants.delete(created.id), "AssistantDeleteResponse")


def _tool_run(srv: FakeAppBuilderServer) -> tuple[str, str, str]:
    """A non-streaming function-call run answered with its tool output: (assistant, thread, run) ids."""
    srv.script(RunScript(tool_calls=[WEATHER]))
    a: Any = appbuilder.assistant  # SDK-shaped code, as untyped as its users'
    created = a.assistants.create("weather", "d", instructions="x")
    thread = a.threads.create(messages=[{"content": "北京天气"}])
    first = a.threads.runs.run(created.id, thread.id)
    call = first.required_action.submit_tool_outputs.tool_calls[0]
    a.threads.runs.run(created.id, thread.id, tool_output={"tool_call_id": call.id, "output": "晴", "run_id": first.id})
    return created.id, thread.id, first.id


@pytest.mark.parametrize("key", ["step_details", "step_datail"])
def test_steps_carry_the_sdks_step_datail_and_camelcase_action_info(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeAppBuilderServer(token=TOKEN, step_details_key=key)
    with server.in_thread():
        monkeypatch.setenv("APPBUILDER_TOKEN", TOKEN)
        monkeypatch.setenv("GATEWAY_URL", server.url)
        _, thread_id, run_id = _tool_run(server)
        steps = appbuilder.assistant.threads.runs.steps.list(thread_id, run_id, order="asc")
    tool_step = steps.data[0]  # type: ignore[index]
    assert_sdk_model(tool_step, "RunStepResult")
    assert "step_details" not in tool_step.model_dump()
    detail = tool_step.step_datail
    assert detail is not None
    assert_sdk_model(detail, "RunStepDetail")
    assert detail.type == "tool_calls"
    assert detail.action_info is not None
    assert detail.action_info.model_dump() == {
        "toolName": "get_cur_whether",
        "actionName": "function_call",
        "actionContent": json.dumps(WEATHER.arguments, ensure_ascii=False),
    }
    assert detail.tool_calls is not None
    assert detail.tool_calls[0].function is not None
    assert detail.tool_calls[0].function.name == "get_cur_whether"


def test_stream_run_yields_the_sdks_event_models(srv: FakeAppBuilderServer) -> None:
    srv.script(RunScript())
    a: Any = appbuilder.assistant  # SDK-shaped code, as untyped as its users'
    created = a.assistants.create("plain", "d", instructions="x")
    thread = a.threads.create(messages=[appbuilder.AssistantMessage(content="hello")])
    events = list(a.threads.runs.stream_run(created.id, thread.id))
    statuses = [e for e in events if isinstance(e, appbuilder.StreamRunStatus)]
    pieces = [e for e in events if isinstance(e, appbuilder.StreamRunMessage)]
    assert len(statuses) + len(pieces) == len(events)
    assert pieces
    for status in statuses:
        assert_sdk_model(status, "StreamRunStatus")
    for piece in pieces:
        assert_sdk_model(piece, "StreamRunMessage")
    assert [p.is_end for p in pieces][-1] == 1
    end = statuses[-1]
    assert (end.event, end.event_type, end.status) == ("status", "run_end", "completed")
    assert end.details is not None
    assert end.details.run_object is not None
    wire = srv.runs[end.details.run_object.id]
    assert end.details.run_object.completed_at == wire.completed_at > 0
    begin = statuses[0]
    assert begin.event_type == "run_begin"
    assert begin.details is not None
    assert begin.details.run_object is not None
    assert begin.details.run_object.created_at == wire.created_at


class _Recorder(appbuilder.AssistantEventHandler):
    def __init__(self) -> None:
        self.got: list[Any] = []
        self.calls: Any = None

    def run_begin(self, status_event: Any) -> None:
        self.got.append(status_event)

    def tool_calls(self, status_event: Any) -> None:
        self.got.append(status_event)
        ctx = self.stream_run_context
        self.calls = ctx.current_tool_calls
        outputs = [appbuilder.ToolOutput(tool_call_id=c.id, output="晴") for c in self.calls]
        submitted = appbuilder.assistant.threads.runs.submit_tool_outputs(
            ctx.current_run_id, ctx.current_thread_id, outputs
        )
        assert_sdk_model(submitted, "RunResult")

    def messages(self, messages_event: Any) -> None:
        self.got.append(messages_event)

    def run_end(self, status_event: Any) -> None:
        self.got.append(status_event)


def test_the_event_handler_sees_the_sdks_models(srv: FakeAppBuilderServer) -> None:
    srv.script(RunScript(tool_calls=[WEATHER]))
    a: Any = appbuilder.assistant  # SDK-shaped code, as untyped as its users'
    created = a.assistants.create("weather", "d", instructions="x")
    thread = a.threads.create(messages=[{"content": "北京天气"}])
    handler = _Recorder()
    with a.threads.runs.stream_run_with_handler(created.id, thread.id, event_handler=handler) as stream:
        stream.until_done()
    assert handler.got
    for event in handler.got:
        name = "StreamRunMessage" if event.event == "message" else "StreamRunStatus"
        assert_sdk_model(event, name)
    assert handler.calls
    for call in handler.calls:
        assert_sdk_model(call, "ToolCall")
    assert handler.got[-1].status == "completed"


# -- the pydantic methods -----------------------------------------------------------------------------------------
def test_model_dump_and_model_dump_json_as_pydantic_2(srv: FakeAppBuilderServer) -> None:
    srv.script(RunScript())
    a: Any = appbuilder.assistant  # SDK-shaped code, as untyped as its users'
    created = a.assistants.create("plain", "d", instructions="x", metadata={"k": "中文"})
    thread = a.threads.create(messages=[{"content": "hello"}])
    run = a.threads.runs.run(created.id, thread.id)

    dumped = run.model_dump()
    assert list(dumped) == list(SDK_FIELDS["RunResult"])
    assert isinstance(dumped["created_at"], int)
    assert (
        dumped["final_answer"]["message"]["content"][0]["text"]["value"]
        == run.final_answer.message.content[0].text.value
    )
    assert appbuilder.RunResult.model_validate(dumped) == run
    assert appbuilder.RunResult.model_validate_json(run.model_dump_json()) == run
    assert run.model_dump(include={"id", "status"}) == {"id": run.id, "status": "completed"}
    assert "final_answer" not in run.model_dump(exclude={"final_answer"})
    assert "required_action" not in run.model_dump(exclude_none=True)

    # python mode keeps the enum members, json mode their values; the JSON is compact and keeps non-ASCII text.
    assert created.model_dump()["response_format"] is appbuilder.ResponseFormat.TEXT
    assert created.model_dump(mode="json")["response_format"] == "text"
    text = created.model_dump_json()
    assert json.loads(text) == created.model_dump(mode="json")
    assert '"metadata":{"k":"中文"}' in text
    assert json.loads(created.model_dump_json(indent=2)) == json.loads(text)
    assert str(run).startswith(f"id='{run.id}' object=")
    assert repr(run).startswith(f"RunResult(id='{run.id}', ")

    # pydantic 2 keeps the version 1 names, deprecated.
    with pytest.deprecated_call():
        assert run.dict() == dumped
    with pytest.deprecated_call():
        assert json.loads(run.json()) == json.loads(run.model_dump_json())

    copied = run.model_copy(update={"status": "cancelled"})
    assert (copied.status, run.status) == ("cancelled", "completed")
    with pytest.raises(ValueError, match="mode"):
        run.model_dump(mode="yaml")


def test_request_models_go_out_as_the_sdk_sends_them(srv: FakeAppBuilderServer) -> None:
    srv.script(RunScript())
    a: Any = appbuilder.assistant  # SDK-shaped code, as untyped as its users'
    created = a.assistants.create("plain", "d", instructions="x")
    thread = appbuilder.AssistantThread.model_validate({"messages": [{"content": "hi", "role": "user"}]})
    assert thread.messages[0] == appbuilder.AssistantMessage(content="hi")
    run = a.threads.runs.run(
        created.id,
        thread=thread,
        model_parameters=appbuilder.AssistantModelParameters(),
        user_loc=appbuilder.AssistantUserLoc(uip="127.0.0.1"),
    )
    assert run.status == "completed"
    body = srv.requests_to("/v2/threads/runs")[-1].json()
    assert body["thread"] == {"messages": [{"content": "hi", "role": "user", "file_ids": []}]}
    assert body["model_parameters"] == appbuilder.AssistantModelParameters().model_dump()
    assert body["user_loc"]["uip"] == "127.0.0.1"  # (the client leaves out the unset keys)


def test_construction_converts_and_checks_as_pydantic_does() -> None:
    # What the SDK's pydantic 2 models hold for the same arguments (run against appbuilder-sdk's type modules).
    thread = appbuilder.AssistantThread(messages=[{"content": "hi"}])  # type: ignore[list-item]
    assert thread.messages == [appbuilder.AssistantMessage(content="hi")]
    assert thread.messages[0].role is appbuilder.AssistantMessageRole.USER
    assert appbuilder.AssistantMessage(content="hi", role="assistant").role is appbuilder.AssistantMessageRole.ASSISTANT  # type: ignore[arg-type]
    params = appbuilder.AssistantModelParameters(chat_parameters={"temperature": 1})  # type: ignore[arg-type]
    assert params.chat_parameters == appbuilder.AssistantChatParameters(temperature=1.0)
    assert type(params.chat_parameters.temperature) is float
    top_p = appbuilder.AssistantThoughtParameters().top_p
    assert (top_p, type(top_p)) == (0, int)  # a default is kept as written, as pydantic does
    assert appbuilder.RunResult(created_at="5").created_at == 5  # type: ignore[arg-type]
    assert appbuilder.ToolOutput(tool_call_id="c", output="o").model_dump() == {
        "tool_call_id": "c",
        "output": "o",
        "run_id": "",
    }
    with pytest.raises(ValueError, match=r"AssistantMessage\.content: input should be a valid string"):
        appbuilder.AssistantMessage(content=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"RunResult\.created_at: input should be a valid integer"):
        appbuilder.RunResult(created_at="soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"AssistantThread\.messages"):
        appbuilder.AssistantThread(messages=["hi"])  # type: ignore[list-item]
