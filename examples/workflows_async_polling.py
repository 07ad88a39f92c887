"""Seed document, "Async workflow execution": queue a run and poll its job, the documented blocking way; then the
same with the async client, whose Job.wait() polls with growing intervals instead of a fixed sleep.

    .venv/bin/python examples/workflows_async_polling.py
"""

import asyncio
import os

from _workflows_local import local_sim

local_sim()

# --- the documented example ---------------------------------------------------------------------------------------
import time  # noqa: E402

from aioagents.compat.simstudio import SimStudioClient  # noqa: E402

client = SimStudioClient(api_key=os.getenv("SIM_API_KEY"))


def execute_async():
    try:
        # Start async execution
        result = client.execute_workflow(
            "workflow-id",
            input_data={"data": "large dataset"},
            async_execution=True,  # Execute asynchronously
        )

        # Check if result is an async execution
        if hasattr(result, "task_id"):
            print(f"Task ID: {result.task_id}")
            print(f"Status endpoint: {result.links['status']}")

            # Poll for completion
            status = client.get_job_status(result.task_id)

            while status["status"] in ["queued", "processing"]:
                print(f"Current status: {status['status']}")
                time.sleep(2 if os.getenv("SIM_REAL_SERVER") else 0.1)  # Wait 2 seconds
                status = client.get_job_status(result.task_id)

            if status["status"] == "completed":
                print("Workflow completed!")
                print(f"Output: {status['output']}")
                print(f"Duration: {status['metadata']['duration']}")
            else:
                print(f"Workflow failed: {status['error']}")

    except Exception as error:
        print(f"Error: {error}")


execute_async()
client.close()


# --- the async client ---------------------------------------------------------------------------------------------
from aioagents.workflows import WorkflowsClient  # noqa: E402


async def main() -> None:
    async with WorkflowsClient() as sim:  # SIM_API_KEY / SIM_BASE_URL from the environment
        job = await sim.execute("workflow-id", {"data": "large dataset"}, async_execution=True, execution_timeout=600)
        print(f"Queued {job.kind} {job.id}")
        result = await job.result(timeout=600, poll_interval=0.1)
        print("Async client result:", result.success, result.output)


asyncio.run(main())
