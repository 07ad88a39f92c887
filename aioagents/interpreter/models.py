"""Results and errors of the interpreter client."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from aioagents._exceptions import APIError, ConflictError, InternalServerError, InvalidRequestError
from aioagents.interpreter.events import (
    DisplayData,
    Error,
    Event,
    File,
    Stream,
    merge_streams,
    render_events,
)

__all__ = [
    "ExecutionResult",
    "FileExistsInSandboxError",
    "InterpreterRequestError",
    "KernelDeadError",
    "PingResult",
    "SandboxPathError",
    "UploadedFile",
]


@attrs.frozen(kw_only=True)
class PingResult:
    """The sandbox is alive; ``last_activity`` (aware, UTC) is when it last executed code or moved a file."""

    last_activity: datetime


def _events(value: Sequence[Event]) -> tuple[Event, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class ExecutionResult:
    """What one ``execute`` gave back: ``status`` (``"ok"`` or ``"timeout"``) and the events in arrival order.

    An exception raised by the code does not change ``status``: it is an :class:`Error` event (see ``error``).
    After a timeout the events are those produced before the server stopped waiting.
    """

    status: str
    events: tuple[Event, ...] = attrs.field(converter=_events, factory=tuple)
    kernel_restarted: bool = False
    """The server replaced its kernel for or after this request: variables and imports are gone."""
    kernel_died: bool = False
    """The kernel died while running this code (reported by the server, or found by the session's health check
    after a timeout)."""

    @property
    def ok(self) -> bool:
        """The code ran to the end without raising."""
        return self.status == "ok" and self.error is None

    @property
    def timed_out(self) -> bool:
        """The server stopped waiting (the code may still be running in the kernel)."""
        return self.status == "timeout"

    @property
    def stdout(self) -> str:
        """Everything written to stdout, joined."""
        return "".join(e.text for e in self.events if isinstance(e, Stream) and e.name == "stdout")

    @property
    def stderr(self) -> str:
        """Everything written to stderr, joined."""
        return "".join(e.text for e in self.events if isinstance(e, Stream) and e.name == "stderr")

    @property
    def displays(self) -> tuple[DisplayData, ...]:
        """The rich outputs (``display()``, the value of a trailing expression, figures)."""
        return tuple(e for e in self.events if isinstance(e, DisplayData))

    @property
    def images(self) -> tuple[tuple[str, bytes], ...]:
        """Every binary image among the displays, as ``(mime type, bytes)``."""
        return tuple(img for d in self.displays if (img := d.image) is not None)

    @property
    def files(self) -> tuple[File, ...]:
        """Files the server reported as written."""
        return tuple(e for e in self.events if isinstance(e, File))

    @property
    def error(self) -> Error | None:
        """The first exception the code raised, if any."""
        return next((e for e in self.events if isinstance(e, Error)), None)

    def merged(self) -> ExecutionResult:
        """The same result with adjacent chunks of the same stream joined."""
        return attrs.evolve(self, events=merge_streams(self.events))

    def to_text(self, *, max_chars: int | None = 8000) -> str:
        """The result as plain text for an LLM prompt (see :func:`~aioagents.interpreter.render_events`)."""
        return render_events(self.events, timed_out=self.timed_out, max_chars=max_chars)


@attrs.frozen(kw_only=True)
class UploadedFile:
    """A file now in the sandbox: its normalised absolute ``path`` and ``size`` in bytes."""

    path: str
    size: int


class KernelDeadError(InternalServerError):
    """The sandbox's kernel has died (the server answers its health check with 500). The sandbox must be
    restarted or rebuilt; its variables are gone."""


class KernelBusyError(APIError):
    """The kernel is still running an earlier cell that timed out, so this code was **not sent**: queued behind that
    cell it could be silently aborted (the CodeGeeX4 server's kernel client aborts every cell queued behind one that
    raises, and answers ``{"status": "ok", "events": []}``, indistinguishable from a cell that printed nothing). Try
    again later, or restart the sandbox."""


class InterpreterRequestError(InternalServerError):
    """The server rejected the request with 500 ``{"error": ...}`` (an invalid body, for this server family)."""


class FileExistsInSandboxError(ConflictError):
    """An upload with ``overwrite=False`` found the file already there."""


class SandboxPathError(InvalidRequestError):
    """A path (given by the caller, or a file name sent by the server) would leave its allowed directory, or is
    not a usable path. Nothing was sent."""
