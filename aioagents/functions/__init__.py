"""LM functions over OpenAI-compatible Chat Completions: slambda's API, async first, streaming and rate-limited.

>>> from aioagents.functions import Example, LmFunction
>>> add = LmFunction.create("Add the numbers.", [Example({"a": 1, "b": 2}, "3")], requests_per_minute=500)
>>> await add(a=12, b=30)
'42'

The chat client underneath (:class:`ChatClient`) is usable on its own: ``create``, ``stream`` (typed chunks,
:class:`StreamAccumulator`), retries and ``x-ratelimit-*`` handling on aioagents' Transport.
"""

from aioagents.functions.chat import (
    ChatClient,
    ChatCompletion,
    ChatCompletionChunk,
    ChatStreamError,
    RateLimitInfo,
    StreamAccumulator,
    Usage,
)
from aioagents.functions.function import LmFunction
from aioagents.functions.models import (
    Definition,
    Example,
    FunctionInputConfig,
    FunctionInputType,
    FunctionOutputConfig,
    GptApiOptions,
    LmFunctionError,
    LmOutputCastingError,
    Message,
    Role,
)

__all__ = [
    "ChatClient",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatStreamError",
    "Definition",
    "Example",
    "FunctionInputConfig",
    "FunctionInputType",
    "FunctionOutputConfig",
    "GptApiOptions",
    "LmFunction",
    "LmFunctionError",
    "LmOutputCastingError",
    "Message",
    "RateLimitInfo",
    "Role",
    "StreamAccumulator",
    "Usage",
]
