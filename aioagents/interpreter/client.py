"""The interpreter client (CodeGeeX4 sandbox API) and a session that survives timeouts.

The API (``GET /``, ``POST /execute``, ``POST /files/upload/-/<path>``, ``GET /files/download/-/<path>``) is
spoken as the original ``sandbox.py`` really serves it: JSON labelled ``text/html``, 500 ``{"error": ...}``
bodies, uploads that overwrite, ``filename*=UTF-8''`` names encoded with ``quote_plus``. Servers that stream
``/execute`` (newline-delimited JSON or SSE, told apart by the response Content-Type) are read as they go.

Every sandbox path is normalised here, before anything is sent: relative paths are taken from ``data_dir``
(``/mnt/data``), and ``..``, encoded dots or slashes, and absolute paths outside ``data_dir`` are refused.

Example::

    async with Interpreter("http://127.0.0.1:8080") as it:
        await it.execute("x = 41")
        result = await it.execute("print(x + 1)")
        print(result.stdout)          # "42\\n"
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import math
import os
import posixpath
import tempfile
import urllib.parse
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any, Union

import aiohttp
import attrs

from aioagents import CallOptions, ClientOptions, RequestOptions, _json
from aioagents._client import Endpoint, ServiceClient, Unpack, resolve_options
from aioagents._config import Timeout, TimeoutLike
from aioagents._converter import structure
from aioagents._exceptions import (
    APIConnectionError,
    APIStatusError,
    InvalidRequestError,
    NotFoundError,
    PollTimeoutError,
    ResponseValidationError,
)
from aioagents._polling import poll_until
from aioagents._retry import RetryPolicy
from aioagents._streaming import EventStream, JSONLinesDecoder, ServerSentEvent, SSEDecoder
from aioagents._transport import ByteStream, Response, default_error
from aioagents.interpreter.events import Error, Event, ExecutionEnd, parse_event
from aioagents.interpreter.models import (
    ExecutionResult,
    FileExistsInSandboxError,
    InterpreterRequestError,
    KernelBusyError,
    KernelDeadError,
    PingResult,
    SandboxPathError,
    UploadedFile,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_DATA_DIR",
    "Interpreter",
    "InterpreterClient",
    "UploadSource",
    "normalize_sandbox_path",
    "parse_content_disposition",
]

log = logging.getLogger("aioagents.interpreter")

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
"""Where the CodeGeeX4 demo (``app.py``) looks for its sandbox."""
DEFAULT_DATA_DIR = "/mnt/data"
"""The sandbox image's WORKDIR and HOME, where uploads go by default."""
ENV_BASE_URL = ("AIOAGENTS_INTERPRETER_URL",)
ENV_TOKEN = ("AIOAGENTS_INTERPRETER_TOKEN",)

# The server's own wait (timeout_secs) bounds an execute; the HTTP timeout adds this much on top, so the client
# never gives up on an answer the server is about to send (it includes waiting behind an earlier, timed-out cell).
_HTTP_MARGIN = 30.0
_STREAM_ACCEPT = "application/x-ndjson, text/event-stream;q=0.9, application/json;q=0.5"
_STREAM_ACCEPT_HEADERS = {"Accept": _STREAM_ACCEPT}
PING_TIMEOUT = 5.0
_JSON_ACCEPT = {"Accept": "application/json"}
"""Seconds a health check may take: a sandbox that cannot answer ``GET /`` in that time is not healthy."""
# A health check is retried once, quickly, when the connection failed (a restarting container), never after a timeout.
_PING_RETRY = RetryPolicy(max_attempts=2, initial_delay=0.2, max_delay=0.5, retry_timeouts=False)

UploadSource = Union[bytes, bytearray, memoryview, PurePath, "os.PathLike[str]", AsyncIterable[bytes]]
"""What ``upload`` sends: bytes, a local file path (``pathlib.Path``), or an async iterator of byte chunks."""


# -- paths -------------------------------------------------------------------------------------------------------
def normalize_sandbox_path(path: str | PurePath, *, data_dir: str = DEFAULT_DATA_DIR, confine: bool = True) -> str:
    """The absolute sandbox path for ``path``, or :class:`SandboxPathError`.

    Relative paths are taken from ``data_dir``. ``..`` segments are refused outright (also when encoded, as
    ``%2e%2e``), as are encoded slashes, backslashes and NUL. With ``confine`` (the default) an absolute path must
    lie inside ``data_dir``.

    >>> normalize_sandbox_path("plots/a.png")
    '/mnt/data/plots/a.png'
    """
    text = path.as_posix() if isinstance(path, PurePath) else path
    if not isinstance(text, str) or not text.strip():
        raise SandboxPathError(f"not a usable sandbox path: {path!r}")
    if "\x00" in text or "\\" in text:
        raise SandboxPathError(f"sandbox path {text!r} holds a NUL or a backslash")
    for segment in text.split("/"):
        decoded = _fully_unquoted(segment)
        if decoded == ".." or (decoded == "." and segment != "."):
            raise SandboxPathError(f"sandbox path {text!r} climbs out of its directory ('..' is not allowed)")
        if decoded != segment and ("/" in decoded or "\\" in decoded or "\x00" in decoded):
            raise SandboxPathError(f"sandbox path {text!r} hides a separator in an encoded segment")
    base = posixpath.normpath("/" + data_dir.strip("/"))
    full = posixpath.normpath(posixpath.join(base, text))
    if confine and full != base and not full.startswith(base.rstrip("/") + "/"):
        raise SandboxPathError(f"sandbox path {text!r} is outside the data directory {base}")
    return full


