"""Async shapes the sync generator refuses rather than mirror wrongly."""

from __future__ import annotations

from collections.abc import AsyncIterator


class Part:
    """A registered class that appears nested in other annotations."""

    async def ping(self) -> str:
        """Pong."""
        return "pong"


class ListOfParts:
    """Returns registered objects inside a list: the twin cannot wrap them without copying the list."""

    async def parts(self) -> list[Part]:
        """Parts."""
        return [Part()]


class StreamOfParts:
    """Streams registered objects."""

    async def parts(self) -> AsyncIterator[Part]:
        """Parts, one by one."""
        yield Part()


class TwoCloses:
    """Has ``close`` and ``aclose``: the twin's ``close`` could mean either."""

    def close(self) -> None:
        """Close without waiting."""

    async def aclose(self) -> None:
        """Close and wait."""
