"""The embedded sandbox against its worker count: throughput, latency and the CPU per run of every long-lived process.

    python benchmarks/bench_workers.py [--workers 1,2,8] [--concurrency 1,4,16,64] [--runs 1500]

For each worker count, ``aioagents serve --workers W`` runs in its own process group (so this client's CPU is not
counted in it), and for each concurrency this process sends ``--runs`` ``print(1)`` programs through the public
``SandboxClient.run_many`` over ``concurrency`` keep-alive connections. Printed per row: runs/s, p50 and p95 latency,
and — read from ``/proc`` before and after — the CPU per run of every long-lived process of the server (each worker's
event loop, each process factory), counted over all runs of the row. The largest of those is the ceiling one process
sets: a process spending C ms of CPU per run caps the sandbox near 1000 / C runs/s however many cores there are.
Writes ``benchmarks/results/workers.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from aioagents.sandbox import RunCodeRequest, SandboxClient

_TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out.extend(int(p) for p in (task / "children").read_text().split())
    return out


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # the process's own utime + stime, not its children's


def long_lived(server_pid: int) -> dict[int, str]:
    """Every worker (the serve process and its worker children) and every process factory under them."""
    found = {server_pid: "worker 0 loop"}
    workers = [server_pid] + [
        p for p in _children(server_pid) if b"_workers" in Path(f"/proc/{p}/cmdline").read_bytes()
    ]
    for i, pid in enumerate(workers):
        found[pid] = f"worker {i} loop"
        for child in _children(pid):
            if b"_zygote" in Path(f"/proc/{child}/cmdline").read_bytes():
                found[child] = f"worker {i} factory"
    return found


async def one_row(url: str, runs: int, concurrency: int, procs: dict[int, str]) -> dict[str, Any]:
    requests = [RunCodeRequest(code="print(1)", language="python") for _ in range(runs)]
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session, SandboxClient(url, session=session) as client:
        warm = [RunCodeRequest(code="print(0)", language="python") for _ in range(concurrency * 4)]
        async for _ in client.run_many(warm, concurrency=concurrency):
            pass

        async def timed(request: RunCodeRequest) -> None:
            t0 = time.perf_counter()
            await client.run_code(request)
            latencies.append(time.perf_counter() - t0)

        cpu0 = {pid: _cpu(pid) for pid in procs}
        t0 = time.perf_counter()
        sem = asyncio.Semaphore(concurrency)

        async def bounded(request: RunCodeRequest) -> None:
            async with sem:
                await timed(request)

        await asyncio.gather(*(bounded(r) for r in requests))
        wall = time.perf_counter() - t0
        cpu = {pid: (_cpu(pid) - cpu0[pid]) / runs * 1e3 for pid in procs}
    latencies.sort()
    return {
        "concurrency": concurrency,
        "runs_per_s": runs / wall,
        "p50_ms": latencies[len(latencies) // 2] * 1e3,
        "p95_ms": latencies[int(len(latencies) * 0.95)] * 1e3,
        "cpu_ms_per_run": {procs[pid]: round(ms, 3) for pid, ms in cpu.items()},
        "max_process_cpu_ms_per_run": max(cpu.values()),
    }


def serve(workers: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aioagents.cli", "serve", "--port", "0", "--workers", str(workers)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    url = line.split(" at ", 1)[1].split()[0]
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,8")
    parser.add_argument("--concurrency", default="1,4,16,64")
    parser.add_argument("--runs", type=int, default=1500)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    print(f"{'workers':>7}{'conc':>6}{'runs/s':>9}{'p50 ms':>8}{'p95 ms':>8}  max CPU/run of one process (ms)")
    for workers in (int(w) for w in args.workers.split(",")):
        proc, url = serve(workers)
        try:
            time.sleep(0.5)
            procs = long_lived(proc.pid)
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                row = asyncio.run(one_row(url, args.runs, concurrency, procs))
                row["workers"] = workers
                rows.append(row)
                worst = max(row["cpu_ms_per_run"].items(), key=lambda kv: kv[1])
                print(
                    f"{workers:>7}{concurrency:>6}{row['runs_per_s']:>9.0f}{row['p50_ms']:>8.1f}{row['p95_ms']:>8.1f}"
                    f"  {worst[1]:.3f} ({worst[0]})",
                    flush=True,
                )
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
            if proc.stdout is not None:
                proc.stdout.close()
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "workers.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
