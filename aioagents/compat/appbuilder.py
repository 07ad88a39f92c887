"""A drop-in mirror of ``appbuilder.assistant`` (the AppBuilder SDK's Assistants API), on aioagents' client.

Change ``import appbuilder`` to ``import aioagents.compat.appbuilder as appbuilder`` and the Assistants calls run
unchanged: ``appbuilder.assistant.assistants.create(...)``, ``appbuilder.assistant.threads.messages.create(...)``,
``appbuilder.assistant.threads.runs.run(...)`` / ``stream_run(...)`` / ``list`` / ``query``,
``appbuilder.assistant.threads.runs.steps.list(...)``, ``appbuilder.assistant.assistants.files.create(...)``, with
the SDK's positional orders (``submit_tool_outputs(run_id, thread_id, ...)``, ``cancel(run_id, thread_id)``) and
defaults. ``APPBUILDER_TOKEN`` and ``GATEWAY_URL`` are read at call time, as the SDK does.

What differs, on purpose:

- one pooled client per token and gateway instead of a new ``requests`` session per attribute access; idempotent
  calls (query, list, download, content) are retried on transient failures, nothing else is;
- ``threads.update`` sends ``metadata`` (the SDK drops it), and ``messages.update`` leaves the files alone unless
  ``file_ids`` is given (the SDK's ``[]`` default detaches them);
- ``stream_run`` yields each event once (``ping`` skipped) as typed events with ``.event``, ``.event_type``,
  ``.status``, ``.details`` and ``.content`` like the SDK's; ``stream_run_with_handler`` returns an
  :class:`AssistantStreamManager` driving an :class:`AssistantEventHandler` (callbacks per event type, a
  :class:`StreamRunContext` with the current run, thread, step and tool calls), as the SDK's does, except that an
  error in the stream is raised instead of logged and swallowed.

Errors are the SDK's classes (:class:`BaseRPCException` and its tree, same names): a status error is
``BadRequestException`` (400), ``UnAuthorizedException`` (401), ``ForbiddenException`` (403), ``NotFoundException``
(404), … ``InternalServerErrorException`` (500), ``InsufficientStorageException`` (507), any other status
``BaseRPCException``; a 200 with an ``error`` body ``AssistantServerException`` (``code``, ``description``); no
usable answer ``HTTPConnectionException``. Each keeps aioagents' error as ``__cause__`` and its ``status`` and
``request_id``. Bad arguments stay a ``ValueError`` (the SDK's pydantic errors are ``ValueError`` s too).

Answers are the SDK's models (``appbuilder.core.assistant.type``), same class per call, same field names, types and
defaults: ``RunResult``, ``RunStepResult``, ``AssistantCreateResponse``, ``ThreadCreateResponse``,
``AssistantMessageCreateResponse``, the ``…ListResponse`` pages, ``StreamRunStatus`` / ``StreamRunMessage`` events,
…. Timestamps are the service's epoch milliseconds as ``int`` (``0`` when unset), roles, response formats and audit
states the SDK's enums, a step's detail is ``step_datail`` (the SDK's spelling; filled here, where the SDK leaves it
None) with camelCase ``RunActionInfo``. They are thin mutable classes built from aioagents' own models (which keep
``datetime`` values), with the pydantic 2 methods SDK code calls: ``model_dump`` (``mode``, ``include``, ``exclude``,
``exclude_none``), ``model_dump_json``, ``model_validate``, ``model_validate_json``, ``model_copy``, and the
deprecated ``dict`` / ``json`` (with a ``DeprecationWarning``, as pydantic 2). The request models
(``AssistantMessage``, ``AssistantThread``, ``ToolOutput``, ``AssistantTool``, ``AssistantModelParameters``, …) are
accepted wherever the SDK takes them, as are their dict forms. The SDK's ``…Request`` models are not provided.
"""

from __future__ import annotations

import builtins
import copy
import enum
import functools
import inspect
import json
import logging
import os
import threading
import types
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

import attrs

from aioagents import AioAgentsError, APIConnectionError, APIStatusError, InvalidRequestError
from aioagents.assistants import (
    AssistantServerError,
    MessageEvent,
    ModelParameters,
    RunParameters,
    SamplingParameters,
    StatusEvent,
    UserInfo,
    UserLocation,
)
from aioagents.assistants.models import converter
from aioagents.compat._stream import TranslatedStream
from aioagents.sync import AssistantsClient

__all__ = [
    "AppBuilderServerException",
    "AssistantChatParameters",
    "AssistantContent",
    "AssistantContentFilesData",
    "AssistantCreateResponse",
    "AssistantDeleteResponse",
    "AssistantEventHandler",
    "AssistantExample",
    "AssistantFilesContentResponse",
    "AssistantFilesCreateResponse",
    "AssistantFilesDeleteResponse",
    "AssistantFilesListData",
    "AssistantFilesListResponse",
    "AssistantFilesQueryResponse",
    "AssistantFilesResponse",
    "AssistantFunction",
    "AssistantFunctionCall",
    "AssistantFunctionJsonSchema",
    "AssistantListResponse",
    "AssistantMessage",
    "AssistantMessageCreateResponse",
    "AssistantMessageFilesResponse",
    "AssistantMessageListResponse",
    "AssistantMessageListResponseData",
    "AssistantMessageQueryResponse",
    "AssistantMessageRole",
    "AssistantMessageUpdateResponse",
    "AssistantModelParameters",
    "AssistantMountedFilesListResponse",
    "AssistantQueryResponse",
    "AssistantServerException",
    "AssistantStreamManager",
    "AssistantText",
    "AssistantThoughtParameters",
    "AssistantThread",
    "AssistantTool",
    "AssistantUpdateResponse",
    "AssistantUserInfo",
    "AssistantUserLoc",
    "AuditStatus",
    "BadRequestException",
    "BaseRPCException",
    "ConflictException",
    "DependencyFailedException",
    "FinalAnswer",
    "FinalAnswerMessage",
    "ForbiddenException",
    "FunctionCall",
    "HTTPConnectionException",
    "InsufficientStorageException",
    "InternalServerErrorException",
    "InternalServerException",
    "InvalidRequestArgumentError",
    "LastError",
    "MethodNotAllowedException",
    "MissingContentLengthException",
    "NotFoundException",
    "PreconditionFailedException",
    "RequiredAction",
    "ResponseFormat",
    "RunActionInfo",
    "RunListResponse",
    "RunMessageCreation",
    "RunResult",
    "RunStepDetail",
    "RunStepListResponse",
    "RunStepResult",
    "StreamRunContext",
    "StreamRunDetail",
    "StreamRunMessage",
    "StreamRunStatus",
    "SubmitToolOutput",
    "ThreadCreateResponse",
    "ThreadDeleteResponse",
    "ThreadQueryResponse",
    "ThreadUpdateResponse",
    "TooManyRequestsException",
    "ToolCall",
    "ToolInfo",
    "ToolOutput",
    "UnAuthorizedException",
    "UnprocessableEntityException",
    "assistant",
    "stream_run_with_handler",
]

log = logging.getLogger("aioagents.compat.appbuilder")


# -- the SDK's exceptions (appbuilder.core._exception), same names and tree -----------------------------------
class BaseRPCException(Exception):
    """The SDK's base error. Ours carry ``status`` and ``request_id`` (None when unknown), and aioagents' error as
    ``__cause__``."""

    status: int | None = None
    request_id: str | None = None


class BadRequestException(BaseRPCException):
    """HTTP 400."""


class UnAuthorizedException(BaseRPCException):
    """HTTP 401."""


class ForbiddenException(BaseRPCException):
    """HTTP 403."""


class NotFoundException(BaseRPCException):
    """HTTP 404."""


class MethodNotAllowedException(BaseRPCException):
    """HTTP 405."""


class ConflictException(BaseRPCException):
    """HTTP 409."""


class MissingContentLengthException(BaseRPCException):
    """HTTP 411."""


class PreconditionFailedException(BaseRPCException):
    """HTTP 428 (the SDK maps *precondition required* to this class, despite its name)."""


