"""What a blocking call of the generated sync API costs over awaiting the same coroutine.

    python benchmarks/bench_sync_overhead.py [--calls N] [--repeat R]

Two workloads, each timed both ways: a coroutine that does no I/O (the bridge's whole cost shows) and one loopback
HTTP request to an aiohttp server in another thread (the cost users actually feel). Each blocking call is made from
a thread with no running loop, so it takes the bridge's fast path (the calling thread's persistent loop); the
portal path (a loop already running in the thread, as in Jupyter) is timed too, for comparison. Prints the best of
``--repeat`` rounds in µs per call. Target (issue 2): a blocking call adds ≤ 15 µs over the async call.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import aiohttp
from aiohttp import web

from aioagents.sync import _bridge

TARGET_US = 15.0


async def no_io() -> int:
    """A coroutine that finishes without suspending."""
    return 1


class HttpToy:
    """One aiohttp session per event loop, as the core Transport keeps them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    async def get(self) -> bytes:
        loop = asyncio.get_running_loop()
        session = self.sessions.get(loop)
        if session is None:
            session = self.sessions[loop] = aiohttp.ClientSession()
        async with session.get(self.url) as resp:
            return await resp.read()

    async def close_here(self) -> None:
        session = self.sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()


@contextmanager
def http_server() -> Iterator[str]:
    """An aiohttp server answering ``GET /`` with ``ok``, on its own loop thread."""

    async def ok(_: web.Request) -> web.Response:
        return web.Response(body=b"ok")

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(runner.cleanup())
        loop.close()


def time_async(make: Callable[[], Awaitable[object]], calls: int) -> float:
    """µs per ``await make()`` in a loop, inside one running event loop."""

    async def main() -> float:
        await make()  # warm up (opens the session for the HTTP workload)
        start = time.perf_counter()
        for _ in range(calls):
            await make()
        return (time.perf_counter() - start) / calls * 1e6

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        if isinstance(getattr(make, "__self__", None), HttpToy):
            loop.run_until_complete(make.__self__.close_here())  # type: ignore[attr-defined]
        loop.close()


def time_sync(make: Callable[[], Awaitable[object]], calls: int) -> float:
    """µs per ``_bridge.run(make())`` from a thread with no running loop (what a generated method does)."""
    _bridge.run(make())
    start = time.perf_counter()
    for _ in range(calls):
        _bridge.run(make())
    return (time.perf_counter() - start) / calls * 1e6


def time_portal(make: Callable[[], Awaitable[object]], calls: int) -> float:
    """µs per blocking call made from inside a running loop (Jupyter): it goes through the portal thread."""

    async def main() -> float:
        _bridge.run(make())
        start = time.perf_counter()
        for _ in range(calls):
            _bridge.run(make())
        return (time.perf_counter() - start) / calls * 1e6

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def best(fn: Callable[[], float], repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round for the no-I/O coroutine")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the best is reported")
    args = parser.parse_args()
    http_calls = max(args.calls // 20, 50)

    rows: list[tuple[str, float, float, float]] = []
    rows.append(
        (
            "no I/O coroutine",
            best(lambda: time_async(no_io, args.calls), args.repeat),
            best(lambda: time_sync(no_io, args.calls), args.repeat),
            best(lambda: time_portal(no_io, args.calls // 4), args.repeat),
        )
    )
    with http_server() as url:
        toy = HttpToy(url)
        rows.append(
            (
                "loopback HTTP GET",
                best(lambda: time_async(toy.get, http_calls), args.repeat),
                best(lambda: time_sync(toy.get, http_calls), args.repeat),
                best(lambda: time_portal(toy.get, http_calls), args.repeat),
            )
        )
        # Close the sessions the sync runs opened, each on its own loop.
        for loop in list(toy.sessions):
            if not loop.is_closed():
                _bridge.run_on(loop, toy.close_here)

    header = f"{'workload':<20}{'async µs':>10}{'sync µs':>10}{'sync−async':>12}{'ratio':>8}{'portal µs':>11}"
    print(header)
    print("-" * len(header))
    for name, a, s, p in rows:
        print(f"{name:<20}{a:>10.1f}{s:>10.1f}{s - a:>12.1f}{s / a:>8.2f}{p:>11.1f}")
    overhead = rows[0][2] - rows[0][1]
    verdict = "meets" if overhead <= TARGET_US else "MISSES"
    print(f"\nblocking-call overhead {overhead:.1f} µs: {verdict} the ≤ {TARGET_US:.0f} µs target")


if __name__ == "__main__":
    main()
