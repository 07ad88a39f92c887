"""Start-up cost: the in-process eval (the SDK's ``evaluate()`` and ``aioagents eval`` without ``--endpoint``) imports
no aiohttp, and ``import aioagents`` still exposes every public name (loaded on first access, PEP 562).

Each check runs in a fresh interpreter: ``sys.modules`` of the test process has aiohttp loaded long ago.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

TASKS = ["HumanEval/0", "HumanEval/2", "HumanEval/7"]


def _python(code: str, cwd: Path) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; its last stdout line is a JSON object."""
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _samples(problems: dict[str, dict[str, Any]], path: Path) -> None:
    # Per task: the canonical solution (passes) and a `return None` body (fails).
    with path.open("w") as f:
        for task in TASKS:
            f.write(json.dumps({"task_id": task, "completion": problems[task]["canonical_solution"]}) + "\n")
            f.write(json.dumps({"task_id": task, "completion": "    return None\n"}) + "\n")


def test_evaluate_in_process_imports_no_aiohttp(problems: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    _samples(problems, tmp_path / "samples.jsonl")
    result = _python(
        """
        import asyncio, json, sys
        from aioagents.sandbox.evaluation import evaluate

        report = asyncio.run(evaluate("samples.jsonl", "humaneval_python", k=(1,), concurrency=2))
        unused = ("aiohttp", "yarl", "aiolimiter", "backoff", "cattrs", "tqdm")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in unused)
        print(json.dumps({"passed": report.passed, "scored": report.scored, "loaded": loaded}))
        """,
        tmp_path,
    )
    # The samples were really scored (3 canonical pass, 3 `return None` fail), and nothing of the HTTP stack loaded,
    # nor the wire models' converter (cattrs) or a progress bar that was not asked for.
    assert (result["passed"], result["scored"]) == (3, 6)
    assert result["loaded"] == []


def test_eval_command_in_process_imports_no_aiohttp(problems: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    _samples(problems, tmp_path / "samples.jsonl")
    result = _python(
        """
        import json, sys
        from aioagents.cli import main

        rc = main(["eval", "samples.jsonl", "--dataset", "humaneval_python", "--k", "1", "--out", "out.jsonl",
                   "--concurrency", "2", "--quiet"])
        print(json.dumps({"rc": rc, "aiohttp": "aiohttp" in sys.modules}))
        """,
        tmp_path,
    )
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert result == {"rc": 0, "aiohttp": False}
    assert sorted((row["task_id"], row["passed"]) for row in rows) == sorted(
        [(task, True) for task in TASKS] + [(task, False) for task in TASKS]
    )


def test_scoring_through_an_endpoint_still_loads_the_client(tmp_path: Path, url: str) -> None:
    # The lazy path is not a broken path: with an endpoint, the HTTP client is imported and scores the samples.
    (tmp_path / "samples.jsonl").write_text(
        json.dumps({"task_id": "HumanEval/0", "completion": "    return None\n"}) + "\n"
    )
    result = _python(
        f"""
        import asyncio, json, sys
        from aioagents.sandbox.evaluation import evaluate

        report = asyncio.run(evaluate("samples.jsonl", "humaneval_python", k=(1,), endpoint={url!r}))
        print(json.dumps({{"scored": report.scored, "passed": report.passed, "aiohttp": "aiohttp" in sys.modules}}))
        """,
        tmp_path,
    )
    assert result == {"scored": 1, "passed": 0, "aiohttp": True}


@pytest.mark.parametrize("package", ["aioagents", "aioagents.sandbox", "aioagents.local"])
def test_every_public_name_is_importable_lazily(package: str, tmp_path: Path) -> None:
    result = _python(
        f"""
        import importlib, json, sys
        package = importlib.import_module({package!r})
        before = "aiohttp" in sys.modules
        listed = set(package.__all__) <= set(dir(package))
        # `from package import X` (first access: through the module's __getattr__), then attribute access.
        for name in package.__all__:
            exec(f"from {package} import {{name}}", {{}})
        missing = [name for name in package.__all__ if not hasattr(package, name)]
        try:
            package.NoSuchName
        except AttributeError as exc:
            unknown = str(exc)
        print(json.dumps({{"before": before, "listed": listed, "missing": missing, "unknown": unknown}}))
        """,
        tmp_path,
    )
    assert result == {
        "before": False,
        "listed": True,
        "missing": [],
        "unknown": f"module {package!r} has no attribute 'NoSuchName'",
    }
