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
- misuse raises :class:`LmFunctionError` (a ``ValueError``); HTTP failures raise the openai SDK's exceptions, as
  slambda's do (``openai.RateLimitError``, ``openai.BadRequestError`` …, ``openai.APIConnectionError``,
  ``openai.APITimeoutError``), built from aioagents' error, which stays their ``__cause__``. Without the openai
  package installed (slambda itself requires it) they stay the aioagents error tree;
- ``__return_resp_obj`` returns aioagents' ``ChatCompletion`` (same ``choices[i].message.content`` shape), and a
  streaming call returns an iterator of ``ChatCompletionChunk`` (same ``choices[0].delta.content`` shape).

The models (:class:`Definition`, :class:`Example`, :class:`Message`, :class:`GptApiOptions`,
:class:`FunctionInputConfig`, :class:`FunctionOutputConfig`) are aioagents' attrs models with slambda's pydantic
methods on top: ``model_dump()``, ``model_dump_json()``, ``model_validate()``, ``model_validate_json()``,
``model_copy()``, with slambda's JSON shape, so a definition saved by slambda loads here and one saved here loads in
slambda::

    saved = fn.definition.model_dump_json()
    fn = LmFunction(Definition.model_validate_json(saved))
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Collection, Mapping
from typing import Any, ClassVar, Literal, TypeVar

import attrs

from aioagents import (
    AioAgentsError,
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    EventStream,
    ResponseValidationError,
    sync,
)
from aioagents.compat._stream import TranslatedStream
from aioagents.functions import function as _function
from aioagents.functions import models as _models
from aioagents.functions.models import (
    FunctionInput,
    FunctionInputType,
    FunctionOutput,
    LmFunctionError,
    LmOutputCastingError,
    Role,
)

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


_M = TypeVar("_M", bound="_PydanticMethods")
_Mode = Literal["python", "json"]


