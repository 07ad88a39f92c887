"""Client of CodeGeeX4-style interpreter sandboxes: typed event streams, files, and a session that survives timeouts.

::

    from aioagents.interpreter import Interpreter

    async with Interpreter("http://127.0.0.1:8080") as it:
        result = await it.execute("import math; math.pi")
        print(result.to_text())
"""

from aioagents.interpreter.client import (
    DEFAULT_BASE_URL,
    DEFAULT_DATA_DIR,
    Interpreter,
    InterpreterClient,
    UploadSource,
    normalize_sandbox_path,
    parse_content_disposition,
)
from aioagents.interpreter.events import (
    DisplayData,
    Error,
    Event,
    ExecutionEnd,
    File,
    Stream,
    UnknownEvent,
    merge_streams,
    parse_event,
    render_events,
    strip_ansi,
)
from aioagents.interpreter.models import (
    ExecutionResult,
    FileExistsInSandboxError,
    InterpreterRequestError,
    KernelBusyError,
    KernelDeadError,
    PingResult,
    SandboxPathError,
    UploadedFile,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_DATA_DIR",
    "DisplayData",
    "Error",
    "Event",
    "ExecutionEnd",
    "ExecutionResult",
    "File",
    "FileExistsInSandboxError",
    "Interpreter",
    "InterpreterClient",
    "InterpreterRequestError",
    "KernelBusyError",
    "KernelDeadError",
    "PingResult",
    "SandboxPathError",
    "Stream",
    "UnknownEvent",
    "UploadSource",
    "UploadedFile",
    "merge_streams",
    "normalize_sandbox_path",
    "parse_content_disposition",
    "parse_event",
    "render_events",
    "strip_ansi",
]
