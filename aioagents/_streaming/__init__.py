"""The event-stream pipeline: bytes → lines → SSE / JSON-lines frames → typed events."""

from aioagents._streaming._jsonl import JSONLinesDecoder
from aioagents._streaming._lines import LineSplitter
from aioagents._streaming._sse import ServerSentEvent, SSEDecoder
from aioagents._streaming._stream import END, Decoder, EventStream

__all__ = ["END", "Decoder", "EventStream", "JSONLinesDecoder", "LineSplitter", "SSEDecoder", "ServerSentEvent"]
