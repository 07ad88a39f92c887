"""The async client of the Baidu AppBuilder Assistants API.

Every call is a ``POST`` to ``<gateway>/v2/...`` with the ids in the JSON body. Resources follow the official SDK's
layout: ``assistants``, ``files``, ``threads``, ``threads.messages``, ``threads.runs``, ``threads.runs.steps``::

    async with AssistantsClient() as client:                     # APPBUILDER_TOKEN, GATEWAY_URL from the env
        assistant = await client.assistants.create(name="helper", instructions="Be brief.")
        thread = await client.threads.create(messages=["hello"])
        run = await client.threads.runs.run(thread_id=thread.id, assistant_id=assistant.id)
        print(run.final_answer.text)

        async with client.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as events:
            async for event in events:
                if isinstance(event, MessageEvent):
                    print(event.text, end="")

Only the idempotent calls (query, list, download, content) are retried on failures; create, update, delete, run,
submit and cancel are sent again only when the request provably never reached the service.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from aioagents._client import (
    ClientOptions,
    Endpoint,
    RequestOptions,
    SentOptions,
    ServiceClient,
    Unpack,
    merge_headers,
    resolve_options,
)
from aioagents._config import DEFAULT_TIMEOUT, Timeout, TimeoutLike
from aioagents._exceptions import AioAgentsError, EventTooLargeError, InvalidRequestError
from aioagents._streaming import EventStream, LineSplitter, ServerSentEvent, SSEDecoder
from aioagents._transport import Response, Transport
from aioagents.assistants.errors import (
    AssistantServerError,
    AssistantValidationError,
    ToolCallError,
    current_request_id,
    error_from_response,
)
from aioagents.assistants.events import RunEnd, RunEvent, StatusEvent, ToolCallsEvent, parse_event
from aioagents.assistants.models import (
    Assistant,
    AssistantFile,
    AssistantSettings,
    DeletedObject,
    File,
    FileContent,
    FileList,
    Message,
    MessageFile,
    MessageLike,
    ModelParameters,
    Page,
    PageQuery,
    Run,
    RunParameters,
    RunStep,
    Thread,
    ThreadMessage,
    ToolCall,
    ToolLike,
    ToolOutput,
    ToolOutputLike,
    ToolRunParameters,
    converter,
    structure,
)

__all__ = [
    "DEFAULT_GATEWAY",
    "Assistants",
    "AssistantsClient",
    "Files",
    "Messages",
    "Runs",
    "Steps",
    "Threads",
    "ToolRunStream",
]

T = TypeVar("T")

DEFAULT_GATEWAY = "https://appbuilder.baidu.com"
DEFAULT_MODEL = "ERNIE-4.0T-8K"
#: A non-streaming run waits for the model: allow it minutes, not the default minute.
RUN_TIMEOUT = Timeout(total=600.0, connect=10.0)
_UPLOAD_CHUNK = 256 * 1024

_NAME_RE = re.compile(r"^[\u4e00-\u9fa5 0-9a-zA-Z_-]+$")

#: A tool the high-level loops may call: a function (sync or async) taking the call's arguments as keywords.
ToolFunction = Callable[..., Any]


# -- validation (before anything is sent) ---------------------------------------------------------------------------
class _Problems:
    """Collects every problem with the arguments, so one error names them all."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.errors.append(message)

    def id(self, name: str, value: object) -> None:
        self.check(isinstance(value, str) and bool(value), f"{name} must be a non-empty string")

    def length(self, name: str, value: str | None, limit: int) -> None:
        self.check(value is None or len(value) <= limit, f"{name} is longer than {limit} characters")

    def count(self, name: str, values: Sequence[Any], limit: int) -> None:
        self.check(len(values) <= limit, f"{name} holds more than {limit} items")

    def metadata(self, metadata: Mapping[str, Any] | None) -> None:
        if metadata is None:
            return
        self.check(len(metadata) <= 16, "metadata holds more than 16 keys")
        for key, value in metadata.items():
            self.check(isinstance(key, str) and len(key) <= 64, f"metadata key {key!r} is longer than 64 characters")
            self.check(
                isinstance(value, str) and len(value) <= 512,
                f"metadata value of {key!r} must be a string of at most 512 characters",
            )

    def page(self, limit: int, order: str) -> None:
        self.check(isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1, "limit must be ≥ 1")
        self.check(order in ("asc", "desc"), "order must be 'asc' or 'desc'")

    def model_parameters(self, params: ModelParameters | None) -> None:
        if params is None:
            return
        for part in ("chat_parameters", "thought_parameters"):
            values = getattr(params, part)
            if values is None:
                continue
            for key, low, high in (("temperature", 0.0, 1.0), ("top_p", 0.0, 1.0), ("penalty_score", 1.0, 2.0)):
                value = getattr(values, key)
                self.check(value is None or low <= value <= high, f"{part}.{key} must be in [{low:g}, {high:g}]")

    def raise_if_any(self) -> None:
        if self.errors:
            raise AssistantValidationError(self.errors)