def _fully_unquoted(segment: str) -> str:
    # Decode repeatedly so that double encoding (%252e%252e) cannot smuggle a '..' past the check.
    for _ in range(4):
        decoded = urllib.parse.unquote(segment)
        if decoded == segment:
            return decoded
        segment = decoded
    return segment


def _file_url(kind: str, full_path: str) -> str:
    # Each character that is not safe in a path is percent-encoded ('%' too), so the server decodes it back to
    # exactly full_path.
    return f"/files/{kind}/-" + urllib.parse.quote(full_path, safe="/")


def parse_content_disposition(value: str | None) -> str | None:
    """The file name in a Content-Disposition header: ``filename*=UTF-8''…`` first (decoded with ``unquote_plus``,
    since the original server encodes spaces as ``+``), else ``filename=``. ``None`` when there is none."""
    if not value:
        return None
    params: dict[str, str] = {}
    for part in _split_params(value)[1:]:
        key, sep, raw = part.partition("=")
        if sep:
            params[key.strip().lower()] = raw.strip()
    extended = params.get("filename*")
    if extended:
        charset, _, rest = extended.partition("'")
        _language, quote, encoded = rest.partition("'")
        if not quote:  # not the RFC 5987 form charset'lang'value: take it as a UTF-8 percent-encoded name
            charset, encoded = "utf-8", extended
        try:
            return urllib.parse.unquote_plus(encoded.strip('"'), encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            pass
    plain = params.get("filename")
    if plain:
        if len(plain) >= 2 and plain[0] == plain[-1] == '"':
            plain = plain[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        return plain
    return None


def _split_params(value: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return parts


def _safe_filename(name: str) -> str:
    """A server-supplied file name, accepted only when it names a file directly inside the target directory."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\x00") or name != name.strip():
        raise SandboxPathError(f"the server sent a file name that would leave the target directory: {name!r}")
    return name


# -- wire decoding --------------------------------------------------------------------------------------------
def _frames_of_document(doc: Any) -> list[Any]:
    """A whole ``{"status", "events"}`` document as stream frames: each event, then its status."""
    if isinstance(doc, Mapping) and "events" not in doc and "type" in doc:
        return [doc]  # a lone event
    if not isinstance(doc, Mapping) or not isinstance(doc.get("status"), str):
        raise ResponseValidationError(f"an execute response without a status: {str(doc)[:200]}", body=doc)
    result_doc = doc
    events = result_doc.get("events")
    if events is not None and not isinstance(events, list):
        raise ResponseValidationError("an execute response whose events are not a list", body=doc)
    end = {"status": result_doc.get("status", "ok"), "kernel_restarted": result_doc.get("kernel_restarted") is True}
    return [*(events if isinstance(events, list) else []), end]


class _BodyDecoder:
    """Decodes an ``/execute`` body into frames (event objects, then a ``{"status"}`` object), choosing the format
    from the response's Content-Type: ``text/event-stream`` → SSE, ``application/x-ndjson`` (or ``jsonl``,
    ``json-seq``) → one JSON value per line, anything else (``application/json``, or the original server's
    ``text/html``) → one JSON document, read whole."""

    def __init__(self, max_size: int) -> None:
        self._max = max_size
        self._stream: EventStream[Any] | None = None
        self._mode: str | None = None
        self._sse = SSEDecoder(max_size)
        self._lines = JSONLinesDecoder(max_size)
        self._buffer = bytearray()
        self._ended = False

    def bind(self, stream: EventStream[Any]) -> None:
        self._stream = stream

    def choose(self, content_type: str) -> None:
        kind = content_type.split(";", 1)[0].strip().lower()
        if kind == "text/event-stream":
            self._mode = "sse"
        elif kind in ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/json-seq",
                      "application/x-jsonlines", "application/jsonlines"):  # fmt: skip
            self._mode = "lines"
        else:
            self._mode = "document"

    def _ensure_mode(self) -> str:
        if self._mode is None:
            headers = self._stream.headers if self._stream is not None else {}
            self.choose(headers.get("Content-Type", ""))
        assert self._mode is not None
        return self._mode

    def feed(self, chunk: bytes) -> list[Any]:
        mode = self._ensure_mode()
        if mode == "sse":
            return self._from_sse(self._sse.feed(chunk))
        if mode == "lines":
            return self._track(self._expand(self._lines.feed(chunk)))
        self._buffer += chunk
        if len(self._buffer) > self._max:
            raise ResponseValidationError(f"the execute response passed the cap of {self._max} bytes")
        return []

    def end(self) -> list[Any]:
        mode = self._ensure_mode()
        if mode == "sse":
            frames = self._from_sse(self._sse.end())
        elif mode == "lines":
            frames = self._track(self._expand(self._lines.end()))
        else:
            try:
                doc = _json.loads(bytes(self._buffer)) if self._buffer.strip() else {}
            except ValueError as exc:
                raise ResponseValidationError(
                    f"the execute response is not JSON: {bytes(self._buffer[:200])!r}"
                ) from exc
            frames = self._track(_frames_of_document(doc))
        if not self._ended:
            # A server that streams may end without a status line; a clean end of the body means it finished.
            frames.append({"status": "ok"})
            self._ended = True
        return frames

    def _expand(self, values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for value in values:
            if isinstance(value, Mapping) and "events" in value:
                out.extend(_frames_of_document(value))
            else:
                out.append(value)
        return out

    def _track(self, frames: list[Any]) -> list[Any]:
        for frame in frames:
            if _is_status(frame):
                self._ended = True
        return frames

    def _from_sse(self, events: list[ServerSentEvent]) -> list[Any]:
        out: list[Any] = []
        for sse in events:
            data = sse.data.strip()
            if data == "[DONE]":
                out.append({"status": "ok"})
                continue
            try:
                value = _json.loads(data)
            except ValueError as exc:
                raise ResponseValidationError(f"an SSE event of /execute is not JSON: {data[:200]!r}") from exc
            if isinstance(value, Mapping) and "type" not in value and "status" not in value and sse.event != "message":
                value = {"type": sse.event, "data": value}
            out.append(value)
        return self._track(self._expand(out))


def _is_status(frame: Any) -> bool:
    return (
        isinstance(frame, Mapping)
        and "status" in frame
        and ("type" not in frame or frame.get("type") in ("end", "done", "status", "result", "execution_end"))
    )


def _parse_frame(frame: Any) -> Event | ExecutionEnd | None:
    if _is_status(frame):
        status = frame.get("status")
        return ExecutionEnd(
            status=str(status) if status is not None else "ok", kernel_restarted=frame.get("kernel_restarted") is True
        )
    return parse_event(frame)


def _result(events: list[Event], end: ExecutionEnd) -> ExecutionResult:
    died = any(isinstance(e, Error) and e.ename == "KernelDied" for e in events)
    return ExecutionResult(
        status=end.status, events=tuple(events), kernel_restarted=end.kernel_restarted, kernel_died=died
    )


def _timeout_secs(timeout: float) -> int:
    """The server wants an int > 0: round a float up, and never send less than 1."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or math.isnan(timeout):
        raise InvalidRequestError(f"timeout must be a number of seconds, not {timeout!r}")
    if math.isinf(timeout):
        raise InvalidRequestError("timeout must be finite (the server needs an integer number of seconds)")
    return max(1, math.ceil(timeout))


# -- upload bodies -------------------------------------------------------------------------------------------------
async def _file_chunks(path: Path, chunk_size: int, size: int) -> AsyncIterator[bytes]:
    """Exactly ``size`` bytes of ``path`` (the Content-Length already sent), one chunk in memory at a time, read
    off the loop. The file is closed before the last chunk is handed over: the sender may never ask for more."""
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        remaining = size
        while remaining > 0:
            chunk = await asyncio.to_thread(handle.read, min(chunk_size, remaining))
            if not chunk:
                raise InvalidRequestError(f"{path} shrank while it was being uploaded")
            remaining -= len(chunk)
            if remaining <= 0:
                handle.close()
            yield chunk
    finally:
        handle.close()


class _Counted:
    """Counts the bytes of a one-shot async iterator as aiohttp streams it."""

    def __init__(self, source: AsyncIterable[bytes]) -> None:
        self._source = source
        self.size = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._source:
            data = bytes(chunk)
            self.size += len(data)
            yield data


# -- the client ---------------------------------------------------------------------------------------------------
class InterpreterClient(ServiceClient):
    """A client of one CodeGeeX4-style interpreter sandbox.

    ``base_url`` defaults to ``$AIOAGENTS_INTERPRETER_URL``, then ``http://127.0.0.1:8080``. ``token`` (or
    ``$AIOAGENTS_INTERPRETER_TOKEN``) is sent as ``Authorization: Bearer`` for servers that want one, such as a
    ``LocalSandbox`` on a non-loopback address; the original server has no auth. ``data_dir`` is where relative
    paths point and (with ``confine_paths``) the only directory files may be moved in or out of.

    Example::

        async with InterpreterClient("http://127.0.0.1:8080") as client:
            result = await client.execute("1 + 1", timeout=10)
            print(result.displays[0].text)      # "2"
            await client.upload("data.csv", Path("local.csv"))
            png = await client.download("plot.png")

    ``max_attempts`` counts every attempt (default 3), ``max_retries`` the retries after the first (0: one
    attempt). ``ping``, ``execute`` and ``execute_stream`` take ``max_retries`` and ``extra_headers`` for one call
    (``execute``'s ``timeout`` is the server's wait; the HTTP timeout follows from it); :meth:`with_options` makes
    a copy with other defaults on the same connections.
    """

    endpoint_spec = Endpoint(
        url_env=ENV_BASE_URL,
        default_url=DEFAULT_BASE_URL,
        key_env=ENV_TOKEN,
        timeout=Timeout(total=60.0, connect=10.0),
        headers={"User-Agent": "aioagents-interpreter"},
    )

    data_dir: str
    """The sandbox directory relative paths are taken from (normalised, absolute)."""
    ping_timeout: float
    """Seconds a health check (``ping``) may take before it fails."""
    confine_paths: bool
    """Whether absolute paths outside ``data_dir`` are refused."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        data_dir: str = DEFAULT_DATA_DIR,
        confine_paths: bool = True,
        headers: Mapping[str, str] | None = None,
        ping_timeout: float = PING_TIMEOUT,
        **options: Unpack[ClientOptions],
    ) -> None:
        self.data_dir = posixpath.normpath("/" + data_dir.strip("/"))
        self.confine_paths = confine_paths
        key = self.endpoint_spec.key(token)
        self._connect(base_url, options, key=key, headers=headers, error_factory=self._error)
        self.ping_timeout = ping_timeout
        # One execute in flight per client (per event loop): the server's kernel aborts a cell queued behind one
        # that raises and reports it as an empty success, so this client never queues two of its own.
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
        # An execute of this client timed out: its cell may still be running in the kernel.
        self._maybe_running = False

    def _repr_fields(self) -> str:
        return f", data_dir={self.data_dir!r}"

    # -- errors ------------------------------------------------------------------------------------------------
    def _error(self, response: Response) -> APIStatusError:
        """Map this server family's error answers onto the typed errors."""
        base = default_error(response)
        body = base.body
        kind: type[APIStatusError] | None = None
        is_ping = response.method == "GET" and response.url.rstrip("/") == self._transport.base_url
        message = base.message
        if response.status == 500 and is_ping:
            kind = KernelDeadError  # the health check fails only when the kernel is gone
            message = f"the sandbox kernel is dead ({message}); restart or rebuild the sandbox"
        elif response.status == 500 and isinstance(body, Mapping) and isinstance(body.get("error"), str):
            kind = KernelDeadError if "not alive" in body["error"] else InterpreterRequestError
        elif response.status == 409 and "/files/upload/" in response.url:
            kind = FileExistsInSandboxError
        if kind is None:
            return base
        return kind(
            message,
            status=response.status,
            body=body,
            headers=response.headers,
            request_id=response.request_id,
            retryable=False,  # a dead kernel or a rejected body does not get better by asking again
            method=response.method,
            url=response.url,
        )

    # -- paths -------------------------------------------------------------------------------------------------
    def path(self, path: str | PurePath) -> str:
        """``path`` as the absolute sandbox path this client would use (or :class:`SandboxPathError`)."""
        return normalize_sandbox_path(path, data_dir=self.data_dir, confine=self.confine_paths)

    # -- health ------------------------------------------------------------------------------------------------
    async def ping(
        self,
        **options: Unpack[RequestOptions],
    ) -> PingResult:
        """Check that the sandbox and its kernel are alive. A dead kernel raises :class:`KernelDeadError`.
        ``timeout`` defaults to ``ping_timeout`` per attempt (two attempts unless ``max_retries`` says otherwise)."""
        sent = resolve_options(options, timeout=Timeout(total=self.ping_timeout, connect=self.ping_timeout))
        resp = await self._transport.request("GET", "/", idempotent=True, retry=_PING_RETRY, **sent)
        body = resp.json()
        stamp = body.get("last_activity") if isinstance(body, Mapping) else None
        if not isinstance(stamp, str):
            raise ResponseValidationError(f"a ping answer without last_activity: {resp.text()[:200]}", body=body)
        return PingResult(last_activity=structure(_trim_fraction(stamp), datetime))

    # -- execution ---------------------------------------------------------------------------------------------
    def _execute_body(self, code: str, timeout: float) -> tuple[dict[str, Any], int]:
        if not isinstance(code, str):
            raise InvalidRequestError("code must be a string")
        secs = _timeout_secs(timeout)
        return {"code": code, "timeout_secs": secs}, secs

    async def execute(
        self,
        code: str,
        *,
        timeout: float = 60,
        **options: Unpack[CallOptions],
    ) -> ExecutionResult:
        """Run ``code`` in the sandbox's kernel (state persists between calls) and return its events.

        ``timeout`` is the server's wait in seconds, sent as an integer ≥ 1 (rounded up). When it runs out the
        result has ``status == "timeout"`` and the events produced so far; the code may still be running.
        Not retried once sent: running code twice is worse than an error; an answer lost on the way raises
        :class:`~aioagents.OutcomeUnknownError`.

        One execute of this client is in flight at a time (others wait their turn), and after a timed-out cell the
        next execute first checks that the kernel is free (:class:`KernelBusyError` if it is not): the CodeGeeX4
        server aborts a cell queued behind one that raises and answers it as an empty success.
        ``max_retries`` (retries only when the request never reached the server) and ``extra_headers`` apply to
        this call only.
        """
        body, secs = self._execute_body(code, timeout)
        async with self._lock():
            if self._maybe_running:
                await self._wait_for_idle_kernel(secs)
            result = await self._execute_once(body, secs, options)
            # A timed-out cell keeps running in the kernel (there is no interrupt): remember it.
            self._maybe_running = result.timed_out
            return result

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    async def _wait_for_idle_kernel(self, secs: int) -> None:
        """An earlier cell of this client timed out and may still run: send a probe that prints a marker first. The
        marker back means the queue is empty now; an empty answer means the probe itself was aborted behind that
        cell's error (so the queue is empty now too); a timeout means the cell still runs, and the caller's code is
        not sent (:class:`KernelBusyError`) rather than queued where it could be aborted unseen."""
        marker = f"aioagents-probe-{os.urandom(6).hex()}"
        probe = await self._execute_once({"code": f"print({marker!r}, end='')", "timeout_secs": secs}, secs, {})
        if probe.timed_out:
            raise KernelBusyError(
                f"the kernel is still running an earlier cell that timed out (no answer to a probe within {secs}s); "
                "the code was not sent: try again later or restart the sandbox",
                method="POST",
                url=f"{self.base_url}/execute",
            )
        self._maybe_running = False

    async def _execute_once(self, body: dict[str, Any], secs: int, options: CallOptions) -> ExecutionResult:
        sent = resolve_options(options, headers=_JSON_ACCEPT, timeout=self._execute_timeout(secs))
        resp = await self._transport.request("POST", "/execute", idempotent=False, json=body, **sent)
        decoder = _BodyDecoder(self._transport.max_response_size)
        decoder.choose(resp.headers.get("Content-Type", ""))
        frames = decoder.feed(resp.content) + decoder.end()
        events: list[Event] = []
        end = ExecutionEnd(status="ok")
        for frame in frames:
            item = _parse_frame(frame)
            if isinstance(item, ExecutionEnd):
                end = item
                break
            if item is not None:
                events.append(item)
        return _result(events, end)

    def execute_stream(
        self,
        code: str,
        *,
        timeout: float = 60,
        **options: Unpack[CallOptions],
    ) -> EventStream[Event | ExecutionEnd]:
        """Run ``code`` and yield its events as they arrive, then an :class:`ExecutionEnd` with the status.

        A server that streams (``application/x-ndjson`` or ``text/event-stream``) is read as it sends; one that
        answers with a single JSON document (the original server) yields the same typed events once it has
        answered. Use ``async with client.execute_stream(code) as events: async for event in events: ...``.
        A stream cut before its :class:`ExecutionEnd` raises :class:`~aioagents.StreamOutcomeUnknownError` (an
        :class:`~aioagents.OutcomeUnknownError`, as a cut plain ``execute`` does).

        Serialised with the client's other executes, as :meth:`execute` is: the stream takes the client's turn when
        it opens (waiting for an execute or stream in flight) and gives it back when it ends or is closed, and after
        a timed-out cell it first checks that the kernel is free (:class:`KernelBusyError`). Close it (``async
        with``) so the next execute does not wait for the garbage collector. ``max_retries`` and ``extra_headers``
        apply to this call only.
        """
        body, secs = self._execute_body(code, timeout)
        sent = resolve_options(options, headers=_STREAM_ACCEPT_HEADERS, timeout=self._execute_timeout(secs))
        # A non-streaming answer is one document: allow it the size of a whole response, not of one event.
        decoder = _BodyDecoder(self._transport.max_response_size)
        # A non-streaming server is silent until the end: the idle limit must cover the whole wait.
        idle = secs + _HTTP_MARGIN
        stream = _ExecuteStream(
            self,
            secs,
            functools.partial(
                self._transport._open, "POST", "/execute", idempotent=False, idle_timeout=idle, json=body, **sent
            ),
            decoder,
            idle,
        )
        decoder.bind(stream)
        return stream

    def _execute_timeout(self, secs: int) -> Timeout:
        current = self._transport.timeout
        return Timeout(total=secs + _HTTP_MARGIN, connect=current.connect, read=None)

    # -- files -------------------------------------------------------------------------------------------------
    async def exists(
        self,
        path: str | PurePath,
        **options: Unpack[RequestOptions],
    ) -> bool:
        """Whether ``path`` exists in the sandbox (asked with a download that is closed at its first byte)."""
        stream = self.download_stream(path, **options)
        try:
            async with stream:
                return True
        except NotFoundError:
            return False

    async def upload(
        self,
        path: str | PurePath,
        source: UploadSource,
        *,
        overwrite: bool = True,
        chunk_size: int = 1 << 20,
        **options: Unpack[RequestOptions],
    ) -> UploadedFile:
        """Put ``source`` (bytes, a local ``Path``, or an async iterator of bytes, streamed) at ``path``.

        ``overwrite=False`` refuses to replace an existing file (:class:`FileExistsInSandboxError`): the client
        checks first, since the original server silently overwrites, and a server that answers 409 is refused too.
        ``overwrite=True`` replaces it; on a server that answers 409 instead, the file is uploaded under a
        temporary name and moved into place by the kernel. ``timeout`` (default: 300 s between reads, no total),
        ``max_retries`` and ``extra_headers`` apply to this call only.
        """
        full = self.path(path)
        if not overwrite and await self.exists(full, **options):
            raise FileExistsInSandboxError(
                f"{full} already exists in the sandbox", status=409, method="POST", url=_file_url("upload", full)
            )
        try:
            return await self._put(full, source, options, chunk_size=chunk_size, idempotent=overwrite)
        except FileExistsInSandboxError:
            if not overwrite or not isinstance(source, (bytes, bytearray, memoryview, PurePath, os.PathLike)):
                raise
        # The server refuses to overwrite: upload beside the target, then rename inside the sandbox.
        temp = posixpath.join(posixpath.dirname(full), f".aioagents-upload-{os.urandom(6).hex()}")
        uploaded = await self._put(temp, source, options, chunk_size=chunk_size, idempotent=False)
        moved = await self.execute(f"__import__('os').replace({temp!r}, {full!r})", timeout=30)
        if not moved.ok:
            raise FileExistsInSandboxError(
                f"{full} exists and the server refuses to overwrite it; moving a fresh copy into place failed: "
                f"{moved.error}",
                status=409,
            )
        return UploadedFile(path=full, size=uploaded.size)

    async def _put(
        self,
        full: str,
        source: UploadSource,
        options: RequestOptions,
        *,
        chunk_size: int,
        idempotent: bool,
    ) -> UploadedFile:
        headers: dict[str, str] = {"Content-Type": "application/octet-stream"}
        data: Any
        size: int | None
        counted: _Counted | None = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            content = bytes(source)
            size = len(content)

            def data() -> io.BytesIO:
                # A file-like body: aiohttp sends it in pieces (raw bytes over 1 MiB would block the loop).
                return io.BytesIO(content)

        elif isinstance(source, (PurePath, os.PathLike)):
            local = Path(os.fspath(source))
            file_size = await asyncio.to_thread(_local_size, local)
            size = file_size

            def data() -> AsyncIterator[bytes]:  # a fresh body for every attempt
                return _file_chunks(local, chunk_size, file_size)

            # Known length: sent as Content-Length (the documented API), not chunked.
            headers["Content-Length"] = str(file_size)
        elif isinstance(source, str):
            raise InvalidRequestError(
                "upload takes bytes for contents or a pathlib.Path for a local file, not str (which would be ambiguous)"
            )
        elif isinstance(source, AsyncIterable):
            counted = _Counted(source)
            data = counted.__aiter__()  # one-shot: the Transport never re-sends it
            size = None
        else:
            raise InvalidRequestError(f"cannot upload a {type(source).__name__}")
        await self._transport.request(
            "POST",
            _file_url("upload", full),
            idempotent=idempotent,
            data=data,
            # Asked for, and ignored by the original server (it always overwrites); servers that answer 409 by
            # default take it as leave to replace the file.
            params={"overwrite": "true"} if idempotent else None,
            **resolve_options(
                options,
                headers=headers,
                timeout=Timeout(total=None, connect=self._transport.timeout.connect, read=300.0),
            ),
        )
        return UploadedFile(path=full, size=size if size is not None else (counted.size if counted else 0))

    async def download(
        self,
        path: str | PurePath,
        *,
        max_size: int = 64 * 1024 * 1024,
        **options: Unpack[RequestOptions],
    ) -> bytes:
        """The contents of ``path`` (at most ``max_size`` bytes; use ``download_to`` for big files)."""
        async with self.download_stream(path, **options) as body:
            return await body.read(max_size)

    def download_stream(
        self,
        path: str | PurePath,
        **options: Unpack[RequestOptions],
    ) -> ByteStream:
        """The contents of ``path`` as a stream of byte chunks (``async with ... as body: async for chunk in
        body``); ``body.headers`` has the server's headers. ``timeout`` bounds the connection set-up (300 s of
        silence end it); ``max_retries`` and ``extra_headers`` apply to this call only."""
        url = _file_url("download", self.path(path))
        return self._transport.open("GET", url, idempotent=True, idle_timeout=300.0, **resolve_options(options))

    async def download_to(
        self,
        path: str | PurePath,
        target: str | os.PathLike[str],
        *,
        overwrite: bool = True,
        **options: Unpack[RequestOptions],
    ) -> Path:
        """Stream ``path`` into a local file and return where it was written.

        ``target`` is a file path, or an existing directory: then the file is named by the server's
        Content-Disposition (or the sandbox path's last segment), and a name that would leave that directory is
        refused with :class:`SandboxPathError`. The file appears complete or not at all (written to a temporary
        file, then renamed).
        """
        full = self.path(path)
        async with self.download_stream(full, **options) as body:
            name = parse_content_disposition(body.headers.get("Content-Disposition"))
            destination = await asyncio.to_thread(
                _destination, Path(target), name if name is not None else posixpath.basename(full), overwrite
            )
            fd, temp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out:
                    async for chunk in body:
                        await asyncio.to_thread(out.write, chunk)
                os.replace(temp_name, destination)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp_name)
                raise
        return destination


def _local_size(local: Path) -> int:
    if not local.is_file():
        raise InvalidRequestError(f"no local file to upload at {local}")
    return local.stat().st_size


def _destination(target: Path, name: str, overwrite: bool) -> Path:
    """Where a download goes: ``target`` itself, or ``name`` inside it when it is a directory (a name that
    would leave the directory is refused)."""
    if target.is_dir():
        directory = target.resolve()
        destination = (directory / _safe_filename(name)).resolve()
        if destination.parent != directory:
            raise SandboxPathError(f"the server's file name {name!r} would leave {directory}")
    else:
        destination = target
    if destination.exists() and not overwrite:
        raise FileExistsError(f"{destination} exists")
    return destination


def _trim_fraction(stamp: str) -> str:
    # Python 3.10's fromisoformat takes only 3 or 6 fractional digits; Go servers send up to 9.
    head, dot, rest = stamp.partition(".")
    if not dot:
        return stamp
    digits = "".join(c for c in rest if c.isdigit())
    return f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits) :]}"


