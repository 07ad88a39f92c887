"""Conventions shared by every ``aioagents`` subcommand (``cli.py`` and any subcommand module, e.g. ``eval``).

A subcommand module uses them like this::

    def add_parser(sub):                                   # called from cli._parser()
        p = sub.add_parser("eval", help="...", epilog=example("aioagents eval IN.jsonl --out OUT.jsonl"),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_common_options(p)                              # --quiet, --verbose
        add_fail_on_option(p)                              # --fail-on error|failed
        p.set_defaults(handler=run_eval)                   # cli.main() calls handler(args) -> exit status

    def run_eval(args) -> int:
        text = read_input(args.input)                      # UserError(NO_INPUT) when missing/unreadable
        check_output(args.out)                             # UserError(CANT_WRITE) before anything starts
        ...                                                # start a sandbox only when there is work
        async with sandbox_endpoint(args.endpoint, quiet=args.quiet) as url: ...   # pings --endpoint first
        with progress_bar(total=n, desc="eval", quiet=args.quiet) as bar: ...      # aioagents._progress
        return failure_exit(args.fail_on, errors=e, failures=f)

Raise :class:`UserError` for a user's mistake: ``cli.main`` prints its one line on stderr (``aioagents: ...``) and
returns its :class:`ExitCode`, never a traceback (``--verbose`` adds one for unexpected errors).
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import json
import os
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Literal, TextIO

from aioagents._exceptions import APIConnectionError, APIError

__all__ = [
    "EXIT_CODES_HELP",
    "ExitCode",
    "JsonlWriter",
    "UserError",
    "add_common_options",
    "add_fail_on_option",
    "check_endpoint",
    "check_output",
    "example",
    "failure_exit",
    "note",
    "read_input",
    "sandbox_endpoint",
    "setup_logging",
    "unavailable",
]


class ExitCode(enum.IntEnum):
    """The ``aioagents`` exit statuses (``run`` returns the program's own status instead of ``OK``/``FAILED``)."""

    OK = 0
    FAILED = 1  # --fail-on: some item failed or errored
    USAGE = 2  # the command line is wrong (argparse's own status)
    UNKNOWN_LANGUAGE = 65  # sysexits EX_DATAERR
    NO_INPUT = 66  # EX_NOINPUT: input missing or unreadable
    UNAVAILABLE = 69  # EX_UNAVAILABLE: the endpoint does not answer, or serve cannot listen
    SOFTWARE = 70  # EX_SOFTWARE: an unexpected error (a bug: please report it)
    CANT_WRITE = 73  # EX_CANTCREAT: OUT cannot be written
    SANDBOX = 76  # EX_PROTOCOL: the sandbox answered with an error
    TIME_LIMIT = 124  # run: the program passed its time limit (as timeout(1) does)
    INTERRUPTED = 130  # Ctrl-C


EXIT_CODES_HELP = """\
exit status:
  0    every item ran, whatever its verdict (run: the program's own status)
  1    --fail-on: some item failed or errored
  2    the command line is wrong
  65   unknown language
  66   the input is missing or unreadable
  69   the endpoint does not answer (serve: cannot listen)
  70   an unexpected error (a bug; --verbose shows the traceback)
  73   OUT cannot be written
  76   the sandbox answered with an error
  124  run: the program passed its time limit
  130  interrupted (Ctrl-C)"""


class UserError(Exception):
    """A mistake the user can fix: printed as one line on stderr, the command exits with ``code``."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


def example(*lines: str) -> str:
    """An ``epilog`` showing example command lines (use with ``RawDescriptionHelpFormatter``)."""
    return "example" + ("s" if len(lines) > 1 else "") + ":\n" + "\n".join(f"  {line}" for line in lines)


# -- options ---------------------------------------------------------------------------------------------------
def add_common_options(parser: argparse.ArgumentParser) -> None:
    """``--quiet`` (no progress, no notes) and ``--verbose`` (debug logs of the ``aioagents`` logger)."""
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no notes on stderr")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log requests and retries on stderr; tracebacks on bugs"
    )


def add_fail_on_option(parser: argparse.ArgumentParser) -> None:
    """``--fail-on error|failed``: exit 1 when an item errored (``error``), or did not pass at all (``failed``)."""
    parser.add_argument(
        "--fail-on",
        choices=("error", "failed"),
        help="exit 1 when an item errored ('error') or did not pass ('failed': failed, timed out or errored); "
        "default: exit 0 whenever every item ran",
    )


def failure_exit(fail_on: str | None, *, errors: int, failures: int) -> int:
    """The exit status for ``--fail-on``: ``failures`` counts non-passing items that are not errors."""
    if fail_on == "error" and errors:
        return ExitCode.FAILED
    if fail_on == "failed" and (errors or failures):
        return ExitCode.FAILED
    return ExitCode.OK


def setup_logging(verbose: bool) -> None:
    """With ``verbose``, send the ``aioagents`` logger's debug records to stderr (:func:`aioagents.setup_logging`)."""
    if verbose:
        from aioagents._logging import setup_logging as setup

        setup("debug")


def note(message: str, *, quiet: bool = False) -> None:
    """An informational line on stderr (``[aioagents] ...``), unless ``quiet``."""
    if not quiet:
        print(f"[aioagents] {message}", file=sys.stderr, flush=True)


# -- files -----------------------------------------------------------------------------------------------------
def read_input(path: str | os.PathLike[str]) -> str:
    """The input file's text (``-`` reads stdin); :class:`UserError` ``NO_INPUT`` when missing or unreadable."""
    if str(path) == "-":
        return sys.stdin.read()
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise UserError(f"input {str(p)!r} does not exist", ExitCode.NO_INPUT) from None
    except IsADirectoryError:
        raise UserError(f"input {str(p)!r} is a directory, not a file", ExitCode.NO_INPUT) from None
    except OSError as exc:
        raise UserError(f"cannot read input {str(p)!r}: {exc.strerror or exc}", ExitCode.NO_INPUT) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"input {str(p)!r} is not UTF-8 text (bad byte at offset {exc.start})", ExitCode.NO_INPUT
        ) from None


