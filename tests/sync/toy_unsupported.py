"""Async shapes the sync generator refuses rather than mirror wrongly."""

from __future__ import annotations

from typing import overload


class Part:
    """A registered class that appears nested in other annotations."""

    async def ping(self) -> str:
        """Pong."""
        return "pong"


class MaybePart:
    """Returns a registered class inside a union: the twin cannot know when to wrap."""

    async def find(self) -> Part | None:
        """Maybe a part."""
        return None


class Overloaded:
    """Overloaded methods are not mirrored yet."""

    @overload
    async def get(self, key: int) -> int: ...
    @overload
    async def get(self, key: str) -> str: ...
    async def get(self, key: int | str) -> int | str:
        """Get."""
        return key
