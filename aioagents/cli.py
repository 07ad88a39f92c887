"""The ``aioagents`` command.

::

    aioagents serve [--host 127.0.0.1] [--port 8080] [--token T]     the local sandbox (SandboxFusion + interpreter)
    aioagents run FILE | -c CODE [--language python] [--stdin TEXT]   run one program, print its output
    aioagents batch IN.jsonl --out OUT.jsonl [--concurrency N]         run many programs; resumable
    aioagents eval SAMPLES.jsonl --dataset NAME --out OUT.jsonl        pass@k on a benchmark; resumable
    aioagents --version

``run`` and ``batch`` use ``--endpoint``, else ``SANDBOX_FUSION_ENDPOINT`` (either is pinged first, so one that does
not answer is one clear error), else an embedded sandbox started in this process on an ephemeral loopback port — and
only when there is something to run.

A batch input line is a JSON object: ``{"id": …, "code": …, "language": "python", "stdin"?, "run_timeout"?,
"compile_timeout"?, "memory_limit_MB"?, "files"?, "fetch_files"?}`` (``id`` defaults to the line number). Each result
is appended to OUT as soon as it is known, so an interrupted batch resumes where it stopped: ids already in OUT are
skipped. A bad line becomes an error row naming its line number; it never stops the batch.

Conventions every subcommand follows (the helpers live in ``aioagents._cli_support`` and ``aioagents._progress`` so
a subcommand in another module, e.g. ``eval``, follows them too):

- A user's mistake raises ``UserError(message, ExitCode.X)``; :func:`main` prints it as one line on stderr
  (``aioagents: message``) and exits with that status — never a traceback. The statuses are ``ExitCode`` and are
  listed in ``aioagents --help`` (``EXIT_CODES_HELP``).
- Check before starting anything: ``read_input`` (missing/unreadable input: 66), ``check_output`` (OUT not writable:
  73); start a sandbox (``sandbox_endpoint``) only when there is work left; an endpoint that does not answer is 69
  with its URL.
- Exit 0 when every item ran, whatever its verdict; ``add_fail_on_option`` + ``failure_exit`` give
  ``--fail-on error|failed`` (exit 1) for CI.
- Long commands draw progress on stderr with ``aioagents._progress.progress_bar`` (tqdm when installed, else a
  built-in line), silent with ``--quiet`` or when stderr is not a terminal; ``add_common_options`` adds ``--quiet``
  and ``--verbose``. The summary goes to stdout and says where the results went.
- Every subparser has an ``epilog=example(...)`` so its ``--help`` shows a command line to copy.
- A subcommand registers ``handler=`` with ``set_defaults``; ``main`` calls ``handler(args)`` for its exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import attrs

import aioagents
from aioagents import _eval_cli
from aioagents._batch import BatchIterator, BatchResult, as_completed
from aioagents._cli_support import (
    EXIT_CODES_HELP,
    ExitCode,
    JsonlWriter,
    UserError,
    add_common_options,
    add_fail_on_option,
    check_output,
    example,
    failure_exit,
    note,
    read_input,
    sandbox_endpoint,
    setup_logging,
    unavailable,
)
from aioagents._exceptions import AioAgentsError, APIConnectionError, InvalidRequestError
from aioagents._progress import progress_bar

if TYPE_CHECKING:
    # Imported where used: ``aioagents eval`` (in process) and ``--help`` load neither the HTTP client (aiohttp) nor
    # the wire models.
    from aioagents.sandbox import RunCodeRequest, RunCodeResponse, SandboxClient

__all__ = ["main"]

_EXTENSIONS = {
    ".py": "python", ".sh": "bash", ".js": "nodejs", ".cpp": "cpp", ".cc": "cpp", ".go": "go", ".java": "java",
    ".rs": "rust", ".ts": "typescript", ".rb": "ruby", ".php": "php", ".lua": "lua", ".pl": "perl", ".R": "R",
    ".jl": "julia", ".scala": "scala", ".swift": "swift", ".cs": "csharp",
}  # fmt: skip


def _check_language(language: str) -> str:
    from aioagents.sandbox.models import LANGUAGES

    if language not in LANGUAGES:
        known = ", ".join(sorted(LANGUAGES, key=str.lower))
        raise UserError(f"unknown language {language!r}; the sandbox runs: {known}", ExitCode.UNKNOWN_LANGUAGE)
    return language


# -- serve -----------------------------------------------------------------------------------------------------
def _serve(args: argparse.Namespace) -> int:
    from aioagents.local import serve

    def ready(sandbox: Any) -> None:
        print(
            f"aioagents: serving the local sandbox at {sandbox.url} (isolation: {sandbox.isolation}"
            f"{', network on' if args.network else ''}; Ctrl-C stops it)",
            flush=True,
        )

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                serve(
                    host=args.host,
                    port=args.port,
                    token=args.token or os.environ.get("AIOAGENTS_TOKEN"),
                    work_dir=args.work_dir,
                    workers=args.workers,
                    network=args.network,
                    on_ready=ready,
                )
            )
    except ValueError as exc:  # e.g. a non-loopback address without a token
        raise UserError(str(exc), ExitCode.USAGE) from None
    except OSError as exc:  # the port is taken, the address is not this machine's …
        raise UserError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", ExitCode.UNAVAILABLE
        ) from None
    return ExitCode.OK


# -- run -------------------------------------------------------------------------------------------------------
def _run(args: argparse.Namespace) -> int:
    if args.code is not None:
        code, language = args.code, args.language or "python"
    else:
        code = read_input(args.file)
        language = args.language or _EXTENSIONS.get(os.path.splitext(args.file)[1], "python")
    _check_language(language)
    return asyncio.run(_run_async(args, code, language))


async def _run_async(args: argparse.Namespace, code: str, language: str) -> int:
    from aioagents.sandbox.client import SandboxClient
    from aioagents.sandbox.models import CommandRunStatus, RunStatus

    # One program: the embedded sandbox serves it from this process (worker processes, one per CPU, would each import
    # the library and the server and start a process factory, for nothing).
    sandbox = sandbox_endpoint(args.endpoint, quiet=args.quiet, workers=1)
    async with sandbox as endpoint, SandboxClient(endpoint) as client:
        try:
            result = await client.run_code(
                code, language=language, stdin=args.stdin, run_timeout=args.timeout, compile_timeout=args.timeout
            )
        except APIConnectionError as exc:
            raise unavailable(endpoint, exc) from None
    for step in (result.compile_result, result.run_result):
        if step is not None:
            sys.stdout.write(step.stdout or "")
            sys.stderr.write(step.stderr or "")
    if result.status is RunStatus.Success:
        return 0
    run = result.run_result or result.compile_result
    if run is not None and run.status is CommandRunStatus.TimeLimitExceeded:
        note(f"time limit exceeded ({args.timeout:g}s)")
        return ExitCode.TIME_LIMIT
    return run.return_code if run is not None and run.return_code else 1


# -- batch -----------------------------------------------------------------------------------------------------
@attrs.frozen
class _Item:
    id: Any
    request: RunCodeRequest | None
    problem: str | None = None


def _parse_items(text: str) -> list[_Item]:
    from aioagents.sandbox.models import RunCodeRequest

    items: list[_Item] = []
    # Split on "\n" only: str.splitlines() also splits on U+2028 and friends, which JSON strings may hold raw.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        row: Any = None
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise InvalidRequestError(f"expected a JSON object, got {type(row).__name__}")
            if "code" not in row:
                raise InvalidRequestError("no 'code' field")
            fields = {"language": "python", **{k: row[k] for k in _REQUEST_FIELDS if k in row}}
            items.append(_Item(row.get("id", number), RunCodeRequest(**fields)))
        except (ValueError, TypeError) as exc:
            ident = row.get("id", number) if isinstance(row, dict) else number
            reason = f"not JSON: {exc}" if isinstance(exc, json.JSONDecodeError) else str(exc)
            items.append(_Item(ident, None, f"line {number}: {reason}"))
    return items


_REQUEST_FIELDS = (
    "code", "language", "stdin", "run_timeout", "compile_timeout", "memory_limit_MB", "files", "fetch_files",
)  # fmt: skip


def _done_outcomes(out: str) -> dict[str, str]:
    """The outcome of each id already in OUT, keyed by the id's JSON (so 1 and "1" stay apart)."""
    done: dict[str, str] = {}
    try:
        text = read_input(out) if os.path.isfile(out) else ""  # not /dev/full, a FIFO …: nothing done there
    except UserError as exc:
        raise UserError(str(exc).replace("input", "OUT", 1), ExitCode.CANT_WRITE) from None
    for line in text.split("\n"):  # not splitlines(): rows written with ensure_ascii=False may hold a raw U+2028
        with contextlib.suppress(ValueError, KeyError, TypeError):
            row = json.loads(line)
            done[json.dumps(row["id"])] = str(row.get("outcome", "error"))
    return done


