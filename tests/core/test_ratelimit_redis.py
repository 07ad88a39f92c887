"""RateLimiter.redis: one limit shared through a real redis-server by real worker processes.

The session starts its own ``redis-server`` on a free loopback port (no persistence) and stops it at the end; each
test uses its own key. Worker processes are real subprocesses of this interpreter that hold the limit and report
``time.monotonic()`` (one clock for every process on the machine) of every grant.

Rate checks are upper bounds only: every grant is observed after the moment it was due, never before, so a busy
machine can make a run slower but cannot make a correct limiter fail them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aioagents import RateLimiter, RateLimiterUnavailableError
from aioagents.functions import ChatClient, Example, LmFunction
from aioagents.testing import FakeOpenAIServer, redis_server

aioredis = pytest.importorskip("redis.asyncio", reason="the redis extra is not installed")

CANARY = "hunter2-canary-5d1e"

# A holder process: connect, say "ready", wait for "go" on stdin, take `n` units one after another, print the
# monotonic time of each grant as JSON.
WORKER = """
import asyncio, json, sys, time
from aioagents import RateLimiter

async def main(url, key, rate, per, burst, n):
    async with RateLimiter.redis(url, key=key, rate=rate, per=per, burst=burst) as limiter:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        grants = []
        for _ in range(n):
            await limiter.acquire()
            grants.append(time.monotonic())
        print(json.dumps(grants), flush=True)

