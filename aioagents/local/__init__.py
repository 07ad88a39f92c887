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

Stopping, and being killed
    ``aioagents serve`` stops on SIGINT or SIGTERM: every run's processes are killed, every directory, mount and
    cgroup is removed, and it exits 0. A server killed outright leaves nothing behind for long (root on Linux):

    * the server alone (SIGKILL, a crash, the OOM killer): its process factory sees the server's end close and
      kills every run, removes the cgroups, detaches the mounts and removes the root itself (about a second);
    * the process factory alone: each run's PID-namespace init dies with it (``PR_SET_PDEATHSIG``), taking the run
      along; the server starts a new factory and removes the cgroups at close;
    * both at once (a killed process tree or cgroup, the end of a session, Ray killing a dead worker's children):
      no process is left (as above), and the root, its mounts and the cgroups are released by the next server
      that starts on the host. Each root server records what it holds in ``/run/aioagents-owners`` (its pid and
      start time, root and cgroups); every root server's start sweeps the records whose owner is gone (a reused
      pid does not pass for it), orphaned run inits, SysV IPC objects of run uids no server holds, and the state
      of servers from before these records (cgroups named after a dead pid, unclaimed roots untouched for an
      hour). Nothing a live server holds is touched.

Containment (per run)
    Every level: a fresh directory that is the cwd, HOME and TMPDIR; a scrubbed environment; its own session and
    process group; wall-clock timeouts that kill the whole run; ``RLIMIT_DATA`` (``memory_limit_MB`` or
    ``Limits.memory_mb``), CPU, file-size and open-file limits per process; stdout/stderr capped at
    ``Limits.max_output_bytes`` each with a ``[truncated: N bytes omitted]`` marker. The run's argv, environment and
    program text reach the forked child through a pipe it reads after the fork, so the warm process factory never
    holds them and no later run can find them in the memory it inherits.

    The level in force is ``LocalSandbox.isolation`` (``LocalSandbox(isolation=...)`` chooses; ``auto``, the
    default, takes the strongest available); ``aioagents serve`` prints it at start-up and a warning is logged
    below ``full``.

    ``full`` (a server running as root on Linux, the default there)
        * PID namespace: the run is the only child of the init (pid 1, root's) of a namespace of its own and sees
          only its own processes; ending the init kills every descendant, whatever it did (``setsid``, double
          forks). There is no helper process a run could signal or stop. The run itself is not the init, so a
          signal it sends itself (``SIGKILL``, ``abort()``) acts as anywhere else; its orphans go to the init.
        * Mount namespace: the whole host file system is read-only; one private tmpfs capped at ``max_disk_mb``,
          seen at ``/tmp``, ``/var/tmp``, ``/dev/shm`` and ``/run/lock`` (one directory under four names), gone
          with the run; a ``/proc`` of its own PID namespace; no cgroup mounts. The run directory (0700, the run's
          uid): for a run of one step with no request ``files`` and no ``fetch_files`` (most runs), the run makes it
          in that private tmpfs as ``/tmp/aioagents-run`` (the same path in every run, each sees its own) with the
          program in it, and nothing of it ever exists on the host; otherwise (a compile step, files to write or
          read back) it is a tmpfs of its own on the host (``max_disk_mb``, 128 Ki inodes: the disk cap), detached
          in constant time when the run ends.
        * Network namespace with only ``lo`` (up, so a run may talk to itself): no route anywhere, host loopback
          included, so never to the sandbox's own API; abstract unix sockets are private to it. Namespaces are
          pooled and reused only after every process of the previous run is dead.
          ``LocalSandbox(network=True)`` / ``aioagents serve --network`` gives runs the host's network instead —
          loopback and this server's API included: only for trusted code that needs it.
        * IPC namespace (SysV and POSIX IPC die with the run) and UTS namespace (hostname ``sandbox``).
        * A cgroup per run, each controller from cgroup v2 where it is enabled there, else from v1 (``memory``
          and ``pids``), plus a v2 group wherever a writable cgroup2 hierarchy exists (its ``cgroup.kill`` ends
          whatever is left of a run): the memory limit bounds the whole run — every process, tmpfs, memfd and
          shared memory together, swap included where accounted — and ``Limits.max_processes`` bounds its tasks.
          A run killed for memory gets status ``Failed`` and ``sandbox: memory limit of N MB exceeded`` in its
          stderr.
        * A uid of its own (as in ``uid``).
        Not contained: reading the host file system (read-only, but whatever an unprivileged uid may read is
        readable), the host's kernel (shared: no seccomp filter, no VM), CPU time beyond the rlimit and timeouts
        (no CPU cgroup share), and side channels.

    ``userns`` (a server without root, where the kernel allows unprivileged user namespaces; the default there)
        The factory enters a user namespace of its own (the server's uid is root there) and each run gets the
        PID, mount, network, IPC and UTS namespaces, read-only host view, private tmpfs directories and /proc of
        ``full``; the run's init is forked inside its PID namespace by a small relay process that reports its
        status. The run itself is uid 1000 of a further, nested user namespace, with no capability over any of
        those namespaces (it cannot remount or unmount them). Not contained, unlike ``full``: no cgroup (memory and
        process-count limits are per process rlimits, without ``RLIMIT_NPROC``), no disk cap on the run directory
        (a plain directory the server removes afterwards), and outside its namespaces the run's processes and
        files are the server's own user's.

    ``uid`` (root, where namespaces are unavailable, or ``isolation="uid"``)
        A uid of its own per run, so ``RLIMIT_NPROC`` binds, nothing outside the run directory is writable except
        world-writable places such as /tmp (swept after the run), and every process of the run — including one
        that left its session — is killed afterwards. Limits are per process; no network isolation (runs reach
        loopback services, this server's API included); runs can see each other's processes. A helper process that
        kills by uid exists and could be interfered with.

    ``none`` (an unprivileged server without user namespaces, or ``isolation="none"``)
        Runs share the server's uid: process-count limits, write protection and processes that call ``setsid`` are
        not contained. Run the server as root (e.g. in a container) for hostile code.

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

import typing as _typing

from aioagents.local._process import Limits

if _typing.TYPE_CHECKING:
    from aioagents.local._app import LocalSandbox, serve

__all__ = ["Limits", "LocalSandbox", "serve"]


def __getattr__(name: str) -> object:
    """``LocalSandbox`` and ``serve`` load the HTTP server (aiohttp) on first access only (PEP 562)."""
    if name not in ("LocalSandbox", "serve"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from aioagents.local import _app

    value = getattr(_app, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's attributes, ``LocalSandbox`` and ``serve`` included before they are loaded."""
    return sorted(set(globals()) | set(__all__))
