"""SandboxFusion models, field for field as the server reads and writes them (contracts/sandbox-fusion.md).

Field names are the wire names (``memory_limit_MB`` included). Decoding is tolerant where the server is: every
``CommandRunResult`` field but ``status`` may be null, ``Prompt.prompt`` is a string or a list of messages, ids are
ints or strings, and unknown fields (``cpu_time`` from other servers) are ignored outside strict mode.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Iterable
from typing import Any, Literal, Union

import attrs
import cattrs

from aioagents._converter import converter
from aioagents._exceptions import InvalidRequestError

__all__ = [
    "LANGUAGES",
    "CellRunResult",
    "CommandRunResult",
    "CommandRunStatus",
    "EvalResult",
    "EvalTestCase",
    "GetMetricsFunctionRequest",
    "GetMetricsFunctionResult",
    "GetMetricsRequest",
    "GetPromptByIdRequest",
    "GetPromptsRequest",
    "Language",
    "Prompt",
    "PromptMessage",
    "RunCodeRequest",
    "RunCodeResponse",
    "RunJupyterRequest",
    "RunJupyterResponse",
    "RunStatus",
    "SubmitRequest",
    "SummaryMapping",
    "TestConfig",
]


class RunStatus(str, enum.Enum):
    """The outcome of a run. ``Failed`` is a normal result; ``SandboxError`` means the sandbox itself failed."""

    Success = "Success"
    Failed = "Failed"
    SandboxError = "SandboxError"


class CommandRunStatus(str, enum.Enum):
    """The outcome of one command (compile or run)."""

    Finished = "Finished"
    Error = "Error"
    TimeLimitExceeded = "TimeLimitExceeded"


Language = Literal[
    "python", "cpp", "nodejs", "go", "go_test", "java", "php", "csharp", "bash", "typescript", "sql", "rust",
    "cuda", "lua", "R", "perl", "D_ut", "ruby", "scala", "julia", "pytest", "junit", "kotlin_script", "jest",
    "verilog", "python_gpu", "lean", "swift", "racket",
]  # fmt: skip
"""The 29 languages the server accepts; anything else is a 422."""

LANGUAGES: frozenset[str] = frozenset(Language.__args__)  # type: ignore[attr-defined]

Id = Union[int, str]  # noqa: UP007 (a runtime alias on 3.10)


def _check_language(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in LANGUAGES:
        raise InvalidRequestError(
            f"unknown language {value!r}; the server accepts: {', '.join(sorted(LANGUAGES, key=str.lower))}"
        )


def _str_list(values: Iterable[str]) -> list[str]:
    if isinstance(values, str):
        raise InvalidRequestError("expected a list of strings, not one string")
    return list(values)


def _encode_files(files: Any) -> dict[str, str | None]:
    """Accept bytes (encoded here) or base64 strings (sent as they are)."""
    out: dict[str, str | None] = {}
    for path, content in dict(files or {}).items():
        if isinstance(content, (bytes, bytearray, memoryview)):
            out[str(path)] = base64.b64encode(bytes(content)).decode("ascii")
        else:
            out[str(path)] = content
    return out


@attrs.frozen(kw_only=True)
class CommandRunResult:
    """One command's result. ``return_code`` is null on a timeout; ``cpu_time`` only some servers send."""

    status: CommandRunStatus
    execution_time: float | None = None
    return_code: int | None = None
    stdout: str | None = None
    stderr: str | None = None
    cpu_time: float | None = None


@attrs.frozen(kw_only=True)
class RunCodeRequest:
    """``POST /run_code``. ``files`` maps a path (relative to the run directory) to base64 content; bytes values are
    encoded for you. ``memory_limit_MB`` ≤ 0 means no limit."""

    code: str
    language: str = attrs.field(validator=_check_language)
    compile_timeout: float = 10
    run_timeout: float = 10
    memory_limit_MB: int = -1
    stdin: str | None = None
    files: dict[str, str | None] = attrs.field(factory=dict, converter=_encode_files)
    fetch_files: list[str] = attrs.field(factory=list, converter=_str_list)


@attrs.frozen(kw_only=True)
class RunCodeResponse:
    """``/run_code``'s answer. ``files`` holds the fetched files, base64; a missing file is simply absent."""

    status: RunStatus
    message: str = ""
    compile_result: CommandRunResult | None = None
    run_result: CommandRunResult | None = None
    executor_pod_name: str | None = None
    files: dict[str, str] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.Success

    @property
    def stdout(self) -> str:
        """The run's stdout ("" when there was no run)."""
        return (self.run_result.stdout if self.run_result else None) or ""

    @property
    def stderr(self) -> str:
        return (self.run_result.stderr if self.run_result else None) or ""

    def file_bytes(self, path: str) -> bytes:
        """A fetched file's content, decoded (KeyError when the server did not find it)."""
        return base64.b64decode(self.files[path])


@attrs.frozen(kw_only=True)
class RunJupyterRequest:
    """``POST /run_jupyter``: cells run in order in a fresh kernel."""

    cells: list[str] = attrs.field(converter=_str_list)
    cell_timeout: float = 0
    total_timeout: float = 45
    memory_limit_MB: int = -1
    kernel: Literal["python3"] = "python3"
    files: dict[str, str | None] = attrs.field(factory=dict, converter=_encode_files)
    fetch_files: list[str] = attrs.field(factory=list, converter=_str_list)


