"""Batches across a Ray cluster: one sandbox per node, items where capacity is free, nothing lost to a dead node.

The local path (:func:`aioagents._batch.as_completed`) runs a batch on one event loop against one sandbox. This
module runs the same kind of batch over every node of a Ray cluster and yields the same
:class:`~aioagents.BatchResult` objects, in completion order, on the driver::

    from aioagents.cluster import ray_as_completed
    from aioagents.sandbox import RunCodeRequest, SandboxClient

    async def work(client: SandboxClient, request: RunCodeRequest):
        return await client.run_code(request)          # runs on a node, against that node's sandbox

    async for item in ray_as_completed(work, requests, address="auto"):
        print(item.index, item.value.status if item.ok else item.error)

How it works
    One actor per alive node (placed on it with a hard node-affinity strategy, using no CPU of its own), each holding
    an embedded :class:`~aioagents.local.LocalSandbox` started in that node's actor, with one worker process per CPU
    Ray counts on the node — or, with ``endpoint=``, a client of that server. The driver keeps at most ``per_node``
    items in flight on each actor (by default twice the node's CPUs, at least 4) and hands the next items to
    whichever actor has a free slot, so a faster or emptier node takes more. Results stream back as each small chunk
    completes. Nodes that join mid-job get an actor at the next refresh (every ``refresh_s`` seconds).

What a lost node costs
    A chunk whose actor dies (its node was lost, its process crashed) is put back at the front of the queue and runs
    on another node; a chunk only ever yields its results once, from the call that returned, so nothing is lost or
    duplicated on the driver. An item whose chunk was lost ``max_requeues`` times is returned with a
    :class:`NodeLostError`, so a program that takes its node down with it cannot loop forever. With no node left,
    the driver waits ``node_wait_s`` for one to join, then returns the rest as :class:`NodeLostError` results.

Requirements
    ``pip install 'aioagents[ray]'`` on the driver and every node (the work function is sent by reference to its
    module, so it must be importable there: a module-level function of an installed package, or a function defined
    in the driver's ``__main__`` that Ray pickles by value).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from aioagents._batch import BatchResult, ProgressCallback, _Tally
from aioagents._exceptions import AioAgentsError

if TYPE_CHECKING:
    from aioagents.sandbox import SandboxClient

__all__ = ["NodeLostError", "RemoteItemError", "node_id", "ray_as_completed"]

log = logging.getLogger("aioagents")

T = TypeVar("T")
R = TypeVar("R")

Work = Callable[["SandboxClient", T], Awaitable[R]]


class NodeLostError(AioAgentsError):
    """An item could not be completed because the node(s) running it were lost (or no node was left)."""


class RemoteItemError(AioAgentsError):
    """An item's work raised on a node with an exception that could not travel back as itself.

    ``type_name`` is the original exception's class name; the message is its text.
    """

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type_name, str(self).partition(": ")[2]))


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # the optional extra is missing: say how to get it
        raise ImportError("running on a Ray cluster needs the 'ray' extra: pip install 'aioagents[ray]'") from exc
    return ray


def _portable(exc: BaseException) -> BaseException:
    """The exception itself when it pickles (so the driver sees its type), else a :class:`RemoteItemError`."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RemoteItemError(type(exc).__name__, str(exc))
    return exc


