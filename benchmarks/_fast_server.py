"""A minimal SandboxFusion-shaped server that answers /run_code with a canned result: the client is what is measured.

Run as ``python benchmarks/_fast_server.py``; it prints its URL and serves until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web

BODY = json.dumps(
    {
        "status": "Success",
        "message": "",
        "compile_result": None,
        "run_result": {
            "status": "Finished",
            "execution_time": 0.013,
            "return_code": 0,
            "stdout": "1\n",
            "stderr": "",
        },
        "executor_pod_name": None,
        "files": {},
    }
).encode()


async def run_code(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=BODY, content_type="application/json")


async def main() -> None:
    app = web.Application()
    app.router.add_post("/run_code", run_code)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
