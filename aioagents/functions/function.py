"""LmFunction: a text function defined by an instruction and examples, called like a coroutine.

>>> sentiment = LmFunction.create(
...     "Classify the sentiment as positive, negative or neutral.",
...     [Example("I love it", "positive"), Example("Worst day ever", "negative")],
... )
>>> await sentiment("It arrived on time.")
'neutral'
>>> async for delta in sentiment.stream("What a game!"):
...     print(delta, end="")
>>> async for item in sentiment.map(reviews, concurrency=32):
...     print(item.index, item.value if item.ok else item.error)

The request body is slambda's, field for field (see :mod:`aioagents.functions.models`). Differences from slambda,
all deliberate: a keyword function refuses positional arguments (slambda dropped them silently); a function that
does not allow a missing input refuses a call without one (slambda stored ``allow_none`` and never checked it); the
HTTP client is created on the first call, not when the function is defined; misuse raises
:class:`~aioagents.functions.LmFunctionError` (a ``ValueError``); a reply without text content raises
:class:`~aioagents.functions.LmOutputCastingError` instead of returning ``None``.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import attrs

from aioagents._batch import BatchResult, ProgressCallback, as_completed
from aioagents._streaming import EventStream
from aioagents.functions.chat import ChatClient, ChatCompletion, ChatCompletionChunk
from aioagents.functions.models import (
    Definition,
    Example,
    ExampleStyle,
    FunctionInput,
    FunctionInputType,
    FunctionOutputConfig,
    GptApiOptions,
    LmFunctionError,
    Message,
    extract_required_keywords,
)

__all__ = ["LmFunction"]

_OVERRIDE = ("__override",)
_EXTRA_MESSAGES = ("__extra_messages", "extra_messages")
_RETURN_RESPONSE = ("__return_resp_obj", "return_resp_obj")
_RETURN_JSON = ("return_json",)


@attrs.frozen(kw_only=True)
class _Call:
    """One call's parts: the function input, and the reserved control keywords."""

    input: FunctionInput | None
    override: Mapping[str, Any] | None
    extra_messages: Sequence[Message]
    return_response: bool
    return_json: bool | None