async def _every(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> AsyncIterator[T]:
    """The items of page after page: each page starts after the last id of the one before."""
    after: str | None = None
    while True:
        page = await fetch(after)
        for item in page.data:
            yield item
        if not page.has_more or not page.data:
            return
        after = page.last_id


def _page_body(limit: int, order: str, after: str | None, before: str | None) -> dict[str, Any]:
    return {"limit": limit, "order": order, "after": after or "", "before": before or ""}


def _dump(value: Any) -> Any:
    """A request model as JSON data with its unset (None) fields left out: "not sent", not null."""
    if value is None:
        return None

    def prune(data: Any) -> Any:
        if isinstance(data, dict):
            return {k: prune(v) for k, v in data.items() if v is not None}
        return data

    return prune(converter.unstructure(value))


def _tool(value: ToolLike) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else converter.unstructure(value)


def _message(value: MessageLike) -> dict[str, Any]:
    if isinstance(value, str):
        value = ThreadMessage(content=value)
    if isinstance(value, ThreadMessage):
        return {"role": value.role, "content": value.content, "file_ids": list(value.file_ids)}
    return dict(value)


def _tool_output(value: ToolOutputLike) -> dict[str, Any]:
    if isinstance(value, ToolOutput):
        return {"tool_call_id": value.tool_call_id, "output": value.output, "run_id": value.run_id}
    return {"run_id": "", **value}


# -- the shared call path -------------------------------------------------------------------------------------------
class _AppBuilderSSE:
    """The core SSE decoder plus the service's habits, which the official SDK also accepts: a bare JSON line (an
    ``{"error": …}`` written without ``data:``) counts as the event's data, and an event left pending when the body
    ends is still dispatched.

    A body that *starts* with JSON is not a stream at all but a JSON answer (an error body answering a streaming
    request), pretty-printed over many lines or not: it is read whole and dispatched as one event at the end, rather
    than line by line (where its second line would be an unknown SSE field and the event a cut-off ``{``).
    """

    def __init__(self, max_event_size: int) -> None:
        self._max = max_event_size
        self._lines = LineSplitter(max_event_size)
        self._sse = SSEDecoder(max_event_size)
        self._mode: Literal["unknown", "sse", "json"] = "unknown"
        self._json = bytearray()

    def _line(self, line: bytes) -> list[ServerSentEvent]:
        if line.lstrip().startswith(b"{"):
            line = b"data: " + line
        return self._sse.feed(line + b"\n")

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        if self._mode == "unknown":
            # Leading blank lines dispatch nothing in SSE, so they can be dropped while the kind of body is unknown.
            chunk = chunk.lstrip()
            if not chunk:
                return []
            self._mode = "json" if chunk[:1] in (b"{", b"[") else "sse"
        if self._mode == "json":
            self._json += chunk
            if len(self._json) > self._max:
                raise EventTooLargeError(f"a JSON answer passed the cap of {self._max} bytes")
            return []
        out: list[ServerSentEvent] = []
        for line in self._lines.feed(chunk):
            out.extend(self._line(line))
        return out

    def end(self) -> list[ServerSentEvent]:
        if self._mode == "json":
            return [ServerSentEvent(event="message", data=self._json.decode("utf-8", "replace").strip())]
        out: list[ServerSentEvent] = []
        for line in self._lines.flush():
            out.extend(self._line(line))
        out.extend(self._sse.feed(b"\n"))
        out.extend(self._sse.end())
        return out


class _Api:
    """The one call path: a POST with fresh request ids, the 200-with-error check and decoding. Arguments are
    checked before anything is sent, the per-call options resolved in one place (:func:`resolve_options`)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    @staticmethod
    def checked(resp: Response, rid: str) -> Any:
        """The JSON answer, or the service's error when a 200 carries one."""
        data = resp.json()
        if isinstance(data, dict) and "error" in data:
            raise AssistantServerError.from_body(
                data, status=resp.status, request_id=resp.request_id or rid, method="POST", url=resp.url
            )
        return data

    @staticmethod
    def sent(
        options: RequestOptions, timeout: TimeoutLike = None, headers: Mapping[str, str] | None = None
    ) -> tuple[str, SentOptions]:
        """A fresh request id and the Transport keywords of one call: the caller's options, then the call's own
        ``headers`` and the request ids (these win over ``extra_headers``: a call is traced by the ids it carried)."""
        rid = str(uuid.uuid4())
        sent = resolve_options(options, timeout=timeout)
        own = {**(headers or {}), "X-Appbuilder-Request-Id": rid, "X-Bce-Request-Id": rid}
        sent["headers"] = merge_headers(sent["headers"], own)
        return rid, sent

    async def send(
        self,
        path: str,
        options: RequestOptions,
        *,
        idempotent: bool,
        timeout: TimeoutLike = None,
        headers: Mapping[str, str] | None = None,
        **kw: Any,
    ) -> tuple[Response, str]:
        """POST ``path`` (``json=``, ``data=``, ``params=`` in ``kw``); the response and its request id."""
        rid, sent = self.sent(options, timeout, headers)
        token = current_request_id.set(rid)
        try:
            resp = await self.transport.request("POST", path, idempotent=idempotent, **kw, **sent)
        finally:
            current_request_id.reset(token)
        return resp, rid

    async def post(
        self,
        path: str,
        body: dict[str, Any],
        cls: type[T],
        options: RequestOptions,
        *,
        idempotent: bool,
        problems: _Problems | None = None,
    ) -> T:
        """Check ``body`` (every ``*_id`` key must be a non-empty string) and what ``problems`` found, POST it and
        decode the answer as ``cls``."""
        _check(body, problems)
        resp, rid = await self.send(path, options, idempotent=idempotent, json=body)
        return structure(self.checked(resp, rid), cls)

    async def page(self, path: str, body: dict[str, Any], cls: type[T], query: PageQuery) -> Page[T]:
        """One page of a ``list`` call: ``body`` holds its ids, ``query`` the page and the per-call options."""
        page, options = _split(query, _PAGE_KEYS)
        limit, order = page.get("limit", 20), page.get("order", "desc")
        p = _Problems()
        p.page(limit, order)
        # The page keys go after the call's ids; an unset cursor is sent as "".
        after, before = page.get("after") or "", page.get("before") or ""
        body = {**body, "limit": limit, "order": order, "after": after, "before": before}
        paged: type[Page[T]] = Page[cls]  # type: ignore[valid-type]
        return await self.post(path, body, paged, options, idempotent=True, problems=p)


def _keys(declaration: Any) -> frozenset[str]:
    """The keywords a TypedDict declares."""
    return frozenset(declaration.__required_keys__ | declaration.__optional_keys__)


_OPTION_KEYS = _keys(RequestOptions)
_PAGE_KEYS = _keys(PageQuery) - _OPTION_KEYS


def _split(params: Mapping[str, Any], own: frozenset[str]) -> tuple[dict[str, Any], RequestOptions]:
    """A call's keywords split into its own parameters and the per-call options; an unknown name is a
    ``TypeError``, as a misspelt keyword argument is."""
    mine = {k: v for k, v in params.items() if k in own}
    options = {k: v for k, v in params.items() if k not in own}
    unknown = options.keys() - _OPTION_KEYS
    if unknown:
        raise TypeError(
            f"unexpected keyword argument(s) {', '.join(sorted(unknown))}: this call takes {', '.join(sorted(own))} "
            f"and the per-call options {', '.join(sorted(_OPTION_KEYS))}"
        )
    return mine, cast(RequestOptions, options)


def _check(body: Mapping[str, Any], problems: _Problems | None = None) -> None:
    """Raise one :class:`AssistantValidationError` naming every problem: an id of ``body`` (a ``*_id`` key: the
    service names every id so) that is not a non-empty string, then what ``problems`` found."""
    p = _Problems()
    for name, value in body.items():
        if name.endswith("_id"):
            p.id(name, value)
    if problems is not None:
        p.errors.extend(problems.errors)
    p.raise_if_any()


async def _multipart(source: str | os.PathLike[str] | bytes, filename: str, boundary: str) -> AsyncIterator[bytes]:
    # HTML5 form encoding of the name: raw UTF-8 with quotes and line breaks escaped.
    quoted = filename.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    if isinstance(source, bytes):
        yield source
    else:
        fh = await asyncio.to_thread(open, source, "rb")
        try:
            while chunk := await asyncio.to_thread(fh.read, _UPLOAD_CHUNK):
                yield chunk
        finally:
            fh.close()
    yield f"\r\n--{boundary}--\r\n".encode()


def _filename_from(disposition: str | None) -> str | None:
    if not disposition or "filename=" not in disposition:
        return None
    # The service writes `filename=<name>` unquoted; the SDK takes everything after it.
    name = disposition.split("filename=")[-1].strip().strip('"')
    return name or None


def _safe_name(name: str | None, fallback: str) -> str:
    """A server-supplied file name reduced to a plain name inside the target directory."""
    base = os.path.basename((name or "").replace("\\", "/"))
    if base in ("", ".", "..") or "\x00" in base:
        return fallback
    return base


async def _call_tool(tools: Mapping[str, ToolFunction], call: ToolCall) -> ToolOutput:
    function = call.function
    name = function.name if function is not None else ""
    fn = tools.get(name)
    if fn is None:
        raise ToolCallError(
            f"the run called tool {name!r}, which is not among {sorted(tools)}", tool_name=name, tool_call_id=call.id
        )
    try:
        arguments = function.parsed_arguments() if function is not None else {}
        result = fn(**arguments)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        raise ToolCallError(f"tool {name!r} failed: {exc}", tool_name=name, tool_call_id=call.id) from exc
    output = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
    return ToolOutput(tool_call_id=call.id, output=output)


# -- resources ------------------------------------------------------------------------------------------------------
_ASSISTANT_KEYS = _keys(AssistantSettings) - _OPTION_KEYS
#: What the service is sent for a setting not given (every one is sent).
_ASSISTANT_DEFAULTS: dict[str, Any] = {
    **dict.fromkeys(_ASSISTANT_KEYS, ""),
    "model": DEFAULT_MODEL,
    "response_format": "text",
    "tools": (),
    "file_ids": (),
    "metadata": None,
}


def _assistant_body(settings: AssistantSettings, p: _Problems) -> tuple[dict[str, Any], RequestOptions]:
    """An assistant's settings checked (into ``p``) and as the service's body (every key, defaults included), and the
    per-call options among the keywords."""
    given, options = _split(settings, _ASSISTANT_KEYS)
    a = {**_ASSISTANT_DEFAULTS, **given}
    name = a.get("name")
    p.check(isinstance(name, str) and 1 <= len(name) <= 128, "name must be 1 to 128 characters")
    p.check(
        isinstance(name, str) and bool(_NAME_RE.match(name)),
        "name may hold only CJK characters, letters, digits, spaces, '_' and '-'",
    )
    p.length("description", a["description"], 512)
    for key in ("instructions", "thought_instructions", "chat_instructions"):
        p.length(key, a[key], 4096)
    p.check(a["response_format"] in ("text", "json_object"), "response_format must be 'text' or 'json_object'")
    p.count("tools", a["tools"], 10)
    p.count("file_ids", a["file_ids"], 10)
    p.metadata(a["metadata"])
    body = {
        "model": a["model"],
        "name": name,
        "description": a["description"],
        "response_format": a["response_format"],
        "instructions": a["instructions"],
        "thought_instructions": a["thought_instructions"],
        "chat_instructions": a["chat_instructions"],
        "tools": [_tool(t) for t in a["tools"]],
        "file_ids": list(a["file_ids"]),
        "metadata": dict(a["metadata"] or {}),
    }
    return body, options


class Assistants:
    """``client.assistants``: create, update, list, query, delete, and mount files on assistants."""

    def __init__(self, api: _Api) -> None:
        self._api = api

    async def create(self, **settings: Unpack[AssistantSettings]) -> Assistant:
        """Create an assistant (:class:`AssistantSettings`: ``name`` is required, 1–128 CJK characters, letters,
        digits, spaces, ``_`` or ``-``)."""
        p = _Problems()
        body, options = _assistant_body(settings, p)
        return await self._api.post("/v2/assistants", body, Assistant, options, idempotent=False, problems=p)

    async def update(self, assistant_id: str, **settings: Unpack[AssistantSettings]) -> Assistant:
        """Replace an assistant's settings (every field is sent, defaults included, as the service expects)."""
        p = _Problems()
        body, options = _assistant_body(settings, p)
        body = {"assistant_id": assistant_id, **body}
        return await self._api.post("/v2/assistants/update", body, Assistant, options, idempotent=False, problems=p)

    async def list(self, **query: Unpack[PageQuery]) -> Page[Assistant]:
        """One page of assistants (:class:`PageQuery`); ``after=page.last_id`` fetches the next one (or use
        :meth:`iter_all`)."""
        return await self._api.page("/v2/assistants/list", {}, Assistant, query)

    def iter_all(self, *, order: str = "desc", page_size: int = 20) -> AsyncIterator[Assistant]:
        """Every assistant, page after page."""
        return _every(lambda after: self.list(limit=page_size, order=order, after=after))

    async def query(self, assistant_id: str, **options: Unpack[RequestOptions]) -> Assistant:
        """One assistant."""
        return await self._api.post(
            "/v2/assistants/query", {"assistant_id": assistant_id}, Assistant, options, idempotent=True
        )

    async def delete(self, assistant_id: str, **options: Unpack[RequestOptions]) -> DeletedObject:
        """Delete an assistant."""
        return await self._api.post(
            "/v2/assistants/delete", {"assistant_id": assistant_id}, DeletedObject, options, idempotent=False
        )

    async def mount_files(self, assistant_id: str, file_id: str, **options: Unpack[RequestOptions]) -> AssistantFile:
        """Mount an uploaded file on an assistant."""
        body = {"assistant_id": assistant_id, "file_id": file_id}
        return await self._api.post("/v2/assistants/files", body, AssistantFile, options, idempotent=False)

    async def mounted_files_list(self, assistant_id: str, **query: Unpack[PageQuery]) -> Page[AssistantFile]:
        """One page of the files mounted on an assistant (:class:`PageQuery`)."""
        return await self._api.page("/v2/assistants/files/list", {"assistant_id": assistant_id}, AssistantFile, query)

    def iter_mounted_files(
        self, assistant_id: str, *, order: str = "desc", page_size: int = 20
    ) -> AsyncIterator[AssistantFile]:
        """Every file mounted on an assistant, page after page."""
        return _every(lambda after: self.mounted_files_list(assistant_id, limit=page_size, order=order, after=after))

    async def unmount_files(self, assistant_id: str, file_id: str, **options: Unpack[RequestOptions]) -> DeletedObject:
        """Unmount a file from an assistant (the file itself stays)."""
        body = {"assistant_id": assistant_id, "file_id": file_id}
        return await self._api.post("/v2/assistants/files/delete", body, DeletedObject, options, idempotent=False)


class Files:
    """``client.files``: upload (streamed multipart), list, query, delete, download and read file contents."""

    def __init__(self, api: _Api) -> None:
        self._api = api

    async def create(
        self,
        file: str | os.PathLike[str] | bytes,
        *,
        filename: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> File:
        """Upload a file (a path, read in chunks while sending, or bytes with ``filename``) for assistants."""
        if isinstance(file, bytes):
            if not filename:
                raise AssistantValidationError(["filename is required when uploading bytes"])
            name = filename
        else:
            if not await asyncio.to_thread(os.path.isfile, file):
                raise FileNotFoundError(f"no such file: {os.fspath(file)}")
            name = filename or os.path.basename(os.fspath(file))
        boundary = uuid.uuid4().hex
        resp, rid = await self._api.send(
            "/v2/storage/files",
            options,
            idempotent=False,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            params={"purpose": "assistant"},
            # A fresh generator per attempt: the file is read in chunks while it is sent, never held in memory.
            data=lambda: _multipart(file, name, boundary),
        )
        return structure(self._api.checked(resp, rid), File)

    async def list(self, **options: Unpack[RequestOptions]) -> FileList:
        """Every uploaded file (the service does not page this list)."""
        return await self._api.post("/v2/storage/files/list", {}, FileList, options, idempotent=True)

    async def query(self, file_id: str, **options: Unpack[RequestOptions]) -> File:
        """One file, with its audit state (``censored``) and ``file_type``."""
        return await self._api.post("/v2/storage/files/query", {"file_id": file_id}, File, options, idempotent=True)

    async def delete(self, file_id: str, **options: Unpack[RequestOptions]) -> DeletedObject:
        """Delete a file."""
        return await self._api.post(
            "/v2/storage/files/delete", {"file_id": file_id}, DeletedObject, options, idempotent=False
        )

    async def _fetch(self, path: str, file_id: str, options: RequestOptions) -> FileContent:
        body = {"file_id": file_id}
        _check(body)
        resp, rid = await self._api.send(path, options, idempotent=True, json=body)
        ctype = resp.headers.get("Content-Type", "")
        if ctype.startswith("application/json"):
            # An error body with HTTP 200 (a real JSON file would also land here; it is returned as bytes).
            data = resp.json()
            if isinstance(data, dict) and "error" in data:
                self._api.checked(resp, rid)
        return FileContent(
            content=resp.content,
            content_type=ctype.split(";")[0].strip(),
            filename=_filename_from(resp.headers.get("Content-Disposition")),
        )

    async def content(self, file_id: str, **options: Unpack[RequestOptions]) -> FileContent:
        """A file's bytes and content type."""
        return await self._fetch("/v2/storage/files/content", file_id, options)

    async def download(
        self, file_id: str, directory: str | os.PathLike[str] = ".", **options: Unpack[RequestOptions]
    ) -> Path:
        """Save a file into ``directory`` under the name the service gives (reduced to a plain file name, so it
        cannot escape the directory) and return its path."""
        target_dir = Path(directory)
        if not await asyncio.to_thread(target_dir.is_dir):
            raise FileNotFoundError(f"no such directory: {target_dir}")
        fetched = await self._fetch("/v2/storage/files/download", file_id, options)
        target = target_dir / _safe_name(fetched.filename, file_id)
        await asyncio.to_thread(target.write_bytes, fetched.content)
        return target


class Messages:
    """``client.threads.messages``: the messages of a thread."""

    def __init__(self, api: _Api) -> None:
        self._api = api

    async def create(
        self, thread_id: str, content: str, *, file_ids: Sequence[str] = (), **options: Unpack[RequestOptions]
    ) -> Message:
        """Add a user message (with up to 10 file ids) to a thread."""
        p = _Problems()
        p.check(isinstance(content, str) and bool(content), "content must be a non-empty string")
        p.count("file_ids", file_ids, 10)
        body = {"thread_id": thread_id, "role": "user", "content": content, "file_ids": list(file_ids)}
        return await self._api.post("/v2/threads/messages", body, Message, options, idempotent=False, problems=p)

    async def update(
        self,
        thread_id: str,
        message_id: str,
        *,
        content: str | None = None,
        file_ids: Sequence[str] | None = None,
        **options: Unpack[RequestOptions],
    ) -> Message:
        """Change a message's content or files; ``None`` leaves that part alone (the SDK sends ``[]`` files)."""
        p = _Problems()
        p.check(content is None or (isinstance(content, str) and bool(content)), "content must be non-empty")
        if file_ids is not None:
            p.count("file_ids", file_ids, 10)
        body: dict[str, Any] = {"thread_id": thread_id, "message_id": message_id}
        if content is not None:
            body["content"] = content
        if file_ids is not None:
            body["file_ids"] = list(file_ids)
        return await self._api.post("/v2/threads/messages/update", body, Message, options, idempotent=False, problems=p)

    async def list(self, thread_id: str, **query: Unpack[PageQuery]) -> Page[Message]:
        """One page of a thread's messages (:class:`PageQuery`)."""
        return await self._api.page("/v2/threads/messages/list", {"thread_id": thread_id}, Message, query)

    def iter_all(self, thread_id: str, *, order: str = "desc", page_size: int = 20) -> AsyncIterator[Message]:
        """Every message of a thread, page after page."""
        return _every(lambda after: self.list(thread_id, limit=page_size, order=order, after=after))

    async def query(self, thread_id: str, message_id: str, **options: Unpack[RequestOptions]) -> Message:
        """One message."""
        body = {"thread_id": thread_id, "message_id": message_id}
        return await self._api.post("/v2/threads/messages/query", body, Message, options, idempotent=True)

    async def files(self, thread_id: str, message_id: str, **query: Unpack[PageQuery]) -> Page[MessageFile]:
        """One page of the files attached to a message (:class:`PageQuery`)."""
        body = {"thread_id": thread_id, "message_id": message_id}
        return await self._api.page("/v2/threads/messages/files/list", body, MessageFile, query)

    def iter_files(
        self, thread_id: str, message_id: str, *, order: str = "desc", page_size: int = 20
    ) -> AsyncIterator[MessageFile]:
        """Every file of a message, page after page."""
        return _every(lambda after: self.files(thread_id, message_id, limit=page_size, order=order, after=after))


class Steps:
    """``client.threads.runs.steps``: the steps of a run."""

    def __init__(self, api: _Api) -> None:
        self._api = api

    async def list(self, thread_id: str, run_id: str, **query: Unpack[PageQuery]) -> Page[RunStep]:
        """One page of a run's steps (:class:`PageQuery`)."""
        body = {"thread_id": thread_id, "run_id": run_id}
        return await self._api.page("/v2/threads/runs/steps/list", body, RunStep, query)

    def iter_all(
        self, thread_id: str, run_id: str, *, order: str = "desc", page_size: int = 20
    ) -> AsyncIterator[RunStep]:
        """Every step of a run, page after page."""
        return _every(lambda after: self.list(thread_id, run_id, limit=page_size, order=order, after=after))

    async def query(self, thread_id: str, run_id: str, step_id: str, **options: Unpack[RequestOptions]) -> RunStep:
        """One step."""
        body = {"thread_id": thread_id, "run_id": run_id, "step_id": step_id}
        return await self._api.post("/v2/threads/runs/steps/query", body, RunStep, options, idempotent=True)


_RUN_KEYS = _keys(RunParameters) - _OPTION_KEYS
#: A run parameter not given is null on the wire (the service's model takes every key), but for these.
_RUN_DEFAULTS: dict[str, Any] = {**dict.fromkeys(_RUN_KEYS), "response_format": "text", "tools": ()}


def _run_body(params: RunParameters | ToolRunParameters, *, stream: bool) -> tuple[dict[str, Any], RequestOptions]:
    """A run's parameters checked and turned into the service's body, whatever method (``run``, ``stream``) sends
    them, and the per-call options among the keywords."""
    given, options = _split(params, _RUN_KEYS)
    r = {**_RUN_DEFAULTS, **given}
    p = _Problems()
    p.id("assistant_id", r.get("assistant_id"))
    p.check(bool(r["thread_id"]) or bool(r["thread"]), "thread_id or thread is required")
    p.check(r["response_format"] in ("text", "json_object"), "response_format must be 'text' or 'json_object'")
    p.metadata(r["metadata"])
    p.model_parameters(r["model_parameters"])
    p.count("tools", r["tools"], 10)
    for key in ("instructions", "thought_instructions", "chat_instructions"):
        p.length(key, r[key], 4096)
    p.raise_if_any()
    # The service's request model forbids unknown keys and the SDK sends every key, unset ones as null.
    body = {
        "thread_id": r["thread_id"] or "",
        "model": r["model"],
        "assistant_id": r["assistant_id"],
        "metadata": dict(r["metadata"] or {}),
        "response_format": r["response_format"],
        "instructions": r["instructions"],
        "thought_instructions": r["thought_instructions"],
        "chat_instructions": r["chat_instructions"],
        "stream": stream,
        "model_parameters": _dump(r["model_parameters"]),
        "thread": None if not r["thread"] else {"messages": [_message(m) for m in r["thread"]]},
        "tools": [_tool(t) for t in r["tools"]],
        "tool_output": None if r["tool_output"] is None else _tool_output(r["tool_output"]),
        "user_info": _dump(r["user_info"]),
        "user_loc": _dump(r["user_loc"]),
    }
    return body, options


class Runs:
    """``client.threads.runs``: run an assistant on a thread (plain or streamed), answer tool calls, cancel.

    ``run``, ``stream``, ``run_with_tools`` and ``stream_with_tools`` take the same keywords,
    :class:`RunParameters` (``assistant_id`` and ``thread_id`` or ``thread``; the rest optional) and the per-call
    options.
    """

    steps: Steps

    def __init__(self, api: _Api) -> None:
        self._api = api
        self.steps = Steps(api)

    async def run(self, **params: Unpack[RunParameters]) -> Run:
        """Run the assistant and wait for the result.

        ``thread`` adds messages (ending with a user turn) to ``thread_id``'s history, or starts a new thread when
        ``thread_id`` is empty. A run that needs tools returns ``status="requires_action"``; resume it by running
        again with ``tool_output`` (or let :meth:`run_with_tools` do it). Never retried once sent; waits up to
        10 minutes unless ``timeout`` says otherwise.
        """
        body, options = _run_body(params, stream=False)
        resp, rid = await self._api.send("/v2/threads/runs", options, idempotent=False, timeout=RUN_TIMEOUT, json=body)
        return structure(self._api.checked(resp, rid), Run)

    def stream(self, *, idle_timeout: float | None = 120.0, **params: Unpack[RunParameters]) -> EventStream[RunEvent]:
        """Run the assistant and stream its events (``ping`` keepalives are skipped; :class:`RunEnd` is last).

        On a :class:`ToolCallsEvent`, call :meth:`submit_tool_outputs` while the stream stays open, or use
        :meth:`stream_with_tools`. :meth:`cancel` mid-stream ends it with ``RunEnd(status="cancelled")``.
        ``timeout`` bounds the connection set-up; ``max_retries`` and ``extra_headers`` apply to this call only.
        """
        body, options = _run_body(params, stream=True)
        rid, sent = self._api.sent(options)
        transport = self._api.transport
        return transport.stream(
            "POST",
            "/v2/threads/runs",
            decoder=_AppBuilderSSE(transport.max_event_size),
            parse=lambda frame: parse_event(frame, request_id=rid),
            idempotent=False,
            terminal=lambda event: isinstance(event, RunEnd),
            require_terminal=True,
            json=body,
            idle_timeout=idle_timeout,
            what="AppBuilder run stream",
            **sent,
        )

    async def submit_tool_outputs(
        self, thread_id: str, run_id: str, tool_outputs: Sequence[ToolOutputLike], **options: Unpack[RequestOptions]
    ) -> Run:
        """Answer the tool calls of a streaming run (the stream goes on). Never retried once sent."""
        p = _Problems()
        p.check(len(tool_outputs) >= 1, "tool_outputs must hold at least one output")
        body = {"thread_id": thread_id, "run_id": run_id, "tool_outputs": [_tool_output(o) for o in tool_outputs]}
        return await self._api.post(
            "/v2/threads/runs/submit_tool_outputs",
            body,
            Run,
            options,
            idempotent=False,
            problems=p,
        )

    async def cancel(self, thread_id: str, run_id: str, **options: Unpack[RequestOptions]) -> Run:
        """Ask the service to cancel a run; a streaming run then ends with ``RunEnd(status="cancelled")``."""
        body = {"thread_id": thread_id, "run_id": run_id, "sync": False}
        return await self._api.post("/v2/threads/runs/cancel", body, Run, options, idempotent=False)

    async def list(self, thread_id: str, **query: Unpack[PageQuery]) -> Page[Run]:
        """One page of a thread's runs (:class:`PageQuery`)."""
        return await self._api.page("/v2/threads/runs/list", {"thread_id": thread_id}, Run, query)

    def iter_all(self, thread_id: str, *, order: str = "desc", page_size: int = 20) -> AsyncIterator[Run]:
        """Every run of a thread, page after page."""
        return _every(lambda after: self.list(thread_id, limit=page_size, order=order, after=after))

    async def query(self, thread_id: str, run_id: str, **options: Unpack[RequestOptions]) -> Run:
        """One run."""
        return await self._api.post(
            "/v2/threads/runs/query", {"thread_id": thread_id, "run_id": run_id}, Run, options, idempotent=True
        )

    async def run_with_tools(
        self, *, tools: Mapping[str, ToolFunction], max_tool_calls: int = 32, **params: Unpack[ToolRunParameters]
    ) -> Run:
        """Run without streaming and answer every tool call with ``tools[name](**arguments)`` (sync or async;
        a non-string result is sent as JSON), running again with ``tool_output`` until the run finishes.

        >>> run = await client.threads.runs.run_with_tools(
        ...     assistant_id=a.id, thread_id=t.id, tools={"get_weather": get_weather})
        >>> run.final_answer.text
        """
        run = await self.run(**params)
        answered = 0
        while run.status == "requires_action" and run.tool_calls:
            if answered >= max_tool_calls:
                raise AioAgentsError(f"run {run.id} asked for more than {max_tool_calls} tool calls")
            output = await _call_tool(tools, run.tool_calls[0])
            answered += 1
            # The service takes one output per call, tagged with the run it resumes; the thread's new messages
            # were added by the first run.
            resume = params.copy()
            resume["thread"] = None
            resume["thread_id"] = run.thread_id or params.get("thread_id")
            resume["tool_output"] = ToolOutput(tool_call_id=output.tool_call_id, output=output.output, run_id=run.id)
            run = await self.run(**resume)
        return run

    def stream_with_tools(
        self,
        *,
        tools: Mapping[str, ToolFunction],
        idle_timeout: float | None = 120.0,
        **params: Unpack[ToolRunParameters],
    ) -> ToolRunStream:
        """Stream a run and answer its tool calls with ``tools[name](**arguments)`` (sync or async; a non-string
        result is sent as JSON) while the stream stays open. Every event is yielded once: a
        :class:`ToolCallsEvent` before its outputs are submitted, :class:`RunEnd` last.

        >>> async with client.threads.runs.stream_with_tools(
        ...         assistant_id=a.id, thread_id=t.id, tools={"get_weather": get_weather}) as events:
        ...     async for event in events:
        ...         if isinstance(event, MessageEvent):
        ...             print(event.text, end="")
        """
        stream = self.stream(idle_timeout=idle_timeout, **params)
        return ToolRunStream(self, stream, tools, thread_id=params.get("thread_id") or "")


class ToolRunStream(AsyncIterator[RunEvent]):
    """The events of a streaming run whose tool calls are answered on the way (see :meth:`Runs.stream_with_tools`).

    An async iterator and an async context manager; leaving the block (or :meth:`aclose`) closes the connection.
    The outputs for a :class:`ToolCallsEvent` are submitted when the next event is asked for, so the consumer sees
    the calls first; ``run_id`` and ``thread_id`` are known from the first event on.
    """

    def __init__(
        self, runs: Runs, stream: EventStream[RunEvent], tools: Mapping[str, ToolFunction], *, thread_id: str
    ) -> None:
        self._runs = runs
        self._stream = stream
        self._tools = dict(tools)
        self._pending: ToolCallsEvent | None = None
        self.thread_id = thread_id
        self.run_id = ""

    def __aiter__(self) -> ToolRunStream:
        return self

    async def __anext__(self) -> RunEvent:
        if self._pending is not None:
            calls, self._pending = self._pending.tool_calls, None
            try:
                outputs = [await _call_tool(self._tools, call) for call in calls]
                await self._runs.submit_tool_outputs(self.thread_id, self.run_id, outputs)
            except BaseException:
                # The run cannot go on without these outputs: release the connection before the error propagates.
                await self._stream.aclose()
                raise
        event = await self._stream.__anext__()
        if isinstance(event, StatusEvent) and event.run is not None:
            self.run_id = self.run_id or event.run.id
            self.thread_id = self.thread_id or event.run.thread_id
        if isinstance(event, ToolCallsEvent):
            self._pending = event
        return event

    async def aclose(self) -> None:
        """Close the stream and its connection (safe to call twice)."""
        self._pending = None
        await self._stream.aclose()

    async def __aenter__(self) -> ToolRunStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Threads:
    """``client.threads``: conversations, with ``messages`` and ``runs`` under them."""

    messages: Messages
    runs: Runs

    def __init__(self, api: _Api) -> None:
        self._api = api
        self.messages = Messages(api)
        self.runs = Runs(api)

    async def create(self, *, messages: Sequence[MessageLike] = (), **options: Unpack[RequestOptions]) -> Thread:
        """Create a thread, optionally with first messages (strings are user turns)."""
        bodies = [_message(m) for m in messages]
        p = _Problems()
        for i, m in enumerate(bodies):
            p.check(isinstance(m.get("content"), str) and bool(m.get("content")), f"messages[{i}] has no content")
            p.count(f"messages[{i}].file_ids", m.get("file_ids") or [], 10)
        return await self._api.post("/v2/threads", {"messages": bodies}, Thread, options, idempotent=False, problems=p)

    async def query(self, thread_id: str, **options: Unpack[RequestOptions]) -> Thread:
        """One thread."""
        return await self._api.post("/v2/threads/query", {"thread_id": thread_id}, Thread, options, idempotent=True)

    async def update(self, thread_id: str, *, metadata: Mapping[str, str], **options: Unpack[RequestOptions]) -> Thread:
        """Set a thread's metadata (≤16 keys, keys ≤64 and values ≤512 characters). Unlike the SDK, it is sent."""
        p = _Problems()
        p.metadata(metadata)
        body = {"thread_id": thread_id, "metadata": dict(metadata)}
        return await self._api.post("/v2/threads/update", body, Thread, options, idempotent=False, problems=p)

    async def delete(self, thread_id: str, **options: Unpack[RequestOptions]) -> DeletedObject:
        """Delete a thread with its messages and runs."""
        return await self._api.post(
            "/v2/threads/delete", {"thread_id": thread_id}, DeletedObject, options, idempotent=False
        )


# -- the client -----------------------------------------------------------------------------------------------------
class AssistantsClient(ServiceClient):
    """The AppBuilder Assistants API.

    ``token`` defaults to ``APPBUILDER_TOKEN`` (``Bearer `` is added when missing, or the ``SECRET_KEY_PREFIX``
    prefix) and is sent in both ``Authorization`` and ``X-Appbuilder-Authorization``; ``base_url`` defaults to
    ``GATEWAY_URL``, then ``https://appbuilder.baidu.com`` (``https://`` is added to a bare host). Explicit arguments
    win over the environment.

    >>> async with AssistantsClient(token="…") as client:
    ...     thread = await client.threads.create(messages=["hello"])

    The other keywords are the client options every client takes (:class:`~aioagents.ClientOptions`: ``timeout``,
    ``max_attempts`` counting every attempt (default 3) or ``max_retries`` the retries after the first, ``session``,
    ``rate_limiter``, ``trust_env``, ``trace_configs``). Every call takes ``timeout``, ``max_retries`` and
    ``extra_headers`` for itself; :meth:`with_options` makes a copy with other defaults on the same connections.
    """

    endpoint_spec = Endpoint(
        url_env=("GATEWAY_URL",),
        default_url=DEFAULT_GATEWAY,
        key_env=("APPBUILDER_TOKEN",),
        auth_headers=("Authorization", "X-Appbuilder-Authorization"),
        auth_scheme=None,  # the token is sent as the SDK sends it: its prefix is added below when missing
        timeout=DEFAULT_TIMEOUT,
        headers={"X-Appbuilder-Origin": "aioagents"},
        request_id_headers=("x-appbuilder-request-id", "x-bce-request-id", "x-request-id"),
    )

    assistants: Assistants
    files: Files
    threads: Threads

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        secret = self.endpoint_spec.key(token)
        if not secret:
            raise InvalidRequestError("no AppBuilder token: pass token= or set APPBUILDER_TOKEN")
        prefix = os.environ.get("SECRET_KEY_PREFIX") or "Bearer"
        if not secret.startswith(prefix + " "):
            secret = f"{prefix} {secret}"
        url = self.endpoint_spec.url(base_url)
        if "://" not in url:
            url = "https://" + url
        self._connect(url, options, key=secret, error_factory=error_from_response)
        self._rebind()

    def _rebind(self) -> None:
        api = _Api(self._transport)
        self.assistants = Assistants(api)
        self.files = Files(api)
        self.threads = Threads(api)
