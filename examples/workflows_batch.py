"""Seed document, "Context manager usage" and "Batch workflow execution".

    .venv/bin/python examples/workflows_batch.py

Both documented snippets, with only the import changed.
"""

import os

from _workflows_local import local_sim

local_sim()

# --- the documented examples --------------------------------------------------------------------------------------
from aioagents.compat.simstudio import SimStudioClient  # noqa: E402

# Using context manager to automatically close the session
with SimStudioClient(api_key=os.getenv("SIM_API_KEY")) as client:
    result = client.execute_workflow("workflow-id")
    print("Result:", result)
# Session is automatically closed here

client = SimStudioClient(api_key=os.getenv("SIM_API_KEY"))


def execute_workflows_batch(workflow_data_pairs):
    """Execute multiple workflows with different input data."""
    results = []

    for workflow_id, input_data in workflow_data_pairs:
        try:
            # Validate workflow before execution
            if not client.validate_workflow(workflow_id):
                print(f"Skipping {workflow_id}: not deployed")
                continue

            result = client.execute_workflow(workflow_id, input_data)
            results.append(
                {"workflow_id": workflow_id, "success": result.success, "output": result.output, "error": result.error}
            )

        except Exception as error:
            results.append({"workflow_id": workflow_id, "success": False, "error": str(error)})

    return results


# Example usage
workflows = [
    ("workflow-1", {"type": "analysis", "data": "sample1"}),
    ("workflow-2", {"type": "processing", "data": "sample2"}),
]

results = execute_workflows_batch(workflows)

for result in results:
    print(f"Workflow {result['workflow_id']}: {'Success' if result['success'] else 'Failed'}")
client.close()
