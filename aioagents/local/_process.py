"""Running one sandboxed process: the zygote client, output capture with a cap, timeouts, and cleanup.

Every process of the local sandbox (user programs, compilers, Jupyter kernels) is forked by the zygote
(``_zygote.py``), never by the threaded server process itself. A run's processes live in their own session and
process group, and — when the server runs as root — under a uid of their own taken from a pool, so that
``RLIMIT_NPROC`` binds, files outside the run directory are not writable, and every process of the run, including
one that left the session, can be found and killed by uid afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import itertools
import json
import logging
import math
import os
import signal
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from aioagents import _json as fast_json
from aioagents.local._paths import remove_tree

__all__ = ["Limits", "ProcessResult", "UidPool", "ZygoteClient"]

_log = logging.getLogger("aioagents.local")

_ZYGOTE_SCRIPT = Path(__file__).with_name("_zygote.py")
#: How the factory starts: ``_zygote.py`` loaded as a module, from its cached bytecode when there is some (see
#: ``_zygote_bytecode``), not run as a script, which Python compiles every time. Compiling those 1,300 lines left
#: ~3 MB of the compiler's memory in the factory, which every fork copied the page tables of and every run's exit
#: tore down (the factory's anonymous memory: 9.1 MB from source, 6.4 MB from bytecode).
_ZYGOTE_BOOT = (
    "import sys, importlib.util as u; sys.argv = sys.argv[1:]; "
    "s = u.spec_from_file_location('_aioagents_zygote', sys.argv[0]); m = u.module_from_spec(s); "
    "sys.modules[s.name] = m; s.loader.exec_module(m); m.main()"
)


_MAX_PACKET = 1 << 16  # the most a factory's answer may be
#: The most a run's description may be: it goes through a pipe the child reads, never through the factory, and may
#: carry the program (``private_files``: up to 48 KiB of UTF-8, at most 6 bytes of JSON a byte).
_MAX_DESCRIPTION = 1 << 20
_MAX_REQUEST = 4096  # the zygote's receive buffer for requests (_zygote._MAX_MSG)
_ZYGOTE_PATH_VAR = "AIOAGENTS_ZYGOTE_PYTHONPATH"  # _zygote.py reads it
_CPUS = os.cpu_count() or 1
# A char is at most 12 bytes in ASCII JSON (a non-BMP one: two \uXXXX escapes), so this always fits one packet.
_INLINE_SOURCE_CHARS = 4 << 10


def _zygote_bytecode() -> None:
    """Write ``_zygote.py``'s bytecode cache when it is missing, as importing it would (best effort: not where the
    install is read-only, nor when bytecode writing is off). The sandbox's Python, of the server's version (see
    ``make_environment``), shares its cache tag; another one compiles the source as before."""
    if sys.dont_write_bytecode:
        return
    import importlib.util
    import py_compile

    try:
        if not os.path.exists(importlib.util.cache_from_source(str(_ZYGOTE_SCRIPT))):
            py_compile.compile(str(_ZYGOTE_SCRIPT), doraise=True)
    except (OSError, py_compile.PyCompileError, NotImplementedError, ValueError):
        pass


@attrs.frozen(kw_only=True)
class Limits:
    """Resource limits applied to every sandboxed run (per process unless stated).

    * ``max_output_bytes``: cap of each of stdout and stderr; what is cut is replaced by a visible marker
      ``[truncated: N bytes omitted]`` (the output is still drained, so the program never blocks on it).
    * ``memory_mb``: the data-segment limit (``RLIMIT_DATA``) when a request gives no ``memory_limit_MB``, and the
      most a request may ask for. It counts heap and anonymous mappings, not the address-space reservations that
      JVMs and V8 make, so those runtimes still start.
    * ``max_processes``: ``RLIMIT_NPROC``; binds only when the server runs as root (each run then has a uid of its
      own). An unprivileged server cannot give a run a process count of its own.
    * ``max_file_size_mb``, ``max_open_files``: ``RLIMIT_FSIZE`` and ``RLIMIT_NOFILE``.
    * ``max_timeout``: the largest ``run_timeout``/``compile_timeout``/``cell_timeout``/``total_timeout`` accepted.
    * ``max_disk_mb``: with full isolation, the size of the run directory's tmpfs and of each private /tmp,
      /var/tmp, /dev/shm and /run/lock (all of it memory, also bounded by the run's cgroup).

    With full isolation (root on Linux) the memory limit also bounds the whole run through its cgroup (every
    process, tmpfs, memfd and shared memory together), and ``max_processes`` is its cgroup's pids limit.
    """

    max_output_bytes: int = 1 << 20
    memory_mb: int = 2048
    max_processes: int = 256
    max_file_size_mb: int = 256
    max_open_files: int = 1024
    max_timeout: float = 600.0
    max_disk_mb: int = 1024


@attrs.frozen(kw_only=True)
class ProcessResult:
    """What one sandboxed command did, in the units of the wire's CommandRunResult."""

    status: Literal["Finished", "TimeLimitExceeded", "Error"]
    return_code: int | None
    stdout: str
    stderr: str
    execution_time: float
    cpu_time: float | None = None
    #: The process factory killed every process of the run's uid after it exited, so the uid may be reused as is.
    uid_clear: bool = False
    #: The run's cgroup killed a process of it for memory (its stderr says so).
    oom: bool = False


#: World-writable directories that sandboxed code can write outside its run directory.
SHARED_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
_SWEEP_DELAY = 0.2  # seconds: released uids are swept in batches


class UidPool:
    """Hands out one unprivileged uid (and a gid of the same number) per concurrent run.

    Only used when the server is root. Several servers may run on one machine (tests, a CLI run next to
    ``aioagents serve``), and two runs sharing a uid would kill each other's processes, so a uid is claimed with an
    ``flock`` on a file in a root-only directory: the kernel releases it if the server dies.

    A run can still write to the world-writable ``/tmp``, ``/var/tmp`` and ``/dev/shm``. So a released uid (every
    process of it killed) is quarantined until a sweep has removed what it left there; only then may another run
    get it and see nothing of the last one. Sweeps run in a thread, batched every ``_SWEEP_DELAY`` seconds.
    """

    def __init__(
        self,
        base: int,
        size: int,
        lock_dir: Path,
        shared_dirs: Sequence[str] = SHARED_TMP_DIRS,
        *,
        quarantine: bool = True,
    ) -> None:
        """``quarantine=False`` (full isolation: a run writes nothing outside its own tmpfs) makes a uid reusable as
        soon as it is released, and keeps its claim for the next run (no lock file opened and flocked per run): few
        uids (and their cgroups) are ever used."""
        self._quarantine = quarantine
        self._base = base
        self._size = size
        self._lock_dir = lock_dir
        self._shared_dirs = tuple(shared_dirs)
        self._held: dict[int, int] = {}
        self._idle: list[int] = []  # claimed, released, ready for the next run (without quarantine)
        self._dirty: set[int] = set()
        self._sweeper: asyncio.Future[None] | None = None
        self._sweeping = asyncio.Lock()
        self.handed_out: set[int] = set()  # every uid this pool ever gave out (tests look for leftovers by it)
        self._next = 0
        self._released = asyncio.Event()

    @staticmethod
    def default_lock_dir() -> Path:
        """``/run/aioagents-local`` (or a fallback under /tmp), created on first use, refused unless private."""
        for path in (Path("/run/aioagents-local"), Path(tempfile.gettempdir()) / "aioagents-local-uids"):
            try:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(path, 0o700)
                st = os.lstat(path)
            except OSError:
                continue
            # A directory others could write (or a planted symlink) would let them hold or steal uid claims.
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077:
                return path
        raise RuntimeError("no private directory for uid claims: /run/aioagents-local is not usable")

    def _try_claim(self, uid: int) -> bool:
        fd = os.open(self._lock_dir / f"uid-{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._held[uid] = fd
        self.handed_out.add(uid)
        return True

    async def acquire(self) -> int:
        while True:
            if self._idle:
                return self._idle.pop()
            for i in range(self._size):
                if self._quarantine:
                    uid = self._base + self._next
                    self._next = (self._next + 1) % self._size
                else:
                    uid = self._base + i  # lowest first
                if uid not in self._held and self._try_claim(uid):
                    return uid
            # Every uid is busy: wait for one of ours to come back (or another server's, so also time out).
            self._released.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._released.wait(), 0.5)

    def release(self, uid: int) -> None:
        """Every process of ``uid`` is gone: sweep its files out of the shared directories, then free it."""
        if uid not in self._held or uid in self._dirty:
            return
        if not self._quarantine:
            if uid not in self._idle:
                self._idle.append(uid)
                self._released.set()
            return
        self._dirty.add(uid)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.ensure_future(self._sweep_soon())

    async def _sweep_soon(self) -> None:
        await asyncio.sleep(_SWEEP_DELAY)
        await self.drain()

    async def drain(self) -> None:
        """Sweep every quarantined uid now and free it (a sweep already running is waited for, not repeated)."""
        async with self._sweeping:
            while self._dirty:
                uids = set(self._dirty)
                try:
                    await asyncio.to_thread(sweep_shared_dirs, uids, self._shared_dirs)
                finally:
                    for uid in uids:
                        self._dirty.discard(uid)
                        self._free(uid)

    async def aclose(self) -> None:
        await self.drain()  # first: cancelling a sweep midway would free uids whose files are still being removed
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None and not sweeper.done():
            sweeper.cancel()  # asleep, or waiting for the lock with nothing left to sweep
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        self._idle.clear()
        for uid in list(self._held):
            self._free(uid)

    def _free(self, uid: int) -> None:
        fd = self._held.pop(uid, None)
        if fd is not None:
            os.close(fd)  # drops the flock
        self._released.set()


def sweep_shared_dirs(uids: set[int], dirs: Sequence[str] = SHARED_TMP_DIRS) -> int:
    """Remove the top-level entries of ``dirs`` owned by one of ``uids`` (whose processes are all dead).

    Never follows a symlink: an entry is judged by ``lstat``, and ``remove_tree`` works through directory fds, at any
    depth. One entry that cannot be removed is logged and skipped. Returns how many entries went.
    """
    removed = 0
    for top in dirs:
        try:
            with os.scandir(top) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
                if st.st_uid not in uids:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if not remove_tree(entry.path, log=_log):
                        continue
                else:
                    os.unlink(entry.path)
                removed += 1
            except OSError as exc:
                _log.warning("could not remove %s left by a sandboxed run: %s", entry.path, exc)
    return removed


class _Capture:
    """Drains one pipe into a capped buffer; reading never stops, so the child never blocks on a full pipe."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, cap: int) -> None:
        self._loop = loop
        self._fd = fd
        self._cap = cap
        self._chunks: list[bytes] = []
        self._kept = 0
        self.omitted = 0
        self.done: asyncio.Future[None] = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        for _ in range(64):  # bound the work per wake-up so one loud run cannot starve the loop
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.close()
                return
            room = self._cap - self._kept
            if room > 0:
                self._chunks.append(data[:room])
                self._kept += min(room, len(data))
            self.omitted += max(0, len(data) - max(room, 0))

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        if not self.done.done():
            self.done.set_result(None)

    def text(self) -> str:
        out = b"".join(self._chunks).decode("utf-8", errors="replace")
        if self.omitted:
            out += f"\n[truncated: {self.omitted} bytes omitted]"
        return out


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _write_now(fd: int, data: bytes) -> bytes:
    """Write what fits into the pipe without waiting; return the rest (usually nothing: a pipe holds 64 KiB)."""
    if not data:
        return b""
    os.set_blocking(fd, False)
    try:
        return data[os.write(fd, data) :]
    except BlockingIOError:
        return data
    except BrokenPipeError:
        return b""  # the child is already gone


async def _feed(loop: asyncio.AbstractEventLoop, fd: int, data: bytes) -> None:
    """Write ``data`` to the child's stdin pipe without blocking the loop. The caller closes ``fd`` (EOF)."""
    try:
        os.set_blocking(fd, False)
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
                view = view[n:]
            except BlockingIOError:
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_writer(fd, _wake, ready)
                try:
                    await ready
                finally:
                    loop.remove_writer(fd)
    except OSError as exc:  # the child exited or closed stdin without reading it all
        if exc.errno != errno.EPIPE:
            raise


async def _feed_and_close(fd: int, data: bytes) -> None:
    try:
        await _feed(asyncio.get_running_loop(), fd, data)
    finally:
        os.close(fd)


class ZygoteClient:
    """Starts the zygote and asks it for processes, over one ``SOCK_SEQPACKET`` channel. One per server."""

    def __init__(
        self, *, python: str, env: Mapping[str, str], root: Path, config: Mapping[str, Any] | None = None
    ) -> None:
        self._python = python
        self._env = dict(env)
        self._root = root
        self._config = dict(config or {"isolation": "none"})
        #: The isolation level the factory put in force (``full`` or ``uid``/``none``), known once started.
        self.isolation = "none"
        #: ``v1``, ``v2``, ``v1+v2`` or ``""``: the cgroup hierarchies runs are placed in (chosen per controller).
        self.cgroup = ""
        #: Why the factory could not give the level asked for (empty when it could).
        self.reason = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._channel: _Channel | None = None
        self._closed = False
        self._restarting: asyncio.Lock | None = None
        self._feeders: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        """Start the zygote and wait until it serves."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # The zygote must not inherit the server's environment (secrets, PYTHON* settings): it is the parent of
        # every run and forked children would see it. PYTHONPATH is handed over under another name and applied
        # by the zygote after start-up: a site .pth file that imports a package would otherwise find the
        # PYTHONPATH copy and whatever it imports (random and threading, whose fork hooks then run in every child).
        env = dict(self._env)
        if "PYTHONPATH" in env:
            env[_ZYGOTE_PATH_VAR] = env.pop("PYTHONPATH")
        _zygote_bytecode()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                self._python,
                "-c",
                _ZYGOTE_BOOT,
                str(_ZYGOTE_SCRIPT),
                str(theirs.fileno()),
                str(self._root),
                json.dumps(self._config),
                stdin=asyncio.subprocess.PIPE,  # never written: its EOF tells the zygote that the server is gone
                stdout=asyncio.subprocess.PIPE,
                env=env,
                cwd="/",
                start_new_session=True,
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        assert self._proc.stdout is not None
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), 30)
        except asyncio.TimeoutError:
            line = b""
        word, _, info = line.strip().partition(b" ")
        if word != b"ready":
            ours.close()
            await self._stop()
            raise RuntimeError(f"the sandbox process factory failed to start with {self._python}")
        ready = json.loads(info or b"{}")
        self.isolation = str(ready.get("isolation", "none"))
        self.cgroup = str(ready.get("cgroup", ""))
        self.reason = str(ready.get("reason", ""))
        self._channel = _Channel(asyncio.get_running_loop(), ours)

    async def close(self) -> None:
        """Stop the zygote; its runs' processes are killed by their session and uid cleanup."""
        self._closed = True
        await self._stop()

    async def _ensure(self) -> _Channel:
        # A zygote that died (killed from outside, OOM) is replaced, so that one incident does not end the server.
        if self._closed:
            raise RuntimeError("the local sandbox is closed")
        if not self.alive:
            if self._restarting is None:
                self._restarting = asyncio.Lock()
            async with self._restarting:
                if not self.alive and not self._closed:
                    _log.warning("the sandbox process factory exited; starting a new one")
                    await self._stop()
                    await self.start()
        if self._channel is None:
            raise RuntimeError("the local sandbox is closed")
        return self._channel

    async def _stop(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close(ConnectionResetError("the sandbox process factory was stopped"))
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.stdout is not None:
            proc.stdout.feed_eof()
        # Close the pipe transport now rather than in __del__ (which would warn).
        transport = getattr(proc, "_transport", None)
        if transport is not None:
            transport.close()

    @property
    def alive(self) -> bool:
        return (
            self._proc is not None
            and self._proc.returncode is None
            and self._channel is not None
            and not self._channel.closed
        )

    def _env_changes(self, env: Mapping[str, str]) -> dict[str, str | None]:
        """What a forked child must change in the zygote's environment to have ``env``."""
        base = self._env
        changes: dict[str, str | None] = {key: value for key, value in env.items() if base.get(key) != value}
        changes.update((key, None) for key in base if key not in env)
        return changes

    async def _spawn(
        self, request: dict[str, Any], payload: dict[str, Any], fds: Sequence[int]
    ) -> tuple[int, asyncio.Future[dict[str, Any]]]:
        """Ask for a process. ``payload`` (argv, environment, program text) goes through a pipe the child reads
        after the fork: the factory never holds it, so no later run can find it in its inherited memory."""
        channel = await self._ensure()
        data = json.dumps(payload).encode()  # ASCII: a path may hold surrogate escapes
        if len(data) > _MAX_DESCRIPTION:
            raise RuntimeError(f"the run's description is {len(data)} bytes; the limit is {_MAX_DESCRIPTION}")
        pipe_r, pipe_w = os.pipe()
        try:
            rest = _write_now(pipe_w, data)  # an empty pipe takes 64 KiB at once, unless the user's pipes are shrunk
            if rest:
                feeder = asyncio.ensure_future(_feed_and_close(pipe_w, rest))
                self._feeders.add(feeder)
                feeder.add_done_callback(self._feeders.discard)
            else:
                os.close(pipe_w)
            pipe_w = -1
            reply = await channel.request(request, [*fds, pipe_r])
        finally:
            os.close(pipe_r)
            if pipe_w >= 0:
                os.close(pipe_w)
        if "pid" not in reply:
            raise RuntimeError(str(reply.get("error", "the process factory refused the run")))
        return int(reply["pid"]), reply["exited"]

    async def kill_uid(self, uid: int) -> None:
        """Kill every process running as ``uid`` (also those that left their session)."""
        channel = await self._ensure()
        await channel.request({"op": "killuid", "uid": uid})

    async def run(
        self,
        *,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        timeout: float,
        limits: Limits,
        memory_mb: int,
        uid: int | None,
        stdin: bytes | None = None,
        python_script: str | None = None,
        python_source: str | None = None,
        rw: Sequence[Path] | None = None,
        private_files: Sequence[tuple[str, str]] | None = None,
    ) -> ProcessResult:
        """Run one command (or, with ``python_script``, the fast path) to completion under the sandbox.

        ``python_source`` is the script's text when the caller has it at hand: a small one travels with the request.
        ``rw``: the directories the run may write under full isolation (default: ``cwd``).
        ``private_files`` (full isolation only): ``cwd`` does not exist on the host; the run makes it in its private
        /tmp, owned by ``uid``, and writes these files there (plain names, UTF-8 text) before it starts.
        """
        loop = asyncio.get_running_loop()
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        stdout = _Capture(loop, out_r, limits.max_output_bytes)
        stderr = _Capture(loop, err_r, limits.max_output_bytes)
        request = {"op": "spawn", "uid": uid, "memory": _memory_bytes(limits, memory_mb), "reap_uid": uid is not None}
        spec: dict[str, Any] = {
            "mode": "python" if python_script is not None else "exec",
            "exe": argv[0],
            "argv": list(argv),
            "cwd": str(cwd),
            "rw": [str(p) for p in (rw if rw is not None else (cwd,))],
            "uid": uid,
            "gid": uid,
            "rlimits": _rlimits(limits, memory_mb, timeout, root=uid is not None),
        }
        if python_script is None:
            spec["env"] = dict(env)
        else:
            spec["script"] = python_script
            spec["script_dir"] = os.path.dirname(python_script)
            spec["env_changes"] = self._env_changes(env)
            if python_source is not None and len(python_source) <= _INLINE_SOURCE_CHARS and private_files is None:
                spec["source"] = python_source
        if private_files is not None:
            spec["private_dir"] = str(cwd)
            spec["private_files"] = [list(item) for item in private_files]
        feeder: asyncio.Future[None] | None = None
        closed: set[int] = set()
        pid = 0
        gone = False  # every process of the run known dead
        try:
            try:
                pid, exited = await self._spawn(request, spec, [in_r, out_w, err_w])
            finally:
                for fd in (in_r, out_w, err_w):
                    os.close(fd)
            started = time.monotonic()
            rest = _write_now(in_w, stdin or b"")
            if rest:
                feeder = asyncio.ensure_future(_feed(loop, in_w, rest))
                # EOF right after the data: a program reading stdin to the end must not wait for us.
                feeder.add_done_callback(lambda _f: _close_once(closed, in_w))
            else:
                _close_once(closed, in_w)  # all written (the common case): EOF now, no task needed
            status: Literal["Finished", "TimeLimitExceeded"] = "Finished"
            return_code: int | None = None
            cpu: float | None = None
            final: dict[str, Any] = {}
            if await _wait(exited, timeout):
                final = exited.result()
                return_code = int(final["exit"])
                cpu = float(final.get("cpu", 0.0))
            else:
                status = "TimeLimitExceeded"
            elapsed = time.monotonic() - started
            if final and self.isolation == "full":
                # Its answer came once the init of its PID namespace was reaped: every process of it is gone.
                gone = True
            else:
                # The group may still hold children that outlived their parent; nothing of the run survives it.
                _killpg(pid)
            if status == "TimeLimitExceeded":
                with contextlib.suppress(OSError):  # a factory lost now leaves the answer a time-out all the same
                    if await _wait(exited, 5):
                        final = exited.result()
            uid_clear = uid is not None and final.get("uid_clear") is True
            oom = final.get("oom") is True
            # With every writer dead the pipes reach EOF at once. If not, a process that left the session still
            # holds them: kill the run's uid (root) or give up on it after a short wait (unprivileged server).
            if not (stdout.done.done() and stderr.done.done()):
                pipes = asyncio.gather(stdout.done, stderr.done)
                try:
                    await asyncio.wait_for(asyncio.shield(pipes), 0.05)
                except asyncio.TimeoutError:
                    if uid is not None and not uid_clear:
                        await self.kill_uid(uid)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(pipes, 2)
            err_text = stderr.text()
            if oom:
                limit_mb = _memory_bytes(limits, memory_mb) >> 20
                err_text += f"\nsandbox: memory limit of {limit_mb} MB exceeded: the run was killed (out of memory)\n"
            return ProcessResult(
                status=status,
                return_code=return_code,
                stdout=stdout.text(),
                stderr=err_text,
                execution_time=round(elapsed, 6),
                cpu_time=None if cpu is None else round(cpu, 6),
                uid_clear=uid_clear,
                oom=oom,
            )
        finally:
            if pid and not gone:
                _killpg(pid)
            if feeder is not None and not feeder.done():
                feeder.cancel()
                with contextlib.suppress(BaseException):
                    await feeder
            _close_once(closed, in_w)
            stdout.close()
            stderr.close()

    async def spawn_detached(
        self,
        *,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        limits: Limits,
        memory_mb: int,
        uid: int | None,
        cpu_seconds: float | None,
        output_fd: int,
        rw: Sequence[Path] | None = None,
    ) -> tuple[int, asyncio.Future[int]]:
        """Start a long-lived process (a Jupyter kernel); returns its pid and a future of its exit code.

        ``rw``: the directories it may write under full isolation (default: ``cwd``)."""
        loop = asyncio.get_running_loop()
        devnull = os.open(os.devnull, os.O_RDONLY)
        request = {"op": "spawn", "uid": uid, "memory": _memory_bytes(limits, memory_mb)}
        spec: dict[str, Any] = {
            "rw": [str(p) for p in (rw if rw is not None else (cwd,))],
            "mode": "exec",
            "exe": argv[0],
            "argv": list(argv),
            "env": dict(env),
            "cwd": str(cwd),
            "uid": uid,
            "gid": uid,
            "rlimits": _rlimits(limits, memory_mb, cpu_seconds, root=uid is not None),
        }
        try:
            pid, exited = await self._spawn(request, spec, [devnull, output_fd, output_fd])
        finally:
            os.close(devnull)
        code: asyncio.Future[int] = loop.create_future()

        def done(f: asyncio.Future[dict[str, Any]]) -> None:
            if code.done():
                return
            exc = None if f.cancelled() else f.exception()
            code.set_result(-9 if f.cancelled() or exc is not None else int(f.result().get("exit", -9)))

        exited.add_done_callback(done)
        return pid, code


async def _wait(future: asyncio.Future[Any], timeout: float) -> bool:
    """Wait up to ``timeout`` for ``future`` without cancelling it; True if it is done (its error is raised)."""
    if not future.done():
        await asyncio.wait((future,), timeout=max(timeout, 0.0))
    if future.done():
        future.result()  # a lost zygote raises here
        return True
    return False


class _Channel:
    """The server's end of the zygote's packet socket: requests with ids, and child exits dispatched by pid.

    A reply and its child's exit arrive in order on the one socket, so the exit future is made when the reply is
    read, before any later packet. A reply nobody waits for any more (the request was cancelled) names a process
    that nobody will supervise: its group is killed at once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._loop = loop
        self._sock = sock
        sock.setblocking(False)
        self._ids = itertools.count()
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._exits: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.closed = False
        loop.add_reader(sock.fileno(), self._on_readable)

    async def request(self, message: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        if self.closed:
            raise ConnectionResetError("the sandbox process factory exited")
        rid = next(self._ids)
        payload = json.dumps({**message, "id": rid}).encode()  # ASCII: a path may hold surrogate escapes
        if len(payload) > _MAX_REQUEST:
            raise RuntimeError(f"a request to the process factory is {len(payload)} bytes; the limit is {_MAX_REQUEST}")
        reply: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._replies[rid] = reply
        try:
            while True:
                try:
                    socket.send_fds(self._sock, [payload], list(fds))
                    break
                except BlockingIOError:
                    ready: asyncio.Future[None] = self._loop.create_future()
                    self._loop.add_writer(self._sock.fileno(), _wake, ready)
                    try:
                        await ready
                    finally:
                        self._loop.remove_writer(self._sock.fileno())
            return await reply
        finally:
            self._replies.pop(rid, None)

    def _on_readable(self) -> None:
        while not self.closed:
            try:
                data = self._sock.recv(_MAX_PACKET)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.close(ConnectionResetError("the sandbox process factory exited"))
                return
            try:
                message = fast_json.loads(data)
            except ValueError:
                _log.error("the sandbox process factory sent an unreadable packet")
                continue
            self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        pid = message.get("pid")
        if "id" not in message:
            if pid is not None:
                exited = self._exits.pop(pid, None)
                if exited is not None and not exited.done():
                    exited.set_result(message)
            return
        waiter = self._replies.pop(message["id"], None) if message["id"] is not None else None
        if pid is not None:
            exited = self._loop.create_future()
            self._exits[pid] = exited
            message["exited"] = exited
            if waiter is None or waiter.done():
                _killpg(pid)  # the run was cancelled while it started: nobody supervises it
        if waiter is not None and not waiter.done():
            waiter.set_result(message)
        elif message.get("error"):
            _log.error("the sandbox process factory: %s", message["error"])

    def close(self, exc: BaseException) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        for future in [*self._replies.values(), *self._exits.values()]:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved here: a run that no longer waits must not log it at collection
        self._replies.clear()
        self._exits.clear()


def _close_once(closed: set[int], fd: int) -> None:
    if fd not in closed:
        closed.add(fd)
        os.close(fd)


def _killpg(pgid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


def _memory_bytes(limits: Limits, memory_mb: int) -> int:
    """A request may lower the memory limit, never raise it above the server's."""
    return (min(memory_mb, limits.memory_mb) if memory_mb > 0 else limits.memory_mb) * (1 << 20)


def _rlimits(limits: Limits, memory_mb: int, cpu_seconds: float | None, *, root: bool) -> dict[str, list[int]]:
    mem = _memory_bytes(limits, memory_mb)
    out: dict[str, list[int]] = {
        "RLIMIT_DATA": [mem, mem],
        "RLIMIT_CORE": [0, 0],
        "RLIMIT_FSIZE": [limits.max_file_size_mb << 20, limits.max_file_size_mb << 20],
        "RLIMIT_NOFILE": [limits.max_open_files, limits.max_open_files],
    }
    if cpu_seconds is not None:
        # A backstop behind the wall-clock timeout, never ahead of it: a process's threads together can use up to
        # (cores x wall time) of CPU before the wall-clock timeout fires.
        cpu = max(1, math.ceil(cpu_seconds * _CPUS) + 1)
        out["RLIMIT_CPU"] = [cpu, cpu + 1]
    if root:
        # Only meaningful with a uid of the run's own: RLIMIT_NPROC counts every process of the real uid.
        out["RLIMIT_NPROC"] = [limits.max_processes, limits.max_processes]
    return out


def current_python() -> str:
    """The server's interpreter, resolved (the zygote and sandbox runs may use a different one)."""
    return os.path.realpath(sys.executable)
