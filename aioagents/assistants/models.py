"""Models of the AppBuilder Assistants API, and the tolerant decoding rules the service's history demands.

Decoding rules (all in :func:`configure`, none in the classes):

- Timestamps are epoch **milliseconds**, ``0`` meaning unset: they become aware ``datetime`` values or ``None``.
- ``final_answer.message.content`` (and a message's ``content``) may be one object or a list: always a list here.
- Run-step details arrive as ``step_details`` (or the SDK's misspelt ``step_datail``): both fill ``step_details``.
- ``action_info`` uses camelCase (``toolName``); snake_case is accepted too.
- A file's creation time is ``create_at`` on the wire (``created_at`` accepted too).
- A step's ``last_error`` may be an object, a string (``""`` = no error) or null.
- ``null`` where a list or mapping is expected (``metadata: null`` in list results) becomes the empty default.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Generic, Optional, TypeVar, Union

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn

from aioagents._client import RequestOptions
from aioagents._converter import make_converter
from aioagents._converter import structure as _structure

__all__ = [
    "ActionInfo",
    "Assistant",
    "AssistantFile",
    "AssistantSettings",
    "DeletedObject",
    "File",
    "FileContent",
    "FileList",
    "FinalAnswer",
    "FinalAnswerMessage",
    "FunctionCall",
    "FunctionDefinition",
    "LastError",
    "Message",
    "MessageContent",
    "MessageCreation",
    "MessageFile",
    "MessageLike",
    "ModelParameters",
    "Page",
    "PageQuery",
    "RequiredAction",
    "Run",
    "RunParameters",
    "RunStep",
    "SamplingParameters",
    "StepDetails",
    "SubmitToolOutputsAction",
    "Text",
    "Thread",
    "ThreadMessage",
    "Tool",
    "ToolCall",
    "ToolInfo",
    "ToolLike",
    "ToolOutput",
    "ToolOutputLike",
    "ToolRunParameters",
    "UserInfo",
    "UserLocation",
    "structure",
]

T = TypeVar("T")


# -- shared pieces --------------------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class Text:
    """The text of a content part; ``annotations`` are the service's (usually null) annotation strings."""

    value: str = ""
    annotations: list[str] | None = None


@attrs.frozen(kw_only=True)
class MessageContent:
    """One content part of a message; today always ``type="text"``."""

    type: str = "text"
    text: Text | None = None


def _join_text(content: list[MessageContent]) -> str:
    return "".join(part.text.value for part in content if part.text is not None)


@attrs.frozen(kw_only=True)
class LastError:
    """An error the service reports on a run, a step or a stream's ``error_info``."""

    type: str = ""
    message: str = ""


@attrs.frozen(kw_only=True)
class DeletedObject:
    """The answer to a delete (or unmount)."""

    id: str
    object: str = ""
    deleted: bool = False


@attrs.frozen(kw_only=True)
class Page(Generic[T]):
    """One page of a list call. ``last_id`` is the cursor for the next page (``after=page.last_id``)."""

    data: list[T] = attrs.field(factory=list)
    object: str = "list"
    first_id: str = ""
    last_id: str = ""
    has_more: bool = False


# -- assistants -----------------------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class FunctionDefinition:
    """A function the model may call: JSON-Schema ``parameters`` (and optional ``responses``), few-shot ``examples``.

    ``examples`` follow the service's shape:
    ``[[{"role": "user", "content": "…", "function_call": {"name": "…", "arguments": "<json str>"}}]]``.
    """

    name: str
    description: str = ""
    parameters: dict[str, Any] = attrs.field(factory=lambda: {"type": "object", "properties": {}})
    responses: dict[str, Any] | None = None
    examples: list[list[dict[str, Any]]] | None = None


@attrs.frozen(kw_only=True)
class Tool:
    """A tool an assistant (or one run) may use. Only ``function`` tools are documented."""

    type: str = "function"
    function: FunctionDefinition | None = None

    @classmethod
    def from_function(cls, name: str, description: str = "", parameters: Mapping[str, Any] | None = None) -> Tool:
        """A function tool: ``Tool.from_function("get_weather", "…", {"type": "object", ...})``."""
        params = dict(parameters) if parameters is not None else {"type": "object", "properties": {}}
        return cls(function=FunctionDefinition(name=name, description=description, parameters=params))


