"""Newline-delimited JSON (JSON lines): one JSON value per non-blank line."""

from __future__ import annotations

from typing import Any

from aioagents import _json
from aioagents._exceptions import ResponseValidationError
from aioagents._streaming._lines import LineSplitter

__all__ = ["JSONLinesDecoder"]


class JSONLinesDecoder:
    """Feed body chunks, get parsed JSON values."""

    __slots__ = ("_lines",)

    def __init__(self, max_event_size: int = 16 * 1024 * 1024) -> None:
        self._lines = LineSplitter(max_event_size)

    def feed(self, chunk: bytes) -> list[Any]:
        return [_parse(line) for line in self._lines.feed(chunk) if line.strip()]

    def end(self) -> list[Any]:
        return [_parse(line) for line in self._lines.flush() if line.strip()]


def _parse(line: bytes) -> Any:
    try:
        return _json.loads(line)
    except ValueError as exc:
        raise ResponseValidationError(f"a stream line is not JSON: {line[:200]!r}") from exc