def _row(ident: Any, result: RunCodeResponse | None, error: str | None, latency: float) -> dict[str, Any]:
    from aioagents.sandbox.models import CommandRunStatus, RunStatus

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


def _summary(rows: list[dict[str, Any]], skipped: int, elapsed: float, out_path: str, out: TextIO) -> None:
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
    new = f"{len(rows)} new row" + ("" if len(rows) == 1 else "s")
    print(f"results: {out_path} ({new}, {skipped} from earlier runs)", file=out)


def _batch(args: argparse.Namespace) -> int:
    if args.concurrency < 1:
        raise UserError(f"--concurrency must be at least 1, not {args.concurrency}", ExitCode.USAGE)
    items = _parse_items(read_input(args.input))
    check_output(args.out)
    done = _done_outcomes(args.out)
    todo = [item for item in items if json.dumps(item.id) not in done]
    skipped = len(items) - len(todo)
    earlier = [done[json.dumps(item.id)] for item in items if json.dumps(item.id) in done]
    run = _BatchRun()
    if todo:
        try:
            asyncio.run(_batch_async(args, todo, run))
        except KeyboardInterrupt:
            raise UserError(
                f"interrupted: {len(run.rows)} new results are in {args.out}; running the same command again resumes",
                ExitCode.INTERRUPTED,
            ) from None
    else:  # nothing to run: no sandbox, no new file
        note(f"nothing to run: all {skipped} ids of {args.input} are already in {args.out}", quiet=args.quiet)
    rows = run.rows
    _summary(rows, skipped, run.elapsed, args.out, sys.stdout)
    if run.unreached:
        assert run.endpoint is not None
        assert run.connection_error is not None
        down = unavailable(run.endpoint, run.connection_error)
        raise UserError(
            f"{run.unreached} of {len(todo)} programs did not complete: {down}; they are not in OUT, so running the "
            "same command again runs them",
            ExitCode.UNAVAILABLE,
        )
    outcomes = earlier + [r["outcome"] for r in rows]
    errors = outcomes.count("error")
    return failure_exit(args.fail_on, errors=errors, failures=len(outcomes) - errors - outcomes.count("passed"))


