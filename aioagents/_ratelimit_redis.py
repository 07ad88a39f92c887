"""A rate limit shared through Redis by every process that names the same key, on any number of machines.

Made by :meth:`aioagents.RateLimiter.redis`; it is a :class:`~aioagents.RateLimiter`, so it goes wherever one is
accepted (``rate_limiter=`` of every client, ``token_limiter=`` of the chat client, hence ``LmFunction.map``).

The state is one number in Redis, the *theoretical arrival time* of GCRA (the generic cell rate algorithm, a leaky
bucket written as a time): each unit moves it ``per / rate`` seconds on, and a take is due when the moved time,
less ``burst`` units' worth, is not in the future. One Lua script reads and moves it in Redis time (``TIME``), so
the check-and-take is atomic on the server and holders' clocks never enter into it. A take that is not due yet still
reserves its place and returns how long to wait; the holder sleeps that long (pacing, not rejection), then goes.
A reservation given up (the acquire was cancelled) is handed back when nothing was reserved after it, so giving back
can never let two units closer together than the burst allows.

A server's "stop" (``Retry-After`` on a 429, rate-limit headers at zero) is a second key holding the end of the
pause in Redis time: :meth:`RedisRateLimiter.pause` sets it (never shortening one already there), every take first
looks at it and is told to wait out the pause without taking anything, and a holder that slept on a reservation
looks again before it goes: a pause that began meanwhile is waited out and the take made afresh.

One Redis round trip per acquire that does not wait. Redis unreachable: the acquire raises
:class:`~aioagents.RateLimiterUnavailableError`, or, with ``fallback=``, limits locally (and tries Redis again every
``retry_interval`` seconds); never unlimited. The URL's password never appears in reprs, logs or errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import sys
import time
import weakref
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from aioagents._ratelimit import RateLimiter, RateLimiterUnavailableError

__all__ = ["RedisRateLimiter"]

log = logging.getLogger("aioagents.ratelimit")

# KEYS[1]: the theoretical arrival time (µs of Redis time); KEYS[2]: the end of a pause (µs of Redis time).
# ARGV[1] is the operation:
#   take  interval_us tolerance_us amount -> {0, wait_us, reserved_tat} or {1, pause_left_us} (nothing taken)
#   check                                  -> {1, pause_left_us} while paused, else {0, 0}
#   give  reserved_tat increment_us        -> {0, 0}: moves the time back when no take came after this one
#   pause seconds_us                       -> {0, 0}: the pause ends no earlier than now + seconds
# Numbers are stored with %.0f: Lua's own tostring() would write 1.7e+15 and lose the microseconds.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local op = ARGV[1]
if op == 'pause' then
  local span = tonumber(ARGV[2])
  local ends = now + span
  local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
  if ends > cur then
    redis.call('SET', KEYS[2], string.format('%.0f', ends), 'PX', math.ceil(span / 1000) + 1000)
  end
  return {0, 0}
end
if op == 'give' then
  if redis.call('GET', KEYS[1]) == ARGV[2] then
    local back = tonumber(ARGV[2]) - tonumber(ARGV[3])
    if back > now then
      redis.call('SET', KEYS[1], string.format('%.0f', back), 'PX', math.ceil((back - now) / 1000) + 1000)
    else
      redis.call('DEL', KEYS[1])
    end
  end
  return {0, 0}
end
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then
  return {1, paused - now}
end
if op == 'check' then
  return {0, 0}
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
local new = tat + tonumber(ARGV[2]) * tonumber(ARGV[4])
local wait = new - tonumber(ARGV[3]) - now
if wait < 0 then
  wait = 0
end
local stored = string.format('%.0f', new)
redis.call('SET', KEYS[1], stored, 'PX', math.ceil((new - now) / 1000) + 1000)
return {0, wait, stored}
"""

_SCHEMES = ("redis", "rediss", "unix")


