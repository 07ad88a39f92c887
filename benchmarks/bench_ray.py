"""Batches on a Ray cluster against the same batch on the local path, in one run.

    python benchmarks/bench_ray.py [--items 400] [--concurrency 8]

Three rows, the same ``print(i)`` programs each time:

* local: ``as_completed(client.run_code, …)`` against an embedded sandbox in this process (the path ``aioagents
  batch`` takes without ``--ray``) — the baseline;
* Ray, 1 node: ``ray_as_completed`` on a one-node cluster (its actor runs the embedded sandbox);
* Ray, 2 nodes: the same on a two-node cluster made with Ray's own cluster utilities on this machine.

Printed per row: throughput, wall time per item, and the driver's CPU per item; the overhead per item is the Ray
row's wall time per item minus the local one's. On a 2-core machine two nodes share the same two cores, so the second
node shows what the scheduling costs rather than a speed-up; on a real cluster each node brings its own cores.
Writes ``benchmarks/results/ray.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every Ray process on 127.0.0.1
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray
import ray.cloudpickle
from ray.cluster_utils import Cluster

from aioagents._batch import as_completed
from aioagents.cluster import ray_as_completed
from aioagents.local import LocalSandbox
from aioagents.sandbox import RunCodeRequest, SandboxClient

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


async def run_one(client: SandboxClient, request: RunCodeRequest) -> str:
    result = await client.run_code(request)
    return result.run_result.stdout if result.run_result else ""


def requests(n: int) -> list[RunCodeRequest]:
    return [RunCodeRequest(code=f"print({i})", language="python") for i in range(n)]


async def local_row(n: int, concurrency: int) -> dict[str, Any]:
    async with LocalSandbox() as sandbox, SandboxClient(sandbox.url) as client:
        await client.run_code("print(0)")  # warm
        cpu0, t0 = time.process_time(), time.perf_counter()
        ok = 0
        async for item in as_completed(lambda r: run_one(client, r), requests(n), concurrency=concurrency):
            ok += item.ok
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"row": "local", "ok": ok, "wall_s": wall, "driver_cpu_s": cpu}


async def ray_row(name: str, address: str, n: int, per_node: int) -> dict[str, Any]:
    warm = [r async for r in ray_as_completed(run_one, requests(8), address=address, per_node=per_node)]
    assert all(r.ok for r in warm)
    cpu0, t0 = time.process_time(), time.perf_counter()
    ok = 0
    async for item in ray_as_completed(run_one, requests(n), address=address, per_node=per_node):
        ok += item.ok
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"row": name, "ok": ok, "wall_s": wall, "driver_cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8, help="in flight: local, and per node on Ray")
    args = parser.parse_args()
    n, c = args.items, args.concurrency
    rows = [asyncio.run(local_row(n, c))]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        rows.append(asyncio.run(ray_row("ray, 1 node", cluster.address, n, c)))
        cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        rows.append(asyncio.run(ray_row("ray, 2 nodes", cluster.address, n, c // 2 or 1)))
    finally:
        ray.shutdown()
        cluster.shutdown()
    base = rows[0]["wall_s"] / n
    print(f"{'path':<14}{'ok':>6}{'runs/s':>10}{'ms/item':>10}{'overhead ms':>13}{'driver CPU ms/item':>20}")
    for row in rows:
        per = row["wall_s"] / n
        row.update(runs_per_s=n / row["wall_s"], ms_per_item=per * 1e3, overhead_ms=(per - base) * 1e3)
        print(
            f"{row['row']:<14}{row['ok']:>6}{row['runs_per_s']:>10.0f}{row['ms_per_item']:>10.2f}"
            f"{row['overhead_ms']:>13.2f}{row['driver_cpu_s'] / n * 1e3:>20.3f}"
        )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "ray.json").write_text(json.dumps({"items": n, "concurrency": c, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
