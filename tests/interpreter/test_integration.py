"""The interpreter client against both real servers (the original server's fake and the embedded sandbox).

Each test is one behaviour the issue requires; the same test runs against both servers.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from PIL import Image

from aioagents.interpreter import (
    DisplayData,
    Error,
    ExecutionEnd,
    FileExistsInSandboxError,
    Interpreter,
    InterpreterClient,
    KernelDeadError,
    SandboxPathError,
    Stream,
    merge_streams,
)

from .conftest import Backend

ORDER_CODE = "import sys\nprint('out', flush=True)\nprint('err', file=sys.stderr, flush=True)\ndisplay(7)\n1/0"
PLOT_CODE = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"


@pytest.fixture
async def it(backend: Backend) -> AsyncIterator[Interpreter]:
    async with Interpreter(backend.url, restart=backend.restart) as session:
        yield session


async def test_ping_gives_an_aware_last_activity(it: Interpreter) -> None:
    before = datetime.now(timezone.utc)
    await it.execute("1")
    ping = await it.ping()
    assert ping.last_activity.tzinfo is not None
    assert ping.last_activity.utcoffset() is not None
    assert abs((ping.last_activity - before).total_seconds()) < 120


async def test_state_persists_across_calls(it: Interpreter) -> None:
    await it.execute("zz = 41")
    result = await it.execute("zz + 1")
    assert result.ok
    assert [d.text for d in result.displays] == ["42"]


async def test_stdout_stderr_display_error_arrive_in_order(it: Interpreter) -> None:
    result = await it.execute(ORDER_CODE)
    events = merge_streams(result.events)
    shape = [(type(e).__name__, e.name if isinstance(e, Stream) else None) for e in events]
    assert shape == [("Stream", "stdout"), ("Stream", "stderr"), ("DisplayData", None), ("Error", None)]
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    error = result.error
    assert error is not None
    assert (error.ename, error.evalue) == ("ZeroDivisionError", "division by zero")
    assert "\x1b" not in error.traceback
    assert "ZeroDivisionError" in error.traceback
    assert any("\x1b[" in frame for frame in error.traceback_frames)  # the raw frames keep the colours
    assert result.status == "ok"  # an exception is an event, not a failed execution
    assert not result.ok


async def test_streamed_events_match_the_returned_ones(it: Interpreter, backend: Backend) -> None:
    expected = await it.execute(ORDER_CODE)
    async with it.client.execute_stream(ORDER_CODE) as events:
        streamed = [e async for e in events]
    assert isinstance(streamed[-1], ExecutionEnd)
    assert streamed[-1].status == "ok"
    strip = [_shape(e) for e in merge_streams([e for e in streamed if not isinstance(e, ExecutionEnd)])]
    assert strip == [_shape(e) for e in merge_streams(expected.events)]


def _shape(event: object) -> tuple[str, str]:
    if isinstance(event, Stream):
        return ("stream", event.name + ":" + event.text)
    if isinstance(event, DisplayData):
        return ("display", event.text or "")
    if isinstance(event, Error):
        return ("error", event.ename)
    return ("other", repr(event))


async def test_streaming_yields_events_while_the_code_runs(it: Interpreter, backend: Backend) -> None:
    code = "import time\nprint('first', flush=True)\ntime.sleep(1.5)\nprint('second', flush=True)"
    loop = asyncio.get_running_loop()
    arrivals: list[tuple[float, object]] = []
    async with it.client.execute_stream(code, timeout=20) as events:
        start = loop.time()
        async for event in events:
            arrivals.append((loop.time() - start, event))
    texts = [e.text for _, e in arrivals if isinstance(e, Stream)]
    assert "".join(texts) == "first\nsecond\n"
    first_at = next(t for t, e in arrivals if isinstance(e, Stream))
    end_at = arrivals[-1][0]
    if backend.streams:
        assert end_at - first_at > 1.0  # 'first' was in hand long before the code finished
    else:
        assert end_at - first_at < 0.5  # one JSON document: everything arrives together at the end


async def test_matplotlib_png_decodes_to_a_valid_png(it: Interpreter) -> None:
    result = await it.execute(PLOT_CODE, timeout=120)
    assert result.ok, result.to_text()
    (display,) = result.displays
    png = display.png
    assert png is not None
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as image:
        image.verify()
        assert image.format == "PNG"
        assert image.size[0] > 100
    assert "[image/png image" in result.to_text()


async def test_timeout_returns_partial_events_and_the_next_call_works(it: Interpreter) -> None:
    result = await it.execute("import time\nprint('start', flush=True)\ntime.sleep(4)\nprint('end')", timeout=1.5)
    assert result.timed_out
    assert result.stdout == "start\n"
    assert not result.kernel_died
    assert "timed out" in result.to_text()
    following = await it.execute("print('next')", timeout=30)
    assert following.ok
    assert following.stdout == "next\n"


async def test_a_dead_kernel_is_reported_and_the_session_restarts(it: Interpreter) -> None:
    await it.execute("before = 1")
    result = await it.execute("import os\nos._exit(1)", timeout=3)
    assert result.kernel_died
    assert it.restarts == 1
    assert not it.kernel_dead
    after = await it.execute("print('before' in dir())")
    assert after.stdout == "False\n"  # a new kernel: the state is gone, and the session says so (restarts)


async def test_files_round_trip_byte_exact(it: Interpreter, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 4099  # every byte value, ~1 MB, not a multiple of any chunk size
    await it.upload("bin/data.bin", payload)
    assert await it.download("bin/data.bin") == payload
    local = tmp_path / "src.bin"
    local.write_bytes(payload[::-1])
    uploaded = await it.upload("from_path.bin", local)
    assert uploaded.size == len(payload)
    assert uploaded.path == "/mnt/data/from_path.bin"
    assert await it.download("from_path.bin") == payload[::-1]

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 65521):
            yield payload[i : i + 65521]

    streamed = await it.upload("streamed.bin", chunks())
    assert streamed.size == len(payload)
    target = await it.download_to("streamed.bin", tmp_path / "out.bin")
    assert target.read_bytes() == payload


async def test_the_kernel_sees_uploaded_files_and_we_see_what_it_writes(it: Interpreter) -> None:
    await it.upload("numbers.csv", b"x,y\n1,2\n3,4\n")
    result = await it.execute(
        "with open('numbers.csv') as f:\n    rows = f.read().splitlines()\n"
        "with open('count.txt', 'w') as f:\n    f.write(str(len(rows)))"
    )
    assert result.ok, result.to_text()
    assert await it.download("count.txt") == b"3"


async def test_download_to_a_directory_uses_the_server_file_name(it: Interpreter, tmp_path: Path) -> None:
    await it.upload("my report é+1.txt", b"r")
    written = await it.download_to("my report é+1.txt", tmp_path)
    assert written == (tmp_path / "my report é+1.txt").resolve()
    assert written.read_bytes() == b"r"
    assert os.listdir(tmp_path) == ["my report é+1.txt"]  # no temporary file left


async def test_create_only_upload_refuses_an_existing_file(it: Interpreter) -> None:
    await it.upload("once.txt", b"first", overwrite=False)
    with pytest.raises(FileExistsInSandboxError):
        await it.upload("once.txt", b"second", overwrite=False)
    assert await it.download("once.txt") == b"first"
    await it.upload("once.txt", b"third")  # overwrite (the default) replaces it on either server
    assert await it.download("once.txt") == b"third"


@pytest.mark.parametrize(
    "path",
    ["../x", "a/../../x", "/etc/passwd", "/mnt/data/../../etc/passwd", "%2e%2e/x", "a/%2E%2e/b", "%252e%252e/x",
     "a%2f..%2fb", "..\\x", "a\x00b"],
)  # fmt: skip
async def test_path_traversal_is_rejected_before_sending(it: Interpreter, path: str) -> None:
    with pytest.raises(SandboxPathError):
        await it.upload(path, b"x")
    with pytest.raises(SandboxPathError):
        await it.download(path)


async def test_a_missing_file_is_not_found(it: Interpreter) -> None:
    from aioagents import NotFoundError

    with pytest.raises(NotFoundError):
        await it.download("nope.txt")
    assert not await it.client.exists("nope.txt")


async def test_a_plain_client_shares_the_kernel(backend: Backend) -> None:
    async with InterpreterClient(backend.url) as client:
        await client.execute("shared = 'yes'")
        assert (await client.execute("print(shared)")).stdout == "yes\n"


async def test_fifty_megabytes_stream_with_flat_memory(backend: Backend, tmp_path: Path) -> None:
    big, small = await asyncio.gather(
        asyncio.to_thread(_peak_rss_of_round_trip, backend.url, tmp_path / "big", 50 << 20),
        asyncio.to_thread(_peak_rss_of_round_trip, backend.url, tmp_path / "small", 1 << 20),
    )
    # Moving 50 MB may not cost more than a fraction of it: the bytes are streamed, never held whole.
    assert big - small < 20 << 20, (big, small)


_ROUND_TRIP = """
import asyncio, hashlib, os, sys
from pathlib import Path
from aioagents.interpreter import InterpreterClient

