"""The attack suite of issue 11: hostile programs sent over HTTP to a real ``aioagents serve`` running as root.

Each test sends a real hostile program and asserts three things:

* the attack is contained (what it tried did not happen, and the answer says so clearly);
* the server was never wedged: a pinger on its own connection asks ``GET /v1/ping`` every few milliseconds during
  the attack and after it, and an answer later than 100 ms counts as the server wedged (a containment property of
  the server, not a speed figure: a ping waits only when something blocks the event loop);
* afterwards nothing of the run is left: no process (the server's descendants are compared before and after; the
  process factory is a subreaper, so every orphan of a run is one of them), no file (the run directories under the
  server's root, the attack's own marked paths in /tmp, /var/tmp, /dev/shm, /run/lock), no mount in the server's
  mount table, no cgroup directory, no SysV IPC object of a run uid.

Most attacks are contained only by the per-run namespaces and cgroups of the ``full`` isolation level (root on
Linux, as CI runs).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aioagents.local._isolation import REGISTRY, record_name
from tests.local.conftest import is_root

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        not is_root() or sys.platform != "linux", reason="the attack suite needs a root server on Linux"
    ),
]

LATE = 0.1  # seconds: a ping answered later than this means the server was wedged
DEEP = 1100  # directories: deeper than Python's default recursion limit
UID_RANGE = range(200_000, 200_000 + 4096)  # LocalSandbox's default uid pool
SHARED_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
CGROUP_ROOT = Path("/sys/fs/cgroup")


# -- a real server ---------------------------------------------------------------------------------------------
class Server:
    """``aioagents serve`` in a subprocess, with its run directories under a work dir of the test's own.

    One worker process (``--workers 1``): every worker of a multi-process server is the same sandbox with the same
    containment, and one process's leftovers (root, mounts, cgroups) are what these checks can name exactly. The
    multi-process server's own lifecycle is tested in test_local_workers.py.
    """

    def __init__(self, work_dir: Path | None, *extra: str, new_session: bool = False) -> None:
        self.work_dir = work_dir
        env = dict(os.environ)
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
        argv = [sys.executable, "-m", "aioagents.cli", "serve", "--port", "0", "--workers", "1"]
        if work_dir is not None:  # else the default: a root under /run
            argv += ["--work-dir", str(work_dir)]
        self.proc = subprocess.Popen(
            [*argv, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            start_new_session=new_session,  # a process group of its own, for a test to kill
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if found is None:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise RuntimeError(f"aioagents serve did not start: {line!r} {err[-2000:]!r}")
        self.port = int(found.group(1))
        self.url = f"http://127.0.0.1:{self.port}"
        if work_dir is not None:
            roots = [p for p in work_dir.iterdir() if p.name.startswith("aioagents-local-")]
        else:  # the process factory is told the root on its command line, right after its script and channel
            roots = [factory_root(info[3]) for info in descendants(self.pid).values() if is_factory(info)]
        assert len(roots) == 1, roots
        self.root = roots[0]
        # The server's threads (niceness is per thread on Linux; threads started later inherit it) run ahead of the
        # machine's other work, not of the runs' (forked by the process factory, started earlier): a late ping then
        # says that the loop was blocked, not that a busy machine gave the server, or a worker thread holding the
        # GIL, no CPU.
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            os.setpriority(os.PRIO_PROCESS, int(tid), -10)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(self.pid)
            _, err = self.proc.communicate()
        return self.proc.returncode, err


def proc_table() -> dict[int, tuple[int, int, str, str]]:
    """pid -> (ppid, uid, state, cmdline) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            ppid = int(status.split("\nPPid:")[1].split()[0])
            uid = int(status.split("\nUid:")[1].split()[0])
            state = status.split("\nState:")[1].split()[0]
        except (OSError, IndexError, ValueError):
            continue
        table[int(entry)] = (ppid, uid, state, cmdline)
    return table


def descendants(pid: int) -> dict[int, tuple[int, int, str, str]]:
    table = proc_table()
    children: dict[int, list[int]] = {}
    for p, (ppid, *_rest) in table.items():
        children.setdefault(ppid, []).append(p)
    out = {}
    todo = list(children.get(pid, ()))
    while todo:
        p = todo.pop()
        if p in table:
            out[p] = table[p]
            todo.extend(children.get(p, ()))
    return out


def kill_tree(pid: int) -> None:
    for p in [*descendants(pid), pid]:
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)


def is_factory(info: tuple[int, int, str, str]) -> bool:
    """The process factory itself and its root helper (same program, uid 0): the server's, not a run's."""
    _ppid, uid, _state, cmdline = info
    return uid == 0 and "_zygote.py" in cmdline


def factory_root(cmdline: str) -> Path:
    """The root a factory serves: ``python [-c <loader>] .../_zygote.py <channel fd> <root> <config>``."""
    words = cmdline.split()
    script = next(i for i, word in enumerate(words) if word.endswith("_zygote.py"))
    return Path(words[script + 2])


