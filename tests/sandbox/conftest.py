from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aioagents.sandbox import SandboxClient
from aioagents.testing._sandbox_fusion import FakeSandboxFusionServer


@pytest.fixture
async def srv() -> AsyncIterator[FakeSandboxFusionServer]:
    async with FakeSandboxFusionServer() as server:
        yield server


@pytest.fixture
async def client(srv: FakeSandboxFusionServer) -> AsyncIterator[SandboxClient]:
    async with SandboxClient(srv.url) as c:
        yield c
