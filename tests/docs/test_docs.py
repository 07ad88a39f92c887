"""Every Python and bash code block in ``docs/**/*.md`` and ``README.md`` runs, and so does every script in
``examples/`` (here, or in its service's own test: see ``EXAMPLES_RUN_ELSEWHERE``) — against the fakes of
``aioagents.testing`` and the embedded sandbox, over real loopback sockets.

How a block runs
    Each block is a program of its own, run in a subprocess from a fresh temporary directory (with ``examples/``
    linked into it), the way a reader would paste it. The environment points every client's defaults at local
    servers started once for this module: ``SANDBOX_FUSION_ENDPOINT`` and ``AIOAGENTS_INTERPRETER_URL`` at an
    embedded :class:`~aioagents.local.LocalSandbox`, ``OPENAI_BASE_URL`` / ``SIM_BASE_URL`` / ``GATEWAY_URL`` (and
    their keys) at the fakes. So a block shows exactly what a user writes, with no test scaffolding in it.

    A block whose first line is ``# In a Jupyter notebook cell`` runs the way ipykernel runs a cell: inside a running
    event loop, top-level ``await`` allowed.

    In a bash block, the set-up steps of a ``&&`` chain that create and fill a virtualenv (``python3 -m venv``,
    ``. .venv/bin/activate``, ``pip install …``) are left out: ``.ci/run`` performs exactly that install in a fresh
    virtualenv and runs this suite inside it. Every other command of the block runs.

What may be skipped
    Only a block that cannot run here, with the reason printed in the docs right above it, on a line of its own that
    starts with ``*Not run by the docs test:`` (a real external account, the test suite itself, a benchmark that
    rewrites the committed figures, a contributor's sketch of API shapes). The reason is shown in the skip message
    too.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aioagents.local import LocalSandbox
from aioagents.testing import FakeAppBuilderServer, FakeOpenAIServer, FakeSimServer, FakeWorkflow, redis_server

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
ALL_EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))
# Examples that a service's own test already runs, with assertions on what they print: running them here again would
# only cost CI time. The test below checks that each is still named (or globbed) by that test file.
EXAMPLES_RUN_ELSEWHERE = {
    "workflows_*.py": ("tests/workflows/test_sim_examples.py", 'glob("workflows_*.py")'),
    "interpreter_agent_loop.py": ("tests/interpreter/test_example.py", '"interpreter_agent_loop.py"'),
    "assistants_notebook.py": ("tests/assistants/test_assistants_compat.py", 'run_example("assistants_notebook.py")'),
    "assistants_tools.py": ("tests/assistants/test_assistants_compat.py", 'run_example("assistants_tools.py")'),
}
EXAMPLES = [p for p in ALL_EXAMPLES if not any(p.match(pattern) for pattern in EXAMPLES_RUN_ELSEWHERE)]

SKIP_MARK = "*Not run by the docs test:"
NOTEBOOK_MARK = "# In a Jupyter notebook cell"
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)[^\n]*$")
RUNNABLE = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
# The set-up links of a README-style chain (see the module docstring). Anything else runs.
SETUP_STEP = re.compile(
    r"^(python3? -m venv \S+|\. \S*bin/activate|source \S*bin/activate|(python3? -m )?pip install( -[-\w]+)* \S+)$"
)

SIM_KEY = "sk-docs-test"
APPBUILDER_TOKEN = "docs-test-token"
OPENAI_KEY = "sk-docs-test-openai"
BLOCK_TIMEOUT = 90

NOTEBOOK_RUNNER = """
import ast, asyncio, sys
source = open(sys.argv[1], encoding="utf-8").read()
code = compile(source, sys.argv[1], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)

async def cell():  # ipykernel runs every cell inside its running event loop
    result = eval(code, {"__name__": "__main__"})
    if asyncio.iscoroutine(result):
        await result

