"""The chat-completions client against the fake in both modes, over loopback: typed results, streams that end on
[DONE] or at the end of the body, cut streams and error events as typed errors, every error-body shape, retries by
the contract, and x-ratelimit headers."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from aioagents import _retry
from aioagents._exceptions import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    IncompleteStreamError,
    InternalServerError,
    RateLimitError,
    UnprocessableEntityError,
)
from aioagents.functions import ChatClient, ChatStreamError, Message, StreamAccumulator
from aioagents.functions.chat import estimate_tokens, parse_go_duration
from aioagents.testing import Fault
from aioagents.testing._openai import FakeOpenAIServer, Reply, ToolCallReply

MSG = [{"role": "user", "content": "hi"}]
MODES = ["openai", "compat"]


@pytest.fixture
def instant() -> Any:
    _retry.set_testing(True)
    yield
    _retry.set_testing(False)


# -- pure helpers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("12ms", 0.012),
        ("8.64s", 8.64),
        ("1h2m3.5s", 3723.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("100ns", 1e-7),
        ("0s", 0.0),
        ("2", 2.0),
        ("1m", 60.0),
        ("", None),
        ("soon", None),
        ("5x", None),
        ("1s junk", None),
        ("-1", None),
    ],
)
def test_parse_go_duration(text: str, seconds: float | None) -> None:
    result = parse_go_duration(text)
    if seconds is None:
        assert result is None
    else:
        assert result == pytest.approx(seconds)


def test_estimate_tokens_counts_prompt_and_max_tokens_per_choice() -> None:
    body = {"messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 50, "n": 2}
    assert estimate_tokens(body) == 3 + (10 + 4) + 100


# -- create ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_create_returns_a_typed_completion(mode: Any) -> None:
    async with (
        FakeOpenAIServer(mode=mode, api_key="sk-1") as srv,
        ChatClient(base_url=srv.base_url, api_key="sk-1") as c,
    ):
        srv.add_rule("hi", "hello there, friend")
        completion = await c.create(model="m", messages=[Message.user("hi")], temperature=0.5, top_p=None)
    assert completion.text == "hello there, friend"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4
    body = srv.requests[0].json()
    assert body == {"model": "m", "messages": MSG, "temperature": 0.5}
    assert srv.requests[0].header("Authorization") == "Bearer sk-1"


async def test_create_reads_tool_calls_and_null_content() -> None:
    async with FakeOpenAIServer() as srv, ChatClient(base_url=srv.base_url) as c:
        srv.add_rule("hi", Reply(tool_calls=[ToolCallReply(name="f", arguments='{"x": 1}', id="call_1")]))
        completion = await c.create(model="m", messages=MSG)
    message = completion.choices[0].message
    assert message.content is None
    assert message.tool_calls is not None
    assert (message.tool_calls[0].id, message.tool_calls[0].function.name) == ("call_1", "f")
    assert json.loads(message.tool_calls[0].function.arguments) == {"x": 1}


async def test_environment_supplies_key_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeOpenAIServer(api_key="sk-env") as srv:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        async with ChatClient() as c:
            assert c.base_url == srv.base_url
            assert "sk-env" not in repr(c)
            await c.create(model="m", messages=MSG)
    assert srv.requests[0].header("Authorization") == "Bearer sk-env"


async def test_explicit_arguments_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    async with FakeOpenAIServer(api_key="sk-arg") as srv, ChatClient(api_key="sk-arg", base_url=srv.base_url) as c:
        await c.create(model="m", messages=MSG)
    assert srv.requests[0].header("Authorization") == "Bearer sk-arg"


# -- error bodies ------------------------------------------------------------------------------------------------


async def test_openai_error_object_becomes_a_typed_error_with_request_id() -> None:
    async with FakeOpenAIServer(api_key="sk-right") as srv, ChatClient(base_url=srv.base_url, api_key="sk-wrong") as c:
        with pytest.raises(AuthenticationError) as info:
            await c.create(model="m", messages=MSG)
    err = info.value
    assert err.status == 401
    assert err.code == "invalid_api_key"
    assert err.request_id is not None
    assert err.request_id.startswith("req_")
    assert "sk-wrong" not in str(err)


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        ({"model": "other"}, BadRequestError, "not served"),
        ({"bogus": 1}, UnprocessableEntityError, "Extra inputs are not permitted"),
    ],
)
async def test_compat_detail_bodies_become_typed_errors(body: dict[str, Any], error: type, message: str) -> None:
    async with FakeOpenAIServer(mode="compat", models=["tiny"]) as srv, ChatClient(base_url=srv.base_url) as c:
        options = {"model": "tiny", **body}
        with pytest.raises(error, match=message):
            await c.create(messages=MSG, **options)
    assert len(srv.requests) == 1  # 400 and 422 are never retried


async def test_plain_text_500_is_an_internal_server_error(instant: None) -> None:
    async with FakeOpenAIServer(mode="compat") as srv, ChatClient(base_url=srv.base_url) as c:
        with pytest.raises(InternalServerError, match="Internal Server Error"):
            await c.create(model="m", messages=[])
    assert len(srv.requests) == 3  # 5xx is retried, then given up


# -- retries -----------------------------------------------------------------------------------------------------


async def test_retry_waits_retry_after_ms_not_retry_after() -> None:
    async with FakeOpenAIServer() as srv, ChatClient(base_url=srv.base_url) as c:
        srv.inject_error(429, "slow down", retry_after="20", retry_after_ms="300")
        start = time.monotonic()
        completion = await c.create(model="m", messages=MSG)
        elapsed = time.monotonic() - start
    assert completion.text == "hi"
    assert len(srv.requests) == 2
    assert 0.3 <= elapsed < 5


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
async def test_transient_statuses_are_retried(status: int, instant: None) -> None:
    async with FakeOpenAIServer() as srv, ChatClient(base_url=srv.base_url) as c:
        srv.inject_error(status, "transient", times=2)
        completion = await c.create(model="m", messages=MSG)
    assert completion.text == "hi"
    assert len(srv.requests) == 3


async def test_retries_stop_after_max_attempts(instant: None) -> None:
    async with FakeOpenAIServer() as srv, ChatClient(base_url=srv.base_url, max_attempts=2) as c:
        srv.inject_error(409, "conflict", times=5)
        with pytest.raises(ConflictError):
            await c.create(model="m", messages=MSG)
    assert len(srv.requests) == 2


async def test_x_should_retry_false_is_obeyed(instant: None) -> None:
    async with FakeOpenAIServer() as srv, ChatClient(base_url=srv.base_url) as c:
        srv.inject_error(503, "no", should_retry=False)
        with pytest.raises(InternalServerError):
            await c.create(model="m", messages=MSG)
    assert len(srv.requests) == 1


async def test_x_should_retry_true_retries_a_400(instant: None) -> None:
    async with FakeOpenAIServer() as srv, ChatClient(base_url=srv.base_url) as c:
        srv.inject_error(400, "flaky", should_retry=True)
        await c.create(model="m", messages=MSG)
    assert len(srv.requests) == 2


async def test_insufficient_quota_is_not_retried(instant: None) -> None:
    async with FakeOpenAIServer() as srv, ChatClient(base_url=srv.base_url) as c:
        srv.inject_insufficient_quota(times=3)
        with pytest.raises(RateLimitError) as info:
            await c.create(model="m", messages=MSG)
    assert info.value.code == "insufficient_quota"
    assert len(srv.requests) == 1


async def test_connection_reset_is_retried(instant: None) -> None:
    async with FakeOpenAIServer() as srv, ChatClient(base_url=srv.base_url) as c:
        srv.inject(Fault.reset(), path="/v1/chat/completions")
        completion = await c.create(model="m", messages=MSG)
    assert completion.text == "hi"


# -- streaming ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_stream_yields_typed_chunks_and_ends_cleanly(mode: Any) -> None:
    async with FakeOpenAIServer(mode=mode) as srv, ChatClient(base_url=srv.base_url) as c:
        srv.add_rule("hi", "one two three")
        acc = StreamAccumulator()
        async with c.stream(model="m", messages=MSG, include_usage=True) as chunks:
            async for chunk in chunks:
                acc.add(chunk)
    completion = acc.completion()
    assert completion.text == "one two three"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3
    assert srv.requests[0].json()["stream_options"] == {"include_usage": True}


async def test_stream_accumulates_choices_and_tool_call_fragments() -> None:
    args = json.dumps({"query": "weather in Paris tomorrow", "units": "metric"})
    async with FakeOpenAIServer() as srv, ChatClient(base_url=srv.base_url) as c:
        srv.add_rule(
            "hi",
            [
                Reply(content="Let me check."),
                Reply(tool_calls=[ToolCallReply(name="search", arguments=args), ToolCallReply(name="clock")]),
            ],
        )
        acc = StreamAccumulator()
        async with c.stream(model="m", messages=MSG, n=2) as chunks:
            async for chunk in chunks:
                acc.add(chunk)
    completion = acc.completion()
    first, second = completion.choices
    assert (first.message.content, first.finish_reason) == ("Let me check.", "stop")
    assert second.finish_reason == "tool_calls"
    assert second.message.content is None
    assert second.message.tool_calls is not None
    assert [(t.function.name, t.function.arguments) for t in second.message.tool_calls] == [
        ("search", args),
        ("clock", "{}"),
    ]
    assert all(t.id.startswith("call_") for t in second.message.tool_calls)


async def test_stream_tolerates_sse_comments() -> None:
    async with FakeOpenAIServer(keepalive_comments=True) as srv, ChatClient(base_url=srv.base_url) as c:
        text = "".join(
            [chunk.choices[0].delta.content or "" async for chunk in c.stream(model="m", messages=MSG) if chunk.choices]
        )
    assert text == "hi"


@pytest.mark.parametrize("mode", MODES)
async def test_cut_stream_raises_incomplete_stream_error(mode: Any) -> None:
    async with FakeOpenAIServer(mode=mode) as srv, ChatClient(base_url=srv.base_url) as c:
        srv.add_rule("hi", "a b c d e f g")
        srv.inject_stream_cut(after_chunks=3)
        received: list[Any] = []

        async def read_all() -> None:
            async for chunk in c.stream(model="m", messages=MSG):
                received.append(chunk)

        with pytest.raises(IncompleteStreamError):
            await read_all()
    assert len(received) == 3


@pytest.mark.parametrize("mode", MODES)
async def test_body_ending_before_a_finish_reason_is_a_cut_stream(mode: Any) -> None:
    async with FakeOpenAIServer(mode=mode) as srv, ChatClient(base_url=srv.base_url) as c:
        srv.add_rule("hi", "a b c d e f g")
        srv.inject_stream_cut(after_chunks=3, clean=True)
        with pytest.raises(IncompleteStreamError, match="finish reason"):
            await c.stream(model="m", messages=MSG).collect()


@pytest.mark.parametrize("mode", MODES)
async def test_mid_stream_error_event_raises_chat_stream_error(mode: Any) -> None:
    async with FakeOpenAIServer(mode=mode) as srv, ChatClient(base_url=srv.base_url) as c:
        srv.inject_stream_error("model overloaded", after_chunks=2)
        with pytest.raises(ChatStreamError, match="model overloaded") as info:
            await c.stream(model="m", messages=MSG).collect()
    expected = {"message": "model overloaded", "type": "server_error", "param": None, "code": None}
    assert info.value.error == (expected if mode == "openai" else "model overloaded")


async def test_stream_open_is_retried_before_the_first_event(instant: None) -> None:
    async with FakeOpenAIServer() as srv, ChatClient(base_url=srv.base_url) as c:
        srv.inject_error(503, "warming up", retry_after_ms="10")
        chunks = await c.stream(model="m", messages=MSG).collect()
    assert len(srv.requests) == 2
    assert chunks[-1].choices is not None
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_create_refuses_stream_true() -> None:
    async with ChatClient(base_url="http://127.0.0.1:9/v1") as c:
        with pytest.raises(ValueError, match="stream"):
            await c.create(model="m", messages=MSG, stream=True)


# -- rate limits -------------------------------------------------------------------------------------------------


async def test_ratelimit_headers_are_parsed() -> None:
    async with (
        FakeOpenAIServer(requests_per_minute=600, tokens_per_minute=60_000) as srv,
        ChatClient(base_url=srv.base_url) as c,
    ):
        await c.create(model="m", messages=MSG, max_tokens=10)
    info = c.rate_limits
    assert info is not None
    assert (info.limit_requests, info.remaining_requests, info.limit_tokens) == (600, 9, 60_000)
    assert info.reset_requests is not None
    assert 0 < info.reset_requests <= 0.1
    assert info.remaining_tokens is not None
    assert info.remaining_tokens < 1000


async def test_compat_server_sends_no_ratelimit_info() -> None:
    async with FakeOpenAIServer(mode="compat") as srv, ChatClient(base_url=srv.base_url) as c:
        await c.create(model="m", messages=MSG)
    assert c.rate_limits is None


async def test_spent_budget_in_headers_pauses_the_limiter() -> None:
    # The server's bucket holds 2 requests and refills one every 0.5 s; the client's own limit is far higher, so only
    # the headers can keep it from the 429.
    async with (
        FakeOpenAIServer(requests_per_minute=120, burst_seconds=1.0) as srv,
        ChatClient(base_url=srv.base_url, requests_per_minute=100_000, max_attempts=1) as c,
    ):
        for _ in range(4):
            await c.create(model="m", messages=MSG)
    assert srv.rate_limited == 0
    gaps = [b - a for a, b in zip(srv.accepted_at, srv.accepted_at[1:], strict=False)]
    assert max(gaps) >= 0.4


async def test_client_limiter_keeps_a_burst_under_the_server_limit() -> None:
    async with (
        FakeOpenAIServer(requests_per_minute=1200) as srv,
        ChatClient(base_url=srv.base_url, requests_per_minute=1200, max_attempts=1) as c,
    ):
        await asyncio.gather(*(c.create(model="m", messages=MSG) for _ in range(40)))
    assert srv.rate_limited == 0
    steady = srv.accepted_at[2:]
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    assert rate == pytest.approx(20, rel=0.05)


async def test_token_limiter_paces_by_estimated_tokens() -> None:
    body = {"messages": MSG, "max_tokens": 100}
    cost = estimate_tokens(body)
    async with (
        FakeOpenAIServer(tokens_per_minute=60 * 4 * cost) as srv,  # four requests a second
        ChatClient(base_url=srv.base_url, tokens_per_minute=60 * 4 * cost, max_attempts=1) as c,
    ):
        start = time.monotonic()
        for _ in range(8):
            await c.create(model="m", messages=MSG, max_tokens=100)
        elapsed = time.monotonic() - start
    assert srv.rate_limited == 0
    assert elapsed >= 0.9  # 4 from the bucket at once, the next 4 at 4 per second


async def test_a_rate_limit_429_from_the_server_is_retried_after_its_wait() -> None:
    async with (
        FakeOpenAIServer(requests_per_minute=600, burst_seconds=0.1) as srv,
        ChatClient(base_url=srv.base_url) as c,
    ):
        await c.create(model="m", messages=MSG)
        completion = await c.create(model="m", messages=MSG)
    assert completion.text == "hi"
    assert srv.rate_limited == 1
    assert len(srv.accepted_at) == 2
    assert srv.accepted_at[1] - srv.accepted_at[0] >= 0.09


async def test_error_repr_and_str_hide_the_key() -> None:
    async with FakeOpenAIServer(api_key="sk-real") as srv, ChatClient(base_url=srv.base_url, api_key="sk-fake") as c:
        with pytest.raises(APIStatusError) as info:
            await c.create(model="m", messages=MSG)
        assert "sk-fake" not in repr(c) + repr(c._transport) + str(info.value) + repr(info.value)
