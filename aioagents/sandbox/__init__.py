"""SandboxFusion: run code in many languages, run notebooks, evaluate completions on datasets."""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from aioagents.sandbox.client import DEFAULT_ENDPOINT, SandboxClient, SandboxError, summary_run_code_result
    from aioagents.sandbox.evaluation import EvaluationReport, Evaluator, SampleResult, estimate_pass_at_k, evaluate
    from aioagents.sandbox.models import (
        LANGUAGES,
        CellRunResult,
        CommandRunResult,
        CommandRunStatus,
        EvalResult,
        EvalTestCase,
        GetMetricsFunctionRequest,
        GetMetricsFunctionResult,
        GetMetricsRequest,
        GetPromptByIdRequest,
        GetPromptsRequest,
        Language,
        Prompt,
        PromptMessage,
        RunCodeRequest,
        RunCodeResponse,
        RunJupyterRequest,
        RunJupyterResponse,
        RunStatus,
        SubmitRequest,
        SummaryMapping,
        TestConfig,
    )

__all__ = [
    "DEFAULT_ENDPOINT",
    "LANGUAGES",
    "CellRunResult",
    "CommandRunResult",
    "CommandRunStatus",
    "EvalResult",
    "EvalTestCase",
    "EvaluationReport",
    "Evaluator",
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
    "SampleResult",
    "SandboxClient",
    "SandboxError",
    "SubmitRequest",
    "SummaryMapping",
    "TestConfig",
    "estimate_pass_at_k",
    "evaluate",
    "summary_run_code_result",
]

# Public names are imported on first access (PEP 562): ``aioagents.sandbox.evaluation`` (the in-process eval) loads
# this package without the HTTP client (aiohttp) or the wire models it does not use.
_CLIENT = ("DEFAULT_ENDPOINT", "SandboxClient", "SandboxError", "summary_run_code_result")
_EVALUATION = ("EvaluationReport", "Evaluator", "SampleResult", "estimate_pass_at_k", "evaluate")


def __getattr__(name: str) -> object:
    """Import a public name's module on first access and cache the name here (PEP 562)."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = "client" if name in _CLIENT else "evaluation" if name in _EVALUATION else "models"
    value = getattr(_importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's attributes, the not yet imported public names included."""
    return sorted(set(globals()) | set(__all__))
