"""A deterministic OpenAI-compatible chat-completions server for tests, examples and benchmarks.

It answers ``POST /v1/chat/completions`` (plain JSON or SSE) and ``GET /v1/models`` over a real loopback
socket, and behaves in one of two modes:

``mode="openai"``
    What api.openai.com does: ``{"error": {...}}`` bodies, ``x-request-id`` and ``x-ratelimit-*`` headers
    (reset times as Go duration strings such as ``6m0s`` or ``12ms``), a separate usage chunk with
    ``choices: []`` when ``stream_options.include_usage`` is set, and ``data: [DONE]`` at the end of a stream.
``mode="compat"``
    What a FastAPI-based OpenAI-compatible server (``transformers serve``) does: ``{"detail": ...}`` errors
    (422 with a list for unknown fields or bad JSON), a plain-text 500 for a body without ``messages``, no
    rate-limit headers, one choice whatever ``n`` says, usage always on the finish chunk, and **no**
    ``[DONE]``: the body just ends.

Answers come from rules, checked in the order they were added; the first rule whose matcher accepts the
request wins, and with no match the server echoes the last message's content::

    srv = FakeOpenAIServer(requests_per_minute=6_000)
    srv.add_rule("ping", "pong")                          # exact last-message content
    srv.add_rule(re.compile(r"^text: "), '{"ok": true}')  # regex searched in the last message
    srv.add_rule(lambda body: body.get("n") == 2, ["a", "b"])  # one answer per choice

Faults: besides the base class's :meth:`~FakeServer.inject` (status codes, resets, delays), this server can
answer an OpenAI-shaped (or FastAPI-shaped, per mode) error with ``retry-after`` / ``retry-after-ms`` /
``x-should-retry`` headers (:meth:`~FakeOpenAIServer.inject_error`), a non-transient ``insufficient_quota``
429 (:meth:`~FakeOpenAIServer.inject_insufficient_quota`), a stream cut after a number of chunks
(:meth:`~FakeOpenAIServer.inject_stream_cut`) and an ``{"error": ...}`` event in the middle of a stream
(:meth:`~FakeOpenAIServer.inject_stream_error`).

A server-side limiter (``requests_per_minute`` / ``tokens_per_minute``) works like OpenAI's: a bucket that
refills continuously and holds ``burst_seconds`` worth of quota; a request that finds it empty is answered
429 and counted in :attr:`FakeOpenAIServer.rate_limited`. A request costs its prompt tokens plus
``max_tokens`` from the token bucket.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import attrs
from aiohttp import web

from aioagents.testing._server import FakeServer, Fault

__all__ = ["FakeOpenAIServer", "Reply", "ToolCallReply"]

Mode = Literal["openai", "compat"]

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
# Streamed content is cut into word-sized pieces (a word and its trailing spaces), so deltas look like tokens.
_PIECE_RE = re.compile(r"\S+\s*|\s+")
_CHAT_PATH = "/v1/chat/completions"

# Top-level fields of the Chat Completions request (contract B.1); anything else is refused, as OpenAI does.
_KNOWN_FIELDS = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "top_p",
        "n",
        "stream",
        "stream_options",
        "stop",
        "max_tokens",
        "max_completion_tokens",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "user",
        "seed",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "logprobs",
        "top_logprobs",
        "service_tier",
        "store",
        "metadata",
        "reasoning_effort",
        "safety_identifier",
        "prompt_cache_key",
        "functions",
        "function_call",
        "modalities",
        "prediction",
        "audio",
        "verbosity",
        "web_search_options",
    }
)
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@attrs.frozen(kw_only=True)
class ToolCallReply:
    """A tool call the fake model makes: ``arguments`` is the JSON text, streamed in fragments."""

    name: str
    arguments: str = "{}"
    id: str | None = None


@attrs.frozen(kw_only=True)
class Reply:
    """One choice of a canned answer.

    ``finish_reason`` defaults to ``"tool_calls"`` when there are tool calls and ``"stop"`` otherwise
    (``"length"`` when the request's ``max_tokens`` cut the content).
    """

    content: str | None = None
    tool_calls: Sequence[ToolCallReply] = ()
    refusal: str | None = None
    finish_reason: str | None = None


AnswerItem = str | Reply
Answer = AnswerItem | Sequence[AnswerItem] | Callable[[dict[str, Any]], Any]
Matcher = str | re.Pattern[str] | Callable[[dict[str, Any]], bool]


@attrs.define
class _Rule:
    match: Matcher
    answer: Answer

    def matches(self, body: dict[str, Any]) -> bool:
        if isinstance(self.match, str):
            return _last_content(body) == self.match
        if isinstance(self.match, re.Pattern):
            return self.match.search(_last_content(body)) is not None
        return bool(self.match(body))


@attrs.define
class _StreamFault:
    kind: Literal["cut", "cut_clean", "error"]
    after_chunks: int
    message: str
    times: int


@attrs.define
class _Bucket:
    """A continuously refilling bucket: ``rate`` per second, holding at most ``capacity``."""

    capacity: float
    rate: float
    level: float
    last: float

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.last) * self.rate)
        self.last = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0 when it is now)."""
        if self.level >= amount:
            return 0.0
        return (amount - self.level) / self.rate

    def reset_after(self) -> float:
        """Seconds until the bucket is full again."""
        return (self.capacity - self.level) / self.rate


def _last_content(body: Mapping[str, Any]) -> str:
    messages = body.get("messages") or []
    if not messages:
        return ""
    content = messages[-1].get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _echo(body: dict[str, Any]) -> str:
    return _last_content(body)


def count_tokens(text: str) -> int:
    """The fake's tokenizer: one token per word and per punctuation character."""
    return len(_TOKEN_RE.findall(text))


def go_duration(seconds: float) -> str:
    """Format ``seconds`` as Go's ``time.Duration.String`` does, rounded to the millisecond, as OpenAI
    sends ``x-ratelimit-reset-*``: ``0s``, ``12ms``, ``8.64s``, ``6m0s``, ``1h2m3.5s``."""
    ms = max(0, round(seconds * 1000))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    out = f"{hours}h" if hours else ""
    if hours or minutes:
        out += f"{minutes}m"
    return f"{out}{secs}s"


def _prompt_tokens(body: Mapping[str, Any]) -> int:
    total = 3
    for message in body.get("messages") or []:
        total += 3
        content = message.get("content")
        if isinstance(content, str):
            total += count_tokens(content)
        elif isinstance(content, list):
            total += sum(count_tokens(str(p.get("text", ""))) for p in content if isinstance(p, dict))
        if message.get("name"):
            total += 1
    return total


class FakeOpenAIServer(FakeServer):
    """A scripted OpenAI-compatible chat-completions server. See the module docstring for the behaviour.

    Args:
        mode: ``"openai"`` (api.openai.com behaviour) or ``"compat"`` (a FastAPI-based compatible server).
        api_key: when set, requests must carry ``Authorization: Bearer <api_key>`` or get a 401.
        models: the model names the server knows (``None`` accepts any name).
        default: the answer when no rule matches (default: echo the last message's content).
        requests_per_minute / tokens_per_minute: server-side limits; ``None`` means unlimited.
        burst_seconds: how many seconds of quota the limiter's bucket holds (OpenAI quantizes its
            per-minute limits to short windows, so a client may not burst a whole minute's quota at once).
        latency: seconds each completion takes before the first byte.
        chunk_delay: seconds between streamed chunks.
        keepalive_comments: start every stream with an SSE comment line, as some proxies do.
    """

    def __init__(
        self,
        *,
        mode: Mode = "openai",
        api_key: str | None = None,
        models: Sequence[str] | None = None,
        default: Answer = _echo,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        burst_seconds: float = 1.0,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        keepalive_comments: bool = False,
    ) -> None:
        self.mode: Mode = mode
        self.api_key = api_key
        self.models = None if models is None else tuple(models)
        self.default = default
        self.latency = latency
        self.chunk_delay = chunk_delay
        self.keepalive_comments = keepalive_comments
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        #: How many requests the server-side limiter answered with 429 (injected faults are not counted).
        self.rate_limited = 0
        #: ``time.monotonic()`` of every completion accepted (after auth, validation and the limiter).
        self.accepted_at: list[float] = []
        self._rules: list[_Rule] = []
        self._stream_faults: list[_StreamFault] = []
        self._state_lock = threading.Lock()
        self._ids = itertools.count(1)
        now = time.monotonic()
        self._req_bucket = (
            None
            if requests_per_minute is None
            else _Bucket(
                capacity=max(1.0, requests_per_minute / 60 * burst_seconds),
                rate=requests_per_minute / 60,
                level=max(1.0, requests_per_minute / 60 * burst_seconds),
                last=now,
            )
        )
        self._tok_bucket = (
            None
            if tokens_per_minute is None
            else _Bucket(
                capacity=max(1.0, tokens_per_minute / 60 * burst_seconds),
                rate=tokens_per_minute / 60,
                level=max(1.0, tokens_per_minute / 60 * burst_seconds),
                last=now,
            )
        )
        super().__init__()

    # -- configuration --------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The URL an OpenAI client takes as its base, ``http://127.0.0.1:<port>/v1``."""
        return f"{self.url}/v1"

    def add_rule(self, match: Matcher, answer: Answer) -> None:
        """Answer requests that ``match`` with ``answer``.

        ``match`` is the exact content of the last message (``str``), a regex searched in it, or a predicate
        over the request body. ``answer`` is a string, a :class:`Reply`, a sequence of them (choice ``i``
        gets item ``i % len``), or a callable taking the request body and returning any of those.
        """
        self._rules.append(_Rule(match, answer))

    count_tokens = staticmethod(count_tokens)

    async def __aenter__(self) -> FakeOpenAIServer:
        await self.start()
        return self

    # -- faults ---------------------------------------------------------------------------------------------
    def error_fault(
        self,
        status: int,
        message: str = "injected error",
        *,
        type: str | None = None,
        code: str | None = None,
        retry_after: str | None = None,
        retry_after_ms: str | None = None,
        should_retry: bool | None = None,
        close: bool = False,
    ) -> Fault:
        """An error answer shaped for this server's mode (``{"error": {...}}`` or ``{"detail": ...}``)."""
        headers: dict[str, str] = {}
        if retry_after_ms is not None:
            headers["retry-after-ms"] = retry_after_ms
        if should_retry is not None:
            headers["x-should-retry"] = "true" if should_retry else "false"
        if self.mode == "openai":
            headers["x-request-id"] = self._request_id()
            body: Any = {
                "error": {
                    "message": message,
                    "type": type or _default_error_type(status),
                    "param": None,
                    "code": code,
                }
            }
        else:
            body = {"detail": message}
        return Fault.status_code(status, body, retry_after=retry_after, headers=headers, close=close)

    def inject_error(
        self,
        status: int,
        message: str = "injected error",
        *,
        type: str | None = None,
        code: str | None = None,
        retry_after: str | None = None,
        retry_after_ms: str | None = None,
        should_retry: bool | None = None,
        close: bool = False,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` completion requests with an error (see :meth:`error_fault`)."""
        fault = self.error_fault(
            status,
            message,
            type=type,
            code=code,
            retry_after=retry_after,
            retry_after_ms=retry_after_ms,
            should_retry=should_retry,
            close=close,
        )
        self.inject(fault, path=_CHAT_PATH, times=times)

    def inject_insufficient_quota(self, *, times: int = 1) -> None:
        """A 429 that no wait cures: the account is out of credit."""
        self.inject_error(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            type="insufficient_quota",
            code="insufficient_quota",
            times=times,
        )

    def inject_stream_cut(self, *, after_chunks: int = 2, clean: bool = False, times: int = 1) -> None:
        """Stop the next ``times`` streams after ``after_chunks`` data events, before any finish reason.

        By default the connection is aborted mid-body (the client sees an incomplete chunked payload); with
        ``clean`` the body ends properly, so only the missing finish reason / ``[DONE]`` tells the client.
        """
        with self._state_lock:
            self._stream_faults.append(_StreamFault("cut_clean" if clean else "cut", after_chunks, "", times))

    def inject_stream_error(
        self,
        message: str = "The server had an error while processing your request.",
        *,
        after_chunks: int = 1,
        times: int = 1,
    ) -> None:
        """Send an ``{"error": ...}`` event after ``after_chunks`` data events of the next ``times`` streams
        (an object in OpenAI mode, a plain string in compat mode), then end the stream."""
        with self._state_lock:
            self._stream_faults.append(_StreamFault("error", after_chunks, message, times))

    # -- routes ---------------------------------------------------------------------------------------------
    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post(_CHAT_PATH, self._chat)
        app.router.add_get("/v1/models", self._models)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        names = self.models or ("fake-model",)
        data = [{"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "aioagents"} for m in names]
        return web.json_response({"object": "list", "data": data}, headers=self._base_headers(request))

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        problem = self._validate(body, request)
        if problem is not None:
            return problem
        assert isinstance(body, dict)
        limited = self._take_quota(body, request)
        if limited is not None:
            return limited
        self.accepted_at.append(time.monotonic())
        if self.latency:
            await asyncio.sleep(self.latency)
        choices = self._choices(body)
        if body.get("stream"):
            return await self._stream(request, body, choices)
        return web.json_response(self._completion(body, choices), headers=self._response_headers(request))

    # -- request checks -------------------------------------------------------------------------------------
    def _check_auth(self, request: web.Request) -> web.StreamResponse | None:
        if self.api_key is None:
            return None
        if request.headers.get("Authorization", "") == f"Bearer {self.api_key}":
            return None
        # Never echo the presented key back: error text ends up in logs.
        return self._error(
            request, 401, "Incorrect API key provided.", type="invalid_request_error", code="invalid_api_key"
        )

    def _validate(self, body: Any, request: web.Request) -> web.StreamResponse | None:
        compat = self.mode == "compat"
        if not isinstance(body, dict):
            if compat:
                detail = [{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error", "input": {}}]
                return web.json_response({"detail": detail}, status=422)
            return self._error(request, 400, "We could not parse the JSON body of your request.")
        unknown = sorted(set(body) - _KNOWN_FIELDS)
        if unknown:
            if compat:
                detail = [
                    {"type": "extra_forbidden", "loc": ["body", k], "msg": "Extra inputs are not permitted"}
                    for k in unknown
                ]
                return web.json_response({"detail": detail}, status=422)
            return self._error(request, 400, f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0])
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            if compat:
                # transformers serve crashes on this: a bare 500 with a plain-text body.
                return web.Response(status=500, text="Internal Server Error")
            return self._error(request, 400, "'messages' must be a non-empty array.", param="messages")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in _ROLES:
                return self._error(request, 400, f"Invalid value for 'messages[{i}].role'.", param=f"messages[{i}]")
            content = message.get("content")
            if content is None and message.get("role") != "assistant":
                return self._error(
                    request, 400, f"'messages[{i}].content' is required.", param=f"messages[{i}].content"
                )
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self._error(request, 400, "you must provide a model parameter", param="model")
        if self.models is not None and model not in self.models:
            if compat:
                return web.json_response({"detail": f"Model {model!r} is not served here"}, status=400)
            return self._error(
                request,
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                type="invalid_request_error",
                code="model_not_found",
            )
        n = body.get("n", 1)
        if not isinstance(n, int) or n < 1 or n > 128:
            return self._error(request, 400, "Invalid 'n': must be between 1 and 128.", param="n")
        return None

    def _take_quota(self, body: dict[str, Any], request: web.Request) -> web.StreamResponse | None:
        now = time.monotonic()
        cost = _prompt_tokens(body) + int(body.get("max_tokens") or body.get("max_completion_tokens") or 0)
        with self._state_lock:
            waits: list[tuple[str, float, int]] = []
            for kind, bucket, amount in (
                ("requests", self._req_bucket, 1),
                ("tokens", self._tok_bucket, cost),
            ):
                if bucket is None:
                    continue
                bucket.refill(now)
                wait = bucket.wait_for(amount)
                if wait > 0:
                    waits.append((kind, wait, amount))
            if not waits:
                for bucket, amount in ((self._req_bucket, 1), (self._tok_bucket, cost)):
                    if bucket is not None:
                        bucket.level -= amount
                return None
            self.rate_limited += 1
        kind, wait, amount = max(waits, key=lambda w: w[1])
        limit = self.requests_per_minute if kind == "requests" else self.tokens_per_minute
        message = (
            f"Rate limit reached for fake-model on {kind} per min (RPM): Limit {limit}, Requested {amount}. "
            f"Please try again in {go_duration(wait)}."
        )
        headers = {"retry-after-ms": f"{wait * 1000:.0f}", "retry-after": str(max(1, math.ceil(wait)))}
        if self.mode == "compat":
            return web.json_response({"detail": message}, status=429)
        return self._error(request, 429, message, type=kind, code="rate_limit_exceeded", headers=headers)

    # -- answers --------------------------------------------------------------------------------------------
    def _choices(self, body: dict[str, Any]) -> list[Reply]:
        answer: Answer = self.default
        for rule in self._rules:
            if rule.matches(body):
                answer = rule.answer
                break
        resolved: Any = answer(body) if callable(answer) else answer
        items: list[AnswerItem]
        if isinstance(resolved, (str, Reply)):
            items = [resolved]
        else:
            items = list(resolved)
            if not items:
                raise ValueError("an answer sequence must not be empty")
        # A compatible server ignores n and sends one choice (contract C.3).
        n = 1 if self.mode == "compat" else int(body.get("n") or 1)
        replies = [items[i % len(items)] for i in range(n)]
        return [self._shape(r if isinstance(r, Reply) else Reply(content=r), body) for r in replies]

    def _shape(self, reply: Reply, body: Mapping[str, Any]) -> Reply:
        """Apply ``stop`` and ``max_tokens`` to the content, as the server would while generating."""
        content = reply.content
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        if content is not None:
            stop = body.get("stop")
            stops = [stop] if isinstance(stop, str) else list(stop or [])
            cut = min((content.find(s) for s in stops if s and s in content), default=-1)
            if cut >= 0:
                # OpenAI leaves the stop string out; transformers serve keeps it (contract C.3).
                stop_len = next(len(s) for s in stops if s and content.find(s) == cut)
                content = content[: cut + (stop_len if self.mode == "compat" else 0)]
                finish = "stop"
            limit = body.get("max_tokens") or body.get("max_completion_tokens")
            if isinstance(limit, int) and count_tokens(content) > limit:
                matches = list(_TOKEN_RE.finditer(content))
                content = content[: matches[limit - 1].end()] if limit > 0 else ""
                finish = "length"
        return attrs.evolve(reply, content=content, finish_reason=finish)

    def _usage(self, body: Mapping[str, Any], choices: Sequence[Reply]) -> dict[str, Any]:
        prompt = _prompt_tokens(body)
        completion = sum(
            count_tokens(c.content or "") + sum(count_tokens(t.arguments) + 1 for t in c.tool_calls) for c in choices
        )
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if self.mode == "openai":
            usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
            usage["completion_tokens_details"] = {"reasoning_tokens": 0, "audio_tokens": 0}
        return usage

    def _tool_calls(self, reply: Reply, choice: int) -> list[dict[str, Any]]:
        return [
            {
                "id": t.id or f"call_fake_{choice}_{k}",
                "type": "function",
                "function": {"name": t.name, "arguments": t.arguments},
            }
            for k, t in enumerate(reply.tool_calls)
        ]

    def _completion(self, body: Mapping[str, Any], choices: Sequence[Reply]) -> dict[str, Any]:
        out_choices = []
        for i, reply in enumerate(choices):
            message: dict[str, Any] = {"role": "assistant", "content": reply.content}
            if self.mode == "openai":
                message["refusal"] = reply.refusal
                message["annotations"] = []
            if reply.tool_calls:
                message["tool_calls"] = self._tool_calls(reply, i)
            out_choices.append({"index": i, "message": message, "logprobs": None, "finish_reason": reply.finish_reason})
        result: dict[str, Any] = {
            "id": f"chatcmpl-fake{next(self._ids):06d}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": body["model"],
            "choices": out_choices,
            "usage": self._usage(body, choices),
        }
        if self.mode == "openai":
            result["system_fingerprint"] = "fp_fake"
            result["service_tier"] = "default"
        return result

    def _chunk_deltas(self, choices: Sequence[Reply]) -> list[tuple[int, dict[str, Any], str | None]]:
        """Every (choice index, delta, finish_reason) of the stream, choices interleaved as OpenAI does."""
        per_choice: list[list[tuple[int, dict[str, Any], str | None]]] = []
        for i, reply in enumerate(choices):
            first: dict[str, Any] = {"role": "assistant"}
            if self.mode == "openai":
                first.update(content="", refusal=None)
            events: list[tuple[int, dict[str, Any], str | None]] = [(i, first, None)]
            for piece in _PIECE_RE.findall(reply.content or ""):
                events.append((i, {"content": piece}, None))
            if reply.refusal is not None:
                events.append((i, {"refusal": reply.refusal}, None))
            for k, call in enumerate(self._tool_calls(reply, i)):
                head = {
                    "index": k,
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""},
                }
                events.append((i, {"tool_calls": [head]}, None))
                args = call["function"]["arguments"]
                for start in range(0, len(args), 8):
                    frag = {"index": k, "function": {"arguments": args[start : start + 8]}}
                    events.append((i, {"tool_calls": [frag]}, None))
            events.append((i, {}, reply.finish_reason))
            per_choice.append(events)
        out: list[tuple[int, dict[str, Any], str | None]] = []
        for row in itertools.zip_longest(*per_choice):
            out.extend(e for e in row if e is not None)
        return out

    async def _stream(
        self, request: web.Request, body: Mapping[str, Any], choices: Sequence[Reply]
    ) -> web.StreamResponse:
        fault = self._take_stream_fault()
        headers = self._response_headers(request)
        headers.update({"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"})
        resp = web.StreamResponse(status=200, headers=headers)
        await resp.prepare(request)
        if self.keepalive_comments:
            await resp.write(b": keep-alive\n\n")
        openai = self.mode == "openai"
        opts = body.get("stream_options")
        include_usage = openai and isinstance(opts, dict) and bool(opts.get("include_usage"))
        cid = f"chatcmpl-fake{next(self._ids):06d}"
        usage = self._usage(body, choices)

        def chunk(choice_list: list[dict[str, Any]], usage_value: Any = None, with_usage: bool = False) -> bytes:
            payload: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": body["model"],
            }
            if openai:
                payload["system_fingerprint"] = "fp_fake"
            payload["choices"] = choice_list
            if with_usage:
                payload["usage"] = usage_value
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        deltas = self._chunk_deltas(choices)
        for sent, (index, delta, finish) in enumerate(deltas):
            if fault is not None and sent == fault.after_chunks:
                return await self._fault_stream(request, resp, fault)
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            last = sent == len(deltas) - 1
            if openai:
                await resp.write(chunk([choice], None, include_usage))
            else:
                # transformers serve puts the usage on the finish chunk and never sends a usage-only chunk.
                await resp.write(chunk([choice], usage if last else None, last))
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        if fault is not None:
            return await self._fault_stream(request, resp, fault)
        if include_usage:
            await resp.write(chunk([], usage, True))
        if openai:
            await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _fault_stream(
        self, request: web.Request, resp: web.StreamResponse, fault: _StreamFault
    ) -> web.StreamResponse:
        if fault.kind == "cut":
            assert request.transport is not None
            request.transport.abort()
            return resp
        if fault.kind == "error":
            error: Any = (
                {"message": fault.message, "type": "server_error", "param": None, "code": None}
                if self.mode == "openai"
                else fault.message
            )
            await resp.write(b"data: " + json.dumps({"error": error}).encode() + b"\n\n")
        await resp.write_eof()
        return resp

    def _take_stream_fault(self) -> _StreamFault | None:
        with self._state_lock:
            if not self._stream_faults:
                return None
            fault = self._stream_faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._stream_faults.pop(0)
            return fault

    # -- headers and errors ---------------------------------------------------------------------------------
    def _request_id(self) -> str:
        return f"req_fake{next(self._ids):06d}"

    def _base_headers(self, request: web.Request) -> dict[str, str]:
        if self.mode == "compat":
            # transformers serve echoes an inbound x-request-id and sends nothing else of the kind.
            inbound = request.headers.get("x-request-id")
            return {"x-request-id": inbound} if inbound else {}
        return {
            "x-request-id": self._request_id(),
            "openai-processing-ms": "1",
            "openai-version": "2020-10-01",
        }

    def _response_headers(self, request: web.Request) -> dict[str, str]:
        headers = self._base_headers(request)
        if self.mode == "openai":
            headers.update(self._ratelimit_headers())
        return headers

    def _ratelimit_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        now = time.monotonic()
        with self._state_lock:
            for kind, bucket, limit in (
                ("requests", self._req_bucket, self.requests_per_minute),
                ("tokens", self._tok_bucket, self.tokens_per_minute),
            ):
                if bucket is None or limit is None:
                    continue
                bucket.refill(now)
                headers[f"x-ratelimit-limit-{kind}"] = str(limit)
                headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, math.floor(bucket.level)))
                headers[f"x-ratelimit-reset-{kind}"] = go_duration(bucket.reset_after())
        return headers

    def _error(
        self,
        request: web.Request,
        status: int,
        message: str,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        if self.mode == "compat":
            return web.json_response({"detail": message}, status=status, headers=self._base_headers(request))
        out = self._base_headers(request)
        out.update(self._ratelimit_headers())
        out.update(headers or {})
        body = {
            "error": {
                "message": message,
                "type": type or _default_error_type(status),
                "param": param,
                "code": code,
            }
        }
        return web.json_response(body, status=status, headers=out)


def _default_error_type(status: int) -> str:
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"