url, key, rate, per, burst, n = sys.argv[1:]
asyncio.run(main(url, key, float(rate), float(per), float(burst), int(n)))
"""


@contextlib.contextmanager
def _redis_server(port: int, workdir: Path) -> Iterator[str]:
    """A redis-server on ``port`` of the loopback, without persistence, for the duration of the block."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    with redis_server(port=port, workdir=str(workdir)) as url:
        yield url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The redis-server of this test session, on a free loopback port."""
    with _redis_server(_free_port(), tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def key() -> str:
    return f"test-{uuid.uuid4().hex}"


def _pause_key(key: str) -> str:
    return f"aioagents:ratelimit:{{{key}}}:pause"


class Workers:
    """Holder processes started together, released together with :meth:`go`."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, count: int, *args: object) -> None:
        for _ in range(count):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                WORKER,
                *map(str, args),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            self.procs.append(proc)
        for proc in self.procs:
            assert proc.stdout is not None
            assert (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() == b"ready"

    def go(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")

    async def grants(self) -> list[list[float]]:
        out = []
        for proc in self.procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 90)
            out.append(json.loads(line))
            assert await proc.wait() == 0
        return out

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_four_processes_share_one_limit_without_burst(redis_url: str, key: str) -> None:
    rate, burst, per_worker = 20.0, 2.0, 10
    workers = Workers()
    try:
        await workers.start(4, redis_url, key, rate, 1, burst, per_worker)
        start = time.monotonic()
        workers.go()
        grants = sorted(t for times in await workers.grants() for t in times)
    finally:
        await workers.close()
    assert len(grants) == 4 * per_worker

    # The k-th grant of all holders together is never before start + (k - burst) / rate: at most `burst` at once,
    # then the rate. The bucket runs on Redis's clock (TIME: the wall clock) and the grants are timed here on the
    # monotonic one; the two may drift apart by the wall clock's slew (NTP allows 500 ppm; a grant 0.15 ms early at
    # 1.9 s was seen in CI), so allow 1 ms for timer rounding plus 1,000 ppm. Four limits of 20/s each would let the
    # 40 grants through in half a second: hundreds of ms early, far beyond this.
    def bound(k: int) -> float:
        ideal = (k - burst) / rate
        return ideal - 0.001 - 0.001 * ideal

    early = [(k, t - start) for k, t in enumerate(grants, 1) if t - start < bound(k)]
    assert early == []


async def test_retry_after_pauses_every_holder(redis_url: str, key: str) -> None:
    workers = Workers()
    try:
        await workers.start(3, redis_url, key, 600, 60, 5, 1)
        async with (
            FakeOpenAIServer() as srv,
            RateLimiter.redis(redis_url, key=key, rate=600, per=60, burst=5) as limiter,
            ChatClient(base_url=srv.base_url, api_key="sk-test", rate_limiter=limiter, max_attempts=2) as client,
            aioredis.Redis.from_url(redis_url) as probe,
        ):
            srv.inject_error(429, "slow down", retry_after="1")
            started = time.monotonic()
            call = asyncio.create_task(client.create(model="m", messages=[{"role": "user", "content": "hi"}]))
            while not await probe.exists(_pause_key(key)):  # the 429's Retry-After, stored for every holder
                assert not call.done(), "the call ended before any pause reached Redis"
                await asyncio.sleep(0.005)
            workers.go()
            grants = [times[0] for times in await workers.grants()]
            completion = await call
        assert completion.choices[0].message.content == "hi"
        # Each other process asked during the pause and was held until its end (1 s after the 429 at the earliest).
        assert [t for t in grants if t < started + 1.0] == []
    finally:
        await workers.close()


async def test_rate_limit_headers_at_zero_pause_other_holders(redis_url: str, key: str) -> None:
    async with (
        FakeOpenAIServer(requests_per_minute=60, burst_seconds=1) as srv,  # one request, then one a second
        RateLimiter.redis(redis_url, key=key, rate=100, per=1, burst=10) as first,
        RateLimiter.redis(redis_url, key=key, rate=100, per=1, burst=10) as second,
        ChatClient(base_url=srv.base_url, api_key="sk-test", rate_limiter=first) as client,
    ):
        sent = time.monotonic()
        await client.create(model="m", messages=[{"role": "user", "content": "hi"}])
        info = client.rate_limits
        assert info is not None
        assert info.remaining_requests == 0
        assert info.reset_requests
        await second.acquire()  # another holder (in another process, as far as Redis can tell)
        assert time.monotonic() - sent >= info.reset_requests


async def test_a_pause_never_shortens_a_longer_one(redis_url: str, key: str) -> None:
    async with (
        RateLimiter.redis(redis_url, key=key, rate=100, per=1, burst=10) as one,
        aioredis.Redis.from_url(redis_url) as probe,
    ):
        await one.acquire()
        one.pause(5)
        await asyncio.sleep(0.05)
        one.pause(0.1)
        await asyncio.sleep(0.05)
        assert await probe.pttl(_pause_key(key)) > 4000


async def test_unreachable_redis_raises_a_typed_error_without_the_password(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://:{CANARY}@127.0.0.1:{_free_port()}/0?password={CANARY}"
    caplog.set_level(logging.DEBUG)
    limiter = RateLimiter.redis(url, key=key, rate=10, timeout=1)
    try:
        with pytest.raises(RateLimiterUnavailableError) as info:
            await limiter.acquire()
    finally:
        await limiter.aclose()
    assert key in str(info.value)
    assert "127.0.0.1" in str(info.value)
    for text in (str(info.value), repr(limiter), caplog.text, repr(info.value.__cause__)):
        assert CANARY not in text


async def test_redis_lost_mid_run_is_a_typed_error(tmp_path: Path, key: str) -> None:
    port = _free_port()
    async with RateLimiter.redis(f"redis://127.0.0.1:{port}/0", key=key, rate=100, timeout=1) as limiter:
        with _redis_server(port, tmp_path):
            await limiter.acquire()
        with pytest.raises(RateLimiterUnavailableError):
            await limiter.acquire()


async def test_a_wrong_password_is_a_typed_error_without_the_password(redis_url: str, key: str) -> None:
    url = redis_url.replace("redis://", f"redis://user:{CANARY}@")
    async with RateLimiter.redis(url, key=key, rate=10) as limiter:
        with pytest.raises(RateLimiterUnavailableError) as info:
            await limiter.acquire()
    assert CANARY not in str(info.value)
    assert "***" in str(info.value)


async def test_local_fallback_is_opt_in_and_still_limits(key: str, caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://:{CANARY}@127.0.0.1:{_free_port()}/0"
    async with RateLimiter.redis(url, key=key, rate=20, per=1, burst=2, fallback="local", timeout=1) as limiter:
        with caplog.at_level(logging.WARNING, logger="aioagents.ratelimit"):
            start = time.monotonic()
            for _ in range(8):
                await limiter.acquire()
            elapsed = time.monotonic() - start
    # 2 at once, then 6 more at 20/s: never an unlimited run.
    assert elapsed >= 6 / 20 - 0.01
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one warning per outage, not one per acquire
    assert "limiting locally" in warnings[0].getMessage()
    assert CANARY not in caplog.text


async def test_a_given_fallback_limiter_is_used(key: str) -> None:
    local = RateLimiter(10, per=1, burst=1)
    url = f"redis://127.0.0.1:{_free_port()}/0"
    async with RateLimiter.redis(url, key=key, rate=1000, per=1, burst=100, fallback=local, timeout=1) as limiter:
        start = time.monotonic()
        for _ in range(4):
            await limiter.acquire()
        # The fallback's 10/s, not the shared limit's 1000/s.
        assert time.monotonic() - start >= 3 / 10 - 0.01


async def test_local_fallback_goes_back_to_redis_once_it_is_up(
    tmp_path: Path, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    async with RateLimiter.redis(
        url, key=key, rate=1000, per=1, burst=100, fallback="local", timeout=1, retry_interval=0.1
    ) as limiter:
        with caplog.at_level(logging.WARNING, logger="aioagents.ratelimit"):
            await limiter.acquire()  # Redis is down: the local limit
            await asyncio.sleep(0.2)
            await limiter.acquire()  # still down: no second warning
        assert [r.getMessage().split(";")[1].strip() for r in caplog.records] == [
            "limiting locally (per process) and trying Redis again every 0.1s"
        ]
        caplog.clear()
        with _redis_server(port, tmp_path), caplog.at_level(logging.WARNING, logger="aioagents.ratelimit"):
            await asyncio.sleep(0.2)
            await limiter.acquire()
            async with aioredis.Redis.from_url(url) as probe:
                assert await probe.exists(f"aioagents:ratelimit:{{{key}}}:tat")
            assert [r.getMessage() for r in caplog.records] == [
                f"the shared rate limit {key!r} is back on Redis at {url}"
            ]
        await limiter.aclose()  # its connection to the server just stopped


async def test_token_limit_is_shared_by_chat_clients(redis_url: str, key: str) -> None:
    async with (
        FakeOpenAIServer() as srv,
        RateLimiter.redis(redis_url, key=key, rate=600, per=1, burst=200) as tokens,
        RateLimiter.redis(redis_url, key=key, rate=600, per=1, burst=200) as tokens_elsewhere,
        ChatClient(base_url=srv.base_url, api_key="sk-test", token_limiter=tokens) as one,
        ChatClient(base_url=srv.base_url, api_key="sk-test", token_limiter=tokens_elsewhere) as two,
    ):
        messages = [{"role": "user", "content": "ping"}]
        start = time.monotonic()
        for _ in range(3):
            await one.create(model="m", messages=messages, max_tokens=90)
            await two.create(model="m", messages=messages, max_tokens=90)
        # Six requests of ~100 estimated tokens each through one bucket of 200 refilled at 600/s.
        assert time.monotonic() - start >= (6 * 90 - 200) / 600


async def test_lm_function_map_runs_under_a_shared_limit(redis_url: str, key: str) -> None:
    async with (
        FakeOpenAIServer() as srv,
        RateLimiter.redis(redis_url, key=key, rate=40, per=1, burst=2) as limiter,
        aioredis.Redis.from_url(redis_url) as probe,
    ):
        srv.add_rule(lambda body: True, "positive")
        client = ChatClient(base_url=srv.base_url, api_key="sk-test", rate_limiter=limiter)
        fn = LmFunction.create("Classify.", [Example("good", "positive")], client=client)
        async with fn:
            start = time.monotonic()
            results = [item async for item in fn.map([f"text {i}" for i in range(10)], concurrency=10)]
            elapsed = time.monotonic() - start
        assert [r.ok for r in results] == [True] * 10
        assert elapsed >= 8 / 40 - 0.01
        assert await probe.exists(f"aioagents:ratelimit:{{{key}}}:tat")


async def test_sync_clients_in_threads_share_the_limit(redis_url: str, key: str) -> None:
    from aioagents.sync import ChatClient as SyncChatClient

    rate, burst = 20.0, 2.0
    limiter = RateLimiter.redis(redis_url, key=key, rate=rate, per=1, burst=burst)
    grants: list[float] = []
    async with FakeOpenAIServer() as srv:

        def work() -> None:  # each thread runs its calls on its own loop (the sync bridge's)
            with SyncChatClient(base_url=srv.base_url, api_key="sk-test", rate_limiter=limiter) as client:
                for _ in range(4):
                    client.create(model="m", messages=[{"role": "user", "content": "hi"}])
                    grants.append(time.monotonic())

        def run_threads() -> None:
            threads = [threading.Thread(target=work) for _ in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        start = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, run_threads)
    await limiter.aclose()  # closes the connections of the threads' loops too
    assert len(grants) == 12
    early = [(k, t - start) for k, t in enumerate(sorted(grants), 1) if t - start < (k - burst) / rate - 0.001]
    assert early == []


def test_repr_hides_the_password(redis_url: str) -> None:
    limiter = RateLimiter.redis(f"rediss://me:{CANARY}@cache.example:6380/2?password={CANARY}", key="k", rate=5)
    assert CANARY not in repr(limiter)
    assert "rediss://me:***@cache.example:6380/2" in repr(limiter)
    assert isinstance(limiter, RateLimiter)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"url": "http://localhost:6379", "key": "k", "rate": 1}, "redis://"),
        ({"url": f"http://:{CANARY}@localhost", "key": "k", "rate": 1}, "redis://"),
        ({"url": "redis://localhost", "key": "", "rate": 1}, "key"),
        ({"url": "redis://localhost", "key": "k", "rate": 0}, "positive"),
        ({"url": "redis://localhost", "key": "k", "rate": 1, "fallback": "remote"}, "fallback"),
        ({"url": "redis://localhost", "key": "k", "rate": 1, "timeout": 0}, "timeout"),
    ],
)
def test_bad_arguments_are_value_errors(args: dict[str, object], message: str) -> None:
    url = args.pop("url")
    with pytest.raises(ValueError, match=message) as info:
        RateLimiter.redis(url, **args)  # type: ignore[arg-type]
    assert CANARY not in str(info.value)


async def test_taking_more_than_the_burst_is_a_value_error(redis_url: str, key: str) -> None:
    async with RateLimiter.redis(redis_url, key=key, rate=10, burst=3) as limiter:
        with pytest.raises(ValueError, match="at once"):
            await limiter.acquire(4)


async def test_a_cancelled_wait_gives_its_reservation_back(redis_url: str, key: str) -> None:
    async with (
        RateLimiter.redis(redis_url, key=key, rate=2, per=1, burst=1) as limiter,
        aioredis.Redis.from_url(redis_url) as probe,
    ):
        await limiter.acquire()
        before = await probe.get(f"aioagents:ratelimit:{{{key}}}:tat")
        waiter = asyncio.create_task(limiter.acquire())
        for _ in range(2000):  # until the waiter's reservation is in Redis
            if await probe.get(f"aioagents:ratelimit:{{{key}}}:tat") != before:
                break
            await asyncio.sleep(0.005)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert await probe.get(f"aioagents:ratelimit:{{{key}}}:tat") == before
