"""compat.appbuilder's SDK surface beyond the calls: the SDK's exception classes on every failure, the event-handler
streaming API (stream_run_with_handler, AssistantEventHandler, AssistantStreamManager, StreamRunContext), and the SDK's
model names; all against the fake server over loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import aioagents.compat.appbuilder as appbuilder
from aioagents.testing import Fault
from aioagents.testing._appbuilder import FakeAppBuilderServer, RunScript, ToolCallScript

TOKEN = "fake-appbuilder-token"
WEATHER = ToolCallScript(name="get_cur_whether", arguments={"location": "北京", "unit": "摄氏度"})
RUNS = "/v2/threads/runs"

# The SDK's exception classes (appbuilder/core/_exception.py) that the Assistants API can raise.
SDK_EXCEPTIONS = [
    "BaseRPCException",
    "BadRequestException",
    "UnAuthorizedException",
    "ForbiddenException",
    "NotFoundException",
    "MethodNotAllowedException",
    "ConflictException",
    "MissingContentLengthException",
    "PreconditionFailedException",
    "UnprocessableEntityException",
    "DependencyFailedException",
    "TooManyRequestsException",
    "InternalServerErrorException",
    "InsufficientStorageException",
    "HTTPConnectionException",
    "AppBuilderServerException",
    "AssistantServerException",
    "InvalidRequestArgumentError",
    "InternalServerException",
]
PRETTY_ERROR = b"""{
  "error": {
    "code": "ThreadNotFound",
    "message": "thread thread_x not found",
    "type": "invalid_request_error"
  }
}
"""


@pytest.fixture
def srv(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAppBuilderServer]:
    server = FakeAppBuilderServer(token=TOKEN)
    with server.in_thread():
        monkeypatch.setenv("APPBUILDER_TOKEN", TOKEN)
        monkeypatch.setenv("GATEWAY_URL", server.url)
        yield server


def _weather_thread() -> tuple[str, str]:
    a = appbuilder.assistant
    tool = {"type": "function", "function": {"name": "get_cur_whether", "description": "天气", "parameters": {}}}
    weather = a.assistants.create("weather", "d", instructions="x", tools=[tool])
    thread = a.threads.create()
    a.threads.messages.create(thread.id, "北京天气")
    return weather.id, thread.id


# -- exceptions ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SDK_EXCEPTIONS)
def test_the_sdks_exception_classes_are_there_under_their_names(name: str) -> None:
    cls = getattr(appbuilder, name)
    assert issubclass(cls, appbuilder.BaseRPCException)
    assert issubclass(cls, Exception)
    assert name in appbuilder.__all__


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (400, "BadRequestException"),
        (401, "UnAuthorizedException"),
        (403, "ForbiddenException"),
        (404, "NotFoundException"),
        (405, "MethodNotAllowedException"),
        (409, "ConflictException"),
        (411, "MissingContentLengthException"),
        (422, "UnprocessableEntityException"),
        (424, "DependencyFailedException"),
        (428, "PreconditionFailedException"),
        (429, "TooManyRequestsException"),
        (500, "InternalServerErrorException"),
        (507, "InsufficientStorageException"),
        (418, "BaseRPCException"),
    ],
)
def test_an_error_status_is_the_sdks_exception(srv: FakeAppBuilderServer, status: int, name: str) -> None:
    srv.inject(Fault.status_code(status, {"message": f"status {status}"}), path="/v2/threads", times=10)
    with pytest.raises(appbuilder.BaseRPCException) as caught:
        appbuilder.assistant.threads.create()
    assert type(caught.value).__name__ == name
    assert caught.value.status == status
    assert f"http status code is {status}" in str(caught.value)


def test_except_bad_request_exception_works(srv: FakeAppBuilderServer) -> None:
    srv.inject(Fault.status_code(400, {"message": "bad"}), path="/v2/threads")
    try:
        appbuilder.assistant.threads.create()
    except appbuilder.BadRequestException as exc:
        caught: Exception | None = exc
    else:
        caught = None
    assert caught is not None


def test_a_200_error_body_is_an_assistant_server_exception(srv: FakeAppBuilderServer) -> None:
    with pytest.raises(appbuilder.AssistantServerException) as caught:
        appbuilder.assistant.threads.query("thread_missing")
    assert "not found" in str(caught.value)
    assert caught.value.code not in ("", None)


def test_a_streaming_run_answered_with_a_pretty_printed_error(srv: FakeAppBuilderServer) -> None:
    srv.inject(Fault.raw(PRETTY_ERROR, content_type="application/json"), path=RUNS)
    with pytest.raises(appbuilder.AssistantServerException) as caught:
        list(appbuilder.assistant.threads.runs.stream_run("asst_x", "thread_x"))
    assert caught.value.code == "ThreadNotFound"
    assert "thread thread_x not found" in str(caught.value)


def test_no_answer_is_an_http_connection_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPBUILDER_TOKEN", TOKEN)
    monkeypatch.setenv("GATEWAY_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(appbuilder.HTTPConnectionException):
        appbuilder.assistant.threads.runs.run("asst_x", "thread_x")


def test_bad_arguments_stay_value_errors(srv: FakeAppBuilderServer) -> None:
    with pytest.raises(ValueError, match="thread_id and thread"):
        appbuilder.assistant.threads.runs.stream_run_with_handler("asst_x")


# -- stream_run_with_handler -----------------------------------------------------------------------------------
class RecordingHandler(appbuilder.AssistantEventHandler):
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.text = ""
        self.contexts: list[tuple[str | None, str | None]] = []

    def run_begin(self, status_event: Any) -> None:
        self.seen.append("run_begin")

    def tool_calls(self, status_event: Any) -> None:
        self.seen.append("tool_calls")
        ctx = self.stream_run_context
        self.contexts.append((ctx.current_run_id, ctx.current_thread_id))
        calls = ctx.current_tool_calls
        assert calls is not None
        outputs = [appbuilder.ToolOutput(tool_call_id=c.id, output="晴, 25 摄氏度") for c in calls]
        appbuilder.assistant.threads.runs.submit_tool_outputs(ctx.current_run_id, ctx.current_thread_id, outputs)

    def messages(self, messages_event: Any) -> None:
        self.text += messages_event.content[-1].text.value

    def run_end(self, status_event: Any) -> None:
        self.seen.append(f"run_end:{status_event.status}")


def test_stream_run_with_handler_runs_callbacks_with_the_context(srv: FakeAppBuilderServer) -> None:
    srv.script(RunScript(tool_calls=[WEATHER]))
    assistant_id, thread_id = _weather_thread()
    handler = RecordingHandler()
    with appbuilder.assistant.threads.runs.stream_run_with_handler(
        assistant_id, thread_id, event_handler=handler
    ) as stream:
        assert stream is handler
        stream.until_done()
    assert handler.seen == ["run_begin", "tool_calls", "run_end:completed"]
    run_id, ctx_thread = handler.contexts[0]
    assert run_id is not None
    assert run_id.startswith("run_")
    assert ctx_thread == thread_id
    assert "晴, 25 摄氏度" in handler.text
    assert srv.requests_to("/v2/threads/runs/submit_tool_outputs")


def test_the_module_level_function_and_a_default_handler_iterate_the_events(srv: FakeAppBuilderServer) -> None:
    srv.script(RunScript())
    a = appbuilder.assistant
    created = a.assistants.create("plain", "d", instructions="x")
    thread = a.threads.create()
    a.threads.messages.create(thread.id, "hello")
    with appbuilder.stream_run_with_handler(assistant_id=created.id, thread_id=thread.id) as stream:
        events = list(stream)
        context = stream.stream_run_context
    assert isinstance(events[-1], appbuilder.StreamRunStatus)
    assert events[-1].event_type == "run_end"
    assert any(isinstance(e, appbuilder.StreamRunMessage) for e in events)
    assert context.current_run_id is not None


def test_an_error_in_the_handled_stream_is_raised_not_swallowed(srv: FakeAppBuilderServer) -> None:
    srv.inject(
        Fault.raw(
            b'event: status\ndata: {"status":"queued","event_type":"run_begin","send_id":1}\n\n'
            b'{"error": {"code": "QPS", "message": "quota exceeded"}}\n\n',
            content_type="text/event-stream",
        ),
        path=RUNS,
    )
    handler = RecordingHandler()
    with (
        appbuilder.assistant.threads.runs.stream_run_with_handler(
            "asst_x", "thread_x", event_handler=handler
        ) as stream,
        pytest.raises(appbuilder.AssistantServerException, match="quota exceeded"),
    ):
        stream.until_done()
    assert handler.seen == ["run_begin"]


def test_stream_run_context_setters_follow_the_sdk() -> None:
    ctx = appbuilder.StreamRunContext()
    ctx.set_current_run_id("run_1")
    ctx.set_current_thread_id("")
    assert (ctx.current_run_id, ctx.current_thread_id) == ("run_1", None)
    ctx.set_current_tool_calls([])
    assert ctx.current_tool_calls is None
    with pytest.raises(TypeError):
        ctx.set_current_tool_calls(["not a tool call"])


def test_a_handler_not_attached_to_a_stream_says_so() -> None:
    with pytest.raises(RuntimeError, match="stream_run_with_handler"):
        appbuilder.AssistantEventHandler().until_done()


# -- models ----------------------------------------------------------------------------------------------------------
def test_the_sdks_request_models_build_a_run(srv: FakeAppBuilderServer) -> None:
    srv.script(RunScript())
    a = appbuilder.assistant
    created = a.assistants.create("plain", "d", instructions="x")
    thread = appbuilder.AssistantThread(messages=[appbuilder.AssistantMessage(content="hi", role="user")])
    run = a.threads.runs.run(
        created.id,
        thread=thread,
        response_format=appbuilder.ResponseFormat.TEXT,
        user_info=appbuilder.AssistantUserInfo(name="Ada"),
    )
    assert isinstance(run, appbuilder.RunResult)
    assert run.status == "completed"
    body = srv.requests_to(RUNS)[-1].json()
    assert body["thread"] == {"messages": [{"content": "hi", "role": "user", "file_ids": []}]}
    assert body["user_info"]["name"] == "Ada"
