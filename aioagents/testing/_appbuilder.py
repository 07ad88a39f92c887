"""A fake of the Baidu AppBuilder Assistants API (``/v2/...``), faithful to the wire contract.

Every endpoint is a ``POST`` with the ids in the JSON body; the file upload is ``multipart/form-data``. The
token is checked in ``Authorization`` and ``X-Appbuilder-Authorization`` (either may be absent, a present one
must match). State lives in plain dicts on the instance so a test can inspect or tamper with it.

Runs follow scripts queued with :meth:`FakeAppBuilderServer.script`; with no script a run answers at once with
``"<instructions> | 你说: <last user message>"``. A script may ask for tool calls (``requires_action``), which
the client answers either by running again with ``tool_output`` (non-streaming) or by ``submit_tool_outputs``
while the SSE stream stays open; a script may also hang mid-answer until the run is cancelled, or fail::

    srv.script(RunScript(tool_calls=[ToolCallScript(name="get_cur_whether", arguments={"location": "北京"})]))
    srv.script(RunScript(hang=True))          # the stream waits for /v2/threads/runs/cancel
    srv.script(RunScript(fail="model overloaded"))

Missing objects are answered with HTTP 200 and an ``{"error": ...}`` body (the documented quirk a client must
catch); malformed requests with HTTP 400 and the same body shape.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.parser
import email.policy
import json
import mimetypes
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
from aiohttp import web

from aioagents.testing._server import FakeServer

__all__ = ["FakeAppBuilderServer", "RunScript", "ToolCallScript"]

JSON = dict[str, Any]
_Route = Callable[[JSON], Awaitable[web.StreamResponse]]
_Emit = Callable[[str, JSON], Awaitable[None]]

# The request being served, so the streaming route can prepare its response without every route taking it.
_REQUEST: contextvars.ContextVar[web.Request] = contextvars.ContextVar("appbuilder_fake_request")

_NAME_RE = re.compile(r"^[\u4e00-\u9fa5 0-9a-zA-Z_-]+$")
_TERMINAL = frozenset({"completed", "cancelled", "failed", "expired"})


@attrs.frozen(kw_only=True)
class ToolCallScript:
    """One function call the fake model asks the client to make."""

    name: str
    arguments: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class RunScript:
    """What the next new run does.

    ``tool_calls`` are requested together in one ``requires_action`` step; ``answer`` replaces the default
    answer (tool outputs are still appended); ``chunks`` is how many ``message`` events carry the answer when
    streaming; ``hang`` makes the run stop after the first chunk until it is cancelled (or ``hang_timeout``
    passes); ``fail`` ends the run as ``failed`` with that message.
    """

    tool_calls: Sequence[ToolCallScript] = ()
    answer: str | None = None
    chunks: int = 3
    hang: bool = False
    hang_timeout: float = 30.0
    fail: str | None = None


class _ApiError(Exception):
    """Raised inside a route to answer with an error body."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 200,
        code: str = "InvalidParameter",
        param: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.payload: JSON = {"code": code, "message": message, "type": type_, "param": param}


@attrs.define
class _Run:
    id: str
    thread_id: str
    assistant_id: str
    script: RunScript
    instructions: str
    model: str
    created_at: int
    status: str = "queued"
    phase: str = "start"
    started_at: int = 0
    completed_at: int = 0
    cancelled_at: int = 0
    failed_at: int = 0
    expired_at: int = 0
    required_action: JSON | None = None
    last_error: JSON | None = None
    final_answer: JSON | None = None
    tool_calls: list[JSON] = attrs.field(factory=list)
    outputs: dict[str, str] = attrs.field(factory=dict)
    steps: list[JSON] = attrs.field(factory=list)
    streaming: bool = False
    wake: asyncio.Event = attrs.field(factory=asyncio.Event)
    cancel_requested: bool = False


def _now_ms() -> int:
    return int(time.time() * 1000)


def _hex() -> str:
    return uuid.uuid4().hex


