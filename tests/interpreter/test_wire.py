"""What the interpreter client sends and how it reads every answer shape, against real loopback servers.

The fake of the original server covers its quirks (text/html JSON, 500 bodies, overwrite on upload); a small
scripted server covers the answer formats the original never sends (NDJSON, SSE, 409, hostile file names).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from aioagents import AuthenticationError, InvalidRequestError
from aioagents.interpreter import (
    DisplayData,
    Error,
    ExecutionEnd,
    File,
    FileExistsInSandboxError,
    InterpreterClient,
    InterpreterRequestError,
    KernelDeadError,
    SandboxPathError,
    Stream,
    UnknownEvent,
)
from aioagents.local import LocalSandbox
from aioagents.testing import FakeServer, Fault
from aioagents.testing._interpreter import FakeInterpreterServer

EVENTS = [
    {"type": "stream", "timestamp": "2026-11-20T23:53:05.718628Z", "data": {"stream": "stdout", "text": "hi\n"}},
    {"type": "display_data", "timestamp": "2026-11-20T23:53:05.8Z", "data": {"variants": {"text/plain": "2"}}},
    {"type": "error", "timestamp": "2006-01-02T15:04:05Z07:00", "data": {"ename": "E", "evalue": "v", "traceback": []}},
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeInterpreterServer]:
    async with FakeInterpreterServer() as server:
        yield server


@pytest.fixture
async def client(fake: FakeInterpreterServer) -> AsyncIterator[InterpreterClient]:
    async with InterpreterClient(fake.url) as c:
        yield c


# -- execute ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("given", "sent"), [(0.1, 1), (1, 1), (1.2, 2), (59.5, 60), (3.0, 3)])
async def test_timeout_secs_is_always_an_integer_of_at_least_one(
    fake: FakeInterpreterServer, client: InterpreterClient, given: float, sent: int
) -> None:
    await client.execute("1", timeout=given)
    body = fake.requests_to("/execute")[-1].json()
    assert body == {"code": "1", "timeout_secs": sent}
    assert type(body["timeout_secs"]) is int


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "5"])
async def test_a_timeout_that_is_not_a_number_is_refused_before_sending(
    fake: FakeInterpreterServer, client: InterpreterClient, bad: Any
) -> None:
    with pytest.raises(InvalidRequestError):
        await client.execute("1", timeout=bad)
    assert fake.requests_to("/execute") == []


async def test_json_labelled_text_html_is_read(fake: FakeInterpreterServer, client: InterpreterClient) -> None:
    result = await client.execute("print('x')")
    assert result.stdout == "x\n"
    # The fake answers exactly as the original: Content-Type text/html.
    fake.inject(Fault.raw(json.dumps({"status": "ok", "events": EVENTS}).encode(), content_type="text/html"))
    result = await client.execute("anything")
    assert [type(e) for e in result.events] == [Stream, DisplayData, Error]
    assert result.events[2].timestamp is None  # the docs' Go layout string is not a time


async def test_a_500_error_body_is_a_typed_error_and_not_retried(
    fake: FakeInterpreterServer, client: InterpreterClient
) -> None:
    message = "1 validation error for ExecuteRequest\ntimeout_secs\n  Field required"
    fake.inject(Fault.status_code(500, {"error": message}), path="/execute")
    with pytest.raises(InterpreterRequestError) as caught:
        await client.execute("1")
    assert caught.value.status == 500
    assert "validation error" in str(caught.value)
    assert len(fake.requests_to("/execute")) == 1


async def test_a_dead_kernel_answers_ping_with_500(fake: FakeInterpreterServer, client: InterpreterClient) -> None:
    fake.kill_kernel()
    with pytest.raises(KernelDeadError):
        await client.ping()
    assert len(fake.requests_to("/")) == 1  # a dead kernel is not retried


async def test_kernel_not_alive_on_execute_is_kernel_dead(
    fake: FakeInterpreterServer, client: InterpreterClient
) -> None:
    fake.inject(Fault.status_code(500, {"error": "kernel is not alive"}), path="/execute")
    with pytest.raises(KernelDeadError):
        await client.execute("1")


async def test_execute_is_not_retried_after_the_connection_broke(
    fake: FakeInterpreterServer, client: InterpreterClient
) -> None:
    from aioagents import OutcomeUnknownError

    fake.inject(Fault.reset(after_body=True), path="/execute")
    with pytest.raises(OutcomeUnknownError):
        await client.execute("print(1)")
    assert len(fake.requests_to("/execute")) == 1  # running the code twice would be worse


# -- answer formats ---------------------------------------------------------------------------------------------
class FormatServer(FakeServer):
    """``/execute`` answers with a scripted body and Content-Type."""

    def __init__(self) -> None:
        super().__init__()
        self.body = b""
        self.content_type = "application/json"

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post("/execute", self._execute)

    async def _execute(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": self.content_type})
        await resp.prepare(request)
        await resp.write(self.body)
        await resp.write_eof()
        return resp


def _ndjson(status: bool) -> bytes:
    lines = [json.dumps(e) for e in EVENTS] + ([json.dumps({"type": "status", "status": "timeout"})] if status else [])
    return ("\n".join(lines) + "\n").encode()


def _sse() -> bytes:
    out = [f"event: {e['type']}\ndata: {json.dumps(e['data'])}\n\n" for e in EVENTS]
    out.append('event: end\ndata: {"status": "timeout"}\n\n')
    return ("".join(out)).encode()


def _document(indent: int | None = None) -> bytes:
    return json.dumps({"status": "timeout", "events": EVENTS}, indent=indent).encode()


FORMATS: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "json-text-html": ("text/html; charset=UTF-8", _document, "timeout"),
    "json-pretty": ("application/json", lambda: _document(2), "timeout"),
    "ndjson": ("application/x-ndjson", lambda: _ndjson(True), "timeout"),
    "ndjson-without-status": ("application/x-ndjson", lambda: _ndjson(False), "ok"),
    "sse": ("text/event-stream", _sse, "timeout"),
}  # fmt: skip


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_every_answer_format_gives_the_same_typed_events(fmt: str) -> None:
    content_type, body, status = FORMATS[fmt]
    # Two clients: most formats answer "timeout", after which a client probes the kernel before its next cell.
    async with FormatServer() as srv, InterpreterClient(srv.url) as client, InterpreterClient(srv.url) as streamer:
        srv.content_type, srv.body = content_type, body()
        result = await client.execute("x")
        async with streamer.execute_stream("x") as events:
            streamed = [e async for e in events]
    assert [type(e) for e in result.events] == [Stream, DisplayData, Error]
    assert result.status == status
    assert streamed[:-1] == list(result.events)
    assert streamed[-1] == ExecutionEnd(status=status)
    accept = srv.requests_to("/execute")[-1].header("Accept")
    assert accept is not None
    assert "application/x-ndjson" in accept


async def test_a_non_json_answer_is_a_validation_error() -> None:
    from aioagents import ResponseValidationError

    async with FormatServer() as srv, InterpreterClient(srv.url) as client:
        srv.content_type, srv.body = "text/html", b"<html>502 Bad Gateway</html>"
        with pytest.raises(ResponseValidationError):
            await client.execute("x")


# -- files --------------------------------------------------------------------------------------------------------
async def test_paths_are_normalised_and_url_encoded(fake: FakeInterpreterServer, client: InterpreterClient) -> None:
    uploaded = await client.upload("dir/./100% ü #1?.txt", b"z")
    assert uploaded.path == "/mnt/data/dir/100% ü #1?.txt"
    assert fake.host_path("/mnt/data/dir/100% ü #1?.txt").read_bytes() == b"z"
    assert await client.download("/mnt/data/dir/100% ü #1?.txt") == b"z"


async def test_rejected_paths_send_nothing(fake: FakeInterpreterServer, client: InterpreterClient) -> None:
    for bad in ("../x", "/etc/passwd", "%2e%2e/x"):
        with pytest.raises(SandboxPathError) as caught:
            await client.upload(bad, b"x")
        assert bad in str(caught.value)
    assert [r for r in fake.requests if r.path.startswith("/files/")] == []


async def test_confinement_can_be_lifted_for_absolute_paths(fake: FakeInterpreterServer) -> None:
    async with InterpreterClient(fake.url, confine_paths=False) as client:
        await client.upload("/tmp/elsewhere.txt", b"t")
        with pytest.raises(SandboxPathError):
            await client.upload("/tmp/../x", b"t")  # '..' stays refused
    assert fake.host_path("/tmp/elsewhere.txt").read_bytes() == b"t"


async def test_upload_sends_content_length_for_a_file(
    fake: FakeInterpreterServer, client: InterpreterClient, tmp_path: Path
) -> None:
    local = tmp_path / "f.bin"
    local.write_bytes(b"x" * 3000)
    await client.upload("f.bin", local)
    request = fake.requests_to("/files/upload/-/mnt/data/f.bin")[-1]
    assert request.header("Content-Length") == "3000"
    assert request.query == {"overwrite": "true"}


async def test_str_sources_are_refused_as_ambiguous(client: InterpreterClient) -> None:
    with pytest.raises(InvalidRequestError, match="ambiguous"):
        await client.upload("a.txt", "is this a path or the contents?")  # type: ignore[arg-type]


async def test_overwrite_on_a_server_that_answers_409(tmp_path: Path) -> None:
    async with FakeInterpreterServer(conflict_on_existing=True) as srv, InterpreterClient(srv.url) as client:
        await client.upload("a.txt", b"one")
        with pytest.raises(FileExistsInSandboxError):
            await client.upload("a.txt", b"two", overwrite=False)
        await client.upload("a.txt", b"three")  # uploaded beside it, then moved into place by the kernel
        assert await client.download("a.txt") == b"three"
        leftovers = sorted(p.name for p in srv.host_path("/mnt/data").iterdir())
    assert leftovers == ["a.txt"]


class HostileDownloads(FakeServer):
    """Downloads answer with whatever Content-Disposition the test sets."""

    disposition = ""

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/files/download/-/{path:.*}", self._download)

    async def _download(self, request: web.Request) -> web.Response:
        return web.Response(body=b"payload", headers={"Content-Disposition": self.disposition})


@pytest.mark.parametrize(
    "disposition",
    [
        "attachment; filename*=UTF-8''..%2F..%2Fevil.sh",
        "attachment; filename*=UTF-8''%2Fetc%2Fpasswd",
        "attachment; filename*=UTF-8''..",
        'attachment; filename="../evil"',
        "attachment; filename*=UTF-8''a%5Cb",
        "attachment; filename*=UTF-8''x%00y",
    ],
)
async def test_a_server_file_name_that_escapes_the_directory_is_refused(disposition: str, tmp_path: Path) -> None:
    target = tmp_path / "downloads"
    target.mkdir()
    async with HostileDownloads() as srv, InterpreterClient(srv.url) as client:
        srv.disposition = disposition
        with pytest.raises(SandboxPathError):
            await client.download_to("report.txt", target)
    assert sorted(os.listdir(tmp_path)) == ["downloads"]
    assert os.listdir(target) == []


async def test_an_explicit_target_file_ignores_the_server_name(tmp_path: Path) -> None:
    async with HostileDownloads() as srv, InterpreterClient(srv.url) as client:
        srv.disposition = "attachment; filename*=UTF-8''..%2Fevil"
        written = await client.download_to("report.txt", tmp_path / "mine.txt")
    assert written.read_bytes() == b"payload"


# -- auth ---------------------------------------------------------------------------------------------------------
async def test_a_token_is_sent_as_bearer_and_never_shown() -> None:
    async with LocalSandbox(token="s3cret-token") as sb:
        async with InterpreterClient(sb.url, token="s3cret-token") as client:
            assert (await client.execute("print(2)")).stdout == "2\n"
            assert "s3cret" not in repr(client)
            assert "s3cret" not in repr(client._transport)
        async with InterpreterClient(sb.url, token="zq-other-token-9") as client:
            with pytest.raises(AuthenticationError) as caught:
                await client.ping()
            assert "zq-other" not in str(caught.value)


# -- events (pure) ----------------------------------------------------------------------------------------------
def test_unknown_and_documented_event_shapes() -> None:
    from aioagents.interpreter import parse_event

    assert parse_event({"type": "stream", "data": {"name": "stderr", "text": "x"}}) == Stream(name="stderr", text="x")
    assert parse_event({"type": "file", "data": {"path": "README.md", "size": 128}}) == File(path="README.md", size=128)
    odd = {"type": "progress", "data": {"pct": 5}}
    assert parse_event(odd) == UnknownEvent(type="progress", raw=odd)
    assert isinstance(parse_event({"type": "stream", "data": "oops"}), UnknownEvent)
    assert isinstance(parse_event(["not", "an", "object"]), UnknownEvent)


# -- retries and the session ------------------------------------------------------------------------------------
async def test_an_overwriting_upload_is_resent_after_a_reset(
    fake: FakeInterpreterServer, client: InterpreterClient, tmp_path: Path, instant_retries: None
) -> None:
    local = tmp_path / "f.bin"
    local.write_bytes(b"0123456789" * 1000)
    for name, source in (("a.bin", b"bytes body"), ("b.bin", local)):
        fake.inject(Fault.reset(after_body=True), path=f"/files/upload/-/mnt/data/{name}")
        await client.upload(name, source)
    assert fake.host_path("/mnt/data/a.bin").read_bytes() == b"bytes body"
    assert fake.host_path("/mnt/data/b.bin").read_bytes() == local.read_bytes()
    assert len(fake.requests_to("/files/upload/-/mnt/data/b.bin")) == 2  # the file was read afresh for the retry


async def test_a_one_shot_upload_is_not_resent(
    fake: FakeInterpreterServer, client: InterpreterClient, instant_retries: None
) -> None:
    from aioagents import APIConnectionError

    async def once() -> AsyncIterator[bytes]:
        yield b"only once"

    fake.inject(Fault.reset(after_body=True), path="/files/upload/-/mnt/data/once.bin")
    with pytest.raises(APIConnectionError):
        await client.upload("once.bin", once())
    assert len(fake.requests_to("/files/upload/-/mnt/data/once.bin")) == 1


async def test_a_download_is_retried_on_503(
    fake: FakeInterpreterServer, client: InterpreterClient, instant_retries: None
) -> None:
    fake.host_path("/mnt/data/r.txt").write_bytes(b"r")
    fake.inject(Fault.status_code(503), path="/files/download/-/mnt/data/r.txt")
    assert await client.download("r.txt") == b"r"


async def test_restart_on_timeout_frees_a_kernel_stuck_in_old_code(fake: FakeInterpreterServer) -> None:
    from aioagents.interpreter import Interpreter

    async def rebuild() -> None:
        fake.restart_kernel()

    async with Interpreter(fake.url, restart=rebuild, restart_on_timeout=True) as it:
        await it.execute("kept = 1")
        result = await it.execute("import time\ntime.sleep(30)", timeout=1)
        assert result.timed_out
        assert it.restarts == 1
        assert not it.busy
        following = await it.execute("print('kept' in dir())", timeout=5)
    assert following.stdout == "False\n"  # it did not wait behind the sleeping cell: a new kernel answered


async def test_without_restart_on_timeout_the_session_marks_the_kernel_busy(fake: FakeInterpreterServer) -> None:
    from aioagents.interpreter import Interpreter

    async with Interpreter(fake.url) as it:
        result = await it.execute("import time\ntime.sleep(1.5)", timeout=1)
        assert result.timed_out
        assert it.busy
        assert (await it.execute("print(1)", timeout=10)).stdout == "1\n"
        assert not it.busy


async def test_a_session_stream_reports_a_dead_kernel(fake: FakeInterpreterServer) -> None:
    from aioagents.interpreter import Interpreter

    async def rebuild() -> None:
        fake.restart_kernel()

    async with Interpreter(fake.url, restart=rebuild) as it:
        events = [e async for e in it.stream("import os\nos._exit(1)", timeout=1)]
        assert events == [ExecutionEnd(status="timeout")]
        assert it.restarts == 1
        assert (await it.execute("print(5)")).stdout == "5\n"