def sysv_objects() -> set[tuple[str, str, int]]:
    """(kind, key, cuid) of every SysV IPC object a run uid created."""
    found = set()
    for kind in ("shm", "msg", "sem"):
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                header, *rows = f.read().splitlines()
        except OSError:
            continue
        cols = header.split()
        for row in rows:
            values = dict(zip(cols, row.split(), strict=False))
            cuid = int(values.get("cuid", "0"))
            if cuid in UID_RANGE:
                found.add((kind, values.get("key", "?"), cuid))
    return found


def cgroup_dirs(server_pid: int, root: Path) -> set[str]:
    """Every cgroup directory (six levels down) named after this server (its pid or its root directory's name)."""
    found: set[str] = set()
    if not CGROUP_ROOT.is_dir():
        return found
    marks = (root.name, f"aioagents-{server_pid}-")
    for base, dirs, _files in os.walk(CGROUP_ROOT):
        if base[len(str(CGROUP_ROOT)) :].count("/") >= 6:
            dirs[:] = []
            continue
        found.update(os.path.join(base, d) for d in dirs if any(m in d for m in marks))
    return found


def mounts_of(pid: int, root: Path) -> set[str]:
    """The mounts in ``pid``'s mount table that belong to this server: under its root, or named after it.

    (The table is shared with every other server on the machine, whose runs' mounts come and go meanwhile.)
    """
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return set()
    return {" ".join(line.split()[3:5]) for line in lines if root.name in line or f"aioagents-{pid}-" in line}


PINGER = r"""
import http.client, json, sys, threading, time
port = int(sys.argv[1])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
delays, errors = [], []
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
print("ready", flush=True)
while not stop.is_set():
    started = time.perf_counter()
    try:
        conn.request("GET", "/v1/ping")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200 or body != b'"pong"':
            errors.append(f"{resp.status} {body[:100]!r}")
    except (OSError, http.client.HTTPException) as exc:
        errors.append(repr(exc))
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    delays.append(time.perf_counter() - started)
    stop.wait(0.01)
print(json.dumps({"delays": delays, "errors": errors}), flush=True)
"""


class Pinger:
    """Asks ``/v1/ping`` on one keep-alive connection, every 10 ms, and records every answer's delay.

    From a process of its own: in a thread of the test process, the test's own work (decoding a 40 MB answer holds
    the GIL) would delay the pings and blame the server.
    """

    def __init__(self, port: int) -> None:
        self._port = port
        self.delays: list[float] = []
        self.errors: list[str] = []
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Pinger:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", PINGER, str(self._port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        os.setpriority(os.PRIO_PROCESS, self._proc.pid, -10)
        assert self._proc.stdout.readline() == "ready\n"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        out, _ = self._proc.communicate("", timeout=60)
        report = json.loads(out)
        self.delays, self.errors = report["delays"], report["errors"]

    def check(self, when: str) -> None:
        assert not self.errors, f"ping failed {when}: {self.errors[:3]}"
        assert self.delays, f"no ping answered {when}"
        late = [round(d, 3) for d in self.delays if d > LATE]
        assert not late, f"the server was wedged {when}: pings answered after {late} s (of {len(self.delays)})"


class Watch:
    """What the server had before an attack, to tell what the attack left; and a pinger for its whole length."""

    def __init__(self, server: Server, token: str) -> None:
        self.server = server
        self.token = token
        self.procs = descendants(server.pid)
        self.entries = set(os.listdir(server.root))  # the interpreter's data dir, a kernel an earlier test started
        self.mounts = mounts_of(server.pid, server.root)
        self.ipc = sysv_objects()
        self.cgroups = cgroup_dirs(server.pid, server.root)
        self.pinger = Pinger(server.port)

    def leftovers(self) -> list[str]:
        server = self.server
        found = []
        now = descendants(server.pid)
        for pid, info in now.items():
            if pid not in self.procs and not is_factory(info) and info[2] != "Z":
                found.append(f"process {pid} uid={info[1]} {info[3][:120]}")
        found += [f"run directory {p}" for p in sorted(os.listdir(server.root)) if p not in self.entries]
        for top in SHARED_DIRS:
            with contextlib.suppress(OSError):
                found += [f"file {top}/{n}" for n in os.listdir(top) if self.token in n]
        found += [f"mount {m}" for m in sorted(mounts_of(server.pid, server.root) - self.mounts)]
        found += [f"SysV {k}" for k in sorted(sysv_objects() - self.ipc)]
        found += [f"cgroup {c}" for c in sorted(cgroup_dirs(server.pid, server.root) - self.cgroups)]
        return found

    async def assert_clean(self, deadline: float = 20.0) -> None:
        """Nothing of the attack is left (cleanup may finish after the answer: wait for it, up to ``deadline``)."""
        end = time.monotonic() + deadline
        while True:
            left = await asyncio.to_thread(self.leftovers)
            if not left or time.monotonic() > end:
                break
            await asyncio.sleep(0.1)
        assert left == [], f"left behind: {left[:10]}"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="aioagents-attack-") as work:
        os.chmod(work, 0o755)
        srv = Server(Path(work))
        try:
            yield srv
        finally:
            code, err = srv.stop()
            assert code == 0, err[-3000:]


