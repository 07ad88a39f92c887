"""The data of an LM function: messages, API options, examples, and the definition built from them.

These are slambda's types (same names, fields and rules) as frozen attrs classes. The rules that turn examples into
a prompt live here as pure functions, exactly as slambda 0.0.15 applies them:

* The **input type** is inferred from the examples (``K`` dict, ``P`` str, ``N`` None): ``K+P`` is an error;
  ``K+N`` needs a dict ``default_args``; ``P+N`` a str one; only ``N`` takes its type from ``default_args`` and is
  nullary only with ``strict_no_args=True``. ``allow_none`` is true when a default of the right type exists.
* The **output type**: all str outputs → text, all dict/list outputs → JSON (``cast_to_json``), a mix is an error.
* The **prompt**: ``system`` instruction; per example a ``system`` message named ``example_user`` (the rendered
  input) and one named ``example_assistant`` (the rendered output: ``json.dumps`` defaults for JSON); then, per call,
  any extra messages and the ``user`` message with the rendered call input.
* **Rendering** a keyword input: ``template.format(**input)`` or one ``key: value`` line per item (``str(value)``);
  each of ``required_args`` must be present. A unary input must be a str. A missing input falls back to
  ``default_args``.

Misuse raises :class:`LmFunctionError`, which is also a ``ValueError`` as slambda's errors were.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, Literal, TypeVar, Union

import attrs

from aioagents._exceptions import AioAgentsError, InvalidRequestError

__all__ = [
    "Definition",
    "Example",
    "ExampleStyle",
    "FunctionInput",
    "FunctionInputConfig",
    "FunctionInputType",
    "FunctionOutput",
    "FunctionOutputConfig",
    "GptApiOptions",
    "LmFunctionError",
    "LmOutputCastingError",
    "Message",
    "Role",
    "extract_required_keywords",
]

FunctionInput = Union[str, dict[str, Any]]  # noqa: UP007 (a runtime alias on 3.10)
FunctionOutput = Union[str, list[Any], dict[str, Any]]  # noqa: UP007

ExampleStyle = Literal["system_named", "user_assistant"]
"""How examples are sent: slambda's ``system`` messages named ``example_user`` / ``example_assistant`` (the
default, the published layout), or plain ``user`` / ``assistant`` turns (for servers that drop ``name``)."""


class LmFunctionError(InvalidRequestError):
    """An LM function was defined or called wrongly (also a ``ValueError``, as slambda raised)."""


class LmOutputCastingError(AioAgentsError):
    """The model's output could not be read as JSON although the function returns JSON.

    ``llm_output`` keeps the raw text (``None`` when the model sent no content at all, e.g. only a refusal).
    """

    def __init__(self, llm_output: str | None, message: str = "cannot cast language model output") -> None:
        self.llm_output = llm_output
        self.message = message
        super().__init__(message)


class Role(str, Enum):
    """The role of a chat message."""

    system = "system"
    user = "user"
    assistant = "assistant"
    function = "function"


_Msg = TypeVar("_Msg", bound="Message")


@attrs.frozen(kw_only=True)
class Message:
    """A chat message: ``role``, ``content`` and an optional author ``name``.

    >>> Message.user("My name is Ada.")
    >>> Message(role="system", content="Be brief.", name="policy")
    """

    role: Role = attrs.field(converter=Role)
    content: str
    name: str | None = None

    # Class methods, so a subclass (compat.slambda's) builds its own kind.
    @classmethod
    def user(cls: type[_Msg], content: str, name: str | None = None) -> _Msg:
        return cls(role=Role.user, content=content, name=name)

    @classmethod
    def assistant(cls: type[_Msg], content: str, name: str | None = None) -> _Msg:
        return cls(role=Role.assistant, content=content, name=name)

    @classmethod
    def system(cls: type[_Msg], content: str, name: str | None = None) -> _Msg:
        return cls(role=Role.system, content=content, name=name)

    @classmethod
    def example_user(cls: type[_Msg], content: str) -> _Msg:
        """An example's input: a ``system`` message named ``example_user`` (the few-shot layout of slambda)."""
        return cls(role=Role.system, content=content, name="example_user")

    @classmethod
    def example_assistant(cls: type[_Msg], content: str) -> _Msg:
        """An example's output: a ``system`` message named ``example_assistant``."""
        return cls(role=Role.system, content=content, name="example_assistant")

    def to_wire(self) -> dict[str, Any]:
        """The message as the API takes it; ``name`` only when set."""
        out: dict[str, Any] = {"role": self.role.value, "content": self.content}
        if self.name is not None:
            out["name"] = self.name
        return out


def _opt_float(value: Any) -> float | None:
    # pydantic's float fields turn 0 into 0.0; the request body must match slambda's byte for byte in type too.
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_bias(value: Any) -> dict[int, int] | None:
    return None if value is None else {int(k): int(v) for k, v in dict(value).items()}


