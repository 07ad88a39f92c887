"""A drop-in mirror of ``appbuilder.assistant`` (the AppBuilder SDK's Assistants API), on aioagents' client.

Change ``import appbuilder`` to ``import aioagents.compat.appbuilder as appbuilder`` and the Assistants calls run
unchanged: ``appbuilder.assistant.assistants.create(...)``, ``appbuilder.assistant.threads.messages.create(...)``,
``appbuilder.assistant.threads.runs.run(...)`` / ``stream_run(...)`` / ``list`` / ``query``,
``appbuilder.assistant.threads.runs.steps.list(...)``, ``appbuilder.assistant.assistants.files.create(...)``, with
the SDK's positional orders (``submit_tool_outputs(run_id, thread_id, ...)``, ``cancel(run_id, thread_id)``) and
defaults. ``APPBUILDER_TOKEN`` and ``GATEWAY_URL`` are read at call time, as the SDK does.

What differs, on purpose:

- one pooled client per token and gateway instead of a new ``requests`` session per attribute access; idempotent
  calls (query, list, download, content) are retried on transient failures, nothing else is;
- answers are aioagents models (same field names: ``run.final_answer.message.content[0].text.value``), timestamps
  are ``datetime`` values (``None`` when unset) and errors are the aioagents error tree (a 200 with an ``error``
  body raises :class:`~aioagents.assistants.AssistantServerError`; bad arguments raise a ``ValueError`` before any
  request);
- ``threads.update`` sends ``metadata`` (the SDK drops it), and ``messages.update`` leaves the files alone unless
  ``file_ids`` is given (the SDK's ``[]`` default detaches them);
- ``stream_run`` yields each event once (``ping`` skipped) as typed events with ``.event``, ``.event_type``,
  ``.status``, ``.details`` and ``.content`` like the SDK's; ``stream_run_with_handler`` returns an
  :class:`AssistantStreamManager` driving an :class:`AssistantEventHandler` (callbacks per event type, a
  :class:`StreamRunContext` with the current run, thread, step and tool calls), as the SDK's does, except that an
  error in the stream is raised instead of logged and swallowed.

Errors are the SDK's classes (:class:`BaseRPCException` and its tree, same names): a status error is
``BadRequestException`` (400), ``UnAuthorizedException`` (401), ``ForbiddenException`` (403), ``NotFoundException``
(404), … ``InternalServerErrorException`` (500), ``InsufficientStorageException`` (507), any other status
``BaseRPCException``; a 200 with an ``error`` body ``AssistantServerException`` (``code``, ``description``); no
usable answer ``HTTPConnectionException``. Each keeps aioagents' error as ``__cause__`` and its ``status`` and
``request_id``. Bad arguments stay a ``ValueError`` (the SDK's pydantic errors are ``ValueError`` s too).

The SDK's model class names are exported too (``AssistantThread``, ``AssistantMessage``, ``ToolOutput``,
``RunResult``, ``StreamRunStatus``, ``StreamRunMessage``, …), as the aioagents models with the same field names;
timestamps are ``datetime`` values where the SDK has epoch milliseconds.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import attrs

from aioagents._exceptions import AioAgentsError, APIConnectionError, APIStatusError, InvalidRequestError
from aioagents.assistants import (
    Assistant,
    AssistantFile,
    AssistantServerError,
    DeletedObject,
    File,
    FileList,
    FinalAnswer,
    FinalAnswerMessage,
    FunctionCall,
    LastError,
    Message,
    MessageContent,
    MessageCreation,
    MessageEvent,
    MessageFile,
    ModelParameters,
    Page,
    RequiredAction,
    Run,
    RunEvent,
    RunStep,
    SamplingParameters,
    StatusDetails,
    StatusEvent,
    StepDetails,
    SubmitToolOutputsAction,
    Thread,
    ThreadMessage,
    Tool,
    ToolCall,
    ToolInfo,
    ToolOutput,
    UserInfo,
    UserLocation,
)
from aioagents.assistants.models import ActionInfo, converter
from aioagents.compat._stream import TranslatedStream
from aioagents.sync import AssistantsClient

__all__ = [
    "AppBuilderServerException",
    "AssistantContent",
    "AssistantEventHandler",
    "AssistantMessage",
    "AssistantMessageRole",
    "AssistantModelParameters",
    "AssistantServerException",
    "AssistantStreamManager",
    "AssistantThread",
    "AssistantTool",
    "AssistantUserInfo",
    "AssistantUserLoc",
    "BadRequestException",
    "BaseRPCException",
    "ConflictException",
    "DependencyFailedException",
    "FinalAnswer",
    "FinalAnswerMessage",
    "ForbiddenException",
    "FunctionCall",
    "HTTPConnectionException",
    "InsufficientStorageException",
    "InternalServerErrorException",
    "InternalServerException",
    "InvalidRequestArgumentError",
    "LastError",
    "MethodNotAllowedException",
    "MissingContentLengthException",
    "NotFoundException",
    "PreconditionFailedException",
    "RequiredAction",
    "ResponseFormat",
    "RunActionInfo",
    "RunMessageCreation",
    "RunResult",
    "RunStepDetail",
    "RunStepResult",
    "StreamRunContext",
    "StreamRunDetail",
    "StreamRunMessage",
    "StreamRunStatus",
    "SubmitToolOutput",
    "TooManyRequestsException",
    "ToolCall",
    "ToolInfo",
    "ToolOutput",
    "UnAuthorizedException",
    "UnprocessableEntityException",
    "assistant",
    "stream_run_with_handler",
]

log = logging.getLogger("aioagents.compat.appbuilder")


# -- the SDK's exceptions (appbuilder.core._exception), same names and tree -----------------------------------
class BaseRPCException(Exception):
    """The SDK's base error. Ours carry ``status`` and ``request_id`` (None when unknown), and aioagents' error as
    ``__cause__``."""

    status: int | None = None
    request_id: str | None = None


class BadRequestException(BaseRPCException):
    """HTTP 400."""


class UnAuthorizedException(BaseRPCException):
    """HTTP 401."""


class ForbiddenException(BaseRPCException):
    """HTTP 403."""


class NotFoundException(BaseRPCException):
    """HTTP 404."""


class MethodNotAllowedException(BaseRPCException):
    """HTTP 405."""


class ConflictException(BaseRPCException):
    """HTTP 409."""


class MissingContentLengthException(BaseRPCException):
    """HTTP 411."""


class PreconditionFailedException(BaseRPCException):
    """HTTP 428 (the SDK maps *precondition required* to this class, despite its name)."""


class UnprocessableEntityException(BaseRPCException):
    """HTTP 422."""


class DependencyFailedException(BaseRPCException):
    """HTTP 424."""


class TooManyRequestsException(BaseRPCException):
    """HTTP 429."""


class InternalServerErrorException(BaseRPCException):
    """HTTP 500."""


class InsufficientStorageException(BaseRPCException):
    """HTTP 507."""


class HTTPConnectionException(BaseRPCException):
    """No usable answer: the connection failed, timed out, or the answer could not be read."""


class InternalServerException(BaseRPCException):
    """The SDK's name for a service-side failure outside the status mapping."""


