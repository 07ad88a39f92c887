"""The official sandbox-fusion SDK's dataset functions, as a real client, against the embedded server's routes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sandbox_fusion as sf

MBPP_ROW = {
    "id": 7,
    "content": "Write a function to add two numbers.",
    "labels": {"test_setup_code": ""},
    "test_list": ["assert add(1, 2) == 3", "assert add(10, 5) == 15"],
}


def test_get_prompts_and_get_prompt_by_id_serve_humaneval_rows(url: str, problems: dict[str, Any]) -> None:
    prompts = sf.get_prompts(sf.GetPromptsRequest(dataset="humaneval_python", config=sf.TestConfig()), endpoint=url)
    assert [p.id for p in prompts] == list(problems)
    first = prompts[0]
    assert first.prompt == problems["HumanEval/0"]["prompt"]
    assert first.labels["entry_point"] == "has_close_elements"
    assert "task_id" not in first.labels
    page = sf.get_prompts(
        sf.GetPromptsRequest(dataset="humaneval_python", config=sf.TestConfig(), offset=3, limit=2), endpoint=url
    )
    assert [p.id for p in page] == list(problems)[3:5]
    one = sf.get_prompt_by_id(
        sf.GetPromptByIdRequest(dataset="humaneval_python", id="HumanEval/10", config=sf.TestConfig()), endpoint=url
    )
    assert one.id == "HumanEval/10"
    assert one.prompt == problems["HumanEval/10"]["prompt"]
    freeform = sf.get_prompt_by_id(
        sf.GetPromptByIdRequest(
            dataset="humaneval_python", id="HumanEval/0", config=sf.TestConfig(extra={"is_freeform": True})
        ),
        endpoint=url,
    )
    assert freeform.prompt.startswith("```python\n")
    assert freeform.prompt.endswith("`Main` function.")


def test_submit_scores_humaneval_like_the_real_server(url: str, problems: dict[str, Any]) -> None:
    canonical = problems["HumanEval/2"]["canonical_solution"]
    # Continuation mode: the completion is cut at its first column-0 line; the prompt and 16 imports come first.
    ok = sf.submit(
        sf.SubmitRequest(
            dataset="humaneval_python",
            id="HumanEval/2",
            completion=canonical + "\ndef junk(:\n",
            config=sf.TestConfig(),
        ),
        endpoint=url,
    )
    assert ok.accepted
    assert ok.extracted_code == canonical
    assert ok.full_code.startswith("import math\nimport re\n")
    assert ok.full_code.endswith("\ncheck(truncate_number)")
    assert ok.tests[0].passed
    assert ok.tests[0].exec_info.status == sf.RunStatus.Success
    bad = sf.submit(
        sf.SubmitRequest(
            dataset="humaneval_python", id="HumanEval/2", completion="    return None\n", config=sf.TestConfig()
        ),
        endpoint=url,
    )
    assert not bad.accepted
    assert bad.tests[0].exec_info.status == sf.RunStatus.Failed
    # Freeform: the fenced python block, without the prompt.
    chat = "Sure:\n```text\nnot this\n```\n```python\n" + problems["HumanEval/2"]["prompt"] + canonical + "```\nDone."
    free = sf.submit(
        sf.SubmitRequest(
            dataset="humaneval_python",
            id="HumanEval/2",
            completion=chat,
            config=sf.TestConfig(extra={"is_freeform": True}),
        ),
        endpoint=url,
    )
    assert free.accepted
    assert free.extracted_code == problems["HumanEval/2"]["prompt"] + canonical[:-1]
    assert "import math" in free.full_code
    assert "not this" not in free.full_code


def test_submit_mbpp_from_provided_data_and_submit_safe(url: str) -> None:
    config = sf.TestConfig(provided_data=MBPP_ROW)
    fenced = "Here:\n```python\ndef add(a, b):\n    return a + b\n\nassert add(1, 2) == 3\n```\nBye"
    ok = sf.submit(sf.SubmitRequest(dataset="mbpp", id=7, completion=fenced, config=config), endpoint=url)
    assert ok.accepted
    assert ok.extracted_code == "\ndef add(a, b):\n    return a + b\n"
    assert ok.full_code == ok.extracted_code + "\nassert add(1, 2) == 3\n\nassert add(10, 5) == 15\n"
    wrong = sf.submit(
        sf.SubmitRequest(dataset="mbpp", id=7, completion="def add(a, b):\n    return a - b", config=config),
        endpoint=url,
    )
    assert not wrong.accepted
    # submit_safe turns the real server's 400 for an unknown dataset into a rejected result.
    safe = sf.submit_safe(
        sf.SubmitRequest(dataset="no_such_dataset", id=1, completion="", config=sf.TestConfig()),
        endpoint=url,
        max_attempts=1,
    )
    assert safe.accepted is False
    assert safe.extracted_code == ""
    assert safe.tests == []
    with pytest.raises(Exception, match="no eval class found for dataset no_such_dataset"):
        sf.submit(
            sf.SubmitRequest(dataset="no_such_dataset", id=1, completion="", config=sf.TestConfig()),
            endpoint=url,
            max_attempts=1,
        )


async def test_metrics_and_errors_on_the_wire(url: str) -> None:
    # The SDK has no get_metrics function; the routes answer as the real server does.
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/get_metrics", json={"dataset": "mbpp", "config": {}, "results": []}) as r:
            assert (r.status, await r.json()) == (200, {})
        async with s.post(f"{url}/get_metrics_function", json={"dataset": "humaneval_python", "config": {}}) as r:
            assert (r.status, await r.json()) == (200, {"function": None})
        async with s.get(f"{url}/list_datasets") as r:
            assert {"humaneval_python", "mbpp"} <= set(await r.json())
        async with s.post(f"{url}/get_prompts", json={"dataset": "cruxeval", "config": {}}) as r:
            assert (r.status, await r.json()) == (400, {"detail": "no eval class found for dataset cruxeval"})
        body = {"dataset": "mbpp", "config": {"provided_data": MBPP_ROW}}
        async with s.post(f"{url}/get_prompts", json=body) as r:
            assert r.status == 400
            assert "should be a list" in (await r.json())["detail"]
        async with s.post(f"{url}/get_prompts", json={"dataset": "mbpp"}) as r:
            assert r.status == 422
            assert (await r.json())["detail"][0]["loc"] == ["body", "config"]
        body = {"dataset": "mbpp", "config": {"provided_data": [MBPP_ROW]}}
        async with s.post(f"{url}/list_ids", json=body) as r:
            assert await r.json() == [7]
        async with s.post(f"{url}/get_prompts", json=body) as r:
            [prompt] = await r.json()
        assert prompt["prompt"] == (
            "You are an expert Python programmer, and here is your task: Write a function to add two numbers. "
            "Your code should pass these tests:\n\nassert add(1, 2) == 3\nassert add(10, 5) == 15"
        )


def test_the_sdk_against_aioagents_serve_with_a_registered_benchmark(tmp_path: Path) -> None:
    rows = [
        {"task_id": 1, "text": "Add.", "code": "", "test_list": ["assert add(1, 2) == 3"], "test_setup_code": ""},
        {"task_id": 2, "text": "Sub.", "code": "", "test_list": ["assert sub(3, 2) == 1"], "test_setup_code": ""},
    ]
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_FUSION")}
    env["AIOAGENTS_DATASETS"] = f"my_bench={bench}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "aioagents.cli", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"http://\S+", line)
        assert url is not None, line
        endpoint = url.group(0)
        prompts = sf.get_prompts(sf.GetPromptsRequest(dataset="my_bench", config=sf.TestConfig()), endpoint=endpoint)
        assert [p.id for p in prompts] == [1, 2]
        one = sf.get_prompt_by_id(
            sf.GetPromptByIdRequest(dataset="my_bench", id=2, config=sf.TestConfig()), endpoint=endpoint
        )
        assert one.prompt.endswith("Sub. Your code should pass these tests:\n\nassert sub(3, 2) == 1")
        ok = sf.submit(
            sf.SubmitRequest(
                dataset="my_bench", id=1, completion="def add(a, b):\n    return a + b", config=sf.TestConfig()
            ),
            endpoint=endpoint,
        )
        assert ok.accepted
        bad = sf.submit_safe(
            sf.SubmitRequest(
                dataset="my_bench", id=2, completion="def sub(a, b):\n    return a", config=sf.TestConfig()
            ),
            endpoint=endpoint,
        )
        assert bad.accepted is False
        assert bad.tests[0].exec_info.status == sf.RunStatus.Failed
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
