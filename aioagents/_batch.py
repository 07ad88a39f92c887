"""Bounded-concurrency batches: results as they complete, with their input index; no item is ever lost.

``as_completed`` runs ``func`` over the inputs with at most ``concurrency`` calls in flight and yields a
:class:`BatchResult` per input as each finishes. A failing item is captured in its result (``error``) and never
stops the others. Inputs are pulled lazily, so 100,000 inputs cost memory only for what is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import attrs

__all__ = ["BatchResult", "Progress", "amap", "as_completed", "run_concurrent"]

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


def _tqdm_bar(total: int | None, desc: str) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the `progress` extra is not installed
        return None
    return tqdm(total=total, desc=desc, unit="item")


async def as_completed(
    func: Callable[[T], Awaitable[R]],
    inputs: Iterable[T] | AsyncIterable[T],
    *,
    concurrency: int = 16,
    on_progress: ProgressCallback | None = None,
    progress: bool = False,
    total: int | None = None,
    desc: str = "batch",
) -> AsyncGenerator[BatchResult[T, R], None]:
    """Yield a :class:`BatchResult` per input, in completion order.

    >>> async for item in as_completed(client.run_code, requests, concurrency=64):
    ...     print(item.index, item.value.status if item.ok else item.error)

    ``progress=True`` draws a tqdm bar when tqdm is installed. Leaving the loop early cancels the calls in flight.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if total is None and isinstance(inputs, Sequence):
        total = len(inputs)
    bar = _tqdm_bar(total, desc) if progress else None
    results: asyncio.Queue[BatchResult[T, R] | None] = asyncio.Queue()
    source = _numbered(inputs)
    lock = asyncio.Lock()
    # Backpressure: an item holds a slot from the moment its input is taken until the consumer takes its result, so
    # a slow consumer holds the workers back instead of results piling up for every input.
    slots = asyncio.Semaphore(2 * concurrency)

    async def worker() -> None:
        while True:
            await slots.acquire()
            async with lock:
                try:
                    index, item = await source.__anext__()
                except StopAsyncIteration:
                    slots.release()
                    break
            try:
                value = await func(item)
            except Exception as exc:  # captured per item: one failure never loses another item
                results.put_nowait(BatchResult(index=index, input=item, error=exc))
            else:
                results.put_nowait(BatchResult(index=index, input=item, value=value))

    async def supervise() -> None:
        try:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        finally:
            results.put_nowait(None)

    runner = asyncio.ensure_future(supervise())
    done = failed = 0
    try:
        while True:
            result = await results.get()
            if result is None:
                break
            slots.release()
            done += 1
            if result.error is not None:
                failed += 1
            if bar is not None:
                bar.update(1)
                if failed:
                    bar.set_postfix(failed=failed, refresh=False)
            if on_progress is not None:
                on_progress(Progress(done=done, failed=failed, total=total))
            yield result
        await runner  # re-raises an error of the input iterator itself
    finally:
        if not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        if bar is not None:
            bar.close()


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


def run_concurrent(
    func: Callable[..., Any],
    args: list[list[Any]] | None = None,
    kwargs: list[dict[str, Any]] | None = None,
    concurrency: int = 20,
) -> list[Any]:
    """Call ``func(*args[i], **kwargs[i])`` for every i, at most ``concurrency`` at a time; results in input order.

    The signature of sandbox-fusion's ``run_concurrent``. A coroutine function — or a sync function that names its async
    twin in ``__aioagents_async__`` (every compat function does) — runs on one event loop; any other callable runs in
    a thread pool. As in the original, the first error is raised after every call has finished.
    """
    if args is None and kwargs is None:
        raise ValueError("give args or kwargs")
    if args is not None and kwargs is not None and len(args) != len(kwargs):
        raise ValueError("args and kwargs must have the same length")
    n = len(args) if args is not None else len(kwargs)  # type: ignore[arg-type]
    call_args = args if args is not None else [[] for _ in range(n)]
    call_kwargs = kwargs if kwargs is not None else [{} for _ in range(n)]

    target = getattr(func, "__aioagents_async__", func)
    if inspect.iscoroutinefunction(target):
        async_func = target
    else:

        async def async_func(*a: Any, **kw: Any) -> Any:
            return await asyncio.to_thread(func, *a, **kw)

    async def call(i: int) -> Any:
        return await async_func(*call_args[i], **call_kwargs[i])

    from aioagents.sync._bridge import run

    items = run(amap(call, range(n), concurrency=concurrency))
    for item in items:
        if item.error is not None:
            raise item.error
    return [item.value for item in items]
