"""The process factory of the local sandbox: a warm, clean interpreter that forks one child per run.

This file is executed as a *script* by the sandbox's Python interpreter (which may be a different interpreter from
the server's, e.g. the system Python when the server's own lives under an unreadable ``/root``). It therefore
imports only the standard library and must run on Python 3.9+ (``socket.recv_fds``).

Why a zygote: the server is a threaded asyncio process, where ``fork`` + ``preexec_fn`` is unsafe and a fresh
``python`` costs ~20 ms of start-up. The zygote is single-threaded, never runs user code itself, and forks a child
per run; the child applies the sandbox (session, rlimits, uid/gid, cwd, fds, environment) and then either
``execve``'s a command (every language, and the "subprocess" Python mode) or runs the user's Python file as
``__main__`` in the forked interpreter (the fast path: no interpreter start-up at all).

Protocol: one ``SOCK_SEQPACKET`` socket pair between the server and the zygote, inherited at start (nothing on the
file system for sandboxed code to reach). Each packet is one JSON object; ``spawn`` carries the child's
stdin/stdout/stderr as SCM_RIGHTS file descriptors in the same packet. A request has an ``id`` that its reply
repeats; the exit of a child comes later, on its own, named by pid:

* ``{"op": "spawn", "id": n, "mode": "exec"|"python", "argv": [...], "exe": str, "cwd": str, "uid": int|null,
  "gid": int|null, "rlimits": {"RLIMIT_X": [soft, hard]}, "reap_uid": bool}`` with, to ``exec``, ``"env": {...}``,
  and for the Python fast path ``"script"``, ``"script_dir"``, ``"source"`` (the script's text, when small) and
  ``"env_changes"`` (``{key: value or null}`` against the zygote's own environment, so the child does not diff).
  → ``{"id": n, "pid": int}`` (or ``{"id": n, "error": str}``), then, when the child exits,
  ``{"pid": int, "exit": returncode, "cpu": seconds, "uid_clear": bool}`` (returncode < 0: killed by that signal).
  With ``reap_uid``, every process of ``uid`` is killed before that packet, and ``uid_clear`` says it was: the
  run's uid is then free for reuse without a ``killuid`` round trip of its own.
* ``{"op": "killuid", "id": n, "uid": int}`` → ``{"id": n, "exit": 0}`` once every process of that uid has been
  SIGKILLed (that is how processes that left the run's session are found).

When the server's end closes (the server exited, even killed) the zygote kills every run's process group and exits.
One socket instead of a connection per operation: the zygote's loop does less between forks, and every page it
writes after a fork is a copy-on-write fault while the children share it.
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
import select
import signal
import socket
import string  # noqa: F401
import sys
import traceback  # noqa: F401
import typing  # noqa: F401
import weakref  # noqa: F401
from typing import Any

_MAX_MSG = 1 << 16  # a spawn request is a few KiB; under malloc's mmap threshold
_MAX_FDS = 8
_RLIMITS = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}
_FD_SIZE = 4  # a C int


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
        resource.setrlimit(_RLIMITS[name], (soft, hard))
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


def _run_python(spec: dict[str, Any]) -> None:
    """The fast path: run the script as ``__main__`` in this forked interpreter and exit like ``python`` would."""
    script = spec["script"]
    for key, value in spec["env_changes"].items():  # usually HOME and TMPDIR only
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    sys.argv = list(spec.get("argv", [])[1:]) or [script]  # as ``python main.py`` would see it
    sys.path[0] = spec["script_dir"]
    code = 0
    try:
        _exec_main(script, spec.get("source"))
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


def _exec_main(script: str, inline: str | None = None) -> None:
    """Run ``script`` as ``__main__`` the way ``python script.py`` sets it up (cheaper than runpy's machinery).

    ``inline`` is the file's text when the server sent it along (a small program): no open and read in the child.
    """
    if inline is not None:
        source = inline.encode("utf-8")  # bytes, as read from the file: a coding cookie still applies
    else:
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
    """Orphans of a run (a child that outlived its parent) are re-parented to us, so we reap them.

    Python has no ``prctl``, and ctypes would stay mapped in every forked child (two libraries, ten memory areas
    that each fork copies and each exit unmaps). So a first process sets the flag, which survives ``execve``, and
    replaces itself with the real zygote (same pid, same inherited descriptors), which never imports ctypes.
    """
    if _SUBREAPER_FLAG in sys.argv:
        sys.argv.remove(_SUBREAPER_FLAG)
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:  # best effort: without it init reaps them
        return
    with contextlib.suppress(OSError):  # if it cannot, this process serves, with ctypes loaded
        os.execv(sys.executable, [sys.executable, *sys.argv, _SUBREAPER_FLAG])


_SUBREAPER_FLAG = "--subreaper-set"


class Zygote:
    def __init__(self, channel_fd: int, root: str) -> None:
        # Blocking for sends (replies are small and the server always reads); receives use MSG_DONTWAIT.
        self.channel = socket.socket(fileno=channel_fd)
        self.channel.setblocking(True)
        self.poller = select.epoll()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server; it shuts us down
        self.poller.register(self.channel.fileno(), select.EPOLLIN)
        self.poller.register(self.wake_r.fileno(), select.EPOLLIN)
        # The server holds the other end of our stdin: EOF means it is gone (even killed), and so are we.
        self.poller.register(0, select.EPOLLIN)
        self.killer = _Killer()
        self.children: dict[int, int | None] = {}  # a run's pid (its group leader) -> the uid to clear at its exit
        self.running = True
        self.orphaned = False
        self.root = root

    def _stop(self, *_: object) -> None:
        self.running = False

    def serve(self) -> None:
        channel = self.channel.fileno()
        wake = self.wake_r.fileno()
        while self.running:
            for fd, _ in self.poller.poll(1.0):
                if fd == channel:
                    self._receive()
                elif fd == wake:
                    try:
                        while self.wake_r.recv(4096):
                            pass
                    except BlockingIOError:
                        pass
                elif not os.read(0, 4096):
                    self.running = False
                    self.orphaned = True
            self._reap()
        self.killer._stop()
        for pid in list(self.children):
            _killpg(pid)
        if self.orphaned and os.path.basename(self.root).startswith("aioagents-local-"):
            # The server died without cleaning up (SIGKILL, crash): remove its run directories for it.
            import shutil  # not at the top: it loads three compression libraries into every child's address space

            shutil.rmtree(self.root, ignore_errors=True)

    def _receive(self) -> None:
        while self.running:
            try:
                data, fds, flags = _recv_packet(self.channel)
            except BlockingIOError:
                return
            except OSError:
                data, fds, flags = b"", [], 0
            if not data and not fds:
                self.running = False  # the server closed its end
                self.orphaned = True
                return
            self._handle(data, fds, flags)

    def _handle(self, data: bytes, fds: list[int], flags: int) -> None:
        rid = None
        try:
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                raise ValueError("message too large")
            spec = json.loads(data)
            rid = spec.get("id")
            op = spec.get("op")
            if op == "killuid":
                _close_all(fds)
                self._send({"id": rid, "exit": 0 if self._clear_uid(int(spec["uid"])) else 1})
                return
            if op != "spawn":
                raise ValueError(f"unknown op {op!r}")
        except Exception as exc:  # a bad request must not kill the zygote
            _close_all(fds)
            self._send({"id": rid, "error": f"bad request: {exc}"})
            return
        try:
            pid = os.fork()
        except OSError as exc:
            _close_all(fds)
            self._send({"id": rid, "error": f"fork failed: {exc}"})
            return
        if pid == 0:
            _child(spec, fds)
        _close_all(fds)
        reap_uid = spec.get("uid") if spec.get("reap_uid") else None
        self.children[pid] = None if reap_uid is None else int(reap_uid)
        self._send({"id": rid, "pid": pid})

    def _send(self, obj: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # the server is gone: its end's EOF stops the loop
            self.channel.send(json.dumps(obj).encode())

    def _reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid not in self.children:
                continue
            uid = self.children.pop(pid)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            answer: dict[str, Any] = {"pid": pid, "exit": code, "cpu": usage.ru_utime + usage.ru_stime}
            if uid is not None:
                # Before the answer, so that the server may hand the uid to the next run at once.
                answer["uid_clear"] = self._clear_uid(uid)
            self._send(answer)

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


def _recv_packet(sock: socket.socket) -> tuple[bytes, list[int], int]:
    """One packet and its file descriptors, without blocking (``socket.recv_fds`` ignores its ``flags``)."""
    data, ancdata, flags, _ = sock.recvmsg(_MAX_MSG, socket.CMSG_SPACE(_MAX_FDS * _FD_SIZE), socket.MSG_DONTWAIT)
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % _FD_SIZE
            fds.extend(int.from_bytes(payload[i : i + _FD_SIZE], sys.byteorder) for i in range(0, usable, _FD_SIZE))
    return data, fds, flags


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _killpg(pgid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


def _apply_pythonpath() -> None:
    """Put the runs' PYTHONPATH where ``python`` would have it: in ``sys.path`` right after the script's directory,
    and in the environment. The server passes it under another name so that start-up (``site`` and its ``.pth``
    files) did not import from it: every module imported now is in every child, and some cost each fork."""
    value = os.environ.pop(_PATH_VAR, None)
    if value is None:
        return
    os.environ["PYTHONPATH"] = value
    sys.path[1:1] = [os.path.abspath(p) if p else os.getcwd() for p in value.split(os.pathsep)]


_PATH_VAR = "AIOAGENTS_ZYGOTE_PYTHONPATH"
_WARM_UP = """
import sys
def f(a, *b, k=None, **c):
    return [x * 2 for x in b if x], {n: v for n, v in c.items()}, f"{a!r} {k}"
class C:
    def m(self):
        try:
            return f(1, 2, k=3)
        except (ValueError, KeyError) as exc:
            raise RuntimeError(exc) from exc
print(C().m(), file=sys.stdout)
"""


def main() -> None:
    _become_subreaper()  # first: it re-executes this script, which must start without PYTHONPATH too
    _apply_pythonpath()
    zygote = Zygote(int(sys.argv[1]), sys.argv[2])
    # The first compile() in a process sets things up once; without this, every child paid for it again (measured
    # per print(1) run: 2.0 ms of child CPU without, 1.0 ms with). Compiling this script at start-up does not count.
    compile(_WARM_UP, "<warm-up>", "exec", dont_inherit=True)
    # Everything alive now is shared with every child: keep the collector from touching (and so copying) it.
    gc.collect()
    gc.freeze()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    zygote.serve()


if __name__ == "__main__":
    main()
