"""The ``aioagents`` command, run as a user runs it: a real process, the embedded sandbox, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "batch.jsonl"


def _cli(*args: str, timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SANDBOX_FUSION_ENDPOINT"}
    return subprocess.run(
        [sys.executable, "-m", "aioagents.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kw,  # type: ignore[arg-type]
    )


def test_the_example_batch_runs_on_the_embedded_sandbox_and_prints_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    proc = _cli("batch", str(EXAMPLE), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "started an embedded sandbox" in proc.stderr
    rows = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    inputs = [json.loads(line) for line in EXAMPLE.read_text().splitlines()]
    assert set(rows) == {row["id"] for row in inputs}
    assert rows["py-3"]["stdout"] == "6\n"
    assert rows["py-stdin"]["stdout"] == "xobdnas\n"
    assert rows["py-assert"]["outcome"] == "failed"
    assert rows["py-timeout"]["outcome"] == "timed_out"
    assert rows["bash-fail"]["outcome"] == "failed"
    assert rows["py-files"]["files"] == {"out.txt": "SEVMTE8gRklMRVM="}
    summary = dict(line.rsplit(None, 1) for line in proc.stdout.splitlines() if line and not line.startswith("-"))
    outcomes = [r["outcome"] for r in rows.values()]
    assert int(summary["passed"]) == outcomes.count("passed")
    assert int(summary["failed"]) == outcomes.count("failed")
    assert "p95 latency" in proc.stdout


def test_a_rerun_resumes_and_skips_finished_ids(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "code": f"print({i})"}) + "\n" for i in range(3)))
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"id": 0, "outcome": "passed", "latency_ms": 1.0}) + "\n")
    proc = _cli("batch", str(source), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == [0, 1, 2]
    assert {r["id"]: r.get("stdout") for r in rows[1:]} == {1: "1\n", 2: "2\n"}
    assert "skipped (already done)" in proc.stdout


def test_a_bad_line_becomes_an_error_row_and_loses_nothing(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps({"id": "ok", "code": "print(1)"}) + "\n"
        + "{not json\n"
        + json.dumps({"id": "bad-lang", "code": "x", "language": "klingon"}) + "\n"
    )  # fmt: skip
    out = tmp_path / "out.jsonl"
    proc = _cli("batch", str(source), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    rows = {json.dumps(r["id"]): r for r in map(json.loads, out.read_text().splitlines())}
    assert rows['"ok"']["outcome"] == "passed"
    assert rows["2"]["outcome"] == "error"
    assert "klingon" in rows['"bad-lang"']["error"]


def test_run_prints_output_and_returns_the_exit_code(tmp_path: Path) -> None:
    proc = _cli("run", "-c", "import sys; print('hi'); sys.exit(3)")
    assert proc.stdout == "hi\n"
    assert proc.returncode == 3
    script = tmp_path / "hello.sh"
    script.write_text("echo from bash\n")
    proc = _cli("run", str(script))
    assert (proc.returncode, proc.stdout) == (0, "from bash\n")


def test_run_reports_a_time_limit(tmp_path: Path) -> None:
    proc = _cli("run", "-c", "while True: pass", "--timeout", "1")
    assert proc.returncode == 124
    assert "time limit exceeded" in proc.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1"])
def test_serve_refuses_a_non_loopback_address_without_a_token(host: str) -> None:
    proc = _cli("serve", "--host", host, "--port", "0", timeout=30)
    assert proc.returncode != 0
    assert "token" in proc.stderr.lower()


def test_serve_puts_run_directories_under_work_dir() -> None:
    import signal
    import socket
    import tempfile

    work = tempfile.mkdtemp(dir="/tmp")  # not pytest's tmp_path: its base is private (0700), and runs have uids
    os.chmod(work, 0o711)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "aioagents.cli", "serve", "--port", str(port), "--work-dir", work],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert f":{port}" in server.stdout.readline()
        proc = _cli("run", "-c", "import os; print(os.getcwd())", "--endpoint", f"http://127.0.0.1:{port}")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(work + "/aioagents-local-"), proc.stdout
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)
        assert server.stdout is not None
        server.stdout.close()
        assert os.listdir(work) == []
        os.rmdir(work)


def test_the_official_sdk_works_against_aioagents_serve() -> None:
    import signal
    import socket

    import sandbox_fusion as sf

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "SANDBOX_FUSION_ENDPOINT"}
    server = subprocess.Popen(
        [sys.executable, "-m", "aioagents.cli", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line, line
        url = f"http://127.0.0.1:{port}"
        resp = sf.run_code(sf.RunCodeRequest(code="print(6 * 7)", language="python"), endpoint=url, max_attempts=1)
        assert resp.status == sf.RunStatus.Success
        assert resp.run_result is not None
        assert resp.run_result.stdout == "42\n"
        jupyter = sf.run_jupyter(sf.RunJupyterRequest(cells=["1 + 1", "1 / 0"]), endpoint=url, max_attempts=1)
        assert jupyter.cells[0].display[0]["text/plain"] == "2"
        assert jupyter.cells[1].error[0]["ename"] == "ZeroDivisionError"
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
            assert server.stdout is not None
            assert server.stderr is not None
            server.stdout.close()
            server.stderr.close()
    assert server.returncode == 0
