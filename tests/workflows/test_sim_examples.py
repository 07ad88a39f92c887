"""Every examples/workflows_*.py runs to completion against the local fake (as a user would run it) and prints what
its section of the seed document promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED = {
    "workflows_basic.py": ["Output: {'answer': 'processed by my-workflow-id'}", "Duration: 10"],
    "workflows_error_handling.py": ["success: True", "code=UNAUTHORIZED status=401", "code=USAGE_LIMIT_EXCEEDED"],
    "workflows_batch.py": [
        "Result: WorkflowExecutionResult(success=True",
        "workflow-1: Success",
        "workflow-2: Success",
    ],
    "workflows_async_polling.py": [
        "Current status: queued",
        "Workflow completed!",
        "Duration: 10",
        "Async client result: True",
    ],
    "workflows_retry.py": ["Success: WorkflowExecutionResult(success=True", "POST attempts seen by the server: 2"],
    "workflows_usage_monitoring.py": ["Limit: 150", "Plan: pro", "Usage: 17.5%", "Typed: sync 150/min"],
    "workflows_streaming.py": [
        "'One'",
        "', five'",
        "Workflow result:",
        'browser got: data: {"blockId": "agent1", "chunk": "One"}',
        "browser got: data: [DONE]",
    ],
}


def test_every_workflows_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("workflows_*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_against_the_local_fake(name: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SIM_BASE_URL", "SIM_API_KEY")}
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=EXAMPLES.parent,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    for line in EXPECTED[name]:
        assert line in proc.stdout, (line, proc.stdout)
    assert "Error:" not in proc.stdout
