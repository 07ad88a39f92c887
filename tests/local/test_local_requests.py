"""Bad requests get a clear 4xx with a JSON body, never a 500 or a traceback."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
from typing import Any

import aiohttp
import pytest

from aioagents.local import LocalSandbox


async def post(url: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.post(f"{url}{path}", **kw) as r:
        return r.status, await r.json(content_type=None)


def _locs(body: Any) -> list[list[Any]]:
    return [e["loc"] for e in body["detail"]]


async def test_invalid_json_is_422_json_invalid(url: str) -> None:
    status, body = await post(url, "/run_code", data=b'{"code": ', headers={"Content-Type": "application/json"})
    assert status == 422
    assert body["detail"][0]["type"] == "json_invalid"


async def test_a_body_that_is_not_an_object_is_422(url: str) -> None:
    status, body = await post(url, "/run_code", json=["print(1)"])
    assert status == 422
    assert body["detail"][0]["loc"] == ["body"]


async def test_missing_fields_are_named(url: str) -> None:
    status, body = await post(url, "/run_code", json={})
    assert status == 422
    assert ["body", "code"] in _locs(body)
    assert ["body", "language"] in _locs(body)


async def test_an_unknown_language_is_422_literal_error(url: str) -> None:
    status, body = await post(url, "/run_code", json={"code": "x", "language": "cobol"})
    assert status == 422
    assert body["detail"][0]["type"] == "literal_error"
    assert body["detail"][0]["input"] == "cobol"


async def test_unknown_fields_are_rejected_by_name(url: str) -> None:
    status, body = await post(url, "/run_code", json={"code": "x", "language": "python", "timeout": 3})
    assert status == 422
    assert body["detail"] == [
        {"type": "extra_forbidden", "loc": ["body", "timeout"], "msg": "Extra inputs are not permitted", "input": 3}
    ]


async def test_invalid_base64_in_files_is_422(url: str) -> None:
    status, body = await post(url, "/run_code", json={"code": "x", "language": "python", "files": {"a": "!!!"}})
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", "files", "a"]
    assert "base64" in body["detail"][0]["msg"]


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../x", "", "a\x00b"])
async def test_unsafe_paths_in_files_are_422(url: str, path: str) -> None:
    files = {path: base64.b64encode(b"x").decode()}
    status, body = await post(url, "/run_code", json={"code": "x", "language": "python", "files": files})
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", "files", path]


@pytest.mark.parametrize("path", ["/etc/shadow", "../../etc/passwd"])
async def test_unsafe_fetch_files_are_422(url: str, path: str) -> None:
    status, body = await post(url, "/run_code", json={"code": "x", "language": "python", "fetch_files": [path]})
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", "fetch_files", 0]


async def test_a_symlink_to_a_secret_is_not_fetched(url: str) -> None:
    code = "import os\nos.symlink('/etc/passwd', 'link')\nos.symlink('/etc', 'dir')"
    status, body = await post(
        url, "/run_code", json={"code": code, "language": "python", "fetch_files": ["link", "dir/passwd"]}
    )
    assert status == 200
    assert body["status"] == "Success"
    assert body["files"] == {}


@pytest.mark.parametrize(
    ("field", "value"), [("run_timeout", None), ("run_timeout", -1), ("run_timeout", "1"), ("run_timeout", 10**9)]
)
async def test_bad_timeouts_are_422(url: str, field: str, value: Any) -> None:
    status, body = await post(url, "/run_code", json={"code": "x", "language": "python", field: value})
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", field]


async def test_huge_code_is_413(url: str) -> None:
    raw = json.dumps({"code": "#" * (17 << 20), "language": "python"}).encode()
    status, body = await post(url, "/run_code", data=io.BytesIO(raw), headers={"Content-Type": "application/json"})
    assert status == 413
    assert "too large" in body["detail"]


async def test_the_connection_stays_usable_after_an_error(url: str) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        async with s.post(f"{url}/run_code", data=b"{") as r:
            assert r.status == 422
        async with s.post(f"{url}/run_code", json={"code": "print(1)", "language": "python"}) as r:
            assert r.status == 200
            assert (await r.json())["run_result"]["stdout"] == "1\n"


async def test_unknown_path_is_404_and_wrong_method_405(url: str) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}/nope") as r:
            assert r.status == 404
            assert await r.json() == {"detail": "Not Found"}
        async with s.get(f"{url}/run_code") as r:
            assert r.status == 405
            assert await r.json() == {"detail": "Method Not Allowed"}


async def test_run_jupyter_rejects_another_kernel_and_bad_cells(url: str) -> None:
    status, body = await post(url, "/run_jupyter", json={"cells": ["1", 2], "kernel": "julia"})
    assert status == 422
    assert ["body", "cells", 1] in _locs(body)
    assert ["body", "kernel"] in _locs(body)


async def test_ping(url: str) -> None:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/v1/ping") as r:
        assert r.status == 200
        assert await r.json() == "pong"


async def test_lone_surrogates_in_code_stdin_and_paths_are_handled(url: str) -> None:
    raw = b'{"code": "print(len(input()))", "language": "python", "stdin": "a\\ud800b"}'
    status, body = await post(url, "/run_code", data=raw, headers={"Content-Type": "application/json"})
    assert status == 200
    assert body["run_result"]["stdout"] == "3\n"
    raw = b'{"code": "1", "language": "python", "files": {"a\\ud800": "eA=="}}'
    status, body = await post(url, "/run_code", data=raw, headers={"Content-Type": "application/json"})
    assert status == 422


async def test_a_large_stdin_is_fed_in_full(url: str) -> None:
    code = "import sys\nprint(len(sys.stdin.read()))"
    raw = json.dumps({"code": code, "language": "python", "stdin": "x" * (3 << 20)})
    status, body = await post(
        url, "/run_code", data=io.BytesIO(raw.encode()), headers={"Content-Type": "application/json"}
    )
    assert status == 200
    assert body["run_result"]["stdout"] == f"{3 << 20}\n"


async def test_a_large_stdin_that_is_never_read_does_not_hang_the_run(url: str) -> None:
    raw = json.dumps({"code": "print('ignored')", "language": "python", "stdin": "y" * (3 << 20)})
    status, body = await post(
        url, "/run_code", data=io.BytesIO(raw.encode()), headers={"Content-Type": "application/json"}
    )
    assert status == 200
    assert body["status"] == "Success"
    assert body["run_result"]["stdout"] == "ignored\n"


@pytest.mark.parametrize("path", ["/run_code", "/run_jupyter", "/execute"])
async def test_json_nested_deeper_than_the_parser_goes_is_a_client_error(url: str, path: str) -> None:
    raw = b"[" * 200_000 + b"]" * 200_000
    status, body = await post(url, path, data=raw, headers={"Content-Type": "application/json"})
    assert status in (400, 422)
    assert "detail" in body or "error" in body


async def test_a_deeply_nested_field_is_echoed_without_failing(url: str) -> None:
    nested = "[" * 900 + "]" * 900
    raw = ('{"code": "1", "language": "python", "fetch_files": ' + nested + "}").encode()
    status, body = await post(url, "/run_code", data=raw, headers={"Content-Type": "application/json"})
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", "fetch_files", 0]


@pytest.mark.parametrize("path", ["/tmp/aioagents-probe-x", "//tmp/aioagents-probe-x", "/etc/aioagents-probe-x"])
async def test_an_interpreter_upload_to_an_absolute_path_outside_the_data_dir_is_400(
    sandbox: LocalSandbox, path: str
) -> None:
    # The CodeGeeX4 server joins what follows '/-' to '/': /files/upload/-/tmp/x means /tmp/x. Storing it as
    # <data>/tmp/x while the client believes it is in /tmp would be a lie; '..' is refused the same way.
    status, body = await post(sandbox.url, f"/files/upload/-{path}", data=b"x")
    assert status == 400
    assert "outside the sandbox data directory" in body["error"]
    inside = path.lstrip("/")
    status, body = await post(sandbox.url, f"/files/upload/-/mnt/data/{inside}?overwrite=true", data=b"x")
    assert status == 201  # the same name inside the data directory is fine
    assert body["path"] == inside
    assert await asyncio.to_thread((sandbox.data_dir / inside).read_bytes) == b"x"
    async with aiohttp.ClientSession() as s, s.get(f"{sandbox.url}/files/download/-{path}") as r:
        assert r.status == 400
    assert not await asyncio.to_thread(os.path.exists, "/" + inside)


async def test_a_file_asked_for_under_several_spellings_is_answered_under_each(url: str) -> None:
    names = ["out/a.txt", "./out/a.txt", "out//a.txt", "out/./a.txt", "out/a.txt"]
    code = "import os\nos.mkdir('out')\nopen('out/a.txt', 'w').write('same')"
    status, body = await post(url, "/run_code", json={"code": code, "language": "python", "fetch_files": names})
    assert status == 200
    assert body["status"] == "Success"
    assert sorted(body["files"]) == sorted(set(names))
    assert {base64.b64decode(v) for v in body["files"].values()} == {b"same"}


async def test_fetched_files_over_the_cap_are_a_sandbox_error_that_keeps_the_run_result() -> None:
    async with LocalSandbox(max_fetch_bytes=1000) as sb:
        code = "open('a', 'wb').write(b'x' * 600)\nopen('b', 'wb').write(b'y' * 300)\nprint('ran')"
        body = {"code": code, "language": "python", "fetch_files": ["a", "b"]}
        status, answer = await post(sb.url, "/run_code", json=body)
        assert status == 200
        assert answer["status"] == "Success"
        assert base64.b64decode(answer["files"]["a"]) == b"x" * 600
        status, answer = await post(sb.url, "/run_code", json={**body, "fetch_files": ["a", "./a"]})
        assert status == 200
        assert answer["status"] == "SandboxError"
        assert "fetch_files" in answer["message"]
        assert "1000 bytes" in answer["message"]
        assert answer["files"] == {}
        assert answer["run_result"]["stdout"] == "ran\n"
        cells = ["open('a', 'wb').write(b'x' * 2000)"]
        status, answer = await post(sb.url, "/run_jupyter", json={"cells": cells, "fetch_files": ["a"]})
        assert status == 200
        assert answer["status"] == "SandboxError"
        assert "fetch_files" in answer["message"]
        assert answer["cells"][0]["error"] == []
        assert sb.engine.fetch_budget.held == 0


async def test_a_fetched_file_larger_than_a_buffer_piece_arrives_whole(url: str) -> None:
    code = (
        "import os\n"
        "open('big.bin', 'wb').write(os.urandom(3 * 1024 * 1024 + 7))\n"
        "print(open('big.bin', 'rb').read().hex()[:64])\n"
    )
    status, body = await post(url, "/run_code", json={"code": code, "language": "python", "fetch_files": ["big.bin"]})
    assert status == 200
    content = base64.b64decode(body["files"]["big.bin"])
    assert len(content) == 3 * 1024 * 1024 + 7
    assert content.hex()[:64] == body["run_result"]["stdout"].strip()


async def test_thousands_of_fetched_files_are_all_answered(url: str) -> None:
    # More names than a server has fds to spare: none may be left out for want of one.
    code = "for i in range(3000):\n    open(f'f{i}', 'w').write(str(i))"
    names = [f"f{i}" for i in range(3000)] + ["missing"]
    status, body = await post(url, "/run_code", json={"code": code, "language": "python", "fetch_files": names})
    assert status == 200
    assert body["status"] == "Success"
    assert len(body["files"]) == 3000
    assert all(base64.b64decode(body["files"][f"f{i}"]) == str(i).encode() for i in range(3000))
