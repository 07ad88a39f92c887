"""Several server processes on one port, so the embedded sandbox uses every core.

One event loop and one process factory each cost a fixed amount of CPU per run, so one server process caps the
sandbox whatever the machine. ``LocalSandbox(workers=N)`` therefore serves from N processes that share one listening
socket: this process (worker 0) and N-1 worker processes started from it, each with its own event loop, its own
process factory and its own runs. The kernel hands each new connection to a process that is waiting in ``accept``,
so an idle worker takes the next connection; a connection then stays with its worker.

State that must be one for the whole server stays in worker 0: the interpreter routes (one persistent kernel and its
data directory) are forwarded by the other workers to worker 0 over a unix socket in a directory only this user can
enter. Uids for runs are claimed with ``flock`` (see ``UidPool``), so workers never hand out the same one.

A worker learns its settings from a pickle on its stdin (the token never appears on a command line), reports
``ready`` on its stdout once it accepts connections, and stops — closing its sandbox, so its runs and files go with
it — when the pipe from worker 0 closes: when worker 0 closes, or dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientSession, ClientTimeout, UnixConnector, web

__all__ = ["Acceptor", "WorkerSet", "auto_workers", "forward_to"]

_HOP_BY_HOP = frozenset(
    h.lower()
    for h in ("Connection", "Keep-Alive", "Transfer-Encoding", "TE", "Trailer", "Upgrade", "Host", "Content-Length")
)
_READY = b"ready\n"

_log = logging.getLogger("aioagents.local")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auto_workers() -> int:
    """How many CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def forward_to(upstream: str) -> tuple[Handler, ClientSession]:
    """A handler that forwards a request, body and answer streamed both ways, to the server on unix socket ``upstream``.

    Returns the handler and the client session it uses (the caller closes it).
    """
    session = ClientSession(
        connector=UnixConnector(path=upstream, limit=0), timeout=ClientTimeout(total=None, sock_connect=10)
    )

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = request.content if request.body_exists else None
        async with session.request(
            request.method, f"http://worker0{request.rel_url}", headers=headers, data=body, allow_redirects=False
        ) as upstream_response:
            response = web.StreamResponse(
                status=upstream_response.status,
                headers={k: v for k, v in upstream_response.headers.items() if k.lower() not in _HOP_BY_HOP},
            )
            if upstream_response.content_length is not None:
                response.content_length = upstream_response.content_length
            await response.prepare(request)
            async for chunk in upstream_response.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    return forward, session