@contextlib.asynccontextmanager
async def attack(server: Server) -> AsyncIterator[tuple[Watch, str]]:
    """A fresh token for the attack's marked paths; checks the pings during and after it, and that nothing is left."""
    assert server.proc.poll() is None, "the server is gone"
    token = "wedge" + secrets.token_hex(6)
    watch = await asyncio.to_thread(Watch, server, token)
    with watch.pinger:
        yield watch, token
    watch.pinger.check("during the attack")
    await watch.assert_clean()
    after = Pinger(server.port)
    with after:
        await asyncio.sleep(0.5)
    after.check("after the attack")


async def run_code(server: Server, code: str, *, language: str = "python", **kw: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s:
        body = {"code": code, "language": language, **kw}
        async with s.post(f"{server.url}/run_code", json=body, timeout=aiohttp.ClientTimeout(total=180)) as r:
            assert r.status == 200, await r.text()
            answer: dict[str, Any] = await r.json()
    return answer


def hidden(secret: str) -> str:
    """The sha256 of a secret: a reader may look for the secret by its hash without holding it in memory."""
    return hashlib.sha256(secret.encode()).hexdigest()


# A program that looks for a secret ("XQ" + 16 hex digits) by its hash; it never holds the secret itself.
FINDER = """
import hashlib, re
WANT = {want!r}
PATTERN = re.compile(rb"XQ[0-9a-f]{{16}}")
def hit(data):
    for m in PATTERN.finditer(data):
        if hashlib.sha256(m.group()).hexdigest() == WANT:
            return True
    return False
"""


# == Runs read each other ==========================================================================================
async def test_a_run_cannot_find_an_earlier_runs_program_in_its_own_memory(server: Server) -> None:
    secret = "XQ" + secrets.token_hex(8)
    # /proc/self/mem is closed to a process that changed uid; its own memory is read in place, region by region.
    scanner = FINDER.format(want=hidden(secret)) + (
        "import ctypes\n"
        "found = False\n"
        "for line in open('/proc/self/maps').read().splitlines():\n"
        "    addr, perms = line.split()[:2]\n"
        "    if not perms.startswith('r') or '[v' in line:\n"
        "        continue\n"
        "    lo, hi = (int(x, 16) for x in addr.split('-'))\n"
        "    while lo < hi and not found:\n"
        "        n = min(hi - lo, 1 << 24)\n"
        "        found = hit(ctypes.string_at(lo, n))\n"
        "        lo += n\n"
        "print('LEAK' if found else 'clean')\n"
    )
    async with attack(server) as (_watch, _token):
        for _ in range(3):  # the earlier runs carry the secret in their program, an environment and a file
            body = await run_code(
                server,
                f"key = {secret!r}\nprint(len(key))\n",
                files={"secret.txt": base64.b64encode(secret.encode()).decode()},
            )
            assert body["status"] == "Success", body
        body = await run_code(server, scanner, run_timeout=60)
        assert body["run_result"]["stdout"] == "clean\n", body


async def test_a_run_sees_no_process_of_another_run(server: Server) -> None:
    secret = "XQ" + secrets.token_hex(8)
    looker = FINDER.format(want=hidden(secret)) + (
        "import os\n"
        "me = os.getuid()\n"
        "others, leak = set(), False\n"
        "for pid in os.listdir('/proc'):\n"
        "    if not pid.isdigit():\n"
        "        continue\n"
        "    try:\n"
        "        status = open(f'/proc/{pid}/status').read()\n"
        "        uid = int(status.split('\\nUid:')[1].split()[0])\n"
        "        leak = leak or hit(open(f'/proc/{pid}/cmdline', 'rb').read()) or hit(status.encode())\n"
        "    except (OSError, IndexError, ValueError):\n"
        "        continue\n"
        f"    if uid != me and uid in range({UID_RANGE.start}, {UID_RANGE.stop}):\n"
        "        others.add(uid)\n"
        "print('LEAK' if leak else 'clean', sorted(others))\n"
    )
    async with attack(server) as (_watch, _token):
        # Another run holds the secret in its command line while this one looks.
        victim = asyncio.ensure_future(run_code(server, f"exec -a {secret} sleep 4", language="bash", run_timeout=6))
        await asyncio.sleep(1.5)
        body = await run_code(server, looker)
        await victim
        assert body["run_result"]["stdout"] == "clean []\n", body


async def test_what_a_run_leaves_in_tmp_is_gone_before_its_uid_is_reused_even_past_a_deep_tree(
    server: Server,
) -> None:
    async with attack(server) as (_watch, token):
        code = (
            "import os\n"
            f"top = '/tmp/{token}-deep'\n"
            "os.mkdir(top)\n"
            "fd = os.open(top, os.O_RDONLY)\n"
            f"for _ in range({DEEP}):\n"
            "    os.mkdir('d', dir_fd=fd)\n"
            "    nfd = os.open('d', os.O_RDONLY, dir_fd=fd)\n"
            "    os.close(fd)\n"
            "    fd = nfd\n"
            f"for d in ('/tmp', '/var/tmp', '/dev/shm'):\n"
            f"    open(f'{{d}}/{token}-secret', 'w').write('for the next holder of my uid')\n"
            "print('planted')\n"
        )
        body = await run_code(server, code)
        assert body["run_result"]["stdout"] == "planted\n", body
    # attack() found nothing with the token in the shared directories afterwards: the deep tree went, and the
    # sweep did not stop at it (the files next to it went too).


# == Network ========================================================================================================
async def test_a_run_cannot_connect_to_a_loopback_service(server: Server) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
        "    print('CONNECTED')\n"
        "except OSError as exc:\n"
        "    print('refused', type(exc).__name__)\n"
    )
    try:
        async with attack(server) as (_watch, _token):
            body = await run_code(server, code)
            assert body["run_result"]["stdout"].startswith("refused"), body
            with pytest.raises(TimeoutError):
                listener.accept()[0].close()
    finally:
        listener.close()