@attrs.frozen(kw_only=True)
class CellRunResult:
    """One cell: its stdout, stderr, display mime bundles and errors (``{"ename","evalue","traceback"}``)."""

    stdout: str = ""
    stderr: str = ""
    display: list[dict[str, Any]] = attrs.field(factory=list)
    error: list[dict[str, Any]] = attrs.field(factory=list)


@attrs.frozen(kw_only=True)
class RunJupyterResponse:
    """``/run_jupyter``'s answer: one :class:`CellRunResult` per finished cell, and the driver's own result."""

    status: RunStatus
    message: str = ""
    driver: CommandRunResult | None = None
    cells: list[CellRunResult] = attrs.field(factory=list)
    executor_pod_name: str | None = None
    files: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class TestConfig:
    """Dataset options; ``{}`` is valid. ``provided_data`` supplies the rows (a list for prompts, a dict for one)."""

    __test__ = False  # not a pytest test class

    dataset_type: str | None = None
    language: str | None = None
    locale: str | None = None
    is_fewshot: bool | None = None
    compile_timeout: float | None = None
    run_timeout: float | None = None
    custom_extract_logic: str | None = None
    provided_data: list[dict[str, Any]] | dict[str, Any] | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class PromptMessage:
    """One chat message of a prompt given as a conversation."""

    role: str
    content: str


@attrs.frozen(kw_only=True)
class Prompt:
    """A dataset row: ``prompt`` is a string or a chat (a list of messages)."""

    id: Id
    prompt: str | list[PromptMessage]
    labels: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class GetPromptsRequest:
    """``POST /get_prompts`` (and ``/list_ids``): a page of a dataset's rows."""

    dataset: str
    config: TestConfig = attrs.field(factory=TestConfig)
    offset: int = 0
    limit: int = 1000000


@attrs.frozen(kw_only=True)
class GetPromptByIdRequest:
    """``POST /get_prompt_by_id``: one row; ``id`` is an int or a string, as the dataset has it."""

    dataset: str
    id: Id
    config: TestConfig = attrs.field(factory=TestConfig)


@attrs.frozen(kw_only=True)
class SubmitRequest:
    """``completion`` is the model's raw output; the server extracts the code from it."""

    dataset: str
    id: Id
    completion: str
    config: TestConfig = attrs.field(factory=TestConfig)


@attrs.frozen(kw_only=True)
class EvalTestCase:
    """One test of an evaluation: whether it passed, and the run that decided it."""

    passed: bool
    exec_info: RunCodeResponse
    test_info: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class EvalResult:
    """``/submit``'s answer: whether the completion was accepted, the code extracted from it, and each test."""

    id: Id
    accepted: bool
    extracted_code: str
    full_code: str | None = None
    test_code: str | None = None
    tests: list[EvalTestCase] = attrs.field(factory=list)
    extracted_type: Literal["fenced", "incomplete_fenced", "heuristic", "empty"] | None = None
    extra: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class GetMetricsRequest:
    """``POST /get_metrics``: aggregate a dataset's metrics over evaluated results."""

    dataset: str
    config: TestConfig = attrs.field(factory=TestConfig)
    results: list[EvalResult] = attrs.field(factory=list)


@attrs.frozen(kw_only=True)
class GetMetricsFunctionRequest:
    """``POST /get_metrics_function``: ask for the source of a dataset's metrics function."""

    dataset: str
    config: TestConfig = attrs.field(factory=TestConfig)


@attrs.frozen(kw_only=True)
class GetMetricsFunctionResult:
    """``/get_metrics_function``'s answer; ``function`` is None when the dataset has none."""

    function: str | None = None


@attrs.frozen(kw_only=True)
class SummaryMapping:
    """Labels for :func:`summary_run_code_result`; an unset failure label falls back to ``Failed``."""

    Success: str = "Success"
    Failed: str = "Failed"
    CompileFailed: str | None = None
    CompileTimeout: str | None = None
    RunFailed: str | None = None
    RunTimeout: str | None = None


# -- wire rules ------------------------------------------------------------------------------------------------
def _structure_id(value: Any, _: Any) -> int | str:
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return value
    raise ValueError(f"an id must be an int or a string, not {type(value).__name__}")


def _structure_prompt(value: Any, _: Any) -> str | list[PromptMessage]:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [converter.structure(m, PromptMessage) for m in value]
    raise ValueError(f"a prompt is a string or a list of messages, not {type(value).__name__}")


def _structure_provided(value: Any, _: Any) -> list[dict[str, Any]] | dict[str, Any] | None:
    if value is None or isinstance(value, (list, dict)):
        return value
    raise ValueError("provided_data is a list or an object")


def configure(conv: cattrs.Converter) -> None:
    """Register the SandboxFusion wire rules on ``conv``."""
    conv.register_structure_hook(int | str, _structure_id)
    conv.register_structure_hook(str | list[PromptMessage], _structure_prompt)
    conv.register_structure_hook(list[dict[str, Any]] | dict[str, Any] | None, _structure_provided)


configure(converter)
