"""A Chat Completions client for OpenAI and OpenAI-compatible servers, on aioagents' own Transport.

No openai SDK inside, so retries never stack: one Transport owns rate limiting, sending and retrying.

* ``create`` → :class:`ChatCompletion`. ``stream`` → an :class:`~aioagents._streaming.EventStream` of
  :class:`ChatCompletionChunk`; :class:`StreamAccumulator` folds chunks into a completion (content per choice,
  tool-call argument fragments merged by index, usage, finish reasons).
* A stream ends on ``data: [DONE]`` (OpenAI) or at the end of the body (compatible servers that send no
  ``[DONE]``); a body that ends before every choice has a finish reason raises
  :class:`~aioagents.IncompleteStreamError`, and an ``{"error": …}`` event raises :class:`ChatStreamError`.
* Errors: ``{"error": {...}}``, ``{"detail": ...}`` and plain-text bodies all become the status error classes of
  :mod:`aioagents._exceptions`. Retried: connection failures, 408/409/429/5xx, ``x-should-retry: true``; waits
  honour ``retry-after-ms`` then ``Retry-After``. A 429 ``insufficient_quota`` is final (no wait cures it).
* Rate limits: ``requests_per_minute`` and ``tokens_per_minute`` buckets; a request takes an estimate of its prompt
  plus ``max_tokens`` from the token bucket. ``x-ratelimit-*`` headers (Go durations such as ``6m0s``) are parsed
  into :attr:`ChatClient.rate_limits` and pause the buckets when the server says a budget is spent.
* Configuration: explicit arguments, then ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``, then defaults.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from aioagents import ClientOptions, RequestOptions, _json
from aioagents._client import Endpoint, SentOptions, ServiceClient, Unpack, resolve_attempts, resolve_options
from aioagents._config import Timeout, TimeoutLike
from aioagents._converter import structure
from aioagents._exceptions import (
    APIStatusError,
    IncompleteStreamError,
    InvalidRequestError,
    ResponseValidationError,
    StreamError,
)
from aioagents._ratelimit import RateLimiter
from aioagents._retry import RetryPolicy
from aioagents._streaming import END, EventStream, ServerSentEvent, SSEDecoder
from aioagents._transport import Response, default_error

__all__ = [
    "DEFAULT_BASE_URL",
    "ChatClient",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatMessage",
    "ChatStreamError",
    "Choice",
    "ChunkChoice",
    "Delta",
    "FunctionCall",
    "FunctionCallDelta",
    "RateLimitInfo",
    "StreamAccumulator",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "estimate_tokens",
    "parse_go_duration",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_PATH = "/chat/completions"
# The statuses the openai SDK retries (contract B.6): 408, 409, 429 and every 5xx.
_RETRY_STATUSES = frozenset({408, 409, 429, *range(500, 600)})


# -- response models ---------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class FunctionCall:
    """The function a tool call names, and its arguments as JSON text."""

    name: str
    arguments: str


@attrs.frozen(kw_only=True)
class ToolCall:
    """A tool call of an assistant message."""

    id: str
    function: FunctionCall
    type: str = "function"


@attrs.frozen(kw_only=True)
class ChatMessage:
    """The assistant message of a choice. ``content`` is ``None`` for a pure tool call or a refusal."""

    role: str = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    annotations: list[Any] | None = None
    function_call: Any = None
    audio: Any = None
    reasoning_content: str | None = None


@attrs.frozen(kw_only=True)
class Choice:
    """One of the ``n`` answers."""

    index: int
    message: ChatMessage
    finish_reason: str | None = None
    logprobs: Any = None


@attrs.frozen(kw_only=True)
class Usage:
    """Token counts of a completion."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class ChatCompletion:
    """A whole (non-streamed or accumulated) chat completion."""

    id: str
    choices: list[Choice]
    model: str
    created: int = 0
    object: str = "chat.completion"
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None

    @property
    def text(self) -> str | None:
        """The first choice's content."""
        return self.choices[0].message.content if self.choices else None


