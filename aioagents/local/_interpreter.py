"""The CodeGeeX4 interpreter API on one persistent, sandboxed kernel per server.

Differences from the original ``sandbox.py`` (all on purpose, see SANDBOX.md and the contract notes):

* A timeout **interrupts** the kernel (SIGINT → KeyboardInterrupt in the cell) and answers ``status: "timeout"``
  with the events gathered so far; the cell's remaining output is discarded so the next request starts clean. If
  the kernel does not come back within a few seconds it is restarted.
* A **dead kernel is restarted** at once. The reply of the request during which it died carries an ``error`` event
  with ``ename: "KernelDied"``; the first reply served by a new kernel carries ``"kernel_restarted": true`` (its
  state — variables, imports — is gone). ``GET /`` answers 500 ``{"error": "kernel is not alive"}`` while a
  restart is under way, as the original does for a dead kernel.
* The kernel is started lazily, by the first ``/execute``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aioagents.local._kernel import Event, Kernel, KernelDied, utc_timestamp
from aioagents.local._process import UidPool

if TYPE_CHECKING:
    from aioagents.local._engine import Engine

__all__ = ["Interpreter"]


class Interpreter:
    """The persistent kernel, its data directory, and the bookkeeping the routes need."""

    def __init__(self, engine: Engine, *, data_dir: Path | None) -> None:
        self._engine = engine
        self._given_data_dir = data_dir
        self.data_dir: Path | None = None
        self.uid: int | None = None
        self._kernel: Kernel | None = None
        self._lock = asyncio.Lock()
        self._starting: asyncio.Future[None] | None = None
        self._restarted = False
        self._ever_started = False
        self._closing = False
        self.last_activity = datetime.datetime.now(datetime.timezone.utc)

    def touch(self) -> None:
        self.last_activity = datetime.datetime.now(datetime.timezone.utc)

    @property
    def alive(self) -> bool:
        """False while a kernel that died is being replaced; True before the first kernel is needed."""
        if not self._ever_started:
            return True
        return self._kernel is not None and self._kernel.alive

    async def start(self) -> None:
        engine = self._engine
        assert engine.root is not None
        pool: UidPool | None = engine.uid_pool
        self._closing = False
        self._ever_started = False
        self._restarted = False
        self.uid = None if pool is None else await pool.acquire()
        self.data_dir = await asyncio.to_thread(_make_data_dir, self._given_data_dir, engine.root, self.uid)

    async def close(self) -> None:
        self._closing = True
        kernel, self._kernel = self._kernel, None
        if kernel is not None:
            await kernel.shutdown()
        pool = self._engine.uid_pool
        if self.uid is not None and pool is not None:
            with contextlib.suppress(Exception):
                await self._engine.zygote.kill_uid(self.uid)
            pool.release(self.uid)
            self.uid = None

    async def _ensure_kernel(self) -> None:
        if self._kernel is not None and self._kernel.alive:
            return
        old, self._kernel = self._kernel, None
        if old is not None:
            self._restarted = True
            await old.shutdown()
        engine = self._engine
        assert engine.root is not None
        assert engine.env is not None
        assert self.data_dir is not None
        kernel = Kernel(
            zygote=engine.zygote,
            python=engine.env.python,
            env=engine.base_env(home=str(self.data_dir)),
            cwd=self.data_dir,
            private_root=engine.root,
            uid=self.uid,
            limits=engine.limits,
            memory_mb=0,
            cpu_seconds=None,
        )
        try:
            await kernel.start()
        except BaseException:
            await kernel.shutdown()
            raise
        self._kernel = kernel
        self._ever_started = True
        exited = kernel.exited
        assert exited is not None
        exited.add_done_callback(lambda _f: self._on_exit(kernel))

    def _on_exit(self, kernel: Kernel) -> None:
        # Replace a kernel that died between requests at once, so that GET / recovers by itself.
        if self._closing or kernel is not self._kernel:
            return
        task = asyncio.ensure_future(self._restart_in_background())
        self._engine.track(task)

    async def _restart_in_background(self) -> None:
        async with self._lock:
            if self._closing:
                return
            with contextlib.suppress(KernelDied):
                await self._ensure_kernel()

    async def execute(
        self,
        code: str,
        *,
        timeout: float,
        on_event: Callable[[Event], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        """Run ``code``; the reply is ``{"status": "ok"|"timeout", "events": [...], "kernel_restarted"?: true}``."""
        deadline = time.monotonic() + timeout
        self.touch()
        try:
            await asyncio.wait_for(self._lock.acquire(), timeout)
        except asyncio.TimeoutError:
            return {"status": "timeout", "events": []}
        try:
            try:
                await self._ensure_kernel()
            except KernelDied as exc:
                event = _died_event(str(exc))
                if on_event is not None:
                    await on_event(event)
                return {"status": "ok", "events": [event.to_json()], "kernel_restarted": True}
            kernel = self._kernel
            assert kernel is not None
            try:
                outcome = await kernel.execute(code, deadline=deadline, on_event=on_event)
            except BaseException:
                # Cancelled, or the streaming client went away: do not leave the cell running for nobody.
                kernel.interrupt()
                raise
            finally:
                kernel.stray.clear()  # late output of old requests is never returned here
            events = [e.to_json() for e in outcome.events]
            reply: dict[str, Any] = {"status": "timeout" if outcome.status == "timeout" else "ok", "events": events}
            if outcome.status == "dead":
                code_ = kernel.exited.result() if kernel.exited is not None and kernel.exited.done() else None
                event = _died_event(
                    f"the kernel died (exit code {code_}) while running this code; it was restarted and its state "
                    "is lost"
                )
                events.append(event.to_json())
                if on_event is not None:
                    await on_event(event)
                self._restarted = False
                with contextlib.suppress(KernelDied):
                    await self._ensure_kernel()
                self._restarted = False
                reply["kernel_restarted"] = True
            elif outcome.status == "timeout" and not outcome.interrupted_cleanly:
                await kernel.shutdown()
                with contextlib.suppress(KernelDied):
                    await self._ensure_kernel()
                self._restarted = False
                reply["kernel_restarted"] = True
            elif self._restarted:
                self._restarted = False
                reply["kernel_restarted"] = True
            return reply
        finally:
            self._lock.release()
            self.touch()


def _make_data_dir(given: Path | None, root: Path, uid: int | None) -> Path:
    if given is not None:
        data = given.resolve()
        data.mkdir(parents=True, exist_ok=True)
    else:
        data = root / "data"
        data.mkdir(mode=0o755)
    if uid is not None:
        # The kernel runs as ``uid`` and must be able to write its working directory.
        os.chown(data, uid, uid)
    return data


def _died_event(message: str) -> Event:
    return Event(
        type="error",
        timestamp=utc_timestamp(),
        data={"ename": "KernelDied", "evalue": message, "traceback": []},
    )
