"""The official sandbox-fusion SDK, as a real client, against the local sandbox."""

from __future__ import annotations

import base64
import shutil

import pytest
import sandbox_fusion as sf

from aioagents.local import LocalSandbox

HELLO = {
    "python": 'print("hello")',
    "bash": "echo hello",
    "nodejs": 'console.log("hello")',
    "cpp": '#include <iostream>\nint main() { std::cout << "hello" << std::endl; }',
    "java": 'public class Main { public static void main(String[] a) { System.out.println("hello"); } }',
    "perl": 'print "hello\\n";',
    "rust": 'fn main() { println!("hello"); }',
    "go": 'package main\nimport "fmt"\nfunc main() { fmt.Println("hello") }',
    "php": '<?php echo "hello\\n";',
    "ruby": 'puts "hello"',
    "lua": 'print("hello")',
    "R": 'cat("hello\\n")',
    "julia": 'println("hello")',
    "typescript": 'console.log("hello")',
    "cuda": '#include <cstdio>\n__global__ void k() {}\nint main() { printf("hello\\n"); }',
    "pytest": "def test_hello():\n    assert 'hello'",
}
EXPECTED = {"pytest": "1 passed"}


def _available(sandbox: LocalSandbox) -> list[str]:
    from aioagents.local._toolchains import Resolved

    return [lang for lang in HELLO if isinstance(sandbox.engine.languages.get(lang), Resolved)]


def run(url: str, **kw: object) -> sf.RunCodeResponse:
    return sf.run_code(sf.RunCodeRequest(**kw), endpoint=url, max_attempts=1, client_timeout=60)


def test_the_core_languages_are_available_here(sandbox: LocalSandbox) -> None:
    # The issue names these four; if one vanished from the machine the per-language test would silently shrink.
    assert {"python", "bash", "nodejs", "cpp"} <= set(_available(sandbox))


@pytest.mark.parametrize("language", list(HELLO))
def test_run_code_prints_hello_in_every_available_language(sandbox: LocalSandbox, language: str) -> None:
    # Generous compile time: nvcc or javac on a busy 2-core machine take seconds.
    resp = run(sandbox.url, code=HELLO[language], language=language, compile_timeout=60)
    if language not in _available(sandbox):
        # No toolchain here: the contract's answer for that, with the reason, instead of a crash or a 500
        # (in the compile step for a compiled language, as the real server reports it).
        assert resp.status == sf.RunStatus.Failed, resp
        step = resp.run_result or resp.compile_result
        assert step is not None
        assert step.return_code == 127
        assert (step.stderr or "").strip(), "a missing toolchain must say why"
        return
    assert resp.status == sf.RunStatus.Success, resp
    assert resp.run_result is not None
    assert EXPECTED.get(language, "hello") in (resp.run_result.stdout or "")
    assert resp.run_result.return_code == 0


def test_a_language_without_toolchain_is_failed_with_a_clear_message(sandbox: LocalSandbox) -> None:
    from aioagents.local._toolchains import Unavailable

    missing = next(lang for lang, v in sandbox.engine.languages.items() if isinstance(v, Unavailable))
    resp = run(sandbox.url, code="x", language=missing)
    assert resp.status == sf.RunStatus.Failed
    step = resp.run_result or resp.compile_result  # the compile step for a compiled language, as the real server
    assert step is not None
    assert step.return_code == 127
    assert resp.message
    assert resp.message.rstrip() == (step.stderr or "").rstrip()


def test_stdin_reaches_the_program(url: str) -> None:
    resp = run(url, code="print(int(input()) + 1)", language="python", stdin="65535\n")
    assert resp.run_result is not None
    assert resp.run_result.stdout == "65536\n"


def test_stdin_reaches_a_compiled_program(url: str) -> None:
    code = "#include <iostream>\nint main() { int x; std::cin >> x; std::cout << x * 2 << std::endl; }"
    resp = run(url, code=code, language="cpp", stdin="21")
    assert resp.status == sf.RunStatus.Success
    assert resp.run_result is not None
    assert resp.run_result.stdout == "42\n"


def test_files_are_written_and_fetch_files_read_back(url: str) -> None:
    files = {"data/in.txt": base64.b64encode(b"abc").decode(), "top.bin": base64.b64encode(b"\x00\xff").decode()}
    code = (
        "import pathlib\n"
        "t = pathlib.Path('data/in.txt').read_text()\n"
        "pathlib.Path('out/res.txt').parent.mkdir()\n"
        "pathlib.Path('out/res.txt').write_text(t.upper())\n"
        "print(len(pathlib.Path('top.bin').read_bytes()))"
    )
    resp = run(url, code=code, language="python", files=files, fetch_files=["out/res.txt", "missing.txt"])
    assert resp.status == sf.RunStatus.Success, resp
    assert resp.run_result is not None
    assert resp.run_result.stdout == "2\n"
    assert base64.b64decode(resp.files["out/res.txt"]) == b"ABC"
    assert "missing.txt" not in resp.files  # the contract omits missing files