class _DescribedException(BaseRPCException):
    description: str = "Interal Server Error"  # sic, the SDK's text
    code: Any = 500

    def __str__(self) -> str:
        return self.description


class AppBuilderServerException(_DescribedException):
    """A failed answer of the AppBuilder backend (``code``, ``description``)."""

    def __init__(
        self,
        request_id: str = "",
        code: Any = "",
        message: str = "",
        service_err_code: str = "",
        service_err_message: str = "",
    ) -> None:
        super().__init__(message)
        self.request_id = request_id or None
        self.description = (
            f"request_id={request_id}, code={code}, message={message}, service_err_code={service_err_code}, "
            f"service_err_message={service_err_message} "
        )
        self.code = code or type(self).code


class AssistantServerException(_DescribedException):
    """The Assistants service answered with an ``error`` body (usually on an HTTP 200): ``code``, ``description``."""

    def __init__(
        self, request_id: str = "", code: Any = "", message: str = "", type: str = "", params: Any = ""
    ) -> None:
        super().__init__(message)
        self.request_id = request_id or None
        self.description = f"request_id={request_id}, code={code}, message={message}, type={type}, params={params} "
        self.code = code or _DescribedException.code


class InvalidRequestArgumentError(_DescribedException):
    """An invalid request argument (``code`` 400)."""

    description = "Invalid Request Params Error"
    code: Any = 400

    def __init__(self, message: str = "", request_id: str = "", code: Any = "") -> None:
        super().__init__(message)
        self.description = f"request_id={request_id}, code={code}, message={message}"
        self.code = code or InvalidRequestArgumentError.code


