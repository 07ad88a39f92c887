"""Client-side rate limiting: a token bucket per endpoint, taken on every attempt, whatever thread or loop calls.

The bucket is aiolimiter's leaky bucket. Event loops cannot share one (its waiters are futures of one loop), so
while one event loop uses a limiter it is aiolimiter's, and as soon as a second live loop uses it (the sync API
called from several threads, each with its loop) every acquire goes through one bucket shared under a lock: a
reservation that raises the level (above capacity if need be) and sleeps until its turn, so the rate holds across
all threads together, not per thread.
``amount`` may carry an estimate (LLM tokens per minute). Server signals pause it: the Transport pauses its limiter
after a 429 with ``Retry-After``; a service that reads rate-limit headers (``x-ratelimit-remaining: 0`` with a reset
time) calls :meth:`RateLimiter.pause` from its response hook. Every acquire then waits until the pause is over.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from typing import TYPE_CHECKING, Literal

from aiolimiter import AsyncLimiter

from aioagents._exceptions import AioAgentsError

if TYPE_CHECKING:
    from aioagents._ratelimit_redis import RedisRateLimiter

__all__ = ["RateLimiter", "RateLimiterUnavailableError"]


class RateLimiterUnavailableError(AioAgentsError):
    """A shared rate limit could not be used (its Redis is unreachable, refused the password, or failed), and no
    ``fallback`` was chosen. Raised by the acquire that found out; nothing was sent unlimited."""


# The inline fast path reads aiolimiter's bucket state (1.1–1.3 keep it in these attributes); any other layout falls
# back to aiolimiter's own acquire.
_INLINE = all(
    hasattr(AsyncLimiter(1, 1), name) for name in ("_waiters", "_level", "_last_check", "_rate_per_sec", "max_rate")
)


class RateLimiter:
    """At most ``rate`` units per ``per`` seconds, in bursts of at most ``burst`` units.

    >>> limiter = RateLimiter(100, per=60)        # 100 requests a minute
    >>> tokens = RateLimiter(90_000, per=60, burst=20_000)   # LLM tokens a minute

    ``burst`` defaults to one second's worth of the rate (at least 1). A small burst keeps a long run's average close
    to ``rate``; a large one lets a short run start fast.
    """

    __slots__ = (
        "_buckets",
        "_last",
        "_last_check",
        "_level",
        "_lock",
        "_paused_until",
        "_shared",
        "burst",
        "per",
        "rate",
    )

    def __init__(self, rate: float, *, per: float = 1.0, burst: float | None = None) -> None:
        if rate <= 0 or per <= 0:
            raise ValueError("rate and per must be positive")
        self.rate = float(rate)
        self.per = float(per)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate / self.per)
        self._buckets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncLimiter] = weakref.WeakKeyDictionary()
        # (loop, bucket) of the last acquire, as ONE attribute: the sync API calls from many threads, and two
        # separate attributes could pair one loop with another loop's bucket.
        self._last: tuple[asyncio.AbstractEventLoop, AsyncLimiter] | None = None
        self._paused_until = 0.0
        # The bucket shared by every loop once more than one uses the limiter.
        self._shared = False
        self._lock = threading.Lock()
        self._level = 0.0
        self._last_check = time.monotonic()

    @classmethod
    def redis(
        cls,
        url: str,
        *,
        key: str,
        rate: float,
        per: float = 1.0,
        burst: float | None = None,
        fallback: Literal["local"] | RateLimiter | None = None,
        timeout: float = 2.0,
        retry_interval: float = 5.0,
        max_connections: int = 16,
        prefix: str = "aioagents:ratelimit:",
    ) -> RedisRateLimiter:
        """A limit shared through Redis by every process (on any machine) that uses the same ``url`` and ``key``.

        >>> rpm = RateLimiter.redis("redis://:secret@cache:6379/0", key="openai:rpm", rate=1_200, per=60, burst=2)
        >>> tpm = RateLimiter.redis("redis://:secret@cache:6379/0", key="openai:tpm", rate=90_000, per=60,
        ...                         burst=20_000)
        >>> client = ChatClient(rate_limiter=rpm, token_limiter=tpm)

        ``rate``, ``per`` and ``burst`` mean what they mean for a local limiter, for all holders together (give
        every holder the same numbers). A take that must wait is told how long by Redis and sleeps; a server's
        ``Retry-After`` (or rate-limit headers at zero) pauses every holder. Redis unreachable: the acquire raises
        :class:`RateLimiterUnavailableError`, unless ``fallback`` says what to do meanwhile: ``"local"`` (this
        limit, per process) or a local :class:`RateLimiter` (e.g. ``rate / workers``); Redis is tried again every
        ``retry_interval`` seconds. ``timeout`` bounds connecting and each round trip; ``max_connections`` caps the
        connections per event loop; ``prefix`` starts the Redis keys. Needs the extra: ``pip install
        'aioagents[redis]'``. Close it with ``await limiter.aclose()`` (or ``async with``).
        """
        # This signature is the one declaration of the settings and their defaults: the class takes them as given.
        settings = dict(locals())
        del settings["cls"]
        try:
            from aioagents._ratelimit_redis import RedisRateLimiter
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("RateLimiter.redis needs redis-py: pip install 'aioagents[redis]'") from exc
        return RedisRateLimiter(settings)

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate:g}, per={self.per:g}, burst={self.burst:g})"

    def _bucket(self, loop: asyncio.AbstractEventLoop | None = None) -> AsyncLimiter:
        if loop is None:
            loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop:
            return last[1]
        with self._lock:  # the sync API reaches here from several threads
            bucket = self._buckets.get(loop)
            if bucket is None:
                if any(not other.is_closed() for other in list(self._buckets)):
                    self._shared = True  # a second live loop: from now on one bucket for all of them
                # Leaky bucket of capacity `burst` that drains at rate/per per second.
                bucket = AsyncLimiter(self.burst, self.burst * self.per / self.rate)
                self._buckets[loop] = bucket
        self._last = (loop, bucket)
        return bucket

    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until ``amount`` units are available, and take them."""
        while self._paused_until:
            # Re-checked after each sleep: another server signal may have pushed the end further out meanwhile.
            wait = self._paused_until - time.monotonic()
            if wait <= 0:
                self._paused_until = 0.0
                break
            await asyncio.sleep(wait)
        if amount > self.burst:
            raise ValueError(f"cannot take {amount:g} units at once from a bucket of {self.burst:g}")
        loop = asyncio.get_running_loop()
        last = self._last
        bucket = last[1] if last is not None and last[0] is loop else self._bucket(loop)
        if self._shared:
            await self._acquire_shared(amount)
            return
        if _INLINE and not bucket._waiters:
            # The common case, nobody waiting and room in the bucket: take the units here exactly as aiolimiter's
            # acquire would (drain by elapsed time, then fill), without its extra coroutine and bookkeeping.
            now = loop.time()
            level = bucket._level
            if level:
                level = max(level - (now - bucket._last_check) * bucket._rate_per_sec, 0.0)
            if level + amount <= bucket.max_rate:
                bucket._level = level + amount
                bucket._last_check = now
                return
        await bucket.acquire(amount)

    def _drain(self, now: float) -> float:
        """The shared level at ``now`` (call with the lock held)."""
        level = max(self._level - (now - self._last_check) * self.rate / self.per, 0.0)
        self._level, self._last_check = level, now
        return level

    async def _acquire_shared(self, amount: float) -> None:
        with self._lock:
            level = self._drain(time.monotonic()) + amount
            self._level = level
        wait = (level - self.burst) * self.per / self.rate
        if wait <= 0:
            return
        try:
            await asyncio.sleep(wait)
        except asyncio.CancelledError:
            with self._lock:  # give the reservation back
                self._level = max(self._drain(time.monotonic()) - amount, 0.0)
            raise

    def pause(self, seconds: float) -> None:
        """Hold every acquire for ``seconds`` from now (a server said the budget is spent)."""
        if seconds > 0:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
