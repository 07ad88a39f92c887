"""Run a mixed batch on a code sandbox: several languages, stdin, files in and out, a time limit, a failing program.

    .venv/bin/python examples/sandbox_batch.py

With SANDBOX_FUSION_ENDPOINT set it uses that server (a SandboxFusion deployment or ``aioagents serve``); without,
it starts the embedded sandbox in-process, so it runs on a fresh machine with nothing else installed. Languages
this machine has no toolchain for come back as ``Failed`` results that say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from aioagents.local import LocalSandbox
from aioagents.sandbox import RunCodeRequest, SandboxClient

PROGRAMS = [
    RunCodeRequest(code="print(sum(range(101)))", language="python"),
    RunCodeRequest(code="read n; echo $((n * n))", language="bash", stdin="12\n"),
    RunCodeRequest(code="console.log([3, 1, 2].sort().join(','))", language="nodejs"),
    RunCodeRequest(
        code='#include <cstdio>\nint main() { long f = 1; for (int i = 2; i <= 10; i++) f *= i; printf("%ld\\n", f); }',
        language="cpp",
    ),
    RunCodeRequest(
        code="data = open('in.csv').read().split()\n"
        "open('out.txt', 'w').write(str(len(data)))\n"
        "print('rows:', len(data))",
        language="python",
        files={"in.csv": b"a\nb\nc\n"},
        fetch_files=["out.txt"],
    ),
    RunCodeRequest(code="import time\ntime.sleep(10)", language="python", run_timeout=1),
    RunCodeRequest(code="raise ValueError('a failing program is a result, not an exception')", language="python"),
]


@contextlib.asynccontextmanager
async def endpoint() -> AsyncIterator[str]:
    """The configured sandbox, or an embedded one started for this script."""
    configured = os.environ.get("SANDBOX_FUSION_ENDPOINT")
    if configured:
        yield configured
        return
    async with LocalSandbox() as local:
        yield local.url


async def main() -> None:
    async with endpoint() as url, SandboxClient(url) as sandbox:
        print(f"sandbox at {url}")
        async for item in sandbox.run_many(PROGRAMS, concurrency=4):
            request = item.input
            if not item.ok:
                print(f"#{item.index} {request.language:7} error: {item.error}")
                continue
            result = item.value
            assert result is not None
            run = result.run_result or result.compile_result
            detail = result.stdout.strip() or (run.status.value if run else result.message)
            if result.files:
                detail += f"  (out.txt = {result.file_bytes('out.txt').decode()!r})"
            if not result.ok and run is not None and run.stderr:
                detail += f"  stderr: {run.stderr.strip().splitlines()[-1]}"
            print(f"#{item.index} {request.language:7} {result.status.value:8} {detail}")


if __name__ == "__main__":
    asyncio.run(main())