class UnprocessableEntityException(BaseRPCException):
    """HTTP 422."""


class DependencyFailedException(BaseRPCException):
    """HTTP 424."""


class TooManyRequestsException(BaseRPCException):
    """HTTP 429."""


class InternalServerErrorException(BaseRPCException):
    """HTTP 500."""


class InsufficientStorageException(BaseRPCException):
    """HTTP 507."""


class HTTPConnectionException(BaseRPCException):
    """No usable answer: the connection failed, timed out, or the answer could not be read."""


class InternalServerException(BaseRPCException):
    """The SDK's name for a service-side failure outside the status mapping."""


class _DescribedException(BaseRPCException):
    description: str = "Interal Server Error"  # sic, the SDK's text
    code: Any = 500

    def __str__(self) -> str:
        return self.description


class AppBuilderServerException(_DescribedException):
    """A failed answer of the AppBuilder backend (``code``, ``description``)."""

    def __init__(
        self,
        request_id: str = "",
        code: Any = "",
        message: str = "",
        service_err_code: str = "",
        service_err_message: str = "",
    ) -> None:
        super().__init__(message)
        self.request_id = request_id or None
        self.description = (
            f"request_id={request_id}, code={code}, message={message}, service_err_code={service_err_code}, "
            f"service_err_message={service_err_message} "
        )
        self.code = code or type(self).code


class AssistantServerException(_DescribedException):
    """The Assistants service answered with an ``error`` body (usually on an HTTP 200): ``code``, ``description``."""

    def __init__(
        self, request_id: str = "", code: Any = "", message: str = "", type: str = "", params: Any = ""
    ) -> None:
        super().__init__(message)
        self.request_id = request_id or None
        self.description = f"request_id={request_id}, code={code}, message={message}, type={type}, params={params} "
        self.code = code or _DescribedException.code


class InvalidRequestArgumentError(_DescribedException):
    """An invalid request argument (``code`` 400)."""

    description = "Invalid Request Params Error"
    code: Any = 400

    def __init__(self, message: str = "", request_id: str = "", code: Any = "") -> None:
        super().__init__(message)
        self.description = f"request_id={request_id}, code={code}, message={message}"
        self.code = code or InvalidRequestArgumentError.code


_STATUS_EXCEPTIONS: dict[int, type[BaseRPCException]] = {
    400: BadRequestException,
    401: UnAuthorizedException,
    403: ForbiddenException,
    404: NotFoundException,
    405: MethodNotAllowedException,
    409: ConflictException,
    411: MissingContentLengthException,
    422: UnprocessableEntityException,
    424: DependencyFailedException,
    428: PreconditionFailedException,
    429: TooManyRequestsException,
    500: InternalServerErrorException,
    507: InsufficientStorageException,
}


def _sdk_error(exc: AioAgentsError) -> BaseException:
    """The SDK's exception for one of ours (bad arguments stay ``ValueError`` s, as the SDK's are)."""
    if isinstance(exc, InvalidRequestError):
        return exc
    if isinstance(exc, AssistantServerError):
        params = exc.param if exc.param is not None else ""
        out: BaseRPCException = AssistantServerException(
            exc.request_id or "", exc.code or "", exc.message, exc.type or "", params
        )
        out.status = exc.status
        return out
    if isinstance(exc, APIStatusError):
        body = exc.body if isinstance(exc.body, str) else json.dumps(exc.body, ensure_ascii=False)
        out = _STATUS_EXCEPTIONS.get(exc.status, BaseRPCException)(
            f"request_id={exc.request_id}, http status code is {exc.status}, body is {body}"
        )
        out.status, out.request_id = exc.status, exc.request_id
        return out
    if isinstance(exc, APIConnectionError):
        return HTTPConnectionException(str(exc))
    return BaseRPCException(str(exc))


def _translating(call: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call)
    def translated(*args: Any, **kwargs: Any) -> Any:
        try:
            result = call(*args, **kwargs)
        except AioAgentsError as exc:
            raise _sdk_error(exc) from exc
        if isinstance(result, Iterator):
            return TranslatedStream(result, _sdk_error)
        return result

    return translated


class _SDKErrors:
    """The sync client seen through the SDK's error types: namespaces are wrapped, each call translates its
    failures (and those of a stream it returns)."""

    __slots__ = ("_target",)

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        return _translating(value) if callable(value) else _SDKErrors(value)


_DEFAULT_INSTRUCTIONS = "你是百度制作的AI助手"

_lock = threading.Lock()
# One client per (token, gateway); their connections live on the sync bridge's loops, which close them at exit.
_clients: dict[tuple[str, str], AssistantsClient] = {}


def _client() -> AssistantsClient:
    """The pooled client for the current token and gateway, raising the SDK's exceptions (a proxy of it)."""
    token = os.environ.get("APPBUILDER_TOKEN", "")
    gateway = os.environ.get("GATEWAY_URL", "")
    if not token:
        raise ValueError("APPBUILDER_TOKEN is not set")
    with _lock:
        client = _clients.get((token, gateway))
        if client is None:
            client = _clients[(token, gateway)] = AssistantsClient(token=token, base_url=gateway or None)
        return cast(AssistantsClient, _SDKErrors(client))


def _plain(value: Any) -> Any:
    """SDK request objects (pydantic models), our attrs models and plain data, as JSON-ready data."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if attrs.has(type(value)):
        return converter.unstructure(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _thread_messages(thread: Any) -> list[Any] | None:
    """The SDK's ``AssistantThread(messages=[...])`` (or its dict form) as our message list."""
    data = _plain(thread)
    if data is None:
        return None
    if isinstance(data, Mapping):
        return list(data.get("messages") or [])
    return list(data)


def _model_parameters(value: Any) -> ModelParameters | None:
    data = _plain(value)
    if data is None:
        return None
    if isinstance(value, ModelParameters):
        return value

    def part(name: str) -> SamplingParameters | None:
        raw = data.get(name)
        return None if raw is None else SamplingParameters(**raw)

    return ModelParameters(chat_parameters=part("chat_parameters"), thought_parameters=part("thought_parameters"))


# -- the SDK's models (appbuilder.core.assistant.type), same names, fields and types ----------------------------
#
# Thin mutable classes built from aioagents' models (or from plain data): timestamps are the service's epoch
# milliseconds as ``int`` (``0`` when unset), enums are the SDK's enums, the step detail is ``step_datail`` and the
# action info camelCase, as in the SDK. Each has the pydantic methods SDK code calls (``model_dump``,
# ``model_dump_json``, ``model_validate``, ``model_copy`` and pydantic 2's deprecated ``dict`` / ``json``).
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


#: The SDK's bare ``dict`` fields (any keys, any values).
if typing.TYPE_CHECKING:
    _AnyDict = dict[str, Any]
else:
    _AnyDict = dict
_FACTORY: type[Any] = type(attrs.Factory(list))


def _fields(cls: type[Any]) -> tuple[attrs.Attribute[Any], ...]:
    return tuple(attrs.fields(cls))


def _default_of(f: attrs.Attribute[Any]) -> Any:
    """A field's default value (a fresh one for a factory)."""
    default: Any = f.default
    return default.factory() if isinstance(default, _FACTORY) else default


def _dump_value(value: Any, mode: str, exclude_none: bool) -> Any:
    if isinstance(value, _SDKModel):
        return value.model_dump(mode=mode, exclude_none=exclude_none)
    if isinstance(value, list):
        return [_dump_value(v, mode, exclude_none) for v in value]
    if isinstance(value, dict):
        return {k: _dump_value(v, mode, exclude_none) for k, v in value.items()}
    if mode == "json":
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
    return value


