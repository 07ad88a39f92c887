"""The seed document's examples, with only the import changed, against the fake server (blocking calls, so the fake
runs in a background thread); and the wire: the official SDK and aioagents send bodies the server reads identically."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import sandbox_fusion as official
from aiohttp import web

import aioagents.compat.sandbox_fusion as compat
from aioagents import APITimeoutError, BadRequestError
from aioagents.compat.sandbox_fusion import (
    GetPromptByIdRequest,
    GetPromptsRequest,
    RunCodeRequest,
    RunJupyterRequest,
    SubmitRequest,
    TestConfig,
    get_prompt_by_id,
    get_prompts,
    run_code,
    run_concurrent,
    run_jupyter,
    set_dataset_endpoint,
    set_endpoint,
    set_sandbox_endpoint,
    submit,
    submit_safe,
)
from aioagents.testing._sandbox_fusion import FakeSandboxFusionServer


@pytest.fixture
def srv() -> Iterator[FakeSandboxFusionServer]:
    with FakeSandboxFusionServer(realtime=True).in_thread() as server:
        set_endpoint(server.url)
        yield server  # type: ignore[misc]


def test_set_endpoint_then_run_code_with_default_and_manual_attempts(srv: FakeSandboxFusionServer) -> None:
    # 使用默认重试次数(5次)
    assert run_code(RunCodeRequest(code="print(123)", language="python")).run_result.stdout == "123\n"  # type: ignore[union-attr]
    # 手动指定重试次数
    assert run_code(RunCodeRequest(code="print(123)", language="python"), max_attempts=10).status.value == "Success"


def test_per_call_endpoint_overrides_the_global_one(srv: FakeSandboxFusionServer) -> None:
    set_endpoint("http://127.0.0.1:9")
    prompt = get_prompt_by_id(GetPromptByIdRequest(dataset="mbpp", id=11, config=TestConfig()), endpoint=srv.url)
    assert prompt.id == 11


def test_run_jupyter(srv: FakeSandboxFusionServer) -> None:
    resp = run_jupyter(RunJupyterRequest(cells=["a = 123", "a", "print(a)"]))
    assert resp.cells[1].display == [{"text/plain": "123"}]


def test_get_prompts_and_submit(srv: FakeSandboxFusionServer) -> None:
    prompts = get_prompts(GetPromptsRequest(dataset="mbpp", config=TestConfig(), limit=3))
    assert [p.id for p in prompts] == [11, 12, 13]
    completion = "```python\ndef func_11(x):\n    return x + 11\n```"
    assert submit(SubmitRequest(dataset="mbpp", id=11, completion=completion, config=TestConfig())).accepted


def test_submit_safe_returns_a_rejection_instead_of_raising(srv: FakeSandboxFusionServer) -> None:
    result = submit_safe(SubmitRequest(dataset="nope", id=3, completion="x", config=TestConfig()), max_attempts=1)
    assert result.accepted is False
    assert result.id == 3
    with pytest.raises(BadRequestError):
        submit(SubmitRequest(dataset="nope", id=3, completion="x", config=TestConfig()), max_attempts=1)


def test_set_sandbox_and_dataset_endpoints_separately(srv: FakeSandboxFusionServer) -> None:
    set_sandbox_endpoint(srv.url)
    set_dataset_endpoint("http://127.0.0.1:9")
    assert run_code(RunCodeRequest(code="print(1)", language="python")).status.value == "Success"
    set_dataset_endpoint(srv.url)
    assert get_prompts(GetPromptsRequest(dataset="mbpp", config=TestConfig(), limit=1))


def test_run_concurrent_example(srv: FakeSandboxFusionServer) -> None:
    set_sandbox_endpoint(srv.url)
    codes = [f"print({i})" for i in range(123, 456)]
    results = run_concurrent(run_code, args=[[RunCodeRequest(code=c, language="python")] for c in codes])
    assert [r.run_result.stdout for r in results] == [f"{i}\n" for i in range(123, 456)]


def test_client_timeout_example(srv: FakeSandboxFusionServer) -> None:
    with pytest.raises(APITimeoutError):
        run_code(
            RunCodeRequest(code="import time; time.sleep(4); print(123)", language="python"),
            max_attempts=1,
            client_timeout=1,
        )


def test_async_twins(srv: FakeSandboxFusionServer) -> None:
    async def main() -> list[Any]:
        return [
            await compat.run_code_async(RunCodeRequest(code="print(7)", language="python")),
            await compat.run_jupyter_async(RunJupyterRequest(cells=["print(8)"])),
            await compat.get_prompts_async(GetPromptsRequest(dataset="mbpp", config=TestConfig(), limit=1)),
            await compat.get_prompt_by_id_async(GetPromptByIdRequest(dataset="mbpp", id=12, config=TestConfig())),
            await compat.submit_async(SubmitRequest(dataset="mbpp", id=12, completion="x", config=TestConfig())),
            await compat.submit_safe_async(SubmitRequest(dataset="nope", id=1, completion="x", config=TestConfig())),
        ]

    code, jupyter, prompts, prompt, submitted, safe = asyncio.run(main())
    assert code.stdout == "7\n"
    assert jupyter.cells[0].stdout == "8\n"
    assert len(prompts) == 1
    assert prompt.id == 12
    assert submitted.id == 12
    assert safe.accepted is False


def test_run_concurrent_pure_keeps_order_and_raises_the_first_error_after_all(srv: FakeSandboxFusionServer) -> None:
    done: list[int] = []

    def thunk(i: int) -> Any:
        def call() -> int:
            done.append(i)
            if i == 2:
                raise ValueError("item 2")
            return i

        return call

    with pytest.raises(ValueError, match="item 2"):
        compat.run_concurrent_pure([thunk(i) for i in range(6)], concurrency=3)
    assert sorted(done) == list(range(6))
    assert compat.run_concurrent_pure([thunk(i) for i in (0, 1, 3)]) == [0, 1, 3]


# -- the wire: the official SDK and aioagents, same inputs, same server reading ------------------------------
_SERVER_DEFAULTS: dict[str, dict[str, Any]] = {
    "/run_code": {"compile_timeout": 10, "run_timeout": 10, "memory_limit_MB": -1, "stdin": None, "files": {},
                  "fetch_files": []},
    "/run_jupyter": {"cell_timeout": 0, "total_timeout": 45, "memory_limit_MB": -1, "kernel": "python3",
                     "files": {}, "fetch_files": []},
    "/get_prompts": {"offset": 0, "limit": 1000000},
    "/get_prompt_by_id": {},
    "/submit": {},
}  # fmt: skip
_CONFIG_DEFAULTS = {
    "dataset_type": None, "language": None, "locale": None, "is_fewshot": None, "compile_timeout": None,
    "run_timeout": None, "custom_extract_logic": None, "provided_data": None, "extra": {},
}  # fmt: skip


def _as_read(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """What the server's models hold after reading ``body``: omitted fields take their defaults."""
    read = {**_SERVER_DEFAULTS[path], **body}
    if "config" in read:
        read["config"] = {**_CONFIG_DEFAULTS, **read["config"]}
    return read


