"""The process factory of the local sandbox: a warm, clean interpreter that forks one child per run.

This file is executed as a *script* by the sandbox's Python interpreter (which may be a different interpreter from
the server's, e.g. the system Python when the server's own lives under an unreadable ``/root``). It therefore
imports only the standard library and must run on Python 3.9+ (``socket.recv_fds``).

Why a zygote: the server is a threaded asyncio process, where ``fork`` + ``preexec_fn`` is unsafe and a fresh
``python`` costs ~20 ms of start-up. The zygote is single-threaded, never runs user code itself, and forks a child
per run; the child applies the sandbox (session, rlimits, uid/gid, cwd, fds, environment) and then either
``execve``'s a command (every language, and the "subprocess" Python mode) or runs the user's Python file as
``__main__`` in the forked interpreter (the fast path: no interpreter start-up at all).

Protocol, over a unix stream socket the server connects to once per operation (the socket lives in a 0700
directory, so sandboxed code cannot reach it). The client sends one JSON line; ``spawn`` carries the child's
stdin/stdout/stderr as SCM_RIGHTS file descriptors in the same message:

* ``{"op": "spawn", "mode": "exec"|"python", "argv": [...], "exe": str, "env": {...}, "cwd": str,
  "uid": int|null, "gid": int|null, "rlimits": {"RLIMIT_X": [soft, hard]}, "script": str, "reap_uid": bool}``
  → ``{"pid": int}`` then, when the child exits, ``{"exit": returncode, "cpu": seconds, "uid_clear": bool}``
  (returncode < 0 means killed by that signal). If the client hangs up first, the child's process group is killed.
  With ``reap_uid``, every process of ``uid`` is killed before that answer, and ``uid_clear`` says it was: the run's
  uid is then free for reuse without a ``killuid`` round trip of its own.
* ``{"op": "killuid", "uid": int}`` → ``{"exit": 0}`` once a helper running as ``uid`` has SIGKILLed every process
  of that uid (that is how processes that left the run's session are found).
"""

from __future__ import annotations

# Warm the modules most programs import, so a forked run finds them loaded. Nothing here runs user code. Not
# ``random``: it reseeds itself in every forked child (an at-fork hook, ~0.2 ms a run), which only the programs that
# import it should pay. Every module warmed here is also in every child's page tables, so the list stays short.
import _signal  # type: ignore[import-not-found,unused-ignore]  # the C module: no enum wrappers
import atexit
import builtins
import collections  # noqa: F401
import contextlib
import functools  # noqa: F401
import gc
import importlib.machinery
import io
import itertools  # noqa: F401
import json
import math  # noqa: F401
import os
import re  # noqa: F401
import resource
import selectors
import shutil
import signal
import socket
import string  # noqa: F401
import sys
import traceback  # noqa: F401
import typing  # noqa: F401
import weakref  # noqa: F401
from typing import Any

_MAX_MSG = 1 << 20


