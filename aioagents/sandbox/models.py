"""SandboxFusion models, field for field as the server reads and writes them (contracts/sandbox-fusion.md).

Field names are the wire names (``memory_limit_MB`` included). Decoding is tolerant where the server is: every
``CommandRunResult`` field but ``status`` may be null, ``Prompt.prompt`` is a string or a list of messages, ids are
ints or strings, and unknown fields (``cpu_time`` from other servers) are ignored outside strict mode.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar, Union

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

# The SDK's ``Language`` also lists these; the reference server answers them with 422, newer ones may run them. The
# request is the server's to refuse, so they pass the client-side check.
_SDK_ONLY_LANGUAGES = frozenset({"python2", "gtest", "react"})

Id = Union[int, str]  # noqa: UP007 (a runtime alias on 3.10)


def _check_language(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and value not in LANGUAGES and value not in _SDK_ONLY_LANGUAGES:
        raise InvalidRequestError(
            f"unknown language {value!r}; the server accepts: {', '.join(sorted(LANGUAGES, key=str.lower))}"
        )


def _str_list(values: Iterable[str]) -> list[str]:
    if isinstance(values, str):
        raise InvalidRequestError("expected a list of strings, not one string")
    return list(values)


# -- input coercion: the forms the SDK's pydantic (v1) models accept --------------------------------------------
M = TypeVar("M")
E = TypeVar("E", bound=enum.Enum)


def _to_float(value: Any) -> float:
    if type(value) is float:  # the common case first: this runs on every request built
        return value
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    raise InvalidRequestError(f"expected a number, got {value!r}")


def _to_opt_float(value: Any) -> float | None:
    return None if value is None else _to_float(value)


def _to_int(value: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise InvalidRequestError(f"expected an integer, got {value!r}")


_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def _to_opt_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise InvalidRequestError(f"expected a boolean, got {value!r}")


def _enum_value(cls: type[E], value: Any) -> E:
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        raise InvalidRequestError(
            f"{value!r} is not a {cls.__name__}; one of: {', '.join(m.value for m in cls)}"
        ) from None


def _fields_of(value: Any) -> Mapping[str, Any] | None:
    """The fields of a mapping, or of a pydantic model (an SDK object handed to us), else None."""
    if isinstance(value, Mapping):
        return value
    dump = getattr(value, "model_dump", None)  # pydantic v2
    if dump is None and hasattr(type(value), "__fields__"):  # pydantic v1 (the SDK's models are pydantic.v1)
        dump = getattr(value, "dict", None)
    fields = dump() if callable(dump) else None
    return fields if isinstance(fields, Mapping) else None


def _model(cls: type[M], value: Any) -> M:
    """``value`` as a ``cls``: itself, or its fields as a dict (or as an SDK model), converted."""
    if isinstance(value, cls):
        return value
    fields = _fields_of(value)
    if fields is None:
        raise InvalidRequestError(f"expected a {cls.__name__} or a dict of its fields, got {type(value).__name__}")
    try:
        # The shared converter: nested dicts, unknown keys ignored (refused under strict decoding), and each field's
        # own converter applied.
        return converter.structure(fields, cls)
    except cattrs.BaseValidationError as exc:
        raise InvalidRequestError(f"{cls.__name__}: {'; '.join(cattrs.transform_error(exc))}") from None


def _model_list(cls: type[M], values: Any) -> list[M]:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise InvalidRequestError(f"expected a list of {cls.__name__}, got {type(values).__name__}")
    return [_model(cls, v) for v in values]


# Named converters, one per field type (attrs' mypy plugin reads a converter's type from a named function).
def _to_run_status(value: Any) -> RunStatus:
    return _enum_value(RunStatus, value)


def _to_command_status(value: Any) -> CommandRunStatus:
    return _enum_value(CommandRunStatus, value)


def _to_opt_command_result(value: Any) -> CommandRunResult | None:
    return None if value is None else _model(CommandRunResult, value)


def _to_cells(values: Any) -> list[CellRunResult]:
    return _model_list(CellRunResult, values)


def _to_config(value: Any) -> TestConfig:
    return _model(TestConfig, value)


def _to_run_code_response(value: Any) -> RunCodeResponse:
    return _model(RunCodeResponse, value)


def _to_test_cases(values: Any) -> list[EvalTestCase]:
    return _model_list(EvalTestCase, values)


def _to_eval_results(values: Any) -> list[EvalResult]:
    return _model_list(EvalResult, values)


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

    status: CommandRunStatus = attrs.field(converter=_to_command_status)
    execution_time: float | None = attrs.field(default=None, converter=_to_opt_float)
    return_code: int | None = None
    stdout: str | None = None
    stderr: str | None = None
    cpu_time: float | None = attrs.field(default=None, converter=_to_opt_float)


@attrs.frozen(kw_only=True)
class RunCodeRequest:
    """``POST /run_code``. ``files`` maps a path (relative to the run directory) to base64 content; bytes values are
    encoded for you. ``memory_limit_MB`` ≤ 0 means no limit."""

    code: str
    language: str = attrs.field(validator=_check_language)
    compile_timeout: float = attrs.field(default=10.0, converter=_to_float)
    run_timeout: float = attrs.field(default=10.0, converter=_to_float)
    memory_limit_MB: int = attrs.field(default=-1, converter=_to_int)
    stdin: str | None = None
    files: dict[str, str | None] = attrs.field(factory=dict, converter=_encode_files)
    fetch_files: list[str] = attrs.field(factory=list, converter=_str_list)


@attrs.frozen(kw_only=True)
class RunCodeResponse:
    """``/run_code``'s answer. ``files`` holds the fetched files, base64; a missing file is simply absent."""

    status: RunStatus = attrs.field(converter=_to_run_status)
    message: str = ""
    compile_result: CommandRunResult | None = attrs.field(default=None, converter=_to_opt_command_result)
    run_result: CommandRunResult | None = attrs.field(default=None, converter=_to_opt_command_result)
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