def test_run_timeout_gives_time_limit_exceeded_with_partial_output(url: str) -> None:
    code = "import time\nprint('started', flush=True)\ntime.sleep(30)"
    resp = run(url, code=code, language="python", run_timeout=1)
    assert resp.status == sf.RunStatus.Failed
    assert resp.run_result is not None
    assert resp.run_result.status == sf.CommandRunStatus.TimeLimitExceeded
    assert resp.run_result.return_code is None
    assert resp.run_result.stdout == "started\n"
    assert (resp.run_result.execution_time or 0) < 5
    assert sf.summary_run_code_result(resp, sf.SummaryMapping(RunTimeout="rt")) == "rt"


def test_compile_error_has_no_run_result(url: str) -> None:
    resp = run(url, code="int main() { return x; }", language="cpp")
    assert resp.status == sf.RunStatus.Failed
    assert resp.compile_result is not None
    assert resp.compile_result.return_code != 0
    assert "x" in (resp.compile_result.stderr or "")
    assert resp.run_result is None
    assert sf.summary_run_code_result(resp, sf.SummaryMapping(CompileFailed="cf")) == "cf"


def test_compile_timeout_is_enforced(url: str) -> None:
    # A template instantiation deep enough to keep g++ busy for much longer than the limit.
    code = (
        "template<int N> struct F { static const long v = F<N-1>::v + F<N-2>::v; };\n"
        "template<> struct F<1> { static const long v = 1; }; template<> struct F<0> { static const long v = 0; };\n"
        '#include <cstdio>\nint main() { printf("%ld", F<1>::v); }\n'
        + "\n".join(f"void f{i}() {{ volatile long x = F<{40 + i % 50}>::v; }}" for i in range(4000))
    )
    resp = run(url, code=code, language="cpp", compile_timeout=0.5)
    assert resp.status == sf.RunStatus.Failed
    assert resp.compile_result is not None
    assert resp.compile_result.status == sf.CommandRunStatus.TimeLimitExceeded
    assert resp.run_result is None


def test_a_failing_program_is_failed_not_an_exception(url: str) -> None:
    resp = run(url, code="assert 1 == 2", language="python")
    assert resp.status == sf.RunStatus.Failed
    assert resp.run_result is not None
    assert resp.run_result.status == sf.CommandRunStatus.Finished
    assert resp.run_result.return_code == 1
    assert "AssertionError" in (resp.run_result.stderr or "")


def test_memory_limit_mb_is_applied(url: str) -> None:
    resp = sf.run_code(
        sf.RunCodeRequest(code="b = bytearray(300 * 1024 * 1024)\nprint('allocated')", language="python"),
        endpoint=url,
        max_attempts=1,
    )
    assert resp.status == sf.RunStatus.Success  # the default cap is higher than 300 MB
    import requests

    raw = requests.post(
        f"{url}/run_code",
        json={"code": "b = bytearray(300 * 1024 * 1024)", "language": "python", "memory_limit_MB": 100},
        timeout=30,
    ).json()
    assert raw["status"] == "Failed"
    assert "MemoryError" in raw["run_result"]["stderr"]


def test_run_jupyter_returns_cells_with_display_stderr_and_errors(url: str) -> None:
    req = sf.RunJupyterRequest(
        cells=[
            "a = 123",
            "a",
            "print(a)",
            "import sys; sys.stderr.write('stderr message')",
            "raise RuntimeError('error message')",
            "from IPython.display import display, HTML\ndisplay(HTML('<b>x</b>'))",
            "print('after the error')",
            "import os\nos.system('echo from a subprocess')",
        ],
        total_timeout=60,
    )
    resp = sf.run_jupyter(req, endpoint=url, max_attempts=1, client_timeout=90)
    assert resp.status == sf.RunStatus.Success, resp
    assert len(resp.cells) == 8
    assert resp.cells[1].display == [{"text/plain": "123"}]
    assert resp.cells[2].stdout == "123\n"
    assert resp.cells[3].stderr == "stderr message"
    assert resp.cells[4].error[0]["ename"] == "RuntimeError"
    assert resp.cells[4].error[0]["evalue"] == "error message"
    assert resp.cells[4].error[0]["traceback"]
    assert resp.cells[5].display[0]["text/html"] == "<b>x</b>"
    assert resp.cells[6].stdout == "after the error\n"
    assert resp.cells[7].stdout == "from a subprocess\n"  # written to the fd, not through sys.stdout


def test_run_jupyter_files_and_fetch_files(url: str) -> None:
    req = sf.RunJupyterRequest(
        cells=["open('out.txt', 'w').write(open('in.txt').read() * 2)"],
        files={"in.txt": base64.b64encode(b"ab").decode()},
        fetch_files=["out.txt"],
    )
    resp = sf.run_jupyter(req, endpoint=url, max_attempts=1, client_timeout=90)
    assert resp.status == sf.RunStatus.Success, resp
    assert base64.b64decode(resp.files["out.txt"]) == b"abab"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_nodejs_stdin_and_exit_code(url: str) -> None:
    code = "let d='';process.stdin.on('data',c=>d+=c).on('end',()=>{console.log(d.trim());process.exit(3)})"
    resp = run(url, code=code, language="nodejs", stdin="from stdin")
    assert resp.status == sf.RunStatus.Failed
    assert resp.run_result is not None
    assert resp.run_result.stdout == "from stdin\n"
    assert resp.run_result.return_code == 3
