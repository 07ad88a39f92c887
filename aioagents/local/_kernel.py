"""A sandboxed IPython kernel: forked by the zygote like every run, driven with jupyter_client.

The kernel process gets the same sandbox as a run (own session, limits, unprivileged uid when the server is root;
with full isolation also its own PID, mount, IPC, UTS and network namespaces and cgroup, so it has no network
at all). Its connection file and ZeroMQ sockets (``ipc`` transport: unix sockets, which the server reaches through
the file system while runs cannot) live in a private 0700 directory owned by the kernel's uid, the only places it
may write besides its working directory; the directory is removed with the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import queue
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from aioagents.local._paths import remove_tree
from aioagents.local._process import Limits, ZygoteClient, _Capture

if TYPE_CHECKING:
    from jupyter_client.asynchronous.client import AsyncKernelClient

__all__ = ["Event", "ExecOutcome", "Kernel", "KernelDied", "map_message", "utc_timestamp"]

_log = logging.getLogger("aioagents.local")


class KernelDied(RuntimeError):
    """The kernel process exited (or never became ready)."""


@attrs.frozen(kw_only=True)
class Event:
    """One execution event in the interpreter wire shape: ``type`` is stream, display_data or error."""

    type: str
    timestamp: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "timestamp": self.timestamp, "data": self.data}


@attrs.frozen(kw_only=True)
class ExecOutcome:
    """How one execute request ended: ``ok`` (idle reached), ``timeout`` (interrupted) or ``dead``."""

    status: Literal["ok", "timeout", "dead"]
    events: tuple[Event, ...]
    interrupted_cleanly: bool = True
    msg_id: str = ""


def utc_timestamp() -> str:
    """UTC wall clock as the real interpreter server writes it: ``%Y-%m-%dT%H:%M:%S.%fZ``."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def map_message(msg: dict[str, Any]) -> Event | None:
    """Map one IOPub message to an event, as the original server does; other message types are dropped."""
    kind = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
    content = msg.get("content", {})
    if kind == "stream":
        return Event(
            type="stream",
            timestamp=utc_timestamp(),
            data={"stream": content.get("name", "stdout"), "text": content.get("text", "")},
        )
    if kind in ("display_data", "execute_result"):
        return Event(type="display_data", timestamp=utc_timestamp(), data={"variants": dict(content.get("data", {}))})
    if kind == "error":
        return Event(
            type="error",
            timestamp=utc_timestamp(),
            data={
                "ename": content.get("ename", ""),
                "evalue": content.get("evalue", ""),
                "traceback": list(content.get("traceback", [])),
            },
        )
    return None


