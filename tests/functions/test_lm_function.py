"""LmFunction: slambda's inference rules, the quirks fixed, JSON output, reserved keywords of both APIs, streaming,
and map with per-item errors and rate limits, against the fake over loopback."""

from __future__ import annotations

import json
import re
from typing import Any

import openai
import pytest

from aioagents._exceptions import IncompleteStreamError
from aioagents.compat import slambda as compat
from aioagents.functions import (
    ChatClient,
    ChatCompletion,
    Definition,
    Example,
    FunctionInputConfig,
    FunctionInputType,
    GptApiOptions,
    LmFunction,
    LmFunctionError,
    LmOutputCastingError,
    Message,
    Role,
)
from aioagents.functions.models import strip_code_fence
from aioagents.testing._openai import FakeOpenAIServer, Reply, ToolCallReply

K = {"a": 1}
P = "text"
N = None

# -- inference (pure) --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "default", "strict", "expected"),
    [
        ([K, K], None, None, FunctionInputConfig.keyword(False)),
        ([K], {"a": 0}, None, FunctionInputConfig.keyword(True)),
        ([K, N], {"a": 0}, None, FunctionInputConfig.keyword(True)),
        ([P, P], None, None, FunctionInputConfig.unary(False)),
        ([P], "d", None, FunctionInputConfig.unary(True)),
        ([P], {"a": 0}, None, FunctionInputConfig.unary(False)),
        ([P, N], "d", None, FunctionInputConfig.unary(True)),
        ([N], "d", None, FunctionInputConfig.unary(True)),
        ([N], {"a": 0}, None, FunctionInputConfig.keyword(True)),
        ([N], "d", True, FunctionInputConfig.nullary_pos()),
        ([N, N], {"a": 0}, True, FunctionInputConfig.nullary_keyword()),
        (["", N], "d", True, FunctionInputConfig.nullary_pos()),  # an empty input counts as none
    ],
)
def test_input_type_is_inferred_from_examples(
    inputs: list[Any], default: Any, strict: bool | None, expected: FunctionInputConfig
) -> None:
    fn = LmFunction.create("i", [Example(i, "o") for i in inputs], default_args=default, strict_no_args=strict)
    assert fn.definition.input_config == expected


@pytest.mark.parametrize(
    ("inputs", "default", "message"),
    [
        ([K, P], None, "mix keyword"),
        ([K, P, N], {"a": 0}, "mix keyword"),
        ([K, N], None, "differ"),
        ([K, N], "d", "differ"),
        ([P, N], {"a": 0}, "differ"),
        ([N], None, "need default_args"),
    ],
)
def test_inconsistent_examples_are_refused(inputs: list[Any], default: Any, message: str) -> None:
    with pytest.raises(LmFunctionError, match=message):
        LmFunction.create("i", [Example(i, "o") for i in inputs], default_args=default)


def test_outputs_decide_json_and_may_not_mix() -> None:
    assert LmFunction.create("i", [Example("a", {"k": 1}), Example("b", [1])]).definition.output_config.cast_to_json
    assert not LmFunction.create("i", [Example("a", "x")]).definition.output_config.cast_to_json
    with pytest.raises(LmFunctionError, match="mix string and JSON"):
        LmFunction.create("i", [Example("a", "x"), Example("b", {"k": 1})])
    with pytest.raises(LmFunctionError, match="no examples"):
        LmFunction.create("i", [])
    with pytest.raises(ValueError, match="needs an output"):
        Example("a")


def test_strict_no_args_with_real_inputs_warns_and_is_ignored() -> None:
    with pytest.warns(UserWarning, match="strict_no_args flag is ignored"):
        fn = LmFunction.create("i", [Example("x", "y")], strict_no_args=True)
    assert not fn.definition.input_config.strict_no_args


def test_template_placeholders_become_required_args_checked_on_examples_and_calls() -> None:
    template = "Q: {question} ({lang})"
    fn = LmFunction.create("i", [Example({"question": "a", "lang": "en"}, "b")], message_template=template)
    assert fn.definition.required_args == ["question", "lang"]
    with pytest.raises(LmFunctionError, match="lang is required"):
        fn.build_request(question="why")
    with pytest.raises(LmFunctionError, match="lang is required"):
        LmFunction.create("i", [Example({"question": "a"}, "b")], message_template=template)


