"""One client shape for all five services (issue 12): the constructors agree, every client has ``with_options`` (a
copy on the same connections), and the calls take ``timeout``, ``max_retries`` and ``extra_headers`` for themselves.

Every test runs against each service's fake over a real loopback socket.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
import attrs
import pytest

from aioagents import APIError, APITimeoutError, BadRequestError, ClientClosedError, InvalidRequestError
from aioagents._client import ClientOptions, Endpoint, RequestOptions, ServiceClient, resolve_attempts
from aioagents.assistants import AssistantsClient
from aioagents.functions import ChatClient
from aioagents.interpreter import InterpreterClient
from aioagents.sandbox import SandboxClient
from aioagents.testing import (
    FakeAppBuilderServer,
    FakeInterpreterServer,
    FakeOpenAIServer,
    FakeSandboxFusionServer,
    FakeServer,
    FakeSimServer,
    Fault,
)
from aioagents.workflows import WorkflowsClient

SECRET = "sk-shape-secret-41c7"
MESSAGES = [{"role": "user", "content": "hi"}]


@attrs.frozen
class Case:
    """One service: its fake, how to build its client on a URL, and calls that take the per-call options."""

    name: str
    server: Callable[[], FakeServer]
    make: Callable[..., ServiceClient]
    url: Callable[[Any], str]
    call: Callable[..., Awaitable[Any]]  # retried by default on a 503 with Retry-After
    path: str
    timed: Callable[..., Awaitable[Any]]  # a call whose `timeout` is the HTTP timeout
    timed_path: str
    url_env: str


CASES = [
    Case(
        "sandbox",
        FakeSandboxFusionServer,
        lambda url, **kw: SandboxClient(url, **kw),
        lambda srv: srv.url,
        lambda c, **o: c.list_datasets(**o),
        "/list_datasets",
        lambda c, **o: c.list_datasets(**o),
        "/list_datasets",
        "SANDBOX_FUSION_ENDPOINT",
    ),
    Case(
        "interpreter",
        FakeInterpreterServer,
        lambda url, **kw: InterpreterClient(url, **kw),
        lambda srv: srv.url,
        lambda c, **o: c.execute("1 + 1", timeout=10, **o),
        "/execute",
        lambda c, **o: c.ping(**o),
        "/",
        "AIOAGENTS_INTERPRETER_URL",
    ),
    Case(
        "workflows",
        lambda: FakeSimServer(api_keys=[SECRET]),
        lambda url, **kw: WorkflowsClient(url, api_key=SECRET, **kw),
        lambda srv: srv.url,
        lambda c, **o: c.get_workflow_status("workflow-id", **o),
        "/api/workflows/workflow-id/status",
        lambda c, **o: c.get_workflow_status("workflow-id", **o),
        "/api/workflows/workflow-id/status",
        "SIM_BASE_URL",
    ),
    Case(
        "assistants",
        lambda: FakeAppBuilderServer(token=SECRET),
        lambda url, **kw: AssistantsClient(url, token=SECRET, **kw),
        lambda srv: srv.url,
        lambda c, **o: c.assistants.list(**o),
        "/v2/assistants/list",
        lambda c, **o: c.assistants.list(**o),
        "/v2/assistants/list",
        "GATEWAY_URL",
    ),
    Case(
        "chat",
        FakeOpenAIServer,
        lambda url, **kw: ChatClient(url, api_key=SECRET, **kw),
        lambda srv: srv.base_url,
        lambda c, **o: c.create(model="gpt-4o-mini", messages=MESSAGES, **o),
        "/v1/chat/completions",
        lambda c, **o: c.create(model="gpt-4o-mini", messages=MESSAGES, **o),
        "/v1/chat/completions",
        "OPENAI_BASE_URL",
    ),
]


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
async def svc(request: pytest.FixtureRequest, instant_retries: None) -> AsyncIterator[SimpleNamespace]:
    case: Case = request.param
    connections: list[object] = []
    trace = aiohttp.TraceConfig()

    async def created(session: object, ctx: object, params: object) -> None:
        connections.append(params)

    trace.on_connection_create_end.append(created)
    async with case.server() as srv:
        client = case.make(case.url(srv), trace_configs=[trace])
        try:
            yield SimpleNamespace(case=case, srv=srv, client=client, connections=connections)
        finally:
            await client.aclose()


def _seen(srv: FakeServer, path: str) -> list[Any]:
    return [r for r in srv.requests if r.path == path]


# -- per-call options --------------------------------------------------------------------------------------------
async def test_extra_headers_go_on_that_call_only(svc: SimpleNamespace) -> None:
    case, srv = svc.case, svc.srv
    await case.call(svc.client, extra_headers={"X-Trace-Id": "call-1"})
    await case.call(svc.client)
    first, second = _seen(srv, case.path)[-2:]
    assert first.header("X-Trace-Id") == "call-1"
    assert second.header("X-Trace-Id") is None


async def test_max_retries_zero_on_a_call_makes_one_attempt(svc: SimpleNamespace) -> None:
    case, srv = svc.case, svc.srv
    srv.inject(Fault.status_code(503, retry_after="0"), path=case.path, times=1)
    with pytest.raises(APIError):
        await case.call(svc.client, max_retries=0)
    assert len(_seen(srv, case.path)) == 1
    # The client's default (3 attempts) rides over the same fault.
    srv.inject(Fault.status_code(503, retry_after="0"), path=case.path, times=1)
    await case.call(svc.client)
    assert len(_seen(srv, case.path)) == 3


async def test_timeout_on_a_call(svc: SimpleNamespace) -> None:
    case, srv = svc.case, svc.srv
    srv.inject(Fault.delay(3.0), path=case.timed_path, times=1)
    with pytest.raises(APITimeoutError):
        await case.timed(svc.client, timeout=0.3, max_retries=0)


async def test_bad_max_retries_on_a_call_is_a_typed_error(svc: SimpleNamespace) -> None:
    with pytest.raises(InvalidRequestError):
        await svc.case.call(svc.client, max_retries=-1)
    assert _seen(svc.srv, svc.case.path) == []


# -- with_options -------------------------------------------------------------------------------------------------
async def test_with_options_is_a_copy_on_the_same_connections(svc: SimpleNamespace) -> None:
    case, srv, client = svc.case, svc.srv, svc.client
    copy = client.with_options(extra_headers={"X-Tenant": "blue"})
    assert type(copy) is type(client)
    assert copy.base_url == client.base_url
    await case.call(client)
    await case.call(copy)
    await case.call(client)
    a, b, c = _seen(srv, case.path)[-3:]
    assert (a.header("X-Tenant"), b.header("X-Tenant"), c.header("X-Tenant")) == (None, "blue", None)
    # Credentials travel on the copy too, and it never shows them.
    assert SECRET not in repr(copy)
    # One pool: the copy's request reused the original's kept-alive connection.
    assert len(svc.connections) == 1


async def test_with_options_max_retries_and_timeout(svc: SimpleNamespace) -> None:
    case, srv, client = svc.case, svc.srv, svc.client
    once = client.with_options(max_retries=0)
    srv.inject(Fault.status_code(503, retry_after="0"), path=case.path, times=1)
    with pytest.raises(APIError):
        await case.call(once)
    assert len(_seen(srv, case.path)) == 1
    srv.inject(Fault.status_code(503, retry_after="0"), path=case.path, times=1)
    await case.call(client)  # the original keeps its retries
    assert len(_seen(srv, case.path)) == 3

    if case.name != "interpreter":  # the interpreter's ping has its own ping_timeout
        hasty = client.with_options(timeout=0.3, max_retries=0)
        srv.inject(Fault.delay(3.0), path=case.timed_path, times=1)
        with pytest.raises(APITimeoutError):
            await case.timed(hasty)


async def test_closing_a_copy_leaves_the_pool_closing_the_original_stops_copies(svc: SimpleNamespace) -> None:
    case, client = svc.case, svc.client
    copy = client.with_options(max_retries=1)
    await copy.aclose()
    assert copy.closed
    assert not client.closed
    with pytest.raises(ClientClosedError):
        await case.call(copy)
    await case.call(client)
    other = client.with_options(timeout=30)
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await case.call(other)


async def test_with_options_rejects_disagreeing_retry_knobs(svc: SimpleNamespace) -> None:
    with pytest.raises(InvalidRequestError):
        svc.client.with_options(max_retries=0, max_attempts=3)


# -- the constructors agree ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_url_is_the_first_positional_argument(case: Case) -> None:
    cls = type(case.make("http://127.0.0.1:9"))
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert params[0].name in ("base_url", "endpoint")
    accepted = set(inspect.signature(cls.__init__).parameters)
    if "options" in accepted:  # ``**options: Unpack[ClientOptions]``, the one declaration
        accepted |= set(ClientOptions.__annotations__)
    for knob in ("timeout", "max_attempts", "max_retries", "session", "rate_limiter", "trust_env", "trace_configs"):
        assert knob in accepted, (cls.__name__, knob)
    assert isinstance(cls.endpoint_spec, Endpoint)
    assert issubclass(cls, ServiceClient)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_the_url_comes_from_the_argument_then_the_environment(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(case.url_env, "http://127.0.0.1:7/from-env")
    async with case.make(None) as from_env, case.make("http://127.0.0.1:8/given/") as given:
        assert from_env.base_url == "http://127.0.0.1:7/from-env"
        assert given.base_url == "http://127.0.0.1:8/given"
        assert repr(given).startswith(f"{type(given).__name__}(")
        assert SECRET not in repr(given)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize(
    ("knobs", "attempts"),
    [({}, 3), ({"max_retries": 0}, 1), ({"max_attempts": 1}, 1), ({"max_retries": 4}, 5), ({"max_attempts": 5}, 5)],
)
async def test_retry_knobs_mean_the_same_on_every_client(case: Case, knobs: dict[str, int], attempts: int) -> None:
    async with case.make("http://127.0.0.1:9", **knobs) as client:
        assert client._transport.retry.max_attempts == attempts


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize(
    "knobs", [{"max_attempts": 0}, {"max_retries": -1}, {"max_retries": 1, "max_attempts": 3}, {"max_retries": 1.5}]
)
def test_bad_retry_knobs_are_a_typed_error(case: Case, knobs: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        case.make("http://127.0.0.1:9", **knobs)


def test_resolve_attempts_table() -> None:
    assert resolve_attempts(None, None) is None
    assert resolve_attempts(None, 0) == 1
    assert resolve_attempts(2, None) == 2
    assert resolve_attempts(3, 2) == 3
    for bad in [(0, None), (None, -1), (True, None), (None, True), (2, 2)]:
        with pytest.raises(InvalidRequestError):
            resolve_attempts(*bad)


def test_the_sync_twin_of_with_options_is_a_sync_client_on_the_same_connections() -> None:
    from aioagents.sync import SandboxClient as SyncSandboxClient

    with FakeSandboxFusionServer().in_thread() as srv, SyncSandboxClient(srv.url) as client:
        copy = client.with_options(extra_headers={"X-Tenant": "green"}, max_retries=0)
        assert type(copy) is SyncSandboxClient
        assert copy.list_datasets() == client.list_datasets()
        tagged, plain = _seen(srv, "/list_datasets")[-2:]
        assert tagged.header("X-Tenant") == "green"
        assert plain.header("X-Tenant") is None


async def test_interpreter_file_calls_take_the_per_call_options(instant_retries: None) -> None:
    async with FakeInterpreterServer() as srv, InterpreterClient(srv.url) as client:
        await client.upload("a.txt", b"abc", extra_headers={"X-Trace-Id": "up"})
        assert await client.download("a.txt", extra_headers={"X-Trace-Id": "down"}) == b"abc"
        assert await client.exists("a.txt", extra_headers={"X-Trace-Id": "probe"})
        traced = [r.header("X-Trace-Id") for r in srv.requests if r.path.startswith("/files/")]
        assert traced == ["up", "down", "probe"]
        download = next(r.path for r in srv.requests if r.path.startswith("/files/download/"))
        srv.inject(Fault.status_code(503), path=download, times=1)
        with pytest.raises(APIError):
            await client.download("a.txt", max_retries=0)
        srv.inject(Fault.status_code(503), path=download, times=1)
        assert await client.download("a.txt") == b"abc"


# -- one declaration of the options --------------------------------------------------------------------------------
# Calls whose ``**`` is taken by something else name the options instead: ChatClient.create/stream (``**`` holds the
# request's fields) and WorkflowsClient.execute_with_retry (the original SDK's own max_retries).
NAMED_OPTIONS = {(ChatClient, "create"), (ChatClient, "stream"), (WorkflowsClient, "execute_with_retry")}
ON_THE_SHAPE = [SandboxClient, WorkflowsClient, InterpreterClient, ChatClient, AssistantsClient]


@pytest.mark.parametrize("cls", ON_THE_SHAPE, ids=lambda c: c.__name__)
def test_every_call_takes_the_options_from_their_one_declaration(cls: type[ServiceClient]) -> None:
    for name, method in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("_") or (cls, name) in NAMED_OPTIONS:
            continue
        params = inspect.signature(method).parameters
        restated = {"timeout", "max_retries", "extra_headers"} & set(params)
        options = params.get("options")
        if options is None:
            assert not restated - {"timeout"}, (cls.__name__, name, restated)
            continue
        assert options.kind is inspect.Parameter.VAR_KEYWORD
        assert options.annotation in ("Unpack[RequestOptions]", "Unpack[CallOptions]", "Unpack[ClientOptions]"), (
            cls.__name__,
            name,
        )
        # Only a call whose own `timeout` means something else (the interpreter's server wait) names it.
        assert restated <= {"timeout"}, (cls.__name__, name)
        assert not restated or options.annotation == "Unpack[CallOptions]", (cls.__name__, name)
    assert "with_options" not in vars(cls), "with_options is declared once, on ServiceClient"
    assert "__init__" in vars(cls)
    assert "options" in inspect.signature(cls.__init__).parameters


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_misspelt_client_option_is_a_type_error(case: Case) -> None:
    with pytest.raises(TypeError, match="timout"):
        case.make("http://127.0.0.1:9", timout=5)


async def test_a_misspelt_call_option_is_a_type_error(svc: SimpleNamespace) -> None:
    if svc.case.name == "chat":
        # ChatClient's ** carries the request's own fields (as the openai SDK's extra_body): an unknown keyword is a
        # field of the request body, sent as given (never taken for a per-call option); the OpenAI-like server
        # refuses the unknown argument with its 400.
        with pytest.raises(BadRequestError, match="max_retires"):
            await svc.case.call(svc.client, max_retires=0)
        (sent,) = _seen(svc.srv, svc.case.path)
        assert sent.json()["max_retires"] == 0
        return
    with pytest.raises(TypeError, match="max_retires"):
        await svc.case.call(svc.client, max_retires=0)
    assert _seen(svc.srv, svc.case.path) == []


async def test_options_built_once_serve_many_calls(svc: SimpleNamespace) -> None:
    options: RequestOptions = {"max_retries": 0, "extra_headers": {"X-Batch": "7"}}
    await svc.case.call(svc.client, **options)
    await svc.case.call(svc.client, **options)
    assert [r.header("X-Batch") for r in _seen(svc.srv, svc.case.path)] == ["7", "7"]
    assert options == {"max_retries": 0, "extra_headers": {"X-Batch": "7"}}