_STATUS_EXCEPTIONS: dict[int, type[BaseRPCException]] = {
    400: BadRequestException,
    401: UnAuthorizedException,
    403: ForbiddenException,
    404: NotFoundException,
    405: MethodNotAllowedException,
    409: ConflictException,
    411: MissingContentLengthException,
    422: UnprocessableEntityException,
    424: DependencyFailedException,
    428: PreconditionFailedException,
    429: TooManyRequestsException,
    500: InternalServerErrorException,
    507: InsufficientStorageException,
}


def _sdk_error(exc: AioAgentsError) -> BaseException:
    """The SDK's exception for one of ours (bad arguments stay ``ValueError`` s, as the SDK's are)."""
    if isinstance(exc, InvalidRequestError):
        return exc
    if isinstance(exc, AssistantServerError):
        params = exc.param if exc.param is not None else ""
        out: BaseRPCException = AssistantServerException(
            exc.request_id or "", exc.code or "", exc.message, exc.type or "", params
        )
        out.status = exc.status
        return out
    if isinstance(exc, APIStatusError):
        body = exc.body if isinstance(exc.body, str) else json.dumps(exc.body, ensure_ascii=False)
        out = _STATUS_EXCEPTIONS.get(exc.status, BaseRPCException)(
            f"request_id={exc.request_id}, http status code is {exc.status}, body is {body}"
        )
        out.status, out.request_id = exc.status, exc.request_id
        return out
    if isinstance(exc, APIConnectionError):
        return HTTPConnectionException(str(exc))
    return BaseRPCException(str(exc))


def _translating(call: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call)
    def translated(*args: Any, **kwargs: Any) -> Any:
        try:
            result = call(*args, **kwargs)
        except AioAgentsError as exc:
            raise _sdk_error(exc) from exc
        if isinstance(result, Iterator):
            return TranslatedStream(result, _sdk_error)
        return result

    return translated


class _SDKErrors:
    """The sync client seen through the SDK's error types: namespaces are wrapped, each call translates its
    failures (and those of a stream it returns)."""

    __slots__ = ("_target",)

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        return _translating(value) if callable(value) else _SDKErrors(value)


_DEFAULT_INSTRUCTIONS = "你是百度制作的AI助手"

_lock = threading.Lock()
# One client per (token, gateway); their connections live on the sync bridge's loops, which close them at exit.
_clients: dict[tuple[str, str], AssistantsClient] = {}


def _client() -> AssistantsClient:
    """The pooled client for the current token and gateway, raising the SDK's exceptions (a proxy of it)."""
    token = os.environ.get("APPBUILDER_TOKEN", "")
    gateway = os.environ.get("GATEWAY_URL", "")
    if not token:
        raise ValueError("APPBUILDER_TOKEN is not set")
    with _lock:
        client = _clients.get((token, gateway))
        if client is None:
            client = _clients[(token, gateway)] = AssistantsClient(token=token, base_url=gateway or None)
        return cast(AssistantsClient, _SDKErrors(client))


def _plain(value: Any) -> Any:
    """SDK request objects (pydantic models), our attrs models and plain data, as JSON-ready data."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump()
    if attrs.has(type(value)):
        return converter.unstructure(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _thread_messages(thread: Any) -> list[Any] | None:
    """The SDK's ``AssistantThread(messages=[...])`` (or its dict form) as our message list."""
    data = _plain(thread)
    if data is None:
        return None
    if isinstance(data, Mapping):
        return list(data.get("messages") or [])
    return list(data)


def _model_parameters(value: Any) -> ModelParameters | None:
    data = _plain(value)
    if data is None:
        return None
    if isinstance(value, ModelParameters):
        return value

    def part(name: str) -> SamplingParameters | None:
        raw = data.get(name)
        return None if raw is None else SamplingParameters(**raw)

    return ModelParameters(chat_parameters=part("chat_parameters"), thought_parameters=part("thought_parameters"))


