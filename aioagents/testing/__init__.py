"""Fake servers of every API aioagents speaks, with fault injection, for our tests and yours.

Each fake is a real aiohttp server on a loopback port: ``async with FakeX() as srv`` on your loop, or
``with FakeX().in_thread() as srv`` for blocking clients. Every request is recorded (``srv.requests``) and faults are
queued with ``srv.inject(Fault...)``. ``set_testing()`` makes retry and polling waits instant.
"""

from aioagents._retry import set_testing
from aioagents.testing._appbuilder import FakeAppBuilderServer, RunScript, ToolCallScript
from aioagents.testing._interpreter import FakeInterpreterServer
from aioagents.testing._openai import FakeOpenAIServer, Reply, ToolCallReply
from aioagents.testing._redis import redis_server
from aioagents.testing._sandbox_fusion import FakeSandboxFusionServer
from aioagents.testing._server import FakeServer, Fault, RecordedRequest
from aioagents.testing._sim import FakeSimServer, FakeToolCall, FakeWorkflow

__all__ = [
    "FakeAppBuilderServer",
    "FakeInterpreterServer",
    "FakeOpenAIServer",
    "FakeSandboxFusionServer",
    "FakeServer",
    "FakeSimServer",
    "FakeToolCall",
    "FakeWorkflow",
    "Fault",
    "RecordedRequest",
    "Reply",
    "RunScript",
    "ToolCallReply",
    "ToolCallScript",
    "redis_server",
    "set_testing",
]
