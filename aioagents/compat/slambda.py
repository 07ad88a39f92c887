"""A drop-in mirror of slambda's public API, on aioagents' chat client.

Change ``from slambda import …`` to ``from aioagents.compat.slambda import …`` and the code runs unchanged:
``LmFunction.create(...)`` builds a function that is called synchronously, sends the same request bodies, and
returns the same values. The reserved keywords of both the documentation (``return_json``, ``extra_messages``,
``__override``, ``return_resp_obj``) and the published package (``__extra_messages``, ``__return_resp_obj``) work.

What differs, on purpose:

- no openai SDK: requests go through aioagents' Transport (pooled connections, one retry loop with ``retry-after-ms``,
  ``insufficient_quota`` not retried); ``openai_client=`` is still accepted and only its ``api_key`` and
  ``base_url`` are used;
- the HTTP client is made on the first call, so defining a function never needs ``OPENAI_API_KEY``;
- a keyword function refuses positional arguments, a function without a usable default refuses a call without input,
  and ``__override`` refuses unknown option names (slambda ignored all three silently);
- errors are typed: misuse raises :class:`LmFunctionError` (a ``ValueError``), HTTP failures the aioagents error
  tree instead of the openai SDK's;
- ``__return_resp_obj`` returns aioagents' ``ChatCompletion`` (same ``choices[i].message.content`` shape), and a
  streaming call returns an iterator of ``ChatCompletionChunk`` (same ``choices[0].delta.content`` shape).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, ClassVar

from aioagents._streaming import EventStream
from aioagents.functions import function as _function
from aioagents.functions.models import (
    Definition,
    Example,
    FunctionInput,
    FunctionInputConfig,
    FunctionInputType,
    FunctionOutput,
    FunctionOutputConfig,
    GptApiOptions,
    LmFunctionError,
    LmOutputCastingError,
    Message,
    Role,
)
from aioagents.sync import _bridge

__all__ = [
    "Definition",
    "Example",
    "FunctionInput",
    "FunctionInputConfig",
    "FunctionInputType",
    "FunctionOutput",
    "FunctionOutputConfig",
    "GptApiOptions",
    "LmFunction",
    "LmFunctionError",
    "LmOutputCastingError",
    "Message",
    "Role",
]


def _client_options(openai_client: Any) -> dict[str, Any]:
    """The endpoint and key of an openai SDK client, read duck-typed (the SDK is never imported here)."""
    if openai_client is None:
        return {}
    options: dict[str, Any] = {}
    api_key = getattr(openai_client, "api_key", None)
    if isinstance(api_key, str) and api_key:
        options["api_key"] = api_key
    base_url = getattr(openai_client, "base_url", None)
    if base_url is not None:
        options["base_url"] = str(base_url)
    return options


class LmFunction:
    """A text function that is called like a plain (blocking) function.

    >>> f = LmFunction.create("Classify the sentiment.", [Example("I love it", "positive")])
    >>> f("What a day!")
    'positive'
    """

    RESERVED_KEYWORDS: ClassVar[list[str]] = list(_function.LmFunction.RESERVED_KEYWORDS)

    def __init__(self, definition: Definition, openai_client: Any = None) -> None:
        self._fn = _function.LmFunction(definition, client_options=_client_options(openai_client))
        self._loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()

    @property
    def definition(self) -> Definition:
        """The function's definition (instruction, examples, prebuilt messages, options)."""
        return self._fn.definition

    @staticmethod
    def create(
        instruction: str,
        examples: list[Example],
        name: str | None = None,
        strict_no_args: bool | None = None,
        default_args: FunctionInput | None = None,
        message_template: str | None = None,
        required_args: list[str] | None = None,
        gpt_opts: GptApiOptions | None = None,
        openai_client: Any = None,
    ) -> LmFunction:
        """Create a function from an instruction and examples (slambda's signature and inference rules)."""
        native = _function.LmFunction.create(
            instruction,
            examples,
            name=name,
            strict_no_args=strict_no_args,
            default_args=default_args,
            message_template=message_template,
            required_args=required_args,
            gpt_opts=gpt_opts,
        )
        return LmFunction(native.definition, openai_client)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function and wait for its value."""
        result = _bridge.run(self._call(args, kwargs))
        if isinstance(result, EventStream):
            return _bridge.SyncStream(result)
        return result

    def get_call_args(self, args: tuple[Any, ...], kwargs: dict[str, Any], ctrl_kws: dict[str, Any]) -> dict[str, Any]:
        """The request body of a call (slambda's name for it)."""
        return self._fn.build_request(*args, **kwargs, **ctrl_kws)

    async def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        if loop not in self._loops:
            # The HTTP session lives on this thread's loop: close it when the bridge closes the loop (at exit).
            self._loops.add(loop)
            _bridge.on_loop_close(loop, self._fn.aclose)
        return await self._fn(*args, **kwargs)

    def close(self) -> None:
        """Close the function's connections now (they are closed at exit otherwise)."""
        _bridge.run(self._fn.aclose())
