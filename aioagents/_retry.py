"""Retry decisions as pure functions, and the waits between attempts.

One loop (in the Transport) owns retrying; this module only answers two questions for it: *may this failure be
retried?* and *how long to wait first?* Both are pure, so they are table-tested without sockets.

Rules:
- An idempotent call is retried on connection errors, resets, timeouts (unless ``retry_timeouts`` is off) and the
  statuses in ``retry_statuses`` (408/429/5xx by default).
- A non-idempotent call (run, execute, submit, create) is retried only when the request provably did not run: the
  connection was never made (refused, or not made within the connect timeout), a 429 (the server refused before
  admission), or a 503 that carries ``Retry-After``.
- ``x-should-retry: true|false`` from the server overrides the status rules; an error the service marked
  ``retryable=False`` (a quota 429, an ambiguous enqueue) is final.
- A server-requested wait (``retry-after-ms``, ``Retry-After`` as seconds or an HTTP-date) is honoured in full; jitter
  is only ever added on top. A requested wait longer than ``max_retry_after`` fails at once, with the wait in the error.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Mapping

import attrs
import backoff

from aioagents._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    OutcomeUnknownError,
)

__all__ = ["RetryBudget", "RetryDecision", "RetryPolicy", "parse_retry_after", "set_testing"]

_testing = False


def set_testing(enabled: bool = True) -> None:
    """Make retry and polling waits instant (for test suites); the decisions stay the same."""
    global _testing
    _testing = enabled


async def sleep(seconds: float) -> None:
    """The one sleep used between attempts and polls (instant in testing mode)."""
    await asyncio.sleep(0 if _testing else seconds)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The wait a server asked for, in seconds: ``retry-after-ms``, then ``Retry-After`` as seconds or an HTTP-date.

    Negative, non-finite or unparseable values count as absent.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms) and ms >= 0:
            return ms / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if parsed.tzinfo is None:
            return None
        seconds = parsed.timestamp() - (time.time() if now is None else now)
        return max(0.0, seconds)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


@attrs.frozen
class RetryDecision:
    """What the loop does after a failed attempt: ``retry`` after ``delay`` seconds, or raise ``error``; ``reason``
    says why a retryable error is given up on (the loop adds it to the message it raises)."""

    retry: bool
    delay: float = 0.0
    error: APIError | None = None
    reason: str | None = None


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often and when a call is retried. Immutable; ``evolve`` it to change one field.

    ``max_attempts`` counts every attempt, the first included (1 disables retrying).
    """

    max_attempts: int = 3
    initial_delay: float = 0.5
    max_delay: float = 8.0
    multiplier: float = 2.0
    jitter: float = 0.25
    max_retry_after: float = 60.0
    retry_statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
    retry_timeouts: bool = True
    _delays: tuple[float, ...] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        waits = backoff.expo(base=self.multiplier, factor=self.initial_delay, max_value=self.max_delay)
        next(waits)  # the generator's priming value
        object.__setattr__(self, "_delays", tuple(next(waits) for _ in range(max(self.max_attempts, 1))))

    def evolve(self, **changes: object) -> RetryPolicy:
        """A copy with some fields changed."""
        return attrs.evolve(self, **changes)  # type: ignore[arg-type]

    # -- pure decisions -------------------------------------------------------------------------------------
    def is_retryable(self, error: APIError, *, idempotent: bool) -> bool:
        """May ``error`` be retried at all (ignoring the attempt count)?"""
        if isinstance(error, APIStatusError):
            if error.retryable is not None:
                return error.retryable
            should = error.headers.get("x-should-retry") if error.headers else None
            if should == "true":
                return True
            if should == "false":
                return False
            if idempotent:
                return error.status in self.retry_statuses
            if error.status == 429:
                return True
            return error.status == 503 and error.retry_after is not None
        if isinstance(error, OutcomeUnknownError):
            return False
        if isinstance(error, APITimeoutError):
            # A timeout before the connection was made is as safe to retry as a refused connection.
            return (idempotent and self.retry_timeouts) or not error.sent
        if isinstance(error, APIConnectionError):
            return idempotent or not error.sent
        return False

    def backoff_delay(self, attempt: int) -> float:
        """The computed wait before attempt ``attempt + 1`` (``attempt`` counts from 1), without jitter."""
        return self._delays[min(attempt, len(self._delays)) - 1]

    def decide(self, error: APIError, *, attempt: int, idempotent: bool, rand: float | None = None) -> RetryDecision:
        """After attempt number ``attempt`` failed with ``error``: retry (and after how long), or give up."""
        if attempt >= self.max_attempts or not self.is_retryable(error, idempotent=idempotent):
            return RetryDecision(False, error=error)
        r = random.random() if rand is None else rand
        requested = error.retry_after if isinstance(error, APIStatusError) else None
        if requested is not None:
            if requested > self.max_retry_after:
                return RetryDecision(
                    False,
                    error=error,
                    reason=(
                        f"the server asked to wait {requested:g}s, beyond the retry cap of {self.max_retry_after:g}s"
                    ),
                )
            # Jitter only ever lengthens a wait the server asked for.
            return RetryDecision(True, delay=requested * (1.0 + self.jitter * r))
        base = self.backoff_delay(attempt)
        return RetryDecision(True, delay=base * (1.0 - self.jitter + 2 * self.jitter * r))