@attrs.define
class _BatchRun:
    rows: list[dict[str, Any]] = attrs.Factory(list)
    elapsed: float = 0.0
    endpoint: str | None = None
    unreached: int = 0  # programs whose run the endpoint never answered: left out of OUT so a rerun retries them
    connection_error: BaseException | None = None


_Outcome = tuple["RunCodeResponse | None", str | None, float]


async def _run_item(client: SandboxClient, item: _Item) -> tuple[RunCodeResponse | None, str | None, float]:
    """One batch item against ``client``: the program's result, or the reason it has none (its error row)."""
    if item.request is None:
        return None, item.problem, 0.0
    t0 = time.perf_counter()
    try:
        return await client.run_code(item.request), None, time.perf_counter() - t0
    except APIConnectionError:
        raise  # no answer: not a result of this program (see _collect)
    except AioAgentsError as exc:
        return None, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0


async def _batch_async(args: argparse.Namespace, items: list[_Item], run: _BatchRun) -> None:
    started = time.perf_counter()
    if args.ray is not None:
        try:
            import ray  # noqa: F401

            from aioagents.cluster import ray_as_completed
        except ImportError:
            raise UserError("--ray needs the ray extra: pip install 'aioagents[ray]'", ExitCode.USAGE) from None
        run.endpoint = args.endpoint or f"the Ray cluster {args.ray or '(auto)'}"
        with JsonlWriter(args.out) as writer, progress_bar(total=len(items), desc="batch", quiet=args.quiet) as bar:
            # --concurrency is per node here: each node's own sandbox runs that many at once.
            results = ray_as_completed(
                _run_item, items, address=args.ray or None, endpoint=args.endpoint, per_node=args.concurrency,
                on_progress=bar, desc="batch",
            )  # fmt: skip
            await _collect(results, writer, run)
    else:
        from aioagents.sandbox.client import SandboxClient

        async with sandbox_endpoint(args.endpoint, quiet=args.quiet) as endpoint, SandboxClient(endpoint) as client:
            run.endpoint = endpoint

            async def one(item: _Item) -> tuple[RunCodeResponse | None, str | None, float]:
                return await _run_item(client, item)

            # OUT is opened only now that the sandbox answers, so a failed start leaves no empty file behind.
            with JsonlWriter(args.out) as writer, progress_bar(total=len(items), desc="batch", quiet=args.quiet) as bar:
                await _collect(as_completed(one, items, concurrency=args.concurrency, on_progress=bar), writer, run)
    run.elapsed = time.perf_counter() - started


async def _collect(
    results: BatchIterator[_Item, _Outcome] | AsyncGenerator[BatchResult[_Item, _Outcome], None],
    writer: JsonlWriter,
    run: _BatchRun,
) -> None:
    async with contextlib.aclosing(results) as it:
        async for item in it:
            if item.error is not None:
                # No answer for this program (the sandbox went away, or on Ray its node was lost too often): an error
                # row would mark the id done and a rerun would skip it, so the id stays out of OUT; the command exits
                # 69 and the same command runs it again.
                run.unreached += 1
                run.connection_error = item.error
                continue
            result, error, latency = item.unwrap()
            row = _row(item.input.id, result, error, latency)
            writer.write(row)
            run.rows.append(row)


