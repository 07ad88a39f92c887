"""Starting, guarding and stopping the local sandbox; run_jupyter timeouts; nothing left behind."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sandbox_fusion as sf

from aioagents.local import LocalSandbox, serve
from aioagents.local import _engine as engine_module
from aioagents.local._engine import default_work_dir
from aioagents.local._paths import remove_tree
from aioagents.local._process import sweep_shared_dirs
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


def _nest(top: Path, depth: int, *, every: int = 0, link_to: Path | None = None) -> None:
    """``depth`` directories ``d/d/d/...`` under ``top``; every ``every`` levels a file and a symlink to ``link_to``."""
    fd = os.open(top, os.O_RDONLY)
    try:
        for i in range(depth):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
            if every and i % every == 0:
                os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o000, dir_fd=fd))
                if link_to is not None:
                    os.symlink(link_to, "escape", dir_fd=fd)
    finally:
        os.close(fd)


def test_remove_tree_removes_any_depth_without_following_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    top = tmp_path / "run"
    top.mkdir()
    _nest(top, 3000, every=250, link_to=outside)  # far deeper than the recursion limit
    for i in range(2000):
        (top / f"f{i}").touch()
    (top / "to-outside").symlink_to(outside)
    assert remove_tree(top) is True
    assert not top.exists()
    assert (outside / "keep.txt").read_text() == "keep"
    assert remove_tree(top) is True  # already gone
    (tmp_path / "plain").write_text("x")
    assert remove_tree(tmp_path / "plain") is True
    assert not (tmp_path / "plain").exists()


@pytest.mark.skipif(not is_root(), reason="mounting a tmpfs needs root")
def test_remove_tree_never_crosses_into_another_file_system_and_reports_it(tmp_path: Path) -> None:
    top = tmp_path / "run"
    (top / "a" / "mnt").mkdir(parents=True)
    (top / "a" / "file").write_text("x")
    mnt = top / "a" / "mnt"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        (mnt / "other-fs.txt").write_text("not ours to remove")
        assert remove_tree(top) is False
        assert (mnt / "other-fs.txt").read_text() == "not ours to remove"
        assert not (top / "a" / "file").exists()  # everything else went
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert remove_tree(top) is True


@pytest.mark.skipif(not is_root(), reason="becoming another user needs root")
def test_remove_tree_as_the_owner_removes_directories_made_unreadable() -> None:
    # Without root (runs keep the server's uid) a run may chmod 0 its directories; they are its to remove.
    base = Path(tempfile.mkdtemp(prefix="aioagents-rmtree-", dir="/tmp"))  # reachable by that user
    base.chmod(0o755)
    top = base / "run"
    top.mkdir()
    _nest(top, 50)
    (top / "locked" / "inner").mkdir(parents=True)
    (top / "locked" / "inner" / "f").write_text("x")
    for path in [base, top, *top.rglob("*")]:  # the server's root and the run directory: the same user's
        os.chown(path, 65534, 65534, follow_symlinks=False)
    (top / "locked").chmod(0)
    (top / "d").chmod(0o100)  # searchable, not listable
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code = 0 if remove_tree(top) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    try:
        assert os.waitstatus_to_exitcode(status) == 0
        assert not top.exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_remove_tree_logs_and_skips_what_it_cannot_remove(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    top = tmp_path / "run"
    (top / "sub").mkdir(parents=True)
    (top / "sub" / "f").write_text("x")
    missing_parent = tmp_path / "nope" / "run"
    assert remove_tree(missing_parent) is True  # nothing there: nothing to do
    assert remove_tree(top, log=logging.getLogger("aioagents.local")) is True
    assert caplog.records == []


@pytest.mark.skipif(not is_root(), reason="files of another uid in a shared directory need root")
def test_the_shared_dir_sweep_goes_past_a_deep_tree(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "deep").mkdir()
    _nest(shared / "deep", 1100)
    (shared / "zz-after.txt").write_text("x")
    (shared / "aa-before.txt").write_text("x")
    for path in shared.iterdir():
        os.chown(path, 4242, 4242)
    assert sweep_shared_dirs({4242}, [str(shared)]) == 3
    assert list(shared.iterdir()) == []
