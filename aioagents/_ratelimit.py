"""Client-side rate limiting: a token bucket per endpoint, one per event loop, taken on every attempt.

The bucket is aiolimiter's leaky bucket. Event loops cannot share one (its waiters are futures of one loop), so a
limiter keeps a bucket per loop; code that drives many loops (the sync API from many threads) gets the rate per loop.
``amount`` may carry an estimate (LLM tokens per minute). Server signals pause it: the Transport pauses its limiter
after a 429 with ``Retry-After``; a service that reads rate-limit headers (``x-ratelimit-remaining: 0`` with a reset
time) calls :meth:`RateLimiter.pause` from its response hook. Every acquire then waits until the pause is over.
"""

from __future__ import annotations

import asyncio
import time
import weakref

from aiolimiter import AsyncLimiter

__all__ = ["RateLimiter"]

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

    __slots__ = ("_buckets", "_last", "_paused_until", "burst", "per", "rate")

    def __init__(self, rate: float, *, per: float = 1.0, burst: float | None = None) -> None:
        if rate <= 0 or per <= 0:
            raise ValueError("rate and per must be positive")
        self.rate = float(rate)
        self.per = float(per)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate / self.per)
        self._buckets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncLimiter] = (
            weakref.WeakKeyDictionary()
        )
        # (loop, bucket) of the last acquire, as ONE attribute: the sync API calls from many threads, and two
        # separate attributes could pair one loop with another loop's bucket.
        self._last: tuple[asyncio.AbstractEventLoop, AsyncLimiter] | None = None
        self._paused_until = 0.0

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate:g}, per={self.per:g}, burst={self.burst:g})"

    def _bucket(self, loop: asyncio.AbstractEventLoop | None = None) -> AsyncLimiter:
        if loop is None:
            loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop:
            return last[1]
        bucket = self._buckets.get(loop)
        if bucket is None:
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

    def pause(self, seconds: float) -> None:
        """Hold every acquire for ``seconds`` from now (a server said the budget is spent)."""
        if seconds > 0:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
