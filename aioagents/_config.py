"""Configuration values shared by every client: timeouts, env lookups, URL joining."""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Union

import attrs

if TYPE_CHECKING:
    import aiohttp

__all__ = ["DEFAULT_TIMEOUT", "Timeout", "TimeoutLike", "env_or", "to_timeout"]


@attrs.frozen(kw_only=True)
class Timeout:
    """Timeouts in seconds; ``None`` turns one off.

    ``total`` bounds a whole request (never applied to streams), ``connect`` the connection set-up (pool wait
    included), ``read`` each read of the body (for streams: the idle timeout).
    """

    total: float | None = 60.0
    connect: float | None = 10.0
    read: float | None = None
    # Built on first use, not at construction: aiohttp is imported only by code that sends requests.
    _aiohttp: aiohttp.ClientTimeout | None = attrs.field(init=False, default=None, repr=False, eq=False)

    def for_aiohttp(self) -> aiohttp.ClientTimeout:
        """This timeout as aiohttp's ``ClientTimeout`` (built once per instance)."""
        built = self._aiohttp
        if built is None:
            import aiohttp

            built = aiohttp.ClientTimeout(total=self.total, connect=self.connect, sock_read=self.read)
            object.__setattr__(self, "_aiohttp", built)
        return built

    def for_stream(self, idle: float | None) -> aiohttp.ClientTimeout:
        """No total for a stream: only connect and an idle (per-read) limit."""
        import aiohttp

        return aiohttp.ClientTimeout(total=None, connect=self.connect, sock_read=idle if idle else self.read)


TimeoutLike = Union[Timeout, float, int, None]  # noqa: UP007 (a runtime alias on 3.10)

DEFAULT_TIMEOUT = Timeout()


def to_timeout(value: TimeoutLike, default: Timeout = DEFAULT_TIMEOUT) -> Timeout:
    """A float means a total timeout (connect keeps the default); ``None`` means the default."""
    if value is None:
        return default
    if isinstance(value, Timeout):
        return value
    return _total_timeout(float(value), default.connect, default.read)


@functools.lru_cache(maxsize=256)
def _total_timeout(total: float, connect: float | None, read: float | None) -> Timeout:
    # Per-call float timeouts repeat (a run's timeout derives from its limits): build each Timeout once.
    return Timeout(total=total, connect=connect, read=read)


def env_or(explicit: str | None, *names: str, default: str | None = None) -> str | None:
    """Explicit argument > the first set environment variable > default."""
    if explicit:
        return explicit
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return default
