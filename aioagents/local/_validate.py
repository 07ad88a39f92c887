"""Request bodies of the SandboxFusion routes, validated into attrs models with FastAPI-shaped 422 errors.

An error body is ``{"detail": [{"type", "loc": ["body", ...], "msg", "input"}]}``, as the real (FastAPI/pydantic)
server answers. Unlike it, unknown top-level fields are refused (``extra_forbidden``) so that a typo is not
silently ignored; the official SDK sends only known fields. Invalid base64 in ``files`` and unsafe paths are 422s
here (the real server answers SandboxError or writes outside its directory).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from typing import Any

import attrs

from aioagents.local._paths import PathError, split_relative
from aioagents.local._toolchains import LANGUAGES

__all__ = ["RunCodeRequest", "RunJupyterRequest", "ValidationFailed", "parse_run_code", "parse_run_jupyter"]


class ValidationFailed(Exception):
    """A request body that does not match its model; ``errors`` is the FastAPI-style ``detail`` list."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} validation error(s)")
        self.errors = errors


@attrs.frozen(kw_only=True)
class RunCodeRequest:
    """A validated ``POST /run_code`` body; ``files`` are decoded bytes."""

    code: str
    language: str
    compile_timeout: float = 10.0
    run_timeout: float = 10.0
    memory_limit_MB: int = -1
    stdin: str | None = None
    files: Mapping[str, bytes] = attrs.field(factory=dict)
    fetch_files: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class RunJupyterRequest:
    """A validated ``POST /run_jupyter`` body."""

    cells: tuple[str, ...]
    cell_timeout: float = 0.0
    total_timeout: float = 45.0
    memory_limit_MB: int = -1
    kernel: str = "python3"
    files: Mapping[str, bytes] = attrs.field(factory=dict)
    fetch_files: tuple[str, ...] = ()


class _Checker:
    def __init__(self, body: Any) -> None:
        self.errors: list[dict[str, Any]] = []
        if not isinstance(body, dict):
            self.error(("body",), "model_attributes_type", "Input should be a valid dictionary or object", body)
            body = {}
        self.body: dict[str, Any] = body

    def error(self, loc: tuple[Any, ...], type_: str, msg: str, value: Any, **ctx: Any) -> None:
        entry: dict[str, Any] = {"type": type_, "loc": list(loc), "msg": msg, "input": _short(value)}
        if ctx:
            entry["ctx"] = ctx
        self.errors.append(entry)

    def extra(self, allowed: set[str]) -> None:
        for key in self.body:
            if key not in allowed:
                self.error(("body", key), "extra_forbidden", "Extra inputs are not permitted", self.body[key])

    def required(self, name: str) -> Any:
        if name not in self.body:
            self.error(("body", name), "missing", "Field required", None)
            return None
        return self.body[name]

    def string(self, name: str, *, required: bool = False, nullable: bool = False, default: Any = None) -> Any:
        if required:
            if name not in self.body:
                self.error(("body", name), "missing", "Field required", self.body)
                return ""
        elif name not in self.body:
            return default
        value = self.body[name]
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            self.error(("body", name), "string_type", "Input should be a valid string", value)
            return ""
        return value

    def number(self, name: str, default: float, *, maximum: float) -> float:
        if name not in self.body:
            return default
        value = self.body[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.error(("body", name), "float_type", "Input should be a valid number", value)
            return default
        if value < 0:
            self.error(("body", name), "greater_than_equal", "Input should be greater than or equal to 0", value, ge=0)
        elif value > maximum:
            self.error(
                ("body", name),
                "less_than_equal",
                f"Input should be less than or equal to {maximum:g} (this server's limit)",
                value,
                le=maximum,
            )
        return float(value)

    def integer(self, name: str, default: int) -> int:
        if name not in self.body:
            return default
        value = self.body[name]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(("body", name), "int_type", "Input should be a valid integer", value)
            return default
        return value

    def files(self, name: str, *, allow_null: bool) -> dict[str, bytes]:
        if name not in self.body:
            return {}
        value = self.body[name]
        if not isinstance(value, dict):
            self.error(("body", name), "dict_type", "Input should be a valid dictionary", value)
            return {}
        out: dict[str, bytes] = {}
        for path, content in value.items():
            loc = ("body", name, path)
            try:
                split_relative(path)
            except PathError as exc:
                self.error(loc, "value_error", f"Value error, unsafe path {path!r}: {exc}", path)
                continue
            if content is None and allow_null:
                continue  # the contract skips null entries
            if not isinstance(content, str):
                self.error(loc, "string_type", "Input should be a valid string", content)
                continue
            try:
                out[path] = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError) as exc:
                self.error(loc, "value_error", f"Value error, invalid base64: {exc}", content)
        return out

    def paths(self, name: str) -> tuple[str, ...]:
        if name not in self.body:
            return ()
        value = self.body[name]
        if not isinstance(value, list):
            self.error(("body", name), "list_type", "Input should be a valid list", value)
            return ()
        out: list[str] = []
        for i, path in enumerate(value):
            if not isinstance(path, str):
                self.error(("body", name, i), "string_type", "Input should be a valid string", path)
                continue
            try:
                split_relative(path)
            except PathError as exc:
                self.error(("body", name, i), "value_error", f"Value error, unsafe path {path!r}: {exc}", path)
                continue
            out.append(path)
        return tuple(out)

    def done(self) -> None:
        if self.errors:
            raise ValidationFailed(self.errors)