CASES = [
    ("/run_code", "run_code", lambda m: m.RunCodeRequest(code="print(1)", language="python")),
    (
        "/run_code",
        "run_code",
        lambda m: m.RunCodeRequest(
            code="print(input())",
            language="bash",
            stdin="x",
            compile_timeout=3.5,
            run_timeout=2,
            files={"a/b.txt": "aGk=", "skip": None},
            fetch_files=["a/b.txt"],
        ),
    ),
    ("/run_jupyter", "run_jupyter", lambda m: m.RunJupyterRequest(cells=["1", "print(2)"], total_timeout=9)),
    ("/get_prompts", "get_prompts", lambda m: m.GetPromptsRequest(dataset="mbpp", config=m.TestConfig(), limit=2)),
    (
        "/get_prompt_by_id",
        "get_prompt_by_id",
        lambda m: m.GetPromptByIdRequest(dataset="cruxeval", id="sample_1", config=m.TestConfig(locale="en")),
    ),
    (
        "/submit",
        "submit",
        lambda m: m.SubmitRequest(
            dataset="mbpp",
            id=11,
            completion="def func_11(x): return x + 11",
            config=m.TestConfig(run_timeout=5, extra={"k": 1}),
        ),
    ),
]


# The SDK's pydantic models take dicts for nested models, strings for enums, ints and numeric strings for floats.
SDK_INPUT_FORMS = [
    ("/get_prompts", "get_prompts", lambda m: m.GetPromptsRequest(dataset="mbpp", config={}, limit=2)),
    (
        "/get_prompt_by_id",
        "get_prompt_by_id",
        lambda m: m.GetPromptByIdRequest(dataset="mbpp", id=12, config={"locale": "en", "is_fewshot": "false"}),
    ),
    (
        "/submit",
        "submit",
        lambda m: m.SubmitRequest(
            dataset="mbpp",
            id=11,
            completion="def func_11(x): return x + 11",
            config={"run_timeout": 5, "compile_timeout": "7.5", "language": "python", "extra": {"k": 1}},
        ),
    ),
    ("/get_prompt_by_id", "get_prompt_by_id", lambda m: m.GetPromptByIdRequest(dataset="mbpp", id="12", config={})),
    ("/submit", "submit", lambda m: m.SubmitRequest(dataset="mbpp", id=11.0, completion="x", config={})),
    (
        "/get_prompt_by_id",
        "get_prompt_by_id",
        lambda m: m.GetPromptByIdRequest(dataset="cruxeval", id="sample_1", config={}),
    ),
    ("/run_code", "run_code", lambda m: m.RunCodeRequest(code="print(1)", language="python", run_timeout="3")),
    ("/run_jupyter", "run_jupyter", lambda m: m.RunJupyterRequest(cells=["1"], cell_timeout=2, total_timeout="9")),
]