_OPTION_FIELDS = (
    "model",
    "temperature",
    "n",
    "top_p",
    "stream",
    "stop",
    "max_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
)


@attrs.frozen(kw_only=True)
class GptApiOptions:
    """Chat Completions options of a function. ``None`` fields are not sent.

    ``model`` defaults to ``gpt-4o-mini`` as in slambda 0.0.15 (the older docs' ``gpt-3.5-turbo`` is retired).
    """

    model: str = "gpt-4o-mini"
    temperature: float | None = attrs.field(default=None, converter=_opt_float)
    n: int | None = attrs.field(default=None, converter=_opt_int)
    top_p: float | None = attrs.field(default=None, converter=_opt_float)
    stream: bool | None = None
    stop: str | list[str] | None = None
    max_tokens: int | None = attrs.field(default=None, converter=_opt_int)
    presence_penalty: float | None = attrs.field(default=None, converter=_opt_float)
    frequency_penalty: float | None = attrs.field(default=None, converter=_opt_float)
    logit_bias: dict[int, int] | None = attrs.field(default=None, converter=_opt_bias)
    user: str | None = None

    @staticmethod
    def _check_override(override: Mapping[str, Any]) -> None:
        unknown = sorted(set(override) - set(_OPTION_FIELDS))
        if unknown:
            raise LmFunctionError(f"cannot override {', '.join(unknown)}; overridable: {', '.join(_OPTION_FIELDS)}")

    def merged(self, override: Mapping[str, Any] | None) -> GptApiOptions:
        """These options with a call's ``__override`` applied (unknown keys are an error, not silently dropped)."""
        if not override:
            return self
        self._check_override(override)
        return attrs.evolve(self, **override)

    def to_wire(self, override: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The set options as request fields (``logit_bias`` keys become strings in JSON).

        A call's ``override`` values are sent as given, as slambda sends them (``temperature=0`` stays ``0``, where
        the function's own options were normalised like pydantic's, ``0.0``); an override of ``None`` unsets.
        """
        wire = {name: getattr(self, name) for name in _OPTION_FIELDS if getattr(self, name) is not None}
        if override:
            self._check_override(override)
            for name, value in override.items():
                if value is None:
                    wire.pop(name, None)
                else:
                    wire[name] = value
        return wire


class FunctionInputType(str, Enum):
    """How a function is called: with keyword arguments (``f(a=10)``) or one positional argument (``f("text")``)."""

    KEYWORD = "keyword"
    UNARY = "unary"

    @staticmethod
    def of_value(value: Any, strict: bool = True) -> FunctionInputType | None:
        """The input type of a value; with ``strict`` an empty str or dict counts as no input."""
        if isinstance(value, str):
            return None if strict and value == "" else FunctionInputType.UNARY
        if isinstance(value, dict):
            return None if strict and not value else FunctionInputType.KEYWORD
        if value is None:
            return None
        raise LmFunctionError("an input must be None, a str or a dict")


@attrs.frozen(kw_only=True)
class FunctionInputConfig:
    """What a function accepts: ``input_type``; ``allow_none`` (may be called without input, using the default);
    ``strict_no_args`` (a nullary function: any argument is an error)."""

    input_type: FunctionInputType = attrs.field(converter=FunctionInputType)
    allow_none: bool = False
    strict_no_args: bool = False

    @staticmethod
    def unary(allow_none: bool) -> FunctionInputConfig:
        return FunctionInputConfig(input_type=FunctionInputType.UNARY, allow_none=allow_none)

    @staticmethod
    def keyword(allow_none: bool) -> FunctionInputConfig:
        return FunctionInputConfig(input_type=FunctionInputType.KEYWORD, allow_none=allow_none)

    @staticmethod
    def nullary_keyword() -> FunctionInputConfig:
        return FunctionInputConfig(input_type=FunctionInputType.KEYWORD, allow_none=True, strict_no_args=True)

    @staticmethod
    def nullary_pos() -> FunctionInputConfig:
        return FunctionInputConfig(input_type=FunctionInputType.UNARY, allow_none=True, strict_no_args=True)


@attrs.frozen(kw_only=True)
class FunctionOutputConfig:
    """What a function returns: text, or (``cast_to_json``) the output parsed with ``json.loads``.

    ``strip_code_fence`` removes a surrounding Markdown fence (```json … ```) before parsing, which chat models add
    although the examples have none. slambda never did; it is off by default.
    """

    cast_to_json: bool = False
    strip_code_fence: bool = False


def _check_input(value: Any) -> Any:
    if value is not None and not isinstance(value, (str, dict)):
        raise LmFunctionError("an example input must be None, a str or a dict")
    return value


def _check_output(value: Any) -> Any:
    if not isinstance(value, (str, dict, list)):
        raise LmFunctionError("an example output must be a str, a dict or a list")
    return value


@attrs.frozen(init=False)
class Example:
    """One input/output pair: ``input`` is None, a str or a dict; ``output`` a str, a dict or a list.

    >>> Example("I love it", "positive")
    >>> Example(input={"a": 1, "b": 2}, output="3")
    >>> Example(output="Keep going.")       # no input: the function's default_args is rendered instead
    """

    input: FunctionInput | None = attrs.field(validator=lambda _i, _a, v: _check_input(v))
    output: FunctionOutput = attrs.field(validator=lambda _i, _a, v: _check_output(v))

    def __init__(self, input: FunctionInput | None = None, output: FunctionOutput | None = None) -> None:
        if output is None:
            raise LmFunctionError("an Example needs an output")
        self.__attrs_init__(input, output)

    @property
    def input_type(self) -> FunctionInputType | None:
        return FunctionInputType.of_value(self.input)


def extract_required_keywords(template: str) -> list[str]:
    """The placeholder names of a ``str.format`` template, in order (as slambda computes ``required_args``)."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


