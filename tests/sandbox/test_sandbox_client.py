"""SandboxClient against the contract-faithful fake server, over loopback: every route and model field."""

from __future__ import annotations

import base64
import logging

import pytest

from aioagents import (
    APITimeoutError,
    BadRequestError,
    InternalServerError,
    InvalidRequestError,
    UnprocessableEntityError,
)
from aioagents.sandbox import (
    CommandRunStatus,
    EvalResult,
    GetMetricsFunctionRequest,
    GetMetricsRequest,
    GetPromptByIdRequest,
    GetPromptsRequest,
    Prompt,
    PromptMessage,
    RunCodeRequest,
    RunJupyterRequest,
    RunStatus,
    SandboxClient,
    SandboxError,
    SubmitRequest,
    TestConfig,
)
from aioagents.testing import Fault
from aioagents.testing._sandbox_fusion import FakeSandboxFusionServer


async def test_run_code_returns_stdout_and_every_result_field(client: SandboxClient) -> None:
    result = await client.run_code("print(123)", language="python")
    assert result.status is RunStatus.Success
    assert result.ok
    assert result.message == ""
    assert result.compile_result is None
    run = result.run_result
    assert run is not None
    assert run.status is CommandRunStatus.Finished
    assert run.return_code == 0
    assert run.stdout == "123\n"
    assert run.stderr == ""
    assert isinstance(run.execution_time, float)
    assert result.stdout == "123\n"
    assert result.files == {}


async def test_a_failing_program_is_returned_not_raised(client: SandboxClient) -> None:
    result = await client.run_code("raise ValueError('boom')")
    assert result.status is RunStatus.Failed
    assert result.run_result is not None
    assert result.run_result.return_code != 0
    assert "ValueError" in result.stderr


async def test_timeout_gives_tle_with_null_return_code(client: SandboxClient) -> None:
    result = await client.run_code("print('start')\nimport time\ntime.sleep(5)", run_timeout=1)
    assert result.status is RunStatus.Failed
    assert result.run_result is not None
    assert result.run_result.status is CommandRunStatus.TimeLimitExceeded
    assert result.run_result.return_code is None
    assert result.stdout == "start\n"


async def test_compiled_language_reports_compile_result(client: SandboxClient) -> None:
    result = await client.run_code('int main() { std::cout << "hi"; }', language="cpp")
    assert result.compile_result is not None
    assert result.compile_result.status is CommandRunStatus.Finished


async def test_sandbox_error_raises_typed_error_with_the_response(client: SandboxClient) -> None:
    with pytest.raises(SandboxError) as info:
        await client.run_code("select 1", language="sql")
    assert info.value.response is not None
    assert info.value.response.status is RunStatus.SandboxError
    assert len(str(info.value)) < 700


async def test_unknown_language_is_rejected_before_sending(client: SandboxClient, srv: FakeSandboxFusionServer) -> None:
    with pytest.raises(InvalidRequestError, match="unknown language 'js'"):
        await client.run_code("console.log(1)", language="js")
    assert srv.requests_to("/run_code") == []


async def test_files_are_base64_encoded_and_fetched_back(client: SandboxClient) -> None:
    result = await client.run_code(
        "print(open('data/in.txt').read())",
        files={"data/in.txt": b"hello bytes"},
        fetch_files=["data/in.txt", "missing.txt"],
    )
    assert result.file_bytes("data/in.txt") == b"hello bytes"
    assert "missing.txt" not in result.files


async def test_request_object_form_sends_every_field(client: SandboxClient, srv: FakeSandboxFusionServer) -> None:
    request = RunCodeRequest(
        code="print(input())",
        language="python",
        stdin="65535",
        compile_timeout=3,
        run_timeout=4,
        memory_limit_MB=128,
        files={"a.txt": base64.b64encode(b"x").decode()},
        fetch_files=["a.txt"],
    )
    result = await client.run_code(request)
    assert result.stdout == "65535\n"
    sent = srv.requests_to("/run_code")[-1].json()
    assert sent == {
        "code": "print(input())",
        "language": "python",
        "compile_timeout": 3,
        "run_timeout": 4,
        "memory_limit_MB": 128,
        "stdin": "65535",
        "files": {"a.txt": "eA=="},
        "fetch_files": ["a.txt"],
    }


async def test_null_result_fields_decode(client: SandboxClient) -> None:
    result = await client.run_code("print(1)  # fake: nulls")
    assert result.run_result is not None
    assert result.run_result.stdout is None
    assert result.run_result.execution_time is None
    assert result.stdout == ""


async def test_cpu_time_from_other_servers_decodes(client: SandboxClient) -> None:
    result = await client.run_code("print(1)  # fake: cpu_time")
    assert result.run_result is not None
    assert isinstance(result.run_result.cpu_time, float)


