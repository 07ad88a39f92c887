"""The streaming pipeline: WHATWG SSE rules, random chunk boundaries against a reference reading, JSON lines, line
caps, and EventStream over a real server (idle timeout, cut bodies, oversize events, connection release)."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioagents._exceptions import (
    ClientClosedError,
    EventTooLargeError,
    IncompleteStreamError,
    OutcomeUnknownError,
    RedirectError,
    ResponseValidationError,
    ServiceUnavailableError,
    StreamIdleTimeout,
)
from aioagents._streaming import END, JSONLinesDecoder, LineSplitter, ServerSentEvent, SSEDecoder
from aioagents._transport import Transport
from aioagents.testing import Fault

from .conftest import CoreServer, acquired_connections, pooled_connections


def decode(*chunks: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    out: list[ServerSentEvent] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.end())
    return out


def ev(data: str, event: str = "message", id: str | None = None, retry: int | None = None) -> ServerSentEvent:
    return ServerSentEvent(event=event, data=data, id=id, retry=retry)


# -- WHATWG rules ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b"data: a\n\n", [ev("a")], id="simple"),
        pytest.param(b"\xef\xbb\xbfdata: a\n\n", [ev("a")], id="leading-bom-skipped"),
        pytest.param(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n", [], id="only-one-bom-skipped"),
        pytest.param(b"data: a\n\n\xef\xbb\xbfdata: b\n\n", [ev("a")], id="bom-mid-stream-is-data"),
        pytest.param(b": ping\ndata: a\n:another\n\n", [ev("a")], id="comments-ignored"),
        pytest.param(b": ping\n\n", [], id="comment-only-dispatches-nothing"),
        pytest.param(b"data\n\n", [ev("")], id="field-without-colon-has-empty-value"),
        pytest.param(b"data:\n\n", [ev("")], id="empty-data-still-dispatches"),
        pytest.param(b"data:  two spaces\n\n", [ev(" two spaces")], id="only-one-leading-space-dropped"),
        pytest.param(b"data:nospace\n\n", [ev("nospace")], id="no-space"),
        pytest.param(b"data: a:b: c\n\n", [ev("a:b: c")], id="colons-in-value-kept"),
        pytest.param(b"data: a\ndata: b\ndata:\n\n", [ev("a\nb\n")], id="multi-line-data-joined-with-lf"),
        pytest.param(b"event: tick\ndata: a\n\n", [ev("a", "tick")], id="event-type"),
        pytest.param(b"event: tick\ndata: a\n\ndata: b\n\n", [ev("a", "tick"), ev("b")], id="event-type-reset"),
        pytest.param(b"event: tick\n\ndata: b\n\n", [ev("b")], id="event-type-reset-by-empty-dispatch"),
        pytest.param(b"event\ndata: a\n\n", [ev("a")], id="empty-event-type-is-message"),
        pytest.param(b"id: 7\ndata: a\n\ndata: b\n\n", [ev("a", id="7"), ev("b", id="7")], id="id-persists"),
        pytest.param(
            b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", [ev("a", id="1"), ev("b", id="1")], id="id-with-nul-ignored"
        ),
        pytest.param(b"id: 1\ndata: a\n\nid\ndata: b\n\n", [ev("a", id="1"), ev("b", id="")], id="empty-id-resets"),
        pytest.param(b"id: 5\n\ndata: a\n\n", [ev("a", id="5")], id="id-set-without-dispatch"),
        pytest.param(b"retry: 1500\ndata: a\n\n", [ev("a", retry=1500)], id="retry"),
        pytest.param(b"retry: 15x\ndata: a\n\n", [ev("a")], id="retry-non-digits-ignored"),
        pytest.param(b"retry: -1\ndata: a\n\n", [ev("a")], id="retry-negative-ignored"),
        pytest.param(b"retry:\ndata: a\n\n", [ev("a")], id="retry-empty-ignored"),
        pytest.param(b"foo: bar\ndata: a\n\n", [ev("a")], id="unknown-field-ignored"),
        pytest.param(b"Data: a\n\n", [], id="field-names-are-case-sensitive"),
        pytest.param(b"data: a\rdata: b\r\r", [ev("a\nb")], id="cr-line-ends"),
        pytest.param(b"data: a\r\ndata: b\r\n\r\n", [ev("a\nb")], id="crlf-line-ends"),
        pytest.param(b"data: a\n\r\ndata: b\r\r\n", [ev("a"), ev("b")], id="mixed-line-ends"),
        pytest.param(b"data: a\n\n\n\n", [ev("a")], id="extra-blank-lines"),
        pytest.param(b"data: a\n", [], id="no-dispatch-at-eof-without-blank-line"),
        pytest.param(b"data: a", [], id="unterminated-line-at-eof"),
        pytest.param("data: héllo ✓\n\n".encode(), [ev("héllo ✓")], id="utf8"),
        pytest.param(b"data: \xff\n\n", [ev("\ufffd")], id="invalid-utf8-replaced"),
    ],
)
def test_whatwg_rules(body: bytes, expected: list[ServerSentEvent]) -> None:
    assert decode(body) == expected


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([b"data: a\r", b"\n\r", b"\n"], id="crlf-split-across-chunks"),
        pytest.param([b"data: a\r", b"", b"\ndata: b\n\n"], id="crlf-split-by-an-empty-chunk"),
        pytest.param([b"\xef", b"\xbb", b"\xbfdata: a\n\n"], id="bom-split-across-chunks"),
        pytest.param([b"", b"\xef\xbb\xbfdata: a\n\n"], id="bom-after-an-empty-chunk"),
        pytest.param([b"da", b"ta: ", b"a\n", b"\n"], id="field-split"),
        pytest.param([b"data: \xc3", b"\xa9\n\n"], id="utf8-char-split"),
    ],
)
def test_chunk_boundaries_do_not_matter(chunks: list[bytes]) -> None:
    assert decode(*chunks) == decode(b"".join(chunks))
    assert len(decode(*chunks)) == 1


def test_a_partial_bom_at_eof_dispatches_nothing_and_does_not_fail() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"\xef\xbb") == []
    assert decoder.end() == []


# -- random chunk boundaries against a reference reading -----------------------------------------------------------
def reference(body: bytes) -> list[ServerSentEvent]:
    """The WHATWG algorithm, read literally over the whole body at once."""
    text = body.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = re.split(r"\r\n|\r|\n", text)
    lines.pop()  # the piece after the last line end is not a complete line
    events: list[ServerSentEvent] = []
    data, etype, last_id, retry = "", "", None, None
    for line in lines:
        if line == "":
            if data == "":
                etype = ""
                continue
            events.append(ServerSentEvent(event=etype or "message", data=data[:-1], id=last_id, retry=retry))
            data, etype = "", ""
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data += value + "\n"
        elif name == "event":
            etype = value
        elif name == "id":
            if "\0" not in value:
                last_id = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)
    return events


value_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20)
field = st.tuples(
    st.sampled_from(["data", "data", "data", "event", "id", "retry", "", "other"]),
    st.sampled_from([": ", ":", ""]),
    value_text | st.from_regex(r"\A[0-9]{1,4}\Z"),
)
line_end = st.sampled_from(["\n", "\r", "\r\n"])
event_block = st.lists(st.tuples(field, line_end), max_size=5)


@st.composite
def sse_bodies(draw: st.DrawFn) -> bytes:
    parts: list[str] = []
    if draw(st.booleans()):
        parts.append("\ufeff")
    for block in draw(st.lists(event_block, max_size=8)):
        for (name, sep, value), end in block:
            parts.append(f"{name}{sep}{value}{end}" if sep else f"{name}{end}")
        parts.append(draw(line_end))
    if draw(st.booleans()):  # an unterminated tail
        parts.append("data: tail")
    return "".join(parts).encode()


@st.composite
def split(draw: st.DrawFn, body: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(body)), max_size=12)))
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(body[start:cut])  # a repeated cut point makes an empty chunk
        start = cut
    pieces.append(body[start:])
    return pieces


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_random_chunk_boundaries_decode_like_a_reference_reading(data: st.DataObject) -> None:
    body = data.draw(sse_bodies())
    chunks = data.draw(split(body))
    assert decode(*chunks) == reference(body)


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_lf_only_streams_in_random_chunks_decode_like_a_reference_reading(data: st.DataObject) -> None:
    # Without CR the decoder cuts whole events at once: this drives that path (and its hand-over to the general one
    # when a CR shows up in the tail) hardest.
    body = data.draw(sse_bodies()).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if data.draw(st.booleans()):
        body += b"\r\n" + data.draw(sse_bodies()).replace(b"\xef\xbb\xbf", b"")
    chunks = data.draw(split(body))
    assert decode(*chunks) == reference(body)


data_line_value = st.lists(st.sampled_from(["a", " ", ":", "d", "\u00e9", "data: ", "\n\ndata: "]), max_size=6).map(
    "".join
)
odd_line = st.sampled_from(["data:x", ": ping", "event: e", "id: 7", "retry: 5", "data", "", "data: two\ndata: lines"])


@settings(max_examples=300, deadline=None)
@given(
    blocks=st.lists(
        st.one_of(data_line_value.map(lambda v: ("data", v)), odd_line.map(lambda v: ("odd", v))), max_size=30
    ),
    data=st.data(),
)
def test_runs_of_one_data_line_events_decode_like_a_reference_reading(
    blocks: list[tuple[str, str]], data: st.DataObject
) -> None:
    # The commonest stream (one `data: ` line per event) is read by splitting on "\n\ndata: "; values that contain
    # that very text (a value cannot hold a line end, so it becomes two events) and any other line mixed in must send
    # the run to the general reading.
    body = "".join(f"data: {v}\n\n" if kind == "data" else f"{v}\n\n" for kind, v in blocks).encode()
    chunks = data.draw(split(body))
    assert decode(*chunks) == reference(body)
    assert decode(body) == reference(body)


sse_ish_bytes = st.lists(
    st.sampled_from(
        [
            *(b"data:", b"data: ", b"event: ", b"id: ", b"retry: ", b":", b" ", b"\n", b"\n\n", b"\r", b"x", b"7"),
            *(b"\x00", b"\xef\xbb\xbf", b"\xe2\x82", b"\xff", "é✓".encode()),
        ]
    ),
    max_size=40,
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(body=sse_ish_bytes | st.binary(max_size=200), data=st.data())
def test_random_bytes_in_random_chunks_decode_like_a_reference_reading(body: bytes, data: st.DataObject) -> None:
    # Invalid UTF-8 included: decoding a whole run of events at once must equal decoding value by value.
    chunks = data.draw(split(body))
    assert decode(*chunks) == reference(body)


BIG_BODY = (
    b"data: small\n\n"
    + b"event: big\n"
    + b"".join(b"data: line %d " % i + b"y" * 100 + b"\n" for i in range(2000))  # ~220 KB over many lines
    + b"id: 9\n\n"
    + b"data: " + b"z" * 300_000 + b"\n\n"  # one long line
    + b"data: crlf\r\n\r\n"
    + b"event: last\ndata: done\n\n"
)  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=200_000), min_size=1, max_size=30))
def test_long_events_in_random_chunks_decode_like_a_reference_reading(sizes: list[int]) -> None:
    chunks, start = [], 0
    for size in sizes:
        chunks.append(BIG_BODY[start : start + size])
        start += size
    chunks.append(BIG_BODY[start:])
    events = decode(*chunks)
    assert events == reference(BIG_BODY)
    assert [e.event for e in events] == ["message", "big", "message", "message", "last"]


def test_a_long_line_arriving_in_many_pieces_is_one_line() -> None:
    splitter = LineSplitter(1 << 20)
    for _ in range(100):
        assert splitter.feed(b"x" * 1000) == []
    assert splitter.feed(b"\nnext") == [b"x" * 100_000]
    assert splitter.flush() == [b"next"]


# -- JSON lines ------------------------------------------------------------------------------------------------------
def decode_jsonl(*chunks: bytes, cap: int = 1 << 20) -> list[Any]:
    decoder = JSONLinesDecoder(cap)
    out: list[Any] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.end())
    return out


def test_json_lines_values_one_per_line() -> None:
    assert decode_jsonl(b'{"a": 1}\n[2]\n"three"\n') == [{"a": 1}, [2], "three"]


def test_json_lines_skip_blank_lines_and_accept_crlf() -> None:
    assert decode_jsonl(b'{"a": 1}\r\n\r\n  \n{"b": 2}\r\n') == [{"a": 1}, {"b": 2}]


def test_json_lines_last_line_without_newline_is_read_at_eof() -> None:
    assert decode_jsonl(b'{"a": 1}\n{"b":', b" 2}") == [{"a": 1}, {"b": 2}]


def test_json_lines_split_anywhere() -> None:
    body = b'{"text": "h\xc3\xa9llo"}\n{"n": 12345}\n'
    for cut in range(len(body) + 1):
        assert decode_jsonl(body[:cut], body[cut:]) == [{"text": "héllo"}, {"n": 12345}]


def test_json_lines_invalid_line_raises_validation_error() -> None:
    with pytest.raises(ResponseValidationError, match="not JSON"):
        decode_jsonl(b'{"a": 1}\nnot json\n')


def test_json_lines_line_over_the_cap_raises() -> None:
    with pytest.raises(EventTooLargeError):
        decode_jsonl(b'"' + b"x" * 100 + b'"\n', cap=50)


# -- LineSplitter cap ------------------------------------------------------------------------------------------------
def test_line_splitter_allows_a_line_exactly_at_the_cap() -> None:
    splitter = LineSplitter(10)
    assert splitter.feed(b"x" * 10 + b"\n") == [b"x" * 10]


def test_line_splitter_raises_on_a_complete_line_over_the_cap() -> None:
    with pytest.raises(EventTooLargeError):
        LineSplitter(10).feed(b"ok\n" + b"x" * 11 + b"\nok\n")


def test_line_splitter_raises_as_soon_as_a_partial_line_passes_the_cap() -> None:
    splitter = LineSplitter(10)
    assert splitter.feed(b"x" * 6) == []
    with pytest.raises(EventTooLargeError):
        splitter.feed(b"x" * 6)  # 12 bytes and no line end yet: nothing more is buffered


def test_sse_event_over_the_cap_across_many_lines_raises() -> None:
    decoder = SSEDecoder(max_event_size=100)
    with pytest.raises(EventTooLargeError):
        decoder.feed(b"data: " + b"x" * 40 + b"\n" + b"data: " + b"x" * 40 + b"\n" + b"data: " + b"x" * 40 + b"\n")


# -- EventStream over a real server ------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class Tick:
    kind: str
    n: int


def parse_tick(frame: ServerSentEvent) -> Tick | None:
    if frame.data == "[DONE]":
        return END  # type: ignore[no-any-return]
    if frame.event == "ping":
        return None
    payload = json.loads(frame.data)
    return Tick(kind=frame.event, n=payload["n"])


def frames(*events: tuple[str, int]) -> list[tuple[float, bytes]]:
    return [(0.0, f"event: {kind}\ndata: {json.dumps({'n': n})}\n\n".encode()) for kind, n in events]


def tick_stream(t: Transport, **kwargs: Any) -> Any:
    kwargs.setdefault("idempotent", True)
    return t.stream("GET", "/sse", decoder=SSEDecoder(t.max_event_size), parse=parse_tick, **kwargs)


async def read_into(stream: Any, got: list[Tick]) -> None:
    """Read events into ``got`` (so a test sees what arrived before an error)."""
    async for event in stream:
        got.append(event)


async def test_a_stream_yields_typed_events_skips_pings_and_stops_at_the_end_marker(
    srv: CoreServer, transport: Transport
) -> None:
    srv.script = [*frames(("tick", 1)), (0.0, b"event: ping\ndata: {}\n\n"), *frames(("tick", 2))]
    srv.script.append((0.0, b"data: [DONE]\n\n"))
    srv.script += frames(("tick", 99))  # after the end marker: never read as an event
    async with tick_stream(transport) as events:
        assert events.status == 200
        assert events.headers["Content-Type"] == "text/event-stream"
        got = [e async for e in events]
    assert got == [Tick(kind="tick", n=1), Tick(kind="tick", n=2)]


async def test_a_stream_without_a_parse_step_yields_the_frames_and_still_honours_the_terminal_test(
    srv: CoreServer, transport: Transport
) -> None:
    srv.script = [*frames(("tick", 1)), (0.0, b": comment\n\n"), *frames(("done", 2), ("tick", 3))]
    stream = transport.stream(
        "GET",
        "/sse",
        decoder=SSEDecoder(),
        parse=None,  # type: ignore[arg-type]
        idempotent=True,
        terminal=lambda frame: frame.event == "done",
    )
    got = await stream.collect()
    assert got == [ev('{"n": 1}', event="tick"), ev('{"n": 2}', event="done")]
    assert stream.events_yielded == 2
    assert acquired_connections(transport) == 0


async def test_batches_hand_over_every_event_once_in_order_and_end_at_the_end_marker(
    srv: CoreServer, transport: Transport
) -> None:
    srv.script = [(0.0, b"".join(body for _, body in frames(*[("tick", n) for n in range(50)])))]
    srv.script += [(0.05, b"".join(body for _, body in frames(*[("tick", n) for n in range(50, 60)])))]
    srv.script.append((0.0, b"data: [DONE]\n\n"))
    async with tick_stream(transport) as events:
        first = await events.__anext__()  # iterating one by one and by batches may be mixed
        batches = [batch async for batch in events.batches()]
    assert first == Tick(kind="tick", n=0)
    assert all(batches)
    assert len(batches) >= 2  # the pause splits them: a batch is what had arrived, not the whole stream
    assert [first, *(e for batch in batches for e in batch)] == [Tick(kind="tick", n=n) for n in range(60)]
    assert events.events_yielded == 60
    assert acquired_connections(transport) == 0


async def test_a_terminal_event_is_yielded_and_ends_the_stream(srv: CoreServer, transport: Transport) -> None:
    srv.script = frames(("tick", 1), ("done", 2), ("tick", 3))
    got = await tick_stream(transport, terminal=lambda e: e.kind == "done").collect()
    assert got == [Tick(kind="tick", n=1), Tick(kind="done", n=2)]
    assert acquired_connections(transport) == 0


async def test_a_stream_read_to_the_end_returns_its_connection_to_the_pool(
    srv: CoreServer, transport: Transport
) -> None:
    srv.script = frames(("tick", 1))
    assert await tick_stream(transport).collect() == [Tick(kind="tick", n=1)]
    assert acquired_connections(transport) == 0
    assert pooled_connections(transport) == 1


async def test_a_silent_stream_raises_stream_idle_timeout(srv: CoreServer, transport: Transport) -> None:
    srv.script = [*frames(("tick", 1)), (2.0, b"data: late\n\n")]
    got: list[Tick] = []
    started = time.monotonic()
    with pytest.raises(StreamIdleTimeout) as info:
        await read_into(tick_stream(transport, idle_timeout=0.3), got)
    assert got == [Tick(kind="tick", n=1)]
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - started < 1.5
    assert acquired_connections(transport) == 0


async def test_a_cut_body_raises_incomplete_stream_error(srv: CoreServer, transport: Transport) -> None:
    srv.script = frames(("tick", 1))
    srv.cut_after_script = True
    got: list[Tick] = []
    with pytest.raises(IncompleteStreamError):
        await read_into(tick_stream(transport), got)
    assert got == [Tick(kind="tick", n=1)]
    assert acquired_connections(transport) == 0


async def test_a_clean_end_without_the_terminal_event_is_incomplete_when_required(
    srv: CoreServer, transport: Transport
) -> None:
    srv.script = frames(("tick", 1))
    with pytest.raises(IncompleteStreamError, match="1 events"):
        await tick_stream(transport, terminal=lambda e: e.kind == "done", require_terminal=True).collect()


async def test_a_clean_end_without_a_terminal_event_is_fine_when_not_required(
    srv: CoreServer, transport: Transport
) -> None:
    srv.script = frames(("tick", 1))
    assert await tick_stream(transport, terminal=lambda e: e.kind == "done").collect() == [Tick(kind="tick", n=1)]


async def test_an_oversize_event_raises_promptly_without_reading_the_rest(srv: CoreServer) -> None:
    t = Transport(srv.url, max_event_size=256 * 1024)
    stream = t.stream("GET", "/huge-event", decoder=SSEDecoder(t.max_event_size), parse=parse_tick, idempotent=True)
    with pytest.raises(EventTooLargeError):
        await stream.collect()
    raised_at = time.monotonic()
    sent_then = srv.sent_bytes
    assert acquired_connections(t) == 0
    await t.aclose()
    # The server sends 8 MiB over about 0.6 s; the client gave up after the cap and before the server was done.
    assert sent_then < 4 * 1024 * 1024
    assert srv.finished_at is None or srv.finished_at > raised_at


async def test_breaking_out_early_closes_the_connection(srv: CoreServer, transport: Transport) -> None:
    srv.script = [*frames(("tick", 1)), (1.0, b"data: never\n\n")]
    async with tick_stream(transport) as events:
        async for _ in events:
            break
    assert acquired_connections(transport) == 0
    assert pooled_connections(transport) == 0  # unread bytes: the connection cannot be reused


async def test_aclose_closes_the_connection_and_is_idempotent(srv: CoreServer, transport: Transport) -> None:
    srv.script = [*frames(("tick", 1)), (1.0, b"data: never\n\n")]
    stream = tick_stream(transport)
    assert await stream.__anext__() == Tick(kind="tick", n=1)
    await stream.aclose()
    await stream.aclose()
    assert acquired_connections(transport) == 0
    assert "closed" in repr(stream)


@pytest.mark.usefixtures("instant_retries")
async def test_a_stream_is_retried_while_opening(srv: CoreServer, transport: Transport) -> None:
    srv.inject(Fault.status_code(503), path="/sse")
    srv.script = frames(("tick", 1))
    assert await tick_stream(transport).collect() == [Tick(kind="tick", n=1)]
    assert len(srv.requests_to("/sse")) == 2


@pytest.mark.usefixtures("instant_retries")
async def test_an_error_status_on_open_raises_the_status_error(srv: CoreServer, transport: Transport) -> None:
    srv.inject(Fault.status_code(503), path="/sse", times=3)
    with pytest.raises(ServiceUnavailableError):
        async with tick_stream(transport):
            pass
    assert acquired_connections(transport) == 0


async def test_a_redirect_loop_while_opening_a_stream_ends(srv: CoreServer, transport: Transport) -> None:
    stream = transport.stream("GET", "/loop", decoder=SSEDecoder(), parse=parse_tick, idempotent=True)
    with pytest.raises(RedirectError, match="too many redirects"):
        await asyncio.wait_for(stream.collect(), 10)
    assert len(srv.requests_to("/loop")) == 6


async def test_a_stream_may_outlive_the_total_timeout(srv: CoreServer) -> None:
    t = Transport(srv.url, timeout=0.4)
    srv.script = [(0.2, f"data: {json.dumps({'n': i})}\n\n".encode()) for i in range(6)]  # about 1.2 s
    got = await t.stream("GET", "/sse", decoder=SSEDecoder(), parse=parse_tick, idempotent=True).collect()
    await t.aclose()
    assert [e.n for e in got] == list(range(6))


async def test_an_error_in_parse_propagates_and_releases_the_connection(srv: CoreServer, transport: Transport) -> None:
    srv.script = [*frames(("tick", 1)), (0.0, b"data: not json\n\n"), (1.0, b"data: never\n\n")]
    stream = tick_stream(transport)
    assert await stream.__anext__() == Tick(kind="tick", n=1)
    with pytest.raises(json.JSONDecodeError):
        await stream.__anext__()
    assert acquired_connections(transport) == 0


async def test_an_abandoned_stream_releases_its_connection_when_collected(
    srv: CoreServer, transport: Transport
) -> None:
    srv.script = [*frames(("tick", 1)), (1.0, b"data: never\n\n")]
    stream = tick_stream(transport)
    assert await stream.__anext__() == Tick(kind="tick", n=1)
    del stream
    gc.collect()
    assert acquired_connections(transport) == 0


@pytest.mark.usefixtures("instant_retries")
async def test_a_stream_open_that_loses_a_sent_request_is_outcome_unknown(
    srv: CoreServer, transport: Transport
) -> None:
    srv.inject(Fault.reset(after_body=True), path="/sse")
    stream = transport.stream("POST", "/sse", decoder=SSEDecoder(), parse=parse_tick, idempotent=False)
    with pytest.raises(OutcomeUnknownError):
        await stream.collect()
    assert len(srv.requests_to("/sse")) == 1


@pytest.mark.usefixtures("instant_retries")
async def test_an_idempotent_stream_open_is_retried_after_a_reset(srv: CoreServer, transport: Transport) -> None:
    srv.inject(Fault.reset(after_body=True), path="/sse")
    srv.script = frames(("tick", 1))
    assert await tick_stream(transport).collect() == [Tick(kind="tick", n=1)]
    assert len(srv.requests_to("/sse")) == 2


async def test_json_lines_over_a_real_stream(srv: CoreServer, transport: Transport) -> None:
    srv.script = [(0.0, b'{"n": 1}\n{"n"'), (0.05, b': 2}\n\n{"n": 3}')]
    stream = transport.stream("GET", "/sse", decoder=JSONLinesDecoder(), parse=lambda v: v["n"], idempotent=True)
    assert await stream.collect() == [1, 2, 3]


async def test_a_closed_stream_cannot_be_read_again(srv: CoreServer, transport: Transport) -> None:
    srv.script = frames(("tick", 1))
    stream = tick_stream(transport)
    await stream.collect()
    with pytest.raises(ClientClosedError):
        await stream.__anext__()


async def test_cancelling_a_task_reading_a_stream_in_async_with_releases_the_connection(
    srv: CoreServer, transport: Transport
) -> None:
    srv.script = [*frames(("tick", 1)), (1.0, b"data: never\n\n")]
    first = asyncio.Event()

    async def consume() -> None:
        async with tick_stream(transport) as events:
            async for _ in events:
                first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert acquired_connections(transport) == 0


async def test_a_read_cancelled_by_a_timeout_can_be_resumed(srv: CoreServer, transport: Transport) -> None:
    # Waiting for one event with a deadline is a cancellation of that read, not of the stream.
    srv.script = [*frames(("tick", 1)), (0.4, f"data: {json.dumps({'n': 2})}\n\n".encode())]
    async with tick_stream(transport) as events:
        assert await events.__anext__() == Tick(kind="tick", n=1)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(events.__anext__(), 0.1)
        assert await asyncio.wait_for(events.__anext__(), 2) == Tick(kind="message", n=2)
    assert acquired_connections(transport) == 0


async def test_status_and_headers_stay_readable_after_the_stream_is_done(srv: CoreServer, transport: Transport) -> None:
    srv.script = frames(("tick", 1))
    stream = tick_stream(transport)
    before = stream.status  # not open yet
    await stream.collect()
    assert (before, stream.status) == (None, 200)
    assert stream.headers["Content-Type"] == "text/event-stream"


@pytest.mark.usefixtures("instant_retries")
async def test_a_stream_with_a_one_shot_body_is_not_reopened(srv: CoreServer, transport: Transport) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"one-shot"

    srv.inject(Fault.status_code(503), path="/sse")
    stream = transport.stream("PUT", "/sse", decoder=SSEDecoder(), parse=parse_tick, idempotent=True, data=body())
    with pytest.raises(ServiceUnavailableError):
        await stream.collect()
    assert [r.body for r in srv.requests_to("/sse")] == [b"one-shot"]


# -- a chunk of many events: built and parsed a slice at a time ---------------------------------------------------
def data_run(values: list[str]) -> bytes:
    return "".join(f"data: {v}\n\n" for v in values).encode()


def test_the_lazy_feed_gives_what_feed_gives() -> None:
    body = b"id: 3\n\n" + data_run([str(n) for n in range(1000)]) + b"event: x\ndata: y\n\n" + data_run(["z"] * 600)
    for size in (7, 4096, len(body)):
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        eager, lazy = SSEDecoder(), SSEDecoder()
        assert [e for c in chunks for e in eager.feed(c)] == [e for c in chunks for e in lazy.feed_lazy(c)]


async def test_a_chunk_of_thousands_of_events_is_handed_out_whole_and_in_order_a_slice_at_a_time(
    srv: CoreServer, transport: Transport
) -> None:
    srv.script = [(0.0, data_run([str(n) for n in range(3000)]))]  # one write: thousands of events per read
    stream = transport.stream("GET", "/sse", decoder=SSEDecoder(), parse=None, idempotent=True)  # type: ignore[arg-type]
    got: list[ServerSentEvent] = []
    most_ready = 0
    async with stream:
        async for event in stream:
            got.append(event)
            most_ready = max(most_ready, len(stream._ready))
    assert [e.data for e in got] == [str(n) for n in range(3000)]
    assert stream.events_yielded == 3000
    assert most_ready < 256  # built a slice at a time, not a chunk's thousands at once
    assert acquired_connections(transport) == 0


async def test_an_end_marker_or_a_terminal_event_inside_a_long_chunk_ends_the_stream_there(
    srv: CoreServer, transport: Transport
) -> None:
    ticks = [json.dumps({"n": n}) for n in range(2000)]
    srv.script = [(0.0, data_run([*ticks[:1000], "[DONE]", *ticks[1000:]]))]
    got = [e async for e in tick_stream(transport)]
    assert [t.n for t in got] == list(range(1000))
    got = await tick_stream(transport, terminal=lambda t: t.n == 700).collect()
    assert [t.n for t in got] == list(range(701))
    srv.script = [(0.0, data_run(ticks))]
    got = []
    async for batch in tick_stream(transport, terminal=lambda t: t.n == 1500).batches():
        got += batch
    assert [t.n for t in got] == list(range(1501))
    assert acquired_connections(transport) == 0


async def test_a_parse_error_inside_a_long_chunk_comes_after_every_event_before_it(
    srv: CoreServer, transport: Transport
) -> None:
    ticks = [json.dumps({"n": n}) for n in range(2000)]
    srv.script = [(0.0, data_run([*ticks[:900], "not json", *ticks[900:]]))]
    got: list[Tick] = []
    with pytest.raises(json.JSONDecodeError):
        await read_into(tick_stream(transport), got)
    assert [t.n for t in got] == list(range(900))
    assert acquired_connections(transport) == 0


async def test_false_events_are_events(srv: CoreServer, transport: Transport) -> None:
    # None skips a frame and END ends the stream; an event that is merely false (0, "", []) is handed out.
    srv.script = [(0.0, data_run(["0", "1", '""', "[]", "2"] * 100))]
    stream = transport.stream("GET", "/sse", decoder=SSEDecoder(), parse=lambda f: json.loads(f.data), idempotent=True)
    assert await stream.collect() == [0, 1, "", [], 2] * 100


async def test_a_cut_after_a_long_chunk_names_the_last_event_id_and_the_count(
    srv: CoreServer, transport: Transport
) -> None:
    srv.script = [(0.0, b"id: 41\n\n" + data_run([json.dumps({"n": n}) for n in range(1000)]))]
    srv.cut_after_script = True
    got: list[Tick] = []
    with pytest.raises(IncompleteStreamError) as info:
        await read_into(tick_stream(transport), got)
    assert len(got) == 1000
    assert info.value.events == 1000
    assert info.value.last_event_id == "41"


async def test_a_terminal_test_that_raises_propagates_and_hands_out_nothing_of_that_slice(
    srv: CoreServer, transport: Transport
) -> None:
    def terminal(tick: Tick) -> bool:
        if tick.n == 5:
            raise ValueError("bad terminal test")
        return False

    srv.script = [(0.0, data_run([json.dumps({"n": n}) for n in range(1000)]))]
    stream = tick_stream(transport, terminal=terminal)
    with pytest.raises(ValueError, match="bad terminal test"):
        await stream.__anext__()
    assert stream.events_yielded == 0
    await stream.aclose()
    assert acquired_connections(transport) == 0
