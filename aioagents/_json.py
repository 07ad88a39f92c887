"""JSON encoding for request and response bodies: orjson when installed (the ``speed`` extra), else the stdlib.

Both produce compact UTF-8 bytes and read bytes directly; orjson is several times faster at both, which shows in the
client's CPU per request.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["JSONDecodeError", "dumps", "loads"]

try:
    import orjson
except ImportError:  # pragma: no cover - depends on the installed extras
    orjson = None  # type: ignore[assignment]

JSONDecodeError = ValueError  # both libraries' decode errors are ValueErrors


def _dumps_stdlib(obj: Any) -> bytes:
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        # A lone surrogate (from a str decoded with surrogateescape, or JSON that carried one) has no UTF-8 form:
        # escape it as \udXXX, as JSON allows and every reader accepts.
        return json.dumps(obj, separators=(",", ":")).encode()


def _dumps_orjson(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        # Values orjson does not know (subclasses of builtins, big ints): the stdlib handles them.
        return _dumps_stdlib(obj)


def _loads_orjson(data: bytes | bytearray | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        # What orjson refuses and the stdlib reads: NaN and Infinity (Python servers send them: ``json.dumps``
        # allows them by default), numbers past a double, lone surrogate escapes. Only the failure path pays for
        # the second parse; JSON that is truly broken raises the stdlib's ValueError.
        return json.loads(data)


dumps = _dumps_orjson if orjson is not None else _dumps_stdlib
loads: Any = _loads_orjson if orjson is not None else json.loads
"""Parse JSON text (``bytes`` or ``str``): every document the stdlib reads, as the stdlib reads it; a ValueError
for anything else. Every response body and every streamed event of every service goes through here."""
