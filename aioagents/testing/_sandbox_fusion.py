"""A contract-faithful fake of the SandboxFusion server (bytedance/SandboxFusion, FastAPI + uvicorn).

It speaks the real wire (routes, JSON field names, enums, FastAPI/pydantic-v2 422 bodies, the dataset
routes' 400/500 answers, the connection drop after an unhandled 500) but it never runs code. ``/run_code`` and
``/run_jupyter`` answer by deterministic rules so that tests can predict every byte:

* ``print(X)`` (``console.log``, ``echo``, ``System.out.println``, ``fmt.Println``, ``println!``, ``cout <<``)
  writes ``X`` and a newline to stdout; Python literals and names assigned earlier are evaluated, anything
  else is echoed as written; ``print(input())`` echoes the first stdin line.
* ``raise``/``throw``/``panic!``/``assert False``, or code that does not parse (Python) → ``Failed`` with a
  traceback on stderr; ``exit(n)`` → return code ``n``; unbalanced braces in a compiled language → compile
  error.
* ``sleep(n)`` beyond ``run_timeout`` → ``Failed`` with ``TimeLimitExceeded`` and ``return_code: null``; the
  output before the sleep is kept. ``run_timeout: 0`` is an immediate TLE.
* ``language: sql`` or invalid base64 in ``files`` → ``SandboxError`` (the runner raised).
* ``fetch_files`` echoes uploaded files and files written with ``open(p, "w").write(s)``; missing ones are
  omitted.
* the markers ``# fake: cpu_time`` (adds the unknown field ``cpu_time``) and ``# fake: nulls`` (sends
  ``stdout``, ``stderr`` and ``execution_time`` as ``null``) exercise a tolerant decoder.

Example::

    async with FakeSandboxFusionServer() as srv:
        ...  # point a client at srv.url
"""

from __future__ import annotations

import ast
import asyncio
import base64
import binascii
import json
import re
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from aioagents.testing._server import FakeServer

__all__ = ["LANGUAGES", "FakeSandboxFusionServer"]

#: The server's ``Language`` literal (29 values, in the server's order).
LANGUAGES: tuple[str, ...] = (
    "python", "cpp", "nodejs", "go", "go_test", "java", "php", "csharp", "bash", "typescript", "sql", "rust",
    "cuda", "lua", "R", "perl", "D_ut", "ruby", "scala", "julia", "pytest", "junit", "kotlin_script", "jest",
    "verilog", "python_gpu", "lean", "swift", "racket",
)  # fmt: skip
_COMPILED = frozenset({"cpp", "go", "java", "rust", "scala", "D_ut", "swift", "verilog", "cuda", "python_gpu", "junit"})
_PYTHONISH = frozenset({"python", "pytest", "python_gpu"})

#: ``GET /list_datasets`` of the real local deployment (53 ids).
DATASET_IDS: tuple[str, ...] = (
    "aider_benchmark_v1", "code_contests", "cruxeval", "cruxeval_x",
    *(f"multiple_{x}" for x in (
        "cpp", "ts", "sh", "cs", "go", "java", "lua", "js", "php", "pl", "rkt", "r", "rs", "scala", "swift",
        "rb", "d", "jl",
    )),
    *(f"humaneval_{x}" for x in ("python", "cpp", "typescript", "bash", "csharp", "go", "java")),
    "shadow_humaneval_python", "bigcodebench", "evoeval", "live_code_bench_v1", "mbpp", "mbxp_v1_en",
    "humanevalds_v1_en", "oodtest_v1_zh", "humanevalds_v2_en", "mbxp_v2_en", "mhpp", "minif2f_lean4_test",
    "minif2f_lean4_valid", "ncb_python_zh", "ncb_python_en", "ncb_java_zh", "ncb_java_en", "palmath",
    "repobench_c_python", "repobench_c_java", "repobench_p_python", "repobench_p_java", "verilogeval_human",
    "verilogeval_machine",
)  # fmt: skip

_PYDANTIC_URL = "https://errors.pydantic.dev/2.10/v/"
_TMPDIR = "/tmp/tmpf4k3sb0x"  # what a real run's cwd looks like; tests must not compare it exactly


