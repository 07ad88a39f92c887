"""Fixtures of the sync-API tests: the toy's generated sync twin and a real loopback server for it."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from aiohttp import web

from aioagents.testing import FakeServer

from . import toy_async

ROOT = Path(__file__).resolve().parents[2]
GEN_SYNC = ROOT / "scripts" / "gen_sync.py"
TOY_CLASSES = ["ToyClient", "Threads", "Messages", "CoreToyClient"]
TOY_PACKAGE = "toysync_generated"


def toy_import_root() -> Path:
    """The sys.path entry under which the toy async module is importable by its current name."""
    depth = len(toy_async.__name__.split("."))
    return Path(toy_async.__file__).resolve().parents[depth - 1]


def toy_spec() -> str:
    """The toy registry as ``--class`` takes it."""
    return f"{toy_async.__name__}:{','.join(TOY_CLASSES)}"


def load_gen_sync() -> ModuleType:
    """scripts/gen_sync.py as a module (scripts/ is not a package)."""
    if "gen_sync" in sys.modules:
        return sys.modules["gen_sync"]
    spec = importlib.util.spec_from_file_location("gen_sync", GEN_SYNC)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_sync"] = module  # dataclasses look their module up while the class body runs
    spec.loader.exec_module(module)
    return module


def subprocess_env(*paths: Path) -> dict[str, str]:
    """An environment whose PYTHONPATH reaches the toy module and the given directories."""
    env = dict(os.environ)
    entries = [str(p) for p in (*paths, toy_import_root())]
    if env.get("PYTHONPATH"):
        entries.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(entries)
    return env


class ToyServer(FakeServer):
    """``POST /echo`` echoes ``{"text"}``; ``GET /lines?n=&delay=`` streams numbered lines and records whether the
    client hung up before the end."""

    def __init__(self) -> None:
        super().__init__()
        self.hangups = threading.Semaphore(0)
        self.completed = 0

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post("/echo", self._echo)
        app.router.add_get("/lines", self._lines)
        app.router.add_get("/sse", self._sse)

    async def _echo(self, request: web.Request) -> web.Response:
        data = await request.json()
        return web.json_response({"text": data["text"]})

    async def _lines(self, request: web.Request) -> web.StreamResponse:
        return await self._numbers(request, "text/plain", "{}\n")

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        return await self._numbers(request, "text/event-stream", "data: {}\n\n")

    async def _numbers(self, request: web.Request, content_type: str, template: str) -> web.StreamResponse:
        n = int(request.query["n"])
        delay = float(request.query.get("delay", "0"))
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        try:
            for i in range(n):
                await response.write(template.format(i).encode())
                await asyncio.sleep(delay)
        except (ConnectionError, asyncio.CancelledError):
            self.hangups.release()
            raise
        self.completed += 1
        await response.write_eof()
        return response


@pytest.fixture
def server() -> Iterator[ToyServer]:
    """A toy server on its own loop thread (the clients under test block)."""
    srv = ToyServer()
    with srv.in_thread():
        yield srv


@pytest.fixture(scope="session")
def generated_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the toy's generated sync package, ``toysync_generated``."""
    gen_sync = load_gen_sync()
    base = tmp_path_factory.mktemp("gen")
    files = gen_sync.generate({toy_async.__name__: TOY_CLASSES}, package=TOY_PACKAGE)
    gen_sync.write(files, base / TOY_PACKAGE)
    return base


@pytest.fixture(scope="session")
def toysync(generated_dir: Path) -> Iterator[ModuleType]:
    """The generated sync twin of the toy, imported."""
    sys.path.insert(0, str(generated_dir))
    try:
        yield importlib.import_module(f"{TOY_PACKAGE}.toy_async")
    finally:
        sys.path.remove(str(generated_dir))