class _SDKModel:
    """The pydantic surface the SDK's models offer, over attrs fields."""

    __slots__ = ()

    @classmethod
    def _plan(cls) -> tuple[_FieldPlan, ...]:
        plan = _PLANS.get(cls)
        if plan is None:
            plan = _PLANS[cls] = _plan_of(cls)
        return plan

    @classmethod
    def model_validate(cls: type[_M], obj: Any) -> _M:
        """Build from a mapping with the SDK's keys, an aioagents model, or an instance of this class."""
        if isinstance(obj, cls):
            return obj
        if obj is None:
            raise ValueError(f"{cls.__name__}: None is not a valid value")
        mapping = obj if isinstance(obj, Mapping) else None
        if mapping is None and not attrs.has(type(obj)) and not isinstance(obj, _SDKModel):
            raise ValueError(f"{cls.__name__}: cannot build from {type(obj).__name__}")
        kwargs: builtins.dict[str, Any] = {}
        for field in cls._plan():
            for name in field.names:
                if mapping is not None:
                    if name not in mapping:
                        continue
                    value = mapping[name]
                else:
                    value = getattr(obj, name, _ABSENT)
                    if value is _ABSENT:
                        continue
                    if value is None and field.unset is not _ABSENT:
                        # aioagents' None for the service's "unset" (0 for a timestamp, "" for no step error).
                        value = field.unset
                if value is None and not field.optional and field.has_default:
                    # A null where the SDK's type takes none: the SDK's default (what the SDK holds when unset).
                    value = field.default()
                kwargs[field.name] = value
                break
        return cls(**kwargs)

    @classmethod
    def _from(cls: type[_M], obj: Any) -> _M:
        return cls.model_validate(obj)

    @classmethod
    def model_validate_json(cls: type[_M], data: str | bytes) -> _M:
        """Build from a JSON document."""
        return cls.model_validate(json.loads(data))

    def model_dump(
        self,
        *,
        mode: str = "python",
        include: Any = None,
        exclude: Any = None,
        exclude_none: bool = False,
        exclude_defaults: bool = False,
        by_alias: bool = False,
    ) -> builtins.dict[str, Any]:
        """The fields as a dict (nested models as dicts); ``mode="json"`` gives JSON-ready values (enum values)."""
        if mode not in ("python", "json"):
            raise ValueError("mode must be 'python' or 'json'")
        out: builtins.dict[str, Any] = {}
        for f in _fields(type(self)):
            if (include is not None and f.name not in include) or (exclude is not None and f.name in exclude):
                continue
            value = getattr(self, f.name)
            if exclude_none and value is None:
                continue
            if exclude_defaults and f.default is not attrs.NOTHING:
                default = _default_of(f)
                if value == default:
                    continue
            out[f.name] = _dump_value(value, mode, exclude_none)
        return out

    def model_dump_json(
        self,
        *,
        indent: int | None = None,
        include: Any = None,
        exclude: Any = None,
        exclude_none: bool = False,
        exclude_defaults: bool = False,
        by_alias: bool = False,
    ) -> str:
        """The fields as a JSON string (compact unless ``indent``; non-ASCII text kept as is)."""
        data = self.model_dump(
            mode="json", include=include, exclude=exclude, exclude_none=exclude_none, exclude_defaults=exclude_defaults
        )
        if indent is None:
            return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return json.dumps(data, ensure_ascii=False, indent=indent)

    def __attrs_post_init__(self) -> None:
        # Construction converts and checks the values as pydantic does: ``AssistantThread(messages=[{...}])``
        # holds AssistantMessage objects, ``role="user"`` the enum member; defaults are kept as they are.
        for field in type(self)._plan():
            value = getattr(self, field.name)
            if value is None or value is field.raw_default:
                continue
            try:
                coerced = field.coerce(value)
            except ValueError as exc:
                raise ValueError(f"{type(self).__name__}.{field.name}: {exc}") from None
            if coerced is not value:
                setattr(self, field.name, coerced)

    def __str__(self) -> str:
        # pydantic's str(): the fields as ``name=value`` pairs, space-separated, without the class name.
        return " ".join(f"{f.name}={getattr(self, f.name)!r}" for f in _fields(type(self)))

    def model_copy(self: _M, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> _M:
        """A copy, with ``update`` applied (as pydantic: the values are not validated)."""
        clone = copy.deepcopy(self) if deep else copy.copy(self)
        for name, value in (update or {}).items():
            setattr(clone, name, value)
        return clone

    def dict(self, **kwargs: Any) -> builtins.dict[str, Any]:
        """``model_dump`` under pydantic 1's name (deprecated in pydantic 2: a ``DeprecationWarning``)."""
        warnings.warn("The `dict` method is deprecated; use `model_dump` instead.", DeprecationWarning, stacklevel=2)
        return self.model_dump(**kwargs)

    def json(self, **kwargs: Any) -> str:
        """``model_dump_json`` under pydantic 1's name (deprecated in pydantic 2: a ``DeprecationWarning``)."""
        warnings.warn(
            "The `json` method is deprecated; use `model_dump_json` instead.", DeprecationWarning, stacklevel=2
        )
        return self.model_dump_json(**kwargs)


_M = TypeVar("_M", bound=_SDKModel)
_P = ParamSpec("_P")
_R = TypeVar("_R")
_ABSENT: Any = object()


@attrs.frozen
class _FieldPlan:
    """How one field of a model is read and converted (computed once per class)."""

    name: str
    names: tuple[str, ...]  # the keys it is read from: its own name, then the other spellings
    coerce: Callable[[Any], Any]
    optional: bool
    has_default: bool
    raw_default: Any  # the attrs default (a Factory for list and dict defaults)
    unset: Any  # what an aioagents None means for it (_ABSENT: None)

    def default(self) -> Any:
        """A fresh default value."""
        return self.raw_default.factory() if isinstance(self.raw_default, _FACTORY) else self.raw_default


_PLANS: dict[type[Any], tuple[_FieldPlan, ...]] = {}


def _plan_of(cls: type[Any]) -> tuple[_FieldPlan, ...]:
    hints = typing.get_type_hints(cls)
    plan = []
    for f in _fields(cls):
        unset = f.metadata.get("unset", f.default if type(f.default) is int else _ABSENT)
        plan.append(
            _FieldPlan(
                name=f.name,
                names=(f.name, *f.metadata.get("source", ())),
                coerce=_coercer(hints[f.name]),
                optional=_optional(hints[f.name]),
                has_default=f.default is not attrs.NOTHING,
                raw_default=f.default,
                unset=unset,
            )
        )
    return tuple(plan)


def _ms_of(value: datetime) -> int:
    """An aware (or UTC-naive) datetime as epoch milliseconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return round((value - _EPOCH) / _MS)


def _optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _invalid(kind: str, value: Any) -> ValueError:
    return ValueError(f"input should be a valid {kind}, got {type(value).__name__} {value!r:.60}")


_COERCERS: dict[Any, Callable[[Any], Any]] = {}


def _coercer(tp: Any) -> Callable[[Any], Any]:
    """The converter for the SDK's field type ``tp``, made once per type: it returns a value as that type holds it,
    converted as pydantic's lax mode does (a mapping or an aioagents model into a model, a string into an enum, an int
    into a float, …) plus aioagents' ``datetime`` into epoch milliseconds, and raises ``ValueError`` for what pydantic
    would refuse. An enum value the SDK does not know is kept as it came (the service may add one)."""
    fn = _COERCERS.get(tp)
    if fn is None:
        fn = _COERCERS[tp] = _make_coercer(tp)
    return fn


def _make_coercer(tp: Any) -> Callable[[Any], Any]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _union_coercer([a for a in args if a is not type(None)], optional=type(None) in args)
    if origin is list:
        item = _coercer(args[0]) if args else _same

        def coerce_list(value: Any) -> Any:
            if value is None:
                raise _invalid("value (not None)", value)
            if not isinstance(value, (list, tuple)):
                raise _invalid("list", value)
            return [item(v) for v in value]

        return coerce_list
    if origin is dict or tp is dict:
        return _to_dict
    if not isinstance(tp, type):
        return _same
    if issubclass(tp, _SDKModel):
        model = tp

        def coerce_model(value: Any) -> Any:
            if value is None:
                raise _invalid("value (not None)", value)
            return model.model_validate(value)

        return coerce_model
    if issubclass(tp, enum.Enum):
        members = cast(Any, tp)

        def coerce_enum(value: Any) -> Any:
            if isinstance(value, members):
                return value
            try:
                return members(value)
            except ValueError:
                return value  # a value the SDK does not know yet: kept as it came

        return coerce_enum
    return _SCALARS.get(tp, _same)


def _union_coercer(options: list[Any], *, optional: bool) -> Callable[[Any], Any]:
    if len(options) == 1:
        inner = _coercer(options[0])
        return (lambda value: None if value is None else inner(value)) if optional else inner
    takes_str = str in options
    # A string stays a string when the union has str; anything else takes the first option that converts it.
    others = [_coercer(a) for a in options if a is not str]

    def coerce_union(value: Any) -> Any:
        if value is None:
            if optional:
                return None
            raise _invalid("value (not None)", value)
        if takes_str and isinstance(value, str):
            return value
        errors = []
        for coerce in others:
            try:
                return coerce(value)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors) or str(_invalid("string", value)))

    return coerce_union


def _same(value: Any) -> Any:
    return value


def _to_dict(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise _invalid("dictionary", value)


def _to_str(value: Any) -> Any:
    if isinstance(value, str):
        return value
    raise _invalid("string", value)


def _to_int(value: Any) -> Any:
    if type(value) is int:
        return value
    if isinstance(value, datetime):
        return _ms_of(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _invalid("value (not None)" if value is None else "integer", value)


def _to_float(value: Any) -> Any:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _invalid("value (not None)" if value is None else "number", value)


def _to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _BOOL_STRINGS:
        return _BOOL_STRINGS[value.lower()]
    raise _invalid("value (not None)" if value is None else "boolean", value)


def _to_bytes(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise _invalid("value (not None)" if value is None else "bytes", value)


_SCALARS: dict[type, Callable[[Any], Any]] = {
    str: _to_str,
    int: _to_int,
    float: _to_float,
    bool: _to_bool,
    bytes: _to_bytes,
}


_BOOL_STRINGS = {
    "true": True,
    "false": False,
    "1": True,
    "0": False,
    "yes": True,
    "no": False,
    "on": True,
    "off": False,
}


class ResponseFormat(str, enum.Enum):
    """An assistant's answer format."""

    TEXT = "text"
    JSON_OBJECT = "json_object"