def test_definition_keeps_the_seed_fields() -> None:
    opts = GptApiOptions(temperature=1, max_tokens=5)
    fn = LmFunction.create("Add.", [Example({"a": 1}, "1")], name="add", gpt_opts=opts)
    d = fn.definition
    assert isinstance(d, Definition)
    assert (d.instruction, d.name, d.gpt_opts, d.default_args) == ("Add.", "add", opts, None)
    assert d.input_config.input_type == FunctionInputType.KEYWORD
    assert [m.role for m in d.message_stack] == [Role.system, Role.system, Role.system]
    assert [m.name for m in d.message_stack] == [None, "example_user", "example_assistant"]


# -- the quirks, fixed --------------------------------------------------------------------------------------------


def test_keyword_function_refuses_positional_arguments() -> None:
    fn = LmFunction.create("Add.", [Example({"a": 1, "b": 2}, "3")])
    with pytest.raises(LmFunctionError, match="keyword arguments only"):
        fn.build_request("1 + 2")
    with pytest.raises(LmFunctionError, match="keyword arguments only"):
        fn.build_request("1", a=1, b=2)


def test_allow_none_is_checked_at_call_time() -> None:
    # Unary examples with a dict default: slambda kept allow_none=False and then failed on the default's type.
    fn = LmFunction.create("Echo.", [Example("x", "x")], default_args={"a": 1})
    assert not fn.definition.input_config.allow_none
    with pytest.raises(LmFunctionError, match="needs an input"):
        fn.build_request()


def test_unary_and_nullary_argument_rules() -> None:
    unary = LmFunction.create("Echo.", [Example("x", "x")])
    with pytest.raises(LmFunctionError, match="more than 1"):
        unary.build_request("a", "b")
    with pytest.raises(LmFunctionError, match="keyword arguments for unary"):
        unary.build_request(text="a")
    nullary = LmFunction.create("Quote.", [Example(output="q")], default_args="Go.", strict_no_args=True)
    with pytest.raises(LmFunctionError, match="nullary"):
        nullary.build_request("x")
    with pytest.raises(LmFunctionError, match="nullary"):
        nullary.build_request(x=1)


def test_defining_a_function_needs_no_key_and_opens_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    fn = LmFunction.create("Echo.", [Example("x", "x")])
    compat_fn = compat.LmFunction.create("Echo.", [compat.Example("x", "x")])
    assert fn._client is None
    assert compat_fn._fn._client is None
    assert fn.build_request("y")["messages"][-1] == {"role": "user", "content": "y"}


def test_override_and_extra_messages_are_checked() -> None:
    fn = LmFunction.create("Echo.", [Example("x", "x")])
    with pytest.raises(LmFunctionError, match="cannot override temprature"):
        fn.build_request("y", __override={"temprature": 1})
    with pytest.raises(LmFunctionError, match="Message"):
        fn.build_request("y", __extra_messages=[{"role": "user", "content": "raw dict"}])


def test_seed_and_published_reserved_keywords_send_the_same_body() -> None:
    fn = LmFunction.create("Echo.", [Example("x", "x")])
    extra = [Message.user("context"), Message(role="assistant", content="ok")]
    assert fn.build_request("y", extra_messages=extra) == fn.build_request("y", __extra_messages=extra)
    assert fn.build_request("y", return_resp_obj=True) == fn.build_request("y", __return_resp_obj=True)
    assert fn.build_request("y", return_json=False) == fn.build_request("y")
    assert set(LmFunction.RESERVED_KEYWORDS) >= {
        "return_json",
        "extra_messages",
        "__override",
        "return_resp_obj",
        "__extra_messages",
        "__return_resp_obj",
    }


def test_user_assistant_example_style() -> None:
    fn = LmFunction.create("Echo.", [Example("x", "y")], example_style="user_assistant")
    assert fn.build_request("z")["messages"] == [
        {"role": "system", "content": "Echo."},
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "y"},
        {"role": "user", "content": "z"},
    ]


# -- JSON output --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "body"),
    [
        ('```json\n{"a": 1}\n```', '{"a": 1}'),
        ("```\n[1, 2]\n```", "[1, 2]"),
        ('  ```json\n{"a": 1}```  ', '{"a": 1}'),
        ('{"a": 1}', '{"a": 1}'),
        ('Here: ```json\n{"a": 1}\n```', 'Here: ```json\n{"a": 1}\n```'),
    ],
)
def test_strip_code_fence(text: str, body: str) -> None:
    assert strip_code_fence(text) == body


def _json_fn(srv: FakeOpenAIServer, **kwargs: Any) -> LmFunction:
    return LmFunction.create(
        "Extract.", [Example("a", {"k": "a"})], base_url=srv.base_url, api_key="k", max_attempts=1, **kwargs
    )


