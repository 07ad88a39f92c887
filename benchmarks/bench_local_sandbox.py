"""Throughput and latency of the local sandbox for ``print(1)``: the Python fast path against subprocess-per-run.

Run it from the project root (not part of the test suite)::

    .venv/bin/python benchmarks/bench_local_sandbox.py              # 400 requests per row
    .venv/bin/python benchmarks/bench_local_sandbox.py -n 1000 -c 1 4 8

Both modes run in the same invocation, one after the other, each against its own server process (``serve`` in a
subprocess, so the client does not share the server's interpreter), through real HTTP on loopback with one pooled
aiohttp session. Each row: completed runs per second, client-side latency p50/p95, and the CPU per run of this client
plus the server and every process under it (the process factory, the runs it reaped, its kill helper).
For reference, the real SandboxFusion server does 60-77 runs/s at concurrency 4 with p50 ~27 ms on a 2-core box.

Measured on the 2-core development machine, 1,500 requests per row, three invocations (the machine is shared: a
busier host moves these by 10-20 %):

    fast path            c=1: 285-314 runs/s, p50 3.1-3.4 ms     c=4: 541-595 runs/s, p50 6.5-7.2 ms
                         CPU per run at c=4: 2.95-3.23 ms
    subprocess per run   c=1:  22-24 runs/s,  p50 39-43 ms       c=4:  44-47 runs/s,  p50 81-87 ms

Session 4 (isolation on and off in one invocation, all processes' CPU split by process; load average 4-5 from other
sessions, 1,500 runs per row at concurrency 4, the session's start and end alternated in the same minutes, both
trees outside /tmp: a server importing from under /tmp costs every isolated run a bind mount, +0.3-0.5 ms):

    isolation full   start: 3.91 ms/run = server 0.85 + factory 0.97 + runs 1.75 + client 0.36
                     end:   3.51 ms/run = server 0.89 + factory 0.71 + runs 1.64 + client 0.30   (400 runs/s, p50 8.8)
    isolation uid    start: 2.97 ms/run            end: 2.74 ms/run

At the start of session 2 the fast path did 310-380 runs/s at p50 10.1-12.9 ms for 5.4 ms of CPU a run. Where it went
and what took it out is in docs/architecture.md ("The embedded sandbox"): mostly copy-on-write page faults after
fork, a journalled-disk rmdir, a second round trip to kill the run's uid, and modules (random, threading) whose fork
hooks ran in every child.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator

import aiohttp
from _plots import command_line, plot_local_sandbox  # benchmarks/ is on sys.path when the script runs

BODY = {"code": "print(1)", "language": "python"}


def _tree_cpu(root: int) -> dict[str, float]:
    """CPU seconds of ``root`` and every live descendant, each with the children it has reaped (no overlap), split
    into ``server`` (the server process), ``factory`` (the processes it started: the process factory, workers) and
    ``runs`` (what those reaped: the runs, their namespaces' inits; and every deeper live process)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            own = (int(fields[11]) + int(fields[12])) / ticks
            reaped = (int(fields[13]) + int(fields[14])) / ticks
            stats[int(entry)] = (int(fields[1]), own, reaped)
    split = {"server": 0.0, "factory": 0.0, "runs": 0.0}
    todo = [(root, 0)]
    while todo:
        pid, depth = todo.pop()
        _, own, reaped = stats.get(pid, (0, 0.0, 0.0))
        split[("server", "factory", "runs")[min(depth, 2)]] += own
        split["runs" if depth else "server"] += reaped
        todo.extend((child, depth + 1) for child, (ppid, _, _) in stats.items() if ppid == pid)
    return split


async def _measure(
    url: str, total: int, concurrency: int, server_pid: int = 0
) -> tuple[float, float, float, float, dict[str, float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        for _ in range(max(10, concurrency * 2)):  # warm-up: connections, caches, the zygote's pages
            async with session.post(f"{url}/run_code", json=BODY) as r:
                await r.read()

        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                t0 = time.perf_counter()
                async with session.post(f"{url}/run_code", json=BODY) as r:
                    body = await r.json()
                latencies.append(time.perf_counter() - t0)
                if body["run_result"]["stdout"] != "1\n":
                    raise RuntimeError(f"unexpected answer: {body}")

        before = _tree_cpu(server_pid) if server_pid else {}
        client_before = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        split = {"client": time.process_time() - client_before}
        after = _tree_cpu(server_pid) if server_pid else {}
        split.update((key, after[key] - before[key]) for key in after)
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
    per_run = {key: value / total * 1000 for key, value in split.items()}
    return total / elapsed, statistics.median(latencies) * 1000, p95 * 1000, sum(per_run.values()), per_run


_SERVER = """
import asyncio, sys
from aioagents.local import serve
asyncio.run(serve(port=0, python_fast_path=sys.argv[1] == "fast", isolation=sys.argv[2],
                  on_ready=lambda sb: print(sb.url, sb.isolation, flush=True)))
"""


@contextlib.asynccontextmanager
async def _server(fast: bool, isolation: str) -> AsyncIterator[tuple[str, int]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SERVER, "fast" if fast else "subprocess", isolation, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        url, _, level = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip().partition(" ")
        if not url.startswith("http"):
            raise RuntimeError("the server did not start")
        if isolation != "auto" and level != isolation:
            raise RuntimeError(f"asked for isolation {isolation!r}, the server has {level!r}")
        yield url, proc.pid
    finally:
        proc.terminate()  # the server's process factory sees its parent go and cleans up
        await proc.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--requests", type=int, default=400, help="requests per row")
    parser.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 4, 10])
    parser.add_argument("--no-subprocess", action="store_true", help="skip the subprocess-per-run row")
    args = parser.parse_args()
    rows: list[tuple[str, int, float, float, float, float, dict[str, float]]] = []
    # Isolation on and off in one invocation (off = a uid per run, as before namespaces; needs root).
    root = os.geteuid() == 0
    modes = [("fast, isolation full", True, "full"), ("fast, isolation uid", True, "uid")] if root else []
    modes = modes or [("fast path (zygote fork)", True, "auto")]
    if not args.no_subprocess:
        modes.append(("subprocess per run", False, "auto"))
    for mode, fast, isolation in modes:
        async with _server(fast, isolation) as (url, pid):
            for c in args.concurrency:
                rate, p50, p95, cpu, split = await _measure(url, args.requests, c, pid)
                rows.append((mode, c, rate, p50, p95, cpu, split))
    parts = ("server", "factory", "runs", "client")
    header = f"{'mode':<26}{'conc':>5}{'runs/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'CPU ms/run':>12}"
    print(header + "  = " + " + ".join(parts))
    for mode, c, rate, p50, p95, cpu, split in rows:
        shares = " + ".join(f"{split.get(part, 0.0):.2f}" for part in parts)
        print(f"{mode:<26}{c:>5}{rate:>10.1f}{p50:>10.1f}{p95:>10.1f}{cpu:>12.2f}  = {shares}")
    print("(CPU per completed run: this client plus the server and every process under it; the factory is what the")
    print(" server started, the runs what the factory reaped; from /proc tick counts, so take a few hundred runs)")
    by_mode = {(mode, c): (cpu, split) for mode, c, _, _, _, cpu, split in rows}
    for c in args.concurrency:
        if ("fast, isolation full", c) in by_mode and ("fast, isolation uid", c) in by_mode:
            (on, on_split), (off, off_split) = by_mode["fast, isolation full", c], by_mode["fast, isolation uid", c]
            extra = " + ".join(f"{on_split.get(part, 0.0) - off_split.get(part, 0.0):+.2f}" for part in parts)
            print(f"isolation adds {on - off:+.2f} ms of CPU per run at concurrency {c} (= {extra})")
    figure = plot_local_sandbox(
        [
            {"mode": m, "concurrency": c, "runs_per_s": r, "p50_ms": p50, "p95_ms": p95}
            for m, c, r, p50, p95, _, _ in rows
        ],
        command=command_line(),
    )
    print(f"figure: {figure.relative_to(figure.parents[2])}")


if __name__ == "__main__":
    asyncio.run(main())