class AssistantMessageRole(str, enum.Enum):
    """Who wrote a thread message."""

    USER = "user"
    ASSISTANT = "assistant"


class AuditStatus(int, enum.Enum):
    """A file's audit state (``censored``)."""

    AUDITING = -1
    NOT_AUDITED = 0
    APPROVED = 1
    REJECTED = 2
    NEEDS_FURTHER_AUDIT = 3
    AUDIT_FAILED_SERVICE_EXCEPTION = 4
    AUDIT_FAILED_TIMEOUT = 5


# public_type
@attrs.define(kw_only=True)
class AssistantFunctionCall(_SDKModel):
    """A few-shot example's function call (``arguments`` a JSON string)."""

    name: str
    arguments: str


@attrs.define(kw_only=True)
class AssistantExample(_SDKModel):
    """A few-shot example of a function tool."""

    role: str = "user"
    content: str
    function_call: AssistantFunctionCall


@attrs.define(kw_only=True)
class AssistantFunctionJsonSchema(_SDKModel):
    """A function's JSON Schema (``parameters`` or ``responses``)."""

    type: str = "object"
    properties: _AnyDict | None = None
    required: list[str] | None = None


@attrs.define(kw_only=True)
class AssistantFunction(_SDKModel):
    """A function an assistant may call."""

    name: str
    description: str
    parameters: AssistantFunctionJsonSchema | None = None
    responses: AssistantFunctionJsonSchema | None = None
    examples: list[list[AssistantExample]] | None = None


@attrs.define(kw_only=True)
class AssistantTool(_SDKModel):
    """A tool of an assistant or a run."""

    type: str = "function"
    function: AssistantFunction = None  # type: ignore[assignment]  # the SDK's annotation and default, as they are


@attrs.define(kw_only=True)
class AssistantText(_SDKModel):
    """The text of a content part."""

    value: str = ""
    annotations: list[str] | None = None


@attrs.define(kw_only=True)
class AssistantContent(_SDKModel):
    """One content part of a message."""

    type: str = "text"
    text: AssistantText | None = None


@attrs.define(kw_only=True)
class AssistantChatParameters(_SDKModel):
    """The chat model's sampling settings (the SDK's defaults)."""

    temperature: float | None = 0.8
    top_p: float | None = 0.8
    penalty_score: float | None = 1.0


@attrs.define(kw_only=True)
class AssistantThoughtParameters(_SDKModel):
    """The thought model's sampling settings (the SDK's defaults)."""

    temperature: float | None = 0.01
    top_p: float | None = 0
    penalty_score: float | None = 1.0


@attrs.define(kw_only=True)
class AssistantModelParameters(_SDKModel):
    """A run's model settings."""

    chat_parameters: AssistantChatParameters | None = attrs.field(factory=AssistantChatParameters)
    thought_parameters: AssistantThoughtParameters | None = attrs.field(factory=AssistantThoughtParameters)


@attrs.define(kw_only=True)
class AssistantUserInfo(_SDKModel):
    """Who the end user is."""

    id: str | None = None
    name: str | None = None
    nickname: str | None = None
    watermark: str | None = None
    intro: str | None = None
    baidu_id: str | None = None


@attrs.define(kw_only=True)
class AssistantUserLoc(_SDKModel):
    """Where the end user is (``loc`` a JSON string)."""

    loc: str | None = None
    uip: str | None = None
    uipv6: str | None = None


# assistant_type: files
@attrs.define(kw_only=True)
class AssistantFilesCreateResponse(_SDKModel):
    """``assistants.files.create``: the uploaded file (``create_at`` in epoch ms)."""

    id: str = ""
    bytes: int = 0
    object: str = ""
    purpose: str = ""
    create_at: int = attrs.field(default=0, metadata={"source": ("created_at",)})
    filename: str = ""
    classification_id: str = ""


@attrs.define(kw_only=True)
class AssistantFilesListData(_SDKModel):
    """One file of ``assistants.files.list``."""

    id: str = ""
    bytes: int = 0
    object: str = ""
    purpose: str = ""
    censored: AuditStatus = AuditStatus.NOT_AUDITED
    create_at: int = attrs.field(default=0, metadata={"source": ("created_at",)})
    filename: str = ""
    classification_id: str = ""
    file_type: str = ""


@attrs.define(kw_only=True)
class AssistantFilesListResponse(_SDKModel):
    """``assistants.files.list``."""

    object: str = "list"
    data: list[AssistantFilesListData] = attrs.field(factory=list)


@attrs.define(kw_only=True)
class AssistantFilesQueryResponse(AssistantFilesListData):
    """``assistants.files.query``."""


@attrs.define(kw_only=True)
class AssistantFilesDeleteResponse(_SDKModel):
    """``assistants.files.delete`` and ``assistants.unmount_files``."""

    id: str = ""
    object: str = ""
    deleted: bool = False


@attrs.define(kw_only=True)
class AssistantFilesContentResponse(_SDKModel):
    """``assistants.files.content``: the bytes and their content type."""

    content_type: str | None = ""
    content: bytes | None = b""


# assistant_type: assistants
@attrs.define(kw_only=True)
class AssistantCreateResponse(_SDKModel):
    """``assistants.create`` (and each assistant of ``assistants.list``)."""

    id: str | None = ""
    object: str | None = ""
    name: str | None = ""
    description: str | None = ""
    instructions: str | None
    tools: list[AssistantTool] | None = attrs.field(factory=list)
    created_at: int | None = 0
    thought_instructions: str | None = ""
    chat_instructions: str | None = ""
    response_format: ResponseFormat | None = ResponseFormat.TEXT
    file_ids: list[str] | None = attrs.field(factory=list)
    metadata: _AnyDict | None = attrs.field(factory=dict)


@attrs.define(kw_only=True)
class AssistantQueryResponse(AssistantCreateResponse):
    """``assistants.query``."""