# ------------------------------------------------------------------------------------------------------------
# A pydantic-v2-shaped validator: FastAPI's 422 bodies are part of the wire; pydantic is not our dependency.
# ------------------------------------------------------------------------------------------------------------
class _Invalid(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid")
        self.errors = errors


def _err(kind: str, loc: Sequence[Any], msg: str, value: Any, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "loc": list(loc), "msg": msg, "input": value}
    if ctx is not None:
        out["ctx"] = ctx
    out["url"] = _PYDANTIC_URL + kind
    return out


def _literal_text(values: Sequence[str]) -> str:
    quoted = [repr(v) for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


Checker = Callable[[Any, tuple[Any, ...], list[dict[str, Any]]], Any]


def _str(value: Any, loc: tuple[Any, ...], errs: list[dict[str, Any]]) -> Any:
    if isinstance(value, str):
        return value
    errs.append(_err("string_type", loc, "Input should be a valid string", value))
    return None


def _float(value: Any, loc: tuple[Any, ...], errs: list[dict[str, Any]]) -> Any:
    if isinstance(value, (int, float)):  # bool is an int: pydantic's lax mode accepts it too
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            errs.append(
                _err(
                    "float_parsing",
                    loc,
                    "Input should be a valid number, unable to parse string as a number",
                    value,
                )
            )
            return None
    errs.append(_err("float_type", loc, "Input should be a valid number", value))
    return None


def _int(value: Any, loc: tuple[Any, ...], errs: list[dict[str, Any]]) -> Any:
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        errs.append(
            _err(
                "int_from_float",
                loc,
                "Input should be a valid integer, got a number with a fractional part",
                value,
            )
        )
        return None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            errs.append(
                _err(
                    "int_parsing",
                    loc,
                    "Input should be a valid integer, unable to parse string as an integer",
                    value,
                )
            )
            return None
    errs.append(_err("int_type", loc, "Input should be a valid integer", value))
    return None


def _bool(value: Any, loc: tuple[Any, ...], errs: list[dict[str, Any]]) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "1", "yes", "on", "t", "y"):
            return True
        if low in ("false", "0", "no", "off", "f", "n"):
            return False
        errs.append(_err("bool_parsing", loc, "Input should be a valid boolean, unable to interpret input", value))
        return None
    errs.append(_err("bool_type", loc, "Input should be a valid boolean", value))
    return None


def _literal(*values: str) -> Checker:
    def check(value: Any, loc: tuple[Any, ...], errs: list[dict[str, Any]]) -> Any:
        if isinstance(value, str) and value in values:
            return value
        text = _literal_text(values)
        errs.append(_err("literal_error", loc, f"Input should be {text}", value, {"expected": text}))
        return None

    return check


def _nullable(inner: Checker) -> Checker:
    def check(value: Any, loc: tuple[Any, ...], errs: list[dict[str, Any]]) -> Any:
        return None if value is None else inner(value, loc, errs)

    return check


def _union_int_str(value: Any, loc: tuple[Any, ...], errs: list[dict[str, Any]]) -> Any:
    # pydantic's smart union: exact type first, and one error per branch when none fits.
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return value
    sub: list[dict[str, Any]] = []
    got = _int(value, (*loc, "int"), sub)
    if not sub:
        return got
    errs.extend(sub)
    _str(value, (*loc, "str"), errs)
    return None


def _dict_of(inner: Checker) -> Checker:
    def check(value: Any, loc: tuple[Any, ...], errs: list[dict[str, Any]]) -> Any:
        if not isinstance(value, dict):
            errs.append(_err("dict_type", loc, "Input should be a valid dictionary", value))
            return None
        return {k: inner(v, (*loc, k), errs) for k, v in value.items()}

    return check


def _list_of(inner: Checker) -> Checker:
    def check(value: Any, loc: tuple[Any, ...], errs: list[dict[str, Any]]) -> Any:
        if not isinstance(value, list):
            errs.append(_err("list_type", loc, "Input should be a valid list", value))
            return None
        return [inner(v, (*loc, i), errs) for i, v in enumerate(value)]

    return check


def _any_dict(value: Any, loc: tuple[Any, ...], errs: list[dict[str, Any]]) -> Any:
    return _dict_of(lambda v, _l, _e: v)(value, loc, errs)


def _anything(value: Any, loc: tuple[Any, ...], errs: list[dict[str, Any]]) -> Any:
    return value


_REQUIRED = object()


def _model(name: str, fields: Mapping[str, tuple[Checker, Any]]) -> Checker:
    def check(value: Any, loc: tuple[Any, ...], errs: list[dict[str, Any]]) -> Any:
        if not isinstance(value, dict):
            if loc == ("body",):
                errs.append(_err(
                    "model_attributes_type", loc,
                    "Input should be a valid dictionary or object to extract fields from", value,
                ))  # fmt: skip
            else:
                errs.append(_err(
                    "model_type", loc, f"Input should be a valid dictionary or instance of {name}", value,
                    {"class_name": name},
                ))  # fmt: skip
            return None
        out: dict[str, Any] = {}
        for key, (checker, default) in fields.items():
            if key not in value:
                if default is _REQUIRED:
                    errs.append(_err("missing", (*loc, key), "Field required", value))
                else:
                    out[key] = default() if callable(default) else default
                continue
            out[key] = checker(value[key], (*loc, key), errs)
        return out

    return check


_language = _literal(*LANGUAGES)
_files_nullable = _dict_of(_nullable(_str))
_str_list = _list_of(_str)
_empty_dict: Callable[[], dict[str, Any]] = dict
_empty_list: Callable[[], list[Any]] = list

_RUN_CODE = _model("RunCodeRequest", {
    "code": (_str, _REQUIRED),
    "language": (_language, _REQUIRED),
    "compile_timeout": (_float, 10.0),
    "run_timeout": (_float, 10.0),
    "memory_limit_MB": (_int, -1),
    "stdin": (_nullable(_str), None),
    "files": (_files_nullable, _empty_dict),
    "fetch_files": (_str_list, _empty_list),
})  # fmt: skip
_RUN_JUPYTER = _model("RunJupyterRequest", {
    "cells": (_str_list, _REQUIRED),
    "cell_timeout": (_float, 0.0),
    "total_timeout": (_float, 45.0),
    "memory_limit_MB": (_int, -1),
    "kernel": (_literal("python3"), "python3"),
    "files": (_dict_of(_str), _empty_dict),
    "fetch_files": (_str_list, _empty_list),
})  # fmt: skip
_TEST_CONFIG = _model("TestConfig", {
    "dataset_type": (_nullable(_str), None),
    "language": (_nullable(_language), None),
    "locale": (_nullable(_str), None),
    "is_fewshot": (_nullable(_bool), None),
    "compile_timeout": (_nullable(_float), None),
    "run_timeout": (_nullable(_float), None),
    "custom_extract_logic": (_nullable(_str), None),
    "provided_data": (_anything, None),
    "extra": (_any_dict, _empty_dict),
})  # fmt: skip
_GET_PROMPTS = _model("GetPromptsRequest", {
    "dataset": (_str, _REQUIRED),
    "config": (_TEST_CONFIG, _REQUIRED),
    "offset": (_int, 0),
    "limit": (_int, 1000000),
})  # fmt: skip
_GET_PROMPT_BY_ID = _model("GetPromptByIdRequest", {
    "dataset": (_str, _REQUIRED),
    "config": (_TEST_CONFIG, _REQUIRED),
    "id": (_union_int_str, _REQUIRED),
})  # fmt: skip
_SUBMIT = _model("SubmitRequest", {
    "dataset": (_str, _REQUIRED),
    "id": (_union_int_str, _REQUIRED),
    "completion": (_str, _REQUIRED),
    "config": (_TEST_CONFIG, _REQUIRED),
})  # fmt: skip
_GET_METRICS = _model("GetMetricsRequest", {
    "dataset": (_str, _REQUIRED),
    "config": (_TEST_CONFIG, _REQUIRED),
    "results": (_list_of(_any_dict), _REQUIRED),
})  # fmt: skip
_GET_METRICS_FUNCTION = _model("GetMetricsFunctionRequest", {
    "dataset": (_str, _REQUIRED),
    "config": (_TEST_CONFIG, _REQUIRED),
})  # fmt: skip


async def _validated(request: web.Request, model: Checker) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        pos = getattr(exc, "pos", 0)
        msg = getattr(exc, "msg", str(exc))
        # FastAPI's own shape for an unparsable body (not a pydantic error: no url).
        raise _Invalid(
            [
                {
                    "type": "json_invalid",
                    "loc": ["body", pos],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": msg},
                }
            ]
        ) from exc
    if body is None:
        raise _Invalid([_err("missing", ("body",), "Field required", None)])
    errs: list[dict[str, Any]] = []
    out = model(body, ("body",), errs)
    if errs:
        raise _Invalid(errs)
    assert isinstance(out, dict)
    return out


def _json(data: Any, status: int = 200) -> web.Response:
    # FastAPI's JSONResponse: compact separators, UTF-8, application/json.
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return web.Response(status=status, body=body, content_type="application/json")


class _Unhandled(web.Response):
    """Marks the answer to an unhandled server exception (see ``_send_then_drop``)."""


def _unhandled(detail: str, frames: list[str]) -> web.Response:
    body = json.dumps({"detail": detail, "traceback": frames}, separators=(",", ":")).encode()
    return _Unhandled(status=500, body=body, content_type="application/json")


async def _send_then_drop(request: web.Request, resp: web.Response) -> web.Response:
    """Send a normal keep-alive response, then close the socket, as uvicorn does after an unhandled exception.

    No ``Connection: close`` header is sent, so a pooling client puts the connection back in its pool and its
    next request on it fails: that is the behaviour a client must survive.
    """
    await resp.prepare(request)
    await resp.write_eof()
    if request.transport is not None:
        request.transport.close()
    return resp


# ------------------------------------------------------------------------------------------------------------
# The rule-based "runner".
# ------------------------------------------------------------------------------------------------------------
class _Stop(Exception):
    """Ends a rule-based run early (exception, exit, timeout)."""

    def __init__(self, *, code: int | None, stderr: str = "", timeout: bool = False) -> None:
        super().__init__("stop")
        self.code = code
        self.stderr = stderr
        self.timeout = timeout


class _Unknown(Exception):
    """An expression the tiny evaluator does not model; callers fall back to echoing the source."""


_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
}
_CMPOPS: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: bool(a == b),
    ast.NotEq: lambda a, b: bool(a != b),
    ast.Lt: lambda a, b: bool(a < b),
    ast.LtE: lambda a, b: bool(a <= b),
    ast.Gt: lambda a, b: bool(a > b),
    ast.GtE: lambda a, b: bool(a >= b),
}