def redact_url(url: str) -> str:
    """``url`` with its password (in the authority or as ``?password=``) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, sep, _password = userinfo.partition(":")
            netloc = f"{user}{':***' if sep else ''}@{hostport}"
        query = parts.query
        if query:
            pairs = [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(query, keep_blank_values=True)]
            query = urlencode(pairs, safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparsable redis URL>"


def _secrets_of(url: str) -> list[str]:
    """The password(s) in ``url``, raw and percent-encoded, to scrub from error texts."""
    found: list[str] = []
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.password:
            found.append(parts.password)
        found += [v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v]
    return [s for secret in found for s in {secret, quote(secret, safe="")} if s]


class RedisRateLimiter(RateLimiter):
    """A :class:`~aioagents.RateLimiter` whose bucket lives in Redis, shared by every holder of the same ``key``.

    Make one with :meth:`RateLimiter.redis() <aioagents.RateLimiter.redis>`. Every holder of a key must use the
    same ``rate``, ``per`` and ``burst`` (each take applies its holder's own numbers to the shared state).
    Close it with :meth:`aclose` (or ``async with``) when done: it holds Redis connections, one pool per event loop.
    """

    __slots__ = (
        "_clients",
        "_closers",
        "_degraded_until",
        "_down",
        "_fallback",
        "_increment_us",
        "_interval_us",
        "_keys",
        "_max_connections",
        "_pause_tasks",
        "_pending_pause",
        "_redacted",
        "_retry_interval",
        "_secrets",
        "_timeout",
        "_tolerance_us",
        "_url",
        "key",
    )

    def __init__(self, settings: Mapping[str, Any]) -> None:
        """Built by :meth:`RateLimiter.redis() <aioagents.RateLimiter.redis>`, whose signature declares the settings
        (``url``, ``key``, ``rate``, ``per``, ``burst``, ``fallback``, ``timeout``, ``retry_interval``,
        ``max_connections``, ``prefix``) and their defaults; ``settings`` holds every one of them."""
        url: str = settings["url"]
        key: str = settings["key"]
        fallback: Literal["local"] | RateLimiter | None = settings["fallback"]
        timeout: float = settings["timeout"]
        retry_interval: float = settings["retry_interval"]
        max_connections: int = settings["max_connections"]
        prefix: str = settings["prefix"]
        super().__init__(settings["rate"], per=settings["per"], burst=settings["burst"])
        if not isinstance(url, str) or urlsplit(url).scheme not in _SCHEMES:
            shown = redact_url(url) if isinstance(url, str) else type(url).__name__
            raise ValueError(f"a Redis URL must start with redis://, rediss:// or unix:// (got {shown!r})")
        if not isinstance(key, str) or not key:
            raise ValueError("key must be a non-empty string naming the shared limit")
        if fallback is not None and fallback != "local" and not isinstance(fallback, RateLimiter):
            raise ValueError("fallback must be None, 'local' or a RateLimiter")
        if isinstance(fallback, RedisRateLimiter):
            raise ValueError("fallback must be a local RateLimiter, not another Redis one")
        if timeout <= 0 or retry_interval <= 0 or max_connections < 1:
            raise ValueError("timeout and retry_interval must be positive and max_connections at least 1")
        self._url = url
        self._redacted = redact_url(url)
        self._secrets = _secrets_of(url)
        self.key = key
        # The hash tag keeps both keys in one slot of a Redis Cluster, as a script's keys must be.
        self._keys = (f"{prefix}{{{key}}}:tat", f"{prefix}{{{key}}}:pause")
        self._interval_us = self.per / self.rate * 1e6
        self._tolerance_us = self.burst * self._interval_us
        self._fallback: Literal["local"] | RateLimiter | None = fallback
        self._timeout = float(timeout)
        self._retry_interval = float(retry_interval)
        self._max_connections = int(max_connections)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[aioredis.Redis, AsyncScript]] = (
            weakref.WeakKeyDictionary()
        )
        self._closers: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}
        self._degraded_until = 0.0
        self._down = False  # in an outage that the fallback covers (warned once, until Redis answers again)
        self._pending_pause = 0.0  # monotonic end of a pause not yet written to Redis
        self._pause_tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        fallback = self._fallback if self._fallback is None or self._fallback == "local" else repr(self._fallback)
        return (
            f"RateLimiter.redis({self._redacted!r}, key={self.key!r}, rate={self.rate:g}, per={self.per:g}, "
            f"burst={self.burst:g}, fallback={fallback!r})"
        )

    # -- connections ----------------------------------------------------------------------------------------------
    def _client(self) -> tuple[aioredis.Redis, AsyncScript]:
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            pool = BlockingConnectionPool.from_url(
                self._url,
                max_connections=self._max_connections,
                timeout=None,  # a take waits for a free connection; the socket timeouts bound a dead server
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
            )
            client = aioredis.Redis.from_pool(pool)  # the client owns the pool: closing it closes the pool
            entry = (client, client.register_script(_SCRIPT))
            # A client refers to its loop, so a closed loop's entry would never leave the weak dictionary by itself
            # (a program that calls asyncio.run() again and again); its connections were closed with the loop.
            for other in [lp for lp in self._clients if lp.is_closed()]:
                del self._clients[other]
                self._closers.pop(other, None)
            self._clients[loop] = entry
            bridge = sys.modules.get("aioagents.sync._bridge")
            # A loop of the sync API's bridge: close the client before the bridge closes the loop (at exit, or when
            # its thread has died). Held strongly (a closure, not the bound method), so a limiter dropped by sync
            # code never leaves its connections to the garbage collector.
            if bridge is None or not bridge.on_loop_close(loop, functools.partial(_aclose, client)):
                # Any other loop (asyncio.run, a test runner): close the pool when the loop shuts down its async
                # generators, so a holder that never called aclose() leaves no socket open on a dead loop.
                self._closers[loop] = _park_closer(client)
        return entry

    async def aclose(self) -> None:
        """Close this limiter's Redis connections, on every event loop that used it (the sync API's threads too).
        Using it again afterwards opens new ones."""
        loop = asyncio.get_running_loop()
        tasks = [t for t in self._pause_tasks if not t.done() and t.get_loop() is loop]
        if tasks:  # pauses still being written: let them reach Redis first
            await asyncio.gather(*tasks, return_exceptions=True)
        clients = dict(self._clients)
        self._clients.clear()
        closers, self._closers = self._closers, {}
        bridge = sys.modules.get("aioagents.sync._bridge")
        for other, (client, _script) in clients.items():
            closer = closers.pop(other, None)
            if other.is_closed():
                continue
            if other is loop:
                await (closer.aclose() if closer is not None else client.aclose())
            elif bridge is not None and bridge.owns(other):
                # The bridge reaches its loop under the loop's own lock (its thread may be between two calls).
                await bridge.arun_on(other, functools.partial(_aclose, client))
            elif other.is_running():
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_aclose(client), other))
            else:
                await asyncio.to_thread(other.run_until_complete, _aclose(client))

    async def __aenter__(self) -> RedisRateLimiter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _unavailable(self, exc: BaseException) -> RateLimiterUnavailableError:
        text = f"{type(exc).__name__}: {exc}"
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return RateLimiterUnavailableError(
            f"the shared rate limit {self.key!r} could not be used: Redis at {self._redacted} failed ({text})"
        )

    # -- acquire --------------------------------------------------------------------------------------------------
    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until ``amount`` units are available in the shared bucket, and take them."""
        if amount > self.burst:
            raise ValueError(f"cannot take {amount:g} units at once from a bucket of {self.burst:g}")
        while self._paused_until:  # a pause this process learnt of itself: no need to ask Redis
            wait = self._paused_until - time.monotonic()
            if wait <= 0:
                self._paused_until = 0.0
                break
            await asyncio.sleep(wait)
        if self._degraded_until:
            if time.monotonic() < self._degraded_until:
                await self._acquire_fallback(amount)
                return
            self._degraded_until = 0.0
        try:
            await self._acquire_shared(amount)
        except (RedisError, OSError) as exc:
            if self._fallback is None:
                raise self._unavailable(exc) from None
            if not self._down:
                self._down = True
                log.warning(
                    "%s; limiting locally (per process) and trying Redis again every %gs",
                    self._unavailable(exc),
                    self._retry_interval,
                )
            self._degraded_until = time.monotonic() + self._retry_interval
            await self._acquire_fallback(amount)
        else:
            if self._down:
                self._down = False
                log.warning("the shared rate limit %r is back on Redis at %s", self.key, self._redacted)

    async def _acquire_fallback(self, amount: float) -> None:
        fallback = self._fallback
        if isinstance(fallback, RateLimiter):
            await fallback.acquire(amount)
        else:
            await RateLimiter.acquire(self, amount)

    async def _acquire_shared(self, amount: float) -> None:
        _client, script = self._client()
        keys = self._keys
        if self._pending_pause:
            await self._push_pause(script)
        while True:
            reply: list[Any] = await script(keys=keys, args=("take", self._interval_us, self._tolerance_us, amount))
            if reply[0] == 1:  # paused: nothing was taken
                await asyncio.sleep(int(reply[1]) / 1e6)
                continue
            wait_us = int(reply[1])
            if wait_us <= 0:
                return
            try:
                await asyncio.sleep(wait_us / 1e6)
            except asyncio.CancelledError:
                with contextlib.suppress(RedisError, OSError):
                    await script(keys=keys, args=("give", reply[2], amount * self._interval_us))
                raise
            # A pause may have begun while this reservation slept: it is forfeited (the limit errs on the safe side)
            # and taken afresh once the pause is over.
            check: list[Any] = await script(keys=keys, args=("check",))
            if check[0] == 1:
                await asyncio.sleep(int(check[1]) / 1e6)
                continue
            return

    # -- server signals -------------------------------------------------------------------------------------------
    def pause(self, seconds: float) -> None:
        """Hold every acquire of every holder of this key for ``seconds`` from now (a server said the budget is
        spent). This process holds at once; the others see the pause in Redis, written now in the background when an
        event loop runs here, else by this holder's next acquire."""
        if not seconds > 0:
            return
        super().pause(seconds)
        if isinstance(self._fallback, RateLimiter):
            self._fallback.pause(seconds)
        self._pending_pause = max(self._pending_pause, time.monotonic() + seconds)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if loop in self._clients:
            task = loop.create_task(self._push_pause_quietly())
            self._pause_tasks.add(task)
            task.add_done_callback(self._pause_tasks.discard)

    async def _push_pause(self, script: AsyncScript) -> None:
        ends = self._pending_pause
        left = ends - time.monotonic()
        if left > 0:
            await script(keys=self._keys, args=("pause", math.ceil(left * 1e6)))
        if self._pending_pause == ends:
            self._pending_pause = 0.0

    async def _push_pause_quietly(self) -> None:
        try:
            await self._push_pause(self._client()[1])
        except (RedisError, OSError) as exc:
            # Kept pending: the next acquire writes it, or reports Redis as unavailable.
            log.debug("could not store the pause in Redis yet: %s", self._unavailable(exc))


async def _aclose(client: aioredis.Redis) -> None:
    await client.aclose()


async def _close_at_loop_end(client: aioredis.Redis) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()


def _park_closer(client: aioredis.Redis) -> AsyncGenerator[None, None]:
    """An async generator run to its ``yield`` now, which closes ``client`` when the loop shuts down its async
    generators (asyncio.run and asyncio.Runner do, before closing the loop) or when :meth:`aclose` closes it."""
    closer = _close_at_loop_end(client)
    step: Any = closer.__anext__()  # the loop registers the generator on its first iteration
    with contextlib.suppress(StopIteration):
        step.send(None)
    return closer