async def test_non_json_output_raises_casting_error_with_the_raw_text() -> None:
    async with FakeOpenAIServer() as srv:
        srv.add_rule("fenced", '```json\n{"k": "v"}\n```')
        async with _json_fn(srv) as plain, _json_fn(srv, strip_code_fence=True) as stripping:
            with pytest.raises(LmOutputCastingError) as info:
                await plain("fenced")
            assert info.value.llm_output == '```json\n{"k": "v"}\n```'
            assert info.value.message == "cannot cast language model output"
            assert await stripping("fenced") == {"k": "v"}
            assert await plain("fenced", return_json=False) == '```json\n{"k": "v"}\n```'


async def test_return_json_true_parses_a_text_function() -> None:
    async with FakeOpenAIServer() as srv:
        srv.add_rule("q", "[1, 2]")
        fn = LmFunction.create("Echo.", [Example("x", "y")], base_url=srv.base_url)
        async with fn:
            assert await fn("q") == "[1, 2]"
            assert await fn("q", return_json=True) == [1, 2]


async def test_reply_without_content_raises_instead_of_returning_none() -> None:
    async with FakeOpenAIServer() as srv:
        srv.add_rule("q", Reply(tool_calls=[ToolCallReply(name="f")]))
        fn = LmFunction.create("Echo.", [Example("x", "y")], base_url=srv.base_url)
        async with fn:
            with pytest.raises(LmOutputCastingError, match="no text content") as info:
                await fn("q")
    assert info.value.llm_output is None


async def test_return_response_gives_the_completion_and_n_gives_a_list() -> None:
    async with FakeOpenAIServer() as srv:
        srv.add_rule("q", ["one", "two", "three"])
        fn = LmFunction.create("Echo.", [Example("x", "y")], base_url=srv.base_url, gpt_opts=GptApiOptions(n=3))
        async with fn:
            assert await fn("q") == ["one", "two", "three"]
            completion = await fn("q", return_resp_obj=True)
            assert await fn("q", __override={"n": 1}) == "one"
    assert isinstance(completion, ChatCompletion)
    assert [c.message.content for c in completion.choices] == ["one", "two", "three"]


async def test_a_shared_client_is_used_and_left_open() -> None:
    async with FakeOpenAIServer() as srv, ChatClient(base_url=srv.base_url) as client:
        fn = LmFunction.create("Echo.", [Example("x", "y")], client=client)
        async with fn:
            assert await fn("q") == "q"
        assert fn.client is client
        assert await fn("again") == "again"  # the function did not close the client it was given


# -- streaming ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["openai", "compat"])
async def test_stream_yields_text_deltas(mode: Any) -> None:
    async with FakeOpenAIServer(mode=mode) as srv:
        srv.add_rule("story", "Once upon a time, a robot sang.")
        fn = LmFunction.create("Tell.", [Example("x", "y")], base_url=srv.base_url)
        async with fn:
            deltas = [d async for d in fn.stream("story")]
    assert len(deltas) > 3
    assert "".join(deltas) == "Once upon a time, a robot sang."
    body = srv.requests[0].json()
    assert body["stream"] is True
    assert body["messages"][-1] == {"role": "user", "content": "story"}


async def test_stream_of_a_cut_answer_raises() -> None:
    async with FakeOpenAIServer() as srv:
        srv.add_rule("story", "a b c d e f")
        srv.inject_stream_cut(after_chunks=2, clean=True)
        fn = LmFunction.create("Tell.", [Example("x", "y")], base_url=srv.base_url)
        got: list[str] = []

        async def read() -> None:
            async for delta in fn.stream("story"):
                got.append(delta)

        async with fn:
            with pytest.raises(IncompleteStreamError):
                await read()
    assert got == ["a "]


# -- map ----------------------------------------------------------------------------------------------------------


async def test_map_yields_every_result_with_its_index_and_keeps_per_item_errors() -> None:
    async with FakeOpenAIServer(latency=0.01) as srv:
        srv.add_rule(re.compile("bad"), "not json")
        srv.add_rule(lambda body: True, lambda body: json.dumps({"k": body["messages"][-1]["content"]}))
        fn = _json_fn(srv)
        inputs = [f"item {i}" if i % 7 else f"bad {i}" for i in range(30)]
        async with fn:
            results = [r async for r in fn.map(inputs, concurrency=8)]
    assert sorted(r.index for r in results) == list(range(30))
    for r in results:
        assert r.input == inputs[r.index]
        if r.index % 7:
            assert r.value == {"k": inputs[r.index]}
        else:
            assert isinstance(r.error, LmOutputCastingError)
            assert r.error.llm_output == "not json"


