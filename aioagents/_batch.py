"""Bounded-concurrency batches: results as they complete, with their input index; no item is ever lost.

``as_completed`` runs ``func`` over the inputs with at most ``concurrency`` calls in flight and yields a
:class:`BatchResult` per input as each finishes. A failing item is captured in its result (``error``) and never
stops the others. Inputs are pulled lazily, so 100,000 inputs cost memory only for what is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import attrs

__all__ = ["BatchIterator", "BatchResult", "Progress", "amap", "as_completed"]

log = logging.getLogger("aioagents")

T = TypeVar("T")
R = TypeVar("R")


@attrs.frozen(kw_only=True)
class BatchResult(Generic[T, R]):
    """One item of a batch: its ``index`` in the inputs, the ``input``, and either ``value`` or ``error``."""

    index: int
    input: T
    value: R | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> R:
        """The value, or the item's error raised."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


@attrs.frozen(kw_only=True)
class Progress:
    """Counts passed to a progress callback after each item."""

    done: int
    failed: int
    total: int | None


ProgressCallback = Callable[[Progress], None]


class _Tally:
    """Counts finished items and reports them: a tqdm bar (``progress``) and/or ``on_progress`` callbacks."""

    __slots__ = ("bar", "done", "failed", "on_progress", "total")

    def __init__(self, total: int | None, on_progress: ProgressCallback | None, progress: bool, desc: str) -> None:
        self.total = total
        self.on_progress = on_progress
        self.bar = _tqdm_bar(total, desc) if progress else None
        self.done = 0
        self.failed = 0

    def count(self, failed: bool) -> None:
        """One more item finished (``failed``: with an error)."""
        self.done += 1
        if failed:
            self.failed += 1
        bar = self.bar
        if bar is not None:
            bar.update(1)
            if self.failed:
                bar.set_postfix(failed=self.failed, refresh=False)
        if self.on_progress is not None:
            self.on_progress(Progress(done=self.done, failed=self.failed, total=self.total))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _tqdm_bar(total: int | None, desc: str) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the `progress` extra is not installed
        return None
    return tqdm(total=total, desc=desc, unit="item")


