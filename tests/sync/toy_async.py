"""A toy async client with every shape the sync generator mirrors, so the generator is proven before the real
service clients exist.

Its HTTP calls go through :class:`ToyTransport`, which keeps one aiohttp session per event loop the way the core
Transport does: one client object shared by many threads (each with its own loop) gets one session per loop, and
``aclose()`` closes all of them, each on its own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import threading
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Generic, Literal, TypeVar, overload

import aiohttp
import attrs

from aioagents._client import RequestOptions, Self, Unpack
from aioagents._streaming import EventStream, ServerSentEvent, SSEDecoder
from aioagents._transport import Transport
from aioagents.sync import _bridge

T = TypeVar("T")


class ToyError(Exception):
    """An error of the toy's own."""


@attrs.frozen(kw_only=True)
class Echo:
    """What the toy server answered, and which loop and session carried the request."""

    text: str
    loop_id: int
    session_id: int


class ToyTransport:
    """One aiohttp session per event loop, created lazily inside that loop."""

    def __init__(self, base_url: str | None) -> None:
        self.base_url = base_url
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._lock = threading.Lock()
        self.closed = False

    def session(self) -> aiohttp.ClientSession:
        if self.closed:
            raise RuntimeError("the toy client is closed")
        loop = asyncio.get_running_loop()
        with self._lock:
            session = self._sessions.get(loop)
            if session is None or session.closed:
                session = aiohttp.ClientSession()
                self._sessions[loop] = session
                # If the bridge closes this loop first (its thread died, or exit), close the session on it.
                _bridge.on_loop_close(loop, lambda: self._close_on(loop))
        return session

    @property
    def session_count(self) -> int:
        with self._lock:
            return len(self._sessions)

    async def _close_on(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            session = self._sessions.pop(loop, None)
        if session is not None:
            await session.close()

    async def aclose(self) -> None:
        self.closed = True
        with self._lock:
            loops = list(self._sessions)
        for loop in loops:
            if loop.is_closed():
                continue
            # A session's connections belong to its loop: close it there, wherever that loop lives.
            await _bridge.arun_on(loop, functools.partial(self._close_on, loop))

    def url(self, path: str) -> str:
        if self.base_url is None:
            raise ToyError("this toy client has no server")
        return self.base_url + path


class StreamBase(Generic[T]):
    """A minimal EventStream: an async iterator with ``aclose()`` and async-context-manager support."""

    def __init__(self) -> None:
        self.closed = False

    def __aiter__(self) -> StreamBase[T]:
        return self

    async def __anext__(self) -> T:
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True

    async def __aenter__(self) -> StreamBase[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class Numbers(StreamBase[int]):
    """The numbers 0..n-1; records that it was closed and on which loop each step ran."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self._next = 0
        self._n = n
        self.loops: set[int] = set()

    async def __anext__(self) -> int:
        self.loops.add(id(asyncio.get_running_loop()))
        if self.closed or self._next >= self._n:
            raise StopAsyncIteration
        self._next += 1
        return self._next - 1


class Lines(StreamBase[str]):
    """Lines of a streamed HTTP response; closing releases the connection."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        super().__init__()
        self._response = response

    async def __anext__(self) -> str:
        if self.closed:
            raise StopAsyncIteration
        line = await self._response.content.readline()
        if not line:
            await self.aclose()
            raise StopAsyncIteration
        return line.decode().rstrip("\n")

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            # close(), not release(): the rest of the body is unread, so the connection cannot be reused.
            self._response.close()


class Messages:
    """A nested sub-resource (``client.threads.messages``)."""

    def __init__(self, transport: ToyTransport) -> None:
        self._transport = transport

    async def post(self, thread_id: str, *, text: str) -> Echo:
        """Post ``text`` to a thread (echoed by the server)."""
        session = self._transport.session()
        async with session.post(self._transport.url("/echo"), json={"text": f"{thread_id}:{text}"}) as resp:
            data = await resp.json()
        return Echo(text=data["text"], loop_id=id(asyncio.get_running_loop()), session_id=id(session))


class Threads:
    """A sub-resource."""

    def __init__(self, transport: ToyTransport) -> None:
        self.messages = Messages(transport)

    async def title(self, thread_id: str) -> str:
        """A thread's title."""
        return f"thread {thread_id}"


class ToyBase:
    """A base with a method typed once for every subclass (as ``ServiceClient.with_options``)."""

    label: str

    def relabeled(self, label: str) -> Self:
        """A copy of this client under another label."""
        clone = copy.copy(self)
        clone.label = label
        return clone

    async def tagged(self, text: str, **options: Unpack[RequestOptions]) -> str:
        """``text`` and the names of the per-call options it was given."""
        return f"{text}:{','.join(sorted(options))}"


class ToyClient(ToyBase):
    """A toy client.

    Example::

        async with ToyClient("http://127.0.0.1:8080") as client:
            await client.add(1, 2)
    """

    threads: Threads

    def __init__(self, base_url: str | None = None, *, scale: int = 1, label: str = "toy") -> None:
        """Talk to the toy server at ``base_url``; ``scale`` multiplies sums."""
        self.label: str = label
        self._scale = scale
        self._transport = ToyTransport(base_url)
        self.threads = Threads(self._transport)
        self._calls = 0
        self.log: list[str] = []

    def __repr__(self) -> str:
        return f"ToyClient(label={self.label!r})"

    @classmethod
    def from_env(cls, label: str = "env") -> ToyClient:
        """A client configured from the environment (the toy has none)."""
        return cls(label=label)

    @property
    def calls(self) -> int:
        """How many coroutine calls this client ran."""
        return self._calls

    @property
    def scale(self) -> int:
        """The multiplier of :meth:`add`."""
        return self._scale

    @scale.setter
    def scale(self, value: int) -> None:
        self._scale = value

    @property
    def session_count(self) -> int:
        """How many per-loop HTTP sessions are open."""
        return self._transport.session_count

    def describe(self, *, verbose: bool = False) -> str:
        """A plain (non-async) method."""
        return f"ToyClient({self.label!r}, calls={self._calls})" if verbose else self.label

    async def add(self, a: int, b: int = 2, /, *, scale: int | None = None) -> int:
        """``(a + b) * scale``, with no I/O at all."""
        self._calls += 1
        return (a + b) * (self._scale if scale is None else scale)

    async def nothing(self) -> None:
        """Does nothing, for the benchmark."""

    async def loop_id(self) -> int:
        """The id of the loop this coroutine runs on."""
        return id(asyncio.get_running_loop())

    async def fail(self, kind: Literal["value", "toy", "interrupt"], *extra: str, **context: str) -> None:
        """Raise an exception of the given kind."""
        self._calls += 1
        await asyncio.sleep(0)
        if kind == "value":
            raise ValueError(f"bad value {extra} {context}")
        if kind == "interrupt":
            raise KeyboardInterrupt
        raise ToyError("toy failure")

    async def sleep(self, seconds: float, *, started: threading.Event | None = None) -> str:
        """Sleep; ``started`` is set once sleeping. Records cancellation in :attr:`cancelled`."""
        if started is not None:
            started.set()
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return "slept"

    cancelled: bool = False

    @overload
    async def produce(self, n: int, *, stream: Literal[False] = False) -> int: ...

    @overload
    async def produce(self, n: int, *, stream: Literal[True]) -> Numbers: ...

    async def produce(self, n: int, *, stream: bool = False) -> int | Numbers:
        """``n``, or with ``stream=True`` an open stream of 0..n-1 (one method, two shapes, as in real SDKs)."""
        if stream:
            return await self.numbers(n)
        return n

    async def find_thread(self, name: str) -> Threads | None:
        """The threads sub-resource if ``name`` is "main", else None."""
        return self.threads if name == "main" else None

    async def same_as(self, other: ToyClient | None = None, *, thread: Threads | None = None) -> bool:
        """Whether ``other`` is this very client (and ``thread``, if given, its threads resource)."""
        return other is self and (thread is None or thread is self.threads)

    async def echo(self, text: str) -> Echo:
        """Echo ``text`` through the toy server."""
        return await self.threads.messages.post("echo", text=text)

    async def count(self, n: int) -> AsyncIterator[int]:
        """An async generator: 0..n-1."""
        for i in range(n):
            yield i

    async def numbers(self, n: int) -> Numbers:
        """Open a stream object of 0..n-1."""
        self.last_numbers = Numbers(n)
        return self.last_numbers

    last_numbers: Numbers | None = None

    def numbers_lazy(self, n: int) -> StreamBase[int]:
        """A stream object returned without opening anything."""
        self.last_numbers = Numbers(n)
        return self.last_numbers

    async def lines(self, n: int, *, delay: float = 0.0) -> Lines:
        """Stream ``n`` lines from the toy server."""
        session = self._transport.session()
        response = await session.get(self._transport.url("/lines"), params={"n": n, "delay": delay})
        response.raise_for_status()
        return Lines(response)

    def opened(self, name: str) -> AbstractAsyncContextManager[str]:
        """An async context manager yielding ``name``; records entering and leaving in :attr:`log`."""

        @contextlib.asynccontextmanager
        async def manager() -> AsyncIterator[str]:
            self.log.append(f"enter {name}")
            try:
                yield name
            finally:
                self.log.append(f"exit {name}")

        return manager()

    async def aclose(self) -> None:
        """Close every per-loop session."""
        await self._transport.aclose()

    async def __aenter__(self) -> ToyClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class CoreToyClient:
    """A toy client written the way real service clients are: over the core Transport (one aiohttp session per
    event loop) and its EventStream."""

    def __init__(self, base_url: str) -> None:
        self._transport = Transport(base_url)

    async def echo(self, text: str) -> str:
        """Echo ``text`` through the toy server."""
        response = await self._transport.request("POST", "/echo", idempotent=True, json={"text": text})
        return str(response.json()["text"])

    def ticks(self, n: int, *, delay: float = 0.0) -> EventStream[int]:
        """Stream the numbers 0..n-1 as Server-Sent Events (opened lazily, like every core stream)."""
        return self._transport.stream(
            "GET",
            "/sse",
            decoder=SSEDecoder(self._transport.max_event_size),
            parse=_parse_tick,
            idempotent=True,
            params={"n": str(n), "delay": str(delay)},
        )

    async def aclose(self) -> None:
        """Close the sessions of every loop."""
        await self._transport.aclose()

    async def __aenter__(self) -> CoreToyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _parse_tick(frame: ServerSentEvent) -> int:
    return int(frame.data)
