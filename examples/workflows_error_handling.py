"""Seed document, "Error handling": the SDK's error codes on SimStudioError.

    .venv/bin/python examples/workflows_error_handling.py

The documented function is unchanged but for the import; below it, the same function meets a wrong API key and an
exhausted usage limit, so each branch shows its code.
"""

import os

from _workflows_local import local_sim

server = local_sim()

# --- the documented example ---------------------------------------------------------------------------------------
from aioagents.compat.simstudio import SimStudioClient, SimStudioError  # noqa: E402

client = SimStudioClient(api_key=os.getenv("SIM_API_KEY"))


def execute_with_error_handling():
    try:
        result = client.execute_workflow("workflow-id")
        return result
    except SimStudioError as error:
        if error.code == "UNAUTHORIZED":
            print("Invalid API key")
        elif error.code == "TIMEOUT":
            print("Workflow execution timed out")
        elif error.code == "USAGE_LIMIT_EXCEEDED":
            print("Usage limit exceeded")
        elif error.code == "INVALID_JSON":
            print("Invalid JSON in request body")
        else:
            print(f"Workflow error: {error}")
        raise
    except Exception as error:
        print(f"Unexpected error: {error}")
        raise


# --- driving it ---------------------------------------------------------------------------------------------------
print("success:", execute_with_error_handling().success)

client.set_api_key("not-a-valid-key")
try:
    execute_with_error_handling()
except SimStudioError as error:
    print(f"-> code={error.code} status={error.status}")
client.set_api_key(os.environ["SIM_API_KEY"])

if server is not None:  # only the local fake can be told to refuse for usage
    server.usage_exceeded = True
    try:
        execute_with_error_handling()
    except SimStudioError as error:
        print(f"-> code={error.code} status={error.status}")
client.close()