_BUILTINS: dict[str, Callable[..., Any]] = {
    "str": str, "int": int, "float": float, "len": len, "repr": repr, "abs": abs, "sum": sum, "max": max,
    "min": min, "sorted": sorted, "list": list,
}  # fmt: skip


class _PyRun:
    """Walks a Python module's top-level statements and produces output by rule (no code is executed)."""

    def __init__(self, *, stdin: str, run_timeout: float, env: dict[str, Any] | None = None) -> None:
        self.stdin_lines = stdin.splitlines()
        self.run_timeout = run_timeout
        self.elapsed = 0.0
        self.env: dict[str, Any] = env if env is not None else {}
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.written: dict[str, bytes] = {}
        self.figures = 0
        self.last_value: Any = None
        self.has_value = False

    # -- expressions ---------------------------------------------------------------------------------------
    def eval(self, node: ast.expr, src: str) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in self.env:
                return self.env[node.id]
            raise _Stop(code=1, stderr=_py_traceback("NameError", f"name '{node.id}' is not defined"))
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [self.eval(e, src) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items) if isinstance(node, ast.Tuple) else set(items)
        if isinstance(node, ast.Dict):
            pairs = zip(node.keys, node.values, strict=True)
            return {self.eval(k, src) if k else None: self.eval(v, src) for k, v in pairs}
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = self.eval(node.left, src), self.eval(node.right, src)
            try:
                return _BINOPS[type(node.op)](left, right)
            except ZeroDivisionError:
                raise _Stop(code=1, stderr=_py_traceback("ZeroDivisionError", "division by zero")) from None
            except TypeError as exc:
                raise _Stop(code=1, stderr=_py_traceback("TypeError", str(exc))) from None
        if isinstance(node, ast.UnaryOp):
            value = self.eval(node.operand, src)
            if isinstance(node.op, ast.USub):
                return -value
            if isinstance(node.op, ast.Not):
                return not value
            return value
        if isinstance(node, ast.Compare) and all(type(op) in _CMPOPS for op in node.ops):
            left = self.eval(node.left, src)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = self.eval(comp, src)
                if not _CMPOPS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.JoinedStr):
            parts = []
            for part in node.values:
                if isinstance(part, ast.FormattedValue):
                    parts.append(str(self.eval(part.value, src)))
                else:
                    parts.append(str(self.eval(part, src)))
            return "".join(parts)
        if isinstance(node, ast.Call):
            return self.call(node, src)
        raise _Unknown

    def call(self, node: ast.Call, src: str) -> Any:
        name = ast.get_source_segment(src, node.func) or ""
        if name == "input":
            return self.stdin_lines.pop(0) if self.stdin_lines else ""
        if name == "sys.stdin.read":
            rest = "\n".join(self.stdin_lines)
            self.stdin_lines = []
            return rest
        if name in _BUILTINS:
            args = [self.eval(a, src) for a in node.args]
            builtin: Callable[..., Any] = _BUILTINS[name]
            return builtin(*args)
        raise _Unknown

    def text_of(self, node: ast.expr, src: str) -> str:
        try:
            value = self.eval(node, src)
        except _Unknown:
            return ast.get_source_segment(src, node) or ""
        return str(value)

    # -- statements ----------------------------------------------------------------------------------------
    def run(self, src: str) -> None:
        try:
            tree = ast.parse(src)
        except SyntaxError as exc:
            line = exc.lineno or 1
            text = (exc.text or "").rstrip("\n")
            raise _Stop(
                code=1,
                stderr=f'  File "{_TMPDIR}/tmpcode.py", line {line}\n    {text.strip()}\n    ^\n'
                f"SyntaxError: {exc.msg}\n",
            ) from None
        for index, stmt in enumerate(tree.body):
            self.statement(stmt, src, last=index == len(tree.body) - 1)

    def statement(self, stmt: ast.stmt, src: str, *, last: bool) -> None:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            try:
                self.env[stmt.targets[0].id] = self.eval(stmt.value, src)
            except _Unknown:
                self.env[stmt.targets[0].id] = ast.get_source_segment(src, stmt.value)
            return
        if isinstance(stmt, ast.Raise):
            self.raise_(stmt, src)
        if isinstance(stmt, ast.Assert):
            try:
                ok = bool(self.eval(stmt.test, src))
            except _Unknown:
                ok = True  # an assert over something we do not model passes
            if not ok:
                msg = self.text_of(stmt.msg, src) if stmt.msg is not None else ""
                raise _Stop(code=1, stderr=_py_traceback("AssertionError", msg))
            return
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and self.effect(stmt.value, src):
            return
        if isinstance(stmt, ast.Expr):
            try:
                value = self.eval(stmt.value, src)
            except _Unknown:
                return
            if last:
                self.last_value, self.has_value = value, True

    def effect(self, call: ast.Call, src: str) -> bool:
        """A call with a side effect we model. Returns True when it was one."""
        name = ast.get_source_segment(src, call.func) or ""
        if name == "print":
            sep, end = " ", "\n"
            stream = self.stdout
            for kw in call.keywords:
                if kw.arg == "sep":
                    sep = self.text_of(kw.value, src)
                elif kw.arg == "end":
                    end = self.text_of(kw.value, src)
                elif kw.arg == "file" and "stderr" in (ast.get_source_segment(src, kw.value) or ""):
                    stream = self.stderr
            stream.append(sep.join(self.text_of(a, src) for a in call.args) + end)
            return True
        if name in ("sys.stdout.write", "sys.stderr.write") and call.args:
            (self.stdout if "stdout" in name else self.stderr).append(self.text_of(call.args[0], src))
            return True
        if name.endswith("sleep") and call.args:
            seconds = float(self.eval(call.args[0], src))
            if self.elapsed + seconds > self.run_timeout:
                self.elapsed = self.run_timeout
                raise _Stop(code=None, timeout=True)
            self.elapsed += seconds
            return True
        if name in ("exit", "sys.exit", "quit", "os._exit"):
            code = int(self.eval(call.args[0], src)) if call.args else 0
            raise _Stop(code=code)
        if name.endswith(".write") and isinstance(call.func, ast.Attribute):
            target = call.func.value
            if isinstance(target, ast.Call) and (ast.get_source_segment(src, target.func) or "") == "open":
                path = self.text_of(target.args[0], src) if target.args else ""
                data = self.text_of(call.args[0], src) if call.args else ""
                self.written[path] = data.encode()
                return True
        if name.startswith("plt.") and name.split(".")[-1] in ("show", "savefig"):
            self.figures += 1
            return True
        return False

    def raise_(self, stmt: ast.Raise, src: str) -> None:
        exc = stmt.exc
        ename, evalue = "RuntimeError", "No active exception to reraise"
        if isinstance(exc, ast.Call):
            ename = ast.get_source_segment(src, exc.func) or "Exception"
            evalue = self.text_of(exc.args[0], src) if exc.args else ""
        elif isinstance(exc, ast.Name):
            ename, evalue = exc.id, ""
        raise _Stop(code=1, stderr=_py_traceback(ename, evalue))


