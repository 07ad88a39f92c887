"""Paths that come from a request, confined to one directory.

The server runs as root while the directory belongs to sandboxed code, which may plant symlinks. So a path is
checked lexically (relative, no ``..``, no NUL) *and* opened component by component with ``O_NOFOLLOW`` relative to
a directory fd: a symlink anywhere on the way is refused instead of followed, with no check-then-use race.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["PathError", "open_confined", "open_for_write", "remove_tree", "split_relative", "stat_confined"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PathError(ValueError):
    """A path that is not a plain relative path inside the sandbox directory."""


def split_relative(path: str) -> list[str]:
    """Split a request path into safe components; absolute paths, ``..``, empty names and NUL are refused."""
    if not path or "\x00" in path:
        raise PathError("empty path or NUL byte in path")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise PathError("the path is not valid UTF-8 (a lone surrogate)") from None
    if path.startswith("/") or path.startswith("\\"):
        raise PathError("absolute paths are not allowed; use a path relative to the run directory")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise PathError("the path names the directory itself")
    if any(p == ".." for p in parts):
        raise PathError("'..' is not allowed in paths")
    return parts


@contextlib.contextmanager
def _walk(root: Path, parts: list[str], *, create: bool, owner: tuple[int, int] | None) -> Iterator[int]:
    """Yield an fd of the directory holding ``parts[-1]``, never following a symlink on the way."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for name in parts[:-1]:
            try:
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(name, 0o755, dir_fd=fd)
                if owner is not None:
                    os.chown(name, *owner, dir_fd=fd, follow_symlinks=False)
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def open_for_write(
    root: Path, path: str, *, exclusive: bool, owner: tuple[int, int] | None = None
) -> tuple[int, int, str]:
    """Create ``path`` under ``root`` (parents too) and return ``(dir_fd, file_fd, name)``; the caller closes both.

    ``exclusive`` raises FileExistsError for an existing file. A symlink in the way raises OSError (ELOOP/ENOTDIR).
    """
    parts = split_relative(path)
    with _walk(root, parts, create=True, owner=owner) as dfd:
        dir_fd = os.dup(dfd)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_EXCL if exclusive else os.O_TRUNC)
    try:
        fd = os.open(parts[-1], flags, 0o644, dir_fd=dir_fd)
        if owner is not None:
            os.fchown(fd, *owner)
    except BaseException:
        os.close(dir_fd)
        raise
    return dir_fd, fd, parts[-1]


def open_confined(root: Path, path: str) -> int:
    """A read fd of ``path`` under ``root`` (of any type: the caller checks it), never through a symlink.

    Raises PathError for an unsafe path and OSError when it cannot be opened (missing, a symlink...).
    """
    parts = split_relative(path)
    with _walk(root, parts, create=False, owner=None) as dfd:
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dfd)


def stat_confined(root: Path, path: str) -> tuple[int, os.stat_result] | None:
    """An open read fd and the stat of the regular file ``path`` under ``root``, or None."""
    try:
        parts = split_relative(path)
        with _walk(root, parts, create=False, owner=None) as dfd:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dfd)
    except (OSError, PathError):
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st


_REMOVE_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _open_dir_for_removal(name: str, parent_fd: int) -> int:
    """Open the directory ``name`` under ``parent_fd`` to list it; one the run made unreadable (``chmod 0``) is made
    ours again first (it is ours to remove; as root this never happens). Never follows a symlink."""
    try:
        return os.open(name, _REMOVE_DIR_FLAGS, dir_fd=parent_fd)
    except PermissionError:
        pfd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
        try:
            os.chmod(f"/proc/self/fd/{pfd}", 0o700)  # an O_PATH fd: no symlink can be followed here
        finally:
            os.close(pfd)
        return os.open(name, _REMOVE_DIR_FLAGS, dir_fd=parent_fd)


def remove_tree(path: str | os.PathLike[str], *, log: Any = None) -> bool:
    """Remove ``path`` and everything under it; True when it is gone. Never raises, never recurses.

    Any depth (a run may nest thousands of directories: a recursive walk would end in ``RecursionError``), with one
    open directory fd at a time, never following a symlink and never leaving the file system of ``path``. Going back
    up goes through ``..`` and checks that it is the directory we came from (device and inode), so a directory moved
    away meanwhile stops the removal of that branch instead of letting it continue somewhere else. One entry that
    cannot be removed is logged (through ``log``, a logger, if given) and skipped; the rest still goes.
    """
    failures = 0

    def fail(what: str, exc: BaseException) -> None:
        nonlocal failures
        failures += 1
        if log is not None and failures <= 5:
            log.warning("could not remove %s: %s", what, exc)

    path = os.fspath(path)
    head, _, top = path.rstrip("/").rpartition("/")
    try:
        parent_fd = os.open(head or "/", _REMOVE_DIR_FLAGS)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            return True
        fail(path, exc)
        return False
    try:
        try:
            st = os.lstat(top, dir_fd=parent_fd)
        except FileNotFoundError:
            return True
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(top, dir_fd=parent_fd)
            return True
        _remove_dir_iteratively(parent_fd, top, st, fail)
    except OSError as exc:
        fail(path, exc)
    finally:
        os.close(parent_fd)
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        pass
    return False


def _remove_dir_iteratively(parent_fd: int, top: str, top_st: os.stat_result, fail: Any) -> None:
    """Empty and remove the directory ``top`` (under ``parent_fd``, which stays open and is not closed here)."""
    device = top_st.st_dev
    # The way down: (name in its parent, (dev, ino) of the directory itself).
    stack: list[tuple[str, tuple[int, int]]] = [(top, (top_st.st_dev, top_st.st_ino))]
    fd = _open_dir_for_removal(top, parent_fd)
    skipped: set[tuple[int, int]] = set()  # directories we gave up on: not entered again
    try:
        while True:
            descended = False
            with os.scandir(fd) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                        if stat.S_ISDIR(st.st_mode):
                            key = (st.st_dev, st.st_ino)
                            if st.st_dev != device or key in skipped:
                                continue  # a mount point (never crossed) or a branch that failed before
                            child = _open_dir_for_removal(entry.name, fd)
                            cst = os.fstat(child)
                            if (cst.st_dev, cst.st_ino) != key:  # swapped between the stat and the open
                                os.close(child)
                                skipped.add(key)
                                continue
                            stack.append((entry.name, key))
                            os.close(fd)
                            fd = child
                            descended = True
                            break
                        os.unlink(entry.name, dir_fd=fd)
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        fail(entry.path, exc)
            if descended:
                continue
            # This directory is as empty as we can make it: go up and remove it.
            name, key = stack.pop()
            if not stack:
                os.close(fd)
                fd = -1
                try:
                    os.rmdir(name, dir_fd=parent_fd)
                except OSError as exc:
                    fail(name, exc)
                return
            up = os.open("..", _REMOVE_DIR_FLAGS, dir_fd=fd)
            ust = os.fstat(up)
            os.close(fd)
            fd = up
            if (ust.st_dev, ust.st_ino) != stack[-1][1]:
                # Moved while we were inside: whatever ``..`` is now is not ours to empty.
                fail(name, OSError("the directory was moved during its removal"))
                return
            try:
                os.rmdir(name, dir_fd=fd)
            except FileNotFoundError:
                pass
            except OSError as exc:
                skipped.add(key)
                fail(name, exc)
    finally:
        if fd >= 0:
            os.close(fd)