@attrs.define(kw_only=True)
class AssistantUpdateResponse(_SDKModel):
    """``assistants.update`` (``model`` where the others have ``object``)."""

    id: str | None = ""
    model: str | None = ""
    name: str | None = ""
    description: str | None = ""
    response_format: ResponseFormat | None = ResponseFormat.TEXT
    instructions: str | None
    created_at: int | None = 0
    thought_instructions: str | None = ""
    chat_instructions: str | None = ""
    tools: list[AssistantTool] | None = attrs.field(factory=list)
    file_ids: list[str] | None = attrs.field(factory=list)
    metadata: _AnyDict | None = attrs.field(factory=dict)


@attrs.define(kw_only=True)
class AssistantListResponse(_SDKModel):
    """``assistants.list``."""

    object: str = "list"
    data: list[AssistantCreateResponse] | None = attrs.field(factory=list)
    first_id: str | None = ""
    last_id: str | None = ""
    has_more: bool = False


@attrs.define(kw_only=True)
class AssistantDeleteResponse(_SDKModel):
    """``assistants.delete``."""

    id: str | None = ""
    object: str | None = ""
    deleted: bool = False


@attrs.define(kw_only=True)
class AssistantFilesResponse(_SDKModel):
    """``assistants.mount_files`` (and each file of ``mounted_files_list``)."""

    id: str | None = ""
    object: str | None = ""
    created_at: int | None = 0
    assistant_id: str | None = ""


@attrs.define(kw_only=True)
class AssistantMountedFilesListResponse(_SDKModel):
    """``assistants.mounted_files_list``."""

    object: str = "list"
    data: list[AssistantFilesResponse] | None = attrs.field(factory=list)
    first_id: str | None = ""
    last_id: str | None = ""
    has_more: bool = False


# thread_type: messages and threads
@attrs.define(kw_only=True)
class AssistantMessage(_SDKModel):
    """A user turn for a new thread or a run's ``thread``."""

    content: str
    role: AssistantMessageRole = AssistantMessageRole.USER
    file_ids: list[str] | None = attrs.field(factory=list)


@attrs.define(kw_only=True)
class AssistantThread(_SDKModel):
    """The messages appended to a thread for one run (``runs.run(..., thread=AssistantThread(messages=[...]))``)."""

    messages: list[AssistantMessage] = attrs.field(factory=list)


@attrs.define(kw_only=True)
class AssistantMessageCreateResponse(_SDKModel):
    """``threads.messages.create``."""

    id: str = ""
    object: str = ""
    role: AssistantMessageRole = AssistantMessageRole.USER
    content: list[AssistantContent] | None = attrs.field(factory=list)
    created_at: int = 0
    thread_id: str = ""
    assistant_id: str | None = ""
    run_id: str | None = ""
    file_ids: list[str] | None = attrs.field(factory=list)


@attrs.define(kw_only=True)
class AssistantMessageUpdateResponse(AssistantMessageCreateResponse):
    """``threads.messages.update``."""


@attrs.define(kw_only=True)
class AssistantMessageQueryResponse(AssistantMessageCreateResponse):
    """``threads.messages.query``."""


@attrs.define(kw_only=True)
class AssistantMessageListResponseData(AssistantMessageCreateResponse):
    """One message of ``threads.messages.list``."""


@attrs.define(kw_only=True)
class AssistantMessageListResponse(_SDKModel):
    """``threads.messages.list``."""

    object: str = ""
    data: list[AssistantMessageListResponseData] = attrs.field(factory=list)
    first_id: str | None = ""
    last_id: str | None = ""
    has_more: bool = False


@attrs.define(kw_only=True)
class AssistantContentFilesData(_SDKModel):
    """One file of ``threads.messages.files``."""

    id: str = ""
    object: str = ""
    created_at: int = 0
    message_id: str = ""


@attrs.define(kw_only=True)
class AssistantMessageFilesResponse(_SDKModel):
    """``threads.messages.files``."""

    object: str = ""
    data: list[AssistantContentFilesData] = attrs.field(factory=list)
    first_id: str | None = ""
    last_id: str | None = ""
    has_more: bool = False


@attrs.define(kw_only=True)
class ThreadCreateResponse(_SDKModel):
    """``threads.create``."""

    id: str = ""
    object: str = ""
    created_at: int = 0
    metadata: _AnyDict = attrs.field(factory=dict)


@attrs.define(kw_only=True)
class ThreadQueryResponse(ThreadCreateResponse):
    """``threads.query``."""


@attrs.define(kw_only=True)
class ThreadUpdateResponse(_SDKModel):
    """``threads.update``."""

    id: str = ""
    object: str = ""
    created_at: int | None = 0
    metadata: _AnyDict | None = attrs.field(factory=dict)


@attrs.define(kw_only=True)
class ThreadDeleteResponse(_SDKModel):
    """``threads.delete``."""

    id: str = ""
    object: str = ""
    deleted: bool = False


# thread_type: runs and steps
@attrs.define(kw_only=True)
class RunActionInfo(_SDKModel):
    """What a tool step did (camelCase, as on the wire)."""

    toolName: str = attrs.field(default="", metadata={"source": ("tool_name",)})
    actionName: str = attrs.field(default="", metadata={"source": ("action_name",)})
    actionContent: str = attrs.field(default="", metadata={"source": ("action_content",)})


@attrs.define(kw_only=True)
class FunctionCall(_SDKModel):
    """The function a tool call asks for (``arguments`` a JSON string)."""

    name: str = ""
    arguments: str = ""
    output: str = ""


@attrs.define(kw_only=True)
class ToolCall(_SDKModel):
    """A call the model wants the client to make."""

    id: str = ""
    type: str = "function"
    function: FunctionCall | None = None


@attrs.define(kw_only=True)
class SubmitToolOutput(_SDKModel):
    """The tool calls awaiting outputs."""

    tool_calls: list[ToolCall] | None = None


@attrs.define(kw_only=True)
class RequiredAction(_SDKModel):
    """What a ``requires_action`` run waits for."""

    type: str = ""
    submit_tool_outputs: SubmitToolOutput | None = None


@attrs.define(kw_only=True)
class LastError(_SDKModel):
    """An error reported on a run, a step or a stream."""

    type: str | None = ""
    message: str | None = ""


@attrs.define(kw_only=True)
class FinalAnswerMessage(_SDKModel):
    """The answer message of a completed run."""

    message_id: str | None = ""
    content: list[AssistantContent] | None = attrs.field(factory=list)


@attrs.define(kw_only=True)
class FinalAnswer(_SDKModel):
    """A completed run's answer."""

    type: str | None = "message"
    message: FinalAnswerMessage | None = None


@attrs.define(kw_only=True)
class RunResult(_SDKModel):
    """A run (``runs.run``, ``query``, ``cancel``, ``submit_tool_outputs``); timestamps in epoch ms, 0 unset."""

    id: str = ""
    object: str = ""
    assistant_id: str = ""
    thread_id: str = ""
    model: str = ""
    instructions: str = ""
    thought_instructions: str = ""
    chat_instructions: str = ""
    tools: list[AssistantTool] | None = None
    file_ids: list[str] | None = None
    status: str = ""
    required_action: RequiredAction | None = None
    last_error: LastError | None = None
    final_answer: FinalAnswer | None = None
    created_at: int = 0
    started_at: int = 0
    expired_at: int = 0
    cancelled_at: int = 0
    failed_at: int = 0
    completed_at: int = 0


@attrs.define(kw_only=True)
class RunListResponse(_SDKModel):
    """``threads.runs.list``."""

    object: str | None = "list"
    first_id: str | None = ""
    last_id: str | None = ""
    has_more: bool | None = False
    data: list[RunResult] | None = attrs.field(factory=list)


@attrs.define(kw_only=True)
class RunMessageCreation(_SDKModel):
    """The message a step (or a stream event) created."""

    message_id: str = ""


@attrs.define(kw_only=True)
class ToolInfo(_SDKModel):
    """One tool invocation of a step, with its output."""

    type: str = ""
    name: str = ""
    arguments: str = ""
    output: str = ""


@attrs.define(kw_only=True)
class RunStepDetail(_SDKModel):
    """What a run step did."""

    type: str = ""
    message_creation: RunMessageCreation | None = None
    action_info: RunActionInfo | None = None
    tool_calls: list[ToolCall] | None = None
    tool_info: list[ToolInfo] | None = None