@pytest.mark.parametrize(("path", "func", "make"), CASES + SDK_INPUT_FORMS)
def test_official_sdk_and_aioagents_send_bodies_the_server_reads_identically(
    srv: FakeSandboxFusionServer, path: str, func: str, make: Any
) -> None:
    getattr(official, func)(make(official), endpoint=srv.url)
    getattr(compat, func)(make(compat), endpoint=srv.url)
    theirs, ours = (r.json() for r in srv.requests_to(path)[-2:])
    assert _as_read(path, ours) == _as_read(path, theirs)
    # A field we send that the SDK does not must be one whose server default we send.
    for field in set(ours) - set(theirs):
        assert ours[field] == _SERVER_DEFAULTS[path][field]


# -- the SDK's input forms, and what *_safe may swallow ---------------------------------------------------------
_MBPP_11 = "```python\ndef func_11(x):\n    return x + 11\n```"


def test_every_dataset_call_accepts_config_as_a_dict(srv: FakeSandboxFusionServer) -> None:
    assert [p.id for p in get_prompts(GetPromptsRequest(dataset="mbpp", config={}, limit=2))] == [11, 12]
    assert get_prompt_by_id(GetPromptByIdRequest(dataset="mbpp", id=12, config={})).id == 12
    assert submit(SubmitRequest(dataset="mbpp", id=11, completion=_MBPP_11, config={})).accepted


def test_submit_safe_with_a_dict_config_accepts_a_correct_answer(srv: FakeSandboxFusionServer) -> None:
    result = submit_safe(SubmitRequest(dataset="mbpp", id=11, completion=_MBPP_11, config={"run_timeout": 10}))
    assert result.accepted is True
    assert result.tests
    assert all(t.passed for t in result.tests)


def test_async_twins_accept_a_dict_config(srv: FakeSandboxFusionServer) -> None:
    async def main() -> tuple[Any, ...]:
        return (
            await compat.get_prompts_async(GetPromptsRequest(dataset="mbpp", config={}, limit=1)),
            await compat.submit_safe_async(SubmitRequest(dataset="mbpp", id=11, completion=_MBPP_11, config={})),
        )

    prompts, safe = asyncio.run(main())
    assert len(prompts) == 1
    assert safe.accepted is True


def test_an_sdk_request_object_is_accepted_by_the_compat_functions(srv: FakeSandboxFusionServer) -> None:
    request = official.SubmitRequest(dataset="mbpp", id=11, completion=_MBPP_11, config=official.TestConfig())
    assert compat.submit(request).accepted


def test_submit_safe_lets_a_bug_in_our_code_propagate(srv: FakeSandboxFusionServer) -> None:
    # An object that cannot be encoded makes the client itself raise: that is a bug, never a rejected answer.
    request = SubmitRequest(dataset="mbpp", id=11, completion=object(), config={})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        submit_safe(request, max_attempts=1)
    with pytest.raises(TypeError):
        asyncio.run(compat.submit_safe_async(request, max_attempts=1))


def test_submit_safe_positional_arguments_as_the_sdk(srv: FakeSandboxFusionServer) -> None:
    request = SubmitRequest(dataset="nope", id=4, completion="x", config={})
    assert submit_safe(request, srv.url, 1, 5.0).accepted is False


def test_enum_strings_build_responses_that_summarize_as_the_sdks() -> None:
    fields: dict[str, Any] = {
        "status": "Failed",
        "message": "",
        "run_result": {"status": "TimeLimitExceeded", "execution_time": 1},
    }
    theirs = official.summary_run_code_result(
        official.RunCodeResponse(**fields), official.SummaryMapping(RunTimeout="t")
    )
    ours = compat.summary_run_code_result(compat.RunCodeResponse(**fields), compat.SummaryMapping(RunTimeout="t"))
    assert ours == theirs == "t"