async def test_run_jupyter_returns_display_and_errors_per_cell(client: SandboxClient) -> None:
    result = await client.run_jupyter(["a = 123", "a", "print(a)", "raise RuntimeError('bad')", "print('after')"])
    assert result.status is not RunStatus.SandboxError
    assert len(result.cells) == 5
    assert result.cells[1].display == [{"text/plain": "123"}]
    assert result.cells[2].stdout == "123\n"
    assert result.cells[3].error[0]["ename"] == "RuntimeError"
    assert result.cells[4].stdout == "after\n"


async def test_run_jupyter_request_form(client: SandboxClient, srv: FakeSandboxFusionServer) -> None:
    await client.run_jupyter(RunJupyterRequest(cells=["1"], cell_timeout=2, total_timeout=9))
    sent = srv.requests_to("/run_jupyter")[-1].json()
    assert sent["cells"] == ["1"]
    assert sent["cell_timeout"] == 2
    assert sent["total_timeout"] == 9
    assert sent["kernel"] == "python3"


async def test_run_jupyter_rejects_a_single_string(client: SandboxClient) -> None:
    with pytest.raises(InvalidRequestError):
        await client.run_jupyter("print(1)")  # type: ignore[arg-type]


async def test_ping(client: SandboxClient) -> None:
    assert await client.ping() is True


async def test_list_datasets(client: SandboxClient) -> None:
    datasets = await client.list_datasets()
    assert "mbpp" in datasets
    assert len(datasets) == 53


async def test_list_ids_int_and_str(client: SandboxClient) -> None:
    assert await client.list_ids(GetPromptsRequest(dataset="mbpp")) == list(range(11, 31))
    ids = await client.list_ids(GetPromptsRequest(dataset="cruxeval"))
    assert ids[0] == "sample_0"


async def test_get_prompts_with_message_list_prompts(client: SandboxClient) -> None:
    prompts = await client.get_prompts(GetPromptsRequest(dataset="code_contests", offset=2, limit=3))
    assert [p.id for p in prompts] == [2, 3, 4]
    first = prompts[0].prompt
    assert isinstance(first, list)
    assert first[0] == PromptMessage(role="system", content="You are a competitive programmer.")


async def test_get_prompt_by_id(client: SandboxClient) -> None:
    prompt = await client.get_prompt_by_id(GetPromptByIdRequest(dataset="mbpp", id=11))
    assert isinstance(prompt, Prompt)
    assert prompt.id == 11
    assert isinstance(prompt.prompt, str)
    assert prompt.labels["entry_point"] == "func_11"


async def test_provided_data_needs_no_database(client: SandboxClient) -> None:
    rows = [{"id": "r1", "prompt": "p", "labels": {}}]
    config = TestConfig(dataset_type="MBPPDataset", provided_data=rows)
    prompts = await client.get_prompts(GetPromptsRequest(dataset="custom", config=config))
    assert prompts == [Prompt(id="r1", prompt="p", labels={})]


async def test_submit_accepts_a_correct_completion(client: SandboxClient) -> None:
    result = await client.submit(
        SubmitRequest(dataset="mbpp", id=11, completion="```python\ndef func_11(x):\n    return x + 11\n```")
    )
    assert isinstance(result, EvalResult)
    assert result.id == 11
    assert result.accepted is True
    assert "func_11" in result.extracted_code
    assert result.tests
    assert result.tests[0].passed
    assert result.tests[0].exec_info.status is RunStatus.Success


async def test_submit_rejects_a_wrong_completion(client: SandboxClient) -> None:
    result = await client.submit(SubmitRequest(dataset="mbpp", id=12, completion="def wrong_name(x):\n    return 0\n"))
    assert result.accepted is False


async def test_submit_safe_turns_failures_into_rejections(client: SandboxClient) -> None:
    result = await client.submit_safe(SubmitRequest(dataset="no_such_dataset", id=1, completion="x"), max_attempts=1)
    assert result == EvalResult(id=1, accepted=False, extracted_code="", tests=[])


async def test_get_metrics_and_metrics_function(client: SandboxClient) -> None:
    metrics = await client.get_metrics(GetMetricsRequest(dataset="mbpp"))
    assert isinstance(metrics, dict)
    assert await client.get_metrics_function(GetMetricsFunctionRequest(dataset="mbpp")) is None


async def test_unknown_dataset_is_a_400_and_not_retried(client: SandboxClient, srv: FakeSandboxFusionServer) -> None:
    with pytest.raises(BadRequestError, match="no eval class found"):
        await client.get_prompts(GetPromptsRequest(dataset="nope"))
    assert len(srv.requests_to("/get_prompts")) == 1


async def test_422_is_never_retried(client: SandboxClient, srv: FakeSandboxFusionServer) -> None:
    srv.inject(Fault.status_code(422, {"detail": [{"loc": ["body", "code"], "msg": "Field required"}]}))
    with pytest.raises(UnprocessableEntityError, match="code: Field required"):
        await client.run_code("print(1)")
    assert len(srv.requests_to("/run_code")) == 1


