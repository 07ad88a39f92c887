"""Typed events of a streamed Sim workflow run, and the parser from SSE frames to them.

The server's grammar (contract §4)::

    stream := (Chunk | ChunkReset | Thinking | ToolCall | StreamError)* (Final | Error) done
    done   := data: "[DONE]"          # a JSON-quoted string; docs show a bare [DONE]; both are accepted

Every frame is one ``data: <JSON>`` line. A frame with no ``event`` key and a ``chunk`` is answer text. ``StreamError``
is a warning (the stream goes on); ``Error`` is terminal and never followed by ``Final``. The docs' invented
``{"event": "done", "success", "output", "metadata"}`` frame is read as a :class:`Final`, and an SSE ``event: done``
line as the end marker. A frame this module does not know becomes :class:`Unknown`, so a new server event never
breaks an old client.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Any

import attrs

from aioagents import _json
from aioagents._streaming import END, ServerSentEvent
from aioagents.workflows.models import ExecutionResult

__all__ = [
    "Chunk",
    "ChunkReset",
    "Error",
    "Final",
    "StreamCollector",
    "StreamError",
    "Thinking",
    "ToolCall",
    "Unknown",
    "WorkflowEvent",
    "collect_result",
    "collect_result_sync",
    "is_terminal",
    "parse_event",
]


@attrs.frozen(kw_only=True)
class Chunk:
    """A piece of answer text from block ``block_id``. It may start with ``"\\n\\n"`` when an earlier block
    already produced output; a non-streaming selected block arrives as one chunk (JSON pretty-printed)."""

    block_id: str
    text: str


@attrs.frozen(kw_only=True)
class ChunkReset:
    """Discard the text block ``block_id`` produced so far (the agent started its answer over)."""

    block_id: str


@attrs.frozen(kw_only=True)
class Thinking:
    """Reasoning text of block ``block_id`` (only with ``include_thinking``)."""

    block_id: str
    text: str


@attrs.frozen(kw_only=True)
class ToolCall:
    """A tool call of block ``block_id`` starting (``phase="start"``) or ending (``phase="end"``, with ``status``)."""

    block_id: str
    phase: str
    id: str
    name: str
    status: str | None = None


@attrs.frozen(kw_only=True)
class StreamError:
    """A non-terminal problem the server reports mid-stream (a provider hiccup); more events follow."""

    error: str
    block_id: str | None = None


@attrs.frozen(kw_only=True)
class Final:
    """The run's end: ``success``, its ``output`` (with selected outputs: the ones not streamed as chunks),
    the failure message in ``error``, and ``status`` (``"paused"`` for a paused run)."""

    success: bool
    output: Any = None
    error: str | None = None
    status: str | None = None
    metadata: Mapping[str, Any] | None = None


@attrs.frozen(kw_only=True)
class Error:
    """The stream failed (timeout, abort, a selected output that could not be produced). Terminal."""

    error: str
    block_id: str | None = None


@attrs.frozen(kw_only=True)
class Unknown:
    """A frame this client does not know: the decoded JSON (or the raw text) is kept in ``data``."""

    data: Any


WorkflowEvent = Chunk | ChunkReset | Thinking | ToolCall | StreamError | Final | Error | Unknown
"""Any event of a workflow stream."""

_DONE_MARKERS = frozenset({"[DONE]", '"[DONE]"'})


def is_terminal(event: WorkflowEvent) -> bool:
    """Whether ``event`` ends the run (a :class:`Final` or an :class:`Error`)."""
    return isinstance(event, (Final, Error))


def _str(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def parse_event(sse: ServerSentEvent) -> Any:
    """One SSE event to a typed event, ``END`` for the end marker, or ``None`` to skip (an empty frame)."""
    if sse.event == "done":
        return END
    raw = sse.data.strip()
    if not raw:
        return None
    if raw in _DONE_MARKERS:
        return END
    try:
        frame = _json.loads(raw)
    except ValueError:
        return Unknown(data=sse.data)
    if frame == "[DONE]":
        return END
    if not isinstance(frame, dict):
        return Unknown(data=frame)
    return _from_frame(frame)


def _from_frame(frame: Mapping[str, Any]) -> WorkflowEvent:
    kind = frame.get("event")
    block_id = frame.get("blockId")
    if kind is None and "chunk" in frame and isinstance(block_id, str):
        return Chunk(block_id=block_id, text=_str(frame["chunk"]))
    if kind == "final" and isinstance(frame.get("data"), Mapping):
        data = frame["data"]
        return Final(
            success=bool(data.get("success", False)),
            output=data.get("output"),
            error=_opt_str(data.get("error")),
            status=data.get("status"),
            metadata=data.get("metadata"),
        )
    if kind == "done":
        # The docs' terminal frame (never sent by the server, but users hand-write fakes from the docs).
        return Final(
            success=bool(frame.get("success", True)),
            output=frame.get("output"),
            error=_opt_str(frame.get("error")),
            metadata=frame.get("metadata"),
        )
    if kind == "error":
        return Error(error=_str(frame.get("error", "stream failed")), block_id=block_id)
    if kind == "stream_error":
        return StreamError(error=_str(frame.get("error", "")), block_id=block_id)
    if isinstance(block_id, str):
        if kind == "chunk_reset":
            return ChunkReset(block_id=block_id)
        if kind == "thinking":
            return Thinking(block_id=block_id, text=_str(frame.get("data", "")))
        if kind == "tool" and isinstance(frame.get("phase"), str):
            status = frame.get("status")
            return ToolCall(
                block_id=block_id,
                phase=frame["phase"],
                id=str(frame.get("id", "")),
                name=str(frame.get("name", "")),
                status=None if status is None else str(status),
            )
    return Unknown(data=dict(frame))


class StreamCollector:
    """Folds a run's events into the :class:`ExecutionResult` a sync call would have returned.

    ``text`` is the answer text as streamed (chunks in arrival order, a block's text dropped on its
    :class:`ChunkReset`); ``output``, ``success`` and ``error`` come from :class:`Final`, or from a terminal
    :class:`Error` (``success=False``, ``error_code="STREAM_ERROR"``). Warnings (:class:`StreamError`) are kept in
    ``warnings``.
    """

    def __init__(self) -> None:
        self._pieces: list[tuple[str, str]] = []
        self.warnings: list[str] = []
        self.final: Final | None = None
        self.error: Error | None = None

    def feed(self, event: WorkflowEvent) -> None:
        """Take one event."""
        if isinstance(event, Chunk):
            self._pieces.append((event.block_id, event.text))
        elif isinstance(event, ChunkReset):
            self._pieces = [p for p in self._pieces if p[0] != event.block_id]
        elif isinstance(event, StreamError):
            self.warnings.append(event.error)
        elif isinstance(event, Final):
            self.final = event
        elif isinstance(event, Error):
            self.error = event

    @property
    def text(self) -> str:
        """The answer text streamed so far."""
        return "".join(text for _, text in self._pieces)

    def result(self) -> ExecutionResult:
        """The result; a stream that ended with neither ``Final`` nor ``Error`` counts as failed."""
        meta: dict[str, Any] = {}
        if self.warnings:
            meta["streamErrors"] = list(self.warnings)
        if self.final is not None:
            final = self.final
            if final.metadata:
                meta.update(final.metadata)
            return ExecutionResult(
                success=final.success,
                output=final.output,
                error=final.error,
                status=final.status or ("completed" if final.success else "failed"),
                text=self.text,
                metadata=meta,
            )
        message = self.error.error if self.error is not None else "the stream ended without a final event"
        return ExecutionResult(
            success=False, error=message, error_code="STREAM_ERROR", status="failed", text=self.text, metadata=meta
        )


async def collect_result(events: AsyncIterable[WorkflowEvent]) -> ExecutionResult:
    """Read a stream to its end and return the result a sync call returns (plus the streamed ``text``).

    >>> result = await collect_result(await client.execute("wf", {"q": "hi"}, stream=True))
    """
    collector = StreamCollector()
    async for event in events:
        collector.feed(event)
    return collector.result()


def collect_result_sync(events: Iterable[WorkflowEvent]) -> ExecutionResult:
    """:func:`collect_result` for a blocking stream."""
    collector = StreamCollector()
    for event in events:
        collector.feed(event)
    return collector.result()