class _PydanticMethods:
    """The pydantic (v2) methods code written for slambda's models calls, with slambda's field names and JSON shape.

    ``_fields(mode)`` gives a model's fields as pydantic's ``model_dump`` would; ``_build(data)`` reads them back.
    """

    __slots__ = ()

    def _fields(self, mode: _Mode) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _build(cls: type[_M], data: Mapping[str, Any]) -> _M:
        raise NotImplementedError

    def model_dump(
        self,
        *,
        mode: _Mode = "python",
        include: Collection[str] | None = None,
        exclude: Collection[str] | None = None,
        exclude_none: bool = False,
    ) -> dict[str, Any]:
        """The model as a dict (``mode="json"``: JSON-ready values, enums as their values)."""
        data = _strip_none(self._fields(mode)) if exclude_none else self._fields(mode)
        if include is not None:
            data = {k: v for k, v in data.items() if k in include}
        if exclude is not None:
            data = {k: v for k, v in data.items() if k not in exclude}
        return data

    def model_dump_json(
        self,
        *,
        indent: int | None = None,
        include: Collection[str] | None = None,
        exclude: Collection[str] | None = None,
        exclude_none: bool = False,
    ) -> str:
        """The model as JSON text, byte for byte as slambda's pydantic writes it (compact unless ``indent``)."""
        data = self.model_dump(mode="json", include=include, exclude=exclude, exclude_none=exclude_none)
        if indent is None:
            return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return json.dumps(data, ensure_ascii=False, indent=indent)

    @classmethod
    def model_validate(cls: type[_M], obj: Any) -> _M:
        """A model from a dict of its fields (unknown keys ignored, as pydantic does), or from a model."""
        if isinstance(obj, cls):
            return obj
        if isinstance(obj, _PydanticMethods):
            obj = obj.model_dump()
        elif attrs.has(type(obj)):
            obj = {a.name: getattr(obj, a.name) for a in attrs.fields(type(obj))}
        if not isinstance(obj, Mapping):
            raise LmFunctionError(f"{cls.__name__}.model_validate takes a dict, not {type(obj).__name__}")
        try:
            return cls._build(obj)
        except (KeyError, TypeError) as exc:
            raise LmFunctionError(f"not a valid {cls.__name__}: {exc!r}") from exc

    @classmethod
    def model_validate_json(cls: type[_M], json_data: str | bytes | bytearray) -> _M:
        """A model from JSON text (what :meth:`model_dump_json` wrote, here or in slambda)."""
        try:
            data = json.loads(json_data)
        except ValueError as exc:
            raise LmFunctionError(f"{cls.__name__}.model_validate_json: not JSON: {exc}") from exc
        return cls.model_validate(data)

    def model_copy(self: _M, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> _M:
        """A copy with ``update`` applied (the models are immutable, so a copy shares nothing that can change)."""
        if not update:
            return self
        return type(self).model_validate({**self.model_dump(), **update})


def _strip_none(value: Any) -> Any:
    # pydantic's exclude_none drops None fields of nested models too.
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value


def _enum(value: Any, mode: _Mode) -> Any:
    return value.value if mode == "json" else value


class Message(_models.Message, _PydanticMethods):
    """A chat message (``role``, ``content``, optional ``name``), with slambda's pydantic methods."""

    __slots__ = ()

    def _fields(self, mode: _Mode) -> dict[str, Any]:
        return {"role": _enum(self.role, mode), "content": self.content, "name": self.name}

    @classmethod
    def _build(cls, data: Mapping[str, Any]) -> Message:
        return cls(role=data["role"], content=data["content"], name=data.get("name"))


class Example(_models.Example, _PydanticMethods):
    """One input/output pair (``Example("in", "out")``), with slambda's pydantic methods."""

    __slots__ = ()

    def _fields(self, mode: _Mode) -> dict[str, Any]:
        return {"input": self.input, "output": self.output}

    @classmethod
    def _build(cls, data: Mapping[str, Any]) -> Example:
        return cls(input=data.get("input"), output=data["output"])


class GptApiOptions(_models.GptApiOptions, _PydanticMethods):
    """Chat Completions options of a function, with slambda's pydantic methods."""

    __slots__ = ()

    def _fields(self, mode: _Mode) -> dict[str, Any]:
        data = {a.name: getattr(self, a.name) for a in attrs.fields(_models.GptApiOptions)}
        if mode == "json" and self.logit_bias is not None:
            data["logit_bias"] = {str(k): v for k, v in self.logit_bias.items()}
        return data

    @classmethod
    def _build(cls, data: Mapping[str, Any]) -> GptApiOptions:
        names = {a.name for a in attrs.fields(_models.GptApiOptions)}
        return cls(**{k: v for k, v in data.items() if k in names})


class FunctionInputConfig(_models.FunctionInputConfig, _PydanticMethods):
    """What a function accepts, with slambda's pydantic methods."""

    __slots__ = ()

    def _fields(self, mode: _Mode) -> dict[str, Any]:
        return {
            "input_type": _enum(self.input_type, mode),
            "allow_none": self.allow_none,
            "strict_no_args": self.strict_no_args,
        }

    @classmethod
    def _build(cls, data: Mapping[str, Any]) -> FunctionInputConfig:
        return cls(
            input_type=data["input_type"],
            allow_none=bool(data.get("allow_none", False)),
            strict_no_args=bool(data.get("strict_no_args", False)),
        )


class FunctionOutputConfig(_models.FunctionOutputConfig, _PydanticMethods):
    """What a function returns, with slambda's pydantic methods (``strip_code_fence``, ours, appears only when
    set, so slambda's JSON shape is kept)."""

    __slots__ = ()

    def _fields(self, mode: _Mode) -> dict[str, Any]:
        data: dict[str, Any] = {"cast_to_json": self.cast_to_json}
        if self.strip_code_fence:
            data["strip_code_fence"] = True
        return data

    @classmethod
    def _build(cls, data: Mapping[str, Any]) -> FunctionOutputConfig:
        return cls(
            cast_to_json=bool(data.get("cast_to_json", False)),
            strip_code_fence=bool(data.get("strip_code_fence", False)),
        )


class Definition(_models.Definition, _PydanticMethods):
    """Everything an LM function is, with slambda's pydantic methods: save it with ``model_dump_json()`` and load it
    with ``Definition.model_validate_json(text)`` (slambda's JSON, either way)."""

    __slots__ = ()

    def _fields(self, mode: _Mode) -> dict[str, Any]:
        def part(model: Any, cls: type[_PydanticMethods]) -> dict[str, Any]:
            return cls.model_validate(model)._fields(mode)

        data: dict[str, Any] = {
            "instruction": self.instruction,
            "examples": [part(e, Example) for e in self.examples],
            "message_stack": [part(m, Message) for m in self.message_stack],
            "input_config": part(self.input_config, FunctionInputConfig),
            "output_config": part(self.output_config, FunctionOutputConfig),
            "default_args": self.default_args,
            "message_template": self.message_template,
            "required_args": self.required_args,
            "gpt_opts": part(self.gpt_opts, GptApiOptions),
            "name": self.name,
        }
        if self.example_style != "system_named":  # ours; left out at its default to keep slambda's shape
            data["example_style"] = self.example_style
        return data

    @classmethod
    def _build(cls, data: Mapping[str, Any]) -> Definition:
        return cls(
            instruction=data["instruction"],
            examples=[Example.model_validate(e) for e in data["examples"]],
            message_stack=[Message.model_validate(m) for m in data["message_stack"]],
            input_config=FunctionInputConfig.model_validate(data["input_config"]),
            output_config=FunctionOutputConfig.model_validate(data["output_config"]),
            default_args=data.get("default_args"),
            message_template=data.get("message_template"),
            required_args=data.get("required_args"),
            gpt_opts=GptApiOptions.model_validate(data.get("gpt_opts") or {}),
            name=data.get("name"),
            example_style=data.get("example_style", "system_named"),
        )


_OPENAI_STATUS = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    409: "ConflictError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
}


