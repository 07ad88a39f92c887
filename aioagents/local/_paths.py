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

__all__ = ["PathError", "open_for_write", "read_confined", "split_relative", "stat_confined"]

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


def read_confined(root: Path, path: str, *, max_bytes: int) -> bytes | None:
    """The content of the regular file ``path`` under ``root``; None if it is missing, not regular, or a symlink."""
    try:
        parts = split_relative(path)
        with _walk(root, parts, create=False, owner=None) as dfd:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dfd)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            return f.read(max_bytes)
    except (OSError, PathError):
        return None


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
