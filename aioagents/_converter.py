"""The cattrs converter: wire naming and unions live here, not in the models.

Lenient by default: unknown fields are ignored, so a server that adds a field does not break decoding. Strict when
``AIOAGENTS_STRICT_DECODING=1`` is set (our test suite sets it), so drift between a fake and our models is caught.

Services register their hooks with ``configure``-style functions on the shared converter.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from aioagents._exceptions import ResponseValidationError

__all__ = [
    "converter",
    "make_converter",
    "register_wire_names",
    "strict_decoding",
    "structure",
    "to_camel",
    "unstructure",
]

T = TypeVar("T")


def strict_decoding() -> bool:
    return os.environ.get("AIOAGENTS_STRICT_DECODING", "") not in ("", "0", "false")


def _structure_datetime(value: Any, _: type) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _structure_str(value: Any, cls: type) -> str:
    # cattrs' default is str(value): a JSON null became the string "None" and an object its repr. Numbers are
    # still accepted (some servers send numeric ids).
    if cls is not str:
        return cls(value)  # type: ignore[no-any-return]  # a str subclass (a str-based enum): as cattrs does
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _structure_int(value: Any, cls: type) -> int:
    # cattrs' default is int(value), which cut 1.5 down to 1 without a word. An integral float (some servers send
    # 3.0) is still an int; a fraction is not.
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"expected an integer, got {value!r}")
    return cls(value)  # type: ignore[no-any-return]


def make_converter(*, strict: bool | None = None) -> cattrs.Converter:
    """A converter with aioagents' base hooks (aware datetimes from ISO strings or epoch seconds; strings that are
    strings)."""
    strict = strict_decoding() if strict is None else strict
    conv = cattrs.Converter(forbid_extra_keys=strict, prefer_attrib_converters=True)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(datetime, _structure_datetime)
    conv.register_unstructure_hook(datetime, lambda d: d.isoformat())
    return conv


converter = make_converter()


def to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def register_wire_names(
    conv: cattrs.Converter,
    cls: type,
    names: Mapping[str, str] | Callable[[str], str],
    *,
    omit_none: bool = False,
) -> None:
    """Map attribute names to wire names for ``cls`` in both directions (a dict of exceptions, or a function such as
    :func:`to_camel`). With ``omit_none`` a ``None`` attribute is left out when unstructuring ("not sent")."""
    fields = attrs.fields(cls)
    rename = {
        f.name: (names(f.name) if callable(names) else names.get(f.name, f.name)) for f in fields
    }
    overrides: dict[str, Any] = {n: override(rename=w) for n, w in rename.items() if w != n}
    conv.register_structure_hook(
        cls, make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=conv.forbid_extra_keys, **overrides)
    )
    base: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(cls, conv, **overrides)
    if omit_none:
        wire_of = rename

        def unstructure(obj: Any) -> dict[str, Any]:
            data = base(obj)
            for f in fields:
                if getattr(obj, f.name) is None:
                    data.pop(wire_of[f.name], None)
            return data

        conv.register_unstructure_hook(cls, unstructure)
    else:
        conv.register_unstructure_hook(cls, base)


def structure(data: Any, cls: type[T], *, conv: cattrs.Converter | None = None) -> T:
    """Decode ``data`` into ``cls``; a mismatch raises :class:`ResponseValidationError` with the details."""
    try:
        return (conv or converter).structure(data, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError, AttributeError) as exc:
        # AttributeError: a body that is not an object at all (a string or a list has no .keys()).
        detail = "; ".join(cattrs.transform_error(exc)) if isinstance(exc, cattrs.BaseValidationError) else str(exc)
        raise ResponseValidationError(
            f"cannot read the response as {getattr(cls, '__name__', cls)}: {detail}", body=data
        ) from exc


def unstructure(obj: Any, *, conv: cattrs.Converter | None = None) -> Any:
    return (conv or converter).unstructure(obj)
