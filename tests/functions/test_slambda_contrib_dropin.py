"""Drop-in proof: the ready-made functions that ship with slambda (``slambda.contrib``) run through
``aioagents.compat.slambda`` with only their import line changed, and send exactly the bodies slambda sends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import slambda  # type: ignore[import-untyped]

from aioagents.testing._openai import FakeOpenAIServer

CONTRIB = Path(slambda.__file__).parent / "contrib"
SOURCES = sorted(p for p in CONTRIB.rglob("*.py") if p.name != "__init__.py")


def functions_in(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "contrib_under_test"}
    exec(compile(source, "<contrib>", "exec"), namespace)
    return {k: v for k, v in namespace.items() if type(v).__name__ == "LmFunction" and not isinstance(v, type)}


def call_args(fn: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Arguments that fit the function: its first example's input, or none for a nullary one."""
    config = fn.definition.input_config
    if config.strict_no_args:
        return (), {}
    example_input = fn.definition.examples[0].input
    if config.input_type.value == "keyword":
        return (), dict(example_input)
    return ("A short text to work on.",), {}


def bodies(source: str, srv: FakeOpenAIServer) -> dict[str, Any]:
    out = {}
    for name, fn in sorted(functions_in(source).items()):
        before = len(srv.requests)
        args, kwargs = call_args(fn)
        fn(*args, **kwargs)
        if hasattr(fn, "close"):
            fn.close()
        (request,) = srv.requests[before:]
        out[name] = request.json()
    return out


def test_contrib_modules_were_found() -> None:
    assert len(SOURCES) >= 7


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_contrib_functions_run_unchanged_through_compat(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = path.read_text()
    ported = original.replace("from slambda import", "from aioagents.compat.slambda import")
    assert ported != original
    srv = FakeOpenAIServer(api_key="sk-contrib")
    # JSON functions get JSON, text functions text: one answer that is both.
    srv.add_rule(lambda body: True, '[{"name": "x", "url": "https://example.org"}]')
    with srv.in_thread():
        monkeypatch.setenv("OPENAI_API_KEY", "sk-contrib")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        expected = bodies(original, srv)
        got = bodies(ported, srv)
    assert expected
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)