asyncio.run(cell())
"""


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int
    lang: str
    code: str
    skip_reason: str | None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def extract_blocks(path: Path) -> list[Block]:
    """The runnable (python, bash) fenced blocks of ``path``, with the skip reason printed above each, if any."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m["indent"], m["fence"], m["lang"].lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence) and lines[i].strip().strip(fence[0]) == ""):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        if i >= len(lines):
            raise AssertionError(f"{path}:{start + 1}: a code fence is never closed")
        i += 1
        if lang not in RUNNABLE:
            continue
        previous = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        reason = None
        if previous.startswith(SKIP_MARK):
            reason = previous[len(SKIP_MARK) :].strip().rstrip("*").strip()
            if not reason:
                raise AssertionError(f"{path}:{start + 1}: a skipped block must say why")
        blocks.append(Block(path, start + 1, RUNNABLE[lang], "\n".join(body) + "\n", reason))
    return blocks


ALL_BLOCKS = [block for path in DOC_FILES for block in extract_blocks(path)]


def without_setup(script: str) -> str:
    """A bash block minus the virtualenv set-up links of its ``&&`` chains (see the module docstring)."""
    out = []
    for line in script.splitlines():
        steps = [s.strip() for s in line.split("&&")]
        kept = [s for s in steps if not SETUP_STEP.match(s)]
        if len(kept) == len(steps):
            out.append(line)  # untouched, indentation and all
        elif kept:
            out.append(" && ".join(kept))
    return "\n".join(out) + "\n"


@contextlib.contextmanager
def _local_services() -> Iterator[dict[str, str]]:
    sim = FakeSimServer(api_keys=[SIM_KEY])
    sim.add_workflow(FakeWorkflow(id="support-triage", output={"category": "billing", "priority": "high"}))
    sim.add_workflow(
        FakeWorkflow(id="story-writer", chunks=["Once", " upon", " a", " time."], block_id="agent1", chunk_delay=0.01)
    )
    openai = FakeOpenAIServer(api_key=OPENAI_KEY)
    openai.add_rule("I love this phone!", "positive")
    openai.add_rule("The battery died after an hour.", "negative")
    openai.add_rule(re.compile(r"^Add: "), "42")
    openai.add_rule("It is 21 degrees in Paris.", '```json\n{"city": "Paris", "temp_c": 21}\n```')
    appbuilder = FakeAppBuilderServer(token=APPBUILDER_TOKEN)
    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(redis_server())
        local = stack.enter_context(LocalSandbox().in_thread())
        stack.enter_context(sim.in_thread())
        stack.enter_context(openai.in_thread())
        stack.enter_context(appbuilder.in_thread())
        yield {
            "SANDBOX_FUSION_ENDPOINT": local.url,
            "AIOAGENTS_INTERPRETER_URL": local.url,
            "SIM_BASE_URL": sim.url,
            "SIM_API_KEY": SIM_KEY,
            "OPENAI_BASE_URL": openai.base_url,
            "OPENAI_API_KEY": OPENAI_KEY,
            "GATEWAY_URL": appbuilder.url,
            "APPBUILDER_TOKEN": APPBUILDER_TOKEN,
            "REDIS_URL": redis_url,
        }


# Variables a reader's real accounts might set; a docs run must never reach a real service.
_REAL_SERVICE_VARS = (
    "SANDBOX_FUSION_ENDPOINT", "SANDBOX_FUSION_DATASET_ENDPOINT", "AIOAGENTS_INTERPRETER_URL",
    "AIOAGENTS_INTERPRETER_TOKEN", "SIM_BASE_URL", "SIM_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY",
    "GATEWAY_URL", "APPBUILDER_TOKEN", "SECRET_KEY_PREFIX", "REDIS_URL", "RAY_ADDRESS",
)  # fmt: skip


class _Env(dict[str, str]):
    """An environment whose repr never shows its values (a failing test's traceback prints its arguments)."""

    def __repr__(self) -> str:
        return f"<environment of {len(self)} variables>"


