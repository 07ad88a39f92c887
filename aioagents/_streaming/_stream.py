"""EventStream: typed events pulled from a streaming HTTP response.

The pipeline is a pull chain: ``response.content.readany()`` → decoder (lines → SSE or JSON-lines frames) → ``parse``
→ the consumer. There is no background reader and no queue, so backpressure is aiohttp's: a slow consumer slows the
socket. The stream always releases its connection: at the end, on an error, on ``aclose()``, when the ``async with``
block exits, and (as a last resort) when it is garbage-collected.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain, islice, repeat
from typing import Any, Generic, Protocol, TypeVar

import aiohttp

from aioagents._exceptions import (
    ClientClosedError,
    IncompleteStreamError,
    StreamIdleTimeout,
    StreamOutcomeUnknownError,
)
from aioagents._streaming._sse import ServerSentEvent

__all__ = ["END", "Decoder", "EventStream"]

T = TypeVar("T")
F = TypeVar("F")
F_contra = TypeVar("F_contra", contravariant=True)


class _End:
    __slots__ = ()

    def __repr__(self) -> str:
        return "END"

    def __bool__(self) -> bool:
        # False, as None is: a chunk's parsed events are screened for both with one C-level ``all()``.
        return False


END: Any = _End()
"""Returned by a stream's ``parse`` for an end marker (``[DONE]``): the stream ends without yielding it."""


class Decoder(Protocol[F]):
    """Turns a body's chunks into frames: ``feed`` gives the frames each chunk completes, ``end`` those left at the end
    of the body. A decoder may also offer ``feed_lazy(chunk)``, which ``EventStream`` then calls instead of ``feed``:
    it returns a list, or an iterator that only builds frames already checked (see ``SSEDecoder.feed_lazy``), which
    the stream reads a slice at a time."""

    def feed(self, chunk: bytes) -> list[F]: ...

    def end(self) -> list[F]: ...


_NOTHING: Any = object()

_SLICE = 256
"""Lazily decoded frames are built and parsed this many at a time: a chunk of a fast stream holds thousands of
events, and handing them out a slice at a time keeps only a few hundred alive at once, below the garbage
collector's first threshold (700 new objects), so no collector pass walks over events waiting their turn."""


