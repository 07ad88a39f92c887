"""Fixtures for the workflows tests: a fake Sim server on loopback and a raw HTTP session to poke it with."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from aioagents.testing._sim import FakeSimServer
from aioagents.workflows import WorkflowsClient

API_KEY = "sk-test"


@pytest.fixture
async def sim() -> AsyncIterator[FakeSimServer]:
    """A fake Sim server running on the test's own loop."""
    srv = FakeSimServer(api_keys=[API_KEY])
    async with srv:
        yield srv


@pytest.fixture
def sim_thread() -> Iterator[FakeSimServer]:
    """A fake Sim server on a background loop, for blocking clients (the official SDK, compat)."""
    srv = FakeSimServer(api_keys=[API_KEY])
    with srv.in_thread():
        yield srv


@pytest.fixture
async def client(sim: FakeSimServer) -> AsyncIterator[WorkflowsClient]:
    """Our async client (v1, the default) talking to ``sim``."""
    async with WorkflowsClient(api_key=API_KEY, base_url=sim.url) as c:
        yield c


@pytest.fixture
async def client_v2(sim: FakeSimServer) -> AsyncIterator[WorkflowsClient]:
    """Our async client speaking v2 to ``sim``."""
    async with WorkflowsClient(api_key=API_KEY, base_url=sim.url, api_version="v2") as c:
        yield c


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session, only for checking what the fake puts on the wire."""
    async with aiohttp.ClientSession() as session:
        yield session