@attrs.define(kw_only=True)
class RunStepResult(_SDKModel):
    """One step of a run. The detail is ``step_datail`` (the SDK's spelling), filled here from the service's
    ``step_details`` (the SDK leaves it None)."""

    id: str | None = ""
    object: str | None = ""
    assistant_id: str | None = ""
    thread_id: str | None = ""
    run_id: str | None = ""
    status: str | None = ""
    created_at: int | None = 0
    started_at: int | None = 0
    expired_at: int | None = 0
    cancelled_at: int | None = 0
    failed_at: int | None = 0
    completed_at: int | None = 0
    # The service sends "" for no error (aioagents reads it as None); the SDK keeps the "".
    last_error: LastError | str | None = attrs.field(default=None, metadata={"unset": ""})
    type: str | None = "null"
    step_datail: RunStepDetail | None = attrs.field(default=None, metadata={"source": ("step_details",)})


@attrs.define(kw_only=True)
class RunStepListResponse(_SDKModel):
    """``threads.runs.steps.list``."""

    object: str | None = "list"
    first_id: str | None = ""
    last_id: str | None = ""
    has_more: bool | None = False
    data: list[RunStepResult] | None = attrs.field(factory=list)


@attrs.define(kw_only=True)
class StreamRunDetail(_SDKModel):
    """The details of a stream's ``status`` event."""

    type: str = ""
    message_creation: RunMessageCreation | None = None
    run_object: RunResult | None = None
    run_step_object: RunStepResult | None = None
    tool_calls: list[ToolCall] | None = None
    error_info: LastError | None = None


@attrs.define(kw_only=True)
class StreamRunStatus(_SDKModel):
    """A stream's ``status`` event (``event_type`` says what happened)."""

    event: str = "status"
    status: str = ""
    send_id: int = 0
    message: str = ""
    event_type: str = ""
    details: StreamRunDetail | None = None


@attrs.define(kw_only=True)
class StreamRunMessage(_SDKModel):
    """A stream's ``message`` event (a piece of the answer; ``is_end`` 1 on the last)."""

    event: str = "message"
    status: str = ""
    send_id: int = 0
    is_end: int = 0
    message_id: str = ""
    message_index: str = ""
    content: list[AssistantContent] | None = None


@attrs.define(kw_only=True)
class ToolOutput(_SDKModel):
    """The output of one tool call, submitted back to the run."""

    tool_call_id: str = ""
    output: str = ""
    run_id: str = ""


def _sdk_event(event: Any) -> Any:
    """A stream event as the SDK's model (an event of an unknown kind stays aioagents' ``UnknownEvent``)."""
    if isinstance(event, StatusEvent):
        return StreamRunStatus.model_validate(event)
    if isinstance(event, MessageEvent):
        return StreamRunMessage.model_validate(event)
    return event


# -- streaming with an event handler (the SDK's stream_helper) --------------------------------------------------
class StreamRunContext:
    """What a streaming run is at: the current event, tool calls, run, step, thread and assistant ids.

    The handler keeps it up to date (``run_begin`` sets the run, thread and assistant; ``tool_calls`` the tool
    calls; ``tool_step_begin``/``tool_step_end`` the step), so a callback can submit tool outputs with
    ``self.stream_run_context.current_run_id``.
    """

    def __init__(self) -> None:
        self._current_event: StreamRunStatus | StreamRunMessage | None = None
        self._current_tool_calls: list[ToolCall] | None = None
        self._current_run_id: str | None = None
        self._current_run_step_id: str | None = None
        self._current_thread_id: str | None = None
        self._current_assistant_id: str | None = None

    @staticmethod
    def _id(value: Any) -> str | None:
        return value if isinstance(value, str) and value else None

    @property
    def current_event(self) -> StreamRunStatus | StreamRunMessage | None:
        """The event being handled."""
        return self._current_event

    def set_current_event(self, event: Any) -> None:
        """Set the event being handled (anything but a status or message event clears it)."""
        self._current_event = event if isinstance(event, (StreamRunStatus, StreamRunMessage)) else None

    @property
    def current_tool_calls(self) -> list[ToolCall] | None:
        """The tool calls the run waits for."""
        return self._current_tool_calls

    def set_current_tool_calls(self, tool_calls: Any) -> None:
        """Set the tool calls (an empty or missing list clears them)."""
        if isinstance(tool_calls, list) and tool_calls:
            if not all(isinstance(call, ToolCall) for call in tool_calls):
                raise TypeError("current_tool_calls should be a list of ToolCall objects")
            self._current_tool_calls = tool_calls
        else:
            self._current_tool_calls = None

    # The four ids: each a read-only ``current_<name>`` and a ``set_current_<name>(value)`` that keeps only a
    # non-empty string (anything else clears it), as the SDK's.
    current_run_id = property(lambda self: self._current_run_id, doc="The run's id.")
    current_run_step_id = property(lambda self: self._current_run_step_id, doc="The current step's id.")
    current_thread_id = property(lambda self: self._current_thread_id, doc="The thread's id.")
    current_assistant_id = property(lambda self: self._current_assistant_id, doc="The assistant's id.")

    def set_current_run_id(self, run_id: Any) -> None:
        """Set the run's id."""
        self._current_run_id = self._id(run_id)

    def set_current_run_step_id(self, run_step_id: Any) -> None:
        """Set the current step's id."""
        self._current_run_step_id = self._id(run_step_id)

    def set_current_thread_id(self, thread_id: Any) -> None:
        """Set the thread's id."""
        self._current_thread_id = self._id(thread_id)

    def set_current_assistant_id(self, assistant_id: Any) -> None:
        """Set the assistant's id."""
        self._current_assistant_id = self._id(assistant_id)

    def reset_step_context(self) -> None:
        """Forget the per-event parts (tool calls, step, event) before the next event."""
        self._current_tool_calls = None
        self._current_run_step_id = None
        self._current_event = None


class AssistantEventHandler:
    """Handles a streaming run's events: subclass it and override the callbacks you need.

    >>> class Handler(AssistantEventHandler):
    ...     def tool_calls(self, status_event):
    ...         ctx = self.stream_run_context
    ...         assistant.threads.runs.submit_tool_outputs(ctx.current_run_id, ctx.current_thread_id, outputs)
    >>> with assistant.threads.runs.stream_run_with_handler(assistant_id, thread_id, event_handler=Handler()) as s:
    ...     s.until_done()

    Iterating yields every event after its callback ran. A failure of the stream raises the SDK's exception (the
    SDK logged it and stopped quietly).
    """

    _events: Iterator[Any] | None = None

    def _init(self, response: Iterator[Any]) -> None:
        self._response = response
        self._events = self._stream()
        self.stream_run_context = StreamRunContext()

    def _stream(self) -> Iterator[Any]:
        assert self._response is not None
        for event in self._response:
            self.stream_run_context.reset_step_context()
            yield self._process(event)

    def _process(self, event: Any) -> Any:
        if isinstance(event, StreamRunMessage):
            self.stream_run_context.set_current_event(event)
            self.messages(event)
        elif isinstance(event, StreamRunStatus):
            self.stream_run_context.set_current_event(event)
            details = event.details
            if event.event_type == "run_begin" and details is not None and details.run_object is not None:
                run = details.run_object
                self.stream_run_context.set_current_run_id(run.id)
                self.stream_run_context.set_current_assistant_id(run.assistant_id)
                self.stream_run_context.set_current_thread_id(run.thread_id)
            elif event.event_type == "tool_calls" and details is not None:
                self.stream_run_context.set_current_tool_calls(details.tool_calls)
            elif event.event_type in ("tool_step_begin", "tool_step_end") and details is not None:
                step = details.run_step_object
                self.stream_run_context.set_current_run_step_id(step.id if step is not None else None)
            callback = self._callbacks().get(event.event_type)
            if callback is not None:
                callback(event)
            else:
                log.warning("unknown status event %r: %r", event.event_type, event)
        return event

    def _callbacks(self) -> dict[str, Callable[[StreamRunStatus], None]]:
        return {
            "run_begin": self.run_begin,
            "run_end": self.run_end,
            "tool_step_begin": self.tool_step_begin,
            "tool_step_end": self.tool_step_end,
            "run_cancelling": self.run_cancelling,
            "tool_calls": self.tool_calls,
            "message_creation": self.message_creation,
            "tool_submitted_output": self.tool_submitted_output,
        }

    def __iter__(self) -> Iterator[Any]:
        if self._events is None:
            raise RuntimeError("the handler is not attached to a stream (use stream_run_with_handler)")
        return self._events

    def __next__(self) -> Any:
        return next(iter(self))

    def until_done(self) -> None:
        """Read the stream to its end (running the callbacks)."""
        for _ in self:
            pass

    def messages(self, messages_event: StreamRunMessage) -> None:
        """Called for each assistant text event."""

    def tool_calls(self, status_event: StreamRunStatus) -> None:
        """Called when the run waits for tool outputs (``stream_run_context.current_tool_calls``)."""

    def tool_submitted_output(self, status_event: StreamRunStatus) -> None:
        """Called when submitted tool outputs were taken."""

    def message_creation(self, status_event: StreamRunStatus) -> None:
        """Called when the assistant starts a message."""

    def run_begin(self, status_event: StreamRunStatus) -> None:
        """Called when the run starts."""

    def run_end(self, status_event: StreamRunStatus) -> None:
        """Called when the run ends (completed, cancelled, failed)."""

    def tool_step_begin(self, status_event: StreamRunStatus) -> None:
        """Called when a tool step starts."""

    def tool_step_end(self, status_event: StreamRunStatus) -> None:
        """Called when a tool step ends."""

    def run_cancelling(self, status_event: StreamRunStatus) -> None:
        """Called when a cancel is under way."""


