"""The embedded local sandbox: SandboxFusion and CodeGeeX4-interpreter APIs served by an in-process aiohttp server.

It is the default place to run code when no endpoint is configured — the way SQLite is for a database library —
with no account and no Docker. The official ``sandbox-fusion`` SDK and aioagents' own clients work against it
unchanged::

    from aioagents.local import LocalSandbox

    async with LocalSandbox() as sb:            # 127.0.0.1, an ephemeral port
        ...  # point any SandboxFusion or interpreter client at sb.url

Routes
    SandboxFusion: ``POST /run_code``, ``POST /run_jupyter``, ``GET /v1/ping``.
    Interpreter (CodeGeeX4 ``SANDBOX.md``): ``GET /``, ``POST /execute``, ``POST /files/upload/-/{path}``,
    ``GET /files/download/-/{path}``.

Streaming execute events
    ``POST /execute`` with ``Accept: application/x-ndjson`` answers newline-delimited JSON: one line per event as
    it arrives (``{"type", "timestamp", "data"}``, the same shape as the JSON reply's ``events``), then a final
    ``{"type": "status", "status": "ok" | "timeout"}`` line (plus ``"kernel_restarted": true`` when the kernel
    was replaced). Without that Accept value the reply is one JSON object ``{"status", "events"}``.

Interpreter semantics (where they differ from the original server)
    A timeout interrupts the kernel; a dead kernel is restarted and reported (``kernel_restarted`` and a
    ``KernelDied`` error event); ``GET /`` answers 500 ``{"error": "kernel is not alive"}`` while it is replaced.
    Files are confined to the data directory: the path after ``/-/`` is relative to it (an absolute path inside it
    and the CodeGeeX4 ``mnt/data/`` prefix are accepted too); ``..``, symlinks out of it and absolute paths outside
    it (``/files/upload/-/tmp/x`` is ``/tmp/x``, as on the original server) are refused with 400. Upload answers
    201, or 409 ``{"error": "file already exists"}`` unless ``?overwrite=true``.

Fetched files
    ``fetch_files`` answers each requested name (the contract keys the answer by the exact string), reads a file
    asked for under several spellings once, and caps the whole answer at ``LocalSandbox(max_fetch_bytes=...)``
    (32 MiB before base64, each name counted): over it the answer is ``SandboxError`` with a message that says so,
    and the run's own results. Files are base64-encoded piece by piece as the answer is written.

Stopping
    ``aioagents serve`` stops on SIGINT or SIGTERM: every run's processes are killed, every directory is removed,
    and it exits 0.

Containment (per run)
    A fresh directory that is the cwd, HOME and TMPDIR; a scrubbed environment; its own session and process group;
    wall-clock timeouts that kill the whole group; ``RLIMIT_DATA`` (``memory_limit_MB`` or ``Limits.memory_mb``),
    CPU, file-size, open-file limits; stdout/stderr capped at ``Limits.max_output_bytes`` each with a
    ``[truncated: N bytes omitted]`` marker. When the server runs as root each run also gets a uid of its own, so
    ``RLIMIT_NPROC`` binds, nothing outside the run directory is writable except world-writable places such as
    /tmp (a file left there survives the run), and every process of the run — including one that left its
    session — is killed afterwards. Reading is not confined: a run can read whatever any user may read.
    Without root, process-count limits, write protection and processes that call ``setsid`` are not contained:
    run the server as root (e.g. in a container) for hostile code. This is containment by uid, limits and
    process groups, not a VM or namespace sandbox.

Python fast path
    Python runs are forked from a warm interpreter (a "zygote" that never runs user code), each run still its own
    process with the same limits. ``LocalSandbox(python_fast_path=False)`` runs ``python main.py`` per request.
    Compare both with ``python benchmarks/bench_local_sandbox.py``.

Toolchains and interpreters
    A language is available when its programs are on the PATH and, when runs drop privileges, reachable by an
    unprivileged uid (a toolchain under a ``0700`` home such as ``/root/.cargo`` is reported as unreachable; the
    answer is the contract's ``Failed`` with that reason). Sandboxed Python is the server's interpreter, or — when
    that one is unreachable — another interpreter of the same version found on the PATH, lent the server's
    site-packages (so ``ipykernel``, ``pytest`` and ``matplotlib`` are importable). ``LocalSandbox.languages``
    lists what this machine can run.
"""

from aioagents.local._app import LocalSandbox, serve
from aioagents.local._process import Limits

__all__ = ["Limits", "LocalSandbox", "serve"]
