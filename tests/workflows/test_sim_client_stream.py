"""Real SSE streaming: typed events as they arrive, every end marker, idle timeouts, memory and connection hygiene."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc

import pytest

from aioagents._exceptions import IncompleteStreamError, StreamIdleTimeout
from aioagents.testing import Fault
from aioagents.testing._sim import FakeToolCall, FakeWorkflow, sse_frame
from aioagents.workflows import (
    Chunk,
    ChunkReset,
    Error,
    Final,
    StreamError,
    Thinking,
    ToolCall,
    Unknown,
    collect_result,
)

V1 = "/api/workflows/workflow-id/execute"


async def test_v1_stream_yields_typed_chunks_then_final(sim, client) -> None:
    wf = sim.workflows["workflow-id"]
    events = [e async for e in await client.execute("workflow-id", {"m": 1}, stream=True)]
    assert events[:-1] == [Chunk(block_id=wf.block_id, text=t) for t in wf.chunks]
    assert events[-1] == Final(success=True, output={"content": "Hello, world", "input": {"m": 1}})
    assert sim.requests_to(V1)[0].json() == {"m": 1, "stream": True}


async def test_v2_stream_sends_stream_true_inside_the_v2_body(sim, client_v2) -> None:
    async with client_v2.execute_stream("workflow-id", {"m": 1}, selected_outputs=["agent1.content"]) as events:
        kinds = [type(e).__name__ async for e in events]
    assert kinds == ["Chunk", "Chunk", "Final"]
    assert sim.requests[0].json() == {"input": {"m": 1}, "stream": True, "selectedOutputs": ["agent1.content"]}


async def test_first_chunk_arrives_before_the_workflow_finishes(sim, client) -> None:
    sim.add_workflow(FakeWorkflow(id="slow", chunks=["One", ", two", ", three", ", four", ", five"], chunk_delay=0.3))
    started = time.monotonic()
    stamps: list[tuple[str, float]] = []
    async with client.execute_stream("slow", {"message": "Count to five"}) as events:
        async for event in events:
            stamps.append((type(event).__name__, time.monotonic() - started))
    first_chunk = next(t for name, t in stamps if name == "Chunk")
    final = next(t for name, t in stamps if name == "Final")
    assert first_chunk < 1.0
    assert final >= 1.4
    assert final - first_chunk >= 1.2


async def test_protocol_events_are_typed(sim, client) -> None:
    sim.add_workflow(
        FakeWorkflow(id="agent", thinking=["let me think"], tool_calls=[FakeToolCall(id="t1", name="search")])
    )
    stream = client.execute_stream("agent", include_thinking=True, include_tool_calls=True)
    events = await stream.collect()
    bid = sim.workflows["agent"].block_id
    assert events[:4] == [
        Thinking(block_id=bid, text="let me think"),
        ToolCall(block_id=bid, phase="start", id="t1", name="search"),
        ToolCall(block_id=bid, phase="end", id="t1", name="search", status="success"),
        ChunkReset(block_id=bid),
    ]
    req = sim.requests[0]
    assert req.header("X-Sim-Stream-Protocol") == "agent-events-v1"
    assert req.json() == {"stream": True, "includeThinking": True, "includeToolCalls": True}


async def test_stream_error_is_a_warning_and_the_stream_goes_on(sim, client) -> None:
    sim.add_workflow(FakeWorkflow(id="flaky", chunks=["a", "b", "c"], stream_error_after=1))
    events = await client.execute_stream("flaky").collect()
    assert [type(e) for e in events] == [Chunk, StreamError, Chunk, Chunk, Final]
    assert events[1].error == "Provider hiccup"


async def test_error_event_is_terminal(sim, client) -> None:
    sim.add_workflow(FakeWorkflow(id="dead", abort_stream="Execution timed out"))
    events = await client.execute_stream("dead").collect()
    assert isinstance(events[-1], Error)
    assert events[-1].error == "Execution timed out"
    result = await collect_result(client.execute_stream("dead"))
    assert (result.success, result.error, result.error_code) == (False, "Execution timed out", "STREAM_ERROR")


@pytest.mark.parametrize("style", ["quoted", "bare", "event"])
async def test_every_end_marker_ends_the_stream_cleanly(sim, client, style) -> None:
    sim.done_style = style
    events = await client.execute_stream("workflow-id").collect()
    assert isinstance(events[-1], Final)
    assert events[-1].success is True


async def test_sse_event_done_line_and_unknown_frames(sim, client) -> None:
    body = (
        sse_frame({"blockId": "b", "chunk": "hi"})
        + sse_frame({"event": "brand_new", "x": 1})
        + b"data: not json\n\n"
        + b"event: done\ndata: {}\n\n"
        + sse_frame({"blockId": "b", "chunk": "never seen"})
    )
    sim.inject(Fault.raw(body, content_type="text/event-stream"), path=V1)
    events = await client.execute_stream("workflow-id").collect()
    assert events == [
        Chunk(block_id="b", text="hi"),
        Unknown(data={"event": "brand_new", "x": 1}),
        Unknown(data="not json"),
    ]


async def test_collected_stream_equals_the_sync_result(sim, client) -> None:
    sync = await client.execute("workflow-id", {"q": 1})
    streamed = await collect_result(await client.execute("workflow-id", {"q": 1}, stream=True))
    assert (streamed.success, streamed.output, streamed.error, streamed.status) == (
        sync.success,
        sync.output,
        sync.error,
        sync.status,
    )
    assert streamed.text == "Hello, world"


async def test_collector_honours_chunk_reset(sim, client) -> None:
    body = sse_frame({"blockId": "b", "chunk": "draft"}) + sse_frame({"blockId": "b", "event": "chunk_reset"})
    body += sse_frame({"blockId": "b", "chunk": "final"}) + sse_frame({"event": "final", "data": {"success": True}})
    sim.inject(Fault.raw(body + b'data: "[DONE]"\n\n', content_type="text/event-stream"), path=V1)
    result = await collect_result(client.execute_stream("workflow-id"))
    assert result.text == "final"


async def test_a_failed_run_streams_a_final_with_success_false(sim, client) -> None:
    sim.add_workflow(FakeWorkflow(id="bad", error="boom"))
    result = await collect_result(client.execute_stream("bad"))
    assert (result.success, result.error) == (False, "boom")


async def test_connection_cut_mid_stream_is_an_incomplete_stream(sim, client) -> None:
    sim.add_workflow(FakeWorkflow(id="cut", chunks=["a", "b", "c"], reset_after=2))
    seen = []

    async def read_all() -> None:
        async for event in client.execute_stream("cut"):
            seen.append(event)

    with pytest.raises(IncompleteStreamError):
        await read_all()
    assert [e.text for e in seen] == ["a", "b"]


async def test_body_ending_without_final_or_done_is_incomplete(sim, client) -> None:
    sim.inject(Fault.raw(sse_frame({"blockId": "b", "chunk": "a"}), content_type="text/event-stream"), path=V1)
    with pytest.raises(IncompleteStreamError):
        await client.execute_stream("workflow-id").collect()


async def test_idle_timeout_fires_on_a_silent_stream_but_no_total_timeout(sim, client) -> None:
    sim.add_workflow(FakeWorkflow(id="stall", chunks=["a", "b"], chunk_delay=1.0))
    with pytest.raises(StreamIdleTimeout):
        await client.execute_stream("stall", idle_timeout=0.3).collect()
    sim.add_workflow(FakeWorkflow(id="steady", chunks=["x"] * 8, chunk_delay=0.15))
    events = await client.execute_stream("steady", idle_timeout=0.5).collect()
    assert isinstance(events[-1], Final)  # 1.2 s in total, never 0.5 s of silence


async def test_leaving_early_closes_the_connection(sim, client) -> None:
    sim.add_workflow(FakeWorkflow(id="long", chunks=["x"] * 200, chunk_delay=0.01))
    async with client.execute_stream("long") as events:
        async for _event in events:
            break
    for _ in range(200):
        if sim.open_streams == 0:
            break
        await asyncio.sleep(0.01)
    assert sim.open_streams == 0
    assert sim.streams_completed == 0


async def test_stream_open_errors_raise_at_open(sim, client) -> None:
    from aioagents.workflows import SimNotFoundError

    with pytest.raises(SimNotFoundError):
        await client.execute("missing", stream=True)


async def test_a_1000_event_stream_runs_in_flat_memory(sim, client) -> None:
    chunk = "y" * 2048
    sim.add_workflow(FakeWorkflow(id="big", chunks=[chunk] * 1000, output={"ok": True}))
    gc.collect()
    tracemalloc.start()
    try:
        count = 0
        async for event in client.execute_stream("big"):
            count += 1
            assert isinstance(event, (Chunk, Final))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 1001
    # 2 MB of text went through; nothing close to it was held at once.
    assert peak < 1_000_000, peak


async def test_200_concurrent_streams_complete_and_leak_no_connection(sim, client) -> None:
    sim.add_workflow(FakeWorkflow(id="many", chunks=[f"c{i}" for i in range(20)], output={"ok": True}))

    async def one(i: int) -> str:
        result = await collect_result(client.execute_stream("many", {"i": i}))
        assert result.success
        return result.text or ""

    gc.collect()
    tracemalloc.start()
    try:
        texts = await asyncio.gather(*(one(i) for i in range(200)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert set(texts) == {"".join(f"c{i}" for i in range(20))}
    assert sim.streams_started == sim.streams_completed == 200
    assert sim.open_streams == 0
    assert peak < 40_000_000, peak
    connector = client._transport._session().connector
    assert connector is not None
    # Every connection went back to the pool or was closed: none is still checked out.
    assert sum(len(v) for v in connector._acquired_per_host.values()) == 0
