"""A sans-I/O Server-Sent Events decoder that follows the WHATWG event-stream rules.

Rules kept here (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
- A UTF-8 BOM at the very start is skipped; bytes are decoded as UTF-8 with replacement.
- A line starting with ``:`` is a comment. A line with no ``:`` is a field name with an empty value.
- One leading space of the value is dropped. ``data`` lines are joined with LF.
- ``id`` sets the last event id unless the value contains NUL; it persists across events.
- ``retry`` is used only when it is all ASCII digits.
- A blank line dispatches the event; with an empty data buffer nothing is dispatched (but the type is reset).
- At end of stream an event without its blank line is discarded.
"""

from __future__ import annotations

import attrs

from aioagents._exceptions import EventTooLargeError
from aioagents._streaming._lines import LineSplitter

__all__ = ["SSEDecoder", "ServerSentEvent"]

_BOM = b"\xef\xbb\xbf"


@attrs.frozen(kw_only=True)
class ServerSentEvent:
    """One dispatched event: ``event`` type (default ``message``), ``data``, the last ``id`` and ``retry`` (ms)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed body chunks, get events."""

    __slots__ = ("_data", "_event", "_head", "_last_id", "_lines", "_retry", "_size", "_started", "max_event_size")

    def __init__(self, max_event_size: int = 16 * 1024 * 1024) -> None:
        self.max_event_size = max_event_size
        self._lines = LineSplitter(max_event_size)
        self._data: list[bytes] = []
        self._size = 0
        self._event = b""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._started = False
        self._head = b""  # the first bytes, held while they may still be a split BOM

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        if not self._started:
            chunk = self._head + chunk
            if len(chunk) < 3 and _BOM.startswith(chunk):
                self._head = chunk  # a BOM may be split across chunks: wait for the rest
                return []
            self._head = b""
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[3:]
        out: list[ServerSentEvent] = []
        for line in self._lines.feed(chunk):
            if not line:
                if self._data:
                    out.append(self._dispatch())
                else:
                    self._event = b""
                continue
            self._field(line)
        return out

    def end(self) -> list[ServerSentEvent]:
        """End of body: an unterminated last line is still a field line; an undispatched event is dropped."""
        for line in self._lines.flush():
            self._field(line)
        self._data, self._size, self._event = [], 0, b""
        return []

    def _field(self, line: bytes) -> None:
        if line.startswith(b"data:"):
            value = line[6:] if line[5:6] == b" " else line[5:]
        else:
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"event":
                self._event = value
                return
            if name == b"id":
                if b"\x00" not in value:
                    self._last_id = value.decode("utf-8", "replace")
                return
            if name == b"retry":
                if value.isdigit():
                    self._retry = int(value)
                return
            if name != b"data":
                return  # comments (empty name) and unknown fields are ignored
        self._size += len(value) + 1
        if self._size > self.max_event_size:
            self._data, self._size = [], 0
            raise EventTooLargeError(f"an event passed the cap of {self.max_event_size} bytes")
        self._data.append(value)

    def _dispatch(self) -> ServerSentEvent:
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        event = self._event.decode("utf-8", "replace") if self._event else "message"
        self._data, self._size, self._event = [], 0, b""
        return ServerSentEvent(
            event=event, data=data.decode("utf-8", "replace"), id=self._last_id, retry=self._retry
        )
