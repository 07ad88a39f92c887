"""One piece the compat modules share: a blocking stream whose failures come out as an SDK's exception types."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from aioagents import AioAgentsError

__all__ = ["TranslatedStream"]

T = TypeVar("T")


class TranslatedStream(Iterator[T]):
    """Iterates ``stream``; an aioagents error while reading is raised as ``translate(error)`` (the original kept as
    ``__cause__``), and each item comes out as ``convert(item)`` when given (an SDK's model of the event).
    ``close()`` or leaving a ``with`` block releases the stream's connection."""

    def __init__(
        self,
        stream: Iterator[Any],
        translate: Callable[[AioAgentsError], BaseException],
        convert: Callable[[Any], T] | None = None,
    ) -> None:
        self._stream = stream
        self._translate = translate
        self._convert = convert

    def __iter__(self) -> TranslatedStream[T]:
        return self

    def __next__(self) -> T:
        try:
            item = next(self._stream)
        except AioAgentsError as exc:
            raise self._translate(exc) from exc
        return item if self._convert is None else self._convert(item)

    def close(self) -> None:
        """Stop reading and release the connection."""
        close: Any = getattr(self._stream, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> TranslatedStream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