@attrs.frozen(kw_only=True)
class Assistant:
    """An assistant. ``model`` is only present in the answer to an update."""

    id: str
    object: str = "assistant"
    name: str = ""
    description: str = ""
    instructions: str = ""
    thought_instructions: str = ""
    chat_instructions: str = ""
    response_format: str = "text"
    tools: list[Tool] = attrs.field(factory=list)
    file_ids: list[str] = attrs.field(factory=list)
    metadata: dict[str, str] = attrs.field(factory=dict)
    created_at: datetime | None = None
    model: str | None = None


@attrs.frozen(kw_only=True)
class AssistantFile:
    """A file mounted on an assistant (``id`` is the file's id)."""

    id: str
    object: str = ""
    created_at: datetime | None = None
    assistant_id: str = ""


# -- files ----------------------------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class File:
    """An uploaded file. ``censored`` (audit state) and ``file_type`` come only from list and query.

    Audit states: -1 auditing, 0 not audited, 1 approved, 2 rejected, 3 needs further audit, 4 and 5 audit failed.
    """

    id: str
    bytes: int = 0
    object: str = ""
    purpose: str = ""
    filename: str = ""
    classification_id: str = ""
    created_at: datetime | None = None
    censored: int | None = None
    file_type: str | None = None


@attrs.frozen(kw_only=True)
class FileList:
    """The answer of ``files.list``: every file, no paging."""

    data: list[File] = attrs.field(factory=list)
    object: str = "list"


@attrs.frozen(kw_only=True)
class FileContent:
    """A file's bytes with the response's ``content_type`` and the name from ``Content-Disposition`` (if any)."""

    content: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    content_type: str = ""
    filename: str | None = None


# -- threads and messages -------------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class ThreadMessage:
    """A message to put in a new thread (or in a run's ``thread``): a user turn with optional file ids."""

    content: str
    role: str = "user"
    file_ids: list[str] = attrs.field(factory=list)


@attrs.frozen(kw_only=True)
class Thread:
    """A conversation."""

    id: str
    object: str = "thread"
    created_at: datetime | None = None
    metadata: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Message:
    """A message in a thread."""

    id: str
    object: str = "thread.message"
    role: str = "user"
    content: list[MessageContent] = attrs.field(factory=list)
    created_at: datetime | None = None
    thread_id: str = ""
    assistant_id: str = ""
    run_id: str = ""
    file_ids: list[str] = attrs.field(factory=list)

    @property
    def text(self) -> str:
        """The message's text parts joined."""
        return _join_text(self.content)


@attrs.frozen(kw_only=True)
class MessageFile:
    """A file attached to a message."""

    id: str
    object: str = ""
    created_at: datetime | None = None
    message_id: str = ""


# -- runs -----------------------------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class FunctionCall:
    """The function a tool call asks for; ``arguments`` is a JSON string."""

    name: str
    arguments: str = "{}"
    output: str | None = None

    def parsed_arguments(self) -> dict[str, Any]:
        """``arguments`` decoded (an empty or non-object value gives ``{}``)."""
        if not self.arguments:
            return {}
        value = json.loads(self.arguments)
        return value if isinstance(value, dict) else {}


@attrs.frozen(kw_only=True)
class ToolCall:
    """A call the model wants the client to make. Ids look like ``call-<thread_id>-<run_id>-step-<n>``."""

    id: str
    type: str = "function"
    function: FunctionCall | None = None


@attrs.frozen(kw_only=True)
class SubmitToolOutputsAction:
    """The tool calls awaiting outputs."""

    tool_calls: list[ToolCall] = attrs.field(factory=list)


@attrs.frozen(kw_only=True)
class RequiredAction:
    """What a ``requires_action`` run waits for."""

    type: str = "submit_tool_outputs"
    submit_tool_outputs: SubmitToolOutputsAction | None = None