def _openai_error(exc: AioAgentsError) -> BaseException | None:
    """The openai SDK's exception for one of ours, as the openai client under slambda would have raised it; None
    when openai is not installed or the error is not a service failure (bad input stays ours)."""
    try:
        import openai
        from openai import _exceptions as openai_exceptions
    except ImportError:  # pragma: no cover - slambda requires openai; without it our errors stay
        return None
    # The HTTP library openai builds its requests with (httpx, or a renamed fork of it): its errors need one.
    http = getattr(openai_exceptions, "httpx", None) or getattr(openai_exceptions, "httpx2", None)
    if http is None or not isinstance(exc, APIError):
        return None
    request = http.Request(exc.method or "POST", exc.url or "https://api.openai.com/v1/chat/completions")
    if isinstance(exc, APIStatusError):
        body = exc.body
        text = body if isinstance(body, str) else json.dumps(body)
        response = http.Response(exc.status, headers=dict(exc.headers), content=text.encode(), request=request)
        data = body.get("error", body) if isinstance(body, Mapping) else body
        name = _OPENAI_STATUS.get(exc.status, "InternalServerError" if exc.status >= 500 else "APIStatusError")
        status_error: BaseException = getattr(openai, name)(
            f"Error code: {exc.status} - {body}", response=response, body=data
        )
        return status_error
    if isinstance(exc, APITimeoutError):
        return openai.APITimeoutError(request=request)
    if isinstance(exc, APIConnectionError):
        return openai.APIConnectionError(message=str(exc), request=request)
    if isinstance(exc, ResponseValidationError):
        response = http.Response(200, request=request)
        return openai.APIResponseValidationError(response, getattr(exc, "body", None), message=str(exc))
    return openai.APIError(str(exc), request, body=None)


def _translated(exc: AioAgentsError) -> BaseException:
    return _openai_error(exc) or exc


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

    def __init__(self, definition: _models.Definition, openai_client: Any = None) -> None:
        self._fn = _function.LmFunction(definition, client_options=_client_options(openai_client))
        self._loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()

    @property
    def definition(self) -> Definition:
        """The function's definition (instruction, examples, prebuilt messages, options), with slambda's pydantic
        methods (``model_dump_json()`` to save it)."""
        return Definition.model_validate(self._fn.definition)

    @staticmethod
    def create(
        instruction: str,
        examples: list[_models.Example],
        name: str | None = None,
        strict_no_args: bool | None = None,
        default_args: FunctionInput | None = None,
        message_template: str | None = None,
        required_args: list[str] | None = None,
        gpt_opts: _models.GptApiOptions | None = None,
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
        try:
            result = sync.run(self._call(args, kwargs))
        except AioAgentsError as exc:
            raise _translated(exc) from exc
        if isinstance(result, EventStream):
            return TranslatedStream(sync.SyncStream(result), _translated)
        return result

    def get_call_args(self, args: tuple[Any, ...], kwargs: dict[str, Any], ctrl_kws: dict[str, Any]) -> dict[str, Any]:
        """The request body of a call (slambda's name for it)."""
        return self._fn.build_request(*args, **kwargs, **ctrl_kws)

    async def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        if loop not in self._loops:
            # The HTTP session lives on this thread's loop: close it when the bridge closes the loop (at exit).
            self._loops.add(loop)
            sync.on_loop_close(loop, self._fn.aclose)
        return await self._fn(*args, **kwargs)

    def close(self) -> None:
        """Close the function's connections now (they are closed at exit otherwise)."""
        sync.run(self._fn.aclose())