@attrs.frozen(kw_only=True)
class Definition:
    """Everything an LM function is: built by :meth:`LmFunction.create <aioagents.functions.LmFunction.create>`.

    ``message_stack`` is the prebuilt prefix (instruction and examples) that every call starts with.
    """

    instruction: str
    examples: list[Example]
    message_stack: list[Message]
    input_config: FunctionInputConfig
    output_config: FunctionOutputConfig
    default_args: FunctionInput | None = None
    message_template: str | None = None
    required_args: list[str] | None = None
    gpt_opts: GptApiOptions = attrs.field(factory=GptApiOptions)
    name: str | None = None
    example_style: ExampleStyle = "system_named"

    # -- serialisation ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The definition as JSON-ready data (what slambda's pydantic ``model_dump`` gave); see :meth:`from_dict`."""
        return {
            "instruction": self.instruction,
            "examples": [{"input": e.input, "output": e.output} for e in self.examples],
            "message_stack": [m.to_wire() for m in self.message_stack],
            "input_config": {
                "input_type": self.input_config.input_type.value,
                "allow_none": self.input_config.allow_none,
                "strict_no_args": self.input_config.strict_no_args,
            },
            "output_config": attrs.asdict(self.output_config),
            "default_args": self.default_args,
            "message_template": self.message_template,
            "required_args": self.required_args,
            "gpt_opts": {
                **attrs.asdict(self.gpt_opts),
                "logit_bias": None
                if self.gpt_opts.logit_bias is None
                else {str(k): v for k, v in self.gpt_opts.logit_bias.items()},
            },
            "name": self.name,
            "example_style": self.example_style,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Definition:
        """Rebuild a definition from :meth:`to_dict` data (the prebuilt messages are taken as stored)."""
        try:
            return cls(
                instruction=data["instruction"],
                examples=[Example(e.get("input"), e["output"]) for e in data["examples"]],
                message_stack=[Message(**m) for m in data["message_stack"]],
                input_config=FunctionInputConfig(**data["input_config"]),
                output_config=FunctionOutputConfig(**data.get("output_config", {})),
                default_args=data.get("default_args"),
                message_template=data.get("message_template"),
                required_args=data.get("required_args"),
                gpt_opts=GptApiOptions(**(data.get("gpt_opts") or {})),
                name=data.get("name"),
                example_style=data.get("example_style", "system_named"),
            )
        except (KeyError, TypeError) as exc:
            raise LmFunctionError(f"not a function definition: {exc}") from exc

    # -- inference --------------------------------------------------------------------------------------------
    @staticmethod
    def detect_input_output_type(
        examples: Sequence[Example],
        default_args: FunctionInput | None = None,
        strict_no_args: bool = False,
    ) -> tuple[FunctionInputConfig, FunctionOutputConfig]:
        """Infer the input and output configuration from the examples (the table in the module docstring)."""
        if not examples:
            raise LmFunctionError("no examples are provided")
        kinds = set()
        outputs = set()
        for example in examples:
            if not isinstance(example, Example):
                raise LmFunctionError("every example must be an Example")
            kinds.add(example.input_type)
            outputs.add("json" if isinstance(example.output, (dict, list)) else "str")
        if outputs == {"json", "str"}:
            raise LmFunctionError("the examples mix string and JSON (dict/list) outputs")
        output_config = FunctionOutputConfig(cast_to_json=outputs == {"json"})
        return _input_config(kinds, default_args, strict_no_args), output_config

    # -- rendering ------------------------------------------------------------------------------------------------
    @staticmethod
    def render_input(
        input_config: FunctionInputConfig,
        input_arg: FunctionInput | None,
        default_args: FunctionInput | None,
        required_args: Sequence[str] | None,
        message_template: str | None,
    ) -> str:
        """The text of a (call or example) input."""
        if input_config.input_type == FunctionInputType.KEYWORD:
            if input_arg is None or len(input_arg) == 0:
                if default_args is None:
                    raise LmFunctionError("default_args is missing")
                input_arg = default_args
            if not isinstance(input_arg, dict):
                raise LmFunctionError("function input must be a dict object for this function")
            for key in required_args or ():
                if key not in input_arg:
                    raise LmFunctionError(f"{key} is required but not provided")
            if message_template is not None:
                return message_template.format(**input_arg)
            return "\n".join(f"{k}: {v}" for k, v in input_arg.items())
        if input_arg is None:
            if default_args is None:
                raise LmFunctionError("default_args is missing")
            input_arg = default_args
        if not isinstance(input_arg, str):
            raise LmFunctionError("function input must be a str for this function")
        return input_arg

    @staticmethod
    def render_output_example(output_config: FunctionOutputConfig, example_output: FunctionOutput) -> str:
        """The text of an example's output (``json.dumps`` defaults for a JSON function)."""
        if output_config.cast_to_json:
            if not isinstance(example_output, (dict, list)):
                raise LmFunctionError("example output must be a dict or list for a JSON function")
            return json.dumps(example_output)
        if not isinstance(example_output, str):
            raise LmFunctionError("example output must be a str for a text function")
        return example_output

    @staticmethod
    def create_message_stack(
        instruction: str,
        examples: Sequence[Example],
        input_config: FunctionInputConfig,
        output_config: FunctionOutputConfig,
        default_args: FunctionInput | None,
        required_args: Sequence[str] | None,
        message_template: str | None,
        example_style: ExampleStyle = "system_named",
    ) -> list[Message]:
        """The instruction and the rendered examples."""
        stack = [Message.system(instruction)]
        for example in examples:
            rendered_in = Definition.render_input(
                input_config, example.input, default_args, required_args, message_template
            )
            rendered_out = Definition.render_output_example(output_config, example.output)
            if example_style == "user_assistant":
                stack += [Message.user(rendered_in), Message.assistant(rendered_out)]
            else:
                stack += [Message.example_user(rendered_in), Message.example_assistant(rendered_out)]
        return stack

    @staticmethod
    def cast_lm_output(output_config: FunctionOutputConfig, llm_output: str | None) -> Any:
        """The function's value from the model's text: the text itself, or its JSON.

        Raises :class:`LmOutputCastingError` (keeping the raw text) when JSON is expected and the text is not JSON.
        """
        if not output_config.cast_to_json:
            if llm_output is None:
                raise LmOutputCastingError(None, "the model returned no text content")
            return llm_output
        if llm_output is None:
            raise LmOutputCastingError(None, "the model returned no text content to cast to JSON")
        text = strip_code_fence(llm_output) if output_config.strip_code_fence else llm_output
        try:
            return json.loads(text)
        except ValueError:
            raise LmOutputCastingError(llm_output) from None


_FENCE = re.compile(r"^\s*```[A-Za-z0-9_+-]*[ \t]*\r?\n(.*?)\r?\n?```\s*$", re.DOTALL)


def strip_code_fence(text: str) -> str:
    """The body of a Markdown code block that makes up the whole text (```json … ```); other text unchanged."""
    match = _FENCE.match(text)
    return match.group(1) if match else text


def _input_config(
    kinds: set[FunctionInputType | None], default_args: FunctionInput | None, strict_no_args: bool
) -> FunctionInputConfig:
    has_kw = FunctionInputType.KEYWORD in kinds
    has_pos = FunctionInputType.UNARY in kinds
    has_none = None in kinds
    default_type = FunctionInputType.of_value(default_args)
    if has_kw and has_pos:
        raise LmFunctionError("the examples mix keyword (dict) and unary (str) inputs")
    if has_kw:
        if has_none and default_type != FunctionInputType.KEYWORD:
            raise LmFunctionError(f"default_args and example input type differ ({default_type} != keyword)")
        return FunctionInputConfig.keyword(default_type == FunctionInputType.KEYWORD)
    if has_pos:
        if has_none and default_type != FunctionInputType.UNARY:
            raise LmFunctionError(f"default_args and example input type differ ({default_type} != unary)")
        return FunctionInputConfig.unary(default_type == FunctionInputType.UNARY)
    # Only examples without input: the default decides the type.
    if default_type == FunctionInputType.KEYWORD:
        return FunctionInputConfig.nullary_keyword() if strict_no_args else FunctionInputConfig.keyword(True)
    if default_type == FunctionInputType.UNARY:
        return FunctionInputConfig.nullary_pos() if strict_no_args else FunctionInputConfig.unary(True)
    raise LmFunctionError("examples without input need default_args (a str or a dict)")
