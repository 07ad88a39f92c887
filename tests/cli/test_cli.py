"""The ``aioagents`` command, run as a user runs it: a real process, the embedded sandbox, real files.

Each user mistake is checked for its one line on stderr (no traceback) and its own exit status; progress is checked
in a pseudo-terminal, with and without tqdm installed.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import urllib.request
from pathlib import Path

import pytest

from tests.local.conftest import is_root

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "batch.jsonl"
STARTED = "started an embedded sandbox"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SANDBOX_FUSION_ENDPOINT"}
    env.update(extra)
    return env


def _cli(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aioagents.cli", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else _env(),
    )


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The command's stderr is exactly one ``aioagents: ...`` line containing every needle."""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("aioagents: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _jsonl(path: Path, *rows: object) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def _rows(path: Path) -> dict[str, dict[str, object]]:
    lines = [line for line in path.read_text().split("\n") if line]  # not splitlines(): rows may hold U+2028
    return {json.dumps(r["id"]): r for r in map(json.loads, lines)}


# -- the main command ------------------------------------------------------------------------------------------
def test_the_example_batch_runs_on_the_embedded_sandbox_and_prints_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    proc = _cli("batch", str(EXAMPLE), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert STARTED in proc.stderr
    assert "\r" not in proc.stderr  # stderr is not a terminal here: no progress drawn
    rows = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    inputs = [json.loads(line) for line in EXAMPLE.read_text().splitlines()]
    assert set(rows) == {row["id"] for row in inputs}
    assert rows["py-3"]["stdout"] == "6\n"
    assert rows["py-stdin"]["stdout"] == "xobdnas\n"
    assert rows["py-assert"]["outcome"] == "failed"
    assert rows["py-timeout"]["outcome"] == "timed_out"
    assert rows["bash-fail"]["outcome"] == "failed"
    assert rows["py-files"]["files"] == {"out.txt": "SEVMTE8gRklMRVM="}
    table = proc.stdout.split("results:")[0]
    summary = dict(line.rsplit(None, 1) for line in table.splitlines() if line and not line.startswith("-"))
    outcomes = [r["outcome"] for r in rows.values()]
    assert int(summary["passed"]) == outcomes.count("passed")
    assert int(summary["failed"]) == outcomes.count("failed")
    assert "p95 latency" in proc.stdout
    assert f"results: {out} ({len(inputs)} new rows, 0 from earlier runs)" in proc.stdout


def test_a_rerun_resumes_and_skips_finished_ids(tmp_path: Path) -> None:
    source = _jsonl(tmp_path / "in.jsonl", *({"id": i, "code": f"print({i})"} for i in range(3)))
    out = _jsonl(tmp_path / "out.jsonl", {"id": 0, "outcome": "passed", "latency_ms": 1.0})
    proc = _cli("batch", str(source), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert STARTED not in proc.stderr  # --quiet: not even the sandbox note
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == [0, 1, 2]
    assert {r["id"]: r.get("stdout") for r in rows[1:]} == {1: "1\n", 2: "2\n"}
    assert "skipped (already done)           1" in proc.stdout
    assert "(2 new rows, 1 from earlier runs)" in proc.stdout


def test_a_rerun_skips_rows_whose_output_holds_unicode_line_separators(tmp_path: Path) -> None:
    source = _jsonl(
        tmp_path / "in.jsonl",
        {"id": "sep", "code": "print('a\\u2028b\\x85c')"},
        json.dumps({"id": "sep-in-code", "code": "s = 'x\u2028y'\nprint(len(s))"}, ensure_ascii=False),
    )
    out = tmp_path / "out.jsonl"
    first = _cli("batch", str(source), "--out", str(out), "--quiet")
    assert first.returncode == 0, first.stderr
    rows = _rows(out)
    assert rows['"sep"']["stdout"] == "a\u2028b\x85c\n"
    assert rows['"sep-in-code"']["stdout"] == "3\n"
    again = _cli("batch", str(source), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert STARTED not in again.stderr
    assert "(0 new rows, 2 from earlier runs)" in again.stdout


def test_a_rerun_after_a_torn_last_line_keeps_every_new_row_whole(tmp_path: Path) -> None:
    source = _jsonl(tmp_path / "in.jsonl", *({"id": i, "code": f"print({i})"} for i in range(2)))
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 0, "outcome": "pas')  # a run killed in the middle of writing its row
    proc = _cli("batch", str(source), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().split("\n")
    assert lines[0] == '{"id": 0, "outcome": "pas'
    assert sorted(json.loads(line)["id"] for line in lines[1:] if line) == [0, 1]
    again = _cli("batch", str(source), "--out", str(out))
    assert "(0 new rows, 2 from earlier runs)" in again.stdout


def test_a_finished_batch_starts_no_sandbox(tmp_path: Path) -> None:
    source = _jsonl(tmp_path / "in.jsonl", *({"id": i, "code": f"print({i})"} for i in range(3)))
    out = _jsonl(tmp_path / "out.jsonl", *({"id": i, "outcome": "passed", "latency_ms": 1.0} for i in range(3)))
    before = out.read_text()
    proc = _cli("batch", str(source), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert STARTED not in proc.stderr
    assert "nothing to run: all 3 ids" in proc.stderr
    assert out.read_text() == before
    assert f"results: {out} (0 new rows, 3 from earlier runs)" in proc.stdout


def test_an_empty_input_starts_no_sandbox_and_creates_no_out(tmp_path: Path) -> None:
    source = _jsonl(tmp_path / "in.jsonl", "", "   ")
    out = tmp_path / "out.jsonl"
    proc = _cli("batch", str(source), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert STARTED not in proc.stderr
    assert not out.exists()


# -- bad lines: error rows, the rest unaffected ----------------------------------------------------------------
def test_bad_lines_become_error_rows_naming_their_line_and_lose_nothing(tmp_path: Path) -> None:
    source = _jsonl(
        tmp_path / "in.jsonl",
        {"id": "ok", "code": "print(1)"},
        "{not json",
        {"id": "bad-lang", "code": "x", "language": "klingon"},
        {"id": "no-code"},
        "[1, 2]",
        {"id": "ok-2", "code": "echo two", "language": "bash"},
    )
    out = tmp_path / "out.jsonl"
    proc = _cli("batch", str(source), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr  # every item ran (or was judged): exit 0 without --fail-on
    rows = _rows(out)
    assert rows['"ok"']["outcome"] == "passed"
    assert rows['"ok-2"']["stdout"] == "two\n"
    assert rows["2"]["outcome"] == "error"
    assert str(rows["2"]["error"]).startswith("line 2: not JSON")
    assert str(rows['"bad-lang"']["error"]).startswith("line 3: unknown language 'klingon'")
    assert str(rows['"no-code"']["error"]) == "line 4: no 'code' field"
    assert str(rows["5"]["error"]) == "line 5: expected a JSON object, got list"
    assert "errors                           4" in proc.stdout


# -- exit status: 0 whatever the verdicts, --fail-on for CI ----------------------------------------------------
def test_fail_on_makes_failures_or_errors_a_non_zero_status(tmp_path: Path) -> None:
    source = _jsonl(
        tmp_path / "in.jsonl",
        {"id": "ok", "code": "print(1)"},
        {"id": "fails", "code": "raise SystemExit(1)"},
    )
    out = tmp_path / "out.jsonl"
    assert _cli("batch", str(source), "--out", str(out), "--quiet").returncode == 0
    # The reruns find every id done (no sandbox) and judge the whole of OUT, so CI sees the same verdict again.
    assert _cli("batch", str(source), "--out", str(out), "--fail-on", "error").returncode == 0
    failed = _cli("batch", str(source), "--out", str(out), "--fail-on", "failed")
    assert failed.returncode == 1
    assert STARTED not in failed.stderr
    with source.open("a") as f:
        f.write("{broken\n")
    errored = _cli("batch", str(source), "--out", str(out), "--quiet", "--fail-on", "error")
    assert errored.returncode == 1
    assert _rows(out)["3"]["outcome"] == "error"


def test_fail_on_accepts_only_its_documented_values(tmp_path: Path) -> None:
    proc = _cli("batch", str(EXAMPLE), "--out", str(tmp_path / "o.jsonl"), "--fail-on", "sometimes")
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- user mistakes: one line, a distinct status, nothing started -----------------------------------------------
def test_a_missing_input_is_one_line_and_status_66(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    proc = _cli("batch", str(tmp_path / "nope.jsonl"), "--out", str(out))
    assert proc.returncode == 66
    _one_line_error(proc, "nope.jsonl", "does not exist")
    assert not out.exists()


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b'{"id": 1, "code": "print(1)"}\n\xff\xfe\n'), "not UTF-8"),
    ],
    ids=["directory", "not-utf8"],
)
def test_an_unreadable_input_is_one_line_and_status_66(tmp_path: Path, make: object, needle: str) -> None:
    source = tmp_path / "in.jsonl"
    make(source)  # type: ignore[operator]
    proc = _cli("batch", str(source), "--out", str(tmp_path / "out.jsonl"))
    assert proc.returncode == 66
    _one_line_error(proc, needle)


@pytest.mark.parametrize("where", ["missing-dir", "a-directory"])
def test_an_out_that_cannot_be_written_is_one_line_and_status_73(tmp_path: Path, where: str) -> None:
    out = tmp_path / "no" / "such" / "out.jsonl" if where == "missing-dir" else tmp_path
    proc = _cli("batch", str(EXAMPLE), "--out", str(out))
    assert proc.returncode == 73
    _one_line_error(proc, "OUT", str(out))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_write_failure_mid_batch_is_one_line_and_status_73(tmp_path: Path) -> None:
    source = _jsonl(tmp_path / "in.jsonl", {"id": 1, "code": "print(1)"})
    proc = _cli("batch", str(source), "--out", "/dev/full", "--quiet")
    assert proc.returncode == 73
    _one_line_error(proc, "/dev/full", "No space left")


def test_an_endpoint_that_does_not_answer_is_one_line_with_its_url_and_status_69(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    out = tmp_path / "out.jsonl"
    proc = _cli("batch", str(EXAMPLE), "--out", str(out), "--endpoint", url)
    assert proc.returncode == 69
    _one_line_error(proc, url, "does not answer")
    assert not out.exists()
    proc = _cli("run", "-c", "print(1)", env=_env(SANDBOX_FUSION_ENDPOINT=url))
    assert proc.returncode == 69
    _one_line_error(proc, url, "does not answer")


def test_an_endpoint_that_stops_answering_mid_batch_leaves_those_ids_for_the_rerun(tmp_path: Path) -> None:
    import http.server
    import threading

    class PingOnly(http.server.BaseHTTPRequestHandler):
        """Answers the ping, then drops every run's connection without an answer."""

        def do_GET(self) -> None:
            body = b'"pong"'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.close_connection = True  # no response at all

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PingOnly)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        source = _jsonl(tmp_path / "in.jsonl", {"id": "a", "code": "print(1)"}, "{bad line")
        out = tmp_path / "out.jsonl"
        proc = _cli("batch", str(source), "--out", str(out), "--endpoint", url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert proc.returncode == 69
    _one_line_error(proc, "1 of 2 programs did not complete", url, "running the same command again runs them")
    assert list(_rows(out)) == ["2"]  # the bad line is judged; "a" stays out of OUT so a rerun runs it
    assert f"results: {out} (1 new row, 0 from earlier runs)" in proc.stdout


def test_an_unknown_language_is_one_line_and_status_65() -> None:
    proc = _cli("run", "-c", "print(1)", "--language", "klingon")
    assert proc.returncode == 65
    _one_line_error(proc, "unknown language 'klingon'", "python")
    assert STARTED not in proc.stderr


def test_run_of_a_missing_file_is_one_line_and_status_66(tmp_path: Path) -> None:
    proc = _cli("run", str(tmp_path / "hello.py"))
    assert proc.returncode == 66
    _one_line_error(proc, "hello.py", "does not exist")


def test_a_bad_option_value_is_one_line_and_status_2(tmp_path: Path) -> None:
    proc = _cli("batch", str(EXAMPLE), "--out", str(tmp_path / "o.jsonl"), "--concurrency", "0")
    assert proc.returncode == 2
    _one_line_error(proc, "--concurrency")


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again on return: nothing listens there


def test_ctrl_c_stops_a_batch_with_one_line_saying_how_to_resume(tmp_path: Path) -> None:
    import signal

    source = _jsonl(tmp_path / "in.jsonl", *({"id": i, "code": "import time; time.sleep(30)"} for i in range(4)))
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "aioagents.cli", "batch", str(source), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stderr is not None
        assert STARTED in proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert stdout == ""
    assert stderr.splitlines() == [
        f"aioagents: interrupted: 0 new results are in {out}; running the same command again resumes"
    ]


# -- run -------------------------------------------------------------------------------------------------------
def test_run_prints_output_and_returns_the_exit_code(tmp_path: Path) -> None:
    proc = _cli("run", "-c", "import sys; print('hi'); sys.exit(3)")
    assert proc.stdout == "hi\n"
    assert proc.returncode == 3
    script = tmp_path / "hello.sh"
    script.write_text("echo from bash\n")
    proc = _cli("run", str(script))
    assert (proc.returncode, proc.stdout) == (0, "from bash\n")
    proc = _cli("run", "-", "--language", "bash", input="echo from stdin\n")
    assert (proc.returncode, proc.stdout) == (0, "from stdin\n")


def test_run_reports_a_time_limit(tmp_path: Path) -> None:
    proc = _cli("run", "-c", "while True: pass", "--timeout", "1")
    assert proc.returncode == 124
    assert "time limit exceeded" in proc.stderr


def test_verbose_logs_the_requests() -> None:
    quiet = _cli("run", "-c", "print(1)", "--quiet")
    assert (quiet.returncode, quiet.stdout) == (0, "1\n"), quiet.stderr
    assert "[aioagents]" not in quiet.stderr  # no notes (a warning the sandbox logs on a loaded machine may remain)
    assert "/run_code" not in quiet.stderr
    verbose = _cli("run", "-c", "print(1)", "--verbose")
    assert verbose.returncode == 0
    assert "/run_code -> 200" in verbose.stderr


# -- version and help ------------------------------------------------------------------------------------------
def test_version() -> None:
    import aioagents

    proc = _cli("--version")
    assert (proc.returncode, proc.stdout.strip()) == (0, f"aioagents {aioagents.__version__}")


def test_the_main_help_documents_the_exit_statuses() -> None:
    proc = _cli("--help")
    assert proc.returncode == 0
    assert "exit status:" in proc.stdout
    for code in ("0 ", "1 ", "2 ", "65", "66", "69", "73", "124"):
        assert f"\n  {code}" in proc.stdout, code
    assert "--fail-on" in proc.stdout
    assert "aioagents batch examples/batch.jsonl --out results.jsonl" in proc.stdout


@pytest.mark.parametrize("command", ["serve", "run", "batch"])
def test_every_subcommand_help_shows_an_example(command: str) -> None:
    proc = _cli(command, "--help")
    assert proc.returncode == 0
    example = proc.stdout.split("example", 1)[1]
    assert f"aioagents {command} " in example


# -- progress --------------------------------------------------------------------------------------------------
_NO_TQDM = "import sys; sys.modules['tqdm'] = None; from aioagents.cli import main; sys.exit(main())"


def _cli_in_pty(*args: str, hide_tqdm: bool, columns: int = 100, timeout: float = 120) -> tuple[int, str, str]:
    """Run the command with stderr on a pseudo-terminal; the terminal's text and the piped stdout."""
    head = ["-c", _NO_TQDM] if hide_tqdm else ["-m", "aioagents.cli"]
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, *head, *args], stdout=subprocess.PIPE, stderr=terminal, stdin=subprocess.DEVNULL, env=_env()
    )
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        assert proc.stdout is not None
        stdout = proc.stdout.read().decode()
        return proc.wait(timeout=30), seen.decode(errors="replace"), stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        os.close(controller)


@pytest.mark.parametrize(
    ("hide_tqdm", "columns"), [(True, 100), (False, 100), (False, 0)], ids=["built-in", "tqdm", "tqdm-no-width"]
)
def test_a_batch_in_a_terminal_shows_progress_with_or_without_tqdm(
    tmp_path: Path, hide_tqdm: bool, columns: int
) -> None:
    source = _jsonl(tmp_path / "in.jsonl", *({"id": i, "code": f"print({i})"} for i in range(12)))
    out = tmp_path / "out.jsonl"
    code, terminal, stdout = _cli_in_pty("batch", str(source), "--out", str(out), hide_tqdm=hide_tqdm, columns=columns)
    assert code == 0, terminal
    assert "12/12" in terminal
    assert "100%" in terminal
    assert "\r" in terminal  # redrawn in place
    assert "Traceback" not in terminal
    if hide_tqdm:
        assert "batch  12/12  [####################] 100%" in terminal
    assert f"results: {out} (12 new rows" in stdout


def test_quiet_draws_no_progress_in_a_terminal(tmp_path: Path) -> None:
    source = _jsonl(tmp_path / "in.jsonl", *({"id": i, "code": f"print({i})"} for i in range(3)))
    code, terminal, stdout = _cli_in_pty(
        "batch", str(source), "--out", str(tmp_path / "out.jsonl"), "--quiet", hide_tqdm=True
    )
    assert code == 0, terminal
    # Nothing redrawn in place (the terminal turns each "\n" into "\r\n"), no counts: whatever else a loaded
    # machine logs on stderr (a warning from the sandbox) is not progress.
    assert re.search("\r(?!\n)", terminal) is None, terminal
    assert "/3" not in terminal, terminal
    assert STARTED not in terminal
    assert "results:" in stdout


# -- serve -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1"])
def test_serve_refuses_a_non_loopback_address_without_a_token(host: str) -> None:
    proc = _cli("serve", "--host", host, "--port", "0", timeout=30)
    assert proc.returncode == 2
    _one_line_error(proc, "token")


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
        # Under full isolation (root) a run of one step makes its directory in its private /tmp, nothing on the
        # host; a run whose files the server writes or reads back has its directory under the work dir.
        one_step = "/tmp/aioagents-run" if is_root() else work + "/aioagents-local-"
        assert proc.stdout.startswith(one_step), proc.stdout
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/run_code",
            data=json.dumps(
                {"code": "import os; print(os.getcwd())", "language": "python", "fetch_files": ["none.txt"]}
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = json.loads(answer.read())
        assert body["run_result"]["stdout"].startswith(work + "/aioagents-local-"), body
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

    import sandbox_fusion as sf  # type: ignore[import-untyped]

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
