"""The ``aioagents`` command.

::

    aioagents serve [--host 127.0.0.1] [--port 8080] [--token T]     the local sandbox (SandboxFusion + interpreter)
    aioagents run FILE | -c CODE [--language python] [--stdin TEXT]   run one program, print its output
    aioagents batch IN.jsonl --out OUT.jsonl [--concurrency N]         run many programs; resumable

``run`` and ``batch`` use ``--endpoint``, else ``SANDBOX_FUSION_ENDPOINT``, else an embedded sandbox started in this
process on an ephemeral loopback port.

A batch input line is a JSON object: ``{"id": …, "code": …, "language": "python", "stdin"?, "run_timeout"?,
"compile_timeout"?, "memory_limit_MB"?, "files"?, "fetch_files"?}`` (``id`` defaults to the line number). Each result
is appended to OUT as soon as it is known, so an interrupted batch resumes where it stopped: ids already in OUT are
skipped. A bad line becomes an error row; it never stops the batch.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs

from aioagents._batch import as_completed
from aioagents._exceptions import AioAgentsError, InvalidRequestError
from aioagents.sandbox import CommandRunStatus, RunCodeRequest, RunCodeResponse, RunStatus, SandboxClient

__all__ = ["main"]

_EXTENSIONS = {
    ".py": "python", ".sh": "bash", ".js": "nodejs", ".cpp": "cpp", ".cc": "cpp", ".go": "go", ".java": "java",
    ".rs": "rust", ".ts": "typescript", ".rb": "ruby", ".php": "php", ".lua": "lua", ".pl": "perl", ".R": "R",
    ".jl": "julia", ".scala": "scala", ".swift": "swift", ".cs": "csharp",
}  # fmt: skip


@contextlib.asynccontextmanager
async def _endpoint(explicit: str | None) -> AsyncIterator[str]:
    """The endpoint to use, starting an embedded sandbox when none is given or configured."""
    endpoint = explicit or os.environ.get("SANDBOX_FUSION_ENDPOINT")
    if endpoint:
        yield endpoint
        return
    from aioagents.local import LocalSandbox

    async with LocalSandbox() as sandbox:
        print(f"[aioagents] started an embedded sandbox at {sandbox.url}", file=sys.stderr)
        yield sandbox.url


# -- serve -----------------------------------------------------------------------------------------------------
def _serve(args: argparse.Namespace) -> int:
    from aioagents.local import serve

    def ready(sandbox: Any) -> None:
        print(
            f"aioagents: serving the local sandbox at {sandbox.url} (isolation: {sandbox.isolation}"
            f"{', network on' if args.network else ''}; Ctrl-C stops it)",
            flush=True,
        )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                host=args.host,
                port=args.port,
                token=args.token or os.environ.get("AIOAGENTS_TOKEN"),
                work_dir=args.work_dir,
                network=args.network,
                on_ready=ready,
            )
        )
    return 0


# -- run -------------------------------------------------------------------------------------------------------
def _run(args: argparse.Namespace) -> int:
    if args.code is not None:
        code, language = args.code, args.language or "python"
    else:
        path = Path(args.file)
        code = sys.stdin.read() if args.file == "-" else path.read_text()
        language = args.language or _EXTENSIONS.get(path.suffix, "python")
    return asyncio.run(_run_async(args, code, language))


async def _run_async(args: argparse.Namespace, code: str, language: str) -> int:
    async with _endpoint(args.endpoint) as endpoint, SandboxClient(endpoint) as client:
        result = await client.run_code(
            code, language=language, stdin=args.stdin, run_timeout=args.timeout, compile_timeout=args.timeout
        )
    for step in (result.compile_result, result.run_result):
        if step is not None:
            sys.stdout.write(step.stdout or "")
            sys.stderr.write(step.stderr or "")
    if result.status is RunStatus.Success:
        return 0
    run = result.run_result or result.compile_result
    if run is not None and run.status is CommandRunStatus.TimeLimitExceeded:
        print(f"[aioagents] time limit exceeded ({args.timeout:g}s)", file=sys.stderr)
        return 124
    return run.return_code if run is not None and run.return_code else 1


# -- batch -----------------------------------------------------------------------------------------------------
@attrs.frozen
class _Item:
    id: Any
    request: RunCodeRequest | None
    problem: str | None = None


def _read_items(path: Path) -> Iterator[_Item]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            row: Any = None
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise InvalidRequestError("a line must be a JSON object")
                fields = {"language": "python", **{k: row[k] for k in _REQUEST_FIELDS if k in row}}
                yield _Item(row.get("id", number), RunCodeRequest(**fields))
            except (ValueError, TypeError) as exc:
                ident = row.get("id", number) if isinstance(row, dict) else number
                yield _Item(ident, None, f"line {number}: {exc}")


_REQUEST_FIELDS = (
    "code", "language", "stdin", "run_timeout", "compile_timeout", "memory_limit_MB", "files", "fetch_files",
)  # fmt: skip


def _done_ids(out: Path) -> set[str]:
    done: set[str] = set()
    if out.exists():
        for line in out.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                done.add(json.dumps(json.loads(line)["id"]))
    return done


def _row(ident: Any, result: RunCodeResponse | None, error: str | None, latency: float) -> dict[str, Any]:
    row: dict[str, Any] = {"id": ident, "latency_ms": round(latency * 1000, 1)}
    if result is None:
        row.update(outcome="error", error=error)
        return row
    run = result.run_result
    timed_out = any(
        step is not None and step.status is CommandRunStatus.TimeLimitExceeded
        for step in (result.compile_result, result.run_result)
    )
    outcome = "passed" if result.status is RunStatus.Success else ("timed_out" if timed_out else "failed")
    row.update(
        outcome=outcome,
        status=result.status.value,
        return_code=run.return_code if run else None,
        stdout=run.stdout if run else None,
        stderr=run.stderr if run else (result.compile_result.stderr if result.compile_result else None),
    )
    if result.files:
        row["files"] = result.files
    return row


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(rows: list[dict[str, Any]], skipped: int, elapsed: float, out: TextIO) -> None:
    counts = {k: sum(1 for r in rows if r["outcome"] == k) for k in ("passed", "failed", "timed_out", "error")}
    latencies = [r["latency_ms"] for r in rows if r["outcome"] != "error"]
    table = [
        ("passed", counts["passed"]),
        ("failed", counts["failed"]),
        ("timed out", counts["timed_out"]),
        ("errors", counts["error"]),
        ("skipped (already done)", skipped),
        ("p50 latency", f"{_percentile(latencies, 0.5):.1f} ms"),
        ("p95 latency", f"{_percentile(latencies, 0.95):.1f} ms"),
        ("throughput", f"{len(rows) / elapsed:.1f} runs/s" if elapsed > 0 else "-"),
    ]
    width = max(len(k) for k, _ in table)
    print("-" * (width + 14), file=out)
    for key, value in table:
        print(f"{key:<{width}}  {value:>10}", file=out)
    print("-" * (width + 14), file=out)


def _batch(args: argparse.Namespace) -> int:
    source, out_path = Path(args.input), Path(args.out)
    done = _done_ids(out_path)
    items = [item for item in _read_items(source) if json.dumps(item.id) not in done]
    with out_path.open("a", encoding="utf-8") as out:
        rows, elapsed = asyncio.run(_batch_async(args, items, out))
    _summary(rows, len(done), elapsed, sys.stdout)
    return 0


async def _batch_async(
    args: argparse.Namespace, items: list[_Item], out: TextIO
) -> tuple[list[dict[str, Any]], float]:
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    async with _endpoint(args.endpoint) as endpoint, SandboxClient(endpoint) as client:

        async def run(item: _Item) -> tuple[RunCodeResponse | None, str | None, float]:
            if item.request is None:
                return None, item.problem, 0.0
            t0 = time.perf_counter()
            try:
                return await client.run_code(item.request), None, time.perf_counter() - t0
            except AioAgentsError as exc:
                return None, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0

        async with contextlib.aclosing(
            as_completed(run, items, concurrency=args.concurrency, progress=not args.quiet, desc="batch")
        ) as results:
            async for item in results:
                result, error, latency = item.unwrap()
                row = _row(item.input.id, result, error, latency)
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                out.flush()
                rows.append(row)
    return rows, time.perf_counter() - started


# -- entry point -----------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aioagents", description="Run code in sandboxes, one program or a batch.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the local sandbox (SandboxFusion and interpreter APIs)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (non-loopback needs --token)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (or set AIOAGENTS_TOKEN)")
    serve.add_argument(
        "--work-dir", help="where run directories go (default: /dev/shm when it is a usable tmpfs, else $TMPDIR)"
    )
    serve.add_argument(
        "--network",
        action="store_true",
        help="give runs the host's network (loopback and this server's API included): trusted code only",
    )

    run = sub.add_parser("run", help="run one program and print its output")
    what = run.add_mutually_exclusive_group(required=True)
    what.add_argument("file", nargs="?", help="a source file ('-' reads stdin)")
    what.add_argument("-c", dest="code", help="the program text")
    run.add_argument("--language", "-l", help="language (default: from the file extension, else python)")
    run.add_argument("--stdin", help="text fed to the program's stdin")
    run.add_argument("--timeout", type=float, default=10.0, help="compile and run time limit in seconds")
    run.add_argument("--endpoint", help="a SandboxFusion endpoint (default: an embedded sandbox)")

    batch = sub.add_parser("batch", help="run a JSONL file of programs; resumable")
    batch.add_argument("input", help="input JSONL: one {id, code, language, ...} object per line")
    batch.add_argument("--out", required=True, help="output JSONL (appended; ids already there are skipped)")
    batch.add_argument("--concurrency", type=int, default=4)
    batch.add_argument("--endpoint", help="a SandboxFusion endpoint (default: an embedded sandbox)")
    batch.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aioagents`` command."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "run":
            return _run(args)
        return _batch(args)
    except AioAgentsError as exc:
        print(f"aioagents: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