class _ExecuteStream(EventStream[Union[Event, ExecutionEnd]]):  # noqa: UP007 (evaluated at run time on 3.10)
    """``execute_stream``'s stream: it holds its client's execute turn from the moment it opens until it closes, so
    the kernel never has a second cell of this client queued behind it (the CodeGeeX4 server aborts a cell queued
    behind one that raises and answers it as an empty success)."""

    def __init__(
        self,
        client: InterpreterClient,
        secs: int,
        opener: Callable[[], Awaitable[aiohttp.ClientResponse]],
        decoder: _BodyDecoder,
        idle_timeout: float,
    ) -> None:
        super().__init__(
            opener,
            decoder,
            _parse_frame,
            terminal=self._at_end,
            require_terminal=True,
            idle_timeout=idle_timeout,
            what="interpreter execution",
            idempotent=False,
        )
        self._client = client
        self._secs = secs
        self._turn: asyncio.Lock | None = None
        self._end: ExecutionEnd | None = None

    def _at_end(self, item: Event | ExecutionEnd) -> bool:
        if isinstance(item, ExecutionEnd):
            self._end = item
            return True
        return False

    async def _ensure_open(self) -> aiohttp.ClientResponse:
        if self._turn is None and self._resp is None and not self._closed:
            turn = self._client._lock()
            await turn.acquire()
            self._turn = turn
            try:
                if self._client._maybe_running:
                    await self._client._wait_for_idle_kernel(self._secs)
                return await super()._ensure_open()
            except BaseException:
                await self.aclose()  # a stream that failed to open never reaches __aexit__: give the turn back here
                raise
        return await super()._ensure_open()

    def _give_back(self) -> None:
        turn, self._turn = self._turn, None
        if turn is not None:
            # Left early, cut, failed or timed out: the cell may still be running, so the next execute probes first.
            self._client._maybe_running = self._end is None or self._end.timed_out
            turn.release()

    async def aclose(self) -> None:
        """Close the stream and give the client's execute turn to the next execute."""
        self._give_back()
        await super().aclose()

    def __del__(self) -> None:
        # Never closed (abandoned mid-way): the turn must not stay taken forever.
        with contextlib.suppress(Exception):
            self._give_back()
        super().__del__()