class Kernel:
    """One kernel process and its client. Not safe for concurrent ``execute`` calls: callers serialise."""

    def __init__(
        self,
        *,
        zygote: ZygoteClient,
        python: str,
        env: dict[str, str],
        cwd: Path,
        private_root: Path,
        uid: int | None,
        limits: Limits,
        memory_mb: int,
        cpu_seconds: float | None,
    ) -> None:
        self._zygote = zygote
        self._python = python
        self._env = env
        self._cwd = cwd
        self._private_root = private_root
        self._uid = uid
        self._limits = limits
        self._memory_mb = memory_mb
        self._cpu_seconds = cpu_seconds
        self._dir: Path | None = None
        self._client: AsyncKernelClient | None = None
        self._capture: _Capture | None = None
        self.pid = 0
        self.exited: asyncio.Future[int] | None = None
        # Output of an earlier request that arrived after its idle status (IOPub gives no ordering promise
        # across its sender threads): kept by request id instead of being dropped.
        self.stray: dict[str, list[Event]] = {}

    @property
    def alive(self) -> bool:
        return self.pid != 0 and self.exited is not None and not self.exited.done()

    def output(self) -> str:
        """What the kernel process itself wrote to its stdout/stderr (start-up problems, crashes)."""
        return self._capture.text() if self._capture is not None else ""

    async def start(self, *, timeout: float = 60.0) -> None:
        """Start the process and wait until it answers ``kernel_info``; raise KernelDied if it cannot."""
        try:
            from jupyter_client.asynchronous.client import AsyncKernelClient
            from jupyter_client.connect import write_connection_file
        except ImportError:
            raise KernelDied(
                "run_jupyter and the interpreter API need jupyter_client and ipykernel: "
                "pip install 'aioagents[jupyter]'"
            ) from None

        private = self._private_root / f"kernel-{secrets.token_hex(6)}"
        private.mkdir(mode=0o700)
        self._dir = private
        env = dict(self._env)
        env.update(
            IPYTHONDIR=str(private / "ipython"),
            JUPYTER_RUNTIME_DIR=str(private / "runtime"),
            JUPYTER_PLATFORM_DIRS="1",
        )
        env.setdefault("HOME", str(private))
        conn_file = private / "connection.json"
        write_connection_file(
            fname=str(conn_file),
            ip=str(private / "zmq"),
            transport="ipc",
            key=secrets.token_hex(32).encode(),
        )
        if self._uid is not None:
            for path in (private, conn_file):
                os.chown(path, self._uid, self._uid)
        argv = [
            self._python,
            "-m",
            "ipykernel_launcher",
            "-f",
            str(conn_file),
            "--HistoryManager.enabled=False",
        ]
        loop = asyncio.get_running_loop()
        out_r, out_w = os.pipe()
        self._capture = _Capture(loop, out_r, 64 << 10)
        try:
            self.pid, self.exited = await self._zygote.spawn_detached(
                argv=argv,
                cwd=self._cwd,
                env=env,
                limits=self._limits,
                memory_mb=self._memory_mb,
                uid=self._uid,
                cpu_seconds=self._cpu_seconds,
                output_fd=out_w,
                rw=(self._cwd, private),  # under full isolation the rest of the file system is read-only
            )
        finally:
            os.close(out_w)
        client = AsyncKernelClient()
        client.load_connection_file(str(conn_file))
        # No heartbeat channel: its 1 s liveness guess misfires on a loaded machine; the zygote tells us when the
        # process really exits.
        client.start_channels(hb=False)
        self._client = client
        ready: asyncio.Future[None] = asyncio.ensure_future(self._wait_ready(client, timeout))
        waiting: set[asyncio.Future[Any]] = {ready, self.exited}
        done, _ = await asyncio.wait(waiting, timeout=timeout + 1, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            with contextlib.suppress(BaseException):
                await ready
            raise KernelDied(f"the kernel did not start: {self.output().strip()[-2000:] or 'no output'}")
        exc = ready.exception()
        if exc is not None:
            raise KernelDied(f"the kernel did not start: {exc}")
        # Drop the kernel_info traffic so that it is not mistaken for the first cell's output.
        await self._drain()

    @staticmethod
    async def _wait_ready(client: AsyncKernelClient, timeout: float) -> None:
        """Until a ``kernel_info`` request is answered on shell *and* its status seen on IOPub.

        A ZeroMQ SUB socket joins late: whatever the kernel publishes before our subscription is live is lost. A
        shell reply alone does not prove it is live, and an execution whose ``idle`` was lost would hang.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg_id = client.kernel_info()
            try:
                reply = await client.shell_channel.get_msg(timeout=1)
            except queue.Empty:
                continue
            if reply.get("msg_type") != "kernel_info_reply":
                continue
            seen_until = time.monotonic() + 0.5
            while (remaining := seen_until - time.monotonic()) > 0:
                try:
                    msg = await client.get_iopub_msg(timeout=remaining)
                except queue.Empty:
                    break
                if msg.get("parent_header", {}).get("msg_id") == msg_id:
                    return
        raise TimeoutError(f"no kernel_info reply within {timeout:g} s")

    async def _drain(self) -> None:
        client = self._client
        if client is None:
            return
        # Shell replies are not used; IOPub leftovers belong to earlier requests and are filed, not lost.
        while await client.shell_channel.msg_ready():
            await client.shell_channel.get_msg(timeout=0)
        while await client.iopub_channel.msg_ready():
            msg = await client.iopub_channel.get_msg(timeout=0)
            self._keep_stray(msg.get("parent_header", {}).get("msg_id"), msg)

    def interrupt(self) -> None:
        """SIGINT to the kernel: ipykernel turns it into KeyboardInterrupt in the running cell."""
        if self.alive:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGINT)

    async def execute(
        self,
        code: str,
        *,
        deadline: float,
        on_event: Callable[[Event], Awaitable[None]] | None = None,
        interrupt_grace: float = 3.0,
    ) -> ExecOutcome:
        """Run one cell until the kernel is idle, ``deadline`` (monotonic) passes, or the kernel dies.

        On the deadline the kernel is interrupted; the cell's remaining output is collected until idle (up to
        ``interrupt_grace`` seconds) but not returned, so the next cell starts clean. ``interrupted_cleanly`` is
        False when it did not come back, and the caller should restart it.
        """
        client = self._client
        if client is None or not self.alive:
            return ExecOutcome(status="dead", events=())
        await self._drain()
        msg_id = client.execute(code, store_history=True, allow_stdin=False, stop_on_error=False)
        events: list[Event] = []
        status = await self._collect(msg_id, deadline, events, on_event)
        if status != "timeout":
            return ExecOutcome(status=status, events=tuple(events), msg_id=msg_id)
        self.interrupt()
        after = await self._collect(msg_id, time.monotonic() + interrupt_grace, None, None)
        self.stray.pop(msg_id, None)  # what an interrupted cell printed after its deadline is not returned
        return ExecOutcome(status="timeout", events=tuple(events), interrupted_cleanly=after == "ok", msg_id=msg_id)

    async def _collect(
        self,
        msg_id: str,
        deadline: float,
        events: list[Event] | None,
        on_event: Callable[[Event], Awaitable[None]] | None,
    ) -> Literal["ok", "timeout", "dead"]:
        client = self._client
        assert client is not None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            if not self.alive:
                # Output may still be queued behind a crash; take what is there, then report the death.
                await self._take_ready(msg_id, events, on_event)
                return "dead"
            try:
                msg = await client.get_iopub_msg(timeout=min(remaining, 0.25))
            except queue.Empty:
                continue
            parent = msg.get("parent_header", {}).get("msg_id")
            if parent != msg_id:
                self._keep_stray(parent, msg)
                continue
            if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                return "ok"
            event = map_message(msg)
            if event is not None:
                if events is not None:
                    events.append(event)
                if on_event is not None:
                    await on_event(event)

    async def _take_ready(
        self, msg_id: str, events: list[Event] | None, on_event: Callable[[Event], Awaitable[None]] | None
    ) -> None:
        client = self._client
        assert client is not None
        while await client.iopub_channel.msg_ready():
            msg = await client.get_iopub_msg(timeout=0)
            parent = msg.get("parent_header", {}).get("msg_id")
            if parent != msg_id:
                self._keep_stray(parent, msg)
                continue
            event = map_message(msg)
            if event is not None:
                if events is not None:
                    events.append(event)
                if on_event is not None:
                    await on_event(event)

    def _keep_stray(self, parent: str | None, msg: dict[str, Any]) -> None:
        event = map_message(msg)
        if parent and event is not None:
            self.stray.setdefault(parent, []).append(event)

    async def settle(self, seconds: float = 0.05) -> None:
        """Give late IOPub output a moment to arrive, then file it under :attr:`stray`."""
        client = self._client
        if client is None:
            return
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                msg = await client.get_iopub_msg(timeout=remaining)
            except queue.Empty:
                return
            self._keep_stray(msg.get("parent_header", {}).get("msg_id"), msg)

    async def shutdown(self) -> None:
        """Kill the kernel and everything it started, close the client, remove the private directory."""
        if self.pid:
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)
        if self._uid is not None and self._zygote.alive:
            with contextlib.suppress(OSError):
                await self._zygote.kill_uid(self._uid)
        if self.exited is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), 5)
        client, self._client = self._client, None
        if client is not None:
            client.stop_channels()
        if self._capture is not None:
            self._capture.close()
        if self._dir is not None:
            await asyncio.to_thread(remove_tree, self._dir, log=_log)
            self._dir = None
