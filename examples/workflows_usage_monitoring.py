"""Seed document, "Usage monitoring": rate-limit buckets, spend and plan.

    .venv/bin/python examples/workflows_usage_monitoring.py

The documented code reads ``['sync']['limit']``, a key today's server no longer sends (it says
``requestsPerMinute``/``maxBurst``); the compat client fills it in, so the example runs unchanged. The async client
below shows the typed view.
"""

import asyncio
import os

from _workflows_local import local_sim

local_sim()

# --- the documented example ---------------------------------------------------------------------------------------
from aioagents.compat.simstudio import SimStudioClient  # noqa: E402

client = SimStudioClient(api_key=os.getenv("SIM_API_KEY"))


def check_usage():
    try:
        limits = client.get_usage_limits()

        print("=== Rate Limits ===")
        print("Sync requests:")
        print(f"  Limit: {limits.rate_limit['sync']['limit']}")
        print(f"  Remaining: {limits.rate_limit['sync']['remaining']}")
        print(f"  Resets at: {limits.rate_limit['sync']['resetAt']}")
        print(f"  Is limited: {limits.rate_limit['sync']['isLimited']}")

        print("\nAsync requests:")
        print(f"  Limit: {limits.rate_limit['async']['limit']}")
        print(f"  Remaining: {limits.rate_limit['async']['remaining']}")
        print(f"  Resets at: {limits.rate_limit['async']['resetAt']}")
        print(f"  Is limited: {limits.rate_limit['async']['isLimited']}")

        print("\n=== Usage ===")
        print(f"Current period cost: ${limits.usage['currentPeriodCost']:.2f}")
        print(f"Limit: ${limits.usage['limit']:.2f}")
        print(f"Plan: {limits.usage['plan']}")

        percent_used = (limits.usage["currentPeriodCost"] / limits.usage["limit"]) * 100
        print(f"Usage: {percent_used:.1f}%")

        if percent_used > 80:
            print("⚠️  Warning: You are approaching your usage limit!")

    except Exception as error:
        print(f"Error checking usage: {error}")


check_usage()
client.close()


# --- the async client ---------------------------------------------------------------------------------------------
from aioagents.workflows import WorkflowsClient  # noqa: E402


async def main() -> None:
    async with WorkflowsClient() as sim:
        limits = await sim.get_usage_limits()
        print(
            f"\nTyped: sync {limits.sync.requests_per_minute}/min (burst {limits.sync.max_burst}), "
            f"{limits.usage.percent_used:.1f}% of the {limits.usage.plan} plan used"
        )
        if limits.storage is not None:
            print(f"Storage: {limits.storage.used_bytes} of {limits.storage.limit_bytes} bytes")


asyncio.run(main())
