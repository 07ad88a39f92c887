"""Isolation levels of the local sandbox, and the server's side of them (mounts and cgroup discovery).

The per-run work happens in the process factory (``_zygote.py``: namespaces, the read-only view, private tmpfs
directories, joining the run's cgroup). The server's part is small and runs on the event loop, in constant time:

* at start, the server's root directory is bind-mounted on itself as a *shared* mount, so that the tmpfs it
  mounts for each run appears in the factory's mount namespace (a slave of the host's, made before any run);
* per run, a size-capped tmpfs is mounted on the run directory (``mount``, ~30 µs) and, when the run ends, lazily
  detached (``umount2(MNT_DETACH)``) and its mount point removed: no recursive deletion, whatever the run left;
* the cgroup parent directories are chosen here, per controller: ``memory`` and ``pids`` each from cgroup v2 where
  it is enabled there, else from v1; plus a v2 group per run wherever a writable cgroup2 hierarchy exists;
* what a server holds on the host is recorded (:func:`claim`), and every root server's start releases what dead
  servers left (:func:`sweep`), however they died.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import signal
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal, NamedTuple

__all__ = [
    "CGROUP_CONTROLLERS",
    "ISOLATION_LEVELS",
    "LEGACY_GRACE_S",
    "REGISTRY",
    "RUN_UIDS",
    "Hierarchy",
    "IsolationLevel",
    "cgroup_parent",
    "claim",
    "detach",
    "detach_only",
    "format_cgroups",
    "is_small",
    "mount_root",
    "mount_tmpfs",
    "parse_cgroups",
    "record_name",
    "release_root",
    "remove_cgroups",
    "sweep",
    "unclaim",
]

_log = logging.getLogger("aioagents.local")

#: What a server may run its sandboxed code under, strongest first.
IsolationLevel = Literal["full", "userns", "uid", "none"]
ISOLATION_LEVELS: tuple[str, ...] = ("full", "userns", "uid", "none")

_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_SHARED = 1 << 20
_MNT_DETACH = 0x2

_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return _libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount_tmpfs(path: Path, *, size_mb: int, inodes: int, uid: int | None) -> None:
    """Mount a fresh tmpfs on ``path`` (a directory), owned by ``uid`` (0700), capped at ``size_mb`` and
    ``inodes`` files: the run's writable space and its disk cap."""
    opts = f"size={size_mb}m,nr_inodes={inodes},mode=0700"
    if uid is not None:
        opts += f",uid={uid},gid={uid}"
    _check(
        _c().mount(b"tmpfs", os.fsencode(path), b"tmpfs", _MS_NOSUID | _MS_NODEV, opts.encode()),
        f"mount a tmpfs on {path}",
    )


