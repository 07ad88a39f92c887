"""The CodeGeeX4 server's kernel queue, as its contract describes it (one shared kernel, cells run in order, a timed-out
cell keeps running, and its ``jupyter_client`` ``stop_on_error`` aborts every cell queued behind one that raises, which
the server answers as ``{"status": "ok", "events": []}``), and the client's answers to it: no aborted cell is ever
reported as a success. Plus a frozen server's health check and cut ``/execute`` answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from aioagents import APITimeoutError, OutcomeUnknownError, StreamOutcomeUnknownError
from aioagents.interpreter import Interpreter, InterpreterClient, KernelBusyError, Stream


class KernelQueueServer:
    """``POST /execute`` over one serial kernel. A cell is a tiny script: ``sleep N`` then ``raise`` or ``print X``."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, asyncio.Future[dict[str, Any]]]] = asyncio.Queue()
        self.received: list[str] = []
        self.pings = 0
        self.freeze_ping = False
        self.cut_execute: str | None = None  # "plain" or "ndjson": answer half an execute, then drop the connection
        self.runner: web.AppRunner | None = None
        self.url = ""
        self._worker: asyncio.Task[None] | None = None

    async def _kernel(self) -> None:
        while True:
            code, answer = await self.queue.get()
            events: list[dict[str, Any]] = []
            raised = False
            for line in code.splitlines():
                verb, _, arg = line.partition(" ")
                if verb == "sleep":
                    await asyncio.sleep(float(arg))
                elif verb == "raise":
                    events.append({"type": "error", "data": {"ename": "ValueError", "evalue": arg, "traceback": []}})
                    raised = True
                    break
                elif verb == "print":
                    events.append({"type": "stream", "data": {"stream": "stdout", "text": arg}})
                elif verb.startswith("print("):  # the client's probe: print('marker', end='')
                    text = line.split("'")[1]
                    events.append({"type": "stream", "data": {"stream": "stdout", "text": text}})
            if not answer.done():
                answer.set_result({"status": "ok", "events": events})
            if raised:
                # stop_on_error: every cell already queued is aborted, and the server reports it as an empty success.
                while not self.queue.empty():
                    _, queued = self.queue.get_nowait()
                    if not queued.done():
                        queued.set_result({"status": "ok", "events": []})

    async def _execute(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        code, secs = body["code"], body["timeout_secs"]
        self.received.append(code)
        if self.cut_execute == "ndjson":
            resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await resp.prepare(request)
            await resp.write(json.dumps({"type": "stream", "data": {"stream": "stdout", "text": "a"}}).encode() + b"\n")
            assert request.transport is not None
            request.transport.abort()
            return resp
        if self.cut_execute == "plain":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        await self.queue.put((code, answer))
        try:
            result = await asyncio.wait_for(asyncio.shield(answer), secs)
        except asyncio.TimeoutError:
            result = {"status": "timeout", "events": []}  # the cell keeps running
        return web.Response(text=json.dumps(result), content_type="text/html")

    async def _ping(self, request: web.Request) -> web.Response:
        self.pings += 1
        if self.freeze_ping:
            await asyncio.sleep(3600)
        return web.Response(text='{"last_activity": "2026-11-20T23:52:56.118673Z"}', content_type="text/html")

    async def __aenter__(self) -> KernelQueueServer:
        app = web.Application()
        app.router.add_post("/execute", self._execute)
        app.router.add_get("/", self._ping)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._worker = asyncio.create_task(self._kernel())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._worker is not None
        self._worker.cancel()
        assert self.runner is not None
        await self.runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[KernelQueueServer]:
    async with KernelQueueServer() as s:
        yield s


@pytest.fixture
async def client(server: KernelQueueServer) -> AsyncIterator[InterpreterClient]:
    c = InterpreterClient(server.url, trust_env=False)
    yield c
    await c.aclose()


def _text(result: Any) -> str:
    return "".join(e.text for e in result.events if isinstance(e, Stream))


async def test_concurrent_executes_of_one_client_never_queue_behind_a_raising_cell(
    server: KernelQueueServer, client: InterpreterClient
) -> None:
    first = asyncio.ensure_future(client.execute("sleep 0.3\nraise boom", timeout=10))
    await asyncio.sleep(0.05)
    second = await client.execute("print ran", timeout=10)
    assert (await first).error is not None
    # Queued in the kernel behind the raising cell it would have come back {"status": "ok", "events": []}.
    assert _text(second) == "ran"


async def test_after_a_timed_out_cell_the_next_execute_is_not_aborted_behind_it(
    server: KernelQueueServer, client: InterpreterClient
) -> None:
    timed_out = await client.execute("sleep 1.5\nraise late", timeout=1)
    assert timed_out.timed_out
    result = await client.execute("print after", timeout=10)
    assert _text(result) == "after"
    # The probe went first, was aborted behind the raising cell, and only then was the code sent.
    assert server.received[-1] == "print after"
    assert server.received[-2].startswith("print('aioagents-probe-")


async def test_code_is_not_sent_while_the_timed_out_cell_still_runs(
    server: KernelQueueServer, client: InterpreterClient
) -> None:
    assert (await client.execute("sleep 3", timeout=1)).timed_out
    with pytest.raises(KernelBusyError):
        await client.execute("print never", timeout=1)
    assert "print never" not in server.received


async def test_ping_of_a_frozen_server_fails_after_its_short_timeout_without_retrying(
    server: KernelQueueServer,
) -> None:
    server.freeze_ping = True
    client = InterpreterClient(server.url, trust_env=False, ping_timeout=0.3)
    try:
        # The guard only turns a hang (3 × 60 s before the fix) into a failure; the assertion is the single try.
        with pytest.raises(APITimeoutError):
            await asyncio.wait_for(client.ping(), 30)
    finally:
        await client.aclose()
    assert server.pings == 1


async def test_a_cut_plain_execute_and_a_cut_execute_stream_both_leave_the_outcome_unknown(
    server: KernelQueueServer, client: InterpreterClient
) -> None:
    server.cut_execute = "plain"
    with pytest.raises(OutcomeUnknownError):
        await client.execute("print x", timeout=5)
    server.cut_execute = "ndjson"
    with pytest.raises(OutcomeUnknownError) as info:
        await client.execute_stream("print x", timeout=5).collect()
    assert isinstance(info.value, StreamOutcomeUnknownError)
    assert info.value.events == 1
    assert len(server.received) == 2  # neither was sent twice


async def test_a_session_stream_after_a_timed_out_cell_is_not_aborted_behind_it(server: KernelQueueServer) -> None:
    async with Interpreter(server.url, trust_env=False) as it:
        assert (await it.execute("sleep 1.5\nraise late", timeout=1)).timed_out
        events = [event async for event in it.stream("print streamed", timeout=10)]
    assert "".join(e.text for e in events if isinstance(e, Stream)) == "streamed"
    assert server.received[-2].startswith("print('aioagents-probe-")


async def test_the_clients_trace_configs_see_its_requests(server: KernelQueueServer) -> None:
    seen: list[tuple[str, str]] = []

    async def on_start(session: object, ctx: object, params: aiohttp.TraceRequestStartParams) -> None:
        seen.append((params.method, params.url.path))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with Interpreter(server.url, trust_env=False, trace_configs=[trace]) as it:
        await it.execute("print x", timeout=5)
    assert seen == [("GET", "/"), ("POST", "/execute")]


async def _streamed_text(client: InterpreterClient, code: str) -> tuple[str, list[Any]]:
    async with client.execute_stream(code, timeout=10) as events:
        items = [event async for event in events]
    return "".join(e.text for e in items if isinstance(e, Stream)), items


async def test_raw_streams_of_one_client_never_queue_behind_a_raising_cell(
    server: KernelQueueServer, client: InterpreterClient
) -> None:
    first = asyncio.ensure_future(_streamed_text(client, "sleep 0.3\nraise boom"))
    await asyncio.sleep(0.05)
    text, items = await _streamed_text(client, "print ran")
    assert any(getattr(e, "ename", None) == "ValueError" for e in (await first)[1])
    # Sent while the raising cell ran, the kernel would have aborted it: {"status": "ok", "events": []}.
    assert text == "ran", items
    assert server.received == ["sleep 0.3\nraise boom", "print ran"]


async def test_a_plain_execute_waits_for_a_raw_stream_in_flight_and_the_reverse(
    server: KernelQueueServer, client: InterpreterClient
) -> None:
    streamed = asyncio.ensure_future(_streamed_text(client, "sleep 0.3\nraise boom"))
    await asyncio.sleep(0.05)
    assert _text(await client.execute("print after-stream", timeout=10)) == "after-stream"
    await streamed
    executed = asyncio.ensure_future(client.execute("sleep 0.3\nraise bang", timeout=10))
    await asyncio.sleep(0.05)
    assert (await _streamed_text(client, "print after-execute"))[0] == "after-execute"
    assert (await executed).error is not None


async def test_a_raw_stream_after_a_timed_out_cell_probes_the_kernel_first(
    server: KernelQueueServer, client: InterpreterClient
) -> None:
    assert (await client.execute("sleep 1.5\nraise late", timeout=1)).timed_out
    assert (await _streamed_text(client, "print streamed"))[0] == "streamed"
    assert server.received[-2].startswith("print('aioagents-probe-")


async def test_a_raw_stream_that_fails_to_open_gives_the_turn_back(
    server: KernelQueueServer, client: InterpreterClient
) -> None:
    server.cut_execute = "plain"
    with pytest.raises(OutcomeUnknownError):
        async with client.execute_stream("print x", timeout=5):
            pass
    server.cut_execute = None
    # Not stuck behind the failed stream's turn; its cell's fate is unknown, so the kernel is probed first.
    result = await asyncio.wait_for(client.execute("print next", timeout=5), 30)
    assert _text(result) == "next"
    assert server.received[-2].startswith("print('aioagents-probe-")