def as_completed(
    func: Callable[[T], Awaitable[R]],
    inputs: Iterable[T] | AsyncIterable[T],
    *,
    concurrency: int = 16,
    on_progress: ProgressCallback | None = None,
    progress: bool = False,
    total: int | None = None,
    desc: str = "batch",
) -> BatchIterator[T, R]:
    """Yield a :class:`BatchResult` per input, in completion order.

    >>> async for item in as_completed(client.run_code, requests, concurrency=64):
    ...     print(item.index, item.value.status if item.ok else item.error)

    ``progress=True`` draws a tqdm bar when tqdm is installed. Leaving the loop early and calling ``aclose()`` (or
    dropping the iterator) cancels the calls in flight. Nothing starts before the first result is asked for.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    return BatchIterator(func, inputs, concurrency, on_progress, progress, total, desc)


class BatchIterator(AsyncIterator[BatchResult[T, R]]):
    """The async iterator :func:`as_completed` returns; ``aclose()`` stops it early.

    A class rather than an async generator so that the blocking API can take every result that is already in with
    one entry into the loop (``_anext_batch``): ``aioagents.sync`` would otherwise stop and restart the loop once per
    result, which costs more than the result itself.
    """

    def __init__(
        self,
        func: Callable[[T], Awaitable[R]],
        inputs: Iterable[T] | AsyncIterable[T],
        concurrency: int,
        on_progress: ProgressCallback | None,
        progress: bool,
        total: int | None,
        desc: str,
    ) -> None:
        if total is None and isinstance(inputs, Sequence):
            total = len(inputs)
        self._func = func
        # A plain iterable is read with next(): one worker at a time runs between awaits, so it needs no lock and no
        # async generator step per input. An async iterable is read under a lock (one __anext__ at a time).
        self._sync_source: Iterator[tuple[int, T]] | None = None
        self._source: AsyncIterator[tuple[int, T]] | None = None
        if isinstance(inputs, AsyncIterable):
            self._source = _numbered(inputs)
        else:
            self._sync_source = enumerate(inputs)
        self._concurrency = concurrency
        self._on_progress = on_progress
        self._total = total
        self._progress = progress
        self._desc = desc
        self._tally: _Tally | None = None
        self._results: asyncio.Queue[BatchResult[T, R] | None] = asyncio.Queue()
        # Backpressure: an item holds a slot from the moment its input is taken until the consumer takes its result,
        # so a slow consumer holds the workers back instead of results piling up for every input. Counted here with
        # one waiter future per blocked worker, woken as slots free: asyncio.Semaphore rescans the futures it has
        # already woken on every release, which costs O(workers) per result when they all wait on a slow consumer.
        self._slot_limit = 2 * concurrency
        self._outstanding = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._lock = asyncio.Lock()
        self._runner: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finished = False  # every result has been handed out
        self._closed = False

    def __aiter__(self) -> BatchIterator[T, R]:
        return self

    async def __anext__(self) -> BatchResult[T, R]:
        return (await self._take(single=True))[0]

    async def _anext_batch(self) -> list[BatchResult[T, R]]:
        """Every result that is in (at least one, waiting when none is); StopAsyncIteration at the end."""
        return await self._take(single=False)

    async def _take(self, *, single: bool) -> list[BatchResult[T, R]]:
        if self._closed or self._finished:
            await self._end()
        if self._runner is None:
            self._start()
        results = self._results
        if results.empty():
            first = await results.get()
            if not single and first is not None:
                # Calls that finished in the same turn of the loop put their results after this wake-up: let them,
                # so that the blocking API takes them in this entry into the loop rather than one entry each.
                await asyncio.sleep(0)
        else:
            first = results.get_nowait()
        batch: list[BatchResult[T, R]] = []
        result = first
        while True:
            if result is None:
                self._finished = True
                break
            batch.append(result)
            if single or results.empty():
                break
            result = results.get_nowait()
        if not batch:
            await self._end()
        self._account(batch)
        return batch

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tally = _Tally(self._total, self._on_progress, self._progress, self._desc)
        self._runner = asyncio.ensure_future(self._supervise())

    async def _supervise(self) -> None:
        try:
            await asyncio.gather(*(self._worker() for _ in range(self._concurrency)))
        finally:
            self._results.put_nowait(None)

    async def _worker(self) -> None:
        func, results, sync_source, source = self._func, self._results, self._sync_source, self._source
        limit, waiters = self._slot_limit, self._slot_waiters
        loop = asyncio.get_running_loop()
        while True:
            while self._outstanding >= limit:
                waiter = loop.create_future()
                waiters.append(waiter)
                await waiter
            if sync_source is not None:
                try:
                    index, item = next(sync_source)
                except StopIteration:
                    break
                self._outstanding += 1
            else:
                assert source is not None
                self._outstanding += 1  # held while the lock is awaited: others must not take the same slot
                async with self._lock:
                    try:
                        index, item = await source.__anext__()
                    except StopAsyncIteration:
                        self._release(1)
                        break
                    except BaseException:
                        self._release(1)
                        raise
            try:
                value = await func(item)
            except Exception as exc:  # captured per item: one failure never loses another item
                results.put_nowait(BatchResult(index=index, input=item, error=exc))
            else:
                results.put_nowait(BatchResult(index=index, input=item, value=value))

    def _release(self, n: int) -> None:
        """Free ``n`` slots and wake as many blocked workers (a cancelled one is skipped)."""
        self._outstanding -= n
        waiters = self._slot_waiters
        free = self._slot_limit - self._outstanding
        while free > 0 and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def _account(self, batch: list[BatchResult[T, R]]) -> None:
        """The consumer took ``batch``: free its slots, count it, draw and report progress."""
        self._release(len(batch))
        tally = self._tally
        assert tally is not None
        for result in batch:
            tally.count(result.error is not None)

    async def _end(self) -> None:
        """Finish: re-raise an error of the input iterator itself (once), then StopAsyncIteration."""
        runner = self._runner
        if not self._closed:
            await self.aclose()
            if runner is not None and runner.done() and not runner.cancelled():
                runner.result()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop: cancel the calls still in flight and wait until they have unwound. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        runner = self._runner
        if runner is not None and not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        if self._tally is not None:
            self._tally.close()

    def __del__(self) -> None:
        # Dropped mid-way without aclose() (a `break`, then garbage collection): stop the workers, as the loop's
        # async-generator finalizer would have for a generator.
        runner = getattr(self, "_runner", None)
        if runner is not None and not runner.done() and self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(runner.cancel)


async def _numbered(inputs: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[tuple[int, T]]:
    if isinstance(inputs, AsyncIterable):
        index = 0
        async for item in inputs:
            yield index, item
            index += 1
    else:
        for index, item in enumerate(inputs):
            yield index, item


async def amap(
    func: Callable[[T], Awaitable[R]],
    inputs: Iterable[T] | AsyncIterable[T],
    *,
    concurrency: int = 16,
    on_progress: ProgressCallback | None = None,
    progress: bool = False,
) -> list[BatchResult[T, R]]:
    """Run the whole batch and return every result in input order."""
    out: list[BatchResult[T, R]] = [
        r async for r in as_completed(func, inputs, concurrency=concurrency, on_progress=on_progress, progress=progress)
    ]
    out.sort(key=lambda r: r.index)
    return out
