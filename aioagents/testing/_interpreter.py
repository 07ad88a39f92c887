"""A fake of the CodeGeeX4 interpreter sandbox (``THUDM/CodeGeeX4/interpreter_demo/sandbox.py``, tornado).

It reproduces what the original server does on the wire, not what its SANDBOX.md promises:

* every JSON reply is labelled ``Content-Type: text/html; charset=UTF-8`` (tornado's default);
* ``GET /`` → ``{"last_activity": "...Z"}``, or 500 ``{"error": "kernel is not alive"}`` once the kernel died;
* ``POST /execute`` needs ``timeout_secs`` as an int > 0 (pydantic); a bad value or bad JSON → 500
  ``{"error": "<pydantic message>"}``. Stream events carry ``data.stream`` (not ``name``); ``execute_result`` comes
  out as ``display_data``; there are no ``file`` events. On timeout the events gathered so far are returned with
  ``status: "timeout"``, the cell keeps running and the next request waits behind it;
* a dead kernel (``os._exit`` in the code, or :meth:`FakeInterpreterServer.kill_kernel`) is never recovered:
  every later ``/execute`` answers ``{"status": "timeout", "events": []}`` after ``timeout_secs``;
* ``POST /files/upload/-/<path>`` always answers 201 and overwrites (no 409), creating parent directories;
* ``GET /files/download/-/<path>`` streams ``application/octet-stream`` with
  ``Content-Disposition: attachment; filename*=UTF-8''<quote_plus(basename)>``; 404 ``{"error": "file not found"}``.

The kernel is real Python run with ``exec`` in one background thread, so state persists and output order is
genuine; ``print``/``sys.stdout``/``sys.stderr``, ``display()``, the value of a trailing expression (with its
``_repr_*_`` variants) and matplotlib figures (PNG, as IPython's inline backend sends them) become events.
**It runs whatever code it is sent, in the test process: use it only for tests.** ``<path>`` is an absolute
container path; the fake maps it under ``root`` (a temporary directory by default), and ``open()`` and
``os.replace/rename/remove/unlink/listdir`` inside the kernel map paths the same way (relative ones resolve
against ``data_dir``, the container's WORKDIR). Other file APIs (``pathlib``, ``savefig(path)``) see the host.

``conflict_on_existing=True`` turns uploads into what SANDBOX.md documents (409 ``{"error": "file already
exists"}``) instead of what the original server does.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import builtins
import contextlib
import io
import json
import linecache
import posixpath
import queue
import shutil
import sys
import tempfile
import threading
import traceback
import types
import urllib.parse
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import web

from aioagents.testing._server import FakeServer

__all__ = ["FakeInterpreterServer"]

_HTML = "text/html"  # tornado's default Content-Type, charset added by aiohttp below
_PYDANTIC_URL = "https://errors.pydantic.dev/2.7/v/"
_RED, _GREEN, _CYAN, _RESET = "\x1b[31m", "\x1b[32m", "\x1b[36m", "\x1b[39m"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(data: Any, status: int = 200) -> web.Response:
    # pydantic's model_dump_json: compact, UTF-8 kept as is; tornado labels it text/html.
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return web.Response(status=status, body=body, content_type=_HTML, charset="UTF-8")


def _tornado_page(status: int, reason: str) -> web.Response:
    html = f"<html><title>{status}: {reason}</title><body>{status}: {reason}</body></html>"
    return web.Response(status=status, text=html, content_type=_HTML, charset="UTF-8")


# -- request validation: pydantic's str(ValidationError) is what the 500 body carries -------------------------
def _pydantic_error(field: str | None, msg: str, kind: str, value: Any) -> str:
    where = f"{field}\n" if field else ""
    return (
        f"1 validation error for ExecuteRequest\n{where}  {msg} [type={kind}, input_value={value!r}, "
        f"input_type={type(value).__name__}]\n    For further information visit {_PYDANTIC_URL}{kind}"
    )


def _parse_execute(raw: bytes) -> tuple[str, int]:
    """``ExecuteRequest.model_validate_json`` as the original server runs it; raises ValueError(message)."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(_pydantic_error(None, f"Invalid JSON: {exc}", "json_invalid", raw)) from None
    if not isinstance(body, dict):
        raise ValueError(_pydantic_error(None, "Input should be an object", "model_type", body))
    if "code" not in body:
        raise ValueError(_pydantic_error("code", "Field required", "missing", body))
    code = body["code"]
    if not isinstance(code, str):
        raise ValueError(_pydantic_error("code", "Input should be a valid string", "string_type", code))
    if "timeout_secs" not in body:
        raise ValueError(_pydantic_error("timeout_secs", "Field required", "missing", body))
    value = body["timeout_secs"]
    timeout: int
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        timeout = int(value)
    elif isinstance(value, float):
        msg = "Input should be a valid integer, got a number with a fractional part"
        raise ValueError(_pydantic_error("timeout_secs", msg, "int_from_float", value))
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        timeout = int(value)
    elif isinstance(value, str):
        msg = "Input should be a valid integer, unable to parse string as an integer"
        raise ValueError(_pydantic_error("timeout_secs", msg, "int_parsing", value))
    else:
        raise ValueError(_pydantic_error("timeout_secs", "Input should be a valid integer", "int_type", value))
    if timeout <= 0:
        raise ValueError(_pydantic_error("timeout_secs", "Input should be greater than 0", "greater_than", value))
    return code, timeout