def _short(value: Any) -> Any:
    """Echo the offending input like FastAPI does, but never megabytes of it."""
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "..."
    if isinstance(value, (dict, list)):
        try:
            text = repr(value)
        except RecursionError:  # nested deeper than repr goes: the body came from a hostile client
            return "<nested too deeply to show>"
        return value if len(text) <= 200 else text[:200] + "..."
    return value


_RUN_CODE_FIELDS = {
    "code", "language", "compile_timeout", "run_timeout", "memory_limit_MB", "stdin", "files", "fetch_files",
}  # fmt: skip
_RUN_JUPYTER_FIELDS = {
    "cells", "cell_timeout", "total_timeout", "memory_limit_MB", "kernel", "files", "fetch_files",
}  # fmt: skip


def parse_run_code(body: Any, *, max_timeout: float) -> RunCodeRequest:
    """Validate a ``/run_code`` body or raise :class:`ValidationFailed`."""
    c = _Checker(body)
    c.extra(_RUN_CODE_FIELDS)
    code = c.string("code", required=True)
    language = c.required("language")
    if "language" in c.body and language not in LANGUAGES:
        expected = ", ".join(f"'{x}'" for x in LANGUAGES)
        c.error(("body", "language"), "literal_error", f"Input should be {expected}", language, expected=expected)
    req = RunCodeRequest(
        code=code,
        language=language if isinstance(language, str) else "",
        compile_timeout=c.number("compile_timeout", 10.0, maximum=max_timeout),
        run_timeout=c.number("run_timeout", 10.0, maximum=max_timeout),
        memory_limit_MB=c.integer("memory_limit_MB", -1),
        stdin=c.string("stdin", nullable=True),
        files=c.files("files", allow_null=True),
        fetch_files=c.paths("fetch_files"),
    )
    c.done()
    return req


def parse_run_jupyter(body: Any, *, max_timeout: float) -> RunJupyterRequest:
    """Validate a ``/run_jupyter`` body or raise :class:`ValidationFailed`."""
    c = _Checker(body)
    c.extra(_RUN_JUPYTER_FIELDS)
    raw_cells = c.required("cells")
    cells: list[str] = []
    if "cells" in c.body:
        if not isinstance(raw_cells, list):
            c.error(("body", "cells"), "list_type", "Input should be a valid list", raw_cells)
        else:
            for i, cell in enumerate(raw_cells):
                if isinstance(cell, str):
                    cells.append(cell)
                else:
                    c.error(("body", "cells", i), "string_type", "Input should be a valid string", cell)
    kernel = c.string("kernel", default="python3")
    if kernel != "python3":
        c.error(("body", "kernel"), "literal_error", "Input should be 'python3'", kernel, expected="'python3'")
    req = RunJupyterRequest(
        cells=tuple(cells),
        cell_timeout=c.number("cell_timeout", 0.0, maximum=max_timeout),
        total_timeout=c.number("total_timeout", 45.0, maximum=max_timeout),
        memory_limit_MB=c.integer("memory_limit_MB", -1),
        kernel="python3",
        files=c.files("files", allow_null=False),
        fetch_files=c.paths("fetch_files"),
    )
    c.done()
    return req
