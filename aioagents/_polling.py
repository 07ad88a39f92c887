"""The one polling helper: every ``wait()`` of a job, run or task goes through here.

Waits grow geometrically from ``interval`` to ``max_interval`` (``backoff.expo``), never blocking the loop; a server's
``Retry-After`` on a poll is honoured by the Transport's retry, not here.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import backoff

from aioagents import _retry
from aioagents._exceptions import PollTimeoutError

__all__ = ["poll_until"]

T = TypeVar("T")


async def poll_until(
    fetch: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout: float | None = None,
    interval: float = 1.0,
    max_interval: float = 10.0,
    multiplier: float = 1.5,
    what: str = "job",
) -> T:
    """Call ``fetch`` until ``done(result)``; after ``timeout`` raise :class:`PollTimeoutError` with the last result."""
    deadline = None if timeout is None else time.monotonic() + timeout
    waits = backoff.expo(base=multiplier, factor=interval, max_value=max_interval)
    next(waits)
    while True:
        last = await fetch()
        if done(last):
            return last
        wait = next(waits)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PollTimeoutError(f"{what} did not finish within {timeout:g}s", last=last)
            wait = min(wait, left)
        await _retry.sleep(wait)
