"""The agent-loop example runs end to end against both servers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "interpreter_agent_loop.py"


@pytest.mark.parametrize("server", ["fake", "local"])
def test_agent_loop_example(server: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--server", server, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "NameError: name 'row' is not defined" in done.stdout  # the error was rendered for the "agent"
    assert "\x1b[" not in done.stdout  # without ANSI colours
    assert "6 months, total sales 116" in done.stdout
    assert (tmp_path / "sales.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
