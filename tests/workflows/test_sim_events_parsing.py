"""The SSE frame → typed event table (pure), and chunk-boundary independence of the whole pipeline."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioagents._streaming import END, ServerSentEvent, SSEDecoder
from aioagents.testing._sim import sse_frame
from aioagents.workflows import (
    Chunk,
    ChunkReset,
    Error,
    Final,
    StreamCollector,
    StreamError,
    Thinking,
    ToolCall,
    Unknown,
)
from aioagents.workflows.events import parse_event


def ev(data: str, event: str = "message") -> ServerSentEvent:
    return ServerSentEvent(event=event, data=data)


@pytest.mark.parametrize(
    ("sse", "expected"),
    [
        (ev('{"blockId":"b","chunk":"hi"}'), Chunk(block_id="b", text="hi")),
        (ev('{"blockId":"b","chunk":{"a":1}}'), Chunk(block_id="b", text='{"a": 1}')),
        (ev('{"blockId":"b","event":"chunk_reset"}'), ChunkReset(block_id="b")),
        (ev('{"blockId":"b","event":"thinking","data":"hmm"}'), Thinking(block_id="b", text="hmm")),
        (
            ev('{"blockId":"b","event":"tool","phase":"end","id":"t","name":"n","status":"error"}'),
            ToolCall(block_id="b", phase="end", id="t", name="n", status="error"),
        ),
        (ev('{"event":"stream_error","error":"hiccup"}'), StreamError(error="hiccup")),
        (ev('{"blockId":"b","event":"error","error":"timeout"}'), Error(error="timeout", block_id="b")),
        (
            ev('{"event":"final","data":{"success":false,"error":"boom","output":{}}}'),
            Final(success=False, error="boom", output={}),
        ),
        (
            ev('{"event":"final","data":{"success":true,"output":{"x":1},"status":"paused"}}'),
            Final(success=True, output={"x": 1}, status="paused"),
        ),
        (
            ev('{"event":"done","success":true,"output":{},"metadata":{"duration":610}}'),
            Final(success=True, output={}, metadata={"duration": 610}),
        ),
        (ev('"[DONE]"'), END),
        (ev("[DONE]"), END),
        (ev(" [DONE] "), END),
        (ev("{}", event="done"), END),
        (ev(""), None),
        (ev("not json"), Unknown(data="not json")),
        (ev("[1, 2]"), Unknown(data=[1, 2])),
        (ev('{"event":"new_kind","blockId":"b"}'), Unknown(data={"event": "new_kind", "blockId": "b"})),
        (ev('{"event":"tool","blockId":"b"}'), Unknown(data={"event": "tool", "blockId": "b"})),
    ],
)
def test_parse_event_table(sse, expected) -> None:
    assert parse_event(sse) == expected


STREAM = (
    sse_frame({"blockId": "b", "event": "thinking", "data": "plan ✓"})
    + sse_frame({"blockId": "b", "chunk": "draft"})
    + sse_frame({"blockId": "b", "event": "chunk_reset"})
    + sse_frame({"blockId": "b", "chunk": "Héllo"})
    + sse_frame({"event": "stream_error", "error": "x"})
    + sse_frame({"blockId": "c", "chunk": "\n\nworld"})
    + sse_frame({"event": "final", "data": {"success": True, "output": {"k": "v"}}})
    + b'data: "[DONE]"\n\n'
)


def _decode(chunks: list[bytes]) -> list[object]:
    decoder = SSEDecoder()
    out: list[object] = []
    for chunk in chunks:
        out.extend(parse_event(e) for e in decoder.feed(chunk))
    out.extend(parse_event(e) for e in decoder.end())
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_events_do_not_depend_on_where_the_body_is_cut(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert _decode(pieces) == _decode([STREAM])


def test_collector_folds_the_stream() -> None:
    collector = StreamCollector()
    for event in _decode([STREAM]):
        if event is not END:
            collector.feed(event)  # type: ignore[arg-type]
    result = collector.result()
    assert (result.success, result.output, result.text) == (True, {"k": "v"}, "Héllo\n\nworld")
    assert result.metadata["streamErrors"] == ["x"]
