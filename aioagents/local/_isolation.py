"""Isolation levels of the local sandbox, and the server's side of them (mounts and cgroup discovery).

The per-run work happens in the process factory (``_zygote.py``: namespaces, the read-only view, private tmpfs
directories, joining the run's cgroup). The server's part is small and runs on the event loop, in constant time:

* at start, the server's root directory is bind-mounted on itself as a *shared* mount, so that the tmpfs it
  mounts for each run appears in the factory's mount namespace (a slave of the host's, made before any run);
* per run, a size-capped tmpfs is mounted on the run directory (``mount``, ~30 µs) and, when the run ends, lazily
  detached (``umount2(MNT_DETACH)``) and its mount point removed: no recursive deletion, whatever the run left;
* the cgroup parent directories are chosen here: cgroup v2 where a writable cgroup2 hierarchy offers the memory
  controller, else v1 ``memory`` and ``pids``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import sys
import time
from pathlib import Path
from typing import Literal

__all__ = [
    "ISOLATION_LEVELS",
    "IsolationLevel",
    "cgroup_parent",
    "detach",
    "detach_only",
    "is_small",
    "mount_root",
    "mount_tmpfs",
    "remove_cgroups",
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


def remove_cgroups(parent: str) -> None:
    """Remove the runs' cgroups and their parents (a process factory that was killed could not); never raises.

    Runs a few rounds: a run killed just now may take a moment to leave its cgroup."""
    kind, _, rest = parent.partition(":")
    if kind not in ("v1", "v2"):
        return
    for _ in range(20):
        left = False
        for top in rest.split(":"):
            try:
                children = [entry.path for entry in os.scandir(top) if entry.is_dir(follow_symlinks=False)]
            except FileNotFoundError:
                continue
            except OSError:
                left = True
                continue
            for path in [*children, top]:
                try:
                    os.rmdir(path)
                except FileNotFoundError:
                    pass
                except OSError:
                    left = True
        if not left:
            return
        time.sleep(0.05)
    _log.warning("could not remove the sandbox's cgroups under %s", rest)


def _own_cgroup(controller: str) -> str | None:
    """This process's cgroup path in the hierarchy of ``controller`` (``""`` for cgroup v2)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        if (controller == "" and ctrls == "") or controller in ctrls.split(","):
            return path
    return None


def cgroup_parent(tag: str) -> str:
    """Where the runs' cgroups go, in the factory's notation: ``v2:<dir>``, ``v1:<memory dir>:<pids dir>``, or
    ``""`` when neither hierarchy can be used (then the isolation level is still full, without cgroups)."""
    if not sys.platform.startswith("linux"):
        return ""
    for mount in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        controllers = Path(mount, "cgroup.controllers")
        try:
            available = controllers.read_text().split()
        except OSError:
            continue
        if "memory" in available and "pids" in available and os.access(mount, os.W_OK):
            # The root cgroup may hold processes and still delegate controllers to its children.
            return f"v2:{mount}/{tag}"
    memory_own = _own_cgroup("memory")
    pids_own = _own_cgroup("pids")
    memory_root = Path("/sys/fs/cgroup/memory")
    pids_root = Path("/sys/fs/cgroup/pids")
    if memory_own is not None and pids_own is not None and memory_root.is_dir() and pids_root.is_dir():
        memory = memory_root / memory_own.lstrip("/")
        pids = pids_root / pids_own.lstrip("/")
        if os.access(memory, os.W_OK) and os.access(pids, os.W_OK):
            return f"v1:{memory / tag}:{pids / tag}"
    return ""
