"""Logging: the ``aioagents`` logger, its structured fields, and the ``AIOAGENTS_LOG`` switch.

Every record the Transport writes carries, as record attributes, ``method``, ``url`` (without query string or
userinfo), ``attempt``, ``status`` (``None`` when no answer came), ``elapsed`` (seconds) and ``request_id`` (the
server's, when it sent one): a JSON formatter or a log shipper can use them as fields. Headers are never logged, so
keys in headers never reach a record; query strings are cut off, so keys in URLs do not either.

``AIOAGENTS_LOG=debug`` (every attempt) or ``AIOAGENTS_LOG=info`` (retries) in the environment turns on a stderr
handler when aioagents is imported, as ``OPENAI_LOG`` does for the OpenAI SDK; :func:`setup_logging` does the same from
code (a CLI's ``--verbose``).
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["setup_logging"]

_FORMAT = "[%(asctime)s %(levelname)s %(name)s] %(message)s"
_HANDLER_NAME = "aioagents-setup-logging"


def setup_logging(level: int | str = "info", *, stream: object = None) -> logging.Logger:
    """Send the ``aioagents`` logger's records at ``level`` (``"debug"``, ``"info"``, … or a ``logging`` level) to
    ``stream`` (default stderr), and return the logger. Calling it again changes the level; it never adds a second
    handler.

    >>> import aioagents
    >>> aioagents.setup_logging("debug")   # every attempt: method, URL, status, elapsed, request id
    <Logger aioagents (DEBUG)>
    """
    if isinstance(level, str):
        resolved = logging.getLevelName(level.strip().upper())
        if not isinstance(resolved, int):
            raise ValueError(f"unknown log level {level!r}: use debug, info, warning or error")
        level = resolved
    logger = logging.getLogger("aioagents")
    handler = next((h for h in logger.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)  # type: ignore[arg-type]
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(handler)
    elif stream is not None and isinstance(handler, logging.StreamHandler):
        handler.setStream(stream)
    handler.setLevel(level)
    logger.setLevel(level)
    return logger


def setup_from_env() -> None:
    """Apply ``AIOAGENTS_LOG`` (``debug`` or ``info``) if it is set; an unknown value is ignored."""
    value = os.environ.get("AIOAGENTS_LOG", "").strip().lower()
    if value in ("debug", "info"):
        setup_logging(value)