async def main(url, work, size):
    src = work / "src.bin"
    with open(src, "wb") as f:
        for i in range(size // (1 << 20)):
            f.write(hashlib.sha256(str(i).encode()).digest() * 32768)
    async with InterpreterClient(url) as client:
        await client.upload("big.bin", src)
        out = await client.download_to("big.bin", work / "back.bin")
    peak = high_water_mark()  # before the check reads anything
    return digest(src) == digest(out), peak

def high_water_mark():
    # VmHWM belongs to this process image; ru_maxrss would carry over the parent's size across fork + exec.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.digest()

url, work, size = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
work.mkdir(parents=True, exist_ok=True)
same, peak = asyncio.run(main(url, work, size))
print(same, peak)
"""


def _peak_rss_of_round_trip(url: str, work: Path, size: int) -> int:
    # The client runs in its own process, so its peak memory is not mixed with the server's.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _ROUND_TRIP, url, str(work), str(size)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    same, rss = done.stdout.split()
    assert same == "True"  # byte-exact both ways (hashing reads the local files, not the client's memory)
    return int(rss)


async def test_without_a_restart_hook_a_dead_kernel_fails_fast(backend: Backend) -> None:
    if backend.restart is None:
        # The embedded sandbox restarts its own kernel: the death is reported on the result, and it carries on.
        async with Interpreter(backend.url) as it:
            result = await it.execute("import os\nos._exit(3)", timeout=3)
            assert result.kernel_died
            assert result.kernel_restarted
            assert (await it.execute("print(1)")).stdout == "1\n"
        return
    async with Interpreter(backend.url) as it:
        result = await it.execute("import os\nos._exit(3)", timeout=2)
        assert result.kernel_died
        assert it.kernel_dead
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(KernelDeadError):
            await it.execute("print(1)", timeout=30)
        assert loop.time() - started < 1.0  # reported at once, not after the call's 30 s
        with pytest.raises(KernelDeadError):
            await it.client.ping()
