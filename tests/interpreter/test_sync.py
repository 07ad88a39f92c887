"""The blocking interpreter API (the generated twins) against both real servers: the same behaviours as the
async integration tests."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from PIL import Image

from aioagents.interpreter import (
    ExecutionEnd,
    FileExistsInSandboxError,
    KernelDeadError,
    SandboxPathError,
    Stream,
    merge_streams,
)

from .conftest import Backend
from .test_integration import ORDER_CODE, PLOT_CODE


@pytest.fixture
def it(backend: Backend, sync_api: ModuleType) -> Iterator[Any]:
    with sync_api.Interpreter(backend.url, restart=backend.restart) as session:
        yield session


def test_state_persists(it: Any) -> None:
    it.execute("counter = 1")
    it.execute("counter += 1")
    assert it.execute("print(counter)").stdout == "2\n"


def test_events_arrive_in_order(it: Any) -> None:
    result = it.execute(ORDER_CODE)
    kinds = [type(e).__name__ for e in merge_streams(result.events)]
    assert kinds == ["Stream", "Stream", "DisplayData", "Error"]
    assert result.error.ename == "ZeroDivisionError"


def test_stream_is_an_iterator(it: Any) -> None:
    events = list(it.client.execute_stream("print('a', flush=True)\n1 + 1"))
    assert isinstance(events[-1], ExecutionEnd)
    assert [e.text for e in events if isinstance(e, Stream)] == ["a\n"]


def test_session_stream(it: Any) -> None:
    events = list(it.stream("print('s')"))
    assert events[-1] == ExecutionEnd(status="ok")


def test_matplotlib_png(it: Any) -> None:
    png = it.execute(PLOT_CODE, timeout=120).displays[0].png
    with Image.open(io.BytesIO(png)) as image:
        image.verify()
        assert image.format == "PNG"


def test_timeout_then_next_call(it: Any) -> None:
    result = it.execute("import time\nprint('start', flush=True)\ntime.sleep(4)", timeout=1.5)
    assert result.timed_out
    assert result.stdout == "start\n"
    assert it.execute("print('next')", timeout=30).stdout == "next\n"


def test_dead_kernel(it: Any) -> None:
    result = it.execute("import os\nos._exit(1)", timeout=3)
    assert result.kernel_died
    assert it.restarts == 1
    assert it.execute("print(2)").stdout == "2\n"


def test_dead_kernel_without_restart_hook(backend: Backend, sync_api: ModuleType) -> None:
    with sync_api.Interpreter(backend.url) as it:
        result = it.execute("import os\nos._exit(1)", timeout=2)
        assert result.kernel_died
        if backend.restart is None:
            assert it.execute("print(3)").stdout == "3\n"  # the embedded sandbox restarts its own kernel
        else:
            with pytest.raises(KernelDeadError):
                it.execute("print(3)")


def test_files_round_trip(it: Any, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    it.upload("s/one.bin", payload)
    it.upload("s/two.bin", src)
    assert it.download("s/one.bin") == payload
    assert it.download_to("s/two.bin", tmp_path / "back.bin").read_bytes() == payload
    chunks = b"".join(it.client.download_stream("s/one.bin"))
    assert chunks == payload


def test_create_only(it: Any) -> None:
    it.upload("c.txt", b"1", overwrite=False)
    with pytest.raises(FileExistsInSandboxError):
        it.upload("c.txt", b"2", overwrite=False)


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "%2e%2e/x"])
def test_traversal(it: Any, path: str) -> None:
    with pytest.raises(SandboxPathError):
        it.upload(path, b"x")
    with pytest.raises(SandboxPathError):
        it.download(path)


def test_plain_client(backend: Backend, sync_api: ModuleType) -> None:
    with sync_api.InterpreterClient(backend.url) as client:
        assert client.ping().last_activity.tzinfo is not None
        client.execute("v = 5")
        assert client.execute("v * 2").displays[0].text == "10"