# -- the SDK's model names ------------------------------------------------------------------------------------
class AssistantMessageRole(str, enum.Enum):
    """Who wrote a thread message."""

    USER = "user"
    ASSISTANT = "assistant"


class ResponseFormat(str, enum.Enum):
    """An assistant's answer format."""

    TEXT = "text"
    JSON_OBJECT = "json_object"


@attrs.define(kw_only=True)
class AssistantThread:
    """The messages appended to a thread for one run (``runs.run(..., thread=AssistantThread(messages=[...]))``)."""

    messages: list[Any] = attrs.field(factory=list)

    def model_dump(self) -> dict[str, Any]:
        """The thread as the request body holds it."""
        return {"messages": [_plain(m) for m in self.messages]}


AssistantMessage = ThreadMessage
AssistantContent = MessageContent
AssistantTool = Tool
AssistantModelParameters = ModelParameters
AssistantUserInfo = UserInfo
AssistantUserLoc = UserLocation
RunResult = Run
RunStepResult = RunStep
RunStepDetail = StepDetails
RunActionInfo = ActionInfo
RunMessageCreation = MessageCreation
SubmitToolOutput = SubmitToolOutputsAction
StreamRunDetail = StatusDetails
StreamRunStatus = StatusEvent
StreamRunMessage = MessageEvent


# -- streaming with an event handler (the SDK's stream_helper) --------------------------------------------------
class StreamRunContext:
    """What a streaming run is at: the current event, tool calls, run, step, thread and assistant ids.

    The handler keeps it up to date (``run_begin`` sets the run, thread and assistant; ``tool_calls`` the tool
    calls; ``tool_step_begin``/``tool_step_end`` the step), so a callback can submit tool outputs with
    ``self.stream_run_context.current_run_id``.
    """

    def __init__(self) -> None:
        self._current_event: StatusEvent | MessageEvent | None = None
        self._current_tool_calls: list[ToolCall] | None = None
        self._current_run_id: str | None = None
        self._current_run_step_id: str | None = None
        self._current_thread_id: str | None = None
        self._current_assistant_id: str | None = None

    @staticmethod
    def _id(value: Any) -> str | None:
        return value if isinstance(value, str) and value else None

    @property
    def current_event(self) -> StatusEvent | MessageEvent | None:
        """The event being handled."""
        return self._current_event

    def set_current_event(self, event: Any) -> None:
        """Set the event being handled (anything but a status or message event clears it)."""
        self._current_event = event if isinstance(event, (StatusEvent, MessageEvent)) else None

    @property
    def current_tool_calls(self) -> list[ToolCall] | None:
        """The tool calls the run waits for."""
        return self._current_tool_calls

    def set_current_tool_calls(self, tool_calls: Any) -> None:
        """Set the tool calls (an empty or missing list clears them)."""
        if isinstance(tool_calls, list) and tool_calls:
            if not all(isinstance(call, ToolCall) for call in tool_calls):
                raise TypeError("current_tool_calls should be a list of ToolCall objects")
            self._current_tool_calls = tool_calls
        else:
            self._current_tool_calls = None

    # The four ids: each a read-only ``current_<name>`` and a ``set_current_<name>(value)`` that keeps only a
    # non-empty string (anything else clears it), as the SDK's.
    current_run_id = property(lambda self: self._current_run_id, doc="The run's id.")
    current_run_step_id = property(lambda self: self._current_run_step_id, doc="The current step's id.")
    current_thread_id = property(lambda self: self._current_thread_id, doc="The thread's id.")
    current_assistant_id = property(lambda self: self._current_assistant_id, doc="The assistant's id.")

    def set_current_run_id(self, run_id: Any) -> None:
        """Set the run's id."""
        self._current_run_id = self._id(run_id)

    def set_current_run_step_id(self, run_step_id: Any) -> None:
        """Set the current step's id."""
        self._current_run_step_id = self._id(run_step_id)

    def set_current_thread_id(self, thread_id: Any) -> None:
        """Set the thread's id."""
        self._current_thread_id = self._id(thread_id)

    def set_current_assistant_id(self, assistant_id: Any) -> None:
        """Set the assistant's id."""
        self._current_assistant_id = self._id(assistant_id)

    def reset_step_context(self) -> None:
        """Forget the per-event parts (tool calls, step, event) before the next event."""
        self._current_tool_calls = None
        self._current_run_step_id = None
        self._current_event = None


