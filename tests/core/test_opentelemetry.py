"""The OpenTelemetry recipe of docs/observability.md, run for real: the aiohttp client instrumentation's TraceConfig,
given to a client, records one span per attempt of a retried call, and (with the recipe's URL filter) no secret.

Skipped where ``opentelemetry-instrumentation-aiohttp-client`` and ``opentelemetry-sdk`` are not installed; the plain
TraceConfig path is tested in test_resilience.py without them."""

from __future__ import annotations

import pytest
import yarl

aiohttp_client = pytest.importorskip("opentelemetry.instrumentation.aiohttp_client")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
export = pytest.importorskip("opentelemetry.sdk.trace.export")

from aioagents._transport import Transport  # noqa: E402
from aioagents.testing import Fault  # noqa: E402

from .conftest import CANARY, CoreServer  # noqa: E402


def without_query(url: yarl.URL) -> str:
    """The recipe's URL filter: spans get the URL without its query string (which may carry keys)."""
    return str(url.with_query(None))


@pytest.mark.usefixtures("instant_retries")
async def test_the_opentelemetry_trace_config_records_every_attempt_and_no_secret(srv: CoreServer) -> None:
    exporter = in_memory.InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    trace_config = aiohttp_client.create_trace_config(url_filter=without_query, tracer_provider=provider)
    srv.inject(Fault.status_code(503), path="/ok", times=2)
    t = Transport(srv.url, secret_headers={"X-API-Key": CANARY}, trace_configs=[trace_config])
    try:
        await t.request("GET", f"/ok?key={CANARY}", idempotent=True)
    finally:
        await t.aclose()
    spans = exporter.get_finished_spans()
    assert len(spans) == 3
    statuses = [s.attributes.get("http.response.status_code", s.attributes.get("http.status_code")) for s in spans]
    assert statuses == [503, 503, 200]
    for span in spans:
        assert CANARY not in repr(dict(span.attributes or {}))
        assert CANARY not in span.name