@attrs.frozen(kw_only=True)
class FinalAnswerMessage:
    """The answer message of a completed run (``message_id`` is a ``chatmsg_…`` id)."""

    message_id: str = ""
    content: list[MessageContent] = attrs.field(factory=list)


@attrs.frozen(kw_only=True)
class FinalAnswer:
    """A completed run's answer."""

    type: str = "message"
    message: FinalAnswerMessage | None = None

    @property
    def text(self) -> str:
        """The answer's text parts joined."""
        return _join_text(self.message.content) if self.message is not None else ""


@attrs.frozen(kw_only=True)
class Run:
    """A run. Status values: ``queued``, ``in_progress``, ``requires_action``, ``cancelling``, ``cancelled``,
    ``failed``, ``expired``, ``completed``; an unknown value counts as not finished."""

    id: str
    object: str = ""
    assistant_id: str = ""
    thread_id: str = ""
    model: str = ""
    instructions: str = ""
    thought_instructions: str = ""
    chat_instructions: str = ""
    tools: list[Tool] | None = None
    file_ids: list[str] | None = None
    status: str = ""
    required_action: RequiredAction | None = None
    last_error: LastError | None = None
    final_answer: FinalAnswer | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    expired_at: datetime | None = None
    cancelled_at: datetime | None = None
    failed_at: datetime | None = None
    completed_at: datetime | None = None

    TERMINAL = frozenset({"completed", "cancelled", "failed", "expired"})

    @property
    def done(self) -> bool:
        """Whether the run has finished (completed, cancelled, failed or expired)."""
        return self.status in self.TERMINAL

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The tool calls the run waits for (empty unless ``requires_action``)."""
        action = self.required_action
        if action is None or action.submit_tool_outputs is None:
            return []
        return list(action.submit_tool_outputs.tool_calls)


@attrs.frozen(kw_only=True)
class MessageCreation:
    """The message a step (or a stream event) created."""

    message_id: str = ""


@attrs.frozen(kw_only=True)
class ActionInfo:
    """What a tool step did (camelCase on the wire)."""

    tool_name: str = ""
    action_name: str = ""
    action_content: str = ""


@attrs.frozen(kw_only=True)
class ToolInfo:
    """One tool invocation of a step, with its output."""

    type: str = ""
    name: str = ""
    arguments: str = ""
    output: str = ""


@attrs.frozen(kw_only=True)
class StepDetails:
    """What a run step did."""

    type: str = ""
    message_creation: MessageCreation | None = None
    action_info: ActionInfo | None = None
    tool_calls: list[ToolCall] | None = None
    tool_info: list[ToolInfo] | None = None


@attrs.frozen(kw_only=True)
class RunStep:
    """One step of a run (a tool call round or a message creation)."""

    id: str
    object: str = ""
    assistant_id: str | None = None
    thread_id: str = ""
    run_id: str = ""
    status: str = ""
    type: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    expired_at: datetime | None = None
    cancelled_at: datetime | None = None
    failed_at: datetime | None = None
    completed_at: datetime | None = None
    last_error: LastError | None = None
    step_details: StepDetails | None = None


# -- request pieces -------------------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class ToolOutput:
    """The output of one tool call, submitted back to the run."""

    tool_call_id: str
    output: str
    run_id: str = ""


@attrs.frozen(kw_only=True)
class SamplingParameters:
    """Sampling settings: ``temperature`` and ``top_p`` in [0, 1], ``penalty_score`` in [1, 2]."""

    temperature: float | None = None
    top_p: float | None = None
    penalty_score: float | None = None


@attrs.frozen(kw_only=True)
class ModelParameters:
    """Per-run model settings for the chat and the thought (planning) model.

    The service defaults are chat ``0.8/0.8/1.0`` and thought ``0.01/0.0/1.0`` (temperature/top_p/penalty_score).
    """

    chat_parameters: SamplingParameters | None = None
    thought_parameters: SamplingParameters | None = None


@attrs.frozen(kw_only=True)
class UserInfo:
    """Who the end user is (all optional)."""

    id: str | None = None
    name: str | None = None
    nickname: str | None = None
    watermark: str | None = None
    intro: str | None = None
    baidu_id: str | None = None


@attrs.frozen(kw_only=True)
class UserLocation:
    """Where the end user is: ``loc`` is a JSON-encoded string, ``uip``/``uipv6`` their addresses."""

    loc: str | None = None
    uip: str | None = None
    uipv6: str | None = None


#: A message of a new thread or of a run's ``thread``: a :class:`ThreadMessage`, a string (a user turn) or a mapping.
MessageLike = Union[ThreadMessage, str, Mapping[str, Any]]  # noqa: UP007 (a runtime alias on 3.10)
#: A tool an assistant or a run may use: a :class:`Tool` or its wire mapping.
ToolLike = Union[Tool, Mapping[str, Any]]  # noqa: UP007
#: One tool call's output: a :class:`ToolOutput` or its wire mapping.
ToolOutputLike = Union[ToolOutput, Mapping[str, Any]]  # noqa: UP007


# -- request parameters: each call's keywords, declared once (``**params: Unpack[...]``) -------------------------------
class PageQuery(RequestOptions, total=False):
    """The keywords of every ``list`` call: which page, plus the per-call options (:class:`~aioagents.RequestOptions`).

    >>> page = await client.threads.messages.list(thread.id, limit=50, order="asc", after=previous.last_id)
    """

    limit: int
    """Items per page, at least 1 (default 20)."""

    order: str
    """``"desc"`` (newest first, the default) or ``"asc"``."""

    after: str | None
    """Start after this id (``page.last_id`` of the page before)."""

    before: str | None
    """End before this id."""


class _Named(RequestOptions):
    # The one required key of AssistantSettings (a TypedDict's totality is per class body).
    name: str
    """1–128 CJK characters, letters, digits, spaces, ``_`` or ``-``."""


class AssistantSettings(_Named, total=False):
    """An assistant's settings, the keywords of ``assistants.create`` and ``assistants.update`` (which sends every
    one, defaults included, as the service expects), plus the per-call options. ``name`` is required."""

    description: str
    """Up to 512 characters (default ``""``)."""

    instructions: str
    """Up to 4096 characters (default ``""``)."""

    model: str
    """The model (default ``ERNIE-4.0T-8K``)."""

    response_format: str
    """``"text"`` (default) or ``"json_object"``."""

    thought_instructions: str
    """Instructions for the thought (planning) model, up to 4096 characters."""

    chat_instructions: str
    """Instructions for the chat model, up to 4096 characters."""

    tools: Sequence[ToolLike]
    """Up to 10 tools."""

    file_ids: Sequence[str]
    """Up to 10 uploaded files."""

    metadata: Mapping[str, str] | None
    """Up to 16 keys of at most 64 characters, values of at most 512."""


class _ForAssistant(RequestOptions):
    # The one required key of a run's parameters.
    assistant_id: str
    """The assistant to run."""


class ToolRunParameters(_ForAssistant, total=False):
    """A run's parameters but its tool definitions, the keywords of ``threads.runs.run_with_tools`` and
    ``stream_with_tools`` (whose ``tools`` are the functions that answer the calls; the definitions are the
    assistant's), plus the per-call options. :class:`RunParameters` adds ``tools``.

    >>> run = await client.threads.runs.run_with_tools(assistant_id=a.id, thread_id=t.id, tools={"add": add})
    """

    thread_id: str | None
    """The thread to run on; empty to start a new one from ``thread``."""

    thread: Sequence[MessageLike] | None
    """Messages (ending with a user turn) added to ``thread_id``'s history, or a new thread's messages."""

    model: str | None
    """A model for this run instead of the assistant's."""

    metadata: Mapping[str, str] | None
    """Up to 16 keys of at most 64 characters, values of at most 512."""

    response_format: str
    """``"text"`` (default) or ``"json_object"``."""

    instructions: str | None
    """Instructions for this run, up to 4096 characters."""

    thought_instructions: str | None
    """Instructions for the thought (planning) model, up to 4096 characters."""

    chat_instructions: str | None
    """Instructions for the chat model, up to 4096 characters."""

    model_parameters: ModelParameters | None
    """Sampling settings for this run."""

    tool_output: ToolOutputLike | None
    """The output of the tool call a ``requires_action`` run waits for (it resumes that run)."""

    user_info: UserInfo | None
    """Who the end user is."""

    user_loc: UserLocation | None
    """Where the end user is."""


class RunParameters(ToolRunParameters, total=False):
    """A run's parameters (the service's ``RunReq``), the keywords of ``threads.runs.run`` and ``stream``, plus the
    per-call options.

    >>> run = await client.threads.runs.run(assistant_id=a.id, thread_id=t.id, instructions="Be brief.")
    """

    tools: Sequence[ToolLike]
    """Up to 10 tool definitions for this run."""


# -- decoding -------------------------------------------------------------------------------------------------------
def _ms(value: Any, _: Any) -> datetime | None:
    if value is None or value == 0 or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(float(value) / 1000.0, tz=timezone.utc)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


_RENAMES: dict[str, dict[str, str]] = {
    "File": {"create_at": "created_at"},
    "RunStep": {"step_datail": "step_details"},
    "ActionInfo": {"toolName": "tool_name", "actionName": "action_name", "actionContent": "action_content"},
}
_LISTIFY: dict[str, tuple[str, ...]] = {
    "FinalAnswerMessage": ("content",),
    "Message": ("content",),
}


def _tolerant(conv: cattrs.Converter, cls: type[Any]) -> None:
    """Register a structure hook for ``cls`` that first mends the service's known shape drift."""
    fields = attrs.fields(cls)
    # A null where the model has a non-null default (a list, a mapping, a string) means "empty".
    defaults_null = {f.name for f in fields if f.default is not attrs.NOTHING and f.default is not None}
    renames = _RENAMES.get(cls.__name__, {})
    listify = _LISTIFY.get(cls.__name__, ())
    base: Callable[[Any, Any], Any] = make_dict_structure_fn(
        cls, conv, _cattrs_forbid_extra_keys=conv.forbid_extra_keys
    )

    def hook(value: Any, typ: Any) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"expected an object for {cls.__name__}, got {type(value).__name__}")
        data = dict(value)
        for wire, name in renames.items():
            if wire in data:
                wire_value = data.pop(wire)
                data.setdefault(name, wire_value)
        for name in listify:
            if name in data:
                data[name] = _as_list(data[name])
        for name in defaults_null:
            if name in data and data[name] is None:
                del data[name]
        return base(data, typ)

    conv.register_structure_hook(cls, hook)