class Acceptor:
    """Accepts connections from a listening socket shared with other processes, least-loaded worker first.

    asyncio's own server accepts up to its backlog in one go, so with a shared socket the first process to wake would
    take a whole burst of new connections (and their requests, for as long as they are kept alive). Here a worker
    takes one connection per wake-up, and one that already serves connections waits a little before it tries
    (``_DEFER_PER_CONNECTION`` per open connection, at most ``_DEFER_MAX``): every worker is woken by a new
    connection, so the one with the fewest takes it, and keep-alive clients end up spread evenly.
    """

    _DEFER_PER_CONNECTION = 0.0002
    _DEFER_MAX = 0.002

    def __init__(self, sock: socket.socket, factory: Callable[[], asyncio.Protocol], load: Callable[[], int]) -> None:
        self._sock = sock
        self._factory = factory
        self._load = load
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waiting: asyncio.TimerHandle | None = None
        self._stopped = False

    def start(self) -> None:
        """Start accepting (the socket already listens)."""
        self._sock.setblocking(False)
        self._loop.add_reader(self._sock.fileno(), self._readable)

    def _readable(self) -> None:
        open_connections = self._load()
        if open_connections == 0:
            self._accept()
            return
        # Let a less loaded worker take it: stop watching for a moment, then try (it may be gone by then).
        self._loop.remove_reader(self._sock.fileno())
        delay = min(self._DEFER_MAX, open_connections * self._DEFER_PER_CONNECTION)
        self._waiting = self._loop.call_later(delay, self._resume)

    def _resume(self) -> None:
        self._waiting = None
        if self._stopped:
            return
        self._accept()
        self._loop.add_reader(self._sock.fileno(), self._readable)

    def _accept(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return  # another worker took it
        except OSError as exc:  # e.g. EMFILE: keep serving the connections we have
            _log.warning("accept failed: %s", exc)
            return
        conn.setblocking(False)
        task = self._loop.create_task(self._loop.connect_accepted_socket(self._factory, conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop accepting; connections already made are the server's to close."""
        self._stopped = True
        if self._waiting is not None:
            self._waiting.cancel()
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._sock.fileno())
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task


class WorkerSet:
    """The N-1 worker processes of a multi-process :class:`~aioagents.local.LocalSandbox` (worker 0 owns them)."""

    def __init__(self, count: int, sock: socket.socket, upstream: str, options: dict[str, Any]) -> None:
        self._count = count
        self._sock = sock
        self._upstream = upstream
        self._options = options
        self._procs: list[subprocess.Popen[bytes]] = []
        self._life_w: int | None = None

    @property
    def pids(self) -> list[int]:
        """The worker processes' pids (worker 0, this process, not included)."""
        return [p.pid for p in self._procs]

    async def start(self, *, timeout: float = 60.0) -> None:
        """Start every worker and wait until each accepts connections; on any failure stop them all and raise."""
        life_r, self._life_w = os.pipe()
        os.set_inheritable(life_r, True)
        try:
            from aioagents.local._datasets import registrations

            config = pickle.dumps(
                {
                    "options": self._options,
                    "fd": self._sock.fileno(),
                    "life": life_r,
                    "upstream": self._upstream,
                    "datasets": registrations(),  # benchmarks registered in this process are served by every worker
                }
            )
            for _ in range(self._count):
                self._procs.append(await asyncio.to_thread(self._spawn, config, life_r))
            await asyncio.wait_for(asyncio.gather(*(asyncio.to_thread(self._ready, p) for p in self._procs)), timeout)
        except BaseException:
            await self.close()
            raise
        finally:
            os.close(life_r)

    def _spawn(self, config: bytes, life_r: int) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from aioagents.local._workers import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(self._sock.fileno(), life_r),
            start_new_session=True,  # Ctrl-C reaches worker 0 only, which stops the others in order
        )
        assert proc.stdin is not None
        proc.stdin.write(config)
        proc.stdin.close()
        return proc

    @staticmethod
    def _ready(proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        proc.stdout.close()
        if line != _READY:
            proc.wait()
            raise RuntimeError(f"a sandbox worker process failed to start (exit status {proc.returncode})")

    async def close(self, *, timeout: float = 15.0) -> None:
        """Ask every worker to stop (close the pipe), wait for each, kill one that does not stop in ``timeout``."""
        if self._life_w is not None:
            os.close(self._life_w)
            self._life_w = None
        for proc in self._procs:
            try:
                await asyncio.to_thread(proc.wait, timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
            if proc.stdout is not None and not proc.stdout.closed:
                proc.stdout.close()
        self._procs.clear()


async def _worker_main(config: dict[str, Any]) -> None:
    from aioagents.local._app import LocalSandbox
    from aioagents.local._datasets import register_dataset

    for name, kind, source in config["datasets"]:
        register_dataset(name, source, kind=kind)
    sock = socket.socket(fileno=config["fd"])
    sandbox = LocalSandbox(**config["options"])
    sandbox._adopt_socket(sock, interpreter_upstream=config["upstream"])
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    life = config["life"]
    os.set_blocking(life, False)
    loop.add_reader(life, stop.set)  # readable = EOF: worker 0 closed its end, or died
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await sandbox.start()
        os.write(sys.stdout.fileno(), _READY)
        os.close(sys.stdout.fileno())
        await stop.wait()
    finally:
        loop.remove_reader(life)
        os.close(life)
        await sandbox.close()


def main() -> None:
    """Entry point of a worker process (started by :class:`WorkerSet`)."""
    config = pickle.loads(sys.stdin.buffer.read())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_worker_main(config))