_RESPONSE_KEYS = frozenset(("status", "message", "compile_result", "run_result", "executor_pod_name", "files"))
_STEP_KEYS = frozenset(("status", "execution_time", "return_code", "stdout", "stderr"))
_STEP_KEYS_CPU = _STEP_KEYS | {"cpu_time"}  # the embedded server also says how much CPU the run took
# A wire value -> its member, without the Enum machinery (an Enum call costs ~0.5 µs, a dict lookup ~0.04 µs).
_RUN_STATUSES: dict[str, RunStatus] = {m.value: m for m in RunStatus}
_COMMAND_STATUSES: dict[str, CommandRunStatus] = {m.value: m for m in CommandRunStatus}

# The fast build fills an attrs instance's slots directly: the attrs __init__ runs every field's converter (each a
# Python call) and sets each field through object.__setattr__, ~2 µs for a CommandRunResult; the slot descriptors
# take ~0.5 µs. Only values already of their field's exact type get here, so the converters would change nothing.
_new = object.__new__
(_step_status, _step_elapsed, _step_code, _step_out, _step_err, _step_cpu) = (
    CommandRunResult.__dict__[name].__set__
    for name in ("status", "execution_time", "return_code", "stdout", "stderr", "cpu_time")
)
(_resp_status, _resp_message, _resp_compile, _resp_run, _resp_pod, _resp_files) = (
    RunCodeResponse.__dict__[name].__set__
    for name in ("status", "message", "compile_result", "run_result", "executor_pod_name", "files")
)


def _fast_step(step: Any) -> CommandRunResult | bool | None:
    """A command result of the common shape, built directly; False for anything else."""
    if step is None:
        return None
    if type(step) is not dict:
        return False
    keys = step.keys()
    if keys == _STEP_KEYS:
        cpu = None
    elif keys == _STEP_KEYS_CPU:
        cpu = step["cpu_time"]
        if cpu is not None and type(cpu) is not float:
            return False
    else:
        return False
    status, code, elapsed, out, err = (
        step["status"], step["return_code"], step["execution_time"], step["stdout"], step["stderr"]
    )  # fmt: skip
    if (
        type(status) is not str
        or (code is not None and type(code) is not int)
        or (elapsed is not None and type(elapsed) is not float)
        or (out is not None and type(out) is not str)
        or (err is not None and type(err) is not str)
    ):
        return False
    member = _COMMAND_STATUSES.get(status)
    if member is None:
        return False
    result = _new(CommandRunResult)
    _step_status(result, member)
    _step_elapsed(result, elapsed)
    _step_code(result, code)
    _step_out(result, out)
    _step_err(result, err)
    _step_cpu(result, cpu)
    return result


def fast_run_code_response(body: Any) -> RunCodeResponse | None:
    """``/run_code``'s answer of the exact common shape (every key, nothing else, every value of its type) built
    without the converter: the answer of every run goes through here, and the general path costs ~5 µs of a ~100 µs
    call. None for anything else — an extra key, an int where a float belongs, an unknown status — which then takes
    the converter's path with all its rules."""
    if type(body) is not dict or body.keys() != _RESPONSE_KEYS:
        return None
    status, message, pod, files = body["status"], body["message"], body["executor_pod_name"], body["files"]
    if (
        type(status) is not str
        or type(message) is not str
        or (pod is not None and type(pod) is not str)
        or type(files) is not dict
        or (files and not all(type(k) is str and type(v) is str for k, v in files.items()))
    ):
        return None
    member = _RUN_STATUSES.get(status)
    compile_result = _fast_step(body["compile_result"])
    run_result = _fast_step(body["run_result"])
    if member is None or compile_result is False or run_result is False:
        return None
    result = _new(RunCodeResponse)
    _resp_status(result, member)
    _resp_message(result, message)
    _resp_compile(result, compile_result)
    _resp_run(result, run_result)
    _resp_pod(result, pod)
    _resp_files(result, files)
    return result


