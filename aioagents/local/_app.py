"""The HTTP face of the local sandbox: routes, validation, auth, and the LocalSandbox / serve entry points."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import ipaddress
import json
import logging
import mimetypes
import os
import secrets
import signal
import socket
import tempfile
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from aiohttp import ClientSession, web

from aioagents import _json as fast_json
from aioagents.local._datasets import add_dataset_routes
from aioagents.local._engine import DEFAULT_MAX_FETCH_BYTES, Engine, FetchedFile, collect_fetch_leases
from aioagents.local._interpreter import Interpreter
from aioagents.local._kernel import Event
from aioagents.local._paths import PathError, open_for_write, remove_tree, split_relative, stat_confined
from aioagents.local._process import Limits
from aioagents.local._validate import ValidationFailed, parse_run_code, parse_run_jupyter
from aioagents.local._workers import Acceptor, WorkerSet, auto_workers, forward_to

__all__ = ["LocalSandbox", "serve"]

_log = logging.getLogger("aioagents.local")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)
_INTERP: web.AppKey[Interpreter] = web.AppKey("interpreter", Interpreter)
_CONFIG: web.AppKey[dict[str, Any]] = web.AppKey("config", dict)

_INTERPRETER_PATHS = ("/", "/execute", "/files/")
_NDJSON = "application/x-ndjson"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _json(body: Any, status: int = 200) -> web.Response:
    # orjson when installed (stdlib otherwise); request bodies stay on the stdlib, which accepts lone surrogates.
    return web.Response(status=status, body=fast_json.dumps(body), content_type="application/json")


def _error(request: web.Request, status: int, message: str) -> web.Response:
    # The interpreter API answers {"error": ...}; the SandboxFusion API answers FastAPI's {"detail": ...}.
    path = request.path
    if path == "/" or path == "/execute" or path.startswith("/files/"):
        return _json({"error": message}, status)
    return _json({"detail": message}, status)


def _make_middlewares(token: str | None) -> list[Any]:
    expected = None if token is None else f"Bearer {token}".encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is not None:
            given = request.headers.get("Authorization", "").encode()
            # Constant-time comparison: the token must not leak through response timing.
            if not hmac.compare_digest(given, expected):
                return _error(request, 401, "missing or wrong bearer token")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            reason = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status, exc.reason)
            if exc.status == 413:
                reason = f"request body too large: {exc.text or exc.reason}"
            return _error(request, exc.status, reason)
        except ValidationFailed as exc:
            return _json({"detail": exc.errors}, 422)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            # Never a traceback in the body; the log has it.
            _log.exception("unhandled error in %s %s", request.method, request.path)
            return _error(request, 500, "internal error in the local sandbox (see the server log)")

    return [guard]


async def _read_json(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than the parser goes ([[[[...), a bad body like any other.
        pos = getattr(exc, "pos", 0)
        raise ValidationFailed(
            [
                {
                    "type": "json_invalid",
                    "loc": ["body", pos],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": str(exc)},
                }
            ]
        ) from None


# -- SandboxFusion routes -----------------------------------------------------------------------------------
async def _ping(request: web.Request) -> web.Response:
    return _json("pong")


_B64_PIECE = 3 << 18  # raw bytes encoded per write: 1 MiB of base64, a millisecond or two of the loop


async def _answer_with_files(request: web.Request, answer: Awaitable[dict[str, Any]]) -> web.StreamResponse:
    """Send an answer that may carry fetched files; they count against the server's budget until written.

    Files are base64-encoded piece by piece as they are written: the whole answer is never one buffer, and no
    step of the event loop encodes or copies more than a piece (a 40 MB answer built and sent at once held the
    loop for about half a second).
    """
    engine = request.app[_ENGINE]
    with collect_fetch_leases(engine.fetch_budget):
        body = await answer
        files = body.pop("files", None) or {}
        if not any(isinstance(f, FetchedFile) for f in files.values()):
            body["files"] = files
            plain = _json(body)
            # The client may be gone (a batch interrupted with Ctrl-C): nothing to say to it, nor to log; aiohttp
            # takes the same error quietly from the response handed back.
            with contextlib.suppress(ConnectionError):
                await plain.prepare(request)
                await plain.write_eof()
            return plain
        head = fast_json.dumps(body)
        assert head.endswith(b"}")
        parts: list[bytes | FetchedFile] = [head[:-1] + (b',"files":{' if len(head) > 2 else b'"files":{')]
        for i, (name, fetched) in enumerate(files.items()):
            parts.append((b"," if i else b"") + fast_json.dumps(name) + b':"')
            parts.append(fetched)
            parts.append(b'"')
        parts.append(b"}}")
        size = sum(len(p) if isinstance(p, bytes) else 4 * ((len(p.raw) + 2) // 3) for p in parts)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = size
        with contextlib.suppress(ConnectionError):  # (as above: the client is gone)
            await response.prepare(request)
            for part in parts:
                if isinstance(part, bytes):
                    await response.write(part)
                    continue
                with memoryview(part.raw) as view:
                    for start in range(0, len(view), _B64_PIECE):
                        await response.write(base64.b64encode(view[start : start + _B64_PIECE]))
            await response.write_eof()
        return response


async def _run_code(request: web.Request) -> web.StreamResponse:
    engine = request.app[_ENGINE]
    req = parse_run_code(await _read_json(request), max_timeout=engine.limits.max_timeout)
    return await _answer_with_files(request, engine.run_code(req))


async def _run_jupyter(request: web.Request) -> web.StreamResponse:
    engine = request.app[_ENGINE]
    req = parse_run_jupyter(await _read_json(request), max_timeout=engine.limits.max_timeout)
    return await _answer_with_files(request, engine.run_jupyter(req))


# -- interpreter routes -------------------------------------------------------------------------------------
async def _status(request: web.Request) -> web.Response:
    interp = request.app[_INTERP]
    if not interp.alive:
        return _json({"error": "kernel is not alive"}, 500)
    stamp = interp.last_activity.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return _json({"last_activity": stamp})


async def _execute(request: web.Request) -> web.StreamResponse:
    interp = request.app[_INTERP]
    max_timeout = request.app[_ENGINE].limits.max_timeout
    try:
        body = json.loads(await request.read())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return _json({"error": f"invalid JSON body: {exc}"}, 400)
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        return _json({"error": "the body must be a JSON object with a string field 'code'"}, 400)
    timeout = body.get("timeout_secs", 60)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= max_timeout:
        return _json({"error": f"timeout_secs must be a number in (0, {max_timeout:g}]"}, 400)
    if _NDJSON not in request.headers.get("Accept", ""):
        return _json(await interp.execute(body["code"], timeout=float(timeout)))

    response = web.StreamResponse(headers={"Content-Type": _NDJSON, "Cache-Control": "no-store"})
    await response.prepare(request)

    async def send(event: Event) -> None:
        # A client that hung up raises here; the interpreter then interrupts the cell rather than let it run on.
        await response.write(json.dumps(event.to_json()).encode() + b"\n")

    reply = await interp.execute(body["code"], timeout=float(timeout), on_event=send)
    final = {"type": "status", "status": reply["status"]}
    if reply.get("kernel_restarted"):
        final["kernel_restarted"] = True
    await response.write(json.dumps(final).encode() + b"\n")
    await response.write_eof()
    return response


def _confined_path(interp: Interpreter, raw: str) -> str:
    """The request path as a path relative to the data directory; raise PathError when it is not inside.

    The CodeGeeX4 server joins what follows ``/-`` to ``/``: ``/files/upload/-/mnt/data/x`` is ``/mnt/data/x``.
    Accepted here: that prefix, the data directory's own absolute path, and a path relative to the data directory.
    A path that starts with a top-level directory of this machine (``/tmp/x``, ``/etc/passwd``) or with ``//`` is
    an absolute path outside the data directory and is refused: storing it inside while the client believes it went
    to ``/tmp/x`` would be a lie. (A relative directory of that name is reachable as ``/mnt/data/tmp/x``.)
    """
    assert interp.data_dir is not None
    data = str(interp.data_dir).strip("/") + "/"
    path = raw.lstrip("/")
    if path.startswith(data):
        return "/".join(split_relative(path[len(data) :]))  # an absolute path inside the data directory
    if path.startswith("mnt/data/"):
        return "/".join(split_relative(path[len("mnt/data/") :]))  # the CodeGeeX4 convention: files in /mnt/data
    parts = split_relative(path)
    if raw.startswith("/") or os.path.lexists("/" + parts[0]):
        raise PathError(f"/{path} is an absolute path outside the data directory")
    return "/".join(parts)


async def _upload(request: web.Request) -> web.Response:
    interp = request.app[_INTERP]
    assert interp.data_dir is not None
    try:
        rel = _confined_path(interp, request.match_info["path"])
    except PathError as exc:
        return _json({"error": f"path outside the sandbox data directory: {exc}"}, 400)
    overwrite = request.query.get("overwrite", "").lower() in ("1", "true", "yes")
    limit = request.app[_CONFIG]["max_upload_bytes"]
    owner = None if interp.uid is None else (interp.uid, interp.uid)
    parent, _, name = rel.rpartition("/")
    part = (parent + "/" if parent else "") + f".upload-{secrets.token_hex(6)}.part"
    try:
        # Off the loop: a path is one system call per directory, and a request may name a thousand of them.
        dir_fd, fd, part_name = await asyncio.to_thread(
            open_for_write, interp.data_dir, part, exclusive=True, owner=owner
        )
    except OSError as exc:
        return _json({"error": f"cannot create the file: {exc.strerror}"}, 409)
    try:
        written = 0
        with os.fdopen(fd, "wb") as out:
            # Streamed to disk chunk by chunk: an upload is never held in memory whole.
            async for chunk in request.content.iter_chunked(1 << 16):
                written += len(chunk)
                if written > limit:
                    return _json({"error": f"upload larger than the limit of {limit} bytes"}, 413)
                out.write(chunk)
        try:
            if overwrite:
                os.replace(part_name, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            else:
                os.link(part_name, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileExistsError:
            return _json({"error": "file already exists"}, 409)
        except IsADirectoryError:
            return _json({"error": "a directory exists at that path"}, 409)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(part_name, dir_fd=dir_fd)
        os.close(dir_fd)
    interp.touch()
    return _json({"path": rel, "size": written}, 201)


async def _download(request: web.Request) -> web.StreamResponse:
    interp = request.app[_INTERP]
    assert interp.data_dir is not None
    try:
        rel = _confined_path(interp, request.match_info["path"])
    except PathError as exc:
        return _json({"error": f"path outside the sandbox data directory: {exc}"}, 400)
    found = await asyncio.to_thread(stat_confined, interp.data_dir, rel)  # one system call per directory
    if found is None:
        return _json({"error": "file not found"}, 404)
    fd, st = found
    name = rel.rpartition("/")[2]
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = web.StreamResponse(
        headers={
            "Content-Type": ctype,
            "Content-Disposition": f"attachment; filename*=UTF-8''{urllib.parse.quote(name, safe='')}",
        }
    )
    response.content_length = st.st_size
    interp.touch()
    with os.fdopen(fd, "rb") as f:
        await response.prepare(request)
        remaining = st.st_size
        while remaining > 0:
            chunk = f.read(min(1 << 16, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            await response.write(chunk)
    await response.write_eof()
    return response


def _build_app(
    engine: Engine,
    interp: Interpreter,
    *,
    token: str | None,
    max_request_bytes: int,
    interpreter_via: Handler | None = None,
) -> web.Application:
    app = web.Application(middlewares=_make_middlewares(token), client_max_size=max_request_bytes)
    app[_ENGINE] = engine
    app[_INTERP] = interp
    app[_CONFIG] = {"max_upload_bytes": 1 << 30}
    app.router.add_get("/v1/ping", _ping)
    app.router.add_post("/run_code", _run_code)
    app.router.add_post("/run_jupyter", _run_jupyter)
    # The interpreter's routes: here, or (in a worker process other than worker 0) forwarded to worker 0's kernel.
    app.router.add_get("/", interpreter_via or _status)
    app.router.add_post("/execute", interpreter_via or _execute)
    app.router.add_post("/files/upload/-/{path:.+}", interpreter_via or _upload)
    app.router.add_get("/files/download/-/{path:.+}", interpreter_via or _download)
    add_dataset_routes(app, engine)
    return app


class LocalSandbox:
    """The embedded sandbox server: SandboxFusion and CodeGeeX4-interpreter APIs on one loopback port.

    ::

        async with LocalSandbox() as sb:          # an ephemeral port on 127.0.0.1
            print(sb.url)                         # http://127.0.0.1:<port>

        with LocalSandbox().in_thread() as sb:    # for blocking code (the official sandbox-fusion SDK)
            sandbox_fusion.run_code(..., endpoint=sb.url)

    Binding to a non-loopback ``host`` requires a ``token``; every request must then carry
    ``Authorization: Bearer <token>``. ``data_dir`` is the interpreter's file area (a temporary directory
    removed on exit when not given). ``python_fast_path=False`` runs Python as a plain subprocess per run.
    ``workers`` is how many server processes share the port: ``1`` (the default) serves from this process alone;
    ``N`` or ``"auto"`` (one per CPU this process may use — what ``aioagents serve`` does) adds N-1 worker
    processes, each with its own event loop and process factory, so the sandbox grows with the machine; the
    interpreter routes stay on one kernel in this process (see ``aioagents.local._workers``).
    ``work_dir`` is where run directories are made: by default ``/dev/shm`` when it is a roomy, executable tmpfs
    (creating and removing a directory there costs a tenth of what it does on a journalled disk) and ``$TMPDIR``
    is not set, else the system's temporary directory (under full isolation, ``/run``). Under full isolation a run of
    one step with no request ``files`` and no ``fetch_files`` makes its directory in its own private ``/tmp``
    instead: nothing of it is on the host.

    ``max_fetch_bytes`` caps the files one answer carries (``fetch_files``, before base64, each requested name
    counted: one file asked for under two spellings is sent twice); a request over it gets ``SandboxError`` with a
    message that says so, and its run's results. The file asked for under several spellings is read only once, and
    the server never holds more than four answers' worth of fetched bytes at once (more waits its turn).
    ``isolation``: ``"auto"`` (the strongest this process can have), ``"full"`` (namespaces, read-only host, a
    cgroup and no network per run; needs root on Linux), ``"userns"`` (the namespaces without root, through user
    namespaces; no cgroup), ``"uid"`` (a uid per run only), or ``"none"``; the level
    in force is :attr:`isolation` once started (see the module docs). ``network=True`` gives runs the host's
    network (loopback and the sandbox's own API included): only for trusted code that needs it.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        python_fast_path: bool = True,
        limits: Limits | None = None,
        max_concurrency: int | None = None,
        max_kernels: int = 4,
        max_request_bytes: int = 16 << 20,
        drop_privileges: bool | None = None,
        uid_base: int = 200_000,
        work_dir: str | None = None,
        workers: int | Literal["auto"] = 1,
        max_fetch_bytes: int = DEFAULT_MAX_FETCH_BYTES,
        isolation: str = "auto",
        network: bool = False,
    ) -> None:
        if not _is_loopback(host) and not token:
            raise ValueError(
                f"refusing to serve on the non-loopback address {host!r} without a token: anyone who can reach "
                "it could run code on this machine; pass token=... (clients then send 'Authorization: Bearer')"
            )
        self.host = host
        self._port = port
        self._token = token
        self._max_request_bytes = max_request_bytes
        self.workers = auto_workers() if workers == "auto" else int(workers)
        if self.workers < 1:
            raise ValueError("workers must be at least 1 (or 'auto')")
        cpus = os.cpu_count() or 2
        per_worker = max_concurrency or max(4, -(-2 * cpus // self.workers))
        # What a worker process is made with (everything but the port, the data directory and the worker count).
        self._worker_options: dict[str, Any] = {
            "host": host, "token": token, "python_fast_path": python_fast_path, "limits": limits,
            "max_concurrency": per_worker, "max_kernels": max_kernels, "max_request_bytes": max_request_bytes,
            "drop_privileges": drop_privileges, "uid_base": uid_base, "work_dir": work_dir,
            "max_fetch_bytes": max_fetch_bytes, "isolation": isolation, "network": network,
        }  # fmt: skip
        self._sock: socket.socket | None = None
        self._interpreter_upstream: str | None = None
        self._forwarder: ClientSession | None = None
        self._worker_set: WorkerSet | None = None
        self._acceptor: Acceptor | None = None
        self._private_dir: str | None = None
        self.engine = Engine(
            limits=limits or Limits(),
            python_fast_path=python_fast_path,
            max_concurrency=per_worker,
            max_kernels=max_kernels,
            drop_privileges=drop_privileges,
            uid_base=uid_base,
            work_dir=work_dir,
            max_fetch_bytes=max_fetch_bytes,
            isolation=isolation,
            network=network,
        )
        self.interpreter = Interpreter(self.engine, data_dir=None if data_dir is None else Path(data_dir))
        self._runner: web.AppRunner | None = None
        self._bound_port = 0

    def _adopt_socket(self, sock: socket.socket, *, interpreter_upstream: str) -> None:
        """Serve on ``sock`` (a listening socket shared with worker 0) and forward the interpreter routes to it."""
        self._sock = sock
        self._interpreter_upstream = interpreter_upstream

    @property
    def worker_pids(self) -> list[int]:
        """The pids of the worker processes besides this one (empty with ``workers=1``)."""
        return [] if self._worker_set is None else self._worker_set.pids

    def __repr__(self) -> str:
        # Never the token.
        state = self.url if self._bound_port else "stopped"
        return f"<LocalSandbox {state}>"

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8080``."""
        if not self._bound_port:
            raise RuntimeError("the local sandbox is not running")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._bound_port}"

    @property
    def isolation(self) -> str:
        """The isolation level in force: ``full``, ``userns``, ``uid`` or ``none``; see the module docs for what
        each contains. Known once started."""
        return self.engine.isolation

    @property
    def languages(self) -> dict[str, str | None]:
        """Every contract language: None when this machine can run it, else why not (the ``Failed`` message)."""
        from aioagents.local._toolchains import Unavailable

        if not self.engine.languages:
            raise RuntimeError("the local sandbox is not running")
        return {
            name: (lang.reason if isinstance(lang, Unavailable) else None)
            for name, lang in self.engine.languages.items()
        }

    @property
    def data_dir(self) -> Path:
        """The interpreter's data directory (uploads, downloads, the kernel's working directory)."""
        if self.interpreter.data_dir is None:
            raise RuntimeError("the local sandbox is not running")
        return self.interpreter.data_dir

    async def start(self) -> None:
        """Start the process factory and listen. Idempotent only in the sense that a second call raises."""
        if self._runner is not None:
            raise RuntimeError("the local sandbox is already running")
        await self.engine.start()
        try:
            via: Handler | None = None
            if self._interpreter_upstream is not None:
                via, self._forwarder = forward_to(self._interpreter_upstream)
            else:
                await self.interpreter.start()
            app = _build_app(
                self.engine,
                self.interpreter,
                token=self._token,
                max_request_bytes=self._max_request_bytes,
                interpreter_via=via,
            )
            # In-flight requests get a few seconds on close, not aiohttp's default minute: their processes die anyway.
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
            await runner.setup()
            self._runner = runner
            if self.workers > 1 and self._sock is None:
                # One listening socket for every worker process: whichever waits in accept takes the connection.
                family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
                self._sock = socket.create_server((self.host, self._port), family=family, backlog=1024)
            if self._sock is not None:
                assert runner.server is not None
                web_server = runner.server
                self._acceptor = Acceptor(self._sock, web_server, lambda: len(web_server.connections))
                self._acceptor.start()
                self._bound_port = int(self._sock.getsockname()[1])
            else:
                site = web.TCPSite(runner, self.host, self._port, reuse_address=True)
                await site.start()
                server = site._server
                sockets = getattr(server, "sockets", None) or []
                self._bound_port = int(sockets[0].getsockname()[1])
            if self.workers > 1 and self._interpreter_upstream is None:
                await self._start_workers(runner)
            reason = f" ({self.engine.isolation_reason})" if self.engine.isolation_reason else ""
            if self._interpreter_upstream is not None:
                pass  # a worker process: worker 0 has said it
            elif self.engine.isolation == "userns":
                _log.warning(
                    "the local sandbox runs with isolation level 'userns', below 'full'%s: runs have namespaces "
                    "of their own (no network, read-only host) but no cgroup, so memory and process limits are "
                    "per process, and they run as this server's user outside them (see aioagents.local)",
                    reason,
                )
            elif self.engine.isolation != "full":
                _log.warning(
                    "the local sandbox runs with isolation level %r, below 'full'%s: runs are not in namespaces "
                    "or cgroups of their own (see aioagents.local's documentation)",
                    self.engine.isolation,
                    reason,
                )
            worker0 = self._interpreter_upstream is None
            if worker0 and not self.engine.drop_privileges and self.engine.isolation != "userns":
                _log.warning(
                    "the local sandbox runs code with this server's own user id: process-count limits, write "
                    "protection outside the run directory and processes that leave their session are not "
                    "contained (run the server as root, e.g. in a container, for untrusted code)"
                )
        except BaseException:
            await self.close()
            raise

    async def _start_workers(self, runner: web.AppRunner) -> None:
        assert self._sock is not None
        # Worker 0's interpreter, for the other workers: a unix socket in a directory only this user can enter.
        self._private_dir = tempfile.mkdtemp(prefix="aioagents-workers-")
        upstream = os.path.join(self._private_dir, "interpreter.sock")
        await web.UnixSite(runner, upstream).start()
        self._worker_set = WorkerSet(self.workers - 1, self._sock, upstream, self._worker_options)
        await self._worker_set.start()

    async def close(self) -> None:
        """Stop listening, stop the worker processes, kill every sandboxed process, remove every temporary file."""
        worker_set, self._worker_set = self._worker_set, None
        if worker_set is not None:
            await worker_set.close()
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            await acceptor.stop()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        forwarder, self._forwarder = self._forwarder, None
        if forwarder is not None:
            await forwarder.close()
        if self._private_dir is not None:
            remove_tree(Path(self._private_dir))  # a socket file in an otherwise empty directory
            self._private_dir = None
        if self._sock is not None and self._interpreter_upstream is None:
            self._sock.close()
            self._sock = None
        await self.interpreter.close()
        await self.engine.close()
        self._bound_port = 0

    async def __aenter__(self) -> LocalSandbox:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[LocalSandbox]:
        """Run the server on its own event loop in a background thread, for synchronous code."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []
        stop: asyncio.Event | None = None

        async def main() -> None:
            nonlocal stop
            stop = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:
                failure.append(exc)
                started.set()
                return
            started.set()
            try:
                await stop.wait()
            finally:
                await self.close()

        def run() -> None:
            try:
                loop.run_until_complete(main())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

        thread = threading.Thread(target=run, name="aioagents-local-sandbox", daemon=True)
        thread.start()
        started.wait()
        if failure:
            thread.join()
            raise failure[0]
        try:
            yield self
        finally:
            assert stop is not None
            loop.call_soon_threadsafe(stop.set)
            thread.join()


async def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    on_ready: Callable[[LocalSandbox], None] | None = None,
    **options: Any,
) -> None:
    """Run a :class:`LocalSandbox` until SIGINT or SIGTERM, or until cancelled (what ``aioagents serve`` does).

    Either signal closes the server as :meth:`LocalSandbox.close` does (every run's processes killed, every file
    removed) and returns normally; a second signal while it closes changes nothing. Signals are handled only when
    this runs in the main thread's event loop. ``on_ready`` is called once the server listens (e.g. to print its
    URL); ``options`` go to LocalSandbox.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread, or no signals here
            continue
        handled.append(sig)
    try:
        sandbox = LocalSandbox(host=host, port=port, token=token, **options)
        async with sandbox:
            if on_ready is not None:
                on_ready(sandbox)
            await stop.wait()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