async def test_map_passes_dicts_as_keyword_arguments_and_none_as_no_argument() -> None:
    async with FakeOpenAIServer() as srv:
        add = LmFunction.create("Add.", [Example({"a": 1, "b": 2}, "3")], base_url=srv.base_url)
        quote = LmFunction.create("Quote.", [Example(output="q")], default_args="Go.", base_url=srv.base_url)
        async with add, quote:
            sums = {r.index: r.value async for r in add.map([{"a": 1, "b": 2}, {"a": 5, "b": 6}])}
            quotes = [r.value async for r in quote.map([None, None])]
    assert sums == {0: "a: 1\nb: 2", 1: "a: 5\nb: 6"}
    assert quotes == ["Go.", "Go."]


async def test_map_keeps_to_the_rate_limit_without_a_single_429() -> None:
    rpm = 6000
    async with FakeOpenAIServer(requests_per_minute=rpm, latency=0.01) as srv:
        fn = LmFunction.create("Echo.", [Example("x", "y")], base_url=srv.base_url, requests_per_minute=rpm)
        async with fn:
            results = [r async for r in fn.map([f"t{i}" for i in range(300)], concurrency=64)]
    assert all(r.ok for r in results)
    assert srv.rate_limited == 0
    # After the client's small initial burst (a tenth of a second of quota), requests arrive at the limit.
    steady = srv.accepted_at[10:]
    rate = (len(steady) - 1) / (steady[-1] - steady[0]) * 60
    assert rate == pytest.approx(rpm, rel=0.02)


# -- compat --------------------------------------------------------------------------------------------------------


def test_compat_exports_the_seed_names() -> None:
    for name in [
        "LmOutputCastingError",
        "FunctionInputType",
        "Example",
        "FunctionInputConfig",
        "FunctionOutputConfig",
        "Definition",
        "LmFunction",
        "Role",
        "Message",
        "GptApiOptions",
    ]:
        assert hasattr(compat, name), name
    assert compat.LmFunction.RESERVED_KEYWORDS[:4] == ["return_json", "extra_messages", "__override", "return_resp_obj"]


def test_compat_takes_key_and_url_from_an_openai_client() -> None:
    srv = FakeOpenAIServer(api_key="sk-sdk")
    srv.add_rule("q", '{"ok": true}')
    with srv.in_thread():
        sdk = openai.OpenAI(api_key="sk-sdk", base_url=srv.base_url)
        fn = compat.LmFunction.create("Check.", [compat.Example("x", {"ok": False})], openai_client=sdk)
        try:
            assert fn("q") == {"ok": True}
            with pytest.raises(compat.LmOutputCastingError):
                fn("not json please")
        finally:
            fn.close()
            sdk.close()
    assert srv.requests[0].header("Authorization") == "Bearer sk-sdk"


def test_compat_stream_and_get_call_args() -> None:
    srv = FakeOpenAIServer()
    srv.add_rule("q", "streamed answer")
    with srv.in_thread():
        fn = compat.LmFunction.create("Echo.", [compat.Example("x", "y")], gpt_opts=compat.GptApiOptions(stream=True))
        fn._fn._client_options = {"base_url": srv.base_url}
        try:
            body = fn.get_call_args(("q",), {}, {})
            chunks = list(fn("q"))
        finally:
            fn.close()
    assert body["stream"] is True
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed answer"


# -- packaging ----------------------------------------------------------------------------------------------------


def test_public_names_are_sorted_and_exported() -> None:
    import aioagents.functions as functions

    assert functions.__all__ == sorted(functions.__all__)
    assert {name for name in dir(functions) if not name.startswith("_") and name[0].isupper()} <= set(functions.__all__)


def test_the_library_never_imports_the_openai_sdk() -> None:
    import subprocess
    import sys

    code = (
        "import sys, aioagents.functions, aioagents.compat.slambda, aioagents.testing._openai; "
        "assert 'openai' not in sys.modules, 'openai was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_definition_round_trips_through_json() -> None:
    fn = LmFunction.create(
        "Rate it.",
        [Example({"text": "é", "n": 1}, {"score": 1}), Example(output={"score": 0})],
        default_args={"text": "none"},
        message_template="{text}",
        gpt_opts=GptApiOptions(temperature=0, logit_bias={50256: -100}, stop=["\n"]),
        name="rate",
        strip_code_fence=True,
    )
    data = json.loads(json.dumps(fn.definition.to_dict()))
    again = Definition.from_dict(data)
    assert again == fn.definition
    assert LmFunction(again).build_request(text="x") == fn.build_request(text="x")
    with pytest.raises(LmFunctionError, match="not a function definition"):
        Definition.from_dict({"instruction": "x"})