def _apply_sandbox(spec: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: detach, limit, drop privileges, wire the fds. Never returns on failure.

    Every page the child writes is a copy-on-write fault (~1.2 µs here), and a Python call touches the pages of
    every object it uses, so this path calls C functions directly (``_signal``, not ``signal``'s enum wrappers).
    """
    os.setsid()
    _signal.set_wakeup_fd(-1)
    for sig in (_signal.SIGCHLD, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT):
        _signal.signal(sig, _signal.SIG_DFL)
    if spec.get("mode") != "python":
        # An ignored disposition survives execve; a normal program expects the defaults. (A Python program
        # keeps SIGPIPE and SIGXFSZ ignored, as the interpreter itself sets them at start-up.)
        for sig in (_signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGINT):
            _signal.signal(sig, _signal.SIG_DFL)
    else:
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
    for name, (soft, hard) in spec.get("rlimits", {}).items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    os.closerange(3, 1 << 16)
    os.chdir(spec["cwd"])
    uid = spec.get("uid")
    gid = spec.get("gid")
    if gid is not None:
        os.setgroups([])
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)
    os.umask(0o022)


def _set_environ(env: dict[str, str]) -> None:
    """Make ``os.environ`` (and the C environment) exactly ``env``, changing only what differs.

    The zygote starts with the sandbox's base environment, so a run usually differs in ``HOME`` and ``TMPDIR``
    only; clearing and refilling the mapping would run ``MutableMapping.clear``'s Python loop for every key.
    """
    current = os.environ
    for key in [key for key in current if key not in env]:
        del current[key]
    for key, value in env.items():
        if current.get(key) != value:
            current[key] = value


def _run_python(spec: dict[str, Any]) -> None:
    """The fast path: run the script as ``__main__`` in this forked interpreter and exit like ``python`` would."""
    script = spec["script"]
    _set_environ(spec["env"])
    sys.argv = list(spec.get("argv", [])[1:]) or [script]  # as ``python main.py`` would see it
    sys.path[0] = os.path.dirname(script)
    code = 0
    try:
        _exec_main(script)
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException as exc:  # the interpreter's top level
        tb = exc.__traceback__
        # Hide the zygote's frames, as a plain ``python script.py`` traceback would.
        while tb is not None and tb.tb_frame.f_code.co_filename != script:
            tb = tb.tb_next
        with contextlib.suppress(BaseException):
            sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        code = 1
    try:
        # Wait for non-daemon threads, as interpreter finalisation does. The zygote does not import ``threading``
        # itself (its fork hook makes every fork dearer), though a site ``.pth`` file may.
        threading = sys.modules.get("threading")
        shutdown = getattr(threading, "_shutdown", None) if threading is not None else None
        if shutdown is not None:
            shutdown()
        atexit._run_exitfuncs()
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:
        code = code or 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    os._exit(code)


def _exec_main(script: str) -> None:
    """Run ``script`` as ``__main__`` the way ``python script.py`` sets it up (cheaper than runpy's machinery)."""
    with io.open_code(script) as f:
        source = f.read()
    code = compile(source, script, "exec", dont_inherit=True)
    main = type(sys)("__main__")
    main.__dict__.update(
        __file__=script,
        __cached__=None,
        __builtins__=builtins,
        __loader__=importlib.machinery.SourceFileLoader("__main__", script),
        __spec__=None,
    )
    sys.modules["__main__"] = main
    exec(code, main.__dict__)


def _exit_code(exc: SystemExit) -> int:
    value = exc.code
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    with contextlib.suppress(BaseException):
        sys.stderr.write(str(value) + "\n")
    return 1


def _child(spec: dict[str, Any], fds: list[int]) -> None:
    try:
        _apply_sandbox(spec, fds)
        if spec.get("mode") == "python":
            _run_python(spec)
        os.execve(spec["exe"], spec["argv"], spec["env"])
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            os.write(2, "sandbox: cannot start {}: {}\n".format(spec.get("argv", ["?"])[0], exc).encode())
    os._exit(127)


def _kill_uid(uid: int) -> None:
    """In a forked helper: become ``uid`` and SIGKILL all its processes.

    ``kill(-1)`` signals every process we may signal, under the kernel's task-list lock, so a process that is
    forking cannot slip a new child past it. (Its return value cannot tell whether any process was hit: EPERM
    failures count as hits, so there is no loop "until ESRCH".) A second round covers a child whose fork
    completed just before the first.
    """
    try:
        os.setgroups([])
        os.setuid(uid)
        for _ in range(2):
            try:
                os.kill(-1, signal.SIGKILL)  # every process this uid may signal, except ourselves
            except ProcessLookupError:
                break
    except BaseException:
        os._exit(1)
    os._exit(0)


class _Killer:
    """A long-lived root helper that kills by uid without a fork per request (the fork costs more than a run).

    It takes a uid, switches to ``setresuid(uid, uid, 0)`` — real and effective uid of the target, saved uid 0 so
    that it can switch back — sends ``kill(-1, SIGKILL)`` (which then reaches exactly that uid's processes: the
    permission check compares the sender's real/effective uid with the target's real/saved uid, so root
    processes are out of reach), and switches back. Sandboxed code of that uid could signal it during the switch;
    then it is simply gone, and the caller falls back to a forked one-shot helper and starts a new one.
    """

    def __init__(self) -> None:
        self.pid = 0
        self.sock: socket.socket | None = None

    def _start(self) -> None:
        parent, child = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            parent.close()
            _killer_loop(child)
        child.close()
        self.pid = pid
        self.sock = parent

    def _stop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.pid:
            _killpg_or_pid(self.pid)
            self.pid = 0

    def kill_uid(self, uid: int) -> bool:
        try:
            if self.sock is None:
                self._start()
            assert self.sock is not None
            self.sock.settimeout(2.0)
            self.sock.sendall(uid.to_bytes(4, "little"))
            if self.sock.recv(1) == b"k":
                return True
        except (OSError, AssertionError):
            pass
        self._stop()
        return False


def _killer_loop(sock: socket.socket) -> None:
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    try:
        while True:
            data = sock.recv(4)
            if len(data) < 4:
                break
            uid = int.from_bytes(data, "little")
            if uid == 0:
                break  # never: that would reach every root process
            os.setresuid(uid, uid, 0)
            try:
                for _ in range(2):
                    try:
                        os.kill(-1, signal.SIGKILL)
                    except ProcessLookupError:
                        break
            finally:
                os.setresuid(0, 0, 0)
            sock.sendall(b"k")
    except BaseException:
        pass
    os._exit(0)


def _killpg_or_pid(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def _become_subreaper() -> None:
    """Orphans of a run (a child that outlived its parent) are re-parented to us, so we reap them."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:  # best effort: without it init reaps them
        pass


class Zygote:
    def __init__(self, path: str) -> None:
        self.sel = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server; it shuts us down
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        # The server holds the other end of our stdin: EOF means it is gone (even killed), and so are we.
        self.sel.register(0, selectors.EVENT_READ, "parent")
        self.killer = _Killer()
        # pid -> (conn, is a run's group leader, the uid to clear when it exits)
        self.children: dict[int, tuple[socket.socket, bool, int | None]] = {}
        self.running = True
        self.orphaned = False
        self.root = os.path.dirname(os.path.dirname(path))

    def _stop(self, *_: object) -> None:
        self.running = False

    def serve(self) -> None:
        while self.running:
            for key, _ in self.sel.select(1.0):
                if key.data == "accept":
                    self._accept()
                elif key.data == "parent":
                    if not os.read(0, 4096):
                        self.running = False
                        self.orphaned = True
                elif key.data == "wake":
                    try:
                        while self.wake_r.recv(4096):
                            pass
                    except BlockingIOError:
                        pass
                    self._reap()
                else:
                    self._hangup(key.fileobj, key.data)  # type: ignore[arg-type]
            self._reap()
        self.killer._stop()
        for pid, (_conn, leader, _uid) in list(self.children.items()):
            if leader:
                _killpg(pid)
        if self.orphaned and os.path.basename(self.root).startswith("aioagents-local-"):
            # The server died without cleaning up (SIGKILL, crash): remove its run directories for it.
            shutil.rmtree(self.root, ignore_errors=True)

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        conn.settimeout(5.0)
        try:
            data, fds = _recv_message(conn)
            spec = json.loads(data)
        except Exception as exc:  # a bad client must not kill the zygote
            _send(conn, {"error": f"bad request: {exc}"})
            conn.close()
            return
        if spec.get("op") == "killuid" and self.killer.kill_uid(int(spec["uid"])):
            _send(conn, {"exit": 0})
            conn.close()
            return
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            _send(conn, {"error": f"fork failed: {exc}"})
            conn.close()
            return
        if pid == 0:
            if spec.get("op") == "killuid":
                _kill_uid(int(spec["uid"]))
            _child(spec, fds)
        for fd in fds:
            os.close(fd)
        leader = spec.get("op") == "spawn"
        reap_uid = spec.get("uid") if leader and spec.get("reap_uid") else None
        self.children[pid] = (conn, leader, None if reap_uid is None else int(reap_uid))
        if leader:
            _send(conn, {"pid": pid})
        conn.setblocking(False)
        self.sel.register(conn, selectors.EVENT_READ, pid)

    def _hangup(self, conn: socket.socket, pid: int) -> None:
        try:
            if conn.recv(1):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self.sel.unregister(conn)
        # The server gave up on this run (cancelled or crashed): never leave its processes behind.
        entry = self.children.get(pid)
        if entry is not None and entry[1]:
            _killpg(pid)

    def _reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry = self.children.pop(pid, None)
            if entry is None:
                continue
            conn, _leader, uid = entry
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            answer: dict[str, Any] = {"exit": code, "cpu": usage.ru_utime + usage.ru_stime}
            if uid is not None:
                # Before the answer, so that the server may hand the uid to the next run at once.
                answer["uid_clear"] = self._clear_uid(uid)
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(conn)
            conn.setblocking(True)
            conn.settimeout(1.0)
            _send(conn, answer)
            conn.close()

    def _clear_uid(self, uid: int) -> bool:
        """Kill every process of ``uid`` now: through the long-lived killer, else a one-shot helper waited for."""
        if uid <= 0:
            return False
        if self.killer.kill_uid(uid):
            return True
        try:
            pid = os.fork()
        except OSError:
            return False
        if pid == 0:
            _kill_uid(uid)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return False
        return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _killpg(pgid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


def _recv_message(conn: socket.socket) -> tuple[bytes, list[int]]:
    buf = b""
    fds: list[int] = []
    while not buf.endswith(b"\n"):
        data, more, _flags, _addr = socket.recv_fds(conn, 65536, 8)
        if not data:
            break
        buf += data
        fds.extend(more)
        if len(buf) > _MAX_MSG:
            raise ValueError("message too large")
    return buf, fds


def _send(conn: socket.socket, obj: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps(obj).encode() + b"\n")


def main() -> None:
    _become_subreaper()
    zygote = Zygote(sys.argv[1])
    # Everything alive now is shared with every child: keep the collector from touching (and so copying) it.
    gc.collect()
    gc.freeze()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    zygote.serve()


if __name__ == "__main__":
    main()