async def test_a_run_listening_on_all_addresses_is_not_reachable(server: Server) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = (
        "import socket, time\n"
        "s = socket.socket()\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('0.0.0.0', {port}))\n"
        "s.listen()\n"
        "s.settimeout(4)\n"
        "try:\n"
        "    s.accept()\n"
        "    print('ACCEPTED')\n"
        "except OSError:\n"
        "    print('nobody came')\n"
    )
    async with attack(server) as (_watch, _token):
        task = asyncio.ensure_future(run_code(server, code, run_timeout=8))
        await asyncio.sleep(1.5)

        def reach() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return False
            return True

        reached = await asyncio.to_thread(reach)
        body = await task
        assert not reached
        assert "ACCEPTED" not in body["run_result"]["stdout"], body


HTTP_FROM_A_RUN = """
import json, urllib.request
def post(path, data, ctype="application/json"):
    req = urllib.request.Request({url!r} + path, data=data, headers={{"Content-Type": ctype}})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return "REACHED %d %s" % (r.status, r.read()[:200])
    except Exception as exc:
        return "unreachable " + type(exc).__name__
"""


async def test_a_run_cannot_reach_the_sandbox_api_for_a_nested_run(server: Server) -> None:
    code = HTTP_FROM_A_RUN.format(url=server.url) + (
        "print(post('/run_code', json.dumps({'code': 'print(6 * 7)', 'language': 'python'}).encode()))\n"
    )
    async with attack(server) as (_watch, _token):
        body = await run_code(server, code)
        assert body["run_result"]["stdout"].startswith("unreachable"), body


async def test_a_run_cannot_use_the_interpreter_api_to_leave_a_daemon(server: Server) -> None:
    daemon = "import subprocess; subprocess.Popen(['sleep', '300'], start_new_session=True)"
    code = HTTP_FROM_A_RUN.format(url=server.url) + (
        f"print(post('/execute', json.dumps({{'code': {daemon!r}, 'timeout_secs': 20}}).encode()))\n"
    )
    async with attack(server) as (_watch, _token):
        body = await run_code(server, code, run_timeout=30)
        assert body["run_result"]["stdout"].startswith("unreachable"), body


async def test_a_run_cannot_plant_a_file_through_the_upload_api(server: Server) -> None:
    async with attack(server) as (_watch, token):
        code = HTTP_FROM_A_RUN.format(url=server.url) + (
            f"print(post('/files/upload/-/mnt/data/{token}', b'planted', 'application/octet-stream'))\n"
        )
        body = await run_code(server, code)
        assert body["run_result"]["stdout"].startswith("unreachable"), body
        assert not (server.root / "data" / token).exists()


async def test_runs_cannot_reach_each_other_through_an_abstract_unix_socket(server: Server) -> None:
    async with attack(server) as (_watch, token):
        listener = (
            "import socket\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            f"s.bind('\\0{token}')\n"
            "s.listen()\n"
            "s.settimeout(4)\n"
            "try:\n"
            "    s.accept()\n"
            "    print('ACCEPTED')\n"
            "except OSError:\n"
            "    print('nobody came')\n"
        )
        caller = (
            "import socket\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n"
            f"    s.connect('\\0{token}')\n"
            "    print('CONNECTED')\n"
            "except OSError as exc:\n"
            "    print('refused', type(exc).__name__)\n"
        )
        first = asyncio.ensure_future(run_code(server, listener, run_timeout=8))
        await asyncio.sleep(1.5)
        second = await run_code(server, caller)
        first_body = await first
        assert second["run_result"]["stdout"].startswith("refused"), second
        assert first_body["run_result"]["stdout"] == "nobody came\n", first_body


