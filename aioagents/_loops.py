"""Who owns an event loop: the core's side of the contract with the sync API.

The core never imports the sync layer. The sync API's bridge, which runs loops of its own (one per thread), registers
itself here when it is imported; the Transport asks this registry whether a loop is one of the bridge's, to close its
sessions on that loop before the bridge closes it. With no owner registered every loop is treated as a plain one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

__all__ = ["LoopOwner", "loop_owner", "register_loop_owner"]


class LoopOwner(Protocol):
    """What the core needs from a component that runs event loops of its own."""

    def owns(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether ``loop`` is one of the owner's, still open."""
        ...

    def on_loop_close(self, loop: asyncio.AbstractEventLoop, closer: Callable[[], Awaitable[object]]) -> bool:
        """Have ``closer()`` awaited on ``loop`` before the owner closes it; False when ``loop`` is not the owner's."""
        ...

    async def arun_on(self, loop: asyncio.AbstractEventLoop, coro_fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``coro_fn()`` on the owner's ``loop`` from another loop and await its result."""
        ...


_owner: LoopOwner | None = None


def register_loop_owner(owner: LoopOwner) -> None:
    """Register the component that runs loops of its own (the sync API's bridge; there is one)."""
    global _owner
    _owner = owner


def loop_owner() -> LoopOwner | None:
    """The registered loop owner, or ``None``."""
    return _owner
