"""Map an LM function over many inputs at a requests-per-minute limit and measure how close to the limit it runs.

    .venv/bin/python benchmarks/bench_functions_rate.py                 # 2,000 inputs at 6,000 requests/min
    .venv/bin/python benchmarks/bench_functions_rate.py --inputs 500 --rpm 3000 --latency 0.05

The server is :class:`~aioagents.testing.FakeOpenAIServer` with its own limiter at the same limit (a bucket holding one
second of quota, like OpenAI's short-window enforcement): every request over the limit is answered 429 and counted.
The client is ``LmFunction.create(..., requests_per_minute=...)`` and ``fn.map(inputs, concurrency=...)``.

Printed: the achieved rate as the server saw it (requests accepted per minute between the first and the last one),
the wall-clock rate, the 429s the server sent, and per-item errors. The exit status is 0 when the achieved rate is
within ``--tolerance`` (2 %) of the limit and the server sent no 429, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from aioagents.functions import Example, LmFunction
from aioagents.testing._openai import FakeOpenAIServer


async def bench(inputs: int, rpm: int, concurrency: int, latency: float) -> dict[str, float]:
    async with FakeOpenAIServer(requests_per_minute=rpm, latency=latency) as srv:
        srv.add_rule(lambda body: True, "positive")
        fn = LmFunction.create(
            "Classify the sentiment of the review as positive, negative or neutral.",
            [Example("I love it", "positive"), Example("Broken on arrival", "negative")],
            base_url=srv.base_url,
            api_key="sk-bench",
            requests_per_minute=rpm,
        )
        texts = [f"review number {i}: it was fine, I guess" for i in range(inputs)]
        errors = 0
        done = 0
        async with fn:
            start = time.monotonic()
            async for item in fn.map(texts, concurrency=concurrency):
                done += 1
                if not item.ok:
                    errors += 1
            elapsed = time.monotonic() - start
        accepted = srv.accepted_at
        span = accepted[-1] - accepted[0] if len(accepted) > 1 else float("nan")
        return {
            "inputs": inputs,
            "done": done,
            "errors": errors,
            "server_429s": srv.rate_limited,
            "accepted": len(accepted),
            "achieved_rpm": (len(accepted) - 1) / span * 60 if span else float("nan"),
            "wall_rpm": len(accepted) / elapsed * 60,
            "elapsed_s": elapsed,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=2000)
    parser.add_argument("--rpm", type=int, default=6000, help="the limit, on both client and server")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the fake takes per answer")
    parser.add_argument("--tolerance", type=float, default=0.02, help="allowed relative distance from the limit")
    args = parser.parse_args(argv)
    r = asyncio.run(bench(args.inputs, args.rpm, args.concurrency, args.latency))
    deviation = (r["achieved_rpm"] - args.rpm) / args.rpm
    print(f"inputs              {r['inputs']:.0f} (done {r['done']:.0f}, per-item errors {r['errors']:.0f})")
    print(f"limit               {args.rpm} requests/min, concurrency {args.concurrency}, latency {args.latency:g}s")
    print(f"achieved (server)   {r['achieved_rpm']:.1f} requests/min ({deviation:+.2%} from the limit)")
    print(f"wall clock          {r['wall_rpm']:.1f} requests/min over {r['elapsed_s']:.2f}s")
    print(f"429s from server    {r['server_429s']:.0f}")
    ok = abs(deviation) <= args.tolerance and r["server_429s"] == 0 and r["errors"] == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
