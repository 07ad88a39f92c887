"""Seed document, "Rate limiting and retry": execute_with_retry with the documented knobs.

    .venv/bin/python examples/workflows_retry.py

Against the local fake, the first attempt is answered 429 with ``Retry-After: 1``: the retry waits the full second
(the original SDK could come back after 0.75 s) and then succeeds.
"""

import os

from _workflows_local import local_sim

server = local_sim()
if server is not None:
    server.inject(server.rate_limited_fault(retry_after=1, generation="v1"), path="/api/workflows/workflow-id/execute")

# --- the documented example ---------------------------------------------------------------------------------------
from aioagents.compat.simstudio import SimStudioClient, SimStudioError  # noqa: E402

client = SimStudioClient(api_key=os.getenv("SIM_API_KEY"))


def execute_with_retry_handling():
    try:
        # Automatically retries on rate limit
        result = client.execute_with_retry(
            "workflow-id",
            input_data={"message": "Process this"},
            max_retries=5,
            initial_delay=1.0,
            max_delay=60.0,
            backoff_multiplier=2.0,
        )

        print(f"Success: {result}")
    except SimStudioError as error:
        if error.code == "RATE_LIMIT_EXCEEDED":
            print("Rate limit exceeded after all retries")

            # Check rate limit info
            rate_limit_info = client.get_rate_limit_info()
            if rate_limit_info:
                from datetime import datetime

                reset_time = datetime.fromtimestamp(rate_limit_info.reset)
                print(f"Rate limit resets at: {reset_time}")


execute_with_retry_handling()
if server is not None:
    print("POST attempts seen by the server:", len(server.requests_to("/api/workflows/workflow-id/execute")))
client.close()
