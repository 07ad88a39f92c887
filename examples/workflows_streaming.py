"""Seed document, "Streaming workflow execution" and its "Flask streaming example".

    .venv/bin/python examples/workflows_streaming.py

1. The documented call with ``stream=True``, only the import changed: it now really streams (the SDK buffered the body
   and failed after the run). The chunks are printed as they arrive, then the result.
2. The documented Flask relay, rewritten for aiohttp.web on the async client: ``GET /stream-workflow`` re-sends the
   workflow's answer chunks to the browser as SSE while the workflow runs. The script starts the relay on a free
   port, reads it like a browser would, and stops.
"""

import asyncio
import json
import os
import time

from _workflows_local import local_sim

local_sim()

# --- 1. the documented example ------------------------------------------------------------------------------------
from aioagents.compat.simstudio import SimStudioClient  # noqa: E402

client = SimStudioClient(api_key=os.getenv("SIM_API_KEY"))


def execute_with_streaming():
    """Execute workflow with streaming enabled."""
    try:
        # Enable streaming for specific block outputs
        result = client.execute_workflow(
            "workflow-id",
            input_data={"message": "Count to five"},
            stream=True,
            selected_outputs=["agent1.content"],  # Use blockName.attribute format
        )

        started = time.monotonic()
        for text in result.text():  # not in the docs: the chunks, as they arrive
            print(f"  [{time.monotonic() - started:4.1f}s] {text!r}")
        print("Workflow result:", result)
    except Exception as error:
        print("Error:", error)


execute_with_streaming()
client.close()


# --- 2. streaming to a web endpoint -------------------------------------------------------------------------------
import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from aioagents.workflows import Chunk, Error, Final, WorkflowsClient  # noqa: E402

SIM = web.AppKey("sim", WorkflowsClient)


async def stream_workflow(request: web.Request) -> web.StreamResponse:
    """Stream workflow execution to the client."""
    sim = request.app[SIM]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    async with sim.execute_stream(
        "workflow-id", {"message": "Generate a story"}, selected_outputs=["agent1.content"]
    ) as events:
        async for event in events:
            if isinstance(event, Chunk):
                frame = {"blockId": event.block_id, "chunk": event.text}
            elif isinstance(event, Final):
                frame = {"event": "final", "success": event.success, "output": event.output}
                print("Execution complete:", event.success)
            elif isinstance(event, Error):
                frame = {"event": "error", "error": event.error}
            else:
                continue
            await resp.write(f"data: {json.dumps(frame)}\n\n".encode())
    await resp.write(b"data: [DONE]\n\n")
    return resp


async def main() -> None:
    app = web.Application()
    app[SIM] = WorkflowsClient()
    app.router.add_get("/stream-workflow", stream_workflow)
    app.on_cleanup.append(lambda app: app[SIM].aclose())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"Relay listening on http://127.0.0.1:{port}/stream-workflow")
    try:
        # What a browser's EventSource would receive.
        async with aiohttp.ClientSession() as browser, browser.get(f"http://127.0.0.1:{port}/stream-workflow") as r:
            async for line in r.content:
                if line.strip():
                    print("browser got:", line.decode().strip())
    finally:
        await runner.cleanup()


asyncio.run(main())
