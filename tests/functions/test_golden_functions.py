"""aioagents' LM functions send slambda's request bodies and return slambda's values: every golden case recorded
from slambda 0.0.15 is replayed through the native async API and through the compat import, against the fake."""

from __future__ import annotations

import json
from typing import Any

import golden_cases
import pytest

from aioagents._streaming import EventStream
from aioagents.compat import slambda as compat
from aioagents.functions import ChatCompletion, Example, GptApiOptions, LmFunction, Message
from aioagents.testing._openai import FakeOpenAIServer

NAMES = golden_cases.golden_names()


def canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True)


def _call_kwargs(call: dict[str, Any], message_cls: Any) -> dict[str, Any]:
    kwargs = dict(call.get("kwargs", {}))
    if "override" in call:
        kwargs["__override"] = call["override"]
    if "extra_messages" in call:
        kwargs["__extra_messages"] = [message_cls(**m) for m in call["extra_messages"]]
    if call.get("return_resp_obj"):
        kwargs["__return_resp_obj"] = True
    return kwargs


def _create_kwargs(spec: dict[str, Any], example_cls: Any, options_cls: Any) -> dict[str, Any]:
    kwargs = {k: v for k, v in spec.items() if k not in ("instruction", "examples", "gpt_opts")}
    if "gpt_opts" in spec:
        kwargs["gpt_opts"] = options_cls(**spec["gpt_opts"])
    kwargs["examples"] = [example_cls(input=e.get("input"), output=e["output"]) for e in spec["examples"]]
    return kwargs


async def _native_result(case: dict[str, Any], result: Any) -> Any:
    if case["call"].get("return_resp_obj"):
        assert isinstance(result, ChatCompletion)
        return {"response_content": result.choices[0].message.content}
    if isinstance(result, EventStream):
        text = ""
        async with result as chunks:
            async for chunk in chunks:
                text += "".join(c.delta.content or "" for c in chunk.choices or ())
        return {"stream_content": text}
    return result


@pytest.mark.parametrize("name", NAMES)
async def test_native_function_sends_the_golden_body_and_returns_the_golden_value(name: str) -> None:
    golden = golden_cases.load(name)
    spec, call = golden["create"], golden["call"]
    async with FakeOpenAIServer(api_key="sk-golden") as srv:
        golden_cases.configure_answer(srv, golden)
        fn = LmFunction.create(
            spec["instruction"],
            base_url=srv.base_url,
            api_key="sk-golden",
            **_create_kwargs(spec, Example, GptApiOptions),
        )
        async with fn:
            assert canonical(fn.build_request(*call.get("args", []), **_call_kwargs(call, Message))) == canonical(
                golden["request"]
            )
            result = await _native_result(golden, await fn(*call.get("args", []), **_call_kwargs(call, Message)))
    (request,) = srv.requests_to("/v1/chat/completions")
    assert canonical(request.json()) == canonical(golden["request"])
    assert canonical(result) == canonical(golden["result"])


@pytest.mark.parametrize("name", NAMES)
def test_compat_function_runs_the_golden_case_unchanged(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    golden = golden_cases.load(name)
    spec, call = golden["create"], golden["call"]
    srv = FakeOpenAIServer(api_key="sk-golden")
    golden_cases.configure_answer(srv, golden)
    with srv.in_thread():
        # The compat layer reads the same environment variables slambda's openai client did.
        monkeypatch.setenv("OPENAI_API_KEY", "sk-golden")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        fn = compat.LmFunction.create(spec["instruction"], **_create_kwargs(spec, compat.Example, compat.GptApiOptions))
        try:
            result = fn(*call.get("args", []), **_call_kwargs(call, compat.Message))
            if call.get("return_resp_obj"):
                result = {"response_content": result.choices[0].message.content}
            elif spec.get("gpt_opts", {}).get("stream"):
                result = {"stream_content": "".join(c.choices[0].delta.content or "" for c in result if c.choices)}
        finally:
            fn.close()
    (request,) = srv.requests_to("/v1/chat/completions")
    assert canonical(request.json()) == canonical(golden["request"])
    assert canonical(result) == canonical(golden["result"])
