"""Four processes share one Redis-backed limit of 1,200 requests/min against a server that enforces 1,200/min.

    .venv/bin/python benchmarks/bench_shared_limiter.py                  # about 1 minute
    .venv/bin/python benchmarks/bench_shared_limiter.py --requests 400   # quicker
    .venv/bin/python benchmarks/bench_shared_limiter.py --baseline       # also: 4 local limits (the old way)

Needs ``redis-server`` on the PATH (Debian: ``apt-get install redis-server``) and the ``redis`` extra; the script
starts its own server on a free loopback port, without persistence, and stops it at the end.

The server is :class:`~aioagents.testing.FakeOpenAIServer` with its own limiter at the same limit (a bucket holding
``--server-burst`` seconds of quota): every request over the limit is answered 429 and counted. Each worker process
is a ``ChatClient(rate_limiter=RateLimiter.redis(...), max_attempts=1)`` sending ``--concurrency`` requests at a time
until its share of ``--requests`` is done, so a 429 is never hidden by a retry.

Printed: the aggregate rate as the server saw it (accepted requests per minute between the first and the last one,
less the burst the limit allows at the start), the 429s the server sent, and the cost of an acquire that does not wait
(wall time, it is a round trip) next to a plain ``PING`` round trip on the same connection pool, measured in the same
run as the floor. With ``--baseline``, the same job with a local limit of 1,200/min in each process is run first (what
a user had before): four times the rate, and the 429s that follow. Results go to ``benchmarks/results/
shared_limiter.json``; the exit status is 1 when a target is missed (aggregate within ``--tolerance`` of the limit,
zero 429s, acquire ≤ 0.5 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aioagents import APIStatusError, RateLimiter
from aioagents.functions import ChatClient
from aioagents.testing import FakeOpenAIServer

RESULTS = Path(__file__).parent / "results" / "shared_limiter.json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A throwaway redis-server on a free loopback port."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
        self.port = _free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="bench-redis-")
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [*args, "--dir", self._dir.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise SystemExit("redis-server did not start") from None
                time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._dir.cleanup()


# -- a worker process -----------------------------------------------------------------------------------------------
async def worker(base_url: str, redis_url: str, key: str, rpm: float, burst: float, n: int, concurrency: int) -> None:
    if redis_url == "local":
        limiter = RateLimiter(rpm, per=60, burst=burst)
    else:
        limiter = RateLimiter.redis(redis_url, key=key, rate=rpm, per=60, burst=burst)
    errors: dict[str, int] = {}
    todo = iter(range(n))
    messages = [{"role": "user", "content": "ping"}]
    async with ChatClient(base_url=base_url, api_key="sk-bench", rate_limiter=limiter, max_attempts=1) as client:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

        async def run() -> None:
            for _ in todo:
                try:
                    await client.create(model="m", messages=messages)
                except APIStatusError as exc:
                    errors[str(exc.status)] = errors.get(str(exc.status), 0) + 1

        await asyncio.gather(*(run() for _ in range(concurrency)))
    if hasattr(limiter, "aclose"):
        await limiter.aclose()
    print(json.dumps({"errors": errors}), flush=True)


# -- the driver -----------------------------------------------------------------------------------------------------
async def shared_job(
    srv: FakeOpenAIServer, redis_url: str, processes: int, requests: int, rpm: float, burst: float, concurrency: int
) -> dict[str, Any]:
    key = f"bench-{uuid.uuid4().hex}"
    share = [requests // processes + (i < requests % processes) for i in range(processes)]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            srv.base_url,
            redis_url,
            key,
            str(rpm),
            str(burst),
            str(n),
            str(concurrency),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for n in share
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await proc.stdout.readline()
            if line.strip() != b"ready":
                raise SystemExit(f"a worker failed to start: {line!r}")
        accepted_before, limited_before = len(srv.accepted_at), srv.rate_limited
        start = time.monotonic()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
        errors: dict[str, int] = {}
        for proc in procs:
            assert proc.stdout is not None
            report = json.loads(await proc.stdout.readline())
            for code, count in report["errors"].items():
                errors[code] = errors.get(code, 0) + count
            await proc.wait()
        elapsed = time.monotonic() - start
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    accepted = srv.accepted_at[accepted_before:]
    span = accepted[-1] - accepted[0] if len(accepted) > 1 else float("nan")
    limited = srv.rate_limited - limited_before
    return {
        "accepted": len(accepted),
        "server_429s": limited,
        # What the clients sent, accepted or not, per minute of the whole job.
        "sent_rpm": (len(accepted) + limited) / elapsed * 60,
        "client_errors": errors,
        # The first `burst` requests may go at once; the rate is what follows them.
        "achieved_rpm": (len(accepted) - max(1.0, burst)) / span * 60 if span else float("nan"),
        "span_s": span,
    }


async def acquire_cost(redis_url: str, rounds: int) -> dict[str, float]:
    """Wall µs of an acquire that does not wait, and of a PING on the same pool (one round trip), best of 3."""
    async with RateLimiter.redis(redis_url, key=f"cost-{uuid.uuid4().hex}", rate=1e9, burst=1e9) as limiter:
        client = limiter._client()[0]
        await limiter.acquire()
        await client.ping()
        acquire_us, ping_us = [], []
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(rounds):
                await client.ping()
            ping_us.append((time.perf_counter() - start) / rounds * 1e6)
            start = time.perf_counter()
            for _ in range(rounds):
                await limiter.acquire()
            acquire_us.append((time.perf_counter() - start) / rounds * 1e6)
        # Median single-acquire latency too, from individually timed calls.
        singles = []
        for _ in range(rounds):
            start = time.perf_counter()
            await limiter.acquire()
            singles.append((time.perf_counter() - start) * 1e6)
    return {
        "acquire_us": min(acquire_us),
        "ping_us": min(ping_us),
        "acquire_median_us": statistics.median(singles),
        "acquire_p99_us": sorted(singles)[int(len(singles) * 0.99) - 1],
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    server = RedisServer()
    try:
        out: dict[str, Any] = {"limit_rpm": args.rpm, "processes": args.processes, "requests": args.requests}
        out["cost"] = await acquire_cost(server.url, args.rounds)
        async with FakeOpenAIServer(requests_per_minute=args.rpm, burst_seconds=args.server_burst) as srv:
            if args.baseline:
                out["baseline_local"] = await shared_job(
                    srv, "local", args.processes, args.baseline_requests, args.rpm, args.burst, args.concurrency
                )
                await asyncio.sleep(args.server_burst + 1)  # let the server's bucket refill
            out["shared"] = await shared_job(
                srv, server.url, args.processes, args.requests, args.rpm, args.burst, args.concurrency
            )
        return out
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        base_url, redis_url, key, rpm, burst, n, concurrency = argv[1:]
        asyncio.run(worker(base_url, redis_url, key, float(rpm), float(burst), int(n), int(concurrency)))
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rpm", type=int, default=1200, help="the limit, shared by the clients and on the server")
    parser.add_argument("--requests", type=int, default=1000, help="requests of all processes together")
    parser.add_argument("--burst", type=float, default=2.0, help="the shared limit's burst (requests)")
    parser.add_argument("--server-burst", type=float, default=0.5, help="seconds of quota the server's bucket holds")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight per process")
    parser.add_argument("--rounds", type=int, default=2000, help="acquires per round of the cost measurement")
    parser.add_argument("--baseline", action="store_true", help="first run the job with a local limit per process")
    parser.add_argument("--baseline-requests", type=int, default=200)
    parser.add_argument("--tolerance", type=float, default=0.02, help="allowed relative distance from the limit")
    args = parser.parse_args(argv)
    r = asyncio.run(bench(args))
    cost, shared = r["cost"], r["shared"]
    deviation = (shared["achieved_rpm"] - args.rpm) / args.rpm
    r["deviation"] = deviation
    if "baseline_local" in r:
        base = r["baseline_local"]
        print(
            f"baseline: {args.processes} local limits of {args.rpm}/min sent {base['sent_rpm']:.0f} requests/min "
            f"({base['sent_rpm'] / args.rpm:.2f}x the limit): {base['server_429s']} of "
            f"{base['accepted'] + base['server_429s']} answered 429"
        )
    print(f"limit               {args.rpm} requests/min shared by {args.processes} processes (burst {args.burst:g})")
    sent = shared["sent_rpm"]
    print(f"requests            {shared['accepted']} accepted over {shared['span_s']:.1f}s (sent {sent:.0f}/min)")
    print(f"achieved (server)   {shared['achieved_rpm']:.1f} requests/min ({deviation:+.2%} from the limit)")
    print(f"429s from server    {shared['server_429s']} (client errors: {shared['client_errors'] or 'none'})")
    print(
        f"acquire, no wait    {cost['acquire_us']:.0f} µs mean, {cost['acquire_median_us']:.0f} µs median, "
        f"{cost['acquire_p99_us']:.0f} µs p99; PING round trip {cost['ping_us']:.0f} µs "
        f"(acquire = {cost['acquire_us'] / cost['ping_us']:.2f}x a PING)"
    )
    ok = (
        abs(deviation) <= args.tolerance
        and shared["server_429s"] == 0
        and not shared["client_errors"]
        and cost["acquire_us"] <= 500
    )
    print("PASS" if ok else "FAIL")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(r, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
