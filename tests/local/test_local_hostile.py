"""Hostile code is contained, gets a clear status, and the server keeps serving."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from aioagents.local import Limits, LocalSandbox
from aioagents.local._process import sweep_shared_dirs
from tests.local.conftest import is_root, sandbox_processes, server_uids

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def sb() -> AsyncIterator[LocalSandbox]:
    async with LocalSandbox(limits=Limits(max_output_bytes=64 << 10, max_processes=64)) as server:
        yield server


async def run(sb: LocalSandbox, code: str, *, language: str = "python", **kw: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{sb.url}/run_code", json={"code": code, "language": language, **kw}) as r:
            assert r.status == 200
            body: dict[str, Any] = await r.json()
        async with s.get(f"{sb.url}/v1/ping") as r:
            assert await r.json() == "pong"  # still serving
    return body


async def no_leftovers(sb: LocalSandbox, deadline: float = 5.0) -> None:
    assert sb.engine.root is not None
    root = sb.engine.root
    await sb.engine.drain()

    uids = server_uids(sb)

    def poll() -> list[str]:
        end = time.monotonic() + deadline
        while (left := sandbox_processes(root, uids)) and time.monotonic() < end:
            time.sleep(0.05)
        return left

    assert await asyncio.to_thread(poll) == []


async def test_an_infinite_loop_is_killed_at_the_run_timeout(sb: LocalSandbox) -> None:
    started = time.monotonic()
    body = await run(sb, "while True:\n    pass", run_timeout=1)
    assert time.monotonic() - started < 5
    assert body["status"] == "Failed"
    assert body["run_result"]["status"] == "TimeLimitExceeded"
    await no_leftovers(sb)


@pytest.mark.skipif(not is_root(), reason="a per-run process limit needs a uid of the run's own (root)")
async def test_a_process_spawning_loop_hits_the_process_limit(sb: LocalSandbox) -> None:
    # Bounded: at most 3000 children, each sleeping; without containment this would still end.
    code = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(3000):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "finally:\n"
        "    print(n)\n"
    )
    body = await run(sb, code, run_timeout=20)
    assert body["status"] == "Failed"
    assert "BlockingIOError" in body["run_result"]["stderr"]
    assert int(body["run_result"]["stdout"]) < 64
    await no_leftovers(sb)


async def test_a_shell_fork_bomb_is_cleaned_up(sb: LocalSandbox) -> None:
    # Each shell spawns at most a few hundred children in total: bounded by the loop, not by luck.
    code = "for i in $(seq 1 300); do (sleep 60 &) ; done; echo spawned"
    started = time.monotonic()
    body = await run(sb, code, language="bash", run_timeout=5)
    assert time.monotonic() - started < 10
    assert body["run_result"]["status"] in ("Finished", "TimeLimitExceeded")
    await no_leftovers(sb)


async def test_a_4gb_allocation_fails_with_memory_error(sb: LocalSandbox) -> None:
    body = await run(sb, "b = bytearray(4 * 1024 ** 3)\nprint(len(b))")
    assert body["status"] == "Failed"
    assert body["run_result"]["status"] == "Finished"
    assert "MemoryError" in body["run_result"]["stderr"]


async def test_100mb_of_output_is_truncated_with_a_marker_and_finishes_fast(sb: LocalSandbox) -> None:
    started = time.monotonic()
    body = await run(sb, "import sys\nsys.stdout.write('x' * (100 * 1024 * 1024))", run_timeout=20)
    assert time.monotonic() - started < 10
    assert body["status"] == "Success"
    out = body["run_result"]["stdout"]
    assert out.startswith("x" * 1000)
    assert out.endswith(f"\n[truncated: {100 * 1024 * 1024 - (64 << 10)} bytes omitted]")
    assert len(out) < 70_000


@pytest.mark.skipif(not is_root(), reason="write protection outside the run directory needs a uid of its own")
async def test_writing_outside_the_run_directory_is_denied(sb: LocalSandbox, tmp_path: Any) -> None:
    target = tmp_path / "victim.txt"
    code = (
        "import os\n"
        f"for p in ['/etc/aioagents-probe', '../escape.txt', '{target}', '/work/escape.txt']:\n"
        "    try:\n"
        "        open(p, 'w').write('x')\n"
        "        print('WROTE', p)\n"
        "    except OSError as e:\n"
        "        print('denied', type(e).__name__)\n"
        "open('inside.txt', 'w').write('ok')\n"
        "print(open('inside.txt').read())\n"
    )
    body = await run(sb, code)
    out = body["run_result"]["stdout"]
    # PermissionError by uid; with full isolation the host is also read-only (OSError EROFS) and the host's /tmp
    # is hidden under the run's private one (FileNotFoundError). There a run of one step has its directory in its
    # private /tmp, so ``..`` is that tmpfs, as writable as /tmp itself and gone with the run: nothing of the host.
    if sb.isolation == "full":
        assert out.replace("WROTE ../escape.txt\n", "denied private-tmp\n").count("denied ") == 4, out
    else:
        assert "WROTE" not in out, body
        assert out.count("denied PermissionError") == 4, out
    assert out.endswith("ok\n")
    assert not target.exists()
    assert sb.engine.root is not None
    escaped = [str(sb.engine.root / "escape.txt"), "/tmp/escape.txt"]
    assert await asyncio.to_thread(lambda: [p for p in escaped if os.path.exists(p)]) == []


async def test_a_child_that_outlives_its_parent_is_killed(sb: LocalSandbox) -> None:
    code = (
        "import subprocess\n"
        "subprocess.Popen(['sleep', '301'])\n"
        "subprocess.Popen(['sleep', '302'], start_new_session=True)\n"  # leaves the run's process group
        "print('parent exits')\n"
    )
    body = await run(sb, code)
    assert body["status"] == "Success"
    assert body["run_result"]["stdout"] == "parent exits\n"
    await no_leftovers(sb)


async def test_a_double_forked_daemon_holding_the_output_pipe_does_not_hang_the_run(sb: LocalSandbox) -> None:
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(300)\n"  # keeps stdout open
        "    os._exit(0)\n"
        "print('done', flush=True)\n"
    )
    started = time.monotonic()
    body = await run(sb, code, run_timeout=5)
    assert time.monotonic() - started < 4
    assert body["run_result"]["stdout"] == "done\n"
    await no_leftovers(sb)


async def test_the_environment_is_scrubbed(sb: LocalSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOAGENTS_TEST_SECRET", "s3cr3t")
    body = await run(sb, "import os\nprint(sorted(os.environ))\nprint(os.environ['HOME'] == os.getcwd())")
    out = body["run_result"]["stdout"]
    assert "AIOAGENTS_TEST_SECRET" not in out
    assert "s3cr3t" not in out
    assert out.endswith("True\n")


async def test_the_run_sees_exactly_the_sandbox_environment_in_python_and_in_its_children(sb: LocalSandbox) -> None:
    # The fast path edits the forked interpreter's environment in place; both views must match the sandbox's.
    code = (
        "import json, os, subprocess\n"
        "child = subprocess.run(['env', '-0'], capture_output=True, check=True).stdout.decode()\n"
        "print(json.dumps([dict(os.environ), os.getcwd(), child]))\n"
    )
    for _ in range(2):  # the second run inherits nothing from the first
        body = await run(sb, code)
        environ, cwd, child = json.loads(body["run_result"]["stdout"])
        expected = sb.engine.base_env(home=cwd)
        assert environ == expected
        assert dict(item.split("=", 1) for item in child.split("\0") if item) == expected


async def test_concurrent_runs_do_not_see_each_other(sb: LocalSandbox) -> None:
    code = "import os\nopen('mine.txt', 'w').write('x')\nprint(sorted(os.listdir('.')))"
    bodies = await asyncio.gather(*(run(sb, code) for _ in range(4)))
    for body in bodies:
        names = eval(body["run_result"]["stdout"])
        assert "mine.txt" in names
        assert len([n for n in names if n.endswith(".py")]) == 1


async def test_a_file_larger_than_the_file_size_limit_is_cut_off() -> None:
    async with LocalSandbox(limits=Limits(max_file_size_mb=1)) as small:
        body = await run(small, "open('big.bin', 'wb').write(b'x' * (5 * 1024 * 1024))\nprint('wrote')")
    assert body["status"] == "Failed"
    assert body["run_result"]["stdout"] == ""
    # Python ignores SIGXFSZ, so the write fails with EFBIG instead of the process being killed.
    assert "File too large" in body["run_result"]["stderr"]


@pytest.mark.skipif(not is_root(), reason="runs keep the server's uid without root: their files cannot be told apart")
async def test_files_a_run_leaves_in_the_shared_temporary_directories_are_removed(sb: LocalSandbox) -> None:
    token = secrets.token_hex(6)
    paths = [f"/tmp/aioagents-probe-{token}", f"/var/tmp/aioagents-probe-{token}", f"/dev/shm/aioagents-probe-{token}"]
    code = (
        "import os\n"
        f"for p in {paths!r}:\n"
        "    open(p, 'w').write('left behind')\n"
        f"os.makedirs('/tmp/aioagents-probe-dir-{token}/deep')\n"
        f"open('/tmp/aioagents-probe-dir-{token}/deep/f', 'w').write('x')\n"
        f"os.symlink('/etc/passwd', '/tmp/aioagents-probe-link-{token}')\n"
        "print('written')\n"
    )
    body = await run(sb, code)
    assert body["run_result"]["stdout"] == "written\n", body
    await sb.engine.drain()

    def leftovers() -> list[str]:
        assert os.path.exists("/etc/passwd")  # the symlink went, not its target
        return glob.glob(f"/*/aioagents-probe*{token}") + glob.glob(f"/*/*/aioagents-probe*{token}")

    assert await asyncio.to_thread(leftovers) == []


def test_the_sweep_removes_only_what_the_given_uids_own_and_never_follows_links(tmp_path: Any) -> None:
    if not is_root():
        pytest.skip("chown to another uid needs root")
    shared = tmp_path / "shared"
    shared.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    for name, uid in (("theirs.txt", 4242), ("mine.txt", 0), ("other.txt", 4343)):
        (shared / name).write_text(name)
        os.chown(shared / name, uid, uid)
    (shared / "dir").mkdir()
    (shared / "dir" / "inner").write_text("x")
    (shared / "dir" / "escape").symlink_to(outside)
    os.chown(shared / "dir", 4242, 4242)
    (shared / "link").symlink_to(outside)
    os.chown(shared / "link", 4242, 4242, follow_symlinks=False)
    removed = sweep_shared_dirs({4242}, [str(shared), str(tmp_path / "missing")])
    assert removed == 3
    assert sorted(p.name for p in shared.iterdir()) == ["mine.txt", "other.txt"]
    assert (outside / "keep.txt").read_text() == "keep"