def _py_traceback(ename: str, evalue: str) -> str:
    tail = f"{ename}: {evalue}" if evalue else ename
    return f'Traceback (most recent call last):\n  File "{_TMPDIR}/tmpcode.py", line 1, in <module>\n{tail}\n'


_OTHER_PRINT = re.compile(
    r"console\.(?P<stream>log|error)\((?P<a>.*)\)\s*;?\s*$"
    r"|^\s*echo\s+(?P<b>.*?)\s*(?P<toerr>>&2)?$"
    r"|System\.out\.println\((?P<c>.*)\)\s*;\s*$"
    r"|fmt\.Println\((?P<d>.*)\)\s*$"
    r"|println!\((?P<e>.*)\)\s*;?\s*$"
    r"|cout\s*<<\s*(?P<f>.*?)\s*(?:<<\s*(?:std::)?(?:endl|\"\\n\"))?\s*;\s*$"
    r"|^\s*puts\s+(?P<g>.*)$"
    r"|^\s*print\((?P<h>.*)\)\s*;?\s*$"
)
_SLEEP = re.compile(r"(?:sleep|Sleep|setTimeout)\W*?\(?\s*(\d+(?:\.\d+)?)")
_FAIL = re.compile(r"\b(?:throw|panic!?|raise|die|abort)\b|assert\s*\(?\s*false", re.IGNORECASE)
_EXIT = re.compile(r"\b(?:exit|process\.exit|System\.exit)\s*\(?\s*(\d+)")


