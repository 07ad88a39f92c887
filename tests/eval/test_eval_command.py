"""``aioagents eval`` and ``evaluate()`` on bad input, resume, users' own benchmarks, and the command itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aioagents.local import LocalSandbox
from aioagents.local._datasets import DatasetFileError, extract_code, register_dataset
from aioagents.sandbox import estimate_pass_at_k, evaluate


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("transport", ["in-process", "http"])
async def test_hostile_completions_are_failed_samples_and_nothing_else_is_lost(
    sandbox: LocalSandbox, problems: dict[str, Any], tmp_path: Path, transport: str
) -> None:
    canonical = problems["HumanEval/0"]["canonical_solution"]
    hostile = [
        "    while True:\n        pass\n",
        "    import sys\n    sys.stdout.write('x' * 100_000_000)\n    return None\n",
        "    import multiprocessing\n    ps = [multiprocessing.Process(target=lambda: None) for _ in range(1000)]\n"
        "    [p.start() for p in ps]\n",
    ]
    samples = _write(
        tmp_path / "s.jsonl",
        [
            {"task_id": "HumanEval/0", "completion": canonical},
            *({"task_id": "HumanEval/0", "completion": c} for c in hostile),
            "{this is not json",
            {"task_id": "HumanEval/0"},
            {"task_id": "HumanEval/0", "completion": canonical},
        ],
    )
    out = tmp_path / "out.jsonl"
    endpoint = sandbox.url if transport == "http" else None
    report = await evaluate(samples, "humaneval_python", k=(1,), out=out, endpoint=endpoint, concurrency=4)
    rows = {r["sample_id"]: r for r in _rows(out)}
    assert rows["HumanEval/0#0"]["passed"]
    assert rows["HumanEval/0#4"]["passed"]
    assert rows["HumanEval/0#1"] | {"latency": 0} == rows["HumanEval/0#1"] | {"latency": 0}
    assert (rows["HumanEval/0#1"]["passed"], rows["HumanEval/0#1"]["reason"]) == (False, "timed out")
    assert rows["HumanEval/0#2"]["passed"] is False
    assert rows["HumanEval/0#2"]["reason"].startswith("failed")
    assert rows["HumanEval/0#3"]["passed"] is False
    assert rows["HumanEval/0#3"]["reason"].startswith("failed")
    assert rows["line 5"] == {"sample_id": "line 5", "line": 5, "error": rows["line 5"]["error"]}
    assert rows["line 5"]["error"].startswith("line 5: not JSON")
    assert rows["line 6"]["error"] == "line 6: a sample needs a string completion"
    assert len(rows) == 7
    assert report.errors == 2
    assert report.scored == 5
    assert report.pass_at_k == {"pass@1": pytest.approx(2 / 5)}


async def test_resume_skips_ids_already_in_out(sandbox: LocalSandbox, problems: dict[str, Any], tmp_path: Path) -> None:
    tasks = list(problems)[:3]
    samples = _write(
        tmp_path / "s.jsonl",
        [{"task_id": t, "completion": c} for t in tasks for c in (problems[t]["canonical_solution"], "    pass\n")],
    )
    out = tmp_path / "out.jsonl"
    first = await evaluate(samples, "humaneval_python", k=(1, 2), out=out, endpoint=sandbox.url)
    assert len(first.results) == 6
    assert first.pass_at_k == {"pass@1": 0.5, "pass@2": 1.0}
    kept = out.read_text().splitlines()[:2]
    out.write_text("\n".join(kept) + "\n" + '{"sample_id": "cut sh')  # an interrupted run's last line
    second = await evaluate(samples, "humaneval_python", k=(1, 2), out=out, endpoint=sandbox.url)
    assert len(second.results) == 4
    assert second.skipped == 2
    assert {r.sample_id for r in second.results}.isdisjoint({json.loads(x)["sample_id"] for x in kept})
    assert second.pass_at_k == first.pass_at_k
    assert second.scored == 6
    third = await evaluate(samples, "humaneval_python", k=(1, 2), out=out, endpoint=sandbox.url)
    assert third.results == []
    assert third.skipped == 6


async def test_users_own_benchmarks_in_mbpp_and_humaneval_formats(sandbox: LocalSandbox, tmp_path: Path) -> None:
    mbpp = _write(
        tmp_path / "mine_mbpp.jsonl",
        [
            {"task_id": 1, "text": "Add.", "code": "def add(a, b):\n    return a + b",
             "test_list": ["assert add(1, 2) == 3"], "test_setup_code": ""},
            {"task_id": 2, "text": "Shift.", "code": "def shift(x):\n    return x + OFFSET",
             "test_list": ["assert shift(1) == 101"], "test_setup_code": "OFFSET = 100"},
        ],
    )  # fmt: skip
    samples = _write(
        tmp_path / "s.jsonl",
        [
            {"task_id": 1, "completion": "```python\ndef add(a, b):\n    return a + b\n```"},
            {"task_id": 2, "completion": "def shift(x):\n    return x + OFFSET\n[DONE]\ngarbage"},
            {"task_id": 2, "completion": "def shift(x):\n    return x"},
            {"task_id": 3, "completion": "x"},
        ],
    )
    report = await evaluate(samples, "my_mbpp", problems=mbpp, k=(1,), endpoint=sandbox.url)
    by_id = {r.sample_id: r for r in report.results}
    assert by_id["1#0"].passed
    assert by_id["2#0"].passed
    assert not by_id["2#1"].passed
    assert by_id["3#0"].error == "unknown task_id 3 in dataset my_mbpp"
    assert report.pass_at_k == {"pass@1": pytest.approx((1 + 0.5) / 2)}

    human = _write(
        tmp_path / "mine_he.jsonl",
        [{"task_id": "t/0", "prompt": "def inc(x):\n", "test": "def check(f):\n    assert f(1) == 2\n",
          "entry_point": "inc"}],
    )  # fmt: skip
    register_dataset("my_humaneval", human)
    report = await evaluate(
        [{"task_id": "t/0", "completion": "    return x + 1\n"}, {"task_id": "t/0", "completion": "    return x\n"}],
        "my_humaneval",
        k=(1,),
        endpoint=sandbox.url,
    )
    assert [r.passed for r in sorted(report.results, key=lambda r: r.sample_id)] == [True, False]
    assert report.pass_at_k == {"pass@1": 0.5}
    with pytest.raises(DatasetFileError, match=r"bad\.jsonl:2"):
        register_dataset("bad", _write(tmp_path / "bad.jsonl", [{"task_id": "a", "prompt": "", "test": "",
                                                                   "entry_point": "f"}, {"nope": 1}]))  # fmt: skip


def test_the_eval_command_scores_resumes_and_exits_by_outcome(problems: dict[str, Any], tmp_path: Path) -> None:
    samples = _write(
        tmp_path / "s.jsonl",
        [{"task_id": "HumanEval/1", "completion": problems["HumanEval/1"]["canonical_solution"]},
         {"task_id": "HumanEval/1", "completion": "    return []\n"}],
    )  # fmt: skip
    out = tmp_path / "out.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_FUSION")}
    cmd = [sys.executable, "-m", "aioagents.cli", "eval", str(samples), "--dataset", "humaneval_python"]
    proc = subprocess.run([*cmd, "--out", str(out), "--k", "1,2"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pass@1    0.5000" in proc.stdout
    assert "pass@2    1.0000" in proc.stdout
    assert [r["passed"] for r in _rows(out)] in ([True, False], [False, True])
    again = subprocess.run([*cmd, "--out", str(out), "--k", "1"], capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0
    assert "2 resumed" in again.stdout
    assert len(_rows(out)) == 2
    failing = subprocess.run(
        [*cmd, "--out", str(tmp_path / "o2.jsonl"), "--k", "1", "--fail-on", "failed", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert failing.returncode == 1, failing.stderr
    missing = subprocess.run(
        [*cmd[:4], str(tmp_path / "nope.jsonl"), *cmd[5:], "--out", str(out)], capture_output=True, text=True, env=env
    )
    assert missing.returncode == 66
    assert missing.stderr.startswith("aioagents: ")
    assert "nope.jsonl" in missing.stderr
    assert missing.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("completion", "prefer_python", "expected"),
    [
        ("a\n```js\nx\n```\n```python\ny\n```\n", True, ("y", "fenced")),
        ("a\n```js\nx\n```\n```python\ny\n```\n", False, ("x", "fenced")),
        ("```python\ndef f():\n    return 1\n", True, ("def f():\n    return 1\n", "incomplete_fenced")),
        ("Here:\ndef f():\n\n    return 1\nbye", True, ("def f():\n    return 1\n", "heuristic")),
        ("import os\nNEG = 1\ndef f():\n    pass\n", False, ("def f():\n    pass\n", "heuristic")),
        ("    return 1\n", True, ("", "empty")),
    ],
)
def test_extraction_classes(completion: str, prefer_python: bool, expected: tuple[str, str]) -> None:
    assert extract_code(completion, prefer_python=prefer_python) == expected


def test_pass_at_k_estimator() -> None:
    assert estimate_pass_at_k(10, 0, 1) == 0.0
    assert estimate_pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert estimate_pass_at_k(10, 3, 8) == 1.0
    assert estimate_pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)


def test_the_blocking_twin_scores_like_the_async_api(url: str, problems: dict[str, Any]) -> None:
    from aioagents.sync import Evaluator

    samples = [
        {"task_id": "HumanEval/3", "completion": problems["HumanEval/3"]["canonical_solution"]},
        {"task_id": "HumanEval/3", "completion": "    return None\n"},
    ]
    with Evaluator(url, concurrency=2) as ev:
        report = ev.evaluate(samples, "humaneval_python", k=(1, 2))
    assert report.pass_at_k == {"pass@1": 0.5, "pass@2": 1.0}
    assert sorted((r.sample_id, r.passed) for r in report.results) == [
        ("HumanEval/3#0", True),
        ("HumanEval/3#1", False),
    ]


async def test_problems_without_ids_are_a_typed_error(sandbox: LocalSandbox) -> None:
    rows = [{"prompt": "def f():\n", "test": "def check(c): pass\n", "entry_point": "f"}]
    with pytest.raises(DatasetFileError, match="problem row 1 has no 'task_id'"):
        await evaluate([{"task_id": "x", "completion": ""}], "mine", problems=rows, endpoint=sandbox.url)


async def test_a_refused_submit_is_the_same_error_row_on_both_transports(sandbox: LocalSandbox) -> None:
    samples = [{"task_id": 1, "completion": "x"}, {"task_id": 1, "completion": "y"}]
    rows = []
    for endpoint in (sandbox.url, None):
        report = await evaluate(samples, "no_such_dataset", k=(1,), endpoint=endpoint)
        rows.append(sorted((r.sample_id, r.error) for r in report.results))
        assert (report.errors, report.scored, report.pass_at_k) == (2, 0, {})
    assert rows[0] == rows[1] == [(f"1#{i}", "400 no eval class found for dataset no_such_dataset") for i in (0, 1)]


@pytest.mark.parametrize("driver", ["held by the process factory", "compiled from its source"])
async def test_the_held_harness_driver_judges_like_its_source(url: str, problems: dict[str, Any], driver: str) -> None:
    from aioagents.local import _harness
    from aioagents.local._datasets import _harness_runner
    from aioagents.sandbox import RunCodeRequest, SandboxClient

    row = problems["HumanEval/2"]
    verdicts = []
    async with SandboxClient(url) as client:
        held = await client.run_code(
            RunCodeRequest(code=f"import sys; print({_harness.MODULE_NAME!r} in sys.modules)", language="python")
        )
        assert held.stdout == "True\n"  # every run of the embedded sandbox finds the driver made
        for completion in (row["canonical_solution"], "    return None\n", "    exit(0)\n"):
            program = _harness_runner(row, completion)
            if driver == "compiled from its source":  # as in a fresh interpreter, where nothing holds it
                lookup = f"_s.modules.get({_harness.MODULE_NAME!r})"
                assert lookup in program
                program = program.replace(lookup, "_s.modules.get('no such module')", 1)
            result = await client.run_code(RunCodeRequest(code=program, language="python", run_timeout=10))
            verdicts.append((result.status.value, result.stderr.rstrip("\n")))
    assert verdicts == [
        ("Success", ""),
        ("Failed", "failed: "),
        ("Failed", "failed: 'NoneType' object is not callable"),
    ]


async def test_a_completion_with_a_lone_surrogate_is_written_and_resumed(tmp_path: Path) -> None:
    samples = _write(tmp_path / "s.jsonl", ['{"task_id": "HumanEval/0", "completion": "    return \'\\ud800\'\\n"}'])
    out = tmp_path / "out.jsonl"
    report = await evaluate(samples, "humaneval_python", k=(1,), out=out)
    assert [(r.sample_id, r.passed, r.extracted_code) for r in report.results] == [
        ("HumanEval/0#0", False, "    return '\ud800'\n")
    ]
    assert _rows(out)[0]["extracted_code"] == "    return '\ud800'\n"
    again = await evaluate(samples, "humaneval_python", k=(1,), out=out)
    assert (again.results, again.skipped, again.scored) == ([], 1, 1)
