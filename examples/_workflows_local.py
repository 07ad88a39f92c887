"""Shared by the workflows_*.py examples: point them at a Sim server.

With ``SIM_BASE_URL`` set, the examples talk to that server (``SIM_API_KEY`` is your key). Without it, a local fake
Sim server from ``aioagents.testing`` is started in a background thread and both variables are set for it, so the
examples run offline, unchanged, the way CI runs them.
"""

from __future__ import annotations

import atexit
import contextlib
import os

from aioagents.testing._sim import FakeSimServer, FakeWorkflow

DEMO_KEY = "demo-key"


def local_sim() -> FakeSimServer | None:
    """Start the fake (once) unless ``SIM_BASE_URL`` is set; return it, or None for a real server."""
    if os.environ.get("SIM_BASE_URL"):
        return None
    srv = FakeSimServer(api_keys=[DEMO_KEY])
    for workflow_id in ("my-workflow-id", "workflow-1", "workflow-2"):
        srv.add_workflow(FakeWorkflow(id=workflow_id, output={"answer": f"processed by {workflow_id}"}))
    srv.add_workflow(
        FakeWorkflow(
            id="workflow-id",
            chunks=["One", ", two", ", three", ", four", ", five"],
            chunk_delay=0.2,
            block_id="agent1",
        )
    )
    stack = contextlib.ExitStack()
    stack.enter_context(srv.in_thread())
    atexit.register(stack.close)
    os.environ["SIM_BASE_URL"] = srv.url
    os.environ["SIM_API_KEY"] = DEMO_KEY
    return srv
