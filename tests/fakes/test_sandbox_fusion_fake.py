"""The SandboxFusion fake speaks the real wire: the official ``sandbox-fusion`` SDK (0.3.7) is the client here.

Sync SDK calls go to a fake running in a background thread (``.in_thread()``); the ``*_async`` calls go to a fake
on the test's own loop. Shapes the SDK cannot express (message-list prompts, 422 bodies, the dropped connection)
are checked with a raw aiohttp client or socket.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import sandbox_fusion as sf

from aioagents.testing._sandbox_fusion import DATASET_IDS, LANGUAGES, FakeSandboxFusionServer
from aioagents.testing._server import FakeServer, Fault

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def sync_srv() -> Iterator[FakeServer]:
    with FakeSandboxFusionServer().in_thread() as srv:
        yield srv


@pytest.fixture
async def srv() -> AsyncIterator[FakeSandboxFusionServer]:
    async with FakeSandboxFusionServer() as server:
        yield server


def _run(srv: FakeServer, code: str, language: str = "python", **kw: object) -> sf.RunCodeResponse:
    return sf.run_code(sf.RunCodeRequest(code=code, language=language, **kw), endpoint=srv.url, max_attempts=1)


# -- run_code through the sync SDK ---------------------------------------------------------------------------
def test_print_succeeds_with_stdout(sync_srv: FakeServer) -> None:
    resp = _run(sync_srv, "print(123)")
    assert resp.status == sf.RunStatus.Success
    assert resp.message == ""
    assert resp.run_result is not None
    assert resp.run_result.status == sf.CommandRunStatus.Finished
    assert resp.run_result.return_code == 0
    assert resp.run_result.stdout == "123\n"
    assert resp.compile_result is None


def test_sdk_sends_every_field_and_fake_records_it(sync_srv: FakeServer) -> None:
    _run(sync_srv, "print('x')")
    sent = sync_srv.requests_to("/run_code")[-1].json()
    assert set(sent) >= {"code", "language", "compile_timeout", "run_timeout", "stdin", "files", "fetch_files"}


@pytest.mark.parametrize(
    ("language", "code", "stdout"),
    [
        ("nodejs", "console.log('hi');", "hi\n"),
        ("bash", "echo hello", "hello\n"),
        ("java", 'class Main { public static void main(String[] a) {\nSystem.out.println("j");\n} }', "j\n"),
        ("go", 'package main\nimport "fmt"\nfunc main() {\nfmt.Println("g")\n}', "g\n"),
        ("rust", 'fn main() {\nprintln!("r");\n}', "r\n"),
        ("cpp", "int main() {\nstd::cout << 7 << std::endl;\n}", "7\n"),
    ],
)
def test_print_rules_per_language(sync_srv: FakeServer, language: str, code: str, stdout: str) -> None:
    resp = _run(sync_srv, code, language)
    assert resp.status == sf.RunStatus.Success
    assert resp.run_result is not None
    assert resp.run_result.stdout == stdout


def test_compiled_language_reports_compile_result(sync_srv: FakeServer) -> None:
    resp = _run(sync_srv, "int main() {\nstd::cout << 1 << std::endl;\n}", "cpp")
    assert resp.compile_result is not None
    assert resp.compile_result.return_code == 0


def test_compile_error_has_no_run_result(sync_srv: FakeServer) -> None:
    resp = _run(sync_srv, "int main() { return 0; ", "cpp")
    assert resp.status == sf.RunStatus.Failed
    assert resp.compile_result is not None
    assert resp.compile_result.return_code != 0
    assert resp.run_result is None
    assert sf.summary_run_code_result(resp, sf.SummaryMapping(CompileFailed="CE")) == "CE"


def test_sleep_beyond_run_timeout_is_tle_with_null_return_code(sync_srv: FakeServer) -> None:
    resp = _run(sync_srv, "print('start')\nimport time\ntime.sleep(5)\nprint('end')", run_timeout=1)
    assert resp.status == sf.RunStatus.Failed
    assert resp.run_result is not None
    assert resp.run_result.status == sf.CommandRunStatus.TimeLimitExceeded
    assert resp.run_result.return_code is None
    assert resp.run_result.stdout == "start\n"
    assert sf.summary_run_code_result(resp, sf.SummaryMapping(RunTimeout="TLE")) == "TLE"


def test_run_timeout_zero_is_immediate_tle(sync_srv: FakeServer) -> None:
    resp = _run(sync_srv, "print(1)", run_timeout=0)
    assert resp.run_result is not None
    assert resp.run_result.status == sf.CommandRunStatus.TimeLimitExceeded


@pytest.mark.parametrize(
    ("code", "needle"),
    [
        ("raise ValueError('bad value')", "ValueError: bad value"),
        ("assert 1 == 2, 'nope'", "AssertionError: nope"),
        ("def f(:\n    pass", "SyntaxError"),
        ("print(1 / 0)", "ZeroDivisionError"),
    ],
)
def test_python_failures_are_failed_with_stderr(sync_srv: FakeServer, code: str, needle: str) -> None:
    resp = _run(sync_srv, code)
    assert resp.status == sf.RunStatus.Failed
    assert resp.run_result is not None
    assert resp.run_result.status == sf.CommandRunStatus.Finished
    assert resp.run_result.return_code == 1
    assert needle in (resp.run_result.stderr or "")


def test_exit_code_is_the_return_code(sync_srv: FakeServer) -> None:
    resp = _run(sync_srv, "import sys\nsys.exit(3)")
    assert resp.status == sf.RunStatus.Failed
    assert resp.run_result is not None
    assert resp.run_result.return_code == 3


def test_stdin_is_echoed(sync_srv: FakeServer) -> None:
    resp = _run(sync_srv, "print(input())", stdin="65535")
    assert resp.run_result is not None
    assert resp.run_result.stdout == "65535\n"


def test_sql_is_a_sandbox_error_that_the_sdk_raises(sync_srv: FakeServer) -> None:
    with pytest.raises(Exception, match="Sandbox responded with error: exception on running code"):
        _run(sync_srv, "SELECT 1;", "sql")


def test_invalid_base64_file_is_a_sandbox_error(sync_srv: FakeServer) -> None:
    with pytest.raises(Exception, match="Sandbox responded with error"):
        _run(sync_srv, "print(1)", files={"a.txt": "!!!not base64"})


def test_files_are_fetched_back_and_missing_ones_omitted(sync_srv: FakeServer) -> None:
    payload = base64.b64encode(b"\x00\x01binary").decode()
    resp = _run(
        sync_srv,
        "open('out.txt', 'w').write('written')",
        files={"dir/sub/in.bin": payload, "/mnt/b": payload, "skip.IGNORE_THIS_FILE": payload, "none": None},
        fetch_files=["dir/sub/in.bin", "/mnt/b", "out.txt", "missing.txt", "skip.IGNORE_THIS_FILE"],
    )
    assert resp.status == sf.RunStatus.Success
    assert resp.files == {
        "dir/sub/in.bin": payload,
        "/mnt/b": payload,
        "out.txt": base64.b64encode(b"written").decode(),
    }


def test_unknown_extra_fields_and_nulls_are_accepted_by_the_sdk(sync_srv: FakeServer) -> None:
    resp = _run(sync_srv, "# fake: cpu_time\n# fake: nulls\nprint(1)")
    assert resp.run_result is not None
    assert resp.run_result.cpu_time is not None
    assert resp.run_result.stdout is None
    assert resp.run_result.execution_time is None


def test_executor_pod_name_is_sent() -> None:
    with FakeSandboxFusionServer(executor_pod_name="pod-7").in_thread() as srv:
        assert _run(srv, "print(1)").executor_pod_name == "pod-7"


def test_sdk_retries_an_injected_503_then_succeeds(sync_srv: FakeServer) -> None:
    sync_srv.inject(Fault.status_code(503), path="/run_code")
    resp = sf.run_code(sf.RunCodeRequest(code="print(2)", language="python"), endpoint=sync_srv.url, max_attempts=2)
    assert resp.run_result is not None
    assert resp.run_result.stdout == "2\n"
    assert len(sync_srv.requests_to("/run_code")) == 2


# -- run_jupyter ---------------------------------------------------------------------------------------------
def test_jupyter_cells_share_state_and_report_display_stderr_and_errors(sync_srv: FakeServer) -> None:
    cells = ["a = 123", "a", "print(a)", "import sys; sys.stderr.write('oops')", "raise AssertionError('x')", "'hello'"]
    resp = sf.run_jupyter(sf.RunJupyterRequest(cells=cells), endpoint=sync_srv.url, max_attempts=1)
    assert resp.status == sf.RunStatus.Success
    assert resp.driver is not None
    assert resp.driver.status == sf.CommandRunStatus.Finished
    out = resp.cells
    assert len(out) == 6
    assert out[1].display == [{"text/plain": "123"}]
    assert out[2].stdout == "123\n"
    assert out[3].stderr == "oops"
    assert out[4].error[0]["ename"] == "AssertionError"
    assert "\x1b[" in "".join(out[4].error[0]["traceback"])  # real ESC characters, as IPython sends them
    assert out[5].display == [{"text/plain": "'hello'"}]  # a failing cell does not stop the next ones


def test_jupyter_matplotlib_display_is_a_valid_png(sync_srv: FakeServer) -> None:
    cells = ["import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"]
    resp = sf.run_jupyter(sf.RunJupyterRequest(cells=cells), endpoint=sync_srv.url, max_attempts=1)
    (display,) = resp.cells[0].display
    assert display["text/plain"].startswith("<Figure")
    assert base64.b64decode(display["image/png"]).startswith(PNG_MAGIC)


def test_jupyter_driver_killed_after_total_timeout_loses_every_cell(sync_srv: FakeServer) -> None:
    req = sf.RunJupyterRequest(cells=["print(1)", "import time\ntime.sleep(30)"], total_timeout=5)
    resp = sf.run_jupyter(req, endpoint=sync_srv.url, max_attempts=1)
    assert resp.status == sf.RunStatus.Failed
    assert resp.driver is not None
    assert resp.driver.status == sf.CommandRunStatus.TimeLimitExceeded
    assert resp.cells == []


# -- the async SDK -------------------------------------------------------------------------------------------
async def test_async_run_code(srv: FakeSandboxFusionServer) -> None:
    resp = await sf.run_code_async(
        sf.RunCodeRequest(code="x = 2\nprint(x * 21)", language="python"), endpoint=srv.url, max_attempts=1
    )
    assert resp.run_result is not None
    assert resp.run_result.stdout == "42\n"


async def test_async_run_jupyter(srv: FakeSandboxFusionServer) -> None:
    resp = await sf.run_jupyter_async(sf.RunJupyterRequest(cells=["1 + 1"]), endpoint=srv.url, max_attempts=1)
    assert resp.cells[0].display == [{"text/plain": "2"}]


async def test_async_get_prompts_and_submit(srv: FakeSandboxFusionServer) -> None:
    prompts = await sf.get_prompts_async(
        sf.GetPromptsRequest(dataset="mbpp", config=sf.TestConfig(), offset=2, limit=3), endpoint=srv.url
    )
    assert [p.id for p in prompts] == [13, 14, 15]
    good = "```python\ndef func_13(x):\n    return x + 13\n```"
    result = await sf.submit_async(
        sf.SubmitRequest(dataset="mbpp", id=13, completion=good, config=sf.TestConfig()),
        endpoint=srv.url,
        max_attempts=1,
    )
    assert result.accepted is True
    assert result.tests[0].exec_info.status == sf.RunStatus.Success


async def test_async_sdk_rejects_a_422(srv: FakeSandboxFusionServer) -> None:
    req = sf.RunCodeRequest(code="print(1)", language="python2")  # in the SDK's Literal, not the server's
    with pytest.raises(Exception, match="Faas api responded with code 422"):
        await sf.run_code_async(req, endpoint=srv.url, max_attempts=1)


# -- datasets through the sync SDK ---------------------------------------------------------------------------
def test_mbpp_has_ids_11_to_30(sync_srv: FakeServer) -> None:
    prompts = sf.get_prompts(sf.GetPromptsRequest(dataset="mbpp", config=sf.TestConfig()), endpoint=sync_srv.url)
    assert [p.id for p in prompts] == list(range(11, 31))


def test_string_ids_are_served(sync_srv: FakeServer) -> None:
    req = sf.GetPromptByIdRequest(dataset="cruxeval", config=sf.TestConfig(), id="sample_3")
    prompt = sf.get_prompt_by_id(req, endpoint=sync_srv.url)
    assert prompt.id == "sample_3"
    assert "x * 3" in prompt.prompt


def test_submit_rejects_a_failing_completion(sync_srv: FakeServer) -> None:
    req = sf.SubmitRequest(
        dataset="mbpp",
        id=11,
        completion="```python\ndef func_11(x):\n    return 0\nraise ValueError('no')\n```",
        config=sf.TestConfig(),
    )
    result = sf.submit(req, endpoint=sync_srv.url, max_attempts=1)
    assert result.accepted is False
    assert result.tests[0].exec_info.status == sf.RunStatus.Failed


def test_submit_safe_swallows_an_unknown_dataset(sync_srv: FakeServer) -> None:
    req = sf.SubmitRequest(dataset="nope", id=1, completion="x", config=sf.TestConfig())
    result = sf.submit_safe(req, endpoint=sync_srv.url, max_attempts=1)
    assert result.accepted is False
    assert result.extracted_code == ""


def test_provided_data_needs_no_table(sync_srv: FakeServer) -> None:
    config = sf.TestConfig(dataset_type="MBPPDataset", provided_data=[{"id": 1, "prompt": "p", "labels": {}}])
    prompts = sf.get_prompts(sf.GetPromptsRequest(dataset="custom", config=config), endpoint=sync_srv.url)
    assert [(p.id, p.prompt) for p in prompts] == [(1, "p")]


# -- raw wire: shapes the SDK cannot express -----------------------------------------------------------------
async def _post(srv: FakeSandboxFusionServer, path: str, body: object) -> tuple[int, object]:
    async with aiohttp.ClientSession() as session, session.post(srv.url + path, json=body) as resp:
        return resp.status, await resp.json()


async def test_ping_is_the_json_string_pong(srv: FakeSandboxFusionServer) -> None:
    async with aiohttp.ClientSession() as session, session.get(srv.url + "/v1/ping") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert await resp.json() == "pong"


async def test_list_datasets_is_the_53_ids(srv: FakeSandboxFusionServer) -> None:
    async with aiohttp.ClientSession() as session, session.get(srv.url + "/list_datasets") as resp:
        ids = await resp.json()
    assert len(DATASET_IDS) == 53
    assert ids == list(DATASET_IDS)


async def test_list_ids(srv: FakeSandboxFusionServer) -> None:
    status, body = await _post(srv, "/list_ids", {"dataset": "cruxeval", "config": {}, "limit": 2})
    assert (status, body) == (200, ["sample_0", "sample_1"])


async def test_message_list_prompt(srv: FakeSandboxFusionServer) -> None:
    status, body = await _post(srv, "/get_prompt_by_id", {"dataset": "code_contests", "config": {}, "id": 4})
    assert status == 200
    assert isinstance(body, dict)
    assert [m["role"] for m in body["prompt"]] == ["system", "user"]


async def test_unknown_dataset_is_400(srv: FakeSandboxFusionServer) -> None:
    status, body = await _post(srv, "/get_prompts", {"dataset": "nope", "config": {}})
    assert (status, body) == (400, {"detail": "no eval class found for dataset nope"})


async def test_dataset_without_samples_is_500_without_traceback(srv: FakeSandboxFusionServer) -> None:
    status, body = await _post(srv, "/get_prompts", {"dataset": "humaneval_python", "config": {}})
    assert status == 500
    assert isinstance(body, dict)
    assert body["detail"].startswith("failed to request database")
    assert "traceback" not in body


async def test_metrics_routes(srv: FakeSandboxFusionServer) -> None:
    assert await _post(srv, "/get_metrics", {"dataset": "mbpp", "config": {}, "results": []}) == (200, {})
    assert await _post(srv, "/get_metrics_function", {"dataset": "mbpp", "config": {}}) == (
        200,
        {"function": None},
    )
    status, _ = await _post(srv, "/get_metrics_function", {"dataset": "nope", "config": {}})
    assert status == 400


async def test_unknown_prompt_id_is_500_with_traceback_then_the_socket_closes(
    srv: FakeSandboxFusionServer,
) -> None:
    body = json.dumps({"dataset": "mbpp", "config": {}, "id": 999}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", int(srv.url.rsplit(":", 1)[1]))
    try:
        writer.write(
            b"POST /get_prompt_by_id HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=5)  # returns only once the server closes
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500")
    assert b"connection: close" not in head.lower()  # uvicorn does not announce it
    parsed = json.loads(payload)
    assert parsed["detail"] == "list index out of range"
    assert isinstance(parsed["traceback"], list)


async def test_the_pooled_connection_fails_after_an_unhandled_500(srv: FakeSandboxFusionServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(srv.url + "/get_prompt_by_id", json={"dataset": "mbpp", "config": {}, "id": 1}) as r:
            assert r.status == 500
            await r.read()
        with pytest.raises(aiohttp.ClientError):
            async with session.post(srv.url + "/run_code", json={"code": "print(1)", "language": "python"}) as r:
                await r.read()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"language": "python"}, [("missing", ["body", "code"])]),
        ({"code": "x", "language": "js"}, [("literal_error", ["body", "language"])]),
        ({"code": "x", "language": "python", "run_timeout": None}, [("float_type", ["body", "run_timeout"])]),
        ({"code": 1, "language": "python", "files": {"a": 5}}, [
            ("string_type", ["body", "code"]), ("string_type", ["body", "files", "a"])
        ]),
        ([1], [("model_attributes_type", ["body"])]),
    ],
)  # fmt: skip
async def test_validation_errors_are_fastapi_422(
    srv: FakeSandboxFusionServer, body: object, expected: list[tuple[str, list[object]]]
) -> None:
    status, detail = await _post(srv, "/run_code", body)
    assert status == 422
    assert isinstance(detail, dict)
    assert [(e["type"], e["loc"]) for e in detail["detail"]] == expected
    assert all(e["url"].startswith("https://errors.pydantic.dev/") for e in detail["detail"])


async def test_literal_error_lists_every_language(srv: FakeSandboxFusionServer) -> None:
    _, detail = await _post(srv, "/run_code", {"code": "x", "language": "js"})
    assert isinstance(detail, dict)
    (err,) = detail["detail"]
    assert err["ctx"]["expected"].count("'") == 2 * len(LANGUAGES)
    assert err["msg"].endswith("'swift' or 'racket'")


async def test_union_id_error_names_both_branches(srv: FakeSandboxFusionServer) -> None:
    status, detail = await _post(srv, "/get_prompt_by_id", {"dataset": "mbpp", "config": {}, "id": None})
    assert status == 422
    assert isinstance(detail, dict)
    assert [e["loc"] for e in detail["detail"]] == [["body", "id", "int"], ["body", "id", "str"]]


async def test_bad_json_is_json_invalid(srv: FakeSandboxFusionServer) -> None:
    async with aiohttp.ClientSession() as session, session.post(srv.url + "/run_code", data=b"{bad") as resp:
        assert resp.status == 422
        (err,) = (await resp.json())["detail"]
    assert err["type"] == "json_invalid"
    assert err["loc"] == ["body", 1]


async def test_wrong_method_and_unknown_path(srv: FakeSandboxFusionServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(srv.url + "/run_code") as resp:
            assert (resp.status, await resp.json()) == (405, {"detail": "Method Not Allowed"})
        async with session.get(srv.url + "/playground") as resp:
            assert (resp.status, await resp.json()) == (404, {"detail": "Not Found"})


async def test_realtime_mode_really_waits(srv: FakeSandboxFusionServer) -> None:
    async with FakeSandboxFusionServer(realtime=True) as slow:
        started = asyncio.get_running_loop().time()
        status, body = await _post(
            slow, "/run_code", {"code": "import time\ntime.sleep(5)", "language": "python", "run_timeout": 0.3}
        )
        elapsed = asyncio.get_running_loop().time() - started
    assert status == 200
    assert isinstance(body, dict)
    assert body["run_result"]["status"] == "TimeLimitExceeded"
    assert elapsed >= 0.3
