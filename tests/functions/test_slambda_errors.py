"""compat.slambda raises what slambda raises: the openai SDK's exception classes for HTTP failures (slambda calls
through the openai client), checked side by side with the installed slambda against the same fake server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
import slambda  # type: ignore[import-untyped]

from aioagents import APIStatusError
from aioagents.compat import slambda as compat
from aioagents.testing import Fault
from aioagents.testing._openai import FakeOpenAIServer

CHAT = "/v1/chat/completions"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    srv = FakeOpenAIServer(api_key="sk-errors")
    srv.add_rule(lambda body: True, "positive")
    with srv.in_thread():
        monkeypatch.setenv("OPENAI_API_KEY", "sk-errors")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        yield srv


def _classify(module: Any, openai_client: Any = None, **gpt: Any) -> Any:
    examples = [module.Example(input="I love it", output="positive")]
    options: dict[str, Any] = {"gpt_opts": module.GptApiOptions(**gpt)} if gpt else {}
    if openai_client is not None:
        options["openai_client"] = openai_client
    return module.LmFunction.create("Classify the sentiment.", examples, **options)


def _raised(call: Any) -> BaseException:
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the type is what is compared
        call()
    return caught.value


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (400, "BadRequestError"),
        (401, "AuthenticationError"),
        (403, "PermissionDeniedError"),
        (404, "NotFoundError"),
        (409, "ConflictError"),
        (422, "UnprocessableEntityError"),
    ],
)
def test_an_error_status_raises_the_same_openai_exception_as_slambda(
    fake: FakeOpenAIServer, status: int, name: str
) -> None:
    body = {"error": {"message": f"status {status}", "type": "invalid_request_error", "code": "x"}}
    fake.inject(Fault.status_code(status, body), path=CHAT, times=10)  # also every retry (409 is retried)
    with openai.OpenAI(max_retries=0) as client:
        theirs = _raised(lambda: _classify(slambda, client)("What a day!"))
    fn = _classify(compat)
    try:
        ours = _raised(lambda: fn("What a day!"))
    finally:
        fn.close()
    assert type(theirs) is type(ours) is getattr(openai, name)
    assert isinstance(ours, openai.APIStatusError)
    assert ours.status_code == status
    assert ours.body == theirs.body == body["error"]  # type: ignore[attr-defined]
    assert isinstance(ours.__cause__, APIStatusError)


@pytest.mark.parametrize(("status", "name"), [(429, "RateLimitError"), (500, "InternalServerError")])
def test_retried_statuses_end_as_the_openai_exception(fake: FakeOpenAIServer, status: int, name: str) -> None:
    fake.inject(Fault.status_code(status, {"error": {"message": "busy"}}, retry_after="0"), path=CHAT, times=10)
    fn = _classify(compat)
    try:
        with pytest.raises(getattr(openai, name)) as caught:
            fn("What a day!")
    finally:
        fn.close()
    assert caught.value.status_code == status


def test_a_stream_refused_at_the_start_is_the_openai_exception(fake: FakeOpenAIServer) -> None:
    fake.inject(Fault.status_code(400, {"error": {"message": "bad stream"}}), path=CHAT)
    fn = _classify(compat, stream=True)
    try:
        with pytest.raises(openai.BadRequestError):
            list(fn("What a day!"))
    finally:
        fn.close()


def test_no_server_is_an_openai_connection_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-errors")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens on the discard port
    fn = _classify(compat)
    try:
        with pytest.raises(openai.APIConnectionError):
            fn("What a day!")
    finally:
        fn.close()


def test_misuse_stays_a_value_error(fake: FakeOpenAIServer) -> None:
    fn = _classify(compat)
    try:
        with pytest.raises(compat.LmFunctionError):
            fn("x", __override={"no_such_option": 1})
    finally:
        fn.close()