# == Cleanup can be defeated =========================================================================================
async def test_a_files_entry_1100_directories_deep_is_written_and_removed(server: Server) -> None:
    deep = "d/" * DEEP + "leaf.txt"
    async with attack(server) as (_watch, _token):
        code = (
            "import os\n"
            "fd = os.open('.', os.O_RDONLY)\n"
            f"for _ in range({DEEP}):\n"
            "    nfd = os.open('d', os.O_RDONLY, dir_fd=fd)\n"
            "    os.close(fd)\n"
            "    fd = nfd\n"
            "print(os.read(os.open('leaf.txt', os.O_RDONLY, dir_fd=fd), 100).decode())\n"
        )
        body = await run_code(
            server, code, files={deep: base64.b64encode(b"at the bottom").decode()}, fetch_files=[deep]
        )
        assert body["status"] == "Success", body
        assert body["run_result"]["stdout"] == "at the bottom\n"
        assert base64.b64decode(body["files"][deep]) == b"at the bottom"


async def test_a_run_that_nests_1100_directories_leaves_nothing(server: Server) -> None:
    async with attack(server) as (_watch, _token):
        code = (
            "import os\n"
            "fd = os.open('.', os.O_RDONLY)\n"
            f"for i in range({DEEP}):\n"
            "    os.mkdir('d', dir_fd=fd)\n"
            "    nfd = os.open('d', os.O_RDONLY, dir_fd=fd)\n"
            "    os.close(fd)\n"
            "    fd = nfd\n"
            "    if i % 100 == 0:\n"
            "        os.symlink('/etc', 'escape', dir_fd=fd)\n"  # followed, a removal would empty /etc
            "        os.close(os.open('f', os.O_CREAT | os.O_WRONLY, 0o000, dir_fd=fd))\n"
            "os.chmod('d', 0)\n"
            "print('nested')\n"
        )
        body = await run_code(server, code)
        assert body["run_result"]["stdout"] == "nested\n", body
    assert await asyncio.to_thread(os.path.exists, "/etc/passwd")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_the_server_closes_cleanly_on_a_signal_after_deep_trees(sig: int) -> None:
    token = "wedge" + secrets.token_hex(6)
    with tempfile.TemporaryDirectory(prefix="aioagents-attack-") as work:
        os.chmod(work, 0o755)
        srv = Server(Path(work))
        try:
            before_ipc = sysv_objects()
            code = (
                "import os, subprocess\n"
                f"for top in ('.', '/tmp/{token}'):\n"
                "    os.makedirs(top, exist_ok=True)\n"
                "    fd = os.open(top, os.O_RDONLY)\n"
                f"    for _ in range({DEEP}):\n"
                "        os.mkdir('d', dir_fd=fd)\n"
                "        nfd = os.open('d', os.O_RDONLY, dir_fd=fd)\n"
                "        os.close(fd)\n"
                "        fd = nfd\n"
                "subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
                "print('nested')\n"
            )
            body = await run_code(srv, code)
            assert body["run_result"]["stdout"] == "nested\n", body
            # A run still going when the signal comes.
            pending = asyncio.ensure_future(run_code(srv, "import time\ntime.sleep(60)", run_timeout=120))
            await asyncio.sleep(1.0)
            pid = srv.pid
            code_, err = await asyncio.to_thread(srv.stop, sig)
            with contextlib.suppress(aiohttp.ClientError, AssertionError):
                await pending
            assert code_ == 0, err[-3000:]
            assert "Traceback" not in err, err[-3000:]
            assert not srv.root.exists()
            assert os.listdir(work) == []
            assert descendants(pid) == {}
            assert not await asyncio.to_thread(os.path.exists, f"/tmp/{token}")
            assert sysv_objects() - before_ipc == set()
            assert cgroup_dirs(pid, srv.root) == set()
            table = await asyncio.to_thread(Path("/proc/self/mountinfo").read_text)
            assert srv.root.name not in table  # no mount of its runs left in the host's table
        finally:
            if srv.proc.poll() is None:
                kill_tree(srv.pid)
                srv.proc.communicate()


# == Limits are per process ==========================================================================================
# The figures: 5 x 400 MB resident, memfd 4 x 200 MB and SysV segments of 2 x 400 MB, all under
# memory_limit_MB=512. The run's cgroup (memory and swap) caps each attack at the limit, so the host never holds more
# than ~512 MB for one.
async def test_memory_limit_bounds_the_whole_run_not_each_process(server: Server) -> None:
    code = (
        "import os, sys, time\n"
        "r, w = os.pipe()\n"
        "for _ in range(5):\n"
        "    if os.fork() == 0:\n"
        "        try:\n"
        "            block = b'\\x01' * (400 << 20)\n"
        "            os.write(w, b'+')\n"
        "            time.sleep(3)\n"
        "        finally:\n"
        "            os._exit(0)\n"
        "os.close(w)\n"
        "held = 0\n"
        "while os.read(r, 1):\n"
        "    held += 1\n"
        "print('held', held)\n"
    )
    async with attack(server) as (_watch, _token):
        body = await run_code(server, code, memory_limit_MB=512, run_timeout=30)
        assert body["run_result"]["stdout"] != "held 5\n", body
        assert body["status"] == "Failed", body
        assert "memory" in body["run_result"]["stderr"].lower(), body