class _NodeWorker:
    """The per-node actor: owns this node's sandbox (or a client of ``endpoint``) and runs chunks of items on it."""

    def __init__(self, endpoint: str | None, sandbox_options: Mapping[str, Any]) -> None:
        self._endpoint = endpoint
        self._options = dict(sandbox_options)
        self._sandbox: Any = None
        self._client: SandboxClient | None = None
        self._starting: asyncio.Lock | None = None

    async def _ensure(self) -> SandboxClient:
        if self._client is not None:
            return self._client
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._client is None:
                from aioagents.sandbox import SandboxClient

                endpoint = self._endpoint
                if endpoint is None:
                    from aioagents.local import LocalSandbox

                    self._sandbox = LocalSandbox(**self._options)
                    await self._sandbox.start()
                    endpoint = self._sandbox.url
                self._client = SandboxClient(endpoint)
        assert self._client is not None
        return self._client

    async def run(self, work: Work[Any, Any], chunk: list[tuple[int, Any]]) -> list[tuple[int, bool, Any]]:
        """Run ``work`` over ``chunk`` concurrently; every item's outcome, its exception included, comes back."""
        client = await self._ensure()

        async def one(index: int, item: Any) -> tuple[int, bool, Any]:
            try:
                return index, True, await work(client, item)
            except Exception as exc:  # per item: one failure never loses another item
                return index, False, _portable(exc)

        return list(await asyncio.gather(*(one(i, x) for i, x in chunk)))

    async def close(self) -> None:
        """Close the client and stop this node's sandbox (its processes and files go with it)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            await sandbox.close()


@attrs.define(eq=False)
class _Actor:
    node_id: str
    handle: Any
    capacity: int
    in_flight: int = 0
    alive: bool = True


@attrs.define(eq=False)
class _Chunk(Generic[T]):
    actor: _Actor
    items: list[tuple[int, T]]


class _Source(Generic[T]):
    """Inputs numbered lazily, with a front queue for items whose node was lost."""

    def __init__(self, inputs: Iterable[T]) -> None:
        self._iter: Iterator[tuple[int, T]] = enumerate(inputs)
        self._exhausted = False
        self.requeued: deque[tuple[int, T]] = deque()
        self.alone = 0  # how many of the next items go one to a chunk (after a chunk failed to be sent)

    def take(self, n: int) -> list[tuple[int, T]]:
        out: list[tuple[int, T]] = []
        while self.requeued and len(out) < n:
            out.append(self.requeued.popleft())
        while not self._exhausted and len(out) < n:
            try:
                out.append(next(self._iter))
            except StopIteration:
                self._exhausted = True
        return out

    @property
    def empty(self) -> bool:
        if self.requeued:
            return False
        if self._exhausted:
            return True
        try:
            self.requeued.append(next(self._iter))
        except StopIteration:
            self._exhausted = True
            return True
        return False


async def ray_as_completed(
    work: Work[T, R],
    inputs: Iterable[T],
    *,
    address: str | None = None,
    endpoint: str | None = None,
    per_node: int | None = None,
    chunk_size: int = 4,
    max_requeues: int = 3,
    node_wait_s: float = 30.0,
    refresh_s: float = 2.0,
    sandbox_options: Mapping[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
    progress: bool = False,
    total: int | None = None,
    desc: str = "batch",
    ray_init_options: Mapping[str, Any] | None = None,
) -> AsyncGenerator[BatchResult[T, R], None]:
    """Run ``work(client, item)`` for every input on a Ray cluster; yield a :class:`BatchResult` per input.

    ``address`` is passed to ``ray.init`` when Ray is not initialised yet in this process (``None`` starts or joins
    the cluster Ray finds itself, ``"auto"`` joins a running one); a cluster this call connected to is disconnected
    at the end. ``endpoint`` makes every node use that sandbox server instead of an embedded one;
    ``sandbox_options`` are LocalSandbox arguments for the embedded ones. Leaving the loop early cancels the rest.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    if per_node is not None and per_node < 1:
        raise ValueError("per_node must be at least 1")
    ray = _import_ray()
    connected_here = False
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, **dict(ray_init_options or {}))
        connected_here = True
    if total is None and isinstance(inputs, (list, tuple)):
        total = len(inputs)
    errors = ray.exceptions
    lost_errors = (errors.RayActorError, errors.NodeDiedError, errors.WorkerCrashedError, errors.ObjectLostError)
    remote_cls = ray.remote(num_cpus=0, max_restarts=0)(_NodeWorker)
    work_ref = ray.put(work)
    options = dict(sandbox_options or {})
    actors: dict[str, _Actor] = {}
    lost_nodes: set[str] = set()
    source: _Source[T] = _Source(inputs)
    requeues: dict[int, int] = {}
    running: dict[asyncio.Future[Any], _Chunk[T]] = {}
    unsendable: deque[tuple[int, T, BaseException]] = deque()
    tally = _Tally(total, on_progress, progress, desc)
    last_refresh = -float("inf")
    no_node_since: float | None = None

    def refresh() -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        for node in ray.nodes():
            node_id = node["NodeID"]
            if not node.get("Alive") or node_id in actors or node_id in lost_nodes:
                continue
            cpus = int(node.get("Resources", {}).get("CPU", 1) or 1)
            handle = remote_cls.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
                max_concurrency=1000,
            ).remote(None if endpoint is None else endpoint, {"workers": cpus, **options})
            actors[node_id] = _Actor(node_id, handle, per_node or max(4, 2 * cpus))
            log.debug("ray: sandbox actor on node %s (capacity %d)", node_id[:8], actors[node_id].capacity)

    def dispatch() -> None:
        for actor in sorted(actors.values(), key=lambda a: a.in_flight - a.capacity):
            while actor.alive and actor.in_flight < actor.capacity:
                size = 1 if source.alone else min(chunk_size, actor.capacity - actor.in_flight)
                chunk = source.take(size)
                source.alone = max(0, source.alone - len(chunk))
                if not chunk:
                    return
                try:
                    ref = actor.handle.run.remote(work_ref, chunk)
                except Exception as exc:  # an item that cannot be sent (it does not pickle): try each alone
                    if len(chunk) > 1:
                        source.requeued.extendleft(reversed(chunk))
                        source.alone += len(chunk)
                        continue
                    unsendable.append((*chunk[0], RemoteItemError(type(exc).__name__, f"cannot send the item: {exc}")))
                    continue
                future = asyncio.wrap_future(ref.future())
                running[future] = _Chunk(actor, chunk)
                actor.in_flight += len(chunk)

    def lose(actor: _Actor, exc: BaseException) -> None:
        if actor.alive:
            actor.alive = False
            lost_nodes.add(actor.node_id)
            actors.pop(actor.node_id, None)
            log.warning("ray: node %s lost (%s); its unfinished items run elsewhere", actor.node_id[:8], exc)
            with contextlib.suppress(Exception):
                ray.kill(actor.handle, no_restart=True)

    def result(index: int, item: T, ok: bool, value: Any) -> BatchResult[T, R]:
        tally.count(not ok)
        if ok:
            return BatchResult(index=index, input=item, value=value)
        return BatchResult(index=index, input=item, error=value)

    try:
        while True:
            now = time.monotonic()
            if now - last_refresh >= refresh_s or not actors:
                refresh()
                last_refresh = now
            dispatch()
            while unsendable:
                index, item, error = unsendable.popleft()
                yield result(index, item, False, error)
            if not running:
                if source.empty:
                    break
                # Items are left but no node can take them: wait for one to join, then give up on them.
                if no_node_since is None:
                    no_node_since = now
                if now - no_node_since > node_wait_s:
                    for index, item in source.take(1 << 62):
                        yield result(index, item, False, NodeLostError("no live Ray node is left to run this item"))
                    break
                await asyncio.sleep(min(refresh_s, 0.5))
                last_refresh = -float("inf")
                continue
            no_node_since = None
            finished, _ = await asyncio.wait(running, timeout=refresh_s, return_when=asyncio.FIRST_COMPLETED)
            for future in finished:
                chunk = running.pop(future)
                chunk.actor.in_flight -= len(chunk.items)
                items = dict(chunk.items)
                try:
                    outcomes = future.result()
                except lost_errors as exc:  # the actor or its node died: run its items elsewhere
                    lose(chunk.actor, exc)
                    for index, item in chunk.items:
                        requeues[index] = requeues.get(index, 0) + 1
                        if requeues[index] > max_requeues:
                            lost = NodeLostError(f"the node running this item was lost {requeues[index]} times")
                            yield result(index, item, False, lost)
                        else:
                            source.requeued.appendleft((index, item))
                    continue
                except ray.exceptions.RayError as exc:  # the call itself failed (e.g. `work` cannot be unpickled)
                    error = RemoteItemError(type(exc).__name__, str(exc).strip().splitlines()[-1])
                    for index, item in chunk.items:
                        yield result(index, item, False, error)
                    continue
                for index, ok, value in outcomes:
                    requeues.pop(index, None)
                    yield result(index, items[index], ok, value)
    finally:
        for future in running:
            future.cancel()
        for actor in list(actors.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.wrap_future(actor.handle.close.remote().future()), 30)
            with contextlib.suppress(Exception):
                ray.kill(actor.handle, no_restart=True)
        tally.close()
        if connected_here:
            ray.shutdown()


def node_id() -> str:
    """The Ray node id of the calling process (handy inside ``work`` to see where an item ran); ``""`` outside Ray."""
    ray = _import_ray()
    if not ray.is_initialized():
        return ""
    return str(ray.get_runtime_context().get_node_id())
