"""Fake servers of every API aioagents speaks, with fault injection, for our tests and yours."""

from aioagents.testing._server import FakeServer, Fault, RecordedRequest

__all__ = ["FakeServer", "Fault", "RecordedRequest"]