class AssistantEventHandler:
    """Handles a streaming run's events: subclass it and override the callbacks you need.

    >>> class Handler(AssistantEventHandler):
    ...     def tool_calls(self, status_event):
    ...         ctx = self.stream_run_context
    ...         assistant.threads.runs.submit_tool_outputs(ctx.current_run_id, ctx.current_thread_id, outputs)
    >>> with assistant.threads.runs.stream_run_with_handler(assistant_id, thread_id, event_handler=Handler()) as s:
    ...     s.until_done()

    Iterating yields every event after its callback ran. A failure of the stream raises the SDK's exception (the
    SDK logged it and stopped quietly).
    """

    _events: Iterator[Any] | None = None

    def _init(self, response: Iterator[Any]) -> None:
        self._response = response
        self._events = self._stream()
        self.stream_run_context = StreamRunContext()

    def _stream(self) -> Iterator[Any]:
        assert self._response is not None
        for event in self._response:
            self.stream_run_context.reset_step_context()
            yield self._process(event)

    def _process(self, event: Any) -> Any:
        if isinstance(event, MessageEvent):
            self.stream_run_context.set_current_event(event)
            self.messages(event)
        elif isinstance(event, StatusEvent):
            self.stream_run_context.set_current_event(event)
            details = event.details
            if event.event_type == "run_begin" and details is not None and details.run_object is not None:
                run = details.run_object
                self.stream_run_context.set_current_run_id(run.id)
                self.stream_run_context.set_current_assistant_id(run.assistant_id)
                self.stream_run_context.set_current_thread_id(run.thread_id)
            elif event.event_type == "tool_calls" and details is not None:
                self.stream_run_context.set_current_tool_calls(details.tool_calls)
            elif event.event_type in ("tool_step_begin", "tool_step_end") and details is not None:
                step = details.run_step_object
                self.stream_run_context.set_current_run_step_id(step.id if step is not None else None)
            callback = self._callbacks().get(event.event_type)
            if callback is not None:
                callback(event)
            else:
                log.warning("unknown status event %r: %r", event.event_type, event)
        return event

    def _callbacks(self) -> dict[str, Callable[[StatusEvent], None]]:
        return {
            "run_begin": self.run_begin,
            "run_end": self.run_end,
            "tool_step_begin": self.tool_step_begin,
            "tool_step_end": self.tool_step_end,
            "run_cancelling": self.run_cancelling,
            "tool_calls": self.tool_calls,
            "message_creation": self.message_creation,
            "tool_submitted_output": self.tool_submitted_output,
        }

    def __iter__(self) -> Iterator[Any]:
        if self._events is None:
            raise RuntimeError("the handler is not attached to a stream (use stream_run_with_handler)")
        return self._events

    def __next__(self) -> Any:
        return next(iter(self))

    def until_done(self) -> None:
        """Read the stream to its end (running the callbacks)."""
        for _ in self:
            pass

    def messages(self, messages_event: MessageEvent) -> None:
        """Called for each assistant text event."""

    def tool_calls(self, status_event: StatusEvent) -> None:
        """Called when the run waits for tool outputs (``stream_run_context.current_tool_calls``)."""

    def tool_submitted_output(self, status_event: StatusEvent) -> None:
        """Called when submitted tool outputs were taken."""

    def message_creation(self, status_event: StatusEvent) -> None:
        """Called when the assistant starts a message."""

    def run_begin(self, status_event: StatusEvent) -> None:
        """Called when the run starts."""

    def run_end(self, status_event: StatusEvent) -> None:
        """Called when the run ends (completed, cancelled, failed)."""

    def tool_step_begin(self, status_event: StatusEvent) -> None:
        """Called when a tool step starts."""

    def tool_step_end(self, status_event: StatusEvent) -> None:
        """Called when a tool step ends."""

    def run_cancelling(self, status_event: StatusEvent) -> None:
        """Called when a cancel is under way."""


