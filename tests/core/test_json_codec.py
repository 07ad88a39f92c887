"""Request and response bodies: the JSON codec keeps every str the stdlib would, lone surrogates included."""

from __future__ import annotations

import json

import pytest

from aioagents import _json
from aioagents.local import LocalSandbox
from aioagents.sandbox import SandboxClient

CASES = [
    {"code": "print(1)"},
    {"code": "x = 'caf\u00e9 \u2603'"},
    {"code": "lone \ud800 surrogate", "stdin": "\udfff"},
    ["\U0001f600", {"nested": ["\udc80"]}],
]


@pytest.mark.parametrize("value", CASES)
@pytest.mark.parametrize("dumps", [_json.dumps, _json._dumps_stdlib], ids=["default", "stdlib"])
def test_dumps_gives_bytes_the_stdlib_reads_back_to_the_same_value(value: object, dumps: object) -> None:
    encoded = dumps(value)  # type: ignore[operator]
    assert isinstance(encoded, bytes)
    assert json.loads(encoded) == value


async def test_code_with_a_lone_surrogate_reaches_the_sandbox() -> None:
    async with LocalSandbox() as sb, SandboxClient(sb.url) as client:
        result = await client.run_code("s = 'a\ud800b'\nprint(len(s))", language="python")
    assert result.stdout == "3\n"  # the server writes the file with the surrogate replaced, as the original does


STDLIB_ONLY = ["NaN", "[Infinity, -Infinity]", "[1e400]", '"\\ud800"', '{"t": 0.013, "v": NaN}']


@pytest.mark.parametrize("text", STDLIB_ONLY)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_loads_reads_what_the_stdlib_reads_even_where_orjson_refuses(text: str, as_bytes: bool) -> None:
    value = _json.loads(text.encode() if as_bytes else text)
    assert repr(value) == repr(json.loads(text))


@pytest.mark.parametrize("text", ["{x", "[1,", "", "nan"])
def test_loads_raises_the_stdlib_decode_error_for_text_that_is_not_json(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):  # a ValueError, as callers catch it
        _json.loads(text)
