"""Client cost per request: aioagents vs bare aiohttp vs the official sandbox-fusion SDK, in one run.

    python benchmarks/bench_client.py [--requests 5000] [--concurrency 64]

The server runs in another process (benchmarks/_fast_server.py) and answers at once, so the figure is the *client's*
CPU time per request (process time of this process). Every figure is a ratio against bare aiohttp with one shared
session measured in the same run. Also: the blocking ``aioagents.sync.SandboxClient.run_many`` against the async
``run_many`` (throughput, same run), and the sync ``run_concurrent`` against the async batch.

Targets (issue 12): aioagents CPU ≤ 1.1× bare aiohttp; the official SDK ≥ 4.5× aioagents' CPU; the blocking
``run_many`` ≥ 0.9× the async ``run_many`` throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from _plots import command_line, plot_client_cpu  # benchmarks/ is on sys.path when the script runs

HERE = Path(__file__).resolve().parent
BODY = {
    "code": "print(1)", "language": "python", "compile_timeout": 10, "run_timeout": 10, "memory_limit_MB": -1,
    "stdin": None, "files": {}, "fetch_files": [],
}  # fmt: skip


async def _drive(call: Callable[[int], Awaitable[Any]], n: int, concurrency: int) -> tuple[float, float]:
    """Run ``n`` calls with ``concurrency`` in flight; return (client CPU seconds, wall seconds)."""
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            await call(i)

    gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - cpu0, time.perf_counter() - wall0


async def bench_bare(url: str, n: int, c: int) -> tuple[float, float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:

        async def call(_: int) -> Any:
            async with session.post(url + "/run_code", json=BODY) as resp:
                return await resp.json()

        await _drive(call, 200, c)  # warm the pool
        return await _drive(call, n, c)


async def bench_aioagents(url: str, n: int, c: int) -> tuple[float, float]:
    from aioagents.sandbox import RunCodeRequest, SandboxClient

    request = RunCodeRequest(code="print(1)", language="python")
    async with SandboxClient(url) as client:

        async def call(_: int) -> Any:
            return await client.run_code(request)

        await _drive(call, 200, c)
        return await _drive(call, n, c)


async def bench_official(url: str, n: int, c: int) -> tuple[float, float]:
    import sandbox_fusion as sf

    request = sf.RunCodeRequest(code="print(1)", language="python")

    async def call(_: int) -> Any:
        return await sf.run_code_async(request, endpoint=url, max_attempts=1)

    await _drive(call, 100, c)
    return await _drive(call, n, c)


async def bench_async_run_many(url: str, n: int, c: int) -> tuple[float, float]:
    from aioagents.sandbox import RunCodeRequest, SandboxClient

    requests = [RunCodeRequest(code="print(1)", language="python") for _ in range(n)]
    async with SandboxClient(url) as client:
        async for _ in client.run_many(requests[:200], concurrency=c):
            pass
        gc.collect()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        async for item in client.run_many(requests, concurrency=c):
            item.unwrap()
        return time.process_time() - cpu0, time.perf_counter() - wall0


def bench_sync_run_many(url: str, n: int, c: int) -> tuple[float, float]:
    """The blocking ``aioagents.sync.SandboxClient.run_many``, iterated from plain (loop-less) code."""
    from aioagents.sandbox import RunCodeRequest
    from aioagents.sync import SandboxClient

    requests = [RunCodeRequest(code="print(1)", language="python") for _ in range(n)]
    with SandboxClient(url) as client:
        for _ in client.run_many(requests[:200], concurrency=c):
            pass
        gc.collect()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for item in client.run_many(requests, concurrency=c):
            item.unwrap()
        return time.process_time() - cpu0, time.perf_counter() - wall0


def bench_run_concurrent(url: str, n: int, c: int) -> tuple[float, float]:
    from aioagents.compat import sandbox_fusion as compat

    compat.set_sandbox_endpoint(url)
    args = [[compat.RunCodeRequest(code="print(1)", language="python")] for _ in range(n)]
    compat.run_concurrent(compat.run_code, args=args[:200], concurrency=c)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    compat.run_concurrent(compat.run_code, args=args, concurrency=c)
    return time.process_time() - cpu0, time.perf_counter() - wall0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best round of each counts")
    parser.add_argument("--official-requests", type=int, default=1000, help="the SDK is slow; fewer calls suffice")
    args = parser.parse_args()
    n, c = args.requests, args.concurrency
    clients: list[tuple[str, Callable[[str, int, int], Any], int]] = [
        ("bare aiohttp (one session)", bench_bare, n),
        ("aioagents SandboxClient", bench_aioagents, n),
        ("official sandbox-fusion run_code_async", bench_official, args.official_requests),
    ]
    server = subprocess.Popen([sys.executable, str(HERE / "_fast_server.py")], stdout=subprocess.PIPE, text=True)
    # Other processes share the machine: interleave the clients round by round and keep each one's best round, so
    # a burst of load elsewhere does not land on one client only.
    best: dict[str, tuple[float, float, int]] = {}
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        for _ in range(args.rounds):
            for name, fn, count in clients:
                cpu, wall = asyncio.run(fn(url, count, c))
                if name not in best or cpu / count < best[name][0] / best[name][2]:
                    best[name] = (cpu, wall, count)
            for name, blocking in [
                ("aioagents async run_many", lambda: asyncio.run(bench_async_run_many(url, n, c))),
                ("aioagents sync run_many", lambda: bench_sync_run_many(url, n, c)),
                ("aioagents sync run_concurrent", lambda: bench_run_concurrent(url, n, c)),
            ]:
                cpu, wall = blocking()
                if name not in best or wall < best[name][1]:
                    best[name] = (cpu, wall, n)
    finally:
        server.terminate()
        server.wait()

    def per(name: str) -> float:
        cpu, _, count = best[name]
        return cpu / count

    base = per("bare aiohttp (one session)")
    print(f"{n} run_code calls at concurrency {c}, best of {args.rounds} rounds "
          f"(official SDK: {args.official_requests} calls a round)\n")  # fmt: skip
    print(f"{'client':42} {'CPU µs/req':>11} {'× bare':>8} {'req/s':>9}")
    for name, (_, wall, count) in best.items():
        print(f"{name:42} {per(name) * 1e6:11.1f} {per(name) / base:8.2f} {count / wall:9.0f}")
    summary = {
        "aioagents_cpu_vs_bare": per("aioagents SandboxClient") / base,
        "official_cpu_vs_aioagents": per("official sandbox-fusion run_code_async") / per("aioagents SandboxClient"),
        "sync_run_concurrent_vs_async_throughput": (n / best["aioagents sync run_concurrent"][1])
        / (n / best["aioagents SandboxClient"][1]),
        "sync_run_many_vs_async_run_many_throughput": best["aioagents async run_many"][1]
        / best["aioagents sync run_many"][1],
        "sync_run_many_cpu_vs_bare": per("aioagents sync run_many") / base,
        # On a loaded machine wall time swings with the other processes; the client's CPU per request (what bounds
        # its throughput when the server has a core of its own) is the steadier comparison.
        "sync_run_many_vs_async_run_many_cpu": per("aioagents sync run_many") / per("aioagents async run_many"),
    }
    print()
    print(f"aioagents CPU / bare aiohttp CPU:        {summary['aioagents_cpu_vs_bare']:.2f}  (target ≤ 1.1)")
    print(f"official SDK CPU / aioagents CPU:        {summary['official_cpu_vs_aioagents']:.1f}  (target ≥ 4.5)")
    print(f"sync run_many / async run_many, req/s:   {summary['sync_run_many_vs_async_run_many_throughput']:.2f}"
          "  (target ≥ 0.9)")  # fmt: skip
    print(f"sync run_many CPU / async run_many CPU:  {summary['sync_run_many_vs_async_run_many_cpu']:.2f}")
    print(f"sync run_many CPU / bare aiohttp CPU:    {summary['sync_run_many_cpu_vs_bare']:.2f}")
    print(f"sync run_concurrent / async throughput:  {summary['sync_run_concurrent_vs_async_throughput']:.2f}"
          "  (target ≥ 0.8)")  # fmt: skip
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "client.json").write_text(json.dumps(summary, indent=2))
    cpu_us = {name: per(name) * 1e6 for name in best if name != "aioagents sync run_concurrent"}
    figure = plot_client_cpu(cpu_us, baseline="bare aiohttp (one session)", command=command_line())
    print(f"figure: {figure.relative_to(figure.parents[2])}")


if __name__ == "__main__":
    main()