def _literal_arg(arg: str) -> str:
    arg = arg.strip()
    if len(arg) >= 2 and arg[0] == arg[-1] and arg[0] in "\"'`":
        return arg[1:-1].replace("\\n", "\n")
    return arg


def _run_other(code: str, run_timeout: float) -> tuple[str, str, int | None, bool]:
    """Line rules for the non-Python languages: (stdout, stderr, return_code, timed_out)."""
    out: list[str] = []
    err: list[str] = []
    elapsed = 0.0
    for line in code.splitlines():
        sleep = _SLEEP.search(line)
        if sleep:
            seconds = float(sleep.group(1))
            if "setTimeout" in line or "Millisecond" in line:
                seconds /= 1000.0
            if elapsed + seconds > run_timeout:
                return "".join(out), "".join(err), None, True
            elapsed += seconds
            continue
        if _FAIL.search(line):
            err.append(f"Error: {line.strip()}\n")
            return "".join(out), "".join(err), 1, False
        exit_match = _EXIT.search(line)
        if exit_match:
            return "".join(out), "".join(err), int(exit_match.group(1)), False
        match = _OTHER_PRINT.search(line)
        if match:
            groups = {k: v for k, v in match.groupdict().items() if v is not None}
            to_err = groups.get("stream") == "error" or "toerr" in groups
            text = next(v for k, v in groups.items() if k in "abcdefgh")
            (err if to_err else out).append(_literal_arg(text) + "\n")
    return "".join(out), "".join(err), 0, False


def _command(
    status: str, *, code: int | None, stdout: str | None, stderr: str | None, seconds: float | None, cpu: bool
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "status": status,
        "execution_time": seconds,
        "return_code": code,
        "stdout": stdout,
        "stderr": stderr,
    }
    if cpu:
        # The published SDK knows cpu_time; this server never sends it. Decoders must tolerate it either way.
        result["cpu_time"] = round((seconds or 0.0) * 0.9, 6)
    return result