class EventStream(Generic[T]):
    """An async iterator of typed events that is also an async context manager.

    >>> async with client.workflows.execute_stream("wf", input={...}) as events:
    ...     async for event in events:
    ...         print(event)

    Leaving the block (or breaking out of it) closes the connection. ``headers`` and ``status`` are the response's, once
    the stream is open.

    Each frame the decoder gives is passed to ``parse``, which returns the event, ``None`` to skip the frame, or
    ``END`` to end the stream; ``parse=None`` hands the frames out as they are (raw ``ServerSentEvent`` objects).
    """

    def __init__(
        self,
        open_response: Callable[[], Awaitable[aiohttp.ClientResponse]],
        decoder: Decoder[Any],
        parse: Callable[[Any], T | None] | None,
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
        self._last_id: str | None = None  # the last SSE ``id`` read (to resume from, on a cut stream)
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
        # Typed events of the chunks read so far, not yet handed out. A chunk is decoded and parsed in one plain
        # loop as it arrives, so handing out an event is a pop: no per-event await chain or per-event checks.
        self._ready: deque[T] = deque()
        # Frames of the chunks read so far, not yet parsed: an SSE decoder's lazy run (built and parsed a slice at a
        # time, see _SLICE); None when there are none.
        self._pending: Iterator[Any] | None = None
        self._feed: Callable[[bytes], Any] = getattr(decoder, "feed_lazy", None) or decoder.feed
        # An error met while parsing a chunk, raised once the events parsed before it have been handed out.
        self._error: BaseException | None = None
        self._done = False  # an end marker or a terminal event was parsed: read no further
        self._closed = False
        self._eof = False
        self._parsed = 0  # typed events put into ``_ready`` so far

    @property
    def events_yielded(self) -> int:
        """Events handed to the consumer so far (the blocking API takes them a chunk's worth at a time)."""
        return self._parsed - len(self._ready)

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
        # The hot path of every stream: one pop (the count of events handed out is derived, not kept per event).
        try:
            return self._ready.popleft()
        except IndexError:
            pass
        await self._fill()
        return self._ready.popleft()

    async def _anext_batch(self) -> list[T]:
        """Every event already read (at least one, reading more when none is): the blocking API takes these in one
        entry into the loop. Raises StopAsyncIteration at the end, as ``__anext__`` does."""
        ready = self._ready
        if not ready:
            await self._fill(None)
        batch = list(ready)
        ready.clear()
        return batch

    async def _fill(self, limit: int | None = _SLICE) -> None:
        """Read chunks until at least one typed event is ready; at the end close and raise StopAsyncIteration (or
        the stream's error). Frames a decoder gives lazily are parsed ``limit`` at a time (``None``: all of them)."""
        ready = self._ready
        decoder = self._decoder
        while not ready:
            if self._error is not None:
                error, self._error = self._error, None
                await self.aclose()
                raise error
            if self._done:
                await self.aclose()
                raise StopAsyncIteration
            if self._closed:
                raise ClientClosedError(f"{self._what} is closed")
            pending = self._pending
            if pending is not None:
                first = next(pending, _NOTHING)
                if first is not _NOTHING:
                    self._note_id((first,))  # the frames of a lazy run all carry the same id
                    self._take(chain((first,), pending if limit is None else islice(pending, limit - 1)))
                    continue
                self._pending = None
            if self._eof:
                await self.aclose()
                if self._require_terminal:
                    raise self._cut(f"{self._what} ended before its final event")
                raise StopAsyncIteration
            try:
                resp = self._resp if self._resp is not None else await self._ensure_open()
                chunk = await self._read(resp)
                if chunk:
                    frames = self._feed(chunk)
                    if type(frames) is not list:
                        self._pending = frames  # parsed at the top of the loop, a slice at a time
                        continue
                else:
                    self._eof = True
                    frames = decoder.end()
            except asyncio.CancelledError:
                raise
            except BaseException:
                await self.aclose()
                raise
            if frames:
                self._note_id(frames)
                self._take(frames)

    def _note_id(self, frames: Sequence[Any]) -> None:
        """Remember the newest non-empty string ``id`` among a chunk's frames (the event to resume from)."""
        last = frames[-1]
        if type(last) is ServerSentEvent:
            # An SSE id persists from event to event and never goes back to None: the last frame carries the newest
            # one, and when it has none, no frame before it has one either. No step per event.
            frame_id = last.id
            if frame_id:
                self._last_id = frame_id
                return
            if frame_id is None:
                return
        # Other frames (or an id reset to ""): the ids are gathered at C speed, and only non-empty ones are looked at.
        for frame_id in filter(None, reversed(list(map(getattr, frames, repeat("id"), repeat(None))))):
            if isinstance(frame_id, str):
                self._last_id = frame_id
                return

    def _take(self, frames: Iterable[Any]) -> None:
        """Parse frames into ready events, stopping at an end marker or a terminal event. Called only with the
        ready queue empty (``_fill`` reads until it is not), so the queue holds exactly these frames' events."""
        # The frames are parsed by ``map`` straight into the queue and checked with C-level scans, so a chunk of
        # ordinary events costs no Python-level step per event beyond the parse itself.
        ready: deque[Any] = self._ready  # (None and END sit in it until the screen below takes them out)
        parse = self._parse
        if parse is None:
            ready.extend(frames)  # the decoder's frames are the events: nothing to parse, no None or END among them
            marked = False
        else:
            try:
                ready.extend(map(parse, frames))
            except Exception as exc:
                # Raised once the events parsed before it are handed out (``extend`` keeps them), as if the frames
                # were parsed one at a time.
                self._error = exc
            # One C-level screen: None and END are both false, as almost no event is. A false event (an empty
            # container, say) only sends the chunk down the exact per-item reading below.
            marked = not all(ready)
        terminal = self._terminal
        try:
            stop = terminal is not None and not marked and any(map(terminal, ready))
        except BaseException:
            ready.clear()  # a terminal test that raises: as before, nothing of these frames is handed out
            raise
        if marked or stop:
            items = list(ready)
            ready.clear()
            kept: list[Any] = []
            for item in items:
                if item is None:
                    continue
                if item is END:
                    self._done = True
                    break
                kept.append(item)
                if terminal is not None and terminal(item):
                    self._done = True
                    break
            if self._done:
                self._error = None  # the stream ended before the frame that failed
            ready.extend(kept)
        self._parsed += len(ready)

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        try:
            return await resp.content.readany()
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise StreamIdleTimeout(f"{self._what}: no data for {self._idle_timeout or 0:g}s (idle timeout)") from exc
        except aiohttp.ClientPayloadError as exc:
            raise self._cut(f"{self._what} was cut off ({exc})") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise self._cut(f"{self._what} broke ({exc})") from exc

    def _cut(self, message: str) -> IncompleteStreamError:
        """The error for a stream that ended early: how far it got, and (SSE) the id to resume from."""
        last_id = self._last_id
        where = f"{self.events_yielded} events received" + (f", last event id {last_id!r}" if last_id else "")
        if self._incomplete is StreamOutcomeUnknownError:
            where += "; the call may or may not have completed on the server (not retried)"
        return self._incomplete(f"{message} ({where})", events=self.events_yielded, last_event_id=last_id)

    async def aclose(self) -> None:
        """Close the stream and its connection. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._ready.clear()
        self._pending = None
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
    async def batches(self) -> AsyncIterator[list[T]]:
        """The events a chunk at a time: each list holds every event that had arrived (never empty), so a hot loop
        iterates plain lists and pays one ``await`` per chunk instead of one per event.

        >>> async with client.workflows.execute_stream("wf", input={...}) as events:
        ...     async for batch in events.batches():
        ...         for event in batch:
        ...             handle(event)

        Same end, errors and connection handling as iterating the stream itself; the two may be mixed.
        """
        while True:
            try:
                batch = await self._anext_batch()
            except StopAsyncIteration:
                return
            yield batch

    async def collect(self) -> list[T]:
        """Read every event into a list (and close the stream)."""
        out: list[T] = []
        async with self:
            while True:
                try:
                    out += await self._anext_batch()
                except StopAsyncIteration:
                    return out