def check_output(path: str | os.PathLike[str]) -> None:
    """Fail early, before anything starts, when ``path`` cannot be appended to (:class:`UserError` ``CANT_WRITE``).

    Creates nothing: a missing file is checked through its directory.
    """
    p = Path(path)
    if p.is_dir():
        raise UserError(f"OUT {str(p)!r} is a directory; give a file name", ExitCode.CANT_WRITE)
    if p.exists():
        if not os.access(p, os.W_OK):
            raise UserError(f"cannot write OUT {str(p)!r}: permission denied", ExitCode.CANT_WRITE)
        return
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write OUT {str(p)!r}: directory {str(parent)!r} does not exist", ExitCode.CANT_WRITE)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write OUT {str(p)!r}: directory {str(parent)!r} is not writable", ExitCode.CANT_WRITE)


class JsonlWriter:
    """Rows appended to OUT as JSON lines, each flushed at once (so an interrupted run resumes where it stopped).

    A failed open, write or close (disk full …) raises :class:`UserError` ``CANT_WRITE``; nothing else is caught.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.rows = 0
        try:
            self._file: TextIO = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise self._error(exc) from None
        # A run killed mid-write leaves a last line without its newline: the next row must not be glued onto it
        # (the merged line would parse as neither, and that row would be rerun forever).
        self._pending = "\n" if _ends_unterminated(self.path) else ""

    def _error(self, exc: OSError) -> UserError:
        return UserError(f"cannot write OUT {str(self.path)!r}: {exc.strerror or exc}", ExitCode.CANT_WRITE)

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row and flush it."""
        try:
            self._file.write(self._pending + json.dumps(row, ensure_ascii=False) + "\n")
            self._file.flush()
        except OSError as exc:
            raise self._error(exc) from None
        self._pending = ""
        self.rows += 1

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._file.closed:
            return
        try:
            self._file.close()
        except OSError as exc:
            raise self._error(exc) from None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ends_unterminated(path: Path) -> bool:
    """Whether ``path`` is a non-empty regular file whose last byte is not a newline."""
    try:
        if not path.is_file():
            return False
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:
        return False


# -- endpoints -------------------------------------------------------------------------------------------------
async def check_endpoint(url: str) -> None:
    """Ping a SandboxFusion endpoint once; :class:`UserError` ``UNAVAILABLE`` (with the URL) when it does not answer.

    Only a connection failure counts: a server that answers the ping with an error status is left to the real calls.
    """
    from aioagents.sandbox import SandboxClient

    async with SandboxClient(url, timeout=10.0, max_attempts=1) as client:
        try:
            await client.ping()
        except APIConnectionError as exc:
            raise unavailable(url, exc) from None
        except APIError:
            pass


def unavailable(url: str, exc: BaseException) -> UserError:
    """The :class:`UserError` for an endpoint that does not answer."""
    from aioagents._transport import _loggable

    return UserError(f"the sandbox at {_loggable(url)} does not answer ({exc})", ExitCode.UNAVAILABLE)


@contextlib.asynccontextmanager
async def sandbox_endpoint(
    explicit: str | None, *, quiet: bool = False, workers: int | Literal["auto"] = "auto"
) -> AsyncIterator[str]:
    """The sandbox URL to use: ``explicit``, else ``SANDBOX_FUSION_ENDPOINT`` (either is pinged first), else an
    embedded sandbox started for the duration of the block. Enter it only when there is work to do. ``workers``: the
    embedded sandbox's worker processes ("auto": one per CPU, for many runs; 1 serves in this process)."""
    endpoint = explicit or os.environ.get("SANDBOX_FUSION_ENDPOINT")
    if endpoint:
        await check_endpoint(endpoint)
        yield endpoint
        return
    from aioagents.local import LocalSandbox

    async with LocalSandbox(workers=workers) as sandbox:
        note(f"started an embedded sandbox at {sandbox.url}", quiet=quiet)
        yield sandbox.url
