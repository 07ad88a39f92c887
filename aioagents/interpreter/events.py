"""Typed execution events of the CodeGeeX4-style interpreter, and helpers to merge and render them.

On the wire an event is ``{"type", "timestamp", "data"}``; ``parse_event`` turns one into:

* :class:`Stream` — ``stdout``/``stderr`` text (the original server sends ``data.stream``, its docs say
  ``data.name``: both are read);
* :class:`DisplayData` — a Jupyter mime bundle (``execute_result`` arrives as this too), with decoders for text,
  PNG/JPEG, SVG, HTML and JSON;
* :class:`File` — a file the program wrote (documented; the open-source server never sends it);
* :class:`Error` — an exception, with the traceback as plain text (ANSI colours stripped);
* :class:`UnknownEvent` — any other type, with the raw payload kept.

A streamed execution ends with :class:`ExecutionEnd` carrying the status (``"ok"`` or ``"timeout"``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, Union

import attrs

__all__ = [
    "DisplayData",
    "Error",
    "Event",
    "ExecutionEnd",
    "File",
    "Stream",
    "UnknownEvent",
    "merge_streams",
    "parse_event",
    "render_events",
    "strip_ansi",
]

# CSI sequences (colours, cursor moves) and OSC sequences (hyperlinks) as IPython and friends emit them.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences."""
    return _ANSI.sub("", text)


def _timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime; ``None`` when absent or unreadable (the docs' sample is Go's
    layout string, not a time)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    # fromisoformat on 3.10 takes only 3 or 6 fractional digits: normalise (Go sends up to 9).
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(.*)$", text)
    if match:
        frac = (match.group(2) or "")[:6].ljust(6, "0")
        text = f"{match.group(1)}.{frac}{match.group(3)}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@attrs.frozen(kw_only=True)
class Stream:
    """Text the program wrote to ``stdout`` or ``stderr`` (chunks may be split or merged arbitrarily)."""

    name: str
    text: str
    timestamp: datetime | None = None


@attrs.frozen(kw_only=True)
class DisplayData:
    """A rich output: ``variants`` maps a mime type to its data (base64 for binary images, a JSON object for
    ``application/json``, text otherwise). ``text/plain`` is nearly always present."""

    variants: Mapping[str, Any]
    timestamp: datetime | None = None

    @property
    def mime_types(self) -> tuple[str, ...]:
        """The mime types present, in the server's order."""
        return tuple(self.variants)

    @property
    def text(self) -> str | None:
        """The ``text/plain`` form."""
        return _as_text(self.variants.get("text/plain"))

    @property
    def html(self) -> str | None:
        """The ``text/html`` form."""
        return _as_text(self.variants.get("text/html"))

    @property
    def markdown(self) -> str | None:
        """The ``text/markdown`` form."""
        return _as_text(self.variants.get("text/markdown"))

    @property
    def svg(self) -> str | None:
        """The ``image/svg+xml`` form: XML text, not base64."""
        return _as_text(self.variants.get("image/svg+xml"))

    @property
    def json(self) -> Any:
        """The ``application/json`` form, as the object it is on the wire (``None`` when absent)."""
        return self.variants.get("application/json")

    @property
    def png(self) -> bytes | None:
        """The ``image/png`` form, base64-decoded."""
        return self.image_bytes("image/png")

    @property
    def jpeg(self) -> bytes | None:
        """The ``image/jpeg`` form, base64-decoded."""
        return self.image_bytes("image/jpeg")

    @property
    def image(self) -> tuple[str, bytes] | None:
        """The first binary image as ``(mime type, bytes)``: PNG, then JPEG, GIF, WebP."""
        for mime in ("image/png", "image/jpeg", "image/gif", "image/webp"):
            data = self.image_bytes(mime)
            if data is not None:
                return mime, data
        return None

    def image_bytes(self, mime: str) -> bytes | None:
        """The base64 variant ``mime`` decoded (whitespace and a ``data:`` prefix tolerated); ``None`` when
        absent or not base64."""
        value = self.variants.get(mime)
        if isinstance(value, list):  # some kernels split long base64 into a list of lines
            value = "".join(str(v) for v in value)
        if not isinstance(value, str):
            return None
        if value.startswith("data:") and "," in value:
            value = value.split(",", 1)[1]
        try:
            return base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            return None


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):  # nbformat allows multiline strings as lists of lines
        return "".join(str(v) for v in value)
    return str(value)


@attrs.frozen(kw_only=True)
class File:
    """The program wrote a file: ``path`` in the sandbox and its ``size`` in bytes (documented by SANDBOX.md;
    the open-source server never sends it)."""

    path: str
    size: int | None = None
    timestamp: datetime | None = None


@attrs.frozen(kw_only=True)
class Error:
    """An exception raised by the code. ``traceback`` is plain text (ANSI colours stripped, frames joined with
    newlines); ``traceback_frames`` keeps the frames exactly as the kernel sent them."""

    ename: str
    evalue: str
    traceback: str
    traceback_frames: tuple[str, ...] = ()
    timestamp: datetime | None = None

    def __str__(self) -> str:
        return f"{self.ename}: {self.evalue}" if self.evalue else self.ename


@attrs.frozen(kw_only=True)
class UnknownEvent:
    """An event of a type this client does not know; ``raw`` is the whole wire object."""

    type: str
    raw: Mapping[str, Any]
    timestamp: datetime | None = None