class AssistantStreamManager:
    """What ``stream_run_with_handler`` returns: ``with`` it to get the handler; leaving closes the stream."""

    def __init__(self, response: Iterator[Any], event_handler: AssistantEventHandler) -> None:
        self._response = response
        self._event_handler = event_handler
        self._event_handler._init(response)

    def __enter__(self) -> AssistantEventHandler:
        return self._event_handler

    def __exit__(self, *exc: object) -> None:
        close = getattr(self._response, "close", None)
        if callable(close):
            close()


class Files:
    """``appbuilder.assistant.assistants.files``."""

    def create(self, file_path: str, purpose: str = "assistant") -> AssistantFilesCreateResponse:
        """Upload a file (streamed)."""
        if purpose != "assistant":
            raise ValueError("purpose must be 'assistant'")
        return AssistantFilesCreateResponse._from(_client().files.create(file_path))

    def list(self) -> AssistantFilesListResponse:
        """Every uploaded file."""
        return AssistantFilesListResponse._from(_client().files.list())

    def query(self, file_id: str) -> AssistantFilesQueryResponse:
        """One file."""
        if not isinstance(file_id, str):
            raise TypeError("file_id must be str")
        return AssistantFilesQueryResponse._from(_client().files.query(file_id))

    def delete(self, file_id: str) -> AssistantFilesDeleteResponse:
        """Delete a file."""
        return AssistantFilesDeleteResponse._from(_client().files.delete(file_id))

    def download(self, file_id: str, file_path: str = "", timeout: float | None = None) -> None:
        """Save a file into the directory ``file_path`` (default: the current one), under the service's name."""
        _client().files.download(file_id, Path(file_path or "."), timeout=timeout)

    def content(self, file_id: str, timeout: float | None = None) -> AssistantFilesContentResponse:
        """The file's bytes and content type (``.content``, ``.content_type``)."""
        return AssistantFilesContentResponse._from(_client().files.content(file_id, timeout=timeout))


def _settings(arguments: dict[str, Any]) -> dict[str, Any]:
    """The SDK's assistant settings (``create``'s or ``update``'s arguments) as the native client takes them."""
    return {**arguments, "tools": [_plain(t) for t in arguments["tools"]], "file_ids": list(arguments["file_ids"])}