def detach(path: Path) -> None:
    """Lazily unmount ``path`` (constant time: the kernel frees the tmpfs once nothing uses it) and remove the
    now empty mount point. Never raises: what cannot be undone is logged."""
    if _c().umount2(os.fsencode(path), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        _log.warning("could not detach the run directory %s: %s", path, os.strerror(err))
    try:
        os.rmdir(path)
    except OSError as exc:
        _log.warning("could not remove the run directory %s: %s", path, exc)


def is_small(path: Path, *, inodes: int = 256, size: int = 8 << 20) -> bool:
    """Whether the tmpfs at ``path`` holds little (one ``statvfs``): freeing it then costs next to nothing. A run that
    filled it (many files, many bytes) makes the kernel's freeing at unmount take long enough to do in a thread."""
    try:
        st = os.statvfs(path)
    except OSError:
        return True
    return st.f_files - st.f_ffree <= inodes and (st.f_blocks - st.f_bfree) * st.f_frsize <= size


def detach_only(path: Path) -> None:
    """Lazily unmount ``path`` (the root's own bind mount); never raises."""
    if _c().umount2(os.fsencode(path), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # not mounted any more (the factory detached it): fine
            _log.warning("could not detach %s: %s", path, os.strerror(err))


def mount_root(path: Path) -> None:
    """Mount a tmpfs (0711, root's) on the server's root directory, with shared propagation so that the run
    directories mounted below it reach the process factory's mount namespace; mkdir and rmdir there are cheap."""
    target = os.fsencode(path)
    _check(_c().mount(b"tmpfs", target, b"tmpfs", _MS_NOSUID | _MS_NODEV, b"mode=0711"), f"mount a tmpfs on {path}")
    if _c().mount(None, target, None, _MS_SHARED, None) != 0:
        err = ctypes.get_errno()
        _c().umount2(target, _MNT_DETACH)
        raise OSError(err, f"make {path} shared: {os.strerror(err)}")


# -- cgroups --------------------------------------------------------------------------------------------------------
#: The controllers a run's cgroup uses: ``memory`` (memory_limit_MB over every process, tmpfs, memfd and shm of the
#: run) and ``pids`` (``max_processes``).
CGROUP_CONTROLLERS: tuple[str, ...] = ("memory", "pids")
_TAG = re.compile(r"aioagents-(\d+)-(aioagents-local-[a-z0-9_]{8})")
_ROOT_NAME = re.compile(r"aioagents-local-[a-z0-9_]{8}")


class Hierarchy(NamedTuple):
    """One cgroup hierarchy a server's runs are placed in: ``version`` (``v1`` or ``v2``), the controllers used
    there (a v2 one may have none: then it only holds the run's processes, so that ``cgroup.kill`` ends them all
    and ``cgroup.events`` says when none is left), and ``path``, the server's own directory in it."""

    version: str
    controllers: tuple[str, ...]
    path: str


def format_cgroups(hierarchies: list[Hierarchy]) -> str:
    """The notation the process factory reads (``version:controllers:path`` joined by ``;``)."""
    return ";".join(f"{h.version}:{','.join(h.controllers)}:{h.path}" for h in hierarchies)


def parse_cgroups(text: str) -> list[Hierarchy]:
    """The hierarchies named by :func:`format_cgroups`' notation (empty text: none)."""
    found = []
    for item in text.split(";") if text else []:
        version, _, rest = item.partition(":")
        controllers, _, path = rest.partition(":")
        if version in ("v1", "v2") and path.startswith("/"):
            found.append(Hierarchy(version, tuple(c for c in controllers.split(",") if c), path))
    return found


def _own_cgroup(controller: str) -> str | None:
    """This process's cgroup path in the hierarchy of ``controller`` (``""`` for cgroup v2)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        if (controller == "" and ctrls == "") or (controller and controller in ctrls.split(",")):
            return path
    return None


def _v2_mount(cgroup_root: Path) -> Path | None:
    """The cgroup2 hierarchy under ``cgroup_root``: the root itself (a v2-only host) or its ``unified`` mount (a
    hybrid host), if it is writable here."""
    for mount in (cgroup_root, cgroup_root / "unified"):
        if (mount / "cgroup.controllers").is_file() and os.access(mount, os.W_OK):
            return mount
    return None


def cgroup_parent(tag: str, *, cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup") -> str:
    """Where the runs' cgroups go, chosen per controller, in the factory's notation (:func:`format_cgroups`).

    Each of ``memory`` and ``pids`` comes from the cgroup2 hierarchy when it is enabled there (a v2-only host, or a
    hybrid one that moved it to v2), else from its v1 hierarchy, under this process's own cgroup there. When a
    writable cgroup2 hierarchy exists it always holds a group per run too, even with neither controller (a hybrid
    host such as this project's CI, whose ``unified`` mount offers only ``hugetlb``): its ``cgroup.kill`` ends every
    process of the run and its ``cgroup.events`` tells when the run is empty. ``""`` when no hierarchy can be used
    (the isolation level is still full, without cgroups). ``cgroup_root`` is where the hierarchies are mounted.
    """
    if not sys.platform.startswith("linux"):
        return ""
    root = Path(cgroup_root)
    v2 = _v2_mount(root)
    in_v2: tuple[str, ...] = ()
    if v2 is not None:
        try:
            available = (v2 / "cgroup.controllers").read_text().split()
        except OSError:
            available = []
        in_v2 = tuple(c for c in CGROUP_CONTROLLERS if c in available)
    found: list[Hierarchy] = []
    for controller in CGROUP_CONTROLLERS:
        if controller in in_v2:
            continue
        own = _own_cgroup(controller)
        mount = root / controller
        if own is None or not mount.is_dir():
            continue
        parent = mount / own.lstrip("/")
        if os.access(parent, os.W_OK):
            found.append(Hierarchy("v1", (controller,), str(parent / tag)))
    if v2 is not None:
        # Under the hierarchy's root, which may hold processes and still delegate controllers to its children.
        found.append(Hierarchy("v2", in_v2, str(v2 / tag)))
    return format_cgroups(found)


def _kill_members(path: str, version: str) -> None:
    """SIGKILL every process of the cgroup ``path``: ``cgroup.kill`` where v2 has it, else each listed process
    through a pidfd checked to be still in that cgroup (no pid reuse can redirect the signal)."""
    if version == "v2":
        with contextlib.suppress(OSError):
            _write(os.path.join(path, "cgroup.kill"), "1")
            return
    try:
        pids = [int(p) for p in Path(path, "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return
    relative = "/" + path.split("/", 5)[-1] if version == "v1" else ""
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            if relative and relative not in Path(f"/proc/{pid}/cgroup").read_text():
                continue
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(fd)


def remove_cgroups(parent: str, *, rounds: int = 40) -> bool:
    """Kill what is left in the runs' cgroups and remove them and their parents (a process factory that was killed
    could not); True when they are gone. Never raises. A few rounds: a killed run takes a moment to leave."""
    hierarchies = parse_cgroups(parent)
    for attempt in range(rounds):
        left = False
        for h in hierarchies:
            try:
                children = [entry.path for entry in os.scandir(h.path) if entry.is_dir(follow_symlinks=False)]
            except FileNotFoundError:
                continue
            except OSError:
                left = True
                continue
            for path in [*children, h.path]:
                try:
                    os.rmdir(path)
                except FileNotFoundError:
                    pass
                except OSError:
                    left = True
                    _kill_members(path, h.version)
        if not left:
            return True
        if attempt + 1 < rounds:
            time.sleep(0.05)
    _log.warning("could not remove the sandbox's cgroups %s", parent)
    return False


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


# -- what a server leaves on the host, and the sweep of what a dead one left ----------------------------------------
#: Where each running root server records what it holds on the host (its root directory and cgroups), so that a
#: later server can release it once its owner is gone, however it died.
REGISTRY = Path("/run/aioagents-owners")
#: A root directory of the old naming that no record claims and no process names is left alone for this long.
LEGACY_GRACE_S = 3600.0


def _process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (with the pid, unique until the next boot)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat_line = f.read()
        return int(stat_line[stat_line.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _registry(create: bool) -> Path | None:
    """The record directory, if it is root's and private (a planted one could name anything for removal)."""
    if os.geteuid() != 0:
        return None
    try:
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(REGISTRY, 0o700)
        st = os.lstat(REGISTRY)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
        return None
    return REGISTRY


def record_name(root: str | os.PathLike[str]) -> str:
    """The name of the record of ``root`` in :data:`REGISTRY` (a root belongs to one server at a time, so its path
    names the record; the process factory, which knows only the root, removes it after cleaning up for a dead
    server)."""
    return hashlib.sha256(os.fsencode(root)).hexdigest()[:32]


def claim(root: Path, cgroups: str = "") -> None:
    """Record that this process holds ``root`` (and the cgroups ``cgroups``, in :func:`format_cgroups` notation),
    so that :func:`sweep` in any later server releases them if this process dies without doing so. Called again
    with the cgroups once they are known; never raises (without a record, only the old-name rules apply)."""
    directory = _registry(create=True)
    start = _process_start(os.getpid())
    if directory is None or start is None:
        return
    record = {"pid": os.getpid(), "start": start, "boot": _boot_id(), "root": str(root), "cgroups": cgroups}
    name = record_name(root)
    try:
        tmp = directory / f".{name}.tmp"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, directory / name)
    except OSError as exc:
        _log.warning("could not record the sandbox's state for a later clean-up: %s", exc)


def unclaim(root: Path) -> None:
    """Drop this process's record of ``root`` (everything it named is released)."""
    directory = _registry(create=False)
    if directory is not None:
        with contextlib.suppress(OSError):
            os.unlink(directory / record_name(root))


def _unescape(field: str) -> str:
    """A path as /proc/self/mountinfo writes it (space, tab, newline and backslash as octal escapes)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mount_points() -> list[str]:
    try:
        with open("/proc/self/mountinfo") as f:
            return [_unescape(line.split()[4]) for line in f]
    except OSError:
        return []


def release_root(root: str) -> bool:
    """Detach every mount at or below ``root`` (deepest first; lazily, so in constant time) and remove the
    directory; True when it is gone. Never raises."""
    from aioagents.local._paths import remove_tree

    below = root.rstrip("/") + "/"
    points = sorted((p for p in _mount_points() if p == root or p.startswith(below)), key=len, reverse=True)
    for point in points:
        if _c().umount2(os.fsencode(point), _MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOENT):
                _log.warning("could not detach %s: %s", point, os.strerror(err))
    return remove_tree(root, log=_log)


class _Process(NamedTuple):
    ppid: int
    comm: str
    argv: tuple[str, ...]


def _processes() -> dict[int, _Process]:
    """Every process's parent, name and command line."""
    table: dict[int, _Process] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read()
            comm = raw[raw.index(b"(") + 1 : raw.rindex(b")")].decode(errors="replace")
            ppid = int(raw[raw.rindex(b")") + 2 :].split()[1])
            # Every command line, whatever the process is called: an interpreter of any name may run a factory, and
            # taking a live factory for a dead one would kill its runs.
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = tuple(a.decode(errors="replace") for a in f.read().split(b"\0") if a)
        except (OSError, ValueError):
            continue
        table[int(entry)] = _Process(ppid, comm, argv)
    return table


def _is_factory(proc: _Process | None) -> bool:
    """A process factory: ``python _zygote.py ...`` or, as the server starts it, ``python -c <its loader>
    _zygote.py ...``."""
    if proc is None or len(proc.argv) < 3:
        return False
    argv = proc.argv
    if argv[1] == "-c" and "_aioagents_zygote" in argv[2]:
        return len(argv) >= 4 and argv[3].endswith("_zygote.py")
    return argv[1].endswith("_zygote.py")


def _kill(pid: int) -> bool:
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _orphaned_inits(table: dict[int, _Process]) -> list[int]:
    """The inits of runs' PID namespaces whose process factory is gone (each waits, forever, to be killed): the
    factory's tiny program (its executable a memfd named ``aioagents-init``; its name the fd's number) whose parent
    is no process factory. (A ``sleep infinity`` init, used off x86-64, cannot be told from anyone else's.)"""
    found = []
    for pid, proc in table.items():
        if not proc.comm.isdigit() or _is_factory(table.get(proc.ppid)):
            continue
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if exe.startswith("/memfd:aioagents-init"):
            found.append(pid)
    return found


def _legacy_cgroups(cgroup_root: Path) -> list[tuple[str, str, int, str]]:
    """``(version, path, owner pid, root name)`` of every cgroup directory of this project's naming
    (``aioagents-<pid>-aioagents-local-<x>``) in the hierarchies a server uses, three levels down at most."""
    found = []
    tops = [("v1", cgroup_root / c) for c in CGROUP_CONTROLLERS]
    v2 = _v2_mount(cgroup_root)
    if v2 is not None:
        tops.append(("v2", v2))
    for version, top in tops:
        level = [str(top)]
        for _ in range(3):
            deeper = []
            for directory in level:
                try:
                    entries = [e for e in os.scandir(directory) if e.is_dir(follow_symlinks=False)]
                except OSError:
                    continue
                for entry in entries:
                    match = _TAG.fullmatch(entry.name)
                    if match:
                        found.append((version, entry.path, int(match.group(1)), match.group(2)))
                    elif not entry.name.startswith("run-"):
                        deeper.append(entry.path)
            level = deeper
    return found


def _owner_alive(pid: int, since: float) -> bool:
    """Whether process ``pid`` exists and started before ``since`` (a wall-clock time): a process started later
    only reuses the pid of the one that made the state."""
    start = _process_start(pid)
    if start is None:
        return False
    try:
        boot = next(
            int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line[:6] == "btime "
        )
    except (OSError, StopIteration, ValueError):
        return True  # cannot tell: leave it
    return boot + start / os.sysconf("SC_CLK_TCK") <= since + 2


#: The run uids of a server with the default ``uid_base`` (``UidPool`` hands out 4096 from there).
RUN_UIDS = range(200_000, 200_000 + 4096)
_IPC_RMID = 0


def _remove_stale_ipc(uids: range = RUN_UIDS) -> list[str]:
    """Remove the SysV IPC objects (shared memory, semaphores, message queues) of run uids that no server holds.

    A run in its own IPC namespace (isolation ``full``) takes its objects with it; one without (``uid``) leaves
    them in the host's, where they outlive it (and its memory, for a segment). A uid is held by a server for as
    long as a run of it may live (its ``flock`` claim, see ``UidPool``): with the claim taken here, no run of that
    uid exists, so what it owns there is left over. A segment still attached is left alone."""
    from aioagents.local._process import UidPool

    try:
        lock_dir = UidPool.default_lock_dir()
    except RuntimeError:
        return []
    found: dict[int, list[tuple[str, int]]] = {}
    for kind, id_column, uid_columns in (("shm", 1, (7, 9)), ("sem", 1, (4, 6)), ("msg", 1, (7, 9))):
        try:
            lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            try:
                owners = {int(fields[i]) for i in uid_columns}
                if kind == "shm" and int(fields[6]) > 0:
                    continue  # attached: some process still uses it
            except (IndexError, ValueError):
                continue
            for uid in owners & set(uids):
                found.setdefault(uid, []).append((kind, int(fields[id_column])))
    libc = _c()
    done = []
    for uid, objects in sorted(found.items()):
        try:
            fd = os.open(lock_dir / f"uid-{uid}.lock", os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            fd = -1  # never claimed since boot: no server's run has it
        except OSError:
            continue
        try:
            if fd >= 0:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a server holds it: a run of that uid may be using them
            for kind, ident in objects:
                if kind == "shm":
                    rc = libc.shmctl(ident, _IPC_RMID, None)
                elif kind == "sem":
                    rc = libc.semctl(ident, 0, _IPC_RMID)
                else:
                    rc = libc.msgctl(ident, _IPC_RMID, None)
                if rc == 0:
                    done.append(f"removed the SysV {kind} {ident} of uid {uid}")
        finally:
            if fd >= 0:
                os.close(fd)
    return done


def _legacy_parents() -> list[str]:
    return sorted({"/run", "/dev/shm", tempfile.gettempdir()})


def sweep(*, cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup", grace: float = LEGACY_GRACE_S) -> list[str]:
    """Release what dead servers left on this host; return what was released (one line each). Never raises.

    Run at every root server's start, so that a host never accumulates state whatever killed a server (SIGKILL
    of the server and its process factory together, a killed process group, an OOM kill, a Ray worker whose
    children Ray killed with it):

    * every record of :data:`REGISTRY` whose owner (pid *and* start time, so pid reuse cannot pass for it) is gone:
      its process factory if still there, every process of its cgroups, the cgroups, every mount at or below its
      root directory and the directory;
    * every init of a run's PID namespace whose process factory is gone (normally they die with it);
    * state of servers that predate the records: a cgroup named ``aioagents-<pid>-aioagents-local-<x>`` whose
      owner pid is gone or was started after the cgroup (reused), with its root directory; an
      ``aioagents-local-<x>`` root directory under ``/run``, ``/dev/shm`` or the temporary directory that no record
      and no process (its factory's command line names it) claims and that nothing changed for ``grace`` seconds.

    Nothing a live server holds is touched: its record names a live owner, and its factory names its root.
    """
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        return []
    done: list[str] = []
    try:
        _sweep(Path(cgroup_root), grace, done)
    except Exception as exc:  # a clean-up must never stop a server from starting
        _log.warning("the sweep of dead sandboxes' state stopped early: %s", exc)
    if done:
        _log.info("released what dead sandbox servers left: %s", "; ".join(done))
    return done


def _sweep(cgroup_root: Path, grace: float, done: list[str]) -> None:
    table = _processes()
    boot = _boot_id()
    claimed: set[str] = set()
    claimed_cgroups: set[str] = set()
    dead: list[tuple[Path, dict[str, Any]]] = []
    directory = _registry(create=False)
    for record_path in sorted(directory.iterdir()) if directory is not None else []:
        try:
            record = json.loads(record_path.read_text())
            pid, start, root = int(record["pid"]), int(record["start"]), str(record["root"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        claimed.add(root)
        claimed_cgroups.update(h.path for h in parse_cgroups(str(record.get("cgroups", ""))))
        if record.get("boot") == boot and _process_start(pid) == start:
            continue
        dead.append((record_path, record))
    for record_path, record in dead:
        root = str(record["root"])
        for pid, proc in table.items():
            if _is_factory(proc) and proc.argv[3:4] == (root,) and _kill(pid):
                done.append(f"killed the process factory {pid} of {root}")
        gone = remove_cgroups(str(record.get("cgroups", "")), rounds=20)
        gone = release_root(root) and gone
        if gone:
            with contextlib.suppress(OSError):
                record_path.unlink()
            done.append(f"released {root}")
    for pid in _orphaned_inits(table):
        if _kill(pid):
            done.append(f"killed the orphaned run init {pid}")
    done.extend(_remove_stale_ipc())
    referenced = {arg for proc in table.values() if _is_factory(proc) for arg in proc.argv[3:4]}
    stale_roots: set[str] = set()
    for version, path, owner, root_name in _legacy_cgroups(cgroup_root):
        if path in claimed_cgroups:
            continue
        try:
            made = os.stat(path).st_mtime
        except OSError:
            continue
        if _owner_alive(owner, made):
            continue
        if remove_cgroups(f"{version}::{path}", rounds=20):
            done.append(f"removed the cgroup {path}")
        stale_roots.add(root_name)
    now = time.time()
    parents = _legacy_parents()
    candidates = {
        p for p in _mount_points() if os.path.dirname(p) in parents and _ROOT_NAME.fullmatch(os.path.basename(p))
    }
    for parent in parents:
        with contextlib.suppress(OSError):
            candidates.update(
                e.path for e in os.scandir(parent) if _ROOT_NAME.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
            )
    for root in sorted(candidates):
        if root in claimed or root in referenced:
            continue
        try:
            st = os.lstat(root)
        except OSError:
            continue
        if st.st_uid != 0 or not stat.S_ISDIR(st.st_mode):
            continue  # a root server's roots are root's: anyone may make a directory of that name in /tmp
        if os.path.basename(root) not in stale_roots and now - st.st_mtime < grace:
            continue
        if release_root(root):
            done.append(f"released {root}")