# -- the kernel -----------------------------------------------------------------------------------------------
class _KernelDeath(BaseException):
    """``os._exit`` inside the kernel: it dies without an idle status, like a real kernel process."""


Sink = Callable[[dict[str, Any]], None]
_IDLE: dict[str, Any] = {"type": "__idle__"}


class _Stream(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` as the kernel's code sees them: every write is a stream event."""

    def __init__(self, kernel: _Kernel, name: str) -> None:
        super().__init__()
        self._kernel = kernel
        self.name = name

    def write(self, text: str) -> int:
        if text:
            self._kernel.emit("stream", {"stream": self.name, "text": text})
        return len(text)

    def writable(self) -> bool:
        return True


class _ModuleProxy(types.ModuleType):
    """A real module with a few attributes replaced, handed to the kernel's code by its ``__import__``."""

    def __init__(self, real: types.ModuleType, overrides: dict[str, Any]) -> None:
        super().__init__(real.__name__, real.__doc__)
        self.__dict__["_real"] = real
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_real"], name)


class _Kernel:
    """One persistent Python namespace driven by one daemon thread, one cell at a time."""

    def __init__(self, root: Path, data_dir: str) -> None:
        self.root = root
        self.data_dir = data_dir
        self.alive = True
        self.execution_count = 0
        self._jobs: queue.Queue[tuple[str, Sink] | None] = queue.Queue()
        self._sink: Sink | None = None
        self._stdout = _Stream(self, "stdout")
        self._stderr = _Stream(self, "stderr")
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": self._builtins()}
        self._thread = threading.Thread(target=self._loop, name="fake-interpreter-kernel", daemon=True)
        self._thread.start()

    # -- what the user's code sees -------------------------------------------------------------------------
    def host_path(self, path: str) -> Path:
        """Map a container path (absolute, or relative to the WORKDIR) into ``root``; ``..`` stops at ``/``."""
        full = posixpath.normpath(posixpath.join(self.data_dir, path))
        return self.root / full.lstrip("/")

    def _builtins(self) -> dict[str, Any]:
        table = dict(vars(builtins))
        real_import = builtins.__import__
        real_open = builtins.open

        def fake_print(
            *args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False
        ) -> None:
            target = file if file is not None else self._stdout
            target.write((" " if sep is None else sep).join(str(a) for a in args) + ("\n" if end is None else end))

        def fake_open(file: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(file, (str, Path)):
                file = self.host_path(str(file))
            return real_open(file, *args, **kwargs)

        def fake_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
            if name.split(".")[0] == "matplotlib":
                self._prepare_matplotlib()
            module = real_import(name, globals, locals, fromlist, level)
            return self._proxy(module)

        table.update(print=fake_print, open=fake_open, __import__=fake_import, display=self.display)
        return table

    def _proxy(self, module: types.ModuleType) -> Any:
        if module is sys:
            return _ModuleProxy(sys, {"stdout": self._stdout, "stderr": self._stderr})
        if module.__name__ == "os":
            return _ModuleProxy(module, self._os_overrides(module))
        if module.__name__ == "matplotlib":
            pyplot = sys.modules.get("matplotlib.pyplot")
            if pyplot is not None:
                return _ModuleProxy(module, {"pyplot": self._pyplot(pyplot)})
        if module.__name__ == "matplotlib.pyplot":
            return self._pyplot(module)
        return module

    def _os_overrides(self, real_os: types.ModuleType) -> dict[str, Any]:
        # The file functions a client's helper code uses see container paths, mapped like open()'s.
        def mapped(func: Callable[..., Any], count: int) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                paths = [self.host_path(str(a)) for a in args[:count]]
                return func(*paths, *args[count:], **kwargs)

            return call

        return {
            "_exit": _die,
            "replace": mapped(real_os.replace, 2),
            "rename": mapped(real_os.rename, 2),
            "remove": mapped(real_os.remove, 1),
            "unlink": mapped(real_os.unlink, 1),
            "listdir": mapped(real_os.listdir, 1),
        }

    def _pyplot(self, pyplot: types.ModuleType) -> Any:
        # IPython's inline backend: show() sends each open figure as a PNG display, then closes it.
        return _ModuleProxy(pyplot, {"show": lambda *a, **k: self._flush_figures()})

    @staticmethod
    def _prepare_matplotlib() -> None:
        if "matplotlib.pyplot" not in sys.modules:
            import matplotlib

            matplotlib.use("Agg")

    def _flush_figures(self) -> None:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None:
            return
        for number in pyplot.get_fignums():
            self.display(pyplot.figure(number))
        pyplot.close("all")

    def display(self, *objs: Any) -> None:
        """IPython's ``display()``: one display_data event per object."""
        for obj in objs:
            self.emit("display_data", {"variants": _variants(obj)})

    # -- plumbing ------------------------------------------------------------------------------------------
    def emit(self, kind: str, data: dict[str, Any]) -> None:
        sink = self._sink
        if sink is not None:
            sink({"type": kind, "timestamp": _now(), "data": data})

    def submit(self, code: str, sink: Sink) -> None:
        self._jobs.put((code, sink))

    def stop(self) -> None:
        self._jobs.put(None)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None or not self.alive:
                return
            code, sink = job
            self._sink = sink
            try:
                self._run_cell(code)
            except _KernelDeath:
                self.alive = False  # no idle status: the request waits out its timeout
                return
            finally:
                self._sink = None
            sink(_IDLE)

    def _run_cell(self, code: str) -> None:
        self.execution_count += 1
        cell = self.execution_count
        filename = f"<cell In[{cell}]>"
        # Registered so that tracebacks can quote the cell's lines, as IPython's do.
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        try:
            tree = ast.parse(code, filename=filename)
        except SyntaxError as exc:
            self._error(exc, cell)
            return
        last: ast.expr | None = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = tree.body.pop().value  # type: ignore[attr-defined]
        try:
            exec(compile(tree, filename, "exec"), self.namespace)
            if last is not None:
                value = eval(compile(ast.Expression(last), filename, "eval"), self.namespace)
                if value is not None:
                    self.namespace["_"] = value
                    self.display(value)
            self._flush_figures()
        except _KernelDeath:
            raise
        except BaseException as exc:  # the kernel reports whatever the cell raised, KeyboardInterrupt included
            self._error(exc, cell)

    def _error(self, exc: BaseException, cell: int) -> None:
        ename, evalue = type(exc).__name__, str(exc)
        frames = [f"{_RED}{'-' * 75}{_RESET}", f"{_RED}{ename}{_RESET}{' ' * 26}Traceback (most recent call last)"]
        if isinstance(exc, SyntaxError):
            evalue = f"{exc.msg} ({exc.filename}, line {exc.lineno})"
            frames = [f"  {_CYAN}Cell {_GREEN}In[{cell}], line {exc.lineno}{_RESET}\n    {(exc.text or '').strip()}\n"]
        else:
            for entry in traceback.extract_tb(exc.__traceback__)[1:]:
                where = "" if entry.filename.startswith("<cell") else f"File {entry.filename}:"
                frames.append(
                    f"{_CYAN}{where}Cell{_RESET} {_GREEN}In[{cell}], line {entry.lineno}{_RESET}\n"
                    f"{_GREEN}----> {entry.lineno}{_RESET} {entry.line or ''}\n"
                )
        frames.append(f"{_RED}{ename}{_RESET}: {evalue}")
        self.emit("error", {"ename": ename, "evalue": evalue, "traceback": frames})


def _die(status: int = 0) -> None:
    raise _KernelDeath


def _variants(obj: Any) -> dict[str, Any]:
    """A Jupyter mime bundle for ``obj``: text/plain always, rich ``_repr_*_`` forms when the object has them."""
    out: dict[str, Any] = {"text/plain": repr(obj)}
    if hasattr(obj, "savefig") and hasattr(obj, "get_size_inches"):  # a matplotlib Figure
        buf = io.BytesIO()
        obj.savefig(buf, format="png")
        width, height = (int(v * obj.dpi) for v in obj.get_size_inches())
        axes = len(obj.axes)
        out["text/plain"] = f"<Figure size {width}x{height} with {axes} Axes>"
        out["image/png"] = base64.b64encode(buf.getvalue()).decode()
        return out
    for mime, method, binary in (
        ("image/png", "_repr_png_", True),
        ("image/jpeg", "_repr_jpeg_", True),
        ("image/svg+xml", "_repr_svg_", False),
        ("text/html", "_repr_html_", False),
        ("text/markdown", "_repr_markdown_", False),
        ("application/json", "_repr_json_", False),
    ):
        render = getattr(obj, method, None)
        if render is None:
            continue
        value = render()
        if value is None:
            continue
        out[mime] = base64.b64encode(value).decode() if binary and isinstance(value, bytes) else value
    return out


# -- the server -----------------------------------------------------------------------------------------------
class FakeInterpreterServer(FakeServer):
    """A fake of the original CodeGeeX4 ``sandbox.py`` server (see the module docstring for what it reproduces).

    ``root`` is the host directory that stands for the container's ``/`` (a fresh temporary directory when
    omitted, removed on close); ``data_dir`` is the container WORKDIR (``/mnt/data``).

    Example::

        async with FakeInterpreterServer() as srv:
            ...  # POST srv.url + "/execute" {"code": "print(1)", "timeout_secs": 5}
            srv.kill_kernel()  # from now on: ping 500, execute → timeout with no events
    """

    def __init__(
        self, *, root: str | Path | None = None, data_dir: str = "/mnt/data", conflict_on_existing: bool = False
    ) -> None:
        self.conflict_on_existing = conflict_on_existing
        self._own_root: str | None = None
        if root is None:
            root = self._own_root = tempfile.mkdtemp(prefix="fake-interpreter-")
        self.root = Path(root)
        self.data_dir = data_dir
        self.host_path(data_dir).mkdir(parents=True, exist_ok=True)
        self.last_activity = datetime.now(timezone.utc)
        self._kernel = _Kernel(self.root, data_dir)
        self._waiting: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        super().__init__()

    # -- scripting -----------------------------------------------------------------------------------------
    @property
    def kernel_alive(self) -> bool:
        """Whether the kernel still runs code."""
        return self._kernel.alive

    def kill_kernel(self) -> None:
        """Kill the kernel as ``os._exit`` would: ping answers 500 and every execute times out from now on."""
        self._kernel.alive = False
        self._kernel.stop()

    def restart_kernel(self) -> None:
        """Start a fresh kernel with an empty namespace (what rebuilding the real sandbox gives)."""
        self._kernel.stop()
        self._kernel = _Kernel(self.root, self.data_dir)

    def host_path(self, container_path: str) -> Path:
        """The host file that stands for ``container_path`` (``..`` cannot climb above ``root``)."""
        full = posixpath.normpath(posixpath.join("/", container_path))
        return self.root / full.lstrip("/")

    async def close(self) -> None:
        await super().close()
        self._kernel.stop()
        if self._own_root is not None:
            # A cell still running in the kernel thread may hold files open; removal is best effort.
            shutil.rmtree(self._own_root, ignore_errors=True)
            self._own_root = None

    # -- routes --------------------------------------------------------------------------------------------
    def setup_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/", self._ping)
        app.router.add_route("*", "/execute", self._execute)
        app.router.add_route("*", "/files/upload/-/{path:.*}", self._upload)
        app.router.add_route("*", "/files/download/-/{path:.*}", self._download)
        app.router.add_route("*", "/{tail:.*}", self._not_found)

    async def _not_found(self, request: web.Request) -> web.Response:
        return _tornado_page(404, "Not Found")

    def _touch(self) -> None:
        self.last_activity = datetime.now(timezone.utc)

    async def _ping(self, request: web.Request) -> web.Response:
        if request.method != "GET":
            return _tornado_page(405, "Method Not Allowed")
        if not self._kernel.alive:
            return _json({"error": "kernel is not alive"}, status=500)
        return _json({"last_activity": self.last_activity.strftime("%Y-%m-%dT%H:%M:%S.%fZ")})

    async def _execute(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return _tornado_page(405, "Method Not Allowed")
        self._touch()
        try:
            code, timeout = _parse_execute(await request.read())
        except ValueError as exc:
            return _json({"error": str(exc)}, status=500)
        events: list[dict[str, Any]] = []
        kernel = self._kernel
        if not kernel.alive:
            await asyncio.sleep(timeout)  # a dead kernel never answers: the server's wait_for runs out
            return _json({"status": "timeout", "events": []})
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        token = id(inbox)
        self._waiting[token] = inbox

        def sink(event: dict[str, Any]) -> None:
            # Called from the kernel thread. After a timeout the request is gone and its events are dropped,
            # as the original server drops IOPub messages whose msg_id has no queue any more.
            if token not in self._waiting:
                return
            with contextlib.suppress(RuntimeError):  # the server's loop is already closed
                loop.call_soon_threadsafe(inbox.put_nowait, event)

        kernel.submit(code, sink)

        async def collect() -> None:
            while True:
                event = await inbox.get()
                if event is _IDLE:
                    return
                events.append(event)

        try:
            await asyncio.wait_for(collect(), timeout=timeout)
        except asyncio.TimeoutError:
            return _json({"status": "timeout", "events": events})
        finally:
            self._waiting.pop(token, None)
        self._touch()
        return _json({"status": "ok", "events": events})

    async def _upload(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return web.Response(status=404, content_type=_HTML, charset="UTF-8")
        target = self.host_path(request.match_info["path"])
        if target.is_dir():
            return _tornado_page(500, "Internal Server Error")
        if self.conflict_on_existing and target.exists():
            return _json({"error": "file already exists"}, status=409)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:  # always overwrites: the original server never answers 409
            # The base middleware has already buffered the body to record it; write it out in pieces anyway.
            body = await request.read()
            for start in range(0, len(body), 1 << 20):
                out.write(body[start : start + (1 << 20)])
        self._touch()
        return web.Response(status=201, content_type=_HTML, charset="UTF-8")

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            return _tornado_page(405, "Method Not Allowed")
        self._touch()
        path = request.match_info["path"]
        target = self.host_path(path)
        if not target.exists():
            return _json({"error": "file not found"}, status=404)
        if target.is_dir():
            return _tornado_page(500, "Internal Server Error")
        name = urllib.parse.quote_plus(posixpath.basename(posixpath.normpath("/" + path)))
        resp = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f"attachment; filename*=UTF-8''{name}",
            },
        )
        resp.content_length = target.stat().st_size
        await resp.prepare(request)
        with target.open("rb") as src:
            while chunk := src.read(64 * 1024):
                await resp.write(chunk)
        await resp.write_eof()
        return resp