@attrs.frozen(kw_only=True)
class FunctionCallDelta:
    """A fragment of a streamed tool call's function: the name comes once, the arguments in pieces."""

    name: str | None = None
    arguments: str | None = None


@attrs.frozen(kw_only=True)
class ToolCallDelta:
    """A fragment of tool call number ``index``; ``id`` and ``type`` come with its first fragment."""

    index: int
    id: str | None = None
    type: str | None = None
    function: FunctionCallDelta | None = None


@attrs.frozen(kw_only=True)
class Delta:
    """What one chunk adds to a choice."""

    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    function_call: Any = None
    reasoning_content: str | None = None


@attrs.frozen(kw_only=True)
class ChunkChoice:
    """A choice's part of a chunk."""

    index: int
    delta: Delta = attrs.field(factory=Delta)
    finish_reason: str | None = None
    logprobs: Any = None


@attrs.frozen(kw_only=True)
class ChatCompletionChunk:
    """One streamed event. The usage-only chunk (``include_usage``) has no choices."""

    id: str = ""
    choices: list[ChunkChoice] | None = None
    model: str = ""
    created: int = 0
    object: str = "chat.completion.chunk"
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    obfuscation: str | None = None


class ChatStreamError(StreamError):
    """The server sent an ``{"error": …}`` event in the middle of a stream.

    ``error`` is what it sent: an object (``message``, ``type``, ``code``) from OpenAI, a string from some compatible
    servers.
    """

    def __init__(self, message: str, *, error: Any, method: str | None = None, url: str | None = None) -> None:
        super().__init__(message, method=method, url=url)
        self.error = error
        self.code = error.get("code") if isinstance(error, dict) else None


class StreamAccumulator:
    """Folds streamed chunks into a :class:`ChatCompletion`.

    >>> acc = StreamAccumulator()
    >>> async for chunk in client.stream(model="gpt-4o-mini", messages=[...]):
    ...     acc.add(chunk)
    >>> acc.completion().text
    """

    def __init__(self) -> None:
        self._id = ""
        self._model = ""
        self._created = 0
        self._fingerprint: str | None = None
        self._usage: Usage | None = None
        self._content: dict[int, list[str]] = {}
        self._refusal: dict[int, list[str]] = {}
        self._role: dict[int, str] = {}
        self._finish: dict[int, str | None] = {}
        self._tools: dict[int, dict[int, dict[str, Any]]] = {}

    def add(self, chunk: ChatCompletionChunk) -> None:
        """Take one chunk into account."""
        self._id = self._id or chunk.id
        self._model = self._model or chunk.model
        self._created = self._created or chunk.created
        self._fingerprint = self._fingerprint or chunk.system_fingerprint
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices or ():
            i = choice.index
            self._content.setdefault(i, [])
            self._finish.setdefault(i, None)
            delta = choice.delta
            if delta.role:
                self._role[i] = delta.role
            if delta.content:
                self._content[i].append(delta.content)
            if delta.refusal:
                self._refusal.setdefault(i, []).append(delta.refusal)
            for call in delta.tool_calls or ():
                slot = self._tools.setdefault(i, {}).setdefault(
                    call.index, {"id": None, "type": "function", "name": "", "arguments": []}
                )
                if call.id:
                    slot["id"] = call.id
                if call.type:
                    slot["type"] = call.type
                if call.function is not None:
                    if call.function.name:
                        slot["name"] += call.function.name
                    if call.function.arguments:
                        slot["arguments"].append(call.function.arguments)
            if choice.finish_reason:
                self._finish[i] = choice.finish_reason

    def text(self, index: int = 0) -> str:
        """The content of choice ``index`` so far."""
        return "".join(self._content.get(index, ()))

    def completion(self) -> ChatCompletion:
        """The completion the chunks so far add up to."""
        choices = []
        for i in sorted(self._content):
            tools = self._tools.get(i)
            tool_calls = (
                [
                    ToolCall(
                        id=t["id"] or f"call_{i}_{k}",
                        type=t["type"],
                        function=FunctionCall(name=t["name"], arguments="".join(t["arguments"])),
                    )
                    for k, t in sorted(tools.items())
                ]
                if tools
                else None
            )
            parts = self._content[i]
            refusal = self._refusal.get(i)
            message = ChatMessage(
                role=self._role.get(i, "assistant"),
                content="".join(parts) if parts or not (tool_calls or refusal) else None,
                refusal="".join(refusal) if refusal else None,
                tool_calls=tool_calls,
            )
            choices.append(Choice(index=i, message=message, finish_reason=self._finish[i]))
        return ChatCompletion(
            id=self._id,
            choices=choices,
            model=self._model,
            created=self._created,
            usage=self._usage,
            system_fingerprint=self._fingerprint,
        )