async def test_unhandled_500_drops_the_connection_and_the_next_call_works(
    client: SandboxClient, srv: FakeSandboxFusionServer
) -> None:
    with pytest.raises(InternalServerError):
        await client.get_prompt_by_id(
            GetPromptByIdRequest(dataset="mbpp", id=999_999),
        )
    # uvicorn closed that keep-alive connection; a pooled reuse would fail with "Can not write request body".
    result = await client.run_code("print(2)")
    assert result.stdout == "2\n"


async def test_5xx_then_success_is_retried(
    client: SandboxClient, srv: FakeSandboxFusionServer, instant_retries: None
) -> None:
    srv.inject(Fault.status_code(502), path="/run_code", times=2)
    result = await client.run_code("print(3)")
    assert result.stdout == "3\n"
    assert len(srv.requests_to("/run_code")) == 3


async def test_client_timeout_is_not_retried_by_default() -> None:
    async with FakeSandboxFusionServer(realtime=True) as srv, SandboxClient(srv.url) as client:
        with pytest.raises(APITimeoutError):
            await client.run_code("import time\ntime.sleep(3)", run_timeout=5, client_timeout=0.5)
        assert len(srv.requests_to("/run_code")) == 1


async def test_retry_after_a_timeout_is_opt_in_and_logged(
    caplog: pytest.LogCaptureFixture, instant_retries: None
) -> None:
    async with (
        FakeSandboxFusionServer(realtime=True) as srv,
        SandboxClient(srv.url, retry_timeouts=True, max_attempts=2) as client,
    ):
        with caplog.at_level(logging.WARNING, logger="aioagents"), pytest.raises(APITimeoutError):
            await client.run_code("import time\ntime.sleep(3)", run_timeout=5, client_timeout=0.3)
        assert len(srv.requests_to("/run_code")) == 2
    assert any("may still be running" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("compile_timeout", "run_timeout", "expected"),
    [(10, 10, 60.0), (30, 60, 95.0), (0, 200, 205.0)],
)
def test_default_run_timeout_outlasts_the_run(compile_timeout: float, run_timeout: float, expected: float) -> None:
    client = SandboxClient("http://127.0.0.1:9")
    assert client._run_options({}, None, None, compile_timeout + run_timeout + 5.0)["timeout"] == expected


def test_endpoint_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SANDBOX_FUSION_ENDPOINT", raising=False)
    monkeypatch.delenv("SANDBOX_FUSION_DATASET_ENDPOINT", raising=False)
    assert SandboxClient().endpoint == "http://localhost:8080"
    monkeypatch.setenv("SANDBOX_FUSION_ENDPOINT", "http://env:1/")
    assert SandboxClient().endpoint == "http://env:1"
    assert SandboxClient().dataset_endpoint == "http://env:1"
    monkeypatch.setenv("SANDBOX_FUSION_DATASET_ENDPOINT", "http://data:2")
    assert SandboxClient().dataset_endpoint == "http://data:2"
    assert SandboxClient("http://arg:3").endpoint == "http://arg:3"
    assert SandboxClient("http://arg:3", dataset_endpoint="http://d:4").dataset_endpoint == "http://d:4"


async def test_per_call_endpoint_overrides_the_client(srv: FakeSandboxFusionServer) -> None:
    async with SandboxClient("http://127.0.0.1:9") as client:
        result = await client.run_code("print(5)", endpoint=srv.url)
        assert result.stdout == "5\n"
        assert await client.get_prompt_by_id(GetPromptByIdRequest(dataset="mbpp", id=11), endpoint=srv.url)


async def test_dataset_calls_go_to_the_dataset_endpoint(srv: FakeSandboxFusionServer) -> None:
    async with SandboxClient("http://127.0.0.1:9", dataset_endpoint=srv.url) as client:
        prompts = await client.get_prompts(GetPromptsRequest(dataset="mbpp", limit=2))
        assert len(prompts) == 2


async def test_run_many_yields_every_index_with_per_item_errors(client: SandboxClient) -> None:
    requests = [
        RunCodeRequest(code=f"print({i})", language="python") if i % 10 else RunCodeRequest(code="x", language="sql")
        for i in range(60)
    ]
    seen = {}
    async for item in client.run_many(requests, concurrency=8):
        seen[item.index] = item
    assert sorted(seen) == list(range(60))
    for i, item in seen.items():
        if i % 10:
            assert item.ok
            assert item.unwrap().stdout == f"{i}\n"
        else:
            assert isinstance(item.error, SandboxError)


def test_repr_shows_endpoints_only() -> None:
    assert repr(SandboxClient("http://h:1", dataset_endpoint="http://d:2")) == (
        "SandboxClient(endpoint='http://h:1', dataset_endpoint='http://d:2')"
    )