@attrs.frozen(kw_only=True)
class ExecutionEnd:
    """The last event of a streamed execution: ``status`` is ``"ok"`` or ``"timeout"`` (an exception in the code
    is still ``"ok"``; it arrives as an :class:`Error` event)."""

    status: str
    kernel_restarted: bool = False
    """The server replaced its kernel for or after this execution: its state is gone."""

    @property
    def timed_out(self) -> bool:
        """Whether the server stopped waiting for the code (which may still be running)."""
        return self.status == "timeout"


Event = Union[Stream, DisplayData, File, Error, UnknownEvent]  # noqa: UP007 (a runtime alias on 3.10)
"""Any execution event (what :class:`~aioagents.interpreter.ExecutionResult` holds)."""


def parse_event(raw: Any) -> Event:
    """One wire event as a typed event. Malformed or unknown events become :class:`UnknownEvent`, never an error:
    an agent loop should not die on a server's new event type."""
    if not isinstance(raw, Mapping):
        return UnknownEvent(type="", raw={"value": raw})
    kind = raw.get("type")
    data = raw.get("data")
    stamp = _timestamp(raw.get("timestamp"))
    if not isinstance(kind, str):
        return UnknownEvent(type="", raw=raw, timestamp=stamp)
    if not isinstance(data, Mapping):
        return UnknownEvent(type=kind, raw=raw, timestamp=stamp)
    if kind == "stream":
        name = data.get("stream") or data.get("name")
        text = data.get("text")
        if isinstance(name, str) and isinstance(text, (str, list)):
            return Stream(name=name, text=_as_text(text) or "", timestamp=stamp)
    elif kind in ("display_data", "execute_result"):
        variants = data.get("variants", data.get("data"))
        if isinstance(variants, Mapping):
            return DisplayData(variants=dict(variants), timestamp=stamp)
    elif kind == "error":
        frames = data.get("traceback")
        frame_list = tuple(str(f) for f in frames) if isinstance(frames, list) else ()
        if isinstance(frames, str):
            frame_list = (frames,)
        return Error(
            ename=str(data.get("ename") or ""),
            evalue=str(data.get("evalue") or ""),
            traceback=strip_ansi("\n".join(frame_list)),
            traceback_frames=frame_list,
            timestamp=stamp,
        )
    elif kind == "file":
        path = data.get("path")
        size = data.get("size")
        if isinstance(path, str):
            return File(
                path=path,
                size=int(size) if isinstance(size, (int, float)) and not isinstance(size, bool) else None,
                timestamp=stamp,
            )
    return UnknownEvent(type=kind, raw=raw, timestamp=stamp)


def merge_streams(events: Iterable[Event]) -> list[Event]:
    """``events`` with every run of adjacent :class:`Stream` chunks of the same stream joined into one (keeping
    the first chunk's timestamp). The order of everything else is unchanged."""
    out: list[Event] = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, Stream) and isinstance(last, Stream) and last.name == event.name:
            out[-1] = attrs.evolve(last, text=last.text + event.text)
        else:
            out.append(event)
    return out


def render_events(
    events: Iterable[Event],
    *,
    timed_out: bool = False,
    max_chars: int | None = 8000,
    stderr_prefix: str = "[stderr] ",
) -> str:
    """The events as plain text for an LLM prompt: stdout as is, stderr lines prefixed, displays as their text
    (images as a short placeholder), errors as their plain traceback, and a note on timeout.

    ``max_chars`` caps the result, keeping its head and tail (the traceback at the end matters most).
    """
    parts: list[str] = []
    for event in merge_streams(events):
        if isinstance(event, Stream):
            if event.name == "stderr":
                parts.append("".join(stderr_prefix + line for line in event.text.splitlines(keepends=True)))
            else:
                parts.append(event.text)
        elif isinstance(event, DisplayData):
            parts.append(_render_display(event))
        elif isinstance(event, Error):
            parts.append(event.traceback.rstrip("\n") + "\n" if event.traceback else f"{event}\n")
        elif isinstance(event, File):
            size = f" ({event.size} bytes)" if event.size is not None else ""
            parts.append(f"[file written: {event.path}{size}]\n")
        else:
            parts.append(f"[{event.type or 'unknown'} event]\n")
    parts = [p if p.endswith("\n") else p + "\n" for p in parts if p]
    if timed_out:
        parts.append("[execution timed out; the code may still be running]\n")
    text = "".join(parts)
    if max_chars is not None and len(text) > max_chars:
        head = max_chars // 3
        tail = max_chars - head
        skipped = len(text) - head - tail
        text = f"{text[:head]}\n[... {skipped} characters omitted ...]\n{text[-tail:]}"
    return text


def _render_display(event: DisplayData) -> str:
    image = event.image
    if image is not None:
        mime, data = image
        caption = event.text or ""
        return f"[{mime} image, {len(data)} bytes]{' ' + caption if caption else ''}"
    if event.svg is not None and event.text is None:
        return "[image/svg+xml image]"
    if event.text is not None:
        return event.text
    if event.markdown is not None:
        return event.markdown
    if event.html is not None:
        return strip_ansi(event.html)
    if event.json is not None:
        import json

        return json.dumps(event.json, ensure_ascii=False)
    return f"[display: {', '.join(event.mime_types) or 'empty'}]"
