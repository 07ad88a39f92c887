"""Two real servers for the interpreter client: the fake of the original CodeGeeX4 ``sandbox.py`` and the embedded
sandbox (``aioagents.local.LocalSandbox``). Every integration test runs against both, over loopback.

Both run on their own loop thread, so the async tests (on the test's loop) and the sync tests (blocking calls) talk
to the same kind of server. A ``Backend`` says what differs between them on purpose: who restarts a dead kernel,
and whether ``/execute`` streams.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType

import attrs
import pytest

from aioagents.local import LocalSandbox
from aioagents.testing._interpreter import FakeInterpreterServer

ROOT = Path(__file__).resolve().parents[2]


@attrs.frozen(kw_only=True)
class Backend:
    """One running server and what the tests need to know about it."""

    kind: str  # "fake" (the original server's behaviour) or "local" (the embedded sandbox)
    url: str
    host_data_dir: Path  # where /mnt/data lives on this machine
    restart: Callable[[], Awaitable[None]] | None  # what rebuilding the sandbox means here (None: it restarts itself)
    streams: bool  # /execute answers newline-delimited JSON as events happen


@pytest.fixture(scope="session")
def local_sandbox() -> Iterator[LocalSandbox]:
    """One embedded sandbox for the whole session (as tests/local does): its kernel restarts itself after a death,
    so tests do not need a fresh one; each test uses names of its own."""
    with LocalSandbox().in_thread() as sb:
        yield sb


@pytest.fixture(params=["fake", "local"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A server of each kind on its own loop thread: a fresh fake per test, the shared embedded sandbox."""
    if request.param == "fake":
        fake = FakeInterpreterServer()
        with fake.in_thread():

            async def rebuild() -> None:
                await asyncio.to_thread(fake.restart_kernel)

            yield Backend(
                kind="fake", url=fake.url, host_data_dir=fake.host_path("/mnt/data"), restart=rebuild, streams=False
            )
    else:
        sb = request.getfixturevalue("local_sandbox")
        yield Backend(kind="local", url=sb.url, host_data_dir=sb.data_dir, restart=None, streams=True)


def _load_gen_sync() -> ModuleType:
    if "gen_sync" in sys.modules:
        return sys.modules["gen_sync"]
    spec = importlib.util.spec_from_file_location("gen_sync", ROOT / "scripts" / "gen_sync.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_sync"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def sync_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The generated blocking twins: ``aioagents.sync`` once the interpreter is registered there, else generated
    here from the current source by the same generator."""
    import aioagents.sync as published

    if hasattr(published, "Interpreter"):
        yield published
        return
    gen_sync = _load_gen_sync()
    base = tmp_path_factory.mktemp("interpsync")
    files = gen_sync.generate(
        {"aioagents.interpreter.client": ["InterpreterClient", "Interpreter"]}, package="interpsync"
    )
    gen_sync.write(files, base / "interpsync")
    sys.path.insert(0, str(base))
    try:
        yield importlib.import_module("interpsync")
    finally:
        sys.path.remove(str(base))