class LmFunction:
    """A callable text function over Chat Completions. Build one with :meth:`create`.

    Reserved keyword arguments (never sent as function input): ``__override`` (a dict of
    :class:`~aioagents.functions.GptApiOptions` fields for this call), ``__extra_messages`` or ``extra_messages``
    (:class:`~aioagents.functions.Message` objects sent after the examples, before the input),
    ``__return_resp_obj`` or ``return_resp_obj`` (return the whole
    :class:`~aioagents.functions.chat.ChatCompletion`), and ``return_json`` (``False`` returns the raw text of a
    JSON function, ``True`` parses the text of any function).
    """

    RESERVED_KEYWORDS: ClassVar[list[str]] = [
        "return_json",
        "extra_messages",
        "__override",
        "return_resp_obj",
        "__extra_messages",
        "__return_resp_obj",
    ]

    def __init__(
        self,
        definition: Definition,
        client: ChatClient | None = None,
        *,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        """Wrap a :class:`~aioagents.functions.Definition`. With no ``client``, one is made from
        ``client_options`` (:class:`~aioagents.functions.chat.ChatClient` arguments) on the first call and closed by
        :meth:`aclose`."""
        self.definition: Definition = definition
        self._client = client
        self._owns_client = client is None
        self._client_options = dict(client_options or {})

    def __repr__(self) -> str:
        kind = self.definition.input_config.input_type.value
        if self.definition.input_config.strict_no_args:
            kind = "nullary"
        return f"<LmFunction {self.definition.name or self.definition.instruction[:40]!r} ({kind})>"

    @property
    def client(self) -> ChatClient:
        """The chat client (created now if the function has none yet)."""
        if self._client is None:
            self._client = ChatClient(**self._client_options)
        return self._client

    # -- definition -----------------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        instruction: str,
        examples: Sequence[Example],
        name: str | None = None,
        strict_no_args: bool | None = None,
        default_args: FunctionInput | None = None,
        message_template: str | None = None,
        required_args: Sequence[str] | None = None,
        gpt_opts: GptApiOptions | None = None,
        *,
        client: ChatClient | None = None,
        strip_code_fence: bool = False,
        example_style: ExampleStyle = "system_named",
        api_key: str | None = None,
        base_url: str | None = None,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        max_attempts: int | None = None,
    ) -> LmFunction:
        """Create a function from an instruction and input/output examples (slambda's arguments first).

        The input type (unary, keyword, nullary) and the output type (text or JSON) are inferred from the examples;
        ``default_args`` lets the function be called without input; ``message_template`` renders keyword input
        (``required_args`` default to its placeholders); ``strict_no_args=True`` with input-less examples makes a
        nullary function. ``strip_code_fence`` removes a ```json fence before parsing JSON output;
        ``example_style="user_assistant"`` sends examples as user/assistant turns. The remaining keyword-only
        arguments configure the function's own client when ``client`` is not given.
        """
        input_config, output_config = Definition.detect_input_output_type(
            examples, default_args=default_args, strict_no_args=bool(strict_no_args)
        )
        if strict_no_args is True and not input_config.strict_no_args:
            warnings.warn("strict_no_args flag is ignored", UserWarning, stacklevel=2)
        if strip_code_fence:
            output_config = FunctionOutputConfig(cast_to_json=output_config.cast_to_json, strip_code_fence=True)
        required = list(required_args) if required_args is not None else None
        if message_template is not None and required is None:
            required = extract_required_keywords(message_template)
        stack = Definition.create_message_stack(
            instruction,
            examples,
            input_config,
            output_config,
            default_args,
            required,
            message_template,
            example_style,
        )
        definition = Definition(
            instruction=instruction,
            examples=list(examples),
            message_stack=stack,
            input_config=input_config,
            output_config=output_config,
            default_args=default_args,
            message_template=message_template,
            required_args=required,
            gpt_opts=gpt_opts or GptApiOptions(),
            name=name,
            example_style=example_style,
        )
        options = {
            "api_key": api_key,
            "base_url": base_url,
            "requests_per_minute": requests_per_minute,
            "tokens_per_minute": tokens_per_minute,
            "max_attempts": max_attempts,
        }
        return cls(definition, client, client_options={k: v for k, v in options.items() if v is not None})

    # -- requests -------------------------------------------------------------------------------------------------
    def _split(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> _Call:
        control = {k: v for k, v in kwargs.items() if k in self.RESERVED_KEYWORDS}
        fn_kwargs = {k: v for k, v in kwargs.items() if k not in self.RESERVED_KEYWORDS}
        config = self.definition.input_config
        fn_input: FunctionInput | None
        if config.strict_no_args:
            if args:
                raise LmFunctionError("received positional arguments for nullary function.")
            if fn_kwargs:
                raise LmFunctionError("received keyword arguments for nullary function.")
            fn_input = None
        elif config.input_type == FunctionInputType.KEYWORD:
            if args:
                raise LmFunctionError(
                    f"this function takes keyword arguments only, got {len(args)} positional argument(s)"
                )
            fn_input = fn_kwargs or None
        else:
            if fn_kwargs:
                raise LmFunctionError("received keyword arguments for unary function.")
            if len(args) > 1:
                raise LmFunctionError("received more than 1 positional arguments.")
            fn_input = args[0] if args else None
        if fn_input is None and not config.allow_none:
            raise LmFunctionError("this function needs an input: it has no default_args of its type")
        extra: list[Message] = []
        for key in _EXTRA_MESSAGES:
            for message in control.get(key) or ():
                if not isinstance(message, Message):
                    raise LmFunctionError("every extra message must be an aioagents.functions.Message")
                extra.append(message)
        override = next((control[k] for k in _OVERRIDE if k in control), None)
        if override is not None and not isinstance(override, Mapping):
            raise LmFunctionError("__override must be a dict of API options")
        return _Call(
            input=fn_input,
            override=override,
            extra_messages=extra,
            return_response=any(bool(control.get(k)) for k in _RETURN_RESPONSE),
            return_json=next((control[k] for k in _RETURN_JSON if k in control), None),
        )

    def _request(self, call: _Call) -> tuple[dict[str, Any], GptApiOptions]:
        d = self.definition
        user = Definition.render_input(d.input_config, call.input, d.default_args, d.required_args, d.message_template)
        messages = [*d.message_stack, *call.extra_messages, Message.user(user)]
        options = d.gpt_opts.merged(call.override)
        body = {"messages": [m.to_wire() for m in messages], **d.gpt_opts.to_wire(call.override)}
        return body, options

    def build_request(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The request body a call with these arguments sends (nothing is sent)."""
        return self._request(self._split(args, kwargs))[0]

    def _cast(self, text: str | None, return_json: bool | None) -> Any:
        config = self.definition.output_config
        if return_json is not None and return_json != config.cast_to_json:
            config = FunctionOutputConfig(cast_to_json=return_json, strip_code_fence=config.strip_code_fence)
        return Definition.cast_lm_output(config, text)

    # -- calling --------------------------------------------------------------------------------------------------
    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function: its value (text, or JSON for a JSON function; a list for ``n`` > 1).

        With ``__return_resp_obj`` the whole :class:`~aioagents.functions.chat.ChatCompletion` comes back; with
        ``stream`` set in the options, an unopened stream of chunks (as slambda returned the SDK's stream).
        """
        return await self.call(*args, **kwargs)

    async def call(self, *args: Any, **kwargs: Any) -> Any:
        """The same as calling the function (``await fn.call(x)`` is ``await fn(x)``)."""
        call = self._split(args, kwargs)
        body, options = self._request(call)
        if options.stream:
            return self.client.stream(**body)
        completion = await self.client.create(**body)
        return self._value(completion, call, options)

    def _value(self, completion: ChatCompletion, call: _Call, options: GptApiOptions) -> Any:
        if call.return_response:
            return completion
        if options.n is None or options.n == 1:
            if not completion.choices:
                return self._cast(None, call.return_json)
            return self._cast(completion.choices[0].message.content, call.return_json)
        return [self._cast(choice.message.content, call.return_json) for choice in completion.choices]

    def stream_chunks(self, *args: Any, **kwargs: Any) -> EventStream[ChatCompletionChunk]:
        """The call's raw stream of chunks (``async with fn.stream_chunks(x) as chunks: ...``)."""
        call = self._split(args, kwargs)
        body, _ = self._request(call)
        body.pop("stream", None)
        return self.client.stream(**body)

    async def stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[str]:
        """Call the function and yield the text of the (first) answer as it arrives.

        The stream ends normally on ``[DONE]`` or at the end of the body after a finish reason; a cut stream
        raises :class:`~aioagents.IncompleteStreamError`, an error event :class:`~aioagents.functions.chat.
        ChatStreamError`. Leaving the loop early closes the connection.
        """
        async with self.stream_chunks(*args, **kwargs) as chunks:
            async for chunk in chunks:
                for choice in chunk.choices or ():
                    if choice.index == 0 and choice.delta.content:
                        yield choice.delta.content

    def map(
        self,
        inputs: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int = 16,
        progress: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> AsyncIterator[BatchResult[Any, Any]]:
        """Call the function on every input, at most ``concurrency`` at a time, and yield a
        :class:`~aioagents._batch.BatchResult` (``index``, ``input``, ``value`` or ``error``) as each finishes.

        An input is the call's argument: a str for a unary function, a dict of keyword arguments for a keyword
        function, ``None`` for no argument. Rate limits are the client's (``requests_per_minute``,
        ``tokens_per_minute``), so a long map keeps to them::

            fn = LmFunction.create(..., requests_per_minute=6_000)
            async for item in fn.map(texts, concurrency=64):
                ...
        """
        return as_completed(self._call_one, inputs, concurrency=concurrency, progress=progress, on_progress=on_progress)

    async def _call_one(self, item: Any) -> Any:
        if item is None:
            return await self()
        if isinstance(item, dict) and self.definition.input_config.input_type == FunctionInputType.KEYWORD:
            return await self(**item)
        return await self(item)

    # -- lifecycle --------------------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the function's own client (a client passed in is left open)."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def __aenter__(self) -> LmFunction:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
