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
- answers are aioagents models (same field names: ``run.final_answer.message.content[0].text.value``), timestamps
  are ``datetime`` values (``None`` when unset) and errors are the aioagents error tree (a 200 with an ``error``
  body raises :class:`~aioagents.assistants.AssistantServerError`; bad arguments raise a ``ValueError`` before any
  request);
- ``threads.update`` sends ``metadata`` (the SDK drops it), and ``messages.update`` leaves the files alone unless
  ``file_ids`` is given (the SDK's ``[]`` default detaches them);
- ``stream_run`` yields each event once (``ping`` skipped) as typed events with ``.event``, ``.event_type``,
  ``.status``, ``.details`` and ``.content`` like the SDK's; ``stream_run_with_handler`` is not provided:
  use ``stream_run`` or :meth:`aioagents.assistants.Runs.stream_with_tools`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from aioagents.assistants import (
    Assistant,
    AssistantFile,
    DeletedObject,
    File,
    FileList,
    Message,
    MessageFile,
    ModelParameters,
    Page,
    Run,
    RunEvent,
    RunStep,
    SamplingParameters,
    Thread,
    UserInfo,
    UserLocation,
)
from aioagents.assistants.models import converter
from aioagents.sync import AssistantsClient

__all__ = ["assistant"]

_DEFAULT_INSTRUCTIONS = "你是百度制作的AI助手"

_lock = threading.Lock()
# One client per (token, gateway); their connections live on the sync bridge's loops, which close them at exit.
_clients: dict[tuple[str, str], AssistantsClient] = {}


def _client() -> AssistantsClient:
    token = os.environ.get("APPBUILDER_TOKEN", "")
    gateway = os.environ.get("GATEWAY_URL", "")
    if not token:
        raise ValueError("APPBUILDER_TOKEN is not set")
    with _lock:
        client = _clients.get((token, gateway))
        if client is None:
            client = _clients[(token, gateway)] = AssistantsClient(token=token, base_url=gateway or None)
        return client


def _plain(value: Any) -> Any:
    """SDK request objects (pydantic models), our attrs models and plain data, as JSON-ready data."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump()
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


class Files:
    """``appbuilder.assistant.assistants.files``."""

    def create(self, file_path: str, purpose: str = "assistant") -> File:
        """Upload a file (streamed)."""
        if purpose != "assistant":
            raise ValueError("purpose must be 'assistant'")
        return _client().files.create(file_path)

    def list(self) -> FileList:
        """Every uploaded file."""
        return _client().files.list()

    def query(self, file_id: str) -> File:
        """One file."""
        if not isinstance(file_id, str):
            raise TypeError("file_id must be str")
        return _client().files.query(file_id)

    def delete(self, file_id: str) -> DeletedObject:
        """Delete a file."""
        return _client().files.delete(file_id)

    def download(self, file_id: str, file_path: str = "", timeout: float | None = None) -> None:
        """Save a file into the directory ``file_path`` (default: the current one), under the service's name."""
        _client().files.download(file_id, Path(file_path or "."), timeout=timeout)

    def content(self, file_id: str, timeout: float | None = None) -> Any:
        """The file's bytes and content type (``.content``, ``.content_type``)."""
        return _client().files.content(file_id, timeout=timeout)


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
    ) -> Assistant:
        """Create an assistant."""
        return _client().assistants.create(
            name=name,
            description=description,
            model=model,
            response_format=response_format,
            instructions=instructions,
            thought_instructions=thought_instructions,
            chat_instructions=chat_instructions,
            tools=[_plain(t) for t in tools],
            file_ids=list(file_ids),
            metadata=metadata,
        )

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
    ) -> Assistant:
        """Replace an assistant's settings."""
        return _client().assistants.update(
            assistant_id,
            model=model,
            name=name,
            description=description,
            instructions=instructions,
            tools=[_plain(t) for t in tools],
            thought_instructions=thought_instructions,
            chat_instructions=chat_instructions,
            response_format=response_format,
            file_ids=list(file_ids),
            metadata=metadata,
        )

    def list(self, limit: int = 20, order: str = "desc", after: str = "", before: str = "") -> Page[Assistant]:
        """One page of assistants."""
        return _client().assistants.list(limit=limit, order=order, after=after, before=before)

    def query(self, assistant_id: str) -> Assistant:
        """One assistant."""
        return _client().assistants.query(assistant_id)

    def delete(self, assistant_id: str) -> DeletedObject:
        """Delete an assistant."""
        return _client().assistants.delete(assistant_id)

    def mount_files(self, assistant_id: str, file_id: str) -> AssistantFile:
        """Mount a file on an assistant."""
        return _client().assistants.mount_files(assistant_id, file_id)

    def mounted_files_list(
        self, assistant_id: str, limit: int = 20, order: str = "desc", after: str = "", before: str = ""
    ) -> Page[AssistantFile]:
        """One page of the files mounted on an assistant."""
        return _client().assistants.mounted_files_list(
            assistant_id, limit=limit, order=order, after=after, before=before
        )

    def unmount_files(self, assistant_id: str, file_id: str) -> DeletedObject:
        """Unmount a file from an assistant."""
        return _client().assistants.unmount_files(assistant_id, file_id)


