"""compat.slambda's models speak slambda's pydantic API with its JSON shape: definitions saved by slambda 0.0.15 load
here and run, and ours load in slambda; checked against the installed slambda's own output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import golden_cases
import pytest
import slambda  # type: ignore[import-untyped]
from slambda.core import Definition as SlambdaDefinition  # type: ignore[import-untyped]

from aioagents.compat import slambda as compat
from aioagents.functions import LmFunctionError
from aioagents.testing._openai import FakeOpenAIServer

NAMES = sorted(golden_cases.CASES)


@pytest.fixture(autouse=True)
def _openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # slambda builds an openai client at create time, which wants a key; nothing is sent in these tests.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-golden")


def _create(module: Any, spec: dict[str, Any]) -> Any:
    options = {k: v for k, v in spec.items() if k not in ("instruction", "examples", "gpt_opts")}
    if "gpt_opts" in spec:
        options["gpt_opts"] = module.GptApiOptions(**spec["gpt_opts"])
    examples = [module.Example(input=e.get("input"), output=e["output"]) for e in spec["examples"]]
    return module.LmFunction.create(spec["instruction"], examples, **options)


@pytest.mark.parametrize("name", NAMES)
def test_a_definition_dumps_to_slambdas_json_byte_for_byte(name: str) -> None:
    spec = golden_cases.CASES[name]["create"]
    theirs = _create(slambda, spec).definition
    ours = _create(compat, spec).definition
    assert ours.model_dump_json() == theirs.model_dump_json()
    assert ours.model_dump(mode="json") == theirs.model_dump(mode="json")
    assert ours.model_dump(exclude_none=True, mode="json") == theirs.model_dump(exclude_none=True, mode="json")


@pytest.mark.parametrize("name", NAMES)
def test_a_definition_saved_by_slambda_loads_and_saves_back_unchanged(name: str) -> None:
    saved = _create(slambda, golden_cases.CASES[name]["create"]).definition.model_dump_json()
    loaded = compat.Definition.model_validate_json(saved)
    assert isinstance(loaded, compat.Definition)
    assert loaded.model_dump_json() == saved
    assert compat.Definition.model_validate(json.loads(saved)) == loaded


@pytest.mark.parametrize("name", NAMES)
def test_a_definition_saved_here_loads_in_slambda(name: str) -> None:
    ours = _create(compat, golden_cases.CASES[name]["create"]).definition
    theirs = SlambdaDefinition.model_validate_json(ours.model_dump_json())
    assert theirs.model_dump_json() == ours.model_dump_json()


@pytest.fixture
def openai_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    srv = FakeOpenAIServer(api_key="sk-golden")
    with srv.in_thread():
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        yield srv


def test_a_loaded_definition_runs_and_sends_slambdas_body(openai_fake: FakeOpenAIServer) -> None:
    golden = golden_cases.load("override")
    golden_cases.configure_answer(openai_fake, golden)
    saved = _create(slambda, golden["create"]).definition.model_dump_json()
    fn = compat.LmFunction(compat.Definition.model_validate_json(saved))
    try:
        assert fn(*golden["call"]["args"], __override=golden["call"]["override"]) == golden["result"]
    finally:
        fn.close()
    (request,) = openai_fake.requests_to("/v1/chat/completions")
    assert json.dumps(request.json(), sort_keys=True) == json.dumps(golden["request"], sort_keys=True)


def test_python_mode_keeps_enums_and_int_bias_keys_as_slambda() -> None:
    spec = {"instruction": "x", "examples": [{"input": "a", "output": "b"}], "gpt_opts": {"logit_bias": {"5": 1}}}
    theirs = _create(slambda, spec).definition.model_dump()
    ours = _create(compat, spec).definition.model_dump()
    assert ours == theirs
    assert ours["gpt_opts"]["logit_bias"] == {5: 1}
    assert type(ours["message_stack"][0]["role"]).__name__ == "Role"


def test_model_copy_and_the_nested_models() -> None:
    options = compat.GptApiOptions(temperature=0)
    assert options.model_dump_json() == slambda.GptApiOptions(temperature=0).model_dump_json()
    assert options.model_copy(update={"model": "gpt-4o"}).model == "gpt-4o"
    assert compat.Message.user("hi").model_dump(exclude_none=True, mode="json") == {"role": "user", "content": "hi"}
    assert compat.Example("in", "out").model_dump() == slambda.Example("in", "out").model_dump()
    assert compat.Example.model_validate({"input": None, "output": "x"}).output == "x"


def test_ours_only_options_round_trip_without_changing_slambdas_shape() -> None:
    base = compat.LmFunction.create("x", [compat.Example("a", "b")]).definition
    fenced = base.model_copy(update={"output_config": {"cast_to_json": True, "strip_code_fence": True}})
    assert compat.Definition.model_validate_json(fenced.model_dump_json()).output_config.strip_code_fence
    assert "strip_code_fence" not in base.model_dump_json()
    assert "example_style" not in base.model_dump_json()


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"instruction": "x"}'])
def test_a_broken_saved_definition_is_a_value_error(text: str) -> None:
    with pytest.raises(LmFunctionError):
        compat.Definition.model_validate_json(text)