def configure(conv: cattrs.Converter) -> None:
    """Register the Assistants decoding rules on ``conv``."""

    def last_error(value: Any, _: Any) -> LastError | None:
        if value is None or value == "":
            return None
        if isinstance(value, str):
            return LastError(message=value)
        return conv.structure(value, LastError)

    conv.register_structure_hook_func(lambda t: t == Optional[datetime], _ms)  # noqa: UP045
    conv.register_structure_hook_func(lambda t: t == Optional[LastError], last_error)  # noqa: UP045
    for cls in (
        Text, MessageContent, LastError, DeletedObject, FunctionDefinition, Tool, Assistant, AssistantFile, File,
        FileList, Thread, Message, MessageFile, FunctionCall, ToolCall, SubmitToolOutputsAction, RequiredAction,
        FinalAnswerMessage, FinalAnswer, Run, MessageCreation, ActionInfo, ToolInfo, StepDetails, RunStep,
    ):  # fmt: skip
        _tolerant(conv, cls)


#: The converter of this service (the base hooks plus the rules above).
converter = make_converter()
configure(converter)


def structure(data: Any, cls: type[T]) -> T:
    """Decode a response body into ``cls`` with this service's rules (:class:`ResponseValidationError` on drift)."""
    return _structure(data, cls, conv=converter)
