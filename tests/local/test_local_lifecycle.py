"""Starting, guarding and stopping the local sandbox; run_jupyter timeouts; nothing left behind."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from typing import Any

import aiohttp
import pytest
import sandbox_fusion as sf

from aioagents.local import LocalSandbox, serve
from aioagents.local import _engine as engine_module
from aioagents.local._engine import default_work_dir
from tests.local.conftest import is_root, sandbox_processes, server_uids

pytestmark = pytest.mark.timeout(120)


async def post(url: str, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.post(f"{url}{path}", json=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


def test_a_non_loopback_address_needs_a_token() -> None:
    with pytest.raises(ValueError, match="without a token"):
        LocalSandbox(host="0.0.0.0")


async def test_with_a_token_every_request_needs_the_bearer_header() -> None:
    async with LocalSandbox(host="0.0.0.0", token="t0ps3cret") as sb:
        assert "t0ps3cret" not in repr(sb)
        local = sb.url.replace("0.0.0.0", "127.0.0.1")
        status, body = await post(local, "/run_code", {"code": "print(1)", "language": "python"})
        assert status == 401
        assert "t0ps3cret" not in str(body)
        status, _ = await post(
            local, "/run_code", {"code": "print(1)", "language": "python"}, {"Authorization": "Bearer wrong"}
        )
        assert status == 401
        status, body = await post(
            local, "/run_code", {"code": "print(1)", "language": "python"}, {"Authorization": "Bearer t0ps3cret"}
        )
        assert status == 200
        assert body["run_result"]["stdout"] == "1\n"


async def test_close_leaves_no_directory_process_or_kernel_file_behind() -> None:
    before = {n for n in os.listdir("/tmp") if n.startswith("tmp") and n.endswith(".json")}
    sb = LocalSandbox()
    await sb.start()
    root = sb.engine.root
    try:
        assert root is not None
        assert root.exists()
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{sb.url}/execute", json={"code": "import time", "timeout_secs": 30}) as r:
                assert r.status == 200
            async with s.post(
                f"{sb.url}/run_jupyter", json={"cells": ["import subprocess; subprocess.Popen(['sleep', '303'])"]}
            ) as r:
                assert (await r.json())["status"] == "Success"
            async with s.post(
                f"{sb.url}/run_code",
                json={"code": "import subprocess; subprocess.Popen(['sleep', '304']); import time; time.sleep(30)",
                      "language": "python", "run_timeout": 0.5},
            ) as r:  # fmt: skip
                assert (await r.json())["run_result"]["status"] == "TimeLimitExceeded"
        uids = server_uids(sb)
    finally:
        await sb.close()
    assert not root.exists()
    assert sandbox_processes(root, uids) == []
    after = {n for n in os.listdir("/tmp") if n.startswith("tmp") and n.endswith(".json")}
    assert after <= before
    with pytest.raises(RuntimeError):
        _ = sb.url


async def test_a_killed_process_factory_is_replaced() -> None:
    async with LocalSandbox() as sb:
        status, body = await post(sb.url, "/run_code", {"code": "print(1)", "language": "python"})
        assert body["status"] == "Success"
        proc = sb.engine.zygote._proc
        assert proc is not None
        proc.kill()
        await proc.wait()
        status, body = await post(sb.url, "/run_code", {"code": "print(2)", "language": "python"})
        assert status == 200
        assert body["run_result"]["stdout"] == "2\n"


async def test_serve_runs_until_cancelled() -> None:
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(port=0, on_ready=lambda sb: ready.set_result(sb.url)))
    url = await asyncio.wait_for(ready, 30)
    status, body = await post(url, "/run_code", {"code": "print(2)", "language": "python"})
    assert status == 200
    assert body["run_result"]["stdout"] == "2\n"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(url, "/v1/ping", None)


async def test_the_subprocess_mode_gives_the_same_answers_as_the_fast_path() -> None:
    code = "import sys\nprint(sys.argv[0].endswith('.py'), __name__)\nprint(input())\nsys.exit(4)"
    answers = []
    for fast in (True, False):
        async with LocalSandbox(python_fast_path=fast) as sb:
            status, body = await post(sb.url, "/run_code", {"code": code, "language": "python", "stdin": "in"})
            assert status == 200
            rr = body["run_result"]
            answers.append((body["status"], rr["stdout"], rr["stderr"], rr["return_code"]))
    assert answers[0] == answers[1] == ("Failed", "True __main__\nin\n", "", 4)


@pytest.mark.skipif(shutil.which("rustc") is None, reason="rustc is not installed")
async def test_without_privilege_dropping_a_toolchain_under_a_private_home_is_usable() -> None:
    # rustup installs under ~/.rustup, which an unprivileged sandbox uid cannot reach when ~ is 0700.
    async with LocalSandbox(drop_privileges=False) as sb:
        status, body = await post(sb.url, "/run_code", {"code": 'fn main() { println!("rust"); }', "language": "rust"})
    assert status == 200
    assert body["status"] == "Success", body
    assert body["run_result"]["stdout"] == "rust\n"


def test_cell_timeout_is_enforced_per_cell_and_later_cells_still_run(url: str) -> None:
    req = sf.RunJupyterRequest(
        cells=["x = 1", "import time\ntime.sleep(30)", "print(x + 1)"], cell_timeout=1, total_timeout=30
    )
    started = time.monotonic()
    resp = sf.run_jupyter(req, endpoint=url, max_attempts=1, client_timeout=60)
    assert time.monotonic() - started < 15
    assert resp.status == sf.RunStatus.Failed
    assert resp.driver is not None
    assert resp.driver.status == sf.CommandRunStatus.TimeLimitExceeded
    assert len(resp.cells) == 3
    assert resp.cells[1].error[-1]["ename"] == "TimeoutError"
    assert resp.cells[2].stdout == "2\n"


def test_total_timeout_returns_the_finished_cells(url: str) -> None:
    req = sf.RunJupyterRequest(
        cells=["print('one')", "print('two')", "import time\ntime.sleep(30)", "print('never')"], total_timeout=3
    )
    started = time.monotonic()
    resp = sf.run_jupyter(req, endpoint=url, max_attempts=1, client_timeout=60)
    assert time.monotonic() - started < 15
    assert resp.status == sf.RunStatus.Failed
    assert [c.stdout for c in resp.cells[:2]] == ["one\n", "two\n"]
    assert len(resp.cells) == 3  # the interrupted cell is reported, the one after it never ran
    assert "total_timeout" in resp.message


def test_run_jupyter_returns_a_matplotlib_png(url: str) -> None:
    pytest.importorskip("matplotlib")
    req = sf.RunJupyterRequest(
        cells=["import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"], total_timeout=60
    )
    resp = sf.run_jupyter(req, endpoint=url, max_attempts=1, client_timeout=90)
    assert resp.status == sf.RunStatus.Success, resp
    pngs = [d["image/png"] for d in resp.cells[0].display if "image/png" in d]
    assert pngs
    assert pngs[0].startswith("iVBORw0KGgo")


def test_a_killed_server_leaves_no_process_factory_or_directory_behind(tmp_path: Any) -> None:
    import subprocess
    import sys

    script = (
        "import asyncio\n"
        "from aioagents.local import serve\n"
        "def ready(sb):\n"
        "    print(sb.engine.root, sb.engine.zygote._proc.pid, flush=True)\n"
        "asyncio.run(serve(port=0, on_ready=ready))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        root, zygote_pid = proc.stdout.readline().split()
        assert os.path.isdir(root)
    finally:
        proc.kill()  # no chance to clean up
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (os.path.exists(root) or os.path.exists(f"/proc/{zygote_pid}")):
        time.sleep(0.05)
    assert not os.path.exists(root)
    assert not os.path.exists(f"/proc/{zygote_pid}")


def test_languages_reports_every_contract_language_with_a_reason_when_missing(sandbox: LocalSandbox) -> None:
    langs = sandbox.languages
    assert len(langs) == 29
    assert langs["python"] is None
    assert langs["sql"] is not None
    assert "sql" in langs["sql"]


async def test_run_directories_go_to_an_executable_tmpfs_unless_tmpdir_is_set(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TMPDIR", raising=False)
    shm = os.statvfs("/dev/shm")
    usable = shm.f_bavail * shm.f_frsize >= 1 << 30 and not shm.f_flag & os.ST_NOEXEC
    assert default_work_dir() == ("/dev/shm" if usable else None)
    monkeypatch.setattr(engine_module, "_SHM", str(tmp_path / "missing"))
    assert default_work_dir() is None
    chosen = tempfile.mkdtemp(dir="/tmp")  # not tmp_path: pytest's base directory is private (0700)
    try:
        os.chmod(chosen, 0o711)
        monkeypatch.setenv("TMPDIR", chosen)
        monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile caches the directory it chose
        assert default_work_dir() is None
        async with LocalSandbox() as sb:
            assert sb.engine.root is not None
            assert str(sb.engine.root.parent) == chosen
            status, body = await post(sb.url, "/run_code", {"code": "print(2)", "language": "python"})
            assert (status, body["run_result"]["stdout"]) == (200, "2\n")
        assert os.listdir(chosen) == []
    finally:
        shutil.rmtree(chosen, ignore_errors=True)


@pytest.mark.skipif(not is_root(), reason="runs keep the server's uid without root, so any directory will do")
async def test_a_work_dir_the_run_uids_cannot_reach_is_refused_at_start(tmp_path: Any) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    sb = LocalSandbox(work_dir=str(private))
    with pytest.raises(RuntimeError, match="not searchable by other users"):
        await sb.start()
    assert list(private.iterdir()) == []


async def test_a_sandbox_can_be_started_again_after_close() -> None:
    sb = LocalSandbox()
    for expected in ("1\n", "2\n"):
        async with sb:
            status, body = await post(sb.url, "/run_code", {"code": f"print({expected.strip()})", "language": "python"})
            assert status == 200
            assert body["run_result"]["stdout"] == expected
