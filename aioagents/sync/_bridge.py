"""The hand-written bridge under the generated sync API: it runs the async core's coroutines from blocking code.

Where a coroutine runs depends on the calling thread::

    calling thread has no running loop  ──►  that thread's own persistent loop (one per thread, made lazily)
    calling thread runs a loop          ──►  the one shared "portal" loop thread, and block on the result
    (Jupyter, sync code called from async code)

A persistent loop per thread is the cheap path (a few µs per call, no thread hop) and it keeps every object that
binds to a loop — aiohttp sessions, connection pools, rate-limit buckets — alive between calls. The portal exists
because a loop cannot be re-entered: blocking the caller's loop while another thread runs the coroutine is the only
way that cannot deadlock on the caller's own loop.

Every loop the bridge makes lives in one registry, so an ``atexit`` hook can close them all cleanly (cancel leftover
tasks, run the registered closers such as "close this loop's HTTP session", finish async generators, close). A loop
whose thread has died is closed the same way the next time a thread makes its first call. After ``os.fork`` the child
forgets the parent's loops and portal (they belong to threads that do not exist in the child) and starts afresh.

:class:`SyncStream` turns an async stream (an async iterator with ``aclose()``) into a blocking iterator and context
manager; every step runs on the loop the stream was opened on, because its connection belongs to that loop.
:class:`SyncContextManager` does the same for an async context manager.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import inspect
import os
import sys
import threading
import types
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Generic, TypeVar

from aioagents import _loops

__all__ = [
    "SyncContextManager",
    "SyncStream",
    "adapt",
    "arun_on",
    "on_loop_close",
    "open_stream",
    "owns",
    "run",
    "run_adapted",
    "run_on",
    "twin_of",
    "untyped",
    "unwrap",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
C = TypeVar("C", bound=type)

_get_running_loop = asyncio.events._get_running_loop
_CoroutineType = types.CoroutineType


class _LoopState:
    """One loop the bridge owns, the thread it belongs to, and the lock held while any thread runs it."""

    __slots__ = ("closed", "closers", "lock", "loop", "thread")

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread | None) -> None:
        self.loop = loop
        # None for the portal, whose loop runs forever in its own thread and is reached only thread-safely.
        self.thread = thread
        # Held by whichever thread is running ``loop`` right now: its owner inside run(), or another thread that
        # borrows an idle loop to finish work bound to it (closing a session, advancing a stream).
        self.lock = threading.Lock()
        # What to await on the loop before closing it; each entry gives the closer, or None once it is gone.
        self.closers: list[Callable[[], Callable[[], Awaitable[object]] | None]] = []
        self.closed = False


class _Registry:
    """All bridge-owned loops. Replaced wholesale in a forked child."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.lock = threading.Lock()
        self.states: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self.portal: _LoopState | None = None
        self.portal_thread: threading.Thread | None = None


_registry = _Registry()
# Loops inherited from the parent across a fork: never run or closed in the child, only kept referenced so that
# their finalizers do not complain about loops the child never owned.
_orphans: list[_Registry] = []


# -- running a coroutine ------------------------------------------------------------------------------------------


def run(coro: Awaitable[T]) -> T:
    """Run ``coro`` to completion from blocking code and return its result (or raise its exception).

    From a thread with no running loop it runs on that thread's persistent loop; from inside a running loop it runs
    on the portal loop thread while the caller blocks. ``KeyboardInterrupt`` while waiting cancels the coroutine.
    """
    if _get_running_loop() is None:
        try:
            state: _LoopState = _registry.local.state
        except AttributeError:
            state = _new_thread_state()
        else:
            if state.closed:
                state = _new_thread_state()
        with state.lock:
            return _run_locked(state.loop, coro)
    return _run_in_portal(coro)