class AssistantStreamManager:
    """What ``stream_run_with_handler`` returns: ``with`` it to get the handler; leaving closes the stream."""

    def __init__(self, response: Iterator[Any], event_handler: AssistantEventHandler) -> None:
        self._response = response
        self._event_handler = event_handler
        self._event_handler._init(response)

    def __enter__(self) -> AssistantEventHandler:
        return self._event_handler

    def __exit__(self, *exc: object) -> None:
        close = getattr(self._response, "close", None)
        if callable(close):
            close()


class Files:
    """``appbuilder.assistant.assistants.files``."""

    def create(self, file_path: str, purpose: str = "assistant") -> File:
        """Upload a file (streamed)."""
        if purpose != "assistant":
            raise ValueError("purpose must be 'assistant'")
        return _client().files.create(file_path)

    def list(self) -> FileList:
        """Every uploaded file."""
        return _client().files.list()

    def query(self, file_id: str) -> File:
        """One file."""
        if not isinstance(file_id, str):
            raise TypeError("file_id must be str")
        return _client().files.query(file_id)

    def delete(self, file_id: str) -> DeletedObject:
        """Delete a file."""
        return _client().files.delete(file_id)

    def download(self, file_id: str, file_path: str = "", timeout: float | None = None) -> None:
        """Save a file into the directory ``file_path`` (default: the current one), under the service's name."""
        _client().files.download(file_id, Path(file_path or "."), timeout=timeout)

    def content(self, file_id: str, timeout: float | None = None) -> Any:
        """The file's bytes and content type (``.content``, ``.content_type``)."""
        return _client().files.content(file_id, timeout=timeout)