# -- rate-limit headers ------------------------------------------------------------------------------------------

_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float | None:
    """Seconds in a Go duration string (``1s``, ``6m0s``, ``12ms``, ``8.64s``, ``1h2m3.5s``); ``None`` if unreadable.

    A bare number is read as seconds (some compatible servers send that).
    """
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return value if math.isfinite(value) and value >= 0 else None
    total = 0.0
    pos = 0
    # The alternation lists "ms" before "m", so "12ms" is never read as 12 minutes and an "s".
    for match in _GO_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) else None


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


def _duration_header(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    return None if raw is None else parse_go_duration(raw)


@attrs.frozen(kw_only=True)
class RateLimitInfo:
    """The ``x-ratelimit-*`` headers of the latest response: limits, what remains, and seconds until full."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimitInfo | None:
        """Read the headers; ``None`` when the server sends none (most compatible servers)."""
        info = cls(
            limit_requests=_int_header(headers, "x-ratelimit-limit-requests"),
            remaining_requests=_int_header(headers, "x-ratelimit-remaining-requests"),
            reset_requests=_duration_header(headers, "x-ratelimit-reset-requests"),
            limit_tokens=_int_header(headers, "x-ratelimit-limit-tokens"),
            remaining_tokens=_int_header(headers, "x-ratelimit-remaining-tokens"),
            reset_tokens=_duration_header(headers, "x-ratelimit-reset-tokens"),
        )
        return None if info == cls() else info


# -- the client --------------------------------------------------------------------------------------------------


def estimate_tokens(body: Mapping[str, Any]) -> int:
    """A cheap upper-bound guess of what a request costs in tokens: ~4 characters per token of every message, a
    few per message, plus ``max_tokens`` for each of the ``n`` choices (as OpenAI's limiter counts it)."""
    total = 3
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            total += math.ceil(len(content) / 4)
        elif isinstance(content, list):
            total += sum(math.ceil(len(str(p.get("text", ""))) / 4) for p in content if isinstance(p, Mapping))
        total += 4
    completion = body.get("max_completion_tokens") or body.get("max_tokens") or 0
    return total + int(completion) * int(body.get("n") or 1)


def _openai_error(response: Response) -> APIStatusError:
    error = default_error(response)
    inner = error.body.get("error") if isinstance(error.body, dict) else None
    if isinstance(inner, dict):
        kinds = {inner.get("type"), inner.get("code")}
        if response.status == 429 and "insufficient_quota" in kinds:
            # Out of credit: waiting does not help, and retrying only burns time (contract B.4).
            error.retryable = False
    return error


def _wire_message(message: Any) -> dict[str, Any]:
    to_wire = getattr(message, "to_wire", None)
    if to_wire is not None:
        return dict(to_wire())
    if isinstance(message, Mapping):
        return dict(message)
    raise TypeError(f"a message must be a Message or a mapping, not {type(message).__name__}")


class _ChunkParser:
    """The decoder and parser of one stream: SSE frames → chunks, ``[DONE]`` → end, an ``{"error"}`` event → raise,
    and at the end of the body a check that every choice finished (else the stream was cut)."""

    _EOF = object()

    def __init__(self, max_event_size: int, what: str) -> None:
        self._sse = SSEDecoder(max_event_size)
        self._what = what
        self._open_choices: set[int] = set()
        self._finished = False

    def feed(self, chunk: bytes) -> list[Any]:
        return list(self._sse.feed(chunk))

    def end(self) -> list[Any]:
        return [*self._sse.end(), self._EOF]

    def parse(self, frame: Any) -> ChatCompletionChunk | None:
        if frame is self._EOF:
            # Compatible servers end the body without [DONE]: that is a normal end once every choice finished.
            if not self._finished or self._open_choices:
                raise IncompleteStreamError(f"{self._what} ended before its finish reason (cut off)")
            return None
        assert isinstance(frame, ServerSentEvent)
        data = frame.data.strip()
        if data == "[DONE]":
            return END  # type: ignore[no-any-return]
        if not data:
            return None
        try:
            payload = _json.loads(data)
        except ValueError as exc:
            raise ResponseValidationError(f"{self._what}: an event is not JSON: {data[:200]!r}", body=data) from exc
        if isinstance(payload, dict) and payload.get("error"):
            error = payload["error"]
            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            raise ChatStreamError(f"{self._what}: the server sent an error: {message}", error=error)
        chunk = structure(payload, ChatCompletionChunk)
        for choice in chunk.choices or ():
            if choice.finish_reason:
                self._open_choices.discard(choice.index)
                self._finished = True
            else:
                self._open_choices.add(choice.index)
        return chunk


class ChatClient(ServiceClient):
    """An async client for ``POST /chat/completions`` of OpenAI or an OpenAI-compatible server.

    >>> async with ChatClient(requests_per_minute=500) as client:
    ...     completion = await client.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    ...     print(completion.text)
    ...     async with client.stream(model="gpt-4o-mini", messages=[...]) as chunks:
    ...         async for chunk in chunks:
    ...             ...

    ``api_key`` falls back to ``OPENAI_API_KEY`` (without any, no ``Authorization`` is sent: local servers need
    none); ``base_url`` to ``OPENAI_BASE_URL`` and then ``https://api.openai.com/v1``. ``requests_per_minute`` /
    ``tokens_per_minute`` (or your own :class:`~aioagents._ratelimit.RateLimiter` objects) pace the requests;
    ``max_retries`` counts the retries (default 2, as the openai SDK; 0: one attempt), ``max_attempts`` every
    attempt (default 3). Every call takes ``timeout``, ``max_retries`` and ``extra_headers`` for itself (as the
    openai SDK's per-request options); :meth:`with_options` makes a copy with other defaults on the same connections.
    """

    endpoint_spec = Endpoint(
        url_env=("OPENAI_BASE_URL",),
        default_url=DEFAULT_BASE_URL,
        key_env=("OPENAI_API_KEY",),
        timeout=Timeout(total=600, connect=10),
        headers={"User-Agent": "aioagents-functions"},
        request_id_headers=("x-request-id",),
    )

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        token_limiter: RateLimiter | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        rate_limiter = options.get("rate_limiter")
        if rate_limiter is None and requests_per_minute:
            # A tenth of a second of burst: enough to absorb timer lateness, small enough that a long run's average
            # stays on the limit and the server's own short-window limiter never sees a spike.
            rate_limiter = RateLimiter(requests_per_minute, per=60, burst=max(1.0, requests_per_minute / 600))
        if token_limiter is None and tokens_per_minute:
            token_limiter = RateLimiter(tokens_per_minute, per=60, burst=max(1.0, tokens_per_minute / 60))
        self.rate_limiter = rate_limiter
        self.token_limiter = token_limiter
        #: The ``x-ratelimit-*`` headers of the latest response that carried them.
        self.rate_limits: RateLimitInfo | None = None
        headers: dict[str, str] = {}
        if organization:
            headers["OpenAI-Organization"] = organization
        if project:
            headers["OpenAI-Project"] = project
        self._connect(
            base_url,
            {**options, "rate_limiter": rate_limiter},
            key=self.endpoint_spec.key(api_key),
            headers=headers,
            retry=RetryPolicy(retry_statuses=_RETRY_STATUSES),
            error_factory=_openai_error,
            response_hook=self._on_response,
        )

    # -- calls ----------------------------------------------------------------------------------------------------
    async def create(
        self,
        *,
        model: str,
        messages: Sequence[Any],
        max_attempts: int | None = None,
        timeout: TimeoutLike = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> ChatCompletion:
        """Create a completion. ``messages`` are :class:`~aioagents.functions.Message` objects or wire dicts;
        ``options`` are request fields (``temperature``, ``n``, ``max_tokens``, ``tools`` …); ``None`` is not sent.
        ``timeout``, ``max_retries`` and ``extra_headers`` (:class:`~aioagents.RequestOptions`, named here because
        the other keywords are the request's fields) apply to this call only.
        """
        body = self._body(model, messages, options)
        if body.get("stream"):
            raise InvalidRequestError("create() returns a whole completion; use stream() to stream")
        sent = _sent(max_attempts, timeout, max_retries, extra_headers)
        resp = await self._transport.request(
            "POST", _PATH, idempotent=True, json=body, permits=self._token_permit(body), **sent
        )
        return structure(resp.json(), ChatCompletion)

    def stream(
        self,
        *,
        model: str,
        messages: Sequence[Any],
        include_usage: bool = False,
        idle_timeout: float | None = 60.0,
        max_attempts: int | None = None,
        timeout: TimeoutLike = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> EventStream[ChatCompletionChunk]:
        """Stream a completion as chunks. ``include_usage`` asks OpenAI for the usage chunk (compatible servers put
        usage on the finish chunk anyway). Retries happen only before the first event. ``timeout`` bounds the
        connection set-up (``idle_timeout`` the silence between chunks); ``max_retries`` and ``extra_headers`` apply
        to this call only."""
        body = self._body(model, messages, options)
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
        what = "chat completion stream"
        parser = _ChunkParser(self._transport.max_event_size, what)
        return self._transport.stream(
            "POST",
            _PATH,
            decoder=parser,
            parse=parser.parse,
            idempotent=True,
            json=body,
            idle_timeout=idle_timeout,
            permits=self._token_permit(body),
            what=what,
            **_sent(max_attempts, timeout, max_retries, extra_headers),
        )

    def _body(self, model: str, messages: Sequence[Any], options: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": [_wire_message(m) for m in messages]}
        body.update((k, v) for k, v in options.items() if v is not None)
        return body

    def _token_permit(self, body: Mapping[str, Any]) -> Iterable[tuple[RateLimiter, float]]:
        limiter = self.token_limiter
        if limiter is None:
            return ()
        # A request larger than the whole bucket takes the whole bucket rather than failing.
        return ((limiter, min(float(estimate_tokens(body)), limiter.burst)),)

    def _on_response(self, status: int, headers: Mapping[str, str]) -> None:
        info = RateLimitInfo.from_headers(headers)
        if info is None:
            return
        self.rate_limits = info
        # The server says a budget is spent: hold our buckets until it refills, instead of collecting 429s.
        if info.remaining_requests == 0 and info.reset_requests and self.rate_limiter is not None:
            self.rate_limiter.pause(info.reset_requests)
        if info.remaining_tokens == 0 and info.reset_tokens and self.token_limiter is not None:
            self.token_limiter.pause(info.reset_tokens)


def _sent(
    max_attempts: int | None, timeout: TimeoutLike, max_retries: int | None, extra_headers: Mapping[str, str] | None
) -> SentOptions:
    """A chat call's per-call options (named parameters: its ``**`` takes the request's fields) as Transport
    keywords, through the one resolver; ``max_attempts`` and ``max_retries`` must agree."""
    given: RequestOptions = {"timeout": timeout, "max_retries": max_retries, "extra_headers": extra_headers}
    return resolve_options(given, max_attempts=resolve_attempts(max_attempts, max_retries))
