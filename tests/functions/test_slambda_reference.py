"""The golden request bodies are what the published slambda package sends: replay every case through slambda
0.0.15 and the official openai SDK (real clients) against the fake and compare."""

from __future__ import annotations

import json

import golden_cases  # tests/functions is on sys.path: pytest's rootdir-relative import of this directory
import pytest

from aioagents.testing._openai import FakeOpenAIServer


def canonical(value: object) -> str:
    # Sorted keys, but 0 and 0.0 stay different: the goldens pin numeric types too.
    return json.dumps(value, sort_keys=True)


def test_every_case_has_a_golden_file() -> None:
    assert golden_cases.golden_names() == sorted(golden_cases.CASES)


@pytest.mark.parametrize("name", sorted(golden_cases.CASES))
def test_slambda_sends_the_golden_body(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    golden = golden_cases.load(name)
    srv = FakeOpenAIServer(api_key="sk-golden")
    golden_cases.configure_answer(srv, golden)
    with srv.in_thread():
        monkeypatch.setenv("OPENAI_API_KEY", "sk-golden")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        result = golden_cases.run_slambda(golden)
    (request,) = srv.requests_to("/v1/chat/completions")
    assert canonical(request.json()) == canonical(golden["request"])
    assert canonical(result) == canonical(golden["result"])
