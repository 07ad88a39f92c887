"""Stream a function's answer, then map it over many inputs under a requests-per-minute limit.

    .venv/bin/python examples/functions_stream_map.py

Without OPENAI_API_KEY it runs against the local fake, which enforces the same limit and counts any 429 it sends.
"""

from __future__ import annotations

import asyncio
import os
import time

from aioagents.functions import Example, LmFunction
from aioagents.testing._openai import FakeOpenAIServer

RPM = 1_200


async def run(base_url: str | None) -> None:
    summarize = LmFunction.create(
        "Summarize the text in one short sentence.",
        [Example("The meeting moved to Friday because the room was booked.", "Meeting moved to Friday.")],
        base_url=base_url,
        requests_per_minute=RPM,
    )
    async with summarize:
        print("streamed: ", end="", flush=True)
        async for delta in summarize.stream("Aioagents maps LM functions over thousands of inputs."):
            print(delta, end="", flush=True)
        print()

        texts = [f"Ticket {i}: the printer on floor {i % 5} is out of toner again." for i in range(100)]
        start = time.monotonic()
        failed = 0
        async for item in summarize.map(texts, concurrency=32):
            if not item.ok:
                failed += 1
                print(f"#{item.index} failed: {item.error}")
        elapsed = time.monotonic() - start
        print(
            f"mapped {len(texts)} inputs in {elapsed:.1f}s ({len(texts) / elapsed * 60:.0f}/min, limit {RPM}), "
            f"{failed} failed"
        )


async def main() -> None:
    if os.environ.get("OPENAI_API_KEY"):
        await run(None)
        return
    async with FakeOpenAIServer(requests_per_minute=RPM, latency=0.05, chunk_delay=0.02) as srv:
        await run(srv.base_url)
        print(f"429s sent by the server: {srv.rate_limited}")


if __name__ == "__main__":
    asyncio.run(main())
