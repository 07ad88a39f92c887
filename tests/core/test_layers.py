"""The core never reaches into the sync layer: the sync API's bridge registers itself as the loop owner instead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aioagents

CORE = Path(aioagents.__file__).parent


# The request path.
REQUEST_PATH = ["_transport.py", "_retry.py", "_exceptions.py", "_config.py", "_polling.py", "_ratelimit.py",
                "_loops.py", "_logging.py"]  # fmt: skip


def test_no_module_of_the_request_path_names_the_sync_layer() -> None:
    files = [CORE / name for name in REQUEST_PATH] + list((CORE / "_streaming").glob("*.py"))
    offenders = [p.name for p in files if "aioagents.sync" in p.read_text(encoding="utf-8")]
    assert offenders == []


def test_importing_and_using_the_core_loads_no_sync_module() -> None:
    code = (
        "import asyncio, sys, aioagents\n"
        "from aioagents._transport import Transport\n"
        "async def main():\n"
        "    t = Transport('http://127.0.0.1:9')\n"
        "    t._session()\n"
        "    await t.aclose()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.startswith('aioagents.sync')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_bridge_registers_itself_as_the_loop_owner() -> None:
    from aioagents import _loops
    from aioagents.sync import _bridge

    assert _loops.loop_owner() is _bridge
