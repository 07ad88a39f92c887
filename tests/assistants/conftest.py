"""Fixtures for the AppBuilder assistants tests: the fake server and our client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aioagents.assistants import AssistantsClient
from aioagents.testing._appbuilder import FakeAppBuilderServer

TOKEN = "fake-appbuilder-token"


@pytest.fixture
async def srv() -> AsyncIterator[FakeAppBuilderServer]:
    async with FakeAppBuilderServer(token=TOKEN) as server:
        yield server


@pytest.fixture
async def client(srv: FakeAppBuilderServer) -> AsyncIterator[AssistantsClient]:
    async with AssistantsClient(token=TOKEN, base_url=srv.url) as c:
        yield c
