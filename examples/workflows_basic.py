"""Seed document, "Basic workflow execution": validate a workflow, then run it and read the result.

    .venv/bin/python examples/workflows_basic.py

The code below the marker is the documented example with only the import changed
(``from simstudio`` → ``from aioagents.compat.simstudio``). Without SIM_BASE_URL it runs against a local fake.
"""

import os

from _workflows_local import local_sim

local_sim()

# --- the documented example ---------------------------------------------------------------------------------------
from aioagents.compat.simstudio import SimStudioClient  # noqa: E402

client = SimStudioClient(api_key=os.getenv("SIM_API_KEY"))


def run_workflow():
    try:
        # Check if workflow is ready
        is_ready = client.validate_workflow("my-workflow-id")
        if not is_ready:
            raise Exception("Workflow is not deployed or ready")

        # Execute the workflow
        result = client.execute_workflow(
            "my-workflow-id", input_data={"message": "Process this data", "user_id": "12345"}
        )

        if result.success:
            print("Output:", result.output)
            print("Duration:", result.metadata.get("duration") if result.metadata else None)
        else:
            print("Workflow failed:", result.error)

    except Exception as error:
        print("Error:", error)


run_workflow()
client.close()