class RetryBudget:
    """A bound on what retries add to the load, after botocore's retry quota: a bucket of tokens that every retry
    draws from and every success refills. During an outage the retries spend it and stop, so the server sees about
    the load that was offered; first attempts are never held back, so the first success after the server heals goes
    through at once and refills the bucket.

    A retry costs ``retry_cost`` tokens (``timeout_cost`` after a timeout: a slow server is the one to spare); a
    success refunds ``success_refund`` (a retried one the retry cost it drew). With the defaults an outage adds at
    most ``capacity / retry_cost`` = 20 retries, and a sustained retry rate is at most ``success_refund /
    retry_cost`` = 20 % of the successes (botocore's figures, scaled down to a per-endpoint bucket). One budget is
    shared by every call on one Transport (one endpoint).
    """

    __slots__ = ("_tokens", "capacity", "retry_cost", "success_refund", "timeout_cost")

    def __init__(
        self,
        capacity: float = 100.0,
        *,
        retry_cost: float = 5.0,
        timeout_cost: float = 10.0,
        success_refund: float = 1.0,
    ) -> None:
        if capacity < 0 or retry_cost <= 0 or timeout_cost <= 0 or success_refund < 0:
            raise ValueError("capacity and refund must be ≥ 0, costs > 0")
        self.capacity = float(capacity)
        self.retry_cost = float(retry_cost)
        self.timeout_cost = float(timeout_cost)
        self.success_refund = float(success_refund)
        self._tokens = self.capacity

    def __repr__(self) -> str:
        return f"RetryBudget({self._tokens:g}/{self.capacity:g} tokens, retry_cost={self.retry_cost:g})"

    @property
    def tokens(self) -> float:
        """Tokens left."""
        return self._tokens

    def cost_of(self, error: APIError) -> float:
        """What a retry after ``error`` draws."""
        return self.timeout_cost if isinstance(error, APITimeoutError) else self.retry_cost

    def withdraw(self, error: APIError) -> bool:
        """Take the tokens for one retry after ``error``; False (nothing taken) when the budget cannot pay it."""
        cost = self.cost_of(error)
        if self._tokens < cost:
            return False
        self._tokens -= cost
        return True

    def record_success(self, *, retried: bool = False) -> None:
        """A call succeeded: refill (a retried call gives back what a retry costs)."""
        if self._tokens < self.capacity:
            refund = self.retry_cost if retried else self.success_refund
            self._tokens = min(self.capacity, self._tokens + refund)