class Assistants:
    """``appbuilder.assistant.assistants``."""

    @property
    def files(self) -> Files:
        """File uploads (the SDK keeps them under ``assistants``)."""
        return Files()

    def create(
        self,
        name: str,
        description: str,
        model: str = "ERNIE-4.0T-8K",
        response_format: str = "text",
        instructions: str = _DEFAULT_INSTRUCTIONS,
        thought_instructions: str = "",
        chat_instructions: str = "",
        tools: Sequence[Any] = (),
        file_ids: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> Assistant:
        """Create an assistant."""
        return _client().assistants.create(
            name=name,
            description=description,
            model=model,
            response_format=response_format,
            instructions=instructions,
            thought_instructions=thought_instructions,
            chat_instructions=chat_instructions,
            tools=[_plain(t) for t in tools],
            file_ids=list(file_ids),
            metadata=metadata,
        )

    def update(
        self,
        assistant_id: str,
        model: str,
        name: str,
        description: str,
        instructions: str = "",
        tools: Sequence[Any] = (),
        thought_instructions: str = "",
        chat_instructions: str = "",
        response_format: str = "text",
        file_ids: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> Assistant:
        """Replace an assistant's settings."""
        return _client().assistants.update(
            assistant_id,
            model=model,
            name=name,
            description=description,
            instructions=instructions,
            tools=[_plain(t) for t in tools],
            thought_instructions=thought_instructions,
            chat_instructions=chat_instructions,
            response_format=response_format,
            file_ids=list(file_ids),
            metadata=metadata,
        )

    def list(self, limit: int = 20, order: str = "desc", after: str = "", before: str = "") -> Page[Assistant]:
        """One page of assistants."""
        return _client().assistants.list(limit=limit, order=order, after=after, before=before)

    def query(self, assistant_id: str) -> Assistant:
        """One assistant."""
        return _client().assistants.query(assistant_id)

    def delete(self, assistant_id: str) -> DeletedObject:
        """Delete an assistant."""
        return _client().assistants.delete(assistant_id)

    def mount_files(self, assistant_id: str, file_id: str) -> AssistantFile:
        """Mount a file on an assistant."""
        return _client().assistants.mount_files(assistant_id, file_id)

    def mounted_files_list(
        self, assistant_id: str, limit: int = 20, order: str = "desc", after: str = "", before: str = ""
    ) -> Page[AssistantFile]:
        """One page of the files mounted on an assistant."""
        return _client().assistants.mounted_files_list(
            assistant_id, limit=limit, order=order, after=after, before=before
        )

    def unmount_files(self, assistant_id: str, file_id: str) -> DeletedObject:
        """Unmount a file from an assistant."""
        return _client().assistants.unmount_files(assistant_id, file_id)


class Messages:
    """``appbuilder.assistant.threads.messages``."""

    def create(self, thread_id: str, content: str, role: str = "user", file_ids: Sequence[str] = ()) -> Message:
        """Add a user message to a thread."""
        if role != "user":
            raise ValueError("only user messages can be created")
        return _client().threads.messages.create(thread_id, content, file_ids=list(file_ids))

    def update(self, thread_id: str, message_id: str, content: str, file_ids: Sequence[str] | None = None) -> Message:
        """Change a message's content (and its files when ``file_ids`` is given)."""
        return _client().threads.messages.update(thread_id, message_id, content=content, file_ids=file_ids)

    def list(
        self, thread_id: str, limit: int = 20, order: str = "desc", after: str = "", before: str = ""
    ) -> Page[Message]:
        """One page of a thread's messages."""
        return _client().threads.messages.list(thread_id, limit=limit, order=order, after=after, before=before)

    def query(self, thread_id: str, message_id: str) -> Message:
        """One message."""
        return _client().threads.messages.query(thread_id, message_id)

    def files(
        self,
        thread_id: str,
        message_id: str,
        limit: int = 20,
        order: str = "desc",
        after: str = "",
        before: str = "",
    ) -> Page[MessageFile]:
        """One page of a message's files."""
        return _client().threads.messages.files(
            thread_id, message_id, limit=limit, order=order, after=after, before=before
        )


class Steps:
    """``appbuilder.assistant.threads.runs.steps``."""

    def list(
        self, thread_id: str, run_id: str, limit: int = 20, order: str = "desc", after: str = "", before: str = ""
    ) -> Page[RunStep]:
        """One page of a run's steps."""
        return _client().threads.runs.steps.list(
            thread_id, run_id, limit=limit, order=order, after=after, before=before
        )

    def query(self, thread_id: str, run_id: str, step_id: str) -> RunStep:
        """One step."""
        return _client().threads.runs.steps.query(thread_id, run_id, step_id)


def _given(arguments: dict[str, Any]) -> dict[str, Any]:
    """A method's arguments (its ``locals()`` on entry) without ``self``. The run methods take the SDK's 14 run
    parameters in the SDK's positional order; they hand them on with this instead of restating them a second time."""
    return {name: value for name, value in arguments.items() if name != "self"}


class Runs:
    """``appbuilder.assistant.threads.runs``."""

    @property
    def steps(self) -> Steps:
        """A run's steps."""
        return Steps()

    @staticmethod
    def _args(
        assistant_id: str,
        thread_id: str,
        thread: Any,
        model: str | None,
        response_format: str,
        instructions: str | None,
        thought_instructions: str | None,
        chat_instructions: str | None,
        tools: Sequence[Any],
        metadata: Mapping[str, str] | None,
        tool_output: Any,
        model_parameters: Any,
        user_info: Any,
        user_loc: Any,
    ) -> dict[str, Any]:
        if not thread_id and thread is None:
            raise ValueError("thread_id and thread can't be empty at the same time")
        info, loc = _plain(user_info), _plain(user_loc)
        return {
            "assistant_id": assistant_id,
            "thread_id": thread_id or None,
            "thread": _thread_messages(thread),
            "model": model,
            "response_format": response_format,
            "instructions": instructions,
            "thought_instructions": thought_instructions,
            "chat_instructions": chat_instructions,
            "tools": [_plain(t) for t in tools],
            "metadata": metadata,
            "tool_output": _plain(tool_output),
            "model_parameters": _model_parameters(model_parameters),
            "user_info": None if info is None else UserInfo(**info),
            "user_loc": None if loc is None else UserLocation(**loc),
        }

    def run(
        self,
        assistant_id: str,
        thread_id: str = "",
        thread: Any = None,
        model: str | None = None,
        response_format: str = "text",
        instructions: str | None = None,
        thought_instructions: str | None = None,
        chat_instructions: str | None = None,
        tools: Sequence[Any] = (),
        metadata: Mapping[str, str] | None = None,
        tool_output: Any = None,
        model_parameters: Any = None,
        user_info: Any = None,
        user_loc: Any = None,
    ) -> Run:
        """Run the assistant on a thread and wait for the result (``requires_action`` when tools are needed)."""
        return _client().threads.runs.run(**self._args(**_given(locals())))

    def stream_run(
        self,
        assistant_id: str,
        thread_id: str = "",
        thread: Any = None,
        model: str | None = None,
        response_format: str = "text",
        instructions: str | None = None,
        thought_instructions: str | None = None,
        chat_instructions: str | None = None,
        tools: Sequence[Any] = (),
        metadata: Mapping[str, str] | None = None,
        tool_output: Any = None,
        model_parameters: Any = None,
        user_info: Any = None,
        user_loc: Any = None,
    ) -> Iterator[RunEvent]:
        """Run the assistant and yield its events (each once, ``ping`` skipped, the ``run_end`` status last)."""
        return _client().threads.runs.stream(**self._args(**_given(locals())))

    def stream_run_with_handler(
        self,
        assistant_id: str,
        thread_id: str = "",
        thread: Any = None,
        model: str | None = None,
        response_format: str = "text",
        instructions: str | None = None,
        thought_instructions: str | None = None,
        chat_instructions: str | None = None,
        tools: Sequence[Any] = (),
        metadata: Mapping[str, str] | None = None,
        tool_output: Any = None,
        event_handler: AssistantEventHandler | None = None,
        model_parameters: Any = None,
        user_info: Any = None,
        user_loc: Any = None,
    ) -> AssistantStreamManager:
        """Run the assistant with its events going through ``event_handler`` (a plain
        :class:`AssistantEventHandler` when None); the SDK's positional order, ``event_handler`` after
        ``tool_output``."""
        params = _given(locals())
        handler = params.pop("event_handler") or AssistantEventHandler()
        return AssistantStreamManager(self.stream_run(**params), handler)

    def submit_tool_outputs(self, run_id: str, thread_id: str, tool_outputs: Sequence[Any]) -> Run:
        """Answer the tool calls of a streaming run."""
        return _client().threads.runs.submit_tool_outputs(thread_id, run_id, [_plain(o) for o in tool_outputs])

    def cancel(self, run_id: str, thread_id: str, sync: bool = False) -> Run:
        """Cancel a run (``sync=True`` is not supported by the service and is refused)."""
        if sync:
            raise ValueError("sync cancel is not supported")
        return _client().threads.runs.cancel(thread_id, run_id)

    def list(
        self, thread_id: str, limit: int = 20, order: str = "desc", after: str = "", before: str = ""
    ) -> Page[Run]:
        """One page of a thread's runs."""
        return _client().threads.runs.list(thread_id, limit=limit, order=order, after=after, before=before)

    def query(self, thread_id: str, run_id: str) -> Run:
        """One run."""
        return _client().threads.runs.query(thread_id, run_id)


class Threads:
    """``appbuilder.assistant.threads``."""

    @property
    def messages(self) -> Messages:
        """A thread's messages."""
        return Messages()

    @property
    def runs(self) -> Runs:
        """A thread's runs."""
        return Runs()

    def create(self, messages: Sequence[Any] = ()) -> Thread:
        """Create a thread, optionally with first messages."""
        return _client().threads.create(messages=[_plain(m) for m in messages])

    def query(self, thread_id: str) -> Thread:
        """One thread."""
        return _client().threads.query(thread_id)

    def delete(self, thread_id: str) -> DeletedObject:
        """Delete a thread."""
        return _client().threads.delete(thread_id)

    def update(self, thread_id: str, metadata: Mapping[str, str] | None = None) -> Thread:
        """Set a thread's metadata (sent, unlike the SDK)."""
        return _client().threads.update(thread_id, metadata=dict(metadata or {}))


class _AssistantNamespace:
    """``appbuilder.assistant``: ``assistants`` and ``threads``."""

    @property
    def assistants(self) -> Assistants:
        """Assistants (and ``assistants.files``)."""
        return Assistants()

    @property
    def threads(self) -> Threads:
        """Threads (and ``threads.messages``, ``threads.runs``, ``threads.runs.steps``)."""
        return Threads()


#: The SDK's ``appbuilder.assistant``.
assistant = _AssistantNamespace()


def stream_run_with_handler(*args: Any, **kwargs: Any) -> AssistantStreamManager:
    """``assistant.threads.runs.stream_run_with_handler`` (same arguments)."""
    return assistant.threads.runs.stream_run_with_handler(*args, **kwargs)