def test_get_metrics_request_takes_results_as_dicts() -> None:
    result = {
        "id": 11,
        "accepted": True,
        "extracted_code": "x",
        "tests": [{"passed": True, "exec_info": {"status": "Success", "message": ""}}],
    }
    request = compat.GetMetricsRequest(dataset="mbpp", config={}, results=[result])
    assert request.results[0].tests[0].exec_info.status is compat.RunStatus.Success
    assert request.config == TestConfig()


@pytest.mark.parametrize(
    "make",
    [
        lambda: GetPromptsRequest(dataset="mbpp", config=3),
        lambda: RunCodeRequest(code="x", language="python", run_timeout="soon"),
        lambda: compat.RunCodeResponse(status="Done", message=""),
        lambda: TestConfig(is_fewshot="maybe"),
        lambda: GetPromptsRequest(dataset="mbpp", config={}, limit=1.5),
    ],
)
def test_input_the_sdk_refuses_raises_a_value_error(make: Any) -> None:
    with pytest.raises(ValueError, match=r"."):  # a ValueError, as pydantic's ValidationError is
        make()


def test_the_sdks_extra_languages_are_left_to_the_server() -> None:
    for language in ("python2", "gtest", "react"):
        assert RunCodeRequest(code="x", language=language).language == language


# -- the public surface against the installed SDK ---------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(official.__all__))
def test_every_sdk_name_is_exported(name: str) -> None:
    assert name in compat.__all__
    assert hasattr(compat, name)


@pytest.mark.parametrize("name", sorted(n for n in official.__all__ if inspect.isfunction(getattr(official, n))))
def test_every_sdk_function_takes_the_sdks_parameters_in_the_same_positions(name: str) -> None:
    theirs = list(inspect.signature(getattr(official, name)).parameters.values())
    ours = list(inspect.signature(getattr(compat, name)).parameters.values())
    for i, param in enumerate(theirs):
        assert ours[i].name == param.name
        assert ours[i].kind == param.kind
        if param.default is not inspect.Parameter.empty and param.default is not None:
            assert ours[i].default == param.default
    assert all(p.default is not inspect.Parameter.empty for p in ours[len(theirs) :])


@pytest.mark.parametrize(
    "name",
    sorted(
        n
        for n in official.__all__
        if inspect.isclass(getattr(official, n)) and hasattr(getattr(official, n), "__fields__")
    ),
)
def test_every_sdk_model_field_is_a_field_of_ours(name: str) -> None:
    ours = {f.name for f in attrs.fields(getattr(compat, name))}
    assert set(getattr(official, name).__fields__) <= ours


# -- which client a call takes ------------------------------------------------------------------------------------
@pytest.fixture
def counted() -> Iterator[tuple[FakeSandboxFusionServer, set[Any]]]:
    """A fake that records the client end of every connection it serves."""
    peers: set[Any] = set()
    server = FakeSandboxFusionServer(realtime=True)

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        return await handler(request)

    server.app.middlewares.append(record)
    with server.in_thread():
        set_endpoint(server.url)
        yield server, peers


def test_blocking_calls_share_one_pooled_client(counted: tuple[FakeSandboxFusionServer, set[Any]]) -> None:
    _, peers = counted
    for i in range(3):
        assert run_code(RunCodeRequest(code=f"print({i})", language="python")).run_result.stdout == f"{i}\n"  # type: ignore[union-attr]
    assert len(peers) == 1


def test_async_calls_on_the_callers_loop_take_a_client_each(counted: tuple[FakeSandboxFusionServer, set[Any]]) -> None:
    _, peers = counted

    async def main() -> None:
        for i in range(3):
            await compat.run_code_async(RunCodeRequest(code=f"print({i})", language="python"))

    asyncio.run(main())
    assert len(peers) == 3


def test_each_blocking_function_names_its_async_twin_and_shares_its_signature() -> None:
    for name in ("run_code", "run_jupyter", "get_prompts", "get_prompt_by_id", "submit", "submit_safe"):
        blocking, twin = getattr(compat, name), getattr(compat, f"{name}_async")
        assert blocking.__aioagents_async__ is twin
        assert inspect.signature(blocking) == inspect.signature(twin)
        assert blocking.__name__ == name
        assert inspect.getdoc(blocking)


def test_max_attempts_none_still_sends_the_client_timeout(srv: FakeSandboxFusionServer) -> None:
    with pytest.raises(APITimeoutError):
        run_code(
            RunCodeRequest(code="import time; time.sleep(4); print(123)", language="python"),
            max_attempts=None,  # type: ignore[arg-type]
            client_timeout=1,
        )