def run_on(loop: asyncio.AbstractEventLoop, coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``coro_fn()`` on ``loop`` specifically (the loop an object such as a stream is bound to), from blocking
    code in any thread.

    ``loop`` is a bridge-owned loop (a thread's loop or the portal) or any loop running in another thread.
    """
    state = _registry.states.get(loop)
    if state is None:
        if loop.is_closed():
            raise RuntimeError("the event loop this object belongs to is closed")
        if loop is _get_running_loop():
            raise RuntimeError(
                "a blocking call was made from async code on the loop it must run on; use the async API here"
            )
        if not loop.is_running():
            raise RuntimeError("the event loop this object belongs to is not running, so it cannot be reached")
        return _call_threadsafe(loop, coro_fn())
    if state.closed:
        raise RuntimeError("the event loop this object belongs to was closed by aioagents.sync")
    if state.thread is None:
        return _run_in_portal(coro_fn())
    if state.thread is threading.current_thread():
        if _get_running_loop() is not None:
            # The owner is inside that very loop (or another one): blocking here would wait on ourselves.
            raise RuntimeError(
                "a blocking call was made from async code running in the thread that owns its loop; "
                "use the async API here"
            )
        with state.lock:
            return _run_locked(state.loop, coro_fn())
    return _borrow(state, coro_fn)


async def arun_on(loop: asyncio.AbstractEventLoop, coro_fn: Callable[[], Awaitable[T]]) -> T:
    """From async code, run ``coro_fn()`` on another ``loop`` and await its result without blocking this loop.

    This is how one object used from many threads (one HTTP session per loop) closes what it holds on every loop:
    an idle bridge-owned loop is borrowed from a worker thread, a running loop is reached thread-safely.
    """
    if loop is asyncio.get_running_loop():
        return await coro_fn()
    state = _registry.states.get(loop)
    if state is None or state.thread is None:
        if loop.is_closed():
            raise RuntimeError("the event loop is closed")
        if not loop.is_running():
            raise RuntimeError("the event loop is not running and not owned by aioagents.sync")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_as_coroutine(coro_fn()), loop))
    if state.closed:
        raise RuntimeError("the event loop was closed by aioagents.sync")
    return await asyncio.to_thread(_borrow, state, coro_fn)


def owns(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` is one the bridge made (a thread's loop or the portal) and has not closed."""
    state = _registry.states.get(loop)
    return state is not None and not state.closed


def on_loop_close(loop: asyncio.AbstractEventLoop, closer: Callable[[], Awaitable[object]]) -> bool:
    """Register ``closer()`` to be awaited on ``loop`` just before the bridge closes that loop (at exit, or after its
    thread died). Returns False, registering nothing, when ``loop`` is not one the bridge owns."""
    state = _registry.states.get(loop)
    if state is None or state.closed:
        return False
    # A bound method (``session.close``) is held weakly: a long-lived thread that makes and drops many clients must
    # not keep every one of their sessions alive. Anything else (a closure) is held as given.
    ref: Callable[[], Callable[[], Awaitable[object]] | None] = (
        weakref.WeakMethod(closer) if inspect.ismethod(closer) else functools.partial(_same, closer)
    )
    state.closers = [r for r in state.closers if r() is not None]
    state.closers.append(ref)
    return True


def _same(value: T) -> T:
    return value


def _run_locked(loop: asyncio.AbstractEventLoop, coro: Awaitable[T]) -> T:
    """Run ``coro`` on ``loop``, which the caller holds the lock of and which runs in no thread."""
    task = loop.create_task(coro) if type(coro) is _CoroutineType else asyncio.ensure_future(coro, loop=loop)
    try:
        return loop.run_until_complete(task)
    except BaseException:
        if not task.done():
            # Ctrl-C (or SystemExit) arrived while the loop was waiting rather than inside the task: cancel the
            # task and let it unwind (its connections close) before the interrupt goes on.
            task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(task)
        elif not task.cancelled():
            # The interrupt was raised inside the task and stored on it as well: mark it retrieved so the loop does
            # not log "exception was never retrieved" for an exception we are raising right now.
            task.exception()
        raise


def _borrow(state: _LoopState, coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``coro_fn()`` on another thread's loop from this (blocking) thread.

    If the owner is idle we take its lock and run the loop here; if it is inside run() right now its loop is
    running, so we hand the coroutine over thread-safely. The owner may stop between our look and our hand-over,
    leaving the coroutine queued on a stopped loop: then we take the lock and drive the loop ourselves until it is
    done.
    """
    submitted: concurrent.futures.Future[T] | None = None
    while True:
        if state.lock.acquire(timeout=0.02):
            try:
                if state.closed:
                    raise RuntimeError("the event loop was closed by aioagents.sync")
                if submitted is None:
                    return _run_locked(state.loop, coro_fn())
                return _run_locked(state.loop, asyncio.wrap_future(submitted, loop=state.loop))
            finally:
                state.lock.release()
        if submitted is None and state.loop.is_running():
            submitted = asyncio.run_coroutine_threadsafe(_as_coroutine(coro_fn()), state.loop)
        if submitted is not None:
            done, _ = concurrent.futures.wait([submitted], timeout=0.02)
            if done:
                return submitted.result()


def _run_in_portal(coro: Awaitable[T]) -> T:
    portal = _portal()
    if _get_running_loop() is portal.loop:
        _close_awaitable(coro)
        raise RuntimeError(
            "a blocking aioagents.sync call was made from async code running on the sync portal; use the async API"
        )
    return _call_threadsafe(portal.loop, coro)


def _call_threadsafe(loop: asyncio.AbstractEventLoop, aw: Awaitable[T]) -> T:
    """Run ``aw`` on ``loop`` (running in another thread) and block until it is done."""
    tasks: list[asyncio.Task[Any]] = []
    future = asyncio.run_coroutine_threadsafe(_tracked(aw, tasks), loop)
    try:
        return future.result()
    except BaseException:
        if not future.done():
            # Interrupted while blocked (KeyboardInterrupt): cancel the task on its loop and wait (a little) until
            # it has unwound, so its connection is released before the interrupt goes on.
            loop.call_soon_threadsafe(_cancel_all, tasks)
            concurrent.futures.wait([future], timeout=5)
        raise


async def _tracked(aw: Awaitable[T], tasks: list[asyncio.Task[Any]]) -> T:
    task = asyncio.current_task()
    if task is not None:
        tasks.append(task)
    return await aw


def _cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()


async def _await(aw: Awaitable[T]) -> T:
    return await aw


def _as_coroutine(aw: Awaitable[T]) -> Coroutine[Any, Any, T]:
    return aw if inspect.iscoroutine(aw) else _await(aw)


def _close_awaitable(aw: Awaitable[object]) -> None:
    # A coroutine that is never awaited warns ("was never awaited"); close it since we refuse to run it.
    if inspect.iscoroutine(aw):
        aw.close()


# -- loop lifecycle ------------------------------------------------------------------------------------------------


def _new_thread_state() -> _LoopState:
    thread = threading.current_thread()
    state = _LoopState(asyncio.new_event_loop(), thread)
    with _registry.lock:
        dead = [s for s in _registry.states.values() if s.thread is not None and not s.thread.is_alive()]
        _registry.states[state.loop] = state
    _registry.local.state = state
    # Threads come and go (thread pools, a thread per request): close what dead threads left behind so their
    # loops do not pile up until exit. This thread has no running loop, so it may drive theirs.
    for old in dead:
        _close_state(old, timeout=0.5)
    return state


def _portal() -> _LoopState:
    portal = _registry.portal
    if portal is not None:
        return portal
    with _registry.lock:
        if _registry.portal is None:
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            thread = threading.Thread(target=serve, name="aioagents-sync-portal", daemon=True)
            thread.start()
            started.wait()
            state = _LoopState(loop, None)
            _registry.states[loop] = state
            _registry.portal_thread = thread
            _registry.portal = state
        return _registry.portal


async def _finish(state: _LoopState) -> None:
    """Run on the loop being closed: its closers, then cancel and await whatever tasks are left."""
    closers, state.closers = state.closers, []
    for ref in closers:
        closer = ref()
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()
    current = asyncio.current_task()
    leftovers = [t for t in asyncio.all_tasks() if t is not current]
    for task in leftovers:
        task.cancel()
    if leftovers:
        await asyncio.gather(*leftovers, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()
    await asyncio.get_running_loop().shutdown_default_executor()


def _close_state(state: _LoopState, *, timeout: float) -> None:
    """Close a bridge-owned thread loop that nobody is running (skipped if its owner is busy past ``timeout``)."""
    if not state.lock.acquire(timeout=timeout):
        return
    try:
        if state.closed:
            return
        state.closed = True
        with _registry.lock:
            _registry.states.pop(state.loop, None)
        with contextlib.suppress(Exception):
            state.loop.run_until_complete(_finish(state))
        state.loop.close()
    finally:
        state.lock.release()


def _close_portal(portal: _LoopState, thread: threading.Thread | None) -> None:
    loop = portal.loop
    portal.closed = True
    if thread is not None and thread.is_alive():
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_finish(portal), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
    if not loop.is_running():
        loop.close()


def shutdown() -> None:
    """Close every loop the bridge made (registered as an ``atexit`` hook; safe to call more than once).

    A later call from blocking code starts a fresh loop, so code running after this still works.
    """
    with _registry.lock:
        states = [s for s in _registry.states.values() if s.thread is not None]
        portal, thread = _registry.portal, _registry.portal_thread
        _registry.portal = None
        _registry.portal_thread = None
    for state in states:
        # A thread still inside a call at exit (a daemon thread) keeps its loop; do not hang the exit on it.
        _close_state(state, timeout=0.2)
    if portal is not None:
        with _registry.lock:
            _registry.states.pop(portal.loop, None)
        _close_portal(portal, thread)


def _after_fork_in_child() -> None:
    global _registry
    # The parent's loops belong to threads that do not exist here and share the parent's selector file
    # descriptors; running or closing them could disturb the parent. Keep them referenced, start afresh.
    _orphans.append(_registry)
    _registry = _Registry()


atexit.register(shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- streams and context managers ----------------------------------------------------------------------------------


class _Binding:
    """The loop an object was opened on, learnt from the first call that ran for it."""

    __slots__ = ("loop",)

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None

    def call(self, coro_fn: Callable[[], Awaitable[T]]) -> T:
        if self.loop is None:
            return run(self._first(coro_fn))
        return run_on(self.loop, coro_fn)

    async def _first(self, coro_fn: Callable[[], Awaitable[T]]) -> T:
        self.loop = asyncio.get_running_loop()
        return await coro_fn()


class SyncStream(Iterator[T_co]):
    """A blocking iterator over an async stream, and a context manager that closes it.

    ``for event in client.stream(...)`` reads one event per step; leaving the loop early with ``break`` and dropping
    the stream, ``close()``, or leaving a ``with`` block closes the underlying async stream (and so its
    connection)::

        with client.stream(...) as events:
            for event in events:
                ...
    """

    def __init__(self, stream: AsyncIterator[T_co]) -> None:
        """Wrap an async iterator (an async generator, or a stream object with ``aclose()``); each step runs on the
        loop that ran the first one."""
        self._stream = stream
        self._binding = _Binding()
        self._closed = False
        self._entered = False
        # A stream that can hand over every item it already has (``_anext_batch``: an EventStream gives a chunk's
        # events, a batch every finished result) is entered once per batch rather than once per item: each entry
        # into the loop costs more than the item itself. The items wait here until the caller asks for them.
        self._buffer: deque[T_co] = deque()
        self._next_batch: Callable[[], Awaitable[list[T_co]]] | None = getattr(stream, "_anext_batch", None)

    def __iter__(self) -> SyncStream[T_co]:
        return self

    def __getattr__(self, name: str) -> Any:
        # The async stream's plain attributes (``status``, ``headers`` once open) read through; its coroutine
        # methods would hand back un-run coroutines, so they are refused.
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self._stream, name)
        if inspect.iscoroutinefunction(value) or inspect.isasyncgenfunction(value):
            raise AttributeError(f"{name!r} is a coroutine method of the async stream; it has no blocking form here")
        return value

    def __next__(self) -> T_co:
        buffer = self._buffer
        if buffer:
            return buffer.popleft()
        if self._closed:
            raise StopIteration
        try:
            if self._next_batch is None:
                return self._binding.call(self._stream.__anext__)
            while not buffer:
                buffer.extend(self._binding.call(self._next_batch))
        except StopAsyncIteration:
            self.close()
            raise StopIteration from None
        return buffer.popleft()

    def close(self) -> None:
        """Close the async stream (and its connection). Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._buffer.clear()
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            self._binding.call(aclose)

    def __enter__(self) -> SyncStream[T_co]:
        aenter = getattr(self._stream, "__aenter__", None)
        if aenter is not None:
            self._binding.call(aenter)
            self._entered = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closed:
            return
        stream = self._stream
        if self._entered and isinstance(stream, AbstractAsyncContextManager):
            self._closed = True
            self._buffer.clear()
            self._binding.call(lambda: stream.__aexit__(exc_type, exc, tb))
        else:
            self.close()

    def __del__(self) -> None:
        # Dropped without being closed (``break`` out of a for loop, then garbage collection).
        if getattr(self, "_closed", True):
            return
        self._closed = True
        loop = self._binding.loop
        aclose = getattr(self._stream, "aclose", None)
        if loop is not None and aclose is not None:
            _close_later(loop, aclose)


def open_stream(opening: Awaitable[AsyncIterator[T]]) -> SyncStream[T]:
    """Run ``opening`` (a coroutine that opens an async stream: sends the request, checks the status) now, and
    return the stream as a :class:`SyncStream` bound to the loop that opened it."""
    binding = _Binding()
    stream = binding.call(lambda: opening)
    sync = SyncStream(stream)
    sync._binding = binding
    return sync


# Tasks of closes scheduled from finalizers: the loop only holds tasks weakly.
_closing: set[asyncio.Task[object]] = set()


def _close_later(loop: asyncio.AbstractEventLoop, aclose: Callable[[], Awaitable[object]]) -> None:
    """Close a dropped stream from a finalizer, which may run in any thread at any moment: never block here.

    On the calling thread's own idle loop the close runs now; anywhere else it is queued on the stream's loop and
    runs when that loop next runs (at the latest when the bridge closes the loop).
    """
    if loop.is_closed():
        return
    state = _registry.states.get(loop)
    if (
        state is not None
        and state.thread is threading.current_thread()
        and _get_running_loop() is None
        and state.lock.acquire(blocking=False)
    ):
        try:
            with contextlib.suppress(Exception):
                _run_locked(loop, aclose())
        finally:
            state.lock.release()
        return

    def spawn() -> None:
        task: asyncio.Task[object] = loop.create_task(_as_coroutine(aclose()))
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(spawn)


class SyncContextManager(Generic[T_co]):
    """A blocking context manager over an async one; enter and exit run on the same loop."""

    def __init__(self, acm: AbstractAsyncContextManager[T_co]) -> None:
        """Wrap ``acm``; nothing runs until ``__enter__``."""
        self._acm = acm
        self._binding = _Binding()

    def __enter__(self) -> T_co:
        return self._binding.call(self._acm.__aenter__)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return self._binding.call(lambda: self._acm.__aexit__(exc_type, exc, tb))


# -- values whose type is known only at run time ------------------------------------------------------------------

# Async class → its generated sync twin (which has a ``_wrap(async_object)`` class method).
_twins: dict[type, Any] = {}
_sync_twins: set[type] = set()


def twin_of(async_cls: type) -> Callable[[C], C]:
    """Class decorator of every generated twin: records which async class it mirrors, for :func:`run_adapted`."""

    def register(sync_cls: C) -> C:
        _twins[async_cls] = sync_cls
        _sync_twins.add(sync_cls)
        return sync_cls

    return register


def run_adapted(coro: Awaitable[object]) -> Any:
    """Run ``coro`` like :func:`run`, then adapt its value: an async stream becomes a :class:`SyncStream` bound to
    the loop that opened it, an instance of a registered async class its sync twin; anything else is returned as
    is. Generated code uses it for methods whose return annotation is a union (``Result | EventStream[E]``)."""
    binding = _Binding()
    return _adapt(binding.call(lambda: coro), binding)


def unwrap(value: object) -> Any:
    """The async object behind a sync twin (a twin passed where the async API takes its async class); any other
    value as is. Generated code uses it for parameters annotated with a union such as ``ChatClient | None``."""
    return value._async if type(value) in _sync_twins else value  # type: ignore[attr-defined]


def untyped(value: object) -> Any:
    """``value`` typed as ``Any``: generated overload implementations call the async method through it."""
    return value


def adapt(value: object) -> Any:
    """:func:`run_adapted` for a value a plain (non-async) method returned."""
    return _adapt(value, _Binding())


def _adapt(value: object, binding: _Binding) -> Any:
    for klass in type(value).__mro__:
        twin = _twins.get(klass)
        if twin is not None:
            return twin._wrap(value)
    if isinstance(value, AsyncIterator):
        stream = SyncStream(value)
        stream._binding = binding
        return stream
    return value


# The core asks its loop owner through this registry and never imports the sync layer.
_loops.register_loop_owner(sys.modules[__name__])
