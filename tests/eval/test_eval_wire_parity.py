"""Wire parity of the embedded server with the real SandboxFusion server (issue 13, point 4), via the official SDK."""

from __future__ import annotations

import base64

import aiohttp
import pytest
import sandbox_fusion as sf

from aioagents.local import LocalSandbox
from aioagents.local._toolchains import Unavailable


def test_run_timeout_zero_is_a_time_out_with_no_output(url: str) -> None:
    resp = sf.run_code(sf.RunCodeRequest(code="print('hello')", language="python", run_timeout=0), endpoint=url)
    assert resp.status == sf.RunStatus.Failed
    assert resp.run_result is not None
    assert resp.run_result.status == sf.CommandRunStatus.TimeLimitExceeded
    assert resp.run_result.return_code is None
    assert resp.run_result.stdout == ""
    assert sf.summary_run_code_result(resp, sf.SummaryMapping(RunTimeout="TLE")) == "TLE"


async def test_sql_is_a_sandbox_error(url: str) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{url}/run_code", json={"code": "select 1", "language": "sql"}) as r,
    ):
        body = await r.json()
    assert r.status == 200
    assert body["status"] == "SandboxError"
    assert body["message"].startswith("exception on running code select 1")
    assert body["compile_result"] is None
    assert body["run_result"] is None
    with pytest.raises(Exception, match="Sandbox responded with error"):
        sf.run_code(sf.RunCodeRequest(code="select 1", language="sql"), endpoint=url, max_attempts=1)


def test_a_missing_compiler_is_a_failed_compile_step(sandbox: LocalSandbox, url: str) -> None:
    from aioagents.local._engine import _COMPILED

    missing = [lang for lang, v in sandbox.engine.languages.items() if isinstance(v, Unavailable)]
    compiled = [lang for lang in missing if lang in _COMPILED]
    interpreted = [lang for lang in missing if lang not in _COMPILED and lang != "sql"]
    if not compiled and not interpreted:
        pytest.skip("every toolchain is installed here")
    mapping = sf.SummaryMapping(CompileFailed="CompileFailed", RunFailed="RunFailed")
    for lang in compiled[:2]:
        resp = sf.run_code(sf.RunCodeRequest(code="x", language=lang), endpoint=url, max_attempts=1)
        assert resp.run_result is None, lang
        assert resp.compile_result is not None
        assert resp.compile_result.return_code == 127
        assert sf.summary_run_code_result(resp, mapping) == "CompileFailed"
    for lang in interpreted[:2]:
        resp = sf.run_code(sf.RunCodeRequest(code="x", language=lang), endpoint=url, max_attempts=1)
        assert resp.compile_result is None, lang
        assert sf.summary_run_code_result(resp, mapping) == "RunFailed"


def test_files_named_ignore_this_file_are_skipped(url: str) -> None:
    data = base64.b64encode(b"hi").decode()
    code = "import os; print(sorted(os.listdir('.')))"
    resp = sf.run_code(
        sf.RunCodeRequest(
            code=code,
            language="python",
            files={"keep.txt": data, "x_IGNORE_THIS_FILE.txt": data, "d/IGNORE_THIS_FILE": data},
        ),
        endpoint=url,
    )
    listing = resp.run_result.stdout if resp.run_result else ""
    assert "keep.txt" in listing
    assert "IGNORE_THIS_FILE" not in listing


def test_invalid_utf8_output_is_replaced_per_byte_a_documented_difference(url: str) -> None:
    # The real server replaces the whole stream with "[DecodeError] ..."; we keep the text and replace only the bad
    # bytes with U+FFFD (docs/sandbox-fusion-datasets.md, "Wire parity").
    code = "import sys; sys.stdout.buffer.write(b'ok \\xff\\xfe end\\n')"
    resp = sf.run_code(sf.RunCodeRequest(code=code, language="python"), endpoint=url)
    assert resp.run_result is not None
    assert resp.run_result.stdout == "ok \ufffd\ufffd end\n"
