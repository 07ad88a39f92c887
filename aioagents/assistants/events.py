"""Typed events of a streaming run.

The SSE stream carries three event names: ``ping`` (keepalive, skipped), ``status`` and ``message``. A status event
becomes the class of its ``event_type``; an ``event_type`` this version does not know stays a plain
:class:`StatusEvent`, and an unknown SSE event name becomes :class:`UnknownEvent` with its raw payload. The stream
ends with :class:`RunEnd`, whose ``status`` is ``completed``, ``cancelled``, ``failed`` or ``expired``.

A ``{"error": …}`` payload (framed as an event or as a bare JSON line) raises :class:`AssistantServerError`.
"""

from __future__ import annotations

from typing import Any, Union

import attrs

from aioagents import _json
from aioagents._exceptions import ResponseValidationError
from aioagents._streaming import ServerSentEvent
from aioagents.assistants.errors import AssistantServerError
from aioagents.assistants.models import (
    LastError,
    MessageContent,
    MessageCreation,
    Run,
    RunStep,
    ToolCall,
    _join_text,
    _tolerant,
    converter,
    structure,
)

__all__ = [
    "MessageCreationEvent",
    "MessageEvent",
    "RunBegin",
    "RunCancelling",
    "RunEnd",
    "RunEvent",
    "StatusDetails",
    "StatusEvent",
    "ToolCallsEvent",
    "ToolStepBegin",
    "ToolStepEnd",
    "ToolSubmittedOutput",
    "UnknownEvent",
    "parse_event",
]


@attrs.frozen(kw_only=True)
class StatusDetails:
    """What a status event carries; which fields are set depends on ``type`` (the event type)."""

    type: str = ""
    message_creation: MessageCreation | None = None
    run_object: Run | None = None
    run_step_object: RunStep | None = None
    tool_calls: list[ToolCall] | None = None
    error_info: LastError | None = None


@attrs.frozen(kw_only=True)
class StatusEvent:
    """A ``status`` event: the run's ``status`` and what just happened (``event_type``)."""

    status: str = ""
    event_type: str = ""
    send_id: int = 0
    message: str = ""
    details: StatusDetails = attrs.field(factory=StatusDetails)

    @property
    def event(self) -> str:
        """The SSE event name, ``"status"`` (as the SDK's ``StreamRunStatus.event``)."""
        return "status"

    @property
    def run(self) -> Run | None:
        """The run object, on ``run_begin`` and ``run_end``."""
        return self.details.run_object

    @property
    def run_id(self) -> str | None:
        """The run's id when the event carries the run or a step of it."""
        if self.details.run_object is not None:
            return self.details.run_object.id
        if self.details.run_step_object is not None:
            return self.details.run_step_object.run_id or None
        return None


@attrs.frozen(kw_only=True)
class RunBegin(StatusEvent):
    """The run started (``status`` is usually ``queued``); ``run`` holds its id, thread and assistant."""


@attrs.frozen(kw_only=True)
class ToolStepBegin(StatusEvent):
    """A tool step began; ``details.run_step_object`` is the step."""


@attrs.frozen(kw_only=True)
class ToolCallsEvent(StatusEvent):
    """The model wants tools run (``status`` is ``requires_action``). Submit outputs while the stream stays open."""

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The calls to answer."""
        return list(self.details.tool_calls or [])


@attrs.frozen(kw_only=True)
class ToolSubmittedOutput(StatusEvent):
    """The service acknowledged submitted tool outputs."""


@attrs.frozen(kw_only=True)
class ToolStepEnd(StatusEvent):
    """A tool step ended."""


@attrs.frozen(kw_only=True)
class MessageCreationEvent(StatusEvent):
    """The answer message was created; ``details.message_creation.message_id`` names it."""


@attrs.frozen(kw_only=True)
class RunCancelling(StatusEvent):
    """A cancel is in progress; :class:`RunEnd` with ``status="cancelled"`` follows."""


@attrs.frozen(kw_only=True)
class RunEnd(StatusEvent):
    """The last event: ``status`` is final and ``run`` the final run (``cancelled_at`` set after a cancel)."""


@attrs.frozen(kw_only=True)
class MessageEvent:
    """A piece of the answer text: ``text`` is this event's part, ``is_end`` marks the last one of a message."""

    status: str = ""
    send_id: int = 0
    is_end: bool = False
    message_id: str = ""
    message_index: str = ""
    content: list[MessageContent] = attrs.field(factory=list)

    @property
    def event(self) -> str:
        """The SSE event name, ``"message"`` (as the SDK's ``StreamRunMessage.event``)."""
        return "message"

    @property
    def text(self) -> str:
        """The text parts of this event joined."""
        return _join_text(self.content)


@attrs.frozen(kw_only=True)
class UnknownEvent:
    """An SSE event this version does not know, with its raw payload (decoded JSON, or the text)."""

    event: str
    data: Any = None


RunEvent = Union[StatusEvent, MessageEvent, UnknownEvent]  # noqa: UP007 (a runtime alias on 3.10)

_STATUS_CLASSES: dict[str, type[StatusEvent]] = {
    "run_begin": RunBegin,
    "tool_step_begin": ToolStepBegin,
    "tool_calls": ToolCallsEvent,
    "tool_submitted_output": ToolSubmittedOutput,
    "tool_step_end": ToolStepEnd,
    "message_creation": MessageCreationEvent,
    "run_cancelling": RunCancelling,
    "run_end": RunEnd,
}

for _cls in (StatusDetails, StatusEvent, MessageEvent, *_STATUS_CLASSES.values()):
    _tolerant(converter, _cls)


def parse_event(frame: ServerSentEvent, *, request_id: str | None = None) -> RunEvent | None:
    """One SSE frame as a typed event; ``None`` for a keepalive."""
    if frame.event == "ping":
        return None
    try:
        payload = _json.loads(frame.data) if frame.data else {}
    except ValueError as exc:
        raise ResponseValidationError(
            f"a streamed {frame.event!r} event is not JSON: {frame.data[:200]!r}", body=frame.data
        ) from exc
    if isinstance(payload, dict) and "error" in payload:
        raise AssistantServerError.from_body(payload, request_id=request_id)
    if not isinstance(payload, dict) or frame.event not in ("status", "message"):
        return UnknownEvent(event=frame.event, data=payload)
    data = {k: v for k, v in payload.items() if k != "event"}
    if frame.event == "message":
        return structure(data, MessageEvent)
    cls = _STATUS_CLASSES.get(str(data.get("event_type", "")), StatusEvent)
    return structure(data, cls)
