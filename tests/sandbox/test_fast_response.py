"""The fast build of /run_code's answer equals the converter's, and steps aside for anything unusual."""

from __future__ import annotations

import copy
from typing import Any

import aiohttp
import pytest

from aioagents._converter import structure, unstructure
from aioagents.local import LocalSandbox
from aioagents.sandbox import RunCodeRequest, RunCodeResponse
from aioagents.sandbox.models import fast_run_code_response, run_code_body

STEP = {"status": "Finished", "execution_time": 0.013, "return_code": 0, "stdout": "1\n", "stderr": ""}
BODY: dict[str, Any] = {
    "status": "Success", "message": "", "compile_result": None, "run_result": STEP,
    "executor_pod_name": None, "files": {"out.txt": "aGk="},
}  # fmt: skip


def variant(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


COMMON = [
    BODY,
    variant(("status",), "Failed"),
    variant(("compile_result",), {**STEP, "status": "TimeLimitExceeded", "return_code": None, "stdout": None}),
    variant(("run_result",), None),
    variant(("run_result", "execution_time"), None),
    variant(("executor_pod_name",), "pod-1"),
    variant(("files",), {}),
    variant(("run_result",), {**STEP, "cpu_time": 0.004}),  # the embedded server's extra
]
UNUSUAL = [
    variant(("run_result", "execution_time"), 1),  # an int where a float belongs
    variant(("run_result", "return_code"), True),
    variant(("run_result", "return_code"), 1.0),
    variant(("run_result", "status"), "Exploded"),
    variant(("status",), "Unknown"),
    variant(("run_result",), {**STEP, "cpu_time": 1}),
    variant(("run_result",), {**STEP, "pid": 1}),
    {**BODY, "extra": 1},
    {k: v for k, v in BODY.items() if k != "files"},
    variant(("files",), {"a": None}),
    variant(("message",), None),
    [BODY],
]


@pytest.mark.parametrize("body", COMMON)
def test_the_common_shape_is_built_exactly_as_the_converter_builds_it(body: dict[str, Any]) -> None:
    fast = fast_run_code_response(body)
    assert fast is not None
    assert fast == structure(body, RunCodeResponse)


@pytest.mark.parametrize("body", UNUSUAL)
def test_anything_unusual_is_left_to_the_converter(body: Any) -> None:
    assert fast_run_code_response(body) is None


async def test_real_answers_take_the_fast_path() -> None:
    async with LocalSandbox() as sandbox, aiohttp.ClientSession() as session:
        for code in ("print(1)", "import sys; sys.exit(3)", "while True: pass"):
            payload = {"code": code, "language": "python", "run_timeout": 1}
            async with session.post(f"{sandbox.url}/run_code", json=payload) as raw:
                body = await raw.json()
            fast = fast_run_code_response(body)
            assert fast is not None, body
            assert fast == structure(body, RunCodeResponse)


@pytest.mark.parametrize(
    "request_",
    [
        RunCodeRequest(code="print(1)", language="python"),
        RunCodeRequest(
            code="cat a b",
            language="bash",
            stdin="in",
            files={"a": b"\x00\x01", "b": "aGk=", "c": None},
            fetch_files=["out.txt"],
            compile_timeout=1,
            run_timeout="2.5",  # type: ignore[arg-type]  # the SDK's forms are accepted
            memory_limit_MB=128,
        ),
    ],
)
def test_the_request_body_is_written_exactly_as_the_converter_writes_it(request_: RunCodeRequest) -> None:
    body = run_code_body(request_)
    assert body == unstructure(request_)
    assert list(body) == list(unstructure(request_))  # the same key order on the wire
    # Copies: the body handed to the encoder shares no mutable value with the request.
    assert body["files"] is not request_.files
    assert body["fetch_files"] is not request_.fetch_files