class Assistants:
    """``appbuilder.assistant.assistants``."""

    @property
    def files(self) -> Files:
        """File uploads (the SDK keeps them under ``assistants``)."""
        return Files()

    def create(
        self,
        name: str,
        description: str,
        model: str = "ERNIE-4.0T-8K",
        response_format: str = "text",
        instructions: str = _DEFAULT_INSTRUCTIONS,
        thought_instructions: str = "",
        chat_instructions: str = "",
        tools: Sequence[Any] = (),
        file_ids: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> AssistantCreateResponse:
        """Create an assistant."""
        return AssistantCreateResponse._from(_client().assistants.create(**_settings(_given(locals()))))

    def update(
        self,
        assistant_id: str,
        model: str,
        name: str,
        description: str,
        instructions: str = "",
        tools: Sequence[Any] = (),
        thought_instructions: str = "",
        chat_instructions: str = "",
        response_format: str = "text",
        file_ids: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> AssistantUpdateResponse:
        """Replace an assistant's settings."""
        settings = _settings(_given(locals()))
        return AssistantUpdateResponse._from(_client().assistants.update(settings.pop("assistant_id"), **settings))

    def list(self, limit: int = 20, order: str = "desc", after: str = "", before: str = "") -> AssistantListResponse:
        """One page of assistants."""
        return AssistantListResponse._from(_client().assistants.list(**_given(locals())))

    def query(self, assistant_id: str) -> AssistantQueryResponse:
        """One assistant."""
        return AssistantQueryResponse._from(_client().assistants.query(assistant_id))

    def delete(self, assistant_id: str) -> AssistantDeleteResponse:
        """Delete an assistant."""
        return AssistantDeleteResponse._from(_client().assistants.delete(assistant_id))

    def mount_files(self, assistant_id: str, file_id: str) -> AssistantFilesResponse:
        """Mount a file on an assistant."""
        return AssistantFilesResponse._from(_client().assistants.mount_files(assistant_id, file_id))

    def mounted_files_list(
        self, assistant_id: str, limit: int = 20, order: str = "desc", after: str = "", before: str = ""
    ) -> AssistantMountedFilesListResponse:
        """One page of the files mounted on an assistant."""
        return AssistantMountedFilesListResponse._from(_client().assistants.mounted_files_list(**_given(locals())))

    def unmount_files(self, assistant_id: str, file_id: str) -> AssistantFilesDeleteResponse:
        """Unmount a file from an assistant."""
        return AssistantFilesDeleteResponse._from(_client().assistants.unmount_files(assistant_id, file_id))


class Messages:
    """``appbuilder.assistant.threads.messages``."""

    def create(
        self, thread_id: str, content: str, role: str = "user", file_ids: Sequence[str] = ()
    ) -> AssistantMessageCreateResponse:
        """Add a user message to a thread."""
        if role != "user":
            raise ValueError("only user messages can be created")
        return AssistantMessageCreateResponse._from(
            _client().threads.messages.create(thread_id, content, file_ids=list(file_ids))
        )

    def update(
        self, thread_id: str, message_id: str, content: str, file_ids: Sequence[str] | None = None
    ) -> AssistantMessageUpdateResponse:
        """Change a message's content (and its files when ``file_ids`` is given)."""
        return AssistantMessageUpdateResponse._from(
            _client().threads.messages.update(thread_id, message_id, content=content, file_ids=file_ids)
        )

    def list(
        self, thread_id: str, limit: int = 20, order: str = "desc", after: str = "", before: str = ""
    ) -> AssistantMessageListResponse:
        """One page of a thread's messages."""
        return AssistantMessageListResponse._from(_client().threads.messages.list(**_given(locals())))

    def query(self, thread_id: str, message_id: str) -> AssistantMessageQueryResponse:
        """One message."""
        return AssistantMessageQueryResponse._from(_client().threads.messages.query(thread_id, message_id))

    def files(
        self,
        thread_id: str,
        message_id: str,
        limit: int = 20,
        order: str = "desc",
        after: str = "",
        before: str = "",
    ) -> AssistantMessageFilesResponse:
        """One page of a message's files."""
        return AssistantMessageFilesResponse._from(_client().threads.messages.files(**_given(locals())))


class Steps:
    """``appbuilder.assistant.threads.runs.steps``."""

    def list(
        self, thread_id: str, run_id: str, limit: int = 20, order: str = "desc", after: str = "", before: str = ""
    ) -> RunStepListResponse:
        """One page of a run's steps."""
        return RunStepListResponse._from(_client().threads.runs.steps.list(**_given(locals())))

    def query(self, thread_id: str, run_id: str, step_id: str) -> RunStepResult:
        """One step."""
        return RunStepResult._from(_client().threads.runs.steps.query(thread_id, run_id, step_id))


def _given(arguments: dict[str, Any]) -> dict[str, Any]:
    """A method's arguments (its ``locals()`` on entry) without ``self``."""
    return {name: value for name, value in arguments.items() if name != "self"}


def _parameters_of(template: Callable[_P, Any]) -> Callable[[Callable[[Any, dict[str, Any]], _R]], Callable[_P, _R]]:
    """Give a method the parameters of ``template``, which declares them once (the SDK's ``run`` and
    ``stream_run`` take the same 14, in the same order): its signature, for callers, type checkers and ``inspect``;
    the method receives them bound to their names, defaults applied, as one dict."""
    signature = inspect.signature(template)

    def decorate(method: Callable[[Any, dict[str, Any]], _R]) -> Callable[_P, _R]:
        @functools.wraps(method)
        def bound(*args: Any, **kwargs: Any) -> _R:
            arguments = signature.bind(*args, **kwargs)
            arguments.apply_defaults()
            params = dict(arguments.arguments)
            return method(params.pop("self"), params)

        returns = inspect.signature(method).return_annotation
        bound.__signature__ = signature.replace(return_annotation=returns)  # type: ignore[attr-defined]
        return cast(Callable[_P, _R], bound)

    return decorate


class Runs:
    """``appbuilder.assistant.threads.runs``."""

    @property
    def steps(self) -> Steps:
        """A run's steps."""
        return Steps()

    @staticmethod
    def _args(params: dict[str, Any]) -> RunParameters:
        """The SDK's run parameters as the native client takes them."""
        if not params["thread_id"] and params["thread"] is None:
            raise ValueError("thread_id and thread can't be empty at the same time")
        info, loc = _plain(params["user_info"]), _plain(params["user_loc"])
        native: RunParameters = {
            "assistant_id": params["assistant_id"],
            "thread_id": params["thread_id"] or None,
            "thread": _thread_messages(params["thread"]),
            "model": params["model"],
            "response_format": params["response_format"],
            "instructions": params["instructions"],
            "thought_instructions": params["thought_instructions"],
            "chat_instructions": params["chat_instructions"],
            "tools": [_plain(t) for t in params["tools"]],
            "metadata": params["metadata"],
            "tool_output": _plain(params["tool_output"]),
            "model_parameters": _model_parameters(params["model_parameters"]),
            "user_info": None if info is None else UserInfo(**info),
            "user_loc": None if loc is None else UserLocation(**loc),
        }
        return native

    def run(
        self,
        assistant_id: str,
        thread_id: str = "",
        thread: Any = None,
        model: str | None = None,
        response_format: str = "text",
        instructions: str | None = None,
        thought_instructions: str | None = None,
        chat_instructions: str | None = None,
        tools: Sequence[Any] = (),
        metadata: Mapping[str, str] | None = None,
        tool_output: Any = None,
        model_parameters: Any = None,
        user_info: Any = None,
        user_loc: Any = None,
    ) -> RunResult:
        """Run the assistant on a thread and wait for the result (``requires_action`` when tools are needed)."""
        return RunResult._from(_client().threads.runs.run(**self._args(_given(locals()))))

    @_parameters_of(run)
    def stream_run(self, params: dict[str, Any]) -> Iterator[StreamRunStatus | StreamRunMessage | Any]:
        """Run the assistant and yield its events (each once, ``ping`` skipped, the ``run_end`` status last).

        Takes :meth:`run`'s parameters, in the SDK's order (``assistant_id, thread_id="", thread=None, …``); they
        arrive here bound, as ``params``."""
        return TranslatedStream(_client().threads.runs.stream(**self._args(params)), _sdk_error, _sdk_event)

    def stream_run_with_handler(
        self,
        assistant_id: str,
        thread_id: str = "",
        thread: Any = None,
        model: str | None = None,
        response_format: str = "text",
        instructions: str | None = None,
        thought_instructions: str | None = None,
        chat_instructions: str | None = None,
        tools: Sequence[Any] = (),
        metadata: Mapping[str, str] | None = None,
        tool_output: Any = None,
        event_handler: AssistantEventHandler | None = None,
        model_parameters: Any = None,
        user_info: Any = None,
        user_loc: Any = None,
    ) -> AssistantStreamManager:
        """Run the assistant with its events going through ``event_handler`` (a plain
        :class:`AssistantEventHandler` when None); the SDK's positional order, ``event_handler`` after
        ``tool_output``."""
        params = _given(locals())
        handler = params.pop("event_handler") or AssistantEventHandler()
        return AssistantStreamManager(self.stream_run(**params), handler)

    def submit_tool_outputs(self, run_id: str, thread_id: str, tool_outputs: Sequence[Any]) -> RunResult:
        """Answer the tool calls of a streaming run."""
        return RunResult._from(
            _client().threads.runs.submit_tool_outputs(thread_id, run_id, [_plain(o) for o in tool_outputs])
        )

    def cancel(self, run_id: str, thread_id: str, sync: bool = False) -> RunResult:
        """Cancel a run (``sync=True`` is not supported by the service and is refused)."""
        if sync:
            raise ValueError("sync cancel is not supported")
        return RunResult._from(_client().threads.runs.cancel(thread_id, run_id))

    def list(
        self, thread_id: str, limit: int = 20, order: str = "desc", after: str = "", before: str = ""
    ) -> RunListResponse:
        """One page of a thread's runs."""
        return RunListResponse._from(_client().threads.runs.list(**_given(locals())))

    def query(self, thread_id: str, run_id: str) -> RunResult:
        """One run."""
        return RunResult._from(_client().threads.runs.query(thread_id, run_id))


class Threads:
    """``appbuilder.assistant.threads``."""

    @property
    def messages(self) -> Messages:
        """A thread's messages."""
        return Messages()

    @property
    def runs(self) -> Runs:
        """A thread's runs."""
        return Runs()

    def create(self, messages: Sequence[Any] = ()) -> ThreadCreateResponse:
        """Create a thread, optionally with first messages."""
        return ThreadCreateResponse._from(_client().threads.create(messages=[_plain(m) for m in messages]))

    def query(self, thread_id: str) -> ThreadQueryResponse:
        """One thread."""
        return ThreadQueryResponse._from(_client().threads.query(thread_id))

    def delete(self, thread_id: str) -> ThreadDeleteResponse:
        """Delete a thread."""
        return ThreadDeleteResponse._from(_client().threads.delete(thread_id))

    def update(self, thread_id: str, metadata: Mapping[str, str] | None = None) -> ThreadUpdateResponse:
        """Set a thread's metadata (sent, unlike the SDK)."""
        return ThreadUpdateResponse._from(_client().threads.update(thread_id, metadata=dict(metadata or {})))


class _AssistantNamespace:
    """``appbuilder.assistant``: ``assistants`` and ``threads``."""

    @property
    def assistants(self) -> Assistants:
        """Assistants (and ``assistants.files``)."""
        return Assistants()

    @property
    def threads(self) -> Threads:
        """Threads (and ``threads.messages``, ``threads.runs``, ``threads.runs.steps``)."""
        return Threads()


#: The SDK's ``appbuilder.assistant``.
assistant = _AssistantNamespace()


def stream_run_with_handler(*args: Any, **kwargs: Any) -> AssistantStreamManager:
    """``assistant.threads.runs.stream_run_with_handler`` (same arguments)."""
    return assistant.threads.runs.stream_run_with_handler(*args, **kwargs)