# -- entry point -----------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="aioagents",
        description="Run code in sandboxes, one program or a batch.",
        epilog=example(
            "aioagents batch examples/batch.jsonl --out results.jsonl",
            "aioagents run -c 'print(6 * 7)'",
            "aioagents serve --port 8080",
        )
        + "\n\n"
        + EXIT_CODES_HELP,
        formatter_class=raw,
    )
    parser.add_argument("--version", action="version", version=f"aioagents {aioagents.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{serve,run,batch,eval}")

    serve = sub.add_parser(
        "serve",
        help="serve the local sandbox (SandboxFusion and interpreter APIs)",
        description="Serve the local sandbox (SandboxFusion and CodeGeeX4 interpreter APIs) until Ctrl-C.",
        epilog=example("aioagents serve --port 8080", 'aioagents serve --host 0.0.0.0 --token "$TOKEN"'),
        formatter_class=raw,
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address (non-loopback needs --token)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (or set AIOAGENTS_TOKEN)")
    serve.add_argument(
        "--workers",
        type=lambda v: v if v == "auto" else int(v),
        default="auto",
        help="server processes sharing the port, each with its own process factory (default: one per CPU)",
    )
    serve.add_argument(
        "--work-dir", help="where run directories go (default: /dev/shm when it is a usable tmpfs, else $TMPDIR)"
    )
    serve.add_argument(
        "--network",
        action="store_true",
        help="give runs the host's network (loopback and this server's API included): trusted code only",
    )
    add_common_options(serve)
    serve.set_defaults(handler=_serve)

    run = sub.add_parser(
        "run",
        help="run one program and print its output",
        description="Run one program and print its output; exit with the program's own status (124: time limit).",
        epilog=example(
            "aioagents run hello.py", "aioagents run -c 'echo hi' --language bash", "cat x.py | aioagents run -"
        ),
        formatter_class=raw,
    )
    what = run.add_mutually_exclusive_group(required=True)
    what.add_argument("file", nargs="?", help="a source file ('-' reads stdin)")
    what.add_argument("-c", dest="code", help="the program text")
    run.add_argument("--language", "-l", help="language (default: from the file extension, else python)")
    run.add_argument("--stdin", help="text fed to the program's stdin")
    run.add_argument("--timeout", type=float, default=10.0, help="compile and run time limit in seconds")
    run.add_argument("--endpoint", help="a SandboxFusion endpoint (default: an embedded sandbox)")
    add_common_options(run)
    run.set_defaults(handler=_run)

    batch = sub.add_parser(
        "batch",
        help="run a JSONL file of programs; resumable",
        description="Run a JSONL file of programs and append one result row per program to OUT. Re-running the "
        "same command skips ids already in OUT. Exits 0 when every program ran, whatever its verdict "
        "(see --fail-on).",
        epilog=example(
            "aioagents batch examples/batch.jsonl --out results.jsonl",
            "aioagents batch in.jsonl --out out.jsonl --concurrency 16 --fail-on failed",
        ),
        formatter_class=raw,
    )
    batch.add_argument("input", help="input JSONL: one {id, code, language, ...} object per line")
    batch.add_argument("--out", required=True, help="output JSONL (appended; ids already there are skipped)")
    batch.add_argument("--concurrency", type=int, default=4, help="programs run at once (default: 4)")
    batch.add_argument("--endpoint", help="a SandboxFusion endpoint (default: an embedded sandbox)")
    batch.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="spread the batch over a Ray cluster (ADDRESS, else RAY_ADDRESS or a local one): one sandbox per node, "
        "--concurrency per node (needs the ray extra)",
    )
    add_fail_on_option(batch)
    add_common_options(batch)
    batch.set_defaults(handler=_batch)
    _eval_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aioagents`` command; returns its exit status (see ``aioagents --help``)."""
    args = _parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    setup_logging(verbose)
    try:
        return int(args.handler(args))
    except UserError as exc:
        print(f"aioagents: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("aioagents: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except InvalidRequestError as exc:
        print(f"aioagents: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except AioAgentsError as exc:
        print(f"aioagents: the sandbox answered with an error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ExitCode.SANDBOX
    except Exception as exc:  # a bug: still one line, the traceback only on request
        if verbose:
            traceback.print_exc()
        hint = "" if verbose else " (rerun with --verbose for the traceback)"
        print(f"aioagents: unexpected error: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
        return ExitCode.SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
