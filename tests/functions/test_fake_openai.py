"""The OpenAI-compatible fake behaves as the contract says, seen by real clients over loopback: aiohttp for the raw
wire and the official openai SDK for what a reference client makes of it."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import aiohttp
import openai
import pytest
from multidict import CIMultiDict
from openai.types.chat import ChatCompletionMessageParam

from aioagents.testing._openai import FakeOpenAIServer, Reply, ToolCallReply, count_tokens, go_duration

MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
GO_DURATION = re.compile(r"^(\d+h)?(\d+m(?!s))?(\d+(\.\d+)?(ms|s))$")


async def post(srv: FakeOpenAIServer, body: Any, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
    async with aiohttp.ClientSession() as session:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with session.post(f"{srv.base_url}/chat/completions", data=data, headers=headers) as resp:
            return resp.status, CIMultiDict(resp.headers), await resp.read()


def sse_data(raw: bytes) -> list[str]:
    """The data fields of an SSE body (one data line per event, as the fake writes them)."""
    out = []
    for block in raw.decode().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                out.append(line[len("data: ") :])
    return out


def chunks(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(d) for d in sse_data(raw) if d != "[DONE]"]


# -- pure helpers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0004, "0s"),
        (0.012, "12ms"),
        (0.9994, "999ms"),
        (1, "1s"),
        (8.64, "8.64s"),
        (360, "6m0s"),
        (61.5, "1m1.5s"),
        (3723.5, "1h2m3.5s"),
        (7200, "2h0m0s"),
    ],
)
def test_go_duration_formats_like_go(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


@pytest.mark.parametrize(("text", "tokens"), [("", 0), ("hello", 1), ("hello there, friend", 4), ('{"a": 1}', 7)])
def test_count_tokens_counts_words_and_punctuation(text: str, tokens: int) -> None:
    assert count_tokens(text) == tokens


# -- answers -----------------------------------------------------------------------------------------------


async def test_first_matching_rule_answers_and_default_echoes() -> None:
    async with FakeOpenAIServer() as srv:
        srv.add_rule("ping", "pong")
        srv.add_rule(re.compile(r"^calc: "), "42")
        srv.add_rule(lambda body: body.get("temperature") == 0, "cold")
        srv.add_rule(re.compile("ping"), "never: the exact rule above wins")
        answers = []
        for content, extra in [("ping", {}), ("calc: 6*7", {}), ("x", {"temperature": 0}), ("echo me", {})]:
            status, _, raw = await post(
                srv, {"model": "m", "messages": [{"role": "user", "content": content}], **extra}
            )
            assert status == 200
            answers.append(json.loads(raw)["choices"][0]["message"]["content"])
    assert answers == ["pong", "42", "cold", "echo me"]


async def test_answer_sequence_gives_choice_i_item_i_mod_len() -> None:
    async with FakeOpenAIServer() as srv:
        srv.add_rule(lambda body: True, ["a", Reply(content="b")])
        _, _, raw = await post(srv, {"model": "m", "messages": MSG, "n": 3})
    choices = json.loads(raw)["choices"]
    assert [(c["index"], c["message"]["content"]) for c in choices] == [(0, "a"), (1, "b"), (2, "a")]


async def test_completion_has_the_openai_shape_and_usage() -> None:
    async with FakeOpenAIServer() as srv:
        srv.add_rule("hi", "hello there, friend")
        status, headers, raw = await post(srv, {"model": "gpt-x", "messages": MSG})
    body = json.loads(raw)
    assert status == 200
    assert headers["x-request-id"].startswith("req_")
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-x"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["message"]["role"] == "assistant"
    usage = body["usage"]
    assert usage["completion_tokens"] == 4
    assert usage["total_tokens"] == usage["prompt_tokens"] + 4


async def test_max_tokens_cuts_the_answer_with_finish_reason_length() -> None:
    async with FakeOpenAIServer() as srv:
        srv.add_rule("hi", "one two three four")
        _, _, raw = await post(srv, {"model": "m", "messages": MSG, "max_tokens": 2})
    choice = json.loads(raw)["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("one two", "length")


@pytest.mark.parametrize(("mode", "expected"), [("openai", "alpha "), ("compat", "alpha END")])
async def test_stop_string_is_excluded_by_openai_and_kept_by_compat(mode: Any, expected: str) -> None:
    async with FakeOpenAIServer(mode=mode) as srv:
        srv.add_rule("hi", "alpha END beta")
        _, _, raw = await post(srv, {"model": "m", "messages": MSG, "stop": ["END"]})
    assert json.loads(raw)["choices"][0]["message"]["content"] == expected


async def test_the_official_sdk_parses_a_completion_with_tool_calls() -> None:
    async with FakeOpenAIServer() as srv:
        srv.add_rule("hi", Reply(tool_calls=[ToolCallReply(name="lookup", arguments='{"q": "weather in Paris"}')]))
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="k") as client:
            result = await client.chat.completions.create(model="m", messages=MSG)
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("lookup", {"q": "weather in Paris"})


# -- streaming ---------------------------------------------------------------------------------------------


async def test_openai_stream_starts_with_role_ends_with_done_and_usage_chunk() -> None:
    async with FakeOpenAIServer() as srv:
        srv.add_rule("hi", "hello there, friend")
        body = {"model": "m", "messages": MSG, "stream": True, "stream_options": {"include_usage": True}}
        status, headers, raw = await post(srv, body)
    data = sse_data(raw)
    events = chunks(raw)
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert data[-1] == "[DONE]"
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == "hello there, friend"
    assert [e["choices"][0]["finish_reason"] for e in events if e["choices"]][-1] == "stop"
    assert all(e["usage"] is None for e in events[:-1])
    assert events[-1]["choices"] == []
    assert events[-1]["usage"]["completion_tokens"] == 4


async def test_openai_stream_without_include_usage_has_no_usage_chunk() -> None:
    async with FakeOpenAIServer() as srv:
        _, _, raw = await post(srv, {"model": "m", "messages": MSG, "stream": True})
    events = chunks(raw)
    assert all(e["choices"] for e in events)
    assert all("usage" not in e for e in events)


async def test_compat_stream_has_no_done_and_usage_on_the_finish_chunk() -> None:
    async with FakeOpenAIServer(mode="compat") as srv:
        srv.add_rule("hi", "hello there")
        body = {"model": "m", "messages": MSG, "stream": True, "stream_options": {"include_usage": True}, "n": 2}
        _, headers, raw = await post(srv, body)
    data = sse_data(raw)
    events = chunks(raw)
    assert "[DONE]" not in data
    assert "x-ratelimit-limit-requests" not in headers
    assert events[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert {c["index"] for e in events for c in e["choices"]} == {0}  # n is ignored
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["usage"]["completion_tokens"] == 2
    assert all(e.get("usage") is None for e in events[:-1])


async def test_sdk_accumulates_interleaved_choices_and_tool_call_fragments() -> None:
    args = '{"city": "Paris", "unit": "celsius", "days": 3}'
    async with FakeOpenAIServer(keepalive_comments=True) as srv:
        srv.add_rule("hi", ["first answer here", Reply(tool_calls=[ToolCallReply(name="forecast", arguments=args)])])
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="k") as client:
            stream = await client.chat.completions.create(model="m", messages=MSG, n=2, stream=True)
            text: dict[int, str] = {}
            fragments: list[str] = []
            finish: dict[int, str] = {}
            async for chunk in stream:
                for choice in chunk.choices:
                    text[choice.index] = text.get(choice.index, "") + (choice.delta.content or "")
                    for call in choice.delta.tool_calls or []:
                        assert call.index == 0
                        fragments.append((call.function.arguments if call.function else None) or "")
                    if choice.finish_reason:
                        finish[choice.index] = choice.finish_reason
    assert text[0] == "first answer here"
    assert len(fragments) > 2
    assert json.loads("".join(fragments)) == json.loads(args)
    assert finish == {0: "stop", 1: "tool_calls"}


async def test_stream_cut_aborts_the_body_mid_way() -> None:
    async with FakeOpenAIServer() as srv:
        srv.add_rule("hi", "a b c d e f")
        srv.inject_stream_cut(after_chunks=3)
        async with aiohttp.ClientSession() as session:
            body = {"model": "m", "messages": MSG, "stream": True}
            async with session.post(f"{srv.base_url}/chat/completions", json=body) as resp:
                assert resp.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await resp.read()
        # The fault is used up: the next stream is whole.
        _, _, raw = await post(srv, body)
    assert sse_data(raw)[-1] == "[DONE]"


async def test_clean_stream_cut_ends_the_body_without_finish_or_done() -> None:
    async with FakeOpenAIServer() as srv:
        srv.add_rule("hi", "a b c d e f")
        srv.inject_stream_cut(after_chunks=3, clean=True)
        _, _, raw = await post(srv, {"model": "m", "messages": MSG, "stream": True})
    data = sse_data(raw)
    assert len(data) == 3
    assert "[DONE]" not in data
    assert all(c["finish_reason"] is None for e in chunks(raw) for c in e["choices"])


@pytest.mark.parametrize(
    ("mode", "error"),
    [("openai", {"message": "boom", "type": "server_error", "param": None, "code": None}), ("compat", "boom")],
)
async def test_stream_error_event_has_the_mode_shape(mode: Any, error: Any) -> None:
    async with FakeOpenAIServer(mode=mode) as srv:
        srv.inject_stream_error("boom", after_chunks=2)
        _, _, raw = await post(srv, {"model": "m", "messages": MSG, "stream": True})
    events = [json.loads(d) for d in sse_data(raw)]
    assert len(events) == 3
    assert events[-1] == {"error": error}


async def test_the_official_sdk_raises_on_a_mid_stream_error_event() -> None:
    async with FakeOpenAIServer() as srv:
        srv.inject_stream_error("overloaded", after_chunks=1)
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="k") as client:
            stream = await client.chat.completions.create(model="m", messages=MSG, stream=True)
            with pytest.raises(openai.APIError, match="overloaded"):
                async for _ in stream:
                    pass


# -- errors ------------------------------------------------------------------------------------------------


async def test_openai_mode_refuses_unknown_fields_with_an_error_object() -> None:
    async with FakeOpenAIServer() as srv:
        status, headers, raw = await post(srv, {"model": "m", "messages": MSG, "temprature": 1})
    assert status == 400
    assert headers["x-request-id"].startswith("req_")
    error = json.loads(raw)["error"]
    assert error["param"] == "temprature"
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "status", "check"),
    [
        (b"{not json", 422, lambda raw: json.loads(raw)["detail"][0]["type"] == "json_invalid"),
        (
            {"model": "m", "messages": MSG, "bogus": 1},
            422,
            lambda raw: json.loads(raw)["detail"][0]["loc"][1] == "bogus",
        ),
        ({"model": "m"}, 500, lambda raw: raw == b"Internal Server Error"),
        ({"model": "other", "messages": MSG}, 400, lambda raw: "other" in json.loads(raw)["detail"]),
    ],
)
async def test_compat_mode_errors_have_fastapi_shapes(body: Any, status: int, check: Any) -> None:
    async with FakeOpenAIServer(mode="compat", models=["tiny"]) as srv:
        got, _, raw = await post(srv, body)
    assert got == status
    assert check(raw)


async def test_unknown_model_is_404_model_not_found_in_openai_mode() -> None:
    async with FakeOpenAIServer(models=["gpt-a"]) as srv:
        status, _, raw = await post(srv, {"model": "gpt-b", "messages": MSG})
    assert status == 404
    assert json.loads(raw)["error"]["code"] == "model_not_found"


async def test_wrong_key_is_401_and_the_key_is_not_echoed() -> None:
    async with FakeOpenAIServer(api_key="sk-right") as srv:
        status, _, raw = await post(srv, {"model": "m", "messages": MSG}, Authorization="Bearer sk-wrong-secret")
        ok, _, _ = await post(srv, {"model": "m", "messages": MSG}, Authorization="Bearer sk-right")
    assert status == 401
    assert json.loads(raw)["error"]["code"] == "invalid_api_key"
    assert b"sk-wrong-secret" not in raw
    assert ok == 200


async def test_injected_error_carries_the_retry_headers() -> None:
    async with FakeOpenAIServer() as srv:
        srv.inject_error(503, "busy", retry_after="3", retry_after_ms="2500", should_retry=True)
        status, headers, raw = await post(srv, {"model": "m", "messages": MSG})
        after, _, _ = await post(srv, {"model": "m", "messages": MSG})
    assert status == 503
    assert (headers["Retry-After"], headers["retry-after-ms"], headers["x-should-retry"]) == ("3", "2500", "true")
    assert json.loads(raw)["error"] == {"message": "busy", "type": "server_error", "param": None, "code": None}
    assert after == 200


async def test_injected_error_in_compat_mode_is_a_detail() -> None:
    async with FakeOpenAIServer(mode="compat") as srv:
        srv.inject_error(500, "kaput")
        status, _, raw = await post(srv, {"model": "m", "messages": MSG})
    assert (status, json.loads(raw)) == (500, {"detail": "kaput"})


async def test_insufficient_quota_is_a_429_with_that_code() -> None:
    async with FakeOpenAIServer() as srv:
        srv.inject_insufficient_quota()
        status, headers, raw = await post(srv, {"model": "m", "messages": MSG})
    error = json.loads(raw)["error"]
    assert status == 429
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    assert "retry-after" not in headers


async def test_official_sdk_waits_retry_after_ms_rather_than_retry_after() -> None:
    async with FakeOpenAIServer() as srv:
        srv.inject_error(429, "slow down", retry_after="30", retry_after_ms="200")
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="k", max_retries=1) as client:
            start = time.monotonic()
            await client.chat.completions.create(model="m", messages=MSG)
            elapsed = time.monotonic() - start
    assert len(srv.requests) == 2
    assert 0.2 <= elapsed < 5


async def test_official_sdk_does_not_retry_when_the_server_says_no() -> None:
    async with FakeOpenAIServer() as srv:
        srv.inject_error(500, "no", should_retry=False, times=3)
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="k", max_retries=2) as client:
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model="m", messages=MSG)
    assert len(srv.requests) == 1


# -- rate limits -------------------------------------------------------------------------------------------


async def test_ratelimit_headers_report_the_request_bucket_in_go_durations() -> None:
    async with FakeOpenAIServer(requests_per_minute=600, tokens_per_minute=60_000) as srv:
        _, headers, _ = await post(srv, {"model": "m", "messages": MSG, "max_tokens": 50})
    assert headers["x-ratelimit-limit-requests"] == "600"
    assert headers["x-ratelimit-remaining-requests"] == "9"  # the bucket holds one second: 10 requests
    assert headers["x-ratelimit-limit-tokens"] == "60000"
    assert int(headers["x-ratelimit-remaining-tokens"]) < 1000
    for key in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
        assert GO_DURATION.match(headers[key]), headers[key]


async def test_limiter_answers_429_once_the_bucket_is_empty_and_counts_them() -> None:
    async with FakeOpenAIServer(requests_per_minute=600) as srv:
        statuses = [(await post(srv, {"model": "m", "messages": MSG}))[0] for _ in range(10)]
        status, headers, raw = await post(srv, {"model": "m", "messages": MSG})
        assert statuses == [200] * 10
        assert status == 429
        assert srv.rate_limited == 1
        assert len(srv.accepted_at) == 10
        error = json.loads(raw)["error"]
        assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
        wait_ms = float(headers["retry-after-ms"])
        assert 0 < wait_ms <= 100
        assert headers["retry-after"] == "1"
        # Waiting what the server asked is enough.
        await asyncio.sleep(wait_ms / 1000 + 0.01)
        again, _, _ = await post(srv, {"model": "m", "messages": MSG})
    assert again == 200


async def test_token_limiter_charges_prompt_plus_max_tokens() -> None:
    async with FakeOpenAIServer(tokens_per_minute=6000) as srv:  # a bucket of 100 tokens
        first, _, _ = await post(srv, {"model": "m", "messages": MSG, "max_tokens": 80})
        second, _, raw = await post(srv, {"model": "m", "messages": MSG, "max_tokens": 80})
    assert (first, second) == (200, 429)
    assert json.loads(raw)["error"]["type"] == "tokens"
    assert srv.rate_limited == 1


async def test_compat_mode_sends_no_ratelimit_headers_and_echoes_the_request_id() -> None:
    async with FakeOpenAIServer(mode="compat", requests_per_minute=600) as srv:
        _, headers, _ = await post(srv, {"model": "m", "messages": MSG}, **{"x-request-id": "mine-1"})
    assert headers["x-request-id"] == "mine-1"
    assert not [k for k in headers if k.lower().startswith("x-ratelimit")]


async def test_models_lists_the_served_models() -> None:
    async with (
        FakeOpenAIServer(models=["a", "b"]) as srv,
        aiohttp.ClientSession() as session,
        session.get(f"{srv.base_url}/models") as resp,
    ):
        body = await resp.json()
    assert [m["id"] for m in body["data"]] == ["a", "b"]