def _base_env() -> _Env:
    env = _Env({k: v for k, v in os.environ.items() if k not in _REAL_SERVICE_VARS})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    env["PYTHONWARNINGS"] = "error"  # as strict as the suite: an unclosed session fails a block
    env["MPLBACKEND"] = "Agg"
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # a Ray cluster a block starts stays on 127.0.0.1
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # A block that runs pytest itself: no cache files, and pytest-asyncio's unset-scope warning is not an error.
    env["PYTEST_ADDOPTS"] = "-p no:cacheprovider -o asyncio_default_fixture_loop_scope=function"
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, str]]:
    with _local_services() as urls:
        yield urls


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    return tmp_path


def _run(cmd: list[str], cwd: Path, env: _Env, what: str) -> str:
    """Run ``cmd`` in a process group of its own and return its stdout; fail with its output when it fails.

    Whatever the block left behind (a server started with ``&``) is killed with the group, also on a timeout.
    """
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{what} ran past {BLOCK_TIMEOUT}s\n--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-5000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    if proc.returncode != 0:
        pytest.fail(f"{what} exited {proc.returncode}\n--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-5000:]}")
    return stdout


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.id for b in ALL_BLOCKS])
def test_docs_code_block_runs(block: Block, services: dict[str, str], workdir: Path) -> None:
    if block.skip_reason:
        pytest.skip(f"{block.id}: {block.skip_reason}")
    env = _base_env()
    env.update(services)
    if block.lang == "bash":
        script = workdir / "block.sh"
        script.write_text("set -euo pipefail\n" + without_setup(block.code))
        _run(["bash", str(script)], workdir, env, block.id)
        return
    script = workdir / "block.py"
    script.write_text(block.code)
    if block.code.startswith(NOTEBOOK_MARK):
        _run([sys.executable, "-c", NOTEBOOK_RUNNER, str(script)], workdir, env, block.id)
    else:
        _run([sys.executable, str(script)], workdir, env, block.id)


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_script_runs(script: Path, workdir: Path) -> None:
    # With no service variables set, each example starts its own fake (or the embedded sandbox), as a user's would.
    stdout = _run([sys.executable, str(script)], workdir, _base_env(), f"examples/{script.name}")
    assert stdout.strip(), f"examples/{script.name} printed nothing"


@pytest.mark.parametrize("pattern", sorted(EXAMPLES_RUN_ELSEWHERE))
def test_examples_not_run_here_are_run_by_their_service_test(pattern: str) -> None:
    test_file, reference = EXAMPLES_RUN_ELSEWHERE[pattern]
    assert any(p.match(pattern) for p in ALL_EXAMPLES), f"no example matches {pattern}"
    assert reference in (ROOT / test_file).read_text(encoding="utf-8"), f"{test_file} no longer runs {pattern}"


def test_blocks_and_their_skip_reasons_are_extracted(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n*Not run by the docs test: needs a real key.*\n\n```python\nprint(1)\n```\n\n"
        "!!! note\n    ```bash\n    echo hi\n    ```\n\n```text\nnot code\n```\n"
    )
    blocks = extract_blocks(page)
    assert [(b.lang, b.code, b.skip_reason) for b in blocks] == [
        ("python", "print(1)\n", "needs a real key."),
        ("bash", "echo hi\n", None),
    ]


def test_an_unterminated_fence_is_an_error_not_a_silently_lost_block(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\nprint(1)\n")
    with pytest.raises(AssertionError, match="never closed"):
        extract_blocks(page)


def test_the_docs_have_blocks_to_run() -> None:
    assert sum(1 for b in ALL_BLOCKS if b.skip_reason is None) >= 40


def test_setup_steps_are_the_only_links_left_out() -> None:
    chain = "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && aioagents batch a.jsonl --out o.jsonl"
    assert without_setup(chain) == "aioagents batch a.jsonl --out o.jsonl\n"
    assert without_setup("pip install -e '.[dev]' && python -m pytest") == "python -m pytest\n"
    assert without_setup("curl -s http://x && echo ok") == "curl -s http://x && echo ok\n"
    assert without_setup("python -c '\nfor x in y:\n    print(x)'") == "python -c '\nfor x in y:\n    print(x)'\n"
