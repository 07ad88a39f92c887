"""EventStream: typed events pulled from a streaming HTTP response.

The pipeline is a pull chain: ``response.content.readany()`` → decoder (lines → SSE or JSON-lines frames) → ``parse``
→ the consumer. There is no background reader and no queue, so backpressure is aiohttp's: a slow consumer slows the
socket. The stream always releases its connection: at the end, on an error, on ``aclose()``, when the ``async with``
block exits, and (as a last resort) when it is garbage-collected.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import aiohttp

from aioagents._exceptions import (
    ClientClosedError,
    IncompleteStreamError,
    StreamIdleTimeout,
    StreamOutcomeUnknownError,
)

__all__ = ["END", "Decoder", "EventStream"]

T = TypeVar("T")
F = TypeVar("F")
F_contra = TypeVar("F_contra", contravariant=True)


class _End:
    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END: Any = _End()
"""Returned by a stream's ``parse`` for an end marker (``[DONE]``): the stream ends without yielding it."""


class Decoder(Protocol[F]):
    def feed(self, chunk: bytes) -> list[F]: ...

    def end(self) -> list[F]: ...


class EventStream(Generic[T]):
    """An async iterator of typed events that is also an async context manager.

    >>> async with client.workflows.execute_stream("wf", input={...}) as events:
    ...     async for event in events:
    ...         print(event)

    Leaving the block (or breaking out of it) closes the connection. ``headers`` and ``status`` are the response's, once
    the stream is open.
    """

    def __init__(
        self,
        open_response: Callable[[], Awaitable[aiohttp.ClientResponse]],
        decoder: Decoder[Any],
        parse: Callable[[Any], T | None],
        *,
        terminal: Callable[[T], bool] | None = None,
        require_terminal: bool = False,
        idle_timeout: float | None = None,
        what: str = "stream",
        idempotent: bool = True,
    ) -> None:
        self._open = open_response
        # A cut stream of a non-idempotent call leaves its outcome unknown: that error is an OutcomeUnknownError.
        self._incomplete = IncompleteStreamError if idempotent else StreamOutcomeUnknownError
        self._last_frame: Any = None
        self._decoder = decoder
        self._parse = parse
        self._terminal = terminal
        self._require_terminal = require_terminal
        self._idle_timeout = idle_timeout
        self._what = what
        self._resp: aiohttp.ClientResponse | None = None
        # Kept after close: callers read them once the stream is done (a request id for the logs).
        self._status: int | None = None
        self._headers: Mapping[str, str] = {}
        self._pending: deque[Any] = deque()
        self._done = False
        self._closed = False
        self._eof = False
        self.events_yielded = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._resp is not None else "not started")
        return f"<EventStream {self._what} {state}, {self.events_yielded} events>"

    # -- response facts ---------------------------------------------------------------------------------------
    @property
    def status(self) -> int | None:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    # -- protocol -------------------------------------------------------------------------------------------------
    async def __aenter__(self) -> EventStream[T]:
        await self._ensure_open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> EventStream[T]:
        return self

    async def _ensure_open(self) -> aiohttp.ClientResponse:
        if self._closed:
            raise ClientClosedError(f"{self._what} is closed")
        if self._resp is None:
            resp = self._resp = await self._open()
            self._status, self._headers = resp.status, resp.headers
        return self._resp

    async def __anext__(self) -> T:
        if self._done:
            await self.aclose()
            raise StopAsyncIteration
        resp = await self._ensure_open()
        try:
            while True:
                while self._pending:
                    frame = self._pending.popleft()
                    item = self._parse(frame)
                    if item is None:
                        continue
                    if item is END:
                        self._done = True
                        await self.aclose()
                        raise StopAsyncIteration
                    if self._terminal is not None and self._terminal(item):
                        self._done = True
                    self.events_yielded += 1
                    self._last_frame = frame
                    return item
                if self._eof:
                    await self.aclose()
                    if self._require_terminal:
                        raise self._cut(f"{self._what} ended before its final event")
                    raise StopAsyncIteration
                chunk = await self._read(resp)
                if chunk:
                    self._pending.extend(self._decoder.feed(chunk))
                else:
                    self._eof = True
                    self._pending.extend(self._decoder.end())
        except (StopAsyncIteration, asyncio.CancelledError):
            raise
        except BaseException:
            await self.aclose()
            raise

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        try:
            return await resp.content.readany()
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise StreamIdleTimeout(
                f"{self._what}: no data for {self._idle_timeout or 0:g}s (idle timeout)"
            ) from exc
        except aiohttp.ClientPayloadError as exc:
            raise self._cut(f"{self._what} was cut off ({exc})") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise self._cut(f"{self._what} broke ({exc})") from exc

    def _cut(self, message: str) -> IncompleteStreamError:
        """The error for a stream that ended early: how far it got, and (SSE) the id to resume from."""
        last_id = getattr(self._last_frame, "id", None)
        last_id = last_id if isinstance(last_id, str) else None
        where = f"{self.events_yielded} events received" + (f", last event id {last_id!r}" if last_id else "")
        if self._incomplete is StreamOutcomeUnknownError:
            where += "; the call may or may not have completed on the server (not retried)"
        return self._incomplete(f"{message} ({where})", events=self.events_yielded, last_event_id=last_id)

    async def aclose(self) -> None:
        """Close the stream and its connection. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        resp, self._resp = self._resp, None
        if resp is not None:
            if self._eof:
                resp.release()
            else:
                # Unread bytes remain: the connection cannot go back to the pool.
                resp.close()

    def __del__(self) -> None:
        resp = getattr(self, "_resp", None)
        if resp is not None and not self._closed:
            resp.close()

    # -- helpers ---------------------------------------------------------------------------------------------------
    async def collect(self) -> list[T]:
        """Read every event into a list (and close the stream)."""
        out: list[T] = []
        async with self:
            async for event in self:
                out.append(event)
        return out


