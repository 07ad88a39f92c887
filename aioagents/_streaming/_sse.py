"""A sans-I/O Server-Sent Events decoder that follows the WHATWG event-stream rules.

Rules kept here (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
- A UTF-8 BOM at the very start is skipped; bytes are decoded as UTF-8 with replacement.
- A line starting with ``:`` is a comment. A line with no ``:`` is a field name with an empty value.
- One leading space of the value is dropped. ``data`` lines are joined with LF.
- ``id`` sets the last event id unless the value contains NUL; it persists across events.
- ``retry`` is used only when it is all ASCII digits.
- A blank line dispatches the event; with an empty data buffer nothing is dispatched (but the type is reset).
- At end of stream an event without its blank line is discarded.

Speed: almost every server ends lines with LF only and sends ``[event: …]`` + one ``data: …`` line per event. For a
chunk without CR, the complete events received so far are read in one regex pass (C speed) when they all have that
shape; anything else, and every chunk with a CR, goes through the general line-by-line reading. Both paths share one
buffer, so they can alternate chunk by chunk.
"""

from __future__ import annotations

import re
from codecs import utf_8_decode as _utf8_decode
from collections.abc import Iterable, Iterator
from itertools import repeat
from typing import NamedTuple

from aioagents._exceptions import EventTooLargeError
from aioagents._streaming._lines import LineSplitter

__all__ = ["SSEDecoder", "ServerSentEvent"]

_BOM = b"\xef\xbb\xbf"