class Messages:
    """``appbuilder.assistant.threads.messages``."""

    def create(self, thread_id: str, content: str, role: str = "user", file_ids: Sequence[str] = ()) -> Message:
        """Add a user message to a thread."""
        if role != "user":
            raise ValueError("only user messages can be created")
        return _client().threads.messages.create(thread_id, content, file_ids=list(file_ids))

    def update(self, thread_id: str, message_id: str, content: str, file_ids: Sequence[str] | None = None) -> Message:
        """Change a message's content (and its files when ``file_ids`` is given)."""
        return _client().threads.messages.update(thread_id, message_id, content=content, file_ids=file_ids)

    def list(
        self, thread_id: str, limit: int = 20, order: str = "desc", after: str = "", before: str = ""
    ) -> Page[Message]:
        """One page of a thread's messages."""
        return _client().threads.messages.list(thread_id, limit=limit, order=order, after=after, before=before)

    def query(self, thread_id: str, message_id: str) -> Message:
        """One message."""
        return _client().threads.messages.query(thread_id, message_id)

    def files(
        self,
        thread_id: str,
        message_id: str,
        limit: int = 20,
        order: str = "desc",
        after: str = "",
        before: str = "",
    ) -> Page[MessageFile]:
        """One page of a message's files."""
        return _client().threads.messages.files(
            thread_id, message_id, limit=limit, order=order, after=after, before=before
        )


class Steps:
    """``appbuilder.assistant.threads.runs.steps``."""

    def list(
        self, thread_id: str, run_id: str, limit: int = 20, order: str = "desc", after: str = "", before: str = ""
    ) -> Page[RunStep]:
        """One page of a run's steps."""
        return _client().threads.runs.steps.list(
            thread_id, run_id, limit=limit, order=order, after=after, before=before
        )

    def query(self, thread_id: str, run_id: str, step_id: str) -> RunStep:
        """One step."""
        return _client().threads.runs.steps.query(thread_id, run_id, step_id)


class Runs:
    """``appbuilder.assistant.threads.runs``."""

    @property
    def steps(self) -> Steps:
        """A run's steps."""
        return Steps()

    @staticmethod
    def _args(
        assistant_id: str,
        thread_id: str,
        thread: Any,
        model: str | None,
        response_format: str,
        instructions: str | None,
        thought_instructions: str | None,
        chat_instructions: str | None,
        tools: Sequence[Any],
        metadata: Mapping[str, str] | None,
        tool_output: Any,
        model_parameters: Any,
        user_info: Any,
        user_loc: Any,
    ) -> dict[str, Any]:
        if not thread_id and thread is None:
            raise ValueError("thread_id and thread can't be empty at the same time")
        info, loc = _plain(user_info), _plain(user_loc)
        return {
            "assistant_id": assistant_id,
            "thread_id": thread_id or None,
            "thread": _thread_messages(thread),
            "model": model,
            "response_format": response_format,
            "instructions": instructions,
            "thought_instructions": thought_instructions,
            "chat_instructions": chat_instructions,
            "tools": [_plain(t) for t in tools],
            "metadata": metadata,
            "tool_output": _plain(tool_output),
            "model_parameters": _model_parameters(model_parameters),
            "user_info": None if info is None else UserInfo(**info),
            "user_loc": None if loc is None else UserLocation(**loc),
        }

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
    ) -> Run:
        """Run the assistant on a thread and wait for the result (``requires_action`` when tools are needed)."""
        args = self._args(
            assistant_id,
            thread_id,
            thread,
            model,
            response_format,
            instructions,
            thought_instructions,
            chat_instructions,
            tools,
            metadata,
            tool_output,
            model_parameters,
            user_info,
            user_loc,
        )
        return _client().threads.runs.run(**args)

    def stream_run(
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
    ) -> Iterator[RunEvent]:
        """Run the assistant and yield its events (each once, ``ping`` skipped, the ``run_end`` status last)."""
        args = self._args(
            assistant_id,
            thread_id,
            thread,
            model,
            response_format,
            instructions,
            thought_instructions,
            chat_instructions,
            tools,
            metadata,
            tool_output,
            model_parameters,
            user_info,
            user_loc,
        )
        return _client().threads.runs.stream(**args)

    def submit_tool_outputs(self, run_id: str, thread_id: str, tool_outputs: Sequence[Any]) -> Run:
        """Answer the tool calls of a streaming run."""
        return _client().threads.runs.submit_tool_outputs(thread_id, run_id, [_plain(o) for o in tool_outputs])

    def cancel(self, run_id: str, thread_id: str, sync: bool = False) -> Run:
        """Cancel a run (``sync=True`` is not supported by the service and is refused)."""
        if sync:
            raise ValueError("sync cancel is not supported")
        return _client().threads.runs.cancel(thread_id, run_id)

    def list(
        self, thread_id: str, limit: int = 20, order: str = "desc", after: str = "", before: str = ""
    ) -> Page[Run]:
        """One page of a thread's runs."""
        return _client().threads.runs.list(thread_id, limit=limit, order=order, after=after, before=before)

    def query(self, thread_id: str, run_id: str) -> Run:
        """One run."""
        return _client().threads.runs.query(thread_id, run_id)


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

    def create(self, messages: Sequence[Any] = ()) -> Thread:
        """Create a thread, optionally with first messages."""
        return _client().threads.create(messages=[_plain(m) for m in messages])

    def query(self, thread_id: str) -> Thread:
        """One thread."""
        return _client().threads.query(thread_id)

    def delete(self, thread_id: str) -> DeletedObject:
        """Delete a thread."""
        return _client().threads.delete(thread_id)

    def update(self, thread_id: str, metadata: Mapping[str, str] | None = None) -> Thread:
        """Set a thread's metadata (sent, unlike the SDK)."""
        return _client().threads.update(thread_id, metadata=dict(metadata or {}))


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