# -- the session --------------------------------------------------------------------------------------------------
RestartHook = Callable[[], Awaitable[None]]


class Interpreter:
    """A session on one interpreter sandbox that keeps its state across calls and survives timeouts.

    After an execution times out the session checks the sandbox's health at once: a dead kernel is then either
    restarted through ``restart`` (a coroutine function you supply: the API itself has no restart endpoint) or
    reported by the next call with :class:`KernelDeadError`, instead of that call waiting out its own timeout.
    With ``restart_on_timeout`` a kernel that is alive but still running the timed-out code is restarted too
    (there is no interrupt), so the next call does not queue behind it. A restart loses the kernel's variables;
    ``restarts`` counts them.

    Example::

        async with Interpreter("http://127.0.0.1:8080", restart=rebuild_container) as it:
            await it.execute("import pandas as pd; df = pd.read_csv('data.csv')")
            print((await it.execute("df.describe()")).to_text())
    """

    client: InterpreterClient
    """The underlying client (files, streams, the sandbox's health check)."""
    timeout: float
    """The default server-side wait of ``execute``, in seconds."""
    restart_on_timeout: bool
    """Restart (through the hook) after every timeout, even when the kernel is alive."""
    restart_wait: float
    """How long a restart may take before the kernel is reported dead."""
    restarts: int
    """How many times the kernel was replaced during this session (by the hook or by the server)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        data_dir: str = DEFAULT_DATA_DIR,
        timeout: float = 60,
        http_timeout: TimeoutLike = None,
        max_attempts: int | None = None,
        session: aiohttp.ClientSession | None = None,
        restart: RestartHook | None = None,
        restart_on_timeout: bool = False,
        restart_wait: float = 60.0,
        ping_timeout: float = PING_TIMEOUT,
        trust_env: bool = True,
        trace_configs: Sequence[aiohttp.TraceConfig] | None = None,
    ) -> None:
        self.client = InterpreterClient(
            base_url,
            token=token,
            data_dir=data_dir,
            timeout=http_timeout,
            max_attempts=max_attempts,
            session=session,
            ping_timeout=ping_timeout,
            trust_env=trust_env,
            trace_configs=trace_configs,
        )
        self.timeout = timeout
        self.restart_on_timeout = restart_on_timeout
        self.restart_wait = restart_wait
        self.restarts = 0
        self._restart = restart
        self._dead: KernelDeadError | None = None
        self._busy = False
        self._died_and_restarted = False

    def __repr__(self) -> str:
        state = "dead" if self._dead else ("busy" if self._busy else "ready")
        return f"Interpreter({self.client.base_url!r}, {state}, restarts={self.restarts})"

    @property
    def kernel_dead(self) -> bool:
        """The last health check found the kernel dead (and it was not restarted yet)."""
        return self._dead is not None

    @property
    def busy(self) -> bool:
        """An earlier execution timed out while the kernel lived: it may still be running that code."""
        return self._busy

    async def _ready(self) -> None:
        if self._dead is None:
            return
        if self._restart is None:
            raise KernelDeadError(
                "the sandbox kernel died (found after a timed-out execution); its state is gone and the API "
                "cannot restart it: rebuild the sandbox, or give Interpreter a restart hook",
                status=500,
                body=self._dead.body,
            )
        await self.restart()

    async def _check_after_timeout(self) -> None:
        # Ask at once: a dead kernel would otherwise make the next call wait out its whole timeout.
        try:
            await self.client.ping()
        except KernelDeadError as dead:
            log.warning("the interpreter kernel at %s is dead", self.client.base_url)
            self._dead = dead
            if self._restart is not None:
                await self.restart()
                self._died_and_restarted = True
            return
        self._busy = True
        if self.restart_on_timeout and self._restart is not None:
            await self.restart()

    async def restart(self) -> None:
        """Restart the sandbox through the ``restart`` hook and wait until it answers its health check."""
        if self._restart is None:
            raise InvalidRequestError("this Interpreter has no restart hook")
        await self._restart()
        try:
            await poll_until(
                self._alive, bool, timeout=self.restart_wait, interval=0.2, max_interval=2.0, what="sandbox restart"
            )
        except PollTimeoutError:
            raise KernelDeadError(
                f"the sandbox did not come back within {self.restart_wait:g}s of its restart", status=500
            ) from None
        self.restarts += 1
        self._dead = None
        self._busy = False

    async def _alive(self) -> bool:
        try:
            await self.client.ping()
        except (KernelDeadError, APIConnectionError):
            return False
        return True

    async def ping(self) -> PingResult:
        """The sandbox's health check (a dead kernel raises :class:`KernelDeadError` and is remembered)."""
        try:
            return await self.client.ping()
        except KernelDeadError as dead:
            self._dead = dead
            raise

    async def execute(self, code: str, *, timeout: float | None = None) -> ExecutionResult:
        """Run ``code`` (``timeout`` defaults to the session's). A timed-out result triggers the health check."""
        await self._ready()
        result = await self.client.execute(code, timeout=self.timeout if timeout is None else timeout)
        return await self._settle(result.timed_out, result.kernel_restarted, result)

    async def _settle(self, timed_out: bool, restarted: bool, result: ExecutionResult) -> ExecutionResult:
        if restarted:
            self.restarts += 1  # the server replaced its kernel: the session's state is gone
        if not timed_out:
            self._busy = False
            return result
        await self._check_after_timeout()
        if self._dead is not None or self._died_and_restarted:
            self._died_and_restarted = False
            return attrs.evolve(result, kernel_died=True)
        return result

    async def stream(self, code: str, *, timeout: float | None = None) -> AsyncIterator[Event | ExecutionEnd]:
        """Run ``code`` and yield its events as they arrive (ending with :class:`ExecutionEnd`); a timeout
        triggers the health check once the stream has ended. Like ``execute``, it waits for this session's other
        cells and checks the kernel is free after a timed-out one (:class:`KernelBusyError`)."""
        await self._ready()
        end: ExecutionEnd | None = None
        wait = self.timeout if timeout is None else timeout
        # The client's stream takes the client's turn (one cell in the kernel at a time, a probe after a timed-out
        # one), so a streamed cell is never aborted unseen behind another.
        async with self.client.execute_stream(code, timeout=wait) as events:
            async for event in events:
                if isinstance(event, ExecutionEnd):
                    end = event
                yield event
        if end is not None:
            await self._settle(end.timed_out, end.kernel_restarted, ExecutionResult(status=end.status))

    async def upload(self, path: str | PurePath, source: UploadSource, *, overwrite: bool = True) -> UploadedFile:
        """See :meth:`InterpreterClient.upload`."""
        return await self.client.upload(path, source, overwrite=overwrite)

    async def download(self, path: str | PurePath, *, max_size: int = 64 * 1024 * 1024) -> bytes:
        """See :meth:`InterpreterClient.download`."""
        return await self.client.download(path, max_size=max_size)

    async def download_to(
        self, path: str | PurePath, target: str | os.PathLike[str], *, overwrite: bool = True
    ) -> Path:
        """See :meth:`InterpreterClient.download_to`."""
        return await self.client.download_to(path, target, overwrite=overwrite)

    async def aclose(self) -> None:
        """Close the session's connections (the sandbox and its kernel are left as they are)."""
        await self.client.aclose()

    async def __aenter__(self) -> Interpreter:
        try:
            try:
                await self.ping()
            except KernelDeadError:
                await self._ready()  # restart through the hook, or report the dead kernel now
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