class ServerSentEvent(NamedTuple):
    """One dispatched event: ``event`` type (default ``message``), ``data``, the last ``id`` and ``retry`` (ms).

    A named tuple rather than an attrs class: one is built per event, and this is the cheapest immutable record.
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


_new_event = tuple.__new__

# The usual event: an optional event line and one data line (one optional space after each colon), then a blank line.
_EAGER = 64 * 1024  # an open event's buffered lines beyond this are read line by line

_SIMPLE_EVENT = re.compile(r"(?:event: ?([^\n]*)\n)?data: ?([^\n]*)\n\n")


def _simple_run(text: str, last_id: str | None, retry: int | None) -> Iterator[ServerSentEvent] | None:
    """The events of ``text`` (complete events, ending in a blank line) when every one has the usual shape
    ``[event: X\n]data: Y\n\n``; None when any line is something else (then the general reading applies).

    The events come as a lazy ``map`` over ``zip`` (no Python-level step per event) over the values already cut
    out: nothing is left to check, so a consumer may build them as it goes (see :meth:`SSEDecoder.feed_lazy`)."""
    if text.startswith("data: "):
        # The commonest stream (OpenAI, Sim: one `data: ` line per event, no type) is `data: ` + the values joined
        # by "\n\ndata: " + "\n\n" exactly when there are two line ends per value, i.e. no other line anywhere.
        # Split the text itself (a slice would copy the whole run once more), then trim the first and last piece.
        values = text.split("\n\ndata: ")
        values[0] = values[0][6:]
        values[-1] = values[-1][:-2]
        if text.count("\n") == 2 * len(values):
            return map(
                _new_event, repeat(ServerSentEvent), zip(repeat("message"), values, repeat(last_id), repeat(retry))
            )
        del values
    # One regex pass: a run made only of `[event: X\n]data: Y\n\n` blocks splits into empty separators and (X, Y)
    # pairs (X is None where the event line is absent).
    parts = _SIMPLE_EVENT.split(text)
    if any(parts[::3]):
        return None
    etypes: Iterable[str] = parts[1::3]
    etypes = [etype or "message" for etype in etypes] if any(etypes) else repeat("message")
    return map(_new_event, repeat(ServerSentEvent), zip(etypes, parts[2::3], repeat(last_id), repeat(retry)))


class SSEDecoder:
    """Feed body chunks, get events."""

    __slots__ = (
        "_data",
        "_event",
        "_head",
        "_last_id",
        "_lines",
        "_retry",
        "_size",
        "_started",
        "max_event_size",
    )

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
        """The events completed by ``chunk``."""
        events = self.feed_lazy(chunk)
        return events if type(events) is list else list(events)

    def feed_lazy(self, chunk: bytes) -> list[ServerSentEvent] | Iterator[ServerSentEvent]:
        """:meth:`feed`, whose events may come as an iterator that builds them as it is read: every check is done
        and every value cut out before it returns (it raises what ``feed`` raises, when ``feed`` does), so only the
        building of the event tuples is left. A stream that hands a chunk's thousands of events out a few hundred
        at a time keeps few of them alive at once (fewer garbage-collector passes over them, less memory). The
        events of such an iterator all carry the same ``id`` and ``retry``; anything else comes as a list."""
        if not self._started:
            chunk = self._head + chunk
            if len(chunk) < 3 and _BOM.startswith(chunk):
                self._head = chunk  # a BOM may be split across chunks: wait for the rest
                return []
            self._head = b""
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[3:]
        if not chunk:
            return []
        lines = self._lines
        if lines._cr or b"\r" in chunk:
            return self._read_lines(lines.feed(chunk))
        # LF-only: the splitter's buffer holds the bytes not read yet (here possibly several whole lines of an event
        # whose blank line has not come). Everything up to the last "\n\n" is a run of complete events.
        if b"\n" not in chunk:
            lines.hold(chunk)  # no event can end in it: keep it without copying what came before
            return []
        buf = lines.take(chunk)
        end = buf.rfind(b"\n\n") + 2
        cap = self.max_event_size
        out: list[ServerSentEvent] | Iterator[ServerSentEvent] = []
        if end > 1:
            if end <= cap and not self._data and not self._event:
                # A run of complete events, read at C speed when they all have the usual shape. Decoding the run
                # at once equals decoding each value: UTF-8 resynchronises at "\n". The bytes are let go before
                # the split, so at most the text and its pieces are held at once (as the line-by-line reading holds
                # lines and values).
                with memoryview(buf) as view:
                    text = _utf8_decode(view[:end], "replace", True)[0]
                buf = buf[end:]
                simple = _simple_run(text, self._last_id, self._retry)
                if simple is not None:
                    out = simple
                else:
                    # Re-encoding the decoded text reads the same: a replacement character decodes to itself.
                    block_lines = text.encode().split(b"\n")
                    del text
                    block_lines.pop()  # the empty piece after the final line end
                    out = self._read_lines(block_lines)
            else:
                block_lines = buf[:end].split(b"\n")
                block_lines.pop()
                buf = buf[end:]
                out = self._read_lines(block_lines)
        if len(buf) > _EAGER:
            # A long event still open: read its complete lines now (into the pending state), so the buffer holds at
            # most one partial line and is never copied over and over.
            cut = buf.rfind(b"\n") + 1
            if cut:
                open_lines = buf[:cut].split(b"\n")
                open_lines.pop()
                more = self._read_lines(open_lines)
                if more:  # (never in practice: an open event's lines hold no blank line) a list, then
                    out = [*out, *more]
                buf = buf[cut:]
        if len(buf) > cap:
            self._data, self._size, self._event = [], 0, b""
            raise EventTooLargeError(f"an event passed the cap of {cap} bytes ({len(buf)}+ bytes)")
        lines._buf = buf
        return out

    def end(self) -> list[ServerSentEvent]:
        """End of body: complete lines still buffered are read (a blank one dispatches); an unterminated last line is
        a field line (an ``id`` or ``retry`` there still counts); an event without its blank line is dropped."""
        out: list[ServerSentEvent] = []
        for rest in self._lines.flush():
            *complete, last = rest.split(b"\n")
            out = self._read_lines(complete)
            if last:
                self._field(last)
        self._data, self._size, self._event = [], 0, b""
        return out

    def _read_lines(self, lines: list[bytes]) -> list[ServerSentEvent]:
        """The general reading, one complete line at a time."""
        out: list[ServerSentEvent] = []
        data = self._data
        size = self._size
        try:
            for line in lines:
                if not line:
                    if data:
                        raw = data[0] if len(data) == 1 else b"\n".join(data)
                        etype = self._event
                        out.append(
                            ServerSentEvent(
                                etype.decode("utf-8", "replace") if etype else "message",
                                raw.decode("utf-8", "replace"),
                                self._last_id,
                                self._retry,
                            )
                        )
                        data = []
                        size = 0
                    self._event = b""
                    continue
                if line.startswith(b"data:"):
                    value = line[6:] if line[5:6] == b" " else line[5:]
                else:
                    field = self._field(line)
                    if field is None:
                        continue
                    value = field
                size += len(value) + 1
                if size > self.max_event_size:
                    data = []
                    size = 0
                    raise EventTooLargeError(f"an event passed the cap of {self.max_event_size} bytes")
                data.append(value)
        finally:
            self._data = data
            self._size = size
        return out

    def _field(self, line: bytes) -> bytes | None:
        """Apply a non-data field line; return the value when the line is a data field after all (``data`` with no
        colon)."""
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            return value
        if name == b"event":
            self._event = value
        elif name == b"id":
            if b"\x00" not in value:
                self._last_id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self._retry = int(value)
        # comments (empty name) and unknown fields are ignored
        return None