def _png(width: int = 8, height: int = 8) -> bytes:
    """A small valid PNG (solid colour), what a matplotlib figure's display would carry."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\x1f\x77\xb4" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


_ANSI_RED, _ANSI_GREEN, _ANSI_CYAN, _ANSI_RESET = "\x1b[31m", "\x1b[32m", "\x1b[36m", "\x1b[39m"


def _ipython_traceback(ename: str, evalue: str, cell: int) -> list[str]:
    """IPython-8-style coloured traceback frames (real ESC characters, frames may hold newlines)."""
    return [
        f"{_ANSI_RED}{'-' * 75}{_ANSI_RESET}",
        f"{_ANSI_RED}{ename}{_ANSI_RESET}{' ' * 25}Traceback (most recent call last)",
        f"{_ANSI_CYAN}Cell{_ANSI_RESET}{_ANSI_CYAN} {_ANSI_RESET}{_ANSI_GREEN}In[{cell}]{_ANSI_RESET}"
        f"{_ANSI_GREEN}, line 1{_ANSI_RESET}\n{_ANSI_GREEN}----> 1{_ANSI_RESET} ...\n",
        f"{_ANSI_RED}{ename}{_ANSI_RESET}: {evalue}",
    ]


# ------------------------------------------------------------------------------------------------------------
# Datasets.
# ------------------------------------------------------------------------------------------------------------
def _default_datasets() -> dict[str, list[dict[str, Any]]]:
    mbpp = [
        {
            "id": i,
            "prompt": f"Write a function `func_{i}(x)` that returns x plus {i}.",
            "labels": {"entry_point": f"func_{i}", "test_list": [f"assert func_{i}(1) == {i + 1}"]},
        }
        for i in range(11, 31)
    ]
    cruxeval = [
        {
            "id": f"sample_{i}",
            "prompt": f"def f(x):\n    return x * {i}\nassert f(2) == ??",
            "labels": {"entry_point": "f", "test_list": [f"assert f(2) == {2 * i}"]},
        }
        for i in range(40)
    ]
    code_contests = [
        {
            "id": i,
            "prompt": [
                {"role": "system", "content": "You are a competitive programmer."},
                {"role": "user", "content": f"Read an integer n and print n + {i}."},
            ],
            "labels": {"entry_point": "main", "test_list": []},
        }
        for i in range(20)
    ]
    return {"mbpp": mbpp, "cruxeval": cruxeval, "code_contests": code_contests}


_FENCE = re.compile(r"```[ \t]*(?P<lang>[\w+#-]*)[^\n]*\n(?P<code>.*?)(?:```|\Z)", re.DOTALL)


def _extract_code(completion: str) -> str:
    match = _FENCE.search(completion)
    return match.group("code").rstrip() + "\n" if match else completion


class FakeSandboxFusionServer(FakeServer):
    """A fake SandboxFusion server: every route of the real one, rule-based runs, in-memory datasets.

    ``datasets`` maps a dataset id to its rows (``{"id", "prompt", "labels"}``); the default has ``mbpp`` (ids
    11–30), ``cruxeval`` (string ids ``sample_0``…) and ``code_contests`` (prompts as message lists). Every
    other id of the real ``/list_datasets`` answers 500 "failed to request database", as the real local
    deployment does.
    ``executor_pod_name`` fills that field; ``cpu_time=True`` adds the SDK-only ``cpu_time`` field everywhere.
    ``realtime=True`` makes a ``sleep`` really wait (up to ``run_timeout``), for client-timeout tests.
    """

    def __init__(
        self,
        *,
        datasets: Mapping[str, list[dict[str, Any]]] | None = None,
        executor_pod_name: str | None = None,
        cpu_time: bool = False,
        realtime: bool = False,
    ) -> None:
        self.datasets: dict[str, list[dict[str, Any]]] = (
            {k: list(v) for k, v in datasets.items()} if datasets is not None else _default_datasets()
        )
        self.executor_pod_name = executor_pod_name
        self.cpu_time = cpu_time
        self.realtime = realtime
        super().__init__()

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/ping", self._ping)
        app.router.add_get("/", self._root)
        app.router.add_post("/run_code", self._wrap(self._run_code))
        app.router.add_post("/run_jupyter", self._wrap(self._run_jupyter))
        app.router.add_get("/list_datasets", self._list_datasets)
        app.router.add_post("/list_ids", self._wrap(self._list_ids))
        app.router.add_post("/get_prompts", self._wrap(self._get_prompts))
        app.router.add_post("/get_prompt_by_id", self._wrap(self._get_prompt_by_id))
        app.router.add_post("/submit", self._wrap(self._submit))
        app.router.add_post("/get_metrics", self._wrap(self._get_metrics))
        app.router.add_post("/get_metrics_function", self._wrap(self._get_metrics_function))
        app.router.add_route("*", "/{tail:.*}", self._not_found)

    # -- plumbing ------------------------------------------------------------------------------------------
    def _wrap(self, handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
        async def route(request: web.Request) -> web.StreamResponse:
            try:
                result: web.StreamResponse = await handler(request)
            except _Invalid as exc:
                return _json({"detail": exc.errors}, status=422)
            if isinstance(result, _Unhandled):
                return await _send_then_drop(request, result)
            return result

        return route

    async def _not_found(self, request: web.Request) -> web.Response:
        known = {r.resource.canonical for r in request.app.router.routes() if r.resource is not None}
        if request.path in known:
            return _json({"detail": "Method Not Allowed"}, status=405)
        return _json({"detail": "Not Found"}, status=404)

    async def _ping(self, request: web.Request) -> web.Response:
        return _json("pong")

    async def _root(self, request: web.Request) -> web.Response:
        html = "<html><script>window.location.href = '/SandboxFusion';</script></html>"
        return web.Response(text=html, content_type="text/html")

    # -- sandbox -------------------------------------------------------------------------------------------
    def run(self, req: Mapping[str, Any]) -> dict[str, Any]:
        """The response body ``/run_code`` gives for a validated request (also used by ``/submit``)."""
        code: str = req["code"]
        language: str = req["language"]
        run_timeout: float = req["run_timeout"]
        cpu = self.cpu_time or "# fake: cpu_time" in code
        nulls = "# fake: nulls" in code
        files: dict[str, bytes] = {}
        try:
            if language == "sql":
                raise RuntimeError("no runner for language sql")
            for path, b64 in (req.get("files") or {}).items():
                if b64 is None or "IGNORE_THIS_FILE" in path:
                    continue
                files[path] = base64.b64decode(b64, validate=True)
        except (RuntimeError, binascii.Error, ValueError) as exc:
            return self._response("SandboxError", message=f"exception on running code {code}: {exc} None")

        compile_result = None
        if language in _COMPILED:
            broken = code.count("{") != code.count("}") or "COMPILE_ERROR" in code
            compile_result = _command(
                "Finished",
                code=1 if broken else 0,
                stdout="",
                stderr=f"{_TMPDIR}/main: error: expected '}}' at end of input\n" if broken else "",
                seconds=0.5,
                cpu=cpu,
            )
            if broken:
                return self._response("Failed", compile_result=compile_result)

        written: dict[str, bytes] = {}
        if language in _PYTHONISH:
            runner = _PyRun(stdin=req.get("stdin") or "", run_timeout=run_timeout)
            timed_out, stderr_extra = False, ""
            return_code: int | None = 0
            try:
                if run_timeout <= 0:
                    raise _Stop(code=None, timeout=True)
                runner.run(code)
            except _Stop as stop:
                timed_out, return_code, stderr_extra = stop.timeout, stop.code, stop.stderr
            stdout, stderr = "".join(runner.stdout), "".join(runner.stderr) + stderr_extra
            elapsed = runner.elapsed
            written = runner.written
        else:
            stdout, stderr, return_code, timed_out = _run_other(code, run_timeout)
            elapsed = run_timeout if timed_out else 0.0
            if run_timeout <= 0:
                stdout, stderr, return_code, timed_out = "", "", None, True
        seconds = run_timeout if timed_out else round(0.013 + elapsed, 6)
        run_result = _command(
            "TimeLimitExceeded" if timed_out else "Finished",
            code=None if timed_out else return_code,
            stdout=None if nulls else stdout,
            stderr=None if nulls else stderr,
            seconds=None if nulls else seconds,
            cpu=cpu,
        )
        files.update(written)
        fetched = {
            path: base64.b64encode(files[path]).decode()
            for path in req.get("fetch_files") or []
            if path in files  # a missing file is silently omitted, as upstream does
        }
        status = "Failed" if timed_out or return_code != 0 else "Success"
        return self._response(status, compile_result=compile_result, run_result=run_result, files=fetched)

    def _response(
        self,
        status: str,
        *,
        message: str = "",
        compile_result: dict[str, Any] | None = None,
        run_result: dict[str, Any] | None = None,
        files: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        return {
            "status": status,
            "message": message,
            "compile_result": compile_result,
            "run_result": run_result,
            "executor_pod_name": self.executor_pod_name,
            "files": files or {},
        }

    async def _sleep_like(self, seconds: float) -> None:
        if self.realtime and seconds > 0:
            await asyncio.sleep(seconds)

    async def _run_code(self, request: web.Request) -> web.Response:
        req = await _validated(request, _RUN_CODE)
        body = self.run(req)
        result = body.get("run_result") or {}
        await self._sleep_like(result.get("execution_time") or 0.0)
        return _json(body)

    async def _run_jupyter(self, request: web.Request) -> web.Response:
        req = await _validated(request, _RUN_JUPYTER)
        env: dict[str, Any] = {}
        cells: list[dict[str, Any]] = []
        total = 0.0
        config = {k: req[k] for k in ("cell_timeout", "total_timeout", "kernel")}
        for index, source in enumerate(req["cells"], start=1):
            # Cells are not timed individually: only the driver is killed, at total_timeout + 10 s.
            runner = _PyRun(stdin="", run_timeout=float("inf"), env=env)
            error: list[dict[str, Any]] = []
            try:
                runner.run(source)
            except _Stop as stop:
                if stop.stderr:
                    last = stop.stderr.rstrip("\n").splitlines()[-1]
                    ename, _, evalue = last.partition(": ")
                    error.append(
                        {
                            "ename": ename,
                            "evalue": evalue,
                            "traceback": _ipython_traceback(ename, evalue, index),
                        }
                    )
            total += runner.elapsed
            display: list[dict[str, Any]] = []
            if runner.has_value and runner.last_value is not None:
                display.append({"text/plain": repr(runner.last_value)})
            for _ in range(runner.figures):
                display.append({
                    "text/plain": "<Figure size 640x480 with 1 Axes>",
                    "image/png": base64.b64encode(_png()).decode(),
                })  # fmt: skip
            cells.append(
                {
                    "stdout": "".join(runner.stdout),
                    "stderr": "".join(runner.stderr),
                    "display": display,
                    "error": error,
                }
            )
        limit = req["total_timeout"] + 10
        if total > limit:
            await self._sleep_like(limit)
            driver = _command("TimeLimitExceeded", code=None, stdout="", stderr="", seconds=limit, cpu=self.cpu_time)
            return _json(self._jupyter_response("Failed", driver, []))
        await self._sleep_like(total)
        driver = _command(
            "Finished", code=0, stdout=json.dumps(config) + "\n", stderr="", seconds=round(1.0 + total, 6),
            cpu=self.cpu_time,
        )  # fmt: skip
        return _json(self._jupyter_response("Success", driver, cells))

    def _jupyter_response(self, status: str, driver: dict[str, Any], cells: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "status": status,
            "message": "",
            "driver": driver,
            "cells": cells,
            "executor_pod_name": self.executor_pod_name,
            "files": {},
        }

    # -- datasets ------------------------------------------------------------------------------------------
    async def _list_datasets(self, request: web.Request) -> web.Response:
        ids = list(DATASET_IDS) + [d for d in self.datasets if d not in DATASET_IDS]
        return _json(ids)

    def _rows(self, req: Mapping[str, Any], *, many: bool) -> list[dict[str, Any]] | web.Response:
        dataset: str = req["dataset"]
        config: Mapping[str, Any] = req["config"]
        provided = config.get("provided_data")
        if dataset not in DATASET_IDS and dataset not in self.datasets and not config.get("dataset_type"):
            return _json({"detail": f"no eval class found for dataset {dataset}"}, status=400)
        if provided is not None:
            if many and isinstance(provided, list):
                return [dict(row) for row in provided]
            if not many and isinstance(provided, dict):
                return [dict(provided)]
        if dataset not in self.datasets:
            return _json(
                {"detail": f"failed to request database with query SELECT * FROM {dataset}: no such table"},
                status=500,
            )
        return self.datasets[dataset]

    @staticmethod
    def _prompt(row: Mapping[str, Any]) -> dict[str, Any]:
        return {"id": row["id"], "prompt": row.get("prompt", ""), "labels": dict(row.get("labels") or {})}

    async def _list_ids(self, request: web.Request) -> web.Response:
        req = await _validated(request, _GET_PROMPTS)
        rows = self._rows(req, many=True)
        if isinstance(rows, web.Response):
            return rows
        window = rows[req["offset"] : req["offset"] + req["limit"]]
        return _json([row["id"] for row in window])

    async def _get_prompts(self, request: web.Request) -> web.Response:
        req = await _validated(request, _GET_PROMPTS)
        rows = self._rows(req, many=True)
        if isinstance(rows, web.Response):
            return rows
        window = rows[req["offset"] : req["offset"] + req["limit"]]
        return _json([self._prompt(row) for row in window])

    def _find(self, req: Mapping[str, Any]) -> dict[str, Any] | web.Response:
        rows = self._rows(req, many=False)
        if isinstance(rows, web.Response):
            return rows
        wanted = req["id"]
        for row in rows:
            if row["id"] == wanted or str(row["id"]) == str(wanted):
                return row
        # Upstream indexes an empty result set: an unhandled IndexError, so uvicorn drops the connection.
        return _unhandled(
            "list index out of range",
            [
                "Traceback (most recent call last):\n",
                '  File "/root/sandbox/server/online_judge_api.py", line 88, in get_prompt_by_id\n',
                "    return rows[0]\n",
                "IndexError: list index out of range\n",
            ],
        )

    async def _get_prompt_by_id(self, request: web.Request) -> web.Response:
        req = await _validated(request, _GET_PROMPT_BY_ID)
        row = self._find(req)
        if isinstance(row, web.Response):
            return row
        return _json(self._prompt(row))

    async def _submit(self, request: web.Request) -> web.Response:
        req = await _validated(request, _SUBMIT)
        row = self._find(req)
        if isinstance(row, web.Response):
            return row
        config = req["config"]
        labels = row.get("labels") or {}
        code = _extract_code(req["completion"])
        tests = "\n".join(labels.get("test_list") or [])
        full_code = code + ("\n" + tests + "\n" if tests else "")
        language = config.get("language") or "python"
        run = self.run({
            "code": full_code,
            "language": language,
            "run_timeout": config.get("run_timeout") or 10.0,
            "compile_timeout": config.get("compile_timeout") or 10.0,
            "stdin": None,
            "files": {},
            "fetch_files": [],
        })  # fmt: skip
        if run["status"] == "SandboxError":
            return _json({"detail": f"failed to request sandbox: {run['message']}"}, status=500)
        entry = labels.get("entry_point")
        defines = entry is None or entry == "main" or re.search(rf"\bdef\s+{re.escape(str(entry))}\s*\(", code)
        passed = run["status"] == "Success" and bool(defines)
        return _json({
            "id": row["id"],
            "accepted": passed,
            "extracted_code": code,
            "full_code": full_code,
            "test_code": None,
            "tests": [{"passed": passed, "exec_info": run, "test_info": None}],
            "extracted_type": None,
            "extra": None,
        })  # fmt: skip

    async def _get_metrics(self, request: web.Request) -> web.Response:
        req = await _validated(request, _GET_METRICS)
        rows = self._rows(req, many=True)
        if isinstance(rows, web.Response) and rows.status == 400:
            return rows
        return _json({})

    async def _get_metrics_function(self, request: web.Request) -> web.Response:
        req = await _validated(request, _GET_METRICS_FUNCTION)
        rows = self._rows(req, many=True)
        if isinstance(rows, web.Response) and rows.status == 400:
            return rows
        return _json({"function": None})