async def test_memfd_counts_against_the_memory_limit(server: Server) -> None:
    code = (
        "import os\n"
        "fds, written = [], 0\n"
        "try:\n"
        "    for i in range(4):\n"
        "        fd = os.memfd_create(f'm{i}')\n"
        "        fds.append(fd)\n"
        "        chunk = b'\\x01' * (1 << 20)\n"
        "        for _ in range(200):\n"
        "            written += os.write(fd, chunk)\n"
        "finally:\n"
        "    print('written', written >> 20, flush=True)\n"
    )
    async with attack(server) as (_watch, _token):
        body = await run_code(server, code, memory_limit_MB=512, run_timeout=30)
        assert body["run_result"]["stdout"] != "written 800\n", body
        assert body["status"] == "Failed", body
        assert "memory" in body["run_result"]["stderr"].lower(), body


SHM = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
size = 400 << 20
for key in ({key}, {key} + 1):
    shmid = libc.shmget(key, size, 0o1000 | 0o600)  # IPC_CREAT
    print('shmid', shmid, flush=True)
    addr = libc.shmat(shmid, None, 0)
    ctypes.memset(addr, 1, size)
print('TOUCHED', flush=True)
"""


async def test_sysv_shared_memory_is_limited_and_dies_with_the_run(server: Server) -> None:
    key = secrets.randbelow(1 << 30) + 2
    async with attack(server) as (_watch, _token):
        body = await run_code(server, SHM.format(key=key), memory_limit_MB=512, run_timeout=30)
        assert "TOUCHED" not in body["run_result"]["stdout"], body
        assert body["status"] == "Failed", body
        assert "memory" in body["run_result"]["stderr"].lower(), body
    # attack() found no SysV object of a run uid left; the keys, whoever created them, are gone too.
    rows = (await asyncio.to_thread(Path("/proc/sysvipc/shm").read_text)).splitlines()[1:]
    assert not any(row.split()[0] in (str(key), str(key + 1)) for row in rows)


async def test_run_lock_is_private_to_the_run(server: Server) -> None:
    async with attack(server) as (_watch, token):
        code = (
            "try:\n"
            f"    open('/run/lock/{token}', 'w').write('left for later')\n"
            "    print('written')\n"
            "except OSError as exc:\n"
            "    print('denied', type(exc).__name__)\n"
        )
        body = await run_code(server, code)
        assert body["status"] == "Success", body
    # attack() checked that no /run/lock entry with the token is left: written in a private tmpfs, or refused.


async def test_the_run_directory_has_a_disk_cap(server: Server) -> None:
    code = (
        "import os\n"
        "chunk = b'\\x01' * (1 << 20)\n"
        "written = 0\n"
        "try:\n"
        "    for i in range(4):\n"
        "        with open(f'big{i}', 'wb') as f:\n"
        "            for _ in range(255):\n"
        "                written += f.write(chunk)\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)\n"
        "print('written', written >> 20, flush=True)\n"
    )
    async with attack(server) as (_watch, _token):
        body = await run_code(server, code, memory_limit_MB=256, run_timeout=60)
        assert "written 1020" not in body["run_result"]["stdout"], body


# == The server can be wedged ========================================================================================
async def test_a_run_cannot_stop_the_process_factory_or_its_helpers(server: Server) -> None:
    # A child leaves the run's session and stops every process it may signal, over and over: the uid killer
    # becomes this uid for an instant each time it kills a run's leftovers. Then more runs must still go.
    stopper = (
        "import os, signal, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    time.sleep(0.05)\n"  # the run's main process ends first, and the factory clears the uid
        "    end = time.monotonic() + 20\n"
        "    while time.monotonic() < end:\n"
        "        try:\n"
        "            os.kill(-1, signal.SIGSTOP)\n"
        "        except OSError:\n"
        "            pass\n"
        "    os._exit(0)\n"
        "print('started')\n"
    )
    # What the run can see besides itself: in a PID namespace of its own, its init at most.
    code = (
        "import os\n"
        "me = os.getpid()\n"
        "others = []\n"
        "for pid in os.listdir('/proc'):\n"
        "    if pid.isdigit() and int(pid) != me:\n"
        "        others.append(pid)\n"
        "print('others', len(others))\n"
    )
    async with attack(server) as (_watch, _token):
        for _ in range(5):
            await run_code(server, stopper, run_timeout=5)
        body = await asyncio.wait_for(run_code(server, code), 60)
        # Outside a PID namespace of its own a run sees every process, the factory's helpers included, and may stop
        # any that takes its uid, even for an instant; inside one, it sees its own processes and its init.
        assert int(body["run_result"]["stdout"].split()[1]) <= 1, body


async def test_150000_files_from_one_run_do_not_block_the_server(server: Server) -> None:
    # Removing them takes seconds: never on the event loop. (A cap on the run's inodes may stop it earlier.)
    code = (
        "import errno, os\n"
        "os.mkdir('many')\n"
        "fd = os.open('many', os.O_RDONLY)\n"
        "n = 0\n"
        "try:\n"
        "    for n in range(1, 150_001):\n"
        "        os.close(os.open(str(n), os.O_CREAT | os.O_WRONLY, dir_fd=fd))\n"
        "    print('created', n)\n"
        "except OSError as exc:\n"
        "    assert exc.errno in (errno.ENOSPC, errno.EDQUOT), exc\n"
        "    print('capped', n - 1)\n"
    )
    async with attack(server) as (_watch, _token):
        body = await run_code(server, code, run_timeout=120)
        outcome, count = body["run_result"]["stdout"].split()
        assert (outcome, count) == ("created", "150000") or (outcome == "capped" and int(count) >= 10_000), body


async def test_fetching_one_big_file_under_many_spellings_is_bounded(server: Server) -> None:
    spellings = ["a", "./a", "././a", "a/.", ".//a", "./././a"]
    make = "import os\nwith open('a', 'wb') as f:\n    f.truncate({size})\n    f.seek({size} - 1)\n    f.write(b'z')\n"

    def peak() -> int:
        with open(f"/proc/{server.pid}/status") as f:
            return int(f.read().split("\nVmHWM:")[1].split()[0]) << 10

    async with attack(server) as (_watch, _token):
        before = await asyncio.to_thread(peak)
        # Over the cap: six names of one 64 MB file is 384 MB of answer. A typed answer, the run's output kept.
        body = await run_code(server, make.format(size=64 << 20) + "print('made')", fetch_files=spellings)
        assert body["status"] == "SandboxError", {k: v for k, v in body.items() if k != "files"}
        assert "fetch_files" in body["message"]
        assert body["files"] == {}
        assert body["run_result"]["stdout"] == "made\n"
        # Within the cap: six names of one 5 MB file, each answered, the file read once.
        body = await run_code(server, make.format(size=5 << 20) + "print('made')", fetch_files=spellings)
        assert body["status"] == "Success", {k: v for k, v in body.items() if k != "files"}
        assert sorted(body["files"]) == sorted(spellings)
        content = base64.b64decode(body["files"]["a"])
        assert len(content) == 5 << 20
        assert content.endswith(b"z")
        assert len({v for v in body["files"].values()}) == 1
        grown = await asyncio.to_thread(peak) - before
        # 5 MB read once: base64 (7 MB), six copies in the JSON (40 MB) and what is sent. Far from 2 GB.
        assert grown < 256 << 20, f"the server grew by {grown >> 20} MB"


# == Nothing is left when the server is killed =======================================================================
# Busy runs when the kill comes: one sleeping, one with a daemon in a session of its own, one holding SysV shared
# memory and a file in /dev/shm (its private one), one writing to its run directory.
BUSY = (
    "import time\ntime.sleep(120)",
    "import subprocess, time\nsubprocess.Popen(['sleep', '300'], start_new_session=True)\ntime.sleep(120)",
    "import ctypes, time\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "libc.shmget.restype = ctypes.c_int\n"
    "assert libc.shmget(0x5eed, 1 << 20, 0o1600) >= 0\n"
    "open('/dev/shm/busy', 'w').write('x')\n"
    "time.sleep(120)",
    "import time\nwhile True:\n    open('out', 'a').write('x' * 4096)\n    time.sleep(0.01)",
)


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


class Footprint:
    """Everything of one server on the host, taken while it runs: its processes (the server, its process factory,
    every run's init and processes; each by pid *and* start time, so a reused pid is not mistaken for them), its
    root directory and the mounts and cgroups named after it or under it, and the SysV objects of run uids."""

    def __init__(self, server: Server, ipc_before: set[tuple[str, str, int]]) -> None:
        self.server_pid = server.pid
        self.root = server.root
        self.procs = {pid: (_start_time(pid), info[3][:100]) for pid, info in descendants(server.pid).items()}
        self.procs[server.pid] = (_start_time(server.pid), "the server")
        self.ipc_before = ipc_before

    def left(self) -> list[str]:
        found = [f"process {pid} {what}" for pid, (start, what) in self.procs.items() if _start_time(pid) == start]
        if self.root.exists():
            found.append(f"directory {self.root}")
        table = Path("/proc/self/mountinfo").read_text()
        found += [f"mount {line.split()[4]}" for line in table.splitlines() if self.root.name in line]
        found += [f"cgroup {c}" for c in sorted(cgroup_dirs(self.server_pid, self.root))]
        found += [f"SysV {k}" for k in sorted(sysv_objects() - self.ipc_before)]
        if (REGISTRY / record_name(self.root)).exists():
            found.append(f"the record of {self.root} in {REGISTRY}")
        return found

    def processes_left(self) -> list[str]:
        return [f for f in self.left() if f.startswith("process ")]


async def wait_until(check: Any, deadline: float) -> list[str]:
    """``check()`` (a list of what is left) once it is empty, or when ``deadline`` seconds have passed."""
    end = time.monotonic() + deadline
    while True:
        left: list[str] = await asyncio.to_thread(check)
        if not left or time.monotonic() > end:
            return left
        await asyncio.sleep(0.1)


async def busy_server(*, new_session: bool = False) -> tuple[Server, Footprint, list[asyncio.Future[Any]]]:
    """``aioagents serve`` with its default root under /run, four programs of :data:`BUSY` running in it."""
    ipc_before = await asyncio.to_thread(sysv_objects)
    srv = await asyncio.to_thread(lambda: Server(None, new_session=new_session))
    # (fetch_files: each run's directory is a tmpfs on the host, under the root, the state a killed server can leave;
    # a run of one step has its directory in its private /tmp, nothing of it on the host.)
    runs = [asyncio.ensure_future(run_code(srv, code, run_timeout=150, fetch_files=["out"])) for code in BUSY]
    try:
        assert srv.root.parent == Path("/run"), srv.root
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # every run started: its directory is there, its programs run
            # the factory, each run's init and program, and the daemon of one
            if sum(1 for _ in srv.root.glob("run-*")) >= len(BUSY) and len(descendants(srv.pid)) >= 2 * len(BUSY) + 2:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        footprint = await asyncio.to_thread(Footprint, srv, ipc_before)
        assert len(footprint.procs) >= 2 * len(BUSY) + 3, footprint.procs  # and the server
    except BaseException:
        await asyncio.to_thread(srv.stop)
        await reap(srv, runs)
        raise
    return srv, footprint, runs


async def reap(srv: Server, runs: list[asyncio.Future[Any]]) -> None:
    for run in runs:
        with contextlib.suppress(aiohttp.ClientError, AssertionError, asyncio.TimeoutError):
            await run
    # A server just sent SIGKILL may still be exiting, its factory still its child: killing its tree then took the
    # factory, whose own clean-up the test is about, with it (the "leak" seen once in CI and 1 run in 34 here).
    # Once the server has exited its factory is someone else's child, out of the tree.
    with contextlib.suppress(subprocess.TimeoutExpired):
        await asyncio.to_thread(srv.proc.wait, 5)
    if srv.proc.poll() is None:
        kill_tree(srv.pid)
    await asyncio.to_thread(srv.proc.communicate)


@pytest.mark.parametrize("group", [False, True], ids=["the-server", "its-process-group"])
async def test_a_server_killed_alone_leaves_nothing_once_its_factory_has_cleaned_up(group: bool) -> None:
    """SIGKILL of the server, or of its process group (the factory has a session of its own, so it lives on):
    the factory sees the channel close and releases everything itself, within a bounded wait (20 s here; about a
    second on an idle machine)."""
    srv, footprint, runs = await busy_server(new_session=group)
    try:
        if group:
            os.killpg(srv.pid, signal.SIGKILL)
        else:
            os.kill(srv.pid, signal.SIGKILL)
        await reap(srv, runs)
        left = await wait_until(footprint.left, 20)
        assert left == [], left
    finally:
        await reap(srv, runs)


async def test_a_server_killed_with_every_process_of_it_leaves_nothing_after_the_next_start() -> None:
    """SIGKILL of the server, its process factory and every run at once (what a session's end, a cgroup kill or Ray
    killing a dead worker's children do): no process is left within a bounded wait (each run's init dies with the
    factory, and the run with it); the root, its mounts and its cgroups, which nothing was left to release, go at
    the next start of a server on this host."""
    srv, footprint, runs = await busy_server()
    try:
        kill_tree(srv.pid)
        await reap(srv, runs)
        assert await wait_until(footprint.processes_left, 20) == []
        assert footprint.root.exists()  # nothing was left to release it: the next server's start does
        after = await asyncio.to_thread(Server, None)
        try:
            left = await asyncio.to_thread(footprint.left)
        finally:
            code, err = await asyncio.to_thread(after.stop)
        assert left == [], left
        assert code == 0, err[-3000:]
    finally:
        await reap(srv, runs)


async def test_a_killed_process_factory_takes_its_runs_with_it_and_is_replaced() -> None:
    """SIGKILL of the process factory alone: every run's init dies with it (no init left pausing forever, no run
    left in its cgroup), the runs answer at once, and the server goes on with a new factory and closes cleanly."""
    srv, footprint, runs = await busy_server()
    try:
        factory = next(pid for pid, info in descendants(srv.pid).items() if is_factory(info))
        os.kill(factory, signal.SIGKILL)
        bodies = await asyncio.wait_for(asyncio.gather(*runs), 30)
        assert all(b["status"] == "SandboxError" for b in bodies), bodies
        of_factory = {pid: v for pid, v in footprint.procs.items() if pid != srv.pid}

        def factory_left() -> list[str]:
            return [f"process {pid} {what}" for pid, (start, what) in of_factory.items() if _start_time(pid) == start]

        assert await wait_until(factory_left, 20) == []
        body = await run_code(srv, "print(6 * 7)")
        assert body["run_result"]["stdout"] == "42\n", body
        code, err = await asyncio.to_thread(srv.stop)
        assert code == 0, err[-3000:]
        left = await wait_until(footprint.left, 20)
        assert left == [], left
    finally:
        await reap(srv, runs)