class FakeAppBuilderServer(FakeServer):
    """The AppBuilder Assistants API on a loopback port. See the module docstring."""

    def __init__(
        self,
        *,
        token: str = "fake-appbuilder-token",
        final_answer_content_as_object: bool = False,
        step_details_key: str = "step_details",
        tool_wait_timeout: float = 30.0,
    ) -> None:
        #: The token the server accepts (with or without the ``Bearer `` prefix on the client side).
        self.token = token
        #: Emit ``final_answer.message.content`` as one object, as the April 2024 service did.
        self.final_answer_content_as_object = final_answer_content_as_object
        #: The key the step details are sent under (``step_details``, or the SDK's ``step_datail``).
        self.step_details_key = step_details_key
        #: How long a streaming run waits for ``submit_tool_outputs`` before it expires.
        self.tool_wait_timeout = tool_wait_timeout
        self.assistants: dict[str, JSON] = {}
        self.assistant_files: dict[str, list[JSON]] = {}
        self.files: dict[str, JSON] = {}
        self.file_contents: dict[str, bytes] = {}
        self.threads: dict[str, JSON] = {}
        self.messages: dict[str, list[JSON]] = {}
        self.runs: dict[str, _Run] = {}
        self.run_order: dict[str, list[str]] = {}
        self._scripts: list[RunScript] = []
        super().__init__()

    # -- scripting ------------------------------------------------------------------------------------------
    def script(self, *scripts: RunScript) -> None:
        """Queue scripts; each new run takes the next one (runs resumed with ``tool_output`` take none)."""
        self._scripts.extend(scripts)

    def run_status(self, run_id: str) -> str:
        """The current status of a run, for assertions."""
        return self.runs[run_id].status

    # -- routes ---------------------------------------------------------------------------------------------
    def setup_routes(self, app: web.Application) -> None:
        routes: dict[str, _Route] = {
            "/v2/assistants": self._assistant_create,
            "/v2/assistants/update": self._assistant_update,
            "/v2/assistants/list": self._assistant_list,
            "/v2/assistants/query": self._assistant_query,
            "/v2/assistants/delete": self._assistant_delete,
            "/v2/assistants/files": self._assistant_mount,
            "/v2/assistants/files/list": self._assistant_mounted_list,
            "/v2/assistants/files/delete": self._assistant_unmount,
            "/v2/storage/files/list": self._file_list,
            "/v2/storage/files/query": self._file_query,
            "/v2/storage/files/delete": self._file_delete,
            "/v2/storage/files/download": self._file_download,
            "/v2/storage/files/content": self._file_content,
            "/v2/threads": self._thread_create,
            "/v2/threads/query": self._thread_query,
            "/v2/threads/update": self._thread_update,
            "/v2/threads/delete": self._thread_delete,
            "/v2/threads/messages": self._message_create,
            "/v2/threads/messages/update": self._message_update,
            "/v2/threads/messages/list": self._message_list,
            "/v2/threads/messages/query": self._message_query,
            "/v2/threads/messages/files/list": self._message_files,
            "/v2/threads/runs": self._run,
            "/v2/threads/runs/submit_tool_outputs": self._submit_tool_outputs,
            "/v2/threads/runs/cancel": self._cancel,
            "/v2/threads/runs/list": self._run_list,
            "/v2/threads/runs/query": self._run_query,
            "/v2/threads/runs/steps/list": self._step_list,
            "/v2/threads/runs/steps/query": self._step_query,
        }
        for path, route in routes.items():
            app.router.add_post(path, self._json_endpoint(route))
        app.router.add_post("/v2/storage/files", self._file_upload)

    def _json_endpoint(self, route: _Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            request_id = request.headers.get("X-Appbuilder-Request-Id") or str(uuid.uuid4())
            _REQUEST.set(request)
            try:
                self._check_auth(request)
                try:
                    body = json.loads(await request.read())
                except ValueError as exc:
                    raise _ApiError("the body is not JSON", status=400) from exc
                if not isinstance(body, dict):
                    raise _ApiError("the body must be a JSON object", status=400)
                resp = await route(body)
            except _ApiError as exc:
                return web.json_response(
                    {"request_id": request_id, "error": exc.payload},
                    status=exc.status,
                    headers={"X-Appbuilder-Request-Id": request_id},
                )
            if not resp.prepared:
                resp.headers["X-Appbuilder-Request-Id"] = request_id
            return resp

        return handler

    def _check_auth(self, request: web.Request) -> None:
        expected = f"Bearer {self.token}"
        seen = [request.headers.get(h) for h in ("Authorization", "X-Appbuilder-Authorization")]
        present = [v for v in seen if v is not None]
        if not present or any(v != expected for v in present):
            raise _ApiError("invalid or missing token", status=401, code="Unauthorized", type_="authentication_error")

    # -- helpers --------------------------------------------------------------------------------------------
    @staticmethod
    def _ok(payload: Any) -> web.Response:
        return web.json_response(payload, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    @staticmethod
    def _str(body: JSON, key: str, *, required: bool = True) -> str:
        value = body.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or (required and not value):
            raise _ApiError(f"{key} must be a non-empty string", status=400, param=key)
        return value

    def _assistant(self, body: JSON) -> JSON:
        aid = self._str(body, "assistant_id")
        if aid not in self.assistants:
            raise _ApiError(f"assistant {aid} not found", code="NotFound", param="assistant_id")
        return self.assistants[aid]

    def _thread(self, body: JSON) -> JSON:
        tid = self._str(body, "thread_id")
        if tid not in self.threads:
            raise _ApiError(f"thread {tid} not found", code="NotFound", param="thread_id")
        return self.threads[tid]

    def _file(self, body: JSON) -> JSON:
        fid = self._str(body, "file_id")
        if fid not in self.files:
            raise _ApiError(f"file {fid} not found", code="NotFound", param="file_id")
        return self.files[fid]

    def _message(self, body: JSON) -> JSON:
        thread = self._thread(body)
        mid = self._str(body, "message_id")
        for msg in self.messages[thread["id"]]:
            if msg["id"] == mid:
                return msg
        raise _ApiError(f"message {mid} not found", code="NotFound", param="message_id")

    def _run_of(self, body: JSON) -> _Run:
        thread = self._thread(body)
        rid = self._str(body, "run_id")
        run = self.runs.get(rid)
        if run is None or run.thread_id != thread["id"]:
            raise _ApiError(f"run {rid} not found", code="NotFound", param="run_id")
        return run

    def _file_ids(self, body: JSON) -> list[str]:
        ids = body.get("file_ids") or []
        if not isinstance(ids, list) or len(ids) > 10:
            raise _ApiError("file_ids must be a list of at most 10 ids", status=400, param="file_ids")
        for fid in ids:
            if fid not in self.files:
                raise _ApiError(f"file {fid} not found", code="NotFound", param="file_ids")
        return list(ids)

    @staticmethod
    def _page(items: Sequence[JSON], body: JSON) -> JSON:
        """Apply a ListReq (limit, order, after, before) to items kept in creation order."""
        limit = body.get("limit", 20)
        order = body.get("order", "desc")
        # No upper bound: the SDK's unmount_files lists with limit=2**31-1 to find a mounted file.
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise _ApiError("limit must be a positive integer", status=400, param="limit")
        if order not in ("asc", "desc"):
            raise _ApiError("order must be asc or desc", status=400, param="order")
        ordered = list(items) if order == "asc" else list(reversed(items))
        ids = [item["id"] for item in ordered]
        after, before = body.get("after") or "", body.get("before") or ""
        start, end = 0, len(ordered)
        if after:
            if after not in ids:
                raise _ApiError(f"cursor {after} not found", status=400, param="after")
            start = ids.index(after) + 1
        if before:
            if before not in ids:
                raise _ApiError(f"cursor {before} not found", status=400, param="before")
            end = ids.index(before)
        window = ordered[start:end]
        # With only `before`, the page is the one right before the cursor.
        page = window[-limit:] if before and not after else window[:limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else "",
            "last_id": page[-1]["id"] if page else "",
            "has_more": len(window) > len(page),
        }

    # -- assistants -----------------------------------------------------------------------------------------
    def _assistant_fields(self, body: JSON) -> JSON:
        name = self._str(body, "name")
        if len(name) > 128 or not _NAME_RE.match(name):
            raise _ApiError(
                "name must be 1..128 chars of CJK, letters, digits, space, _ and -", status=400, param="name"
            )
        description = body.get("description") or ""
        if len(description) > 512:
            raise _ApiError("description is longer than 512", status=400, param="description")
        for key in ("instructions", "thought_instructions", "chat_instructions"):
            if len(body.get(key) or "") > 4096:
                raise _ApiError(f"{key} is longer than 4096", status=400, param=key)
        tools = body.get("tools") or []
        if len(tools) > 10:
            raise _ApiError("at most 10 tools", status=400, param="tools")
        metadata = body.get("metadata") or {}
        self._check_metadata(metadata)
        response_format = body.get("response_format") or "text"
        if response_format not in ("text", "json_object"):
            raise _ApiError("response_format must be text or json_object", status=400, param="response_format")
        return {
            "name": name,
            "description": description,
            "instructions": body.get("instructions") or "",
            "thought_instructions": body.get("thought_instructions") or "",
            "chat_instructions": body.get("chat_instructions") or "",
            "response_format": response_format,
            "tools": tools,
            "file_ids": self._file_ids(body),
            "metadata": metadata,
            "model": body.get("model") or "ERNIE-4.0T-8K",
        }

    @staticmethod
    def _check_metadata(metadata: Any) -> None:
        if not isinstance(metadata, dict) or len(metadata) > 16:
            raise _ApiError("metadata holds at most 16 keys", status=400, param="metadata")
        for key, value in metadata.items():
            if len(key) > 64 or not isinstance(value, str) or len(value) > 512:
                raise _ApiError("metadata keys are ≤64 chars, values strings ≤512 chars", status=400, param="metadata")

    @staticmethod
    def _assistant_view(asst: JSON) -> JSON:
        view = {k: v for k, v in asst.items() if k != "model"}
        view["object"] = "assistant"
        return view

    async def _assistant_create(self, body: JSON) -> web.StreamResponse:
        asst = {"id": f"asst_{_hex()}", "created_at": _now_ms(), **self._assistant_fields(body)}
        self.assistants[asst["id"]] = asst
        self.assistant_files[asst["id"]] = []
        return self._ok(self._assistant_view(asst))

    async def _assistant_update(self, body: JSON) -> web.StreamResponse:
        asst = self._assistant(body)
        asst.update(self._assistant_fields(body))
        # The update answer carries `model` and no `object`, unlike the other assistant answers.
        return self._ok(dict(asst))

    async def _assistant_list(self, body: JSON) -> web.StreamResponse:
        return self._ok(self._page([self._assistant_view(a) for a in self.assistants.values()], body))

    async def _assistant_query(self, body: JSON) -> web.StreamResponse:
        return self._ok(self._assistant_view(self._assistant(body)))

    async def _assistant_delete(self, body: JSON) -> web.StreamResponse:
        asst = self._assistant(body)
        del self.assistants[asst["id"]]
        self.assistant_files.pop(asst["id"], None)
        return self._ok({"id": asst["id"], "object": "assistant.deleted", "deleted": True})

    async def _assistant_mount(self, body: JSON) -> web.StreamResponse:
        asst = self._assistant(body)
        file = self._file(body)
        mounted = self.assistant_files[asst["id"]]
        if any(m["id"] == file["id"] for m in mounted):
            raise _ApiError("file already mounted", status=400, code="Conflict", param="file_id")
        item = {
            "id": file["id"],
            "object": "assistant.file",
            "created_at": _now_ms(),
            "assistant_id": asst["id"],
        }
        mounted.append(item)
        return self._ok(item)

    async def _assistant_mounted_list(self, body: JSON) -> web.StreamResponse:
        asst = self._assistant(body)
        return self._ok(self._page(self.assistant_files[asst["id"]], body))

    async def _assistant_unmount(self, body: JSON) -> web.StreamResponse:
        asst = self._assistant(body)
        fid = self._str(body, "file_id")
        mounted = self.assistant_files[asst["id"]]
        kept = [m for m in mounted if m["id"] != fid]
        if len(kept) == len(mounted):
            raise _ApiError(f"file {fid} is not mounted", code="NotFound", param="file_id")
        self.assistant_files[asst["id"]] = kept
        return self._ok({"id": fid, "object": "assistant.file.deleted", "deleted": True})

    # -- files ----------------------------------------------------------------------------------------------
    async def _file_upload(self, request: web.Request) -> web.StreamResponse:
        request_id = request.headers.get("X-Appbuilder-Request-Id") or str(uuid.uuid4())
        headers = {"X-Appbuilder-Request-Id": request_id}
        try:
            self._check_auth(request)
            if request.query.get("purpose") != "assistant":
                raise _ApiError("purpose must be assistant", status=400, param="purpose")
            if not request.content_type.startswith("multipart/form-data"):
                raise _ApiError("the upload must be multipart/form-data", status=400, param="file")
            # The request log already read the body, so parse the multipart from the cached bytes.
            raw = await request.read()
            ctype = request.headers["Content-Type"]
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {ctype}\r\n\r\n".encode() + raw
            )
            part = next(
                (p for p in msg.iter_parts() if p.get_param("name", header="content-disposition") == "file"),
                None,
            )
            if part is None:
                raise _ApiError("the form has no `file` field", status=400, param="file")
            filename = part.get_filename() or "upload"
            content = part.get_payload(decode=True)
            assert isinstance(content, bytes)
        except _ApiError as exc:
            return web.json_response(
                {"request_id": request_id, "error": exc.payload}, status=exc.status, headers=headers
            )
        file: JSON = {
            "id": f"file-{_hex()}",
            "bytes": len(content),
            "object": "file",
            "purpose": "assistant",
            "create_at": _now_ms(),
            "filename": filename,
            "classification_id": "",
        }
        self.files[file["id"]] = file
        self.file_contents[file["id"]] = content
        return web.json_response(file, headers=headers)

    @staticmethod
    def _file_view(file: JSON) -> JSON:
        ext = file["filename"].rsplit(".", 1)[-1].lower() if "." in file["filename"] else ""
        return {**file, "censored": 1, "file_type": ext}

    async def _file_list(self, body: JSON) -> web.StreamResponse:
        return self._ok({"object": "list", "data": [self._file_view(f) for f in self.files.values()]})

    async def _file_query(self, body: JSON) -> web.StreamResponse:
        return self._ok(self._file_view(self._file(body)))

    async def _file_delete(self, body: JSON) -> web.StreamResponse:
        file = self._file(body)
        del self.files[file["id"]]
        del self.file_contents[file["id"]]
        for mounted in self.assistant_files.values():
            mounted[:] = [m for m in mounted if m["id"] != file["id"]]
        return self._ok({"id": file["id"], "object": "file.deleted", "deleted": True})

    async def _file_download(self, body: JSON) -> web.StreamResponse:
        file = self._file(body)
        return web.Response(
            body=self.file_contents[file["id"]],
            content_type="application/octet-stream",
            headers={"Content-Disposition": f"attachment; filename={file['filename']}"},
        )

    async def _file_content(self, body: JSON) -> web.StreamResponse:
        file = self._file(body)
        ctype = mimetypes.guess_type(file["filename"])[0] or "application/octet-stream"
        return web.Response(body=self.file_contents[file["id"]], content_type=ctype)

    # -- threads and messages -------------------------------------------------------------------------------
    def _new_message(self, thread_id: str, raw: Any, *, role: str = "user") -> JSON:
        if not isinstance(raw, dict):
            raise _ApiError("a message must be an object", status=400, param="messages")
        role = raw.get("role", role)
        if role not in ("user", "assistant"):
            raise _ApiError("role must be user or assistant", status=400, param="role")
        content = raw.get("content")
        if not isinstance(content, str) or not content:
            raise _ApiError("content must be a non-empty string", status=400, param="content")
        msg = {
            "id": f"msg_{_hex()}",
            "object": "thread.message",
            "role": role,
            "content": [{"type": "text", "text": {"value": content, "annotations": None}}],
            "created_at": _now_ms(),
            "thread_id": thread_id,
            "assistant_id": raw.get("assistant_id", ""),
            "run_id": raw.get("run_id", ""),
            "file_ids": self._file_ids(raw),
        }
        return msg

    def _new_thread(self, messages: Any) -> JSON:
        if not isinstance(messages, list):
            raise _ApiError("messages must be a list", status=400, param="messages")
        thread: JSON = {"id": f"thread_{_hex()}", "object": "thread", "created_at": _now_ms(), "metadata": {}}
        built = [self._new_message(thread["id"], m) for m in messages]
        self.threads[thread["id"]] = thread
        self.messages[thread["id"]] = built
        self.run_order[thread["id"]] = []
        return thread

    async def _thread_create(self, body: JSON) -> web.StreamResponse:
        return self._ok(self._new_thread(body.get("messages") or []))

    async def _thread_query(self, body: JSON) -> web.StreamResponse:
        return self._ok(self._thread(body))

    async def _thread_update(self, body: JSON) -> web.StreamResponse:
        thread = self._thread(body)
        metadata = body.get("metadata") or {}
        self._check_metadata(metadata)
        thread["metadata"] = metadata
        return self._ok(thread)

    async def _thread_delete(self, body: JSON) -> web.StreamResponse:
        thread = self._thread(body)
        del self.threads[thread["id"]]
        self.messages.pop(thread["id"], None)
        for rid in self.run_order.pop(thread["id"], []):
            self.runs.pop(rid, None)
        return self._ok({"id": thread["id"], "object": "thread.deleted", "deleted": True})

    async def _message_create(self, body: JSON) -> web.StreamResponse:
        thread = self._thread(body)
        if body.get("role", "user") != "user":
            raise _ApiError("only user messages can be created", status=400, param="role")
        msg = self._new_message(thread["id"], body)
        self.messages[thread["id"]].append(msg)
        return self._ok(msg)

    async def _message_update(self, body: JSON) -> web.StreamResponse:
        msg = self._message(body)
        if body.get("content") is not None:
            content = body["content"]
            if not isinstance(content, str) or not content:
                raise _ApiError("content must be a non-empty string", status=400, param="content")
            msg["content"] = [{"type": "text", "text": {"value": content, "annotations": None}}]
        if body.get("file_ids") is not None:
            msg["file_ids"] = self._file_ids(body)
        return self._ok(msg)

    async def _message_list(self, body: JSON) -> web.StreamResponse:
        thread = self._thread(body)
        return self._ok(self._page(self.messages[thread["id"]], body))

    async def _message_query(self, body: JSON) -> web.StreamResponse:
        return self._ok(self._message(body))

    async def _message_files(self, body: JSON) -> web.StreamResponse:
        msg = self._message(body)
        items = [
            {
                "id": fid,
                "object": "thread.message.file",
                "created_at": msg["created_at"],
                "message_id": msg["id"],
            }
            for fid in msg["file_ids"]
        ]
        return self._ok(self._page(items, body))

    # -- runs -----------------------------------------------------------------------------------------------
    def _run_view(self, run: _Run, *, obj: str = "run.result") -> JSON:
        final = run.final_answer
        if final is not None and self.final_answer_content_as_object:
            final = {**final, "message": {**final["message"], "content": final["message"]["content"][0]}}
        return {
            "id": run.id,
            "object": obj,
            "assistant_id": run.assistant_id,
            "thread_id": run.thread_id,
            "model": run.model if obj == "thread.run" else "",
            "instructions": run.instructions if obj == "thread.run" else "",
            "thought_instructions": "",
            "chat_instructions": "",
            "tools": None,
            "file_ids": None,
            "status": run.status,
            "required_action": run.required_action,
            "last_error": run.last_error,
            # The recorded list/query answers carry no final answer.
            "final_answer": final if obj == "run.result" else None,
            "created_at": run.created_at,
            "started_at": run.started_at,
            "expired_at": run.expired_at,
            "cancelled_at": run.cancelled_at,
            "failed_at": run.failed_at,
            "completed_at": run.completed_at,
        }

    def _step_view(self, run: _Run, step: JSON) -> JSON:
        view = {k: v for k, v in step.items() if k != "details"}
        view[self.step_details_key] = step["details"]
        view["assistant_id"] = run.assistant_id
        view["thread_id"] = run.thread_id
        view["run_id"] = run.id
        return view

    def _new_step(self, run: _Run, type_: str, details: JSON) -> JSON:
        step = {
            "id": f"step-{len(run.steps) + 1}",
            "object": "thread.run.step",
            "status": "in_progress",
            "type": type_,
            "created_at": _now_ms(),
            "started_at": _now_ms(),
            "expired_at": 0,
            "cancelled_at": 0,
            "failed_at": 0,
            "completed_at": 0,
            # The recorded steps carry an empty string here, not null.
            "last_error": "",
            "details": details,
        }
        run.steps.append(step)
        return step

    async def _run(self, body: JSON) -> web.StreamResponse:
        allowed = {
            "thread_id",
            "assistant_id",
            "model",
            "metadata",
            "response_format",
            "instructions",
            "thought_instructions",
            "chat_instructions",
            "stream",
            "model_parameters",
            "thread",
            "tools",
            "tool_output",
            "user_info",
            "user_loc",
        }
        extra = set(body) - allowed
        if extra:
            raise _ApiError(f"unknown fields: {sorted(extra)}", status=400, param=sorted(extra)[0])
        stream = bool(body.get("stream"))
        tool_output = body.get("tool_output")
        run = self._resume(body, tool_output) if tool_output else self._start(body)
        if not stream:
            await self._advance(run, None)
            return self._ok(self._run_view(run))
        return await self._stream(run)

    def _start(self, body: JSON) -> _Run:
        asst = self._assistant(body)
        thread_id = body.get("thread_id") or ""
        extra = body.get("thread")
        if thread_id:
            thread = self._thread(body)
        elif extra is not None:
            thread = self._new_thread([])
        else:
            raise _ApiError("thread_id or thread is required", status=400, param="thread_id")
        if extra is not None:
            if not isinstance(extra, dict):
                raise _ApiError("thread must be an object", status=400, param="thread")
            for raw in extra.get("messages") or []:
                self.messages[thread["id"]].append(self._new_message(thread["id"], raw))
        history = self.messages[thread["id"]]
        if not history or history[-1]["role"] != "user":
            raise _ApiError("the last message must come from the user", status=400, param="thread")
        self._check_model_parameters(body.get("model_parameters"))
        script = self._scripts.pop(0) if self._scripts else RunScript()
        run = _Run(
            id=f"run_{_hex()}",
            thread_id=thread["id"],
            assistant_id=asst["id"],
            script=script,
            instructions=body.get("instructions") or asst["instructions"],
            model=body.get("model") or asst["model"],
            created_at=_now_ms(),
        )
        self.runs[run.id] = run
        self.run_order[thread["id"]].append(run.id)
        return run

    @staticmethod
    def _check_model_parameters(params: Any) -> None:
        if params is None:
            return
        for part in ("chat_parameters", "thought_parameters"):
            values = (params or {}).get(part) or {}
            for key, low, high in (
                ("temperature", 0.0, 1.0),
                ("top_p", 0.0, 1.0),
                ("penalty_score", 1.0, 2.0),
            ):
                value = values.get(key)
                if value is not None and not low <= value <= high:
                    raise _ApiError(f"{part}.{key} out of range", status=400, param=f"{part}.{key}")

    def _resume(self, body: JSON, tool_output: Any) -> _Run:
        self._assistant(body)
        if not isinstance(tool_output, dict):
            raise _ApiError("tool_output must be an object", status=400, param="tool_output")
        run = self._run_of({"thread_id": body.get("thread_id"), "run_id": tool_output.get("run_id")})
        self._record_outputs(run, [tool_output])
        return run

    def _record_outputs(self, run: _Run, outputs: Sequence[Any]) -> None:
        if run.status != "requires_action":
            raise _ApiError(f"run {run.id} does not require action (status {run.status})", status=400, param="run_id")
        known = {call["id"] for call in run.tool_calls}
        for out in outputs:
            if not isinstance(out, dict):
                raise _ApiError("a tool output must be an object", status=400, param="tool_outputs")
            call_id = out.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in known:
                raise _ApiError(f"unknown tool_call_id {call_id}", status=400, param="tool_call_id")
            output = out.get("output")
            if not isinstance(output, str):
                raise _ApiError("output must be a string", status=400, param="output")
            run.outputs[call_id] = output
        pending = [c for c in run.tool_calls if c["id"] not in run.outputs]
        if pending:
            assert run.required_action is not None
            run.required_action = {
                "type": "submit_tool_outputs",
                "submit_tool_outputs": {"tool_calls": pending},
            }
        else:
            run.required_action = None
            run.status = "in_progress"
        run.wake.set()

    async def _submit_tool_outputs(self, body: JSON) -> web.StreamResponse:
        run = self._run_of(body)
        outputs = body.get("tool_outputs")
        if not isinstance(outputs, list) or not outputs:
            raise _ApiError("tool_outputs must hold at least one output", status=400, param="tool_outputs")
        self._record_outputs(run, outputs)
        return self._ok(self._run_view(run))

    async def _cancel(self, body: JSON) -> web.StreamResponse:
        run = self._run_of(body)
        if run.status in _TERMINAL:
            raise _ApiError(f"run {run.id} already ended ({run.status})", status=400, param="run_id")
        run.cancel_requested = True
        if run.streaming:
            # The open stream finishes the cancellation and reports it with run_cancelling / run_end.
            run.status = "cancelling"
            run.wake.set()
        else:
            run.status = "cancelled"
            run.cancelled_at = _now_ms()
            run.required_action = None
        return self._ok(self._run_view(run))

    async def _run_list(self, body: JSON) -> web.StreamResponse:
        thread = self._thread(body)
        views = [self._run_view(self.runs[rid], obj="thread.run") for rid in self.run_order[thread["id"]]]
        return self._ok(self._page(views, body))

    async def _run_query(self, body: JSON) -> web.StreamResponse:
        return self._ok(self._run_view(self._run_of(body), obj="thread.run"))

    async def _step_list(self, body: JSON) -> web.StreamResponse:
        run = self._run_of(body)
        return self._ok(self._page([self._step_view(run, s) for s in run.steps], body))

    async def _step_query(self, body: JSON) -> web.StreamResponse:
        run = self._run_of(body)
        sid = self._str(body, "step_id")
        for step in run.steps:
            if step["id"] == sid:
                return self._ok(self._step_view(run, step))
        raise _ApiError(f"step {sid} not found", code="NotFound", param="step_id")

    # -- the run engine -------------------------------------------------------------------------------------
    async def _stream(self, run: _Run) -> web.StreamResponse:
        request = _REQUEST.get()
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                # Headers cannot change once the stream is prepared, so the request id goes on now.
                "X-Appbuilder-Request-Id": request.headers.get("X-Appbuilder-Request-Id") or str(uuid.uuid4()),
            }
        )
        send_id = 0

        async def emit(event: str, payload: JSON) -> None:
            nonlocal send_id
            if event != "ping":
                send_id += 1
                payload = {"event": event, "send_id": send_id, **payload}
            data = json.dumps(payload, ensure_ascii=False)
            await resp.write(f"event: {event}\ndata: {data}\n\n".encode())

        await resp.prepare(request)
        run.streaming = True
        try:
            await emit("ping", {})
            await self._advance(run, emit)
            await resp.write_eof()
        except ConnectionError:
            # The client left; the run stays as it was (as a real service would leave it running).
            pass
        finally:
            run.streaming = False
        return resp

    @staticmethod
    async def _wait(run: _Run, emit: _Emit, timeout: float) -> bool:
        """Wait for a submit or a cancel, sending keepalive pings so a departed client ends the wait."""
        run.wake.clear()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                await asyncio.wait_for(run.wake.wait(), min(0.25, max(0.0, deadline - loop.time())))
                return True
            except asyncio.TimeoutError:
                await emit("ping", {})
        return False

    async def _status(self, emit: _Emit | None, run: _Run, event_type: str, message: str = "", **details: Any) -> None:
        if emit is None:
            return
        payload = {
            "status": run.status,
            "message": message,
            "event_type": event_type,
            "details": {
                "type": event_type,
                "message_creation": details.get("message_creation"),
                "run_object": details.get("run_object"),
                "run_step_object": details.get("run_step_object"),
                "tool_calls": details.get("tool_calls"),
                "error_info": details.get("error_info"),
            },
        }
        await emit("status", payload)

    def _answer_text(self, run: _Run) -> str:
        history = self.messages.get(run.thread_id, [])
        last_user = next((m for m in reversed(history) if m["role"] == "user"), None)
        said = last_user["content"][0]["text"]["value"] if last_user else ""
        text = run.script.answer if run.script.answer is not None else f"{run.instructions} | 你说: {said}"
        for call in run.tool_calls:
            text += f" | {call['function']['name']} 返回: {run.outputs.get(call['id'], '')}"
        return text

    async def _advance(self, run: _Run, emit: _Emit | None) -> None:
        """Move a run as far as it can go; non-streaming (no ``emit``) it stops at ``requires_action``."""
        if run.phase == "start":
            await self._status(emit, run, "run_begin", run_object=self._run_view(run))
            run.status = "in_progress"
            run.started_at = _now_ms()
            if run.script.tool_calls:
                run.tool_calls = [
                    {
                        "id": f"call-{run.thread_id}-{run.id}-step-{n}",
                        "type": "function",
                        "function": {
                            "name": c.name,
                            "arguments": json.dumps(dict(c.arguments), ensure_ascii=False),
                            "output": "",
                        },
                    }
                    for n, c in enumerate(run.script.tool_calls, start=1)
                ]
                step = self._new_step(
                    run,
                    "tool_calls",
                    {
                        "type": "tool_calls",
                        "tool_calls": run.tool_calls,
                        "action_info": {
                            "toolName": run.tool_calls[0]["function"]["name"],
                            "actionName": "function_call",
                            "actionContent": run.tool_calls[0]["function"]["arguments"],
                        },
                        "tool_info": [],
                        "message_creation": None,
                    },
                )
                await self._status(emit, run, "tool_step_begin", run_step_object=self._step_view(run, step))
                run.status = "requires_action"
                run.required_action = {
                    "type": "submit_tool_outputs",
                    "submit_tool_outputs": {"tool_calls": list(run.tool_calls)},
                }
                run.phase = "tools"
                await self._status(emit, run, "tool_calls", tool_calls=run.tool_calls)
            else:
                run.phase = "answer"
        if run.phase == "tools":
            while run.status == "requires_action" and not run.cancel_requested:
                if emit is None:
                    return
                if not await self._wait(run, emit, self.tool_wait_timeout):
                    await self._end(run, emit, "expired")
                    return
            if run.cancel_requested:
                await self._cancelled(run, emit)
                return
            step = run.steps[-1]
            step["status"] = "completed"
            step["completed_at"] = _now_ms()
            step["details"]["tool_info"] = [
                {
                    "type": "function",
                    "name": c["function"]["name"],
                    "arguments": c["function"]["arguments"],
                    "output": run.outputs[c["id"]],
                }
                for c in run.tool_calls
            ]
            await self._status(emit, run, "tool_submitted_output")
            await self._status(emit, run, "tool_step_end", run_step_object=self._step_view(run, step))
            run.phase = "answer"
        if run.phase == "answer":
            await self._answer(run, emit)

    async def _answer(self, run: _Run, emit: _Emit | None) -> None:
        if run.script.fail is not None:
            run.last_error = {"type": "server_error", "message": run.script.fail}
            await self._end(run, emit, "failed", error_info=run.last_error)
            return
        text = self._answer_text(run)
        msg = self._new_message(
            run.thread_id,
            {"role": "assistant", "content": text, "assistant_id": run.assistant_id, "run_id": run.id},
        )
        step = self._new_step(
            run,
            "message_creation",
            {"type": "message_creation", "message_creation": {"message_id": msg["id"]}},
        )
        await self._status(emit, run, "message_creation", message_creation={"message_id": msg["id"]})
        n = max(1, min(run.script.chunks, len(text)))
        size = -(-len(text) // n)
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        for index, piece in enumerate(pieces):
            if emit is not None:
                await emit(
                    "message",
                    {
                        "status": run.status,
                        "is_end": int(index == len(pieces) - 1),
                        "message_id": msg["id"],
                        "message_index": str(index),
                        "content": [{"type": "text", "text": {"value": piece, "annotations": None}}],
                    },
                )
                if index == 0:
                    # A keepalive in the middle of the answer, which clients must skip.
                    await emit("ping", {})
                hang = index == 0 and run.script.hang and not run.cancel_requested
                if hang and not await self._wait(run, emit, run.script.hang_timeout):
                    await self._end(run, emit, "expired")
                    return
            if run.cancel_requested:
                step["status"] = "cancelled"
                step["cancelled_at"] = _now_ms()
                await self._cancelled(run, emit)
                return
        self.messages[run.thread_id].append(msg)
        step["status"] = "completed"
        step["completed_at"] = _now_ms()
        run.final_answer = {
            "type": "message",
            "message": {"message_id": f"chatmsg_{_hex()}", "content": msg["content"]},
        }
        await self._end(run, emit, "completed")

    async def _cancelled(self, run: _Run, emit: _Emit | None) -> None:
        run.status = "cancelling"
        await self._status(emit, run, "run_cancelling")
        await self._end(run, emit, "cancelled")

    async def _end(self, run: _Run, emit: _Emit | None, status: str, error_info: JSON | None = None) -> None:
        run.status = status
        run.required_action = None
        run.phase = "done"
        stamp = _now_ms()
        if status == "completed":
            run.completed_at = stamp
        elif status == "cancelled":
            run.cancelled_at = stamp
        elif status == "failed":
            run.failed_at = stamp
        elif status == "expired":
            run.expired_at = stamp
        await self._status(emit, run, "run_end", run_object=self._run_view(run), error_info=error_info)
