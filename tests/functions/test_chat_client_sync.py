"""The generated blocking ChatClient, alone and passed to the blocking LmFunction, against the fake OpenAI server."""

from __future__ import annotations

import re

from aioagents.functions import Example, Message, StreamAccumulator
from aioagents.sync import ChatClient, LmFunction
from aioagents.testing._openai import FakeOpenAIServer


def test_the_blocking_chat_client_creates_and_streams() -> None:
    with (
        FakeOpenAIServer(api_key="sk-1").in_thread() as srv,
        ChatClient(base_url=srv.base_url, api_key="sk-1") as client,
    ):
        srv.add_rule("hi", "hello there, friend")
        completion = client.create(model="m", messages=[Message.user("hi")], temperature=0.5)
        assert completion.text == "hello there, friend"
        acc = StreamAccumulator()
        for chunk in client.stream(model="m", messages=[Message.user("hi")]):
            acc.add(chunk)
        assert acc.text() == "hello there, friend"
        assert acc.completion().choices[0].finish_reason == "stop"
    assert [r.json()["temperature"] for r in srv.requests[:1]] == [0.5]
    assert srv.requests[0].header("Authorization") == "Bearer sk-1"


def test_a_blocking_chat_client_serves_a_blocking_lm_function() -> None:
    with (
        FakeOpenAIServer().in_thread() as srv,
        ChatClient(base_url=srv.base_url, api_key="sk-0") as client,
    ):
        srv.add_rule(re.compile("ping"), "pong")
        fn = LmFunction.create("Answer.", [Example("a", "b")], client=client)
        assert fn("ping") == "pong"
        assert "".join(fn.stream("ping")) == "pong"
        assert fn.client.base_url == client.base_url
        assert len(srv.requests) == 2
        fn.close()  # the client was passed in: still open afterwards
        assert client.create(model="m", messages=[Message.user("ping")]).text == "pong"