def run_code_body(request: RunCodeRequest) -> dict[str, Any]:
    """A :class:`RunCodeRequest` as its JSON object, as the converter writes it (the same keys, in the same order,
    with ``files`` and ``fetch_files`` copied) without the converter's generic walk: every ``run_code`` call sends
    one. Its fields were checked and converted when the request was built."""
    return {
        "code": request.code,
        "language": request.language,
        "compile_timeout": request.compile_timeout,
        "run_timeout": request.run_timeout,
        "memory_limit_MB": request.memory_limit_MB,
        "stdin": request.stdin,
        "files": dict(request.files),
        "fetch_files": list(request.fetch_files),
    }


@attrs.frozen(kw_only=True)
class RunJupyterRequest:
    """``POST /run_jupyter``: cells run in order in a fresh kernel."""

    cells: list[str] = attrs.field(converter=_str_list)
    cell_timeout: float = attrs.field(default=0.0, converter=_to_float)
    total_timeout: float = attrs.field(default=45.0, converter=_to_float)
    memory_limit_MB: int = attrs.field(default=-1, converter=_to_int)
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

    status: RunStatus = attrs.field(converter=_to_run_status)
    message: str = ""
    driver: CommandRunResult | None = attrs.field(default=None, converter=_to_opt_command_result)
    cells: list[CellRunResult] = attrs.field(factory=list, converter=_to_cells)
    executor_pod_name: str | None = None
    files: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class TestConfig:
    """Dataset options; ``{}`` is valid. ``provided_data`` supplies the rows (a list for prompts, a dict for one)."""

    __test__ = False  # not a pytest test class

    dataset_type: str | None = None
    language: str | None = attrs.field(default=None, validator=_check_language)
    locale: str | None = None
    is_fewshot: bool | None = attrs.field(default=None, converter=_to_opt_bool)
    compile_timeout: float | None = attrs.field(default=None, converter=_to_opt_float)
    run_timeout: float | None = attrs.field(default=None, converter=_to_opt_float)
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
    config: TestConfig = attrs.field(factory=TestConfig, converter=_to_config)
    offset: int = attrs.field(default=0, converter=_to_int)
    limit: int = attrs.field(default=1000000, converter=_to_int)


@attrs.frozen(kw_only=True)
class GetPromptByIdRequest:
    """``POST /get_prompt_by_id``: one row; ``id`` is an int or a string, as the dataset has it."""

    dataset: str
    id: Id
    config: TestConfig = attrs.field(factory=TestConfig, converter=_to_config)


@attrs.frozen(kw_only=True)
class SubmitRequest:
    """``completion`` is the model's raw output; the server extracts the code from it."""

    dataset: str
    id: Id
    completion: str
    config: TestConfig = attrs.field(factory=TestConfig, converter=_to_config)


@attrs.frozen(kw_only=True)
class EvalTestCase:
    """One test of an evaluation: whether it passed, and the run that decided it."""

    passed: bool
    exec_info: RunCodeResponse = attrs.field(converter=_to_run_code_response)
    test_info: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class EvalResult:
    """``/submit``'s answer: whether the completion was accepted, the code extracted from it, and each test."""

    id: Id
    accepted: bool
    extracted_code: str
    full_code: str | None = None
    test_code: str | None = None
    tests: list[EvalTestCase] = attrs.field(factory=list, converter=_to_test_cases)
    extracted_type: Literal["fenced", "incomplete_fenced", "heuristic", "empty"] | None = None
    extra: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class GetMetricsRequest:
    """``POST /get_metrics``: aggregate a dataset's metrics over evaluated results."""

    dataset: str
    config: TestConfig = attrs.field(factory=TestConfig, converter=_to_config)
    results: list[EvalResult] = attrs.field(factory=list, converter=_to_eval_results)


@attrs.frozen(kw_only=True)
class GetMetricsFunctionRequest:
    """``POST /get_metrics_function``: ask for the source of a dataset's metrics function."""

    dataset: str
    config: TestConfig = attrs.field(factory=TestConfig, converter=_to_config)


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
