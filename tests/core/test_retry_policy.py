"""RetryPolicy and parse_retry_after are pure: these tables are their specification (no sockets needed)."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from aioagents._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    OutcomeUnknownError,
    ResponseValidationError,
    status_error_class,
)
from aioagents._retry import RetryPolicy, parse_retry_after

NOW = 1_700_000_000.0


def status(
    code: int, *, retry_after: float | None = None, retryable: bool | None = None, **headers: str
) -> APIStatusError:
    """A status error as the transport builds it (headers as aiohttp gives them: case-insensitive, original case)."""
    hdrs = CIMultiDictProxy(CIMultiDict({k.replace("_", "-").title(): v for k, v in headers.items()}))
    return status_error_class(code)("boom", status=code, headers=hdrs, retry_after=retry_after, retryable=retryable)


def hdrs(**headers: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-").title(): v for k, v in headers.items()}))


# -- parse_retry_after -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({}, None, id="absent"),
        pytest.param({"retry_after": "2"}, 2.0, id="seconds"),
        pytest.param({"retry_after": " 7 "}, 7.0, id="seconds-with-spaces"),
        pytest.param({"retry_after": "1.5"}, 1.5, id="float-seconds"),
        pytest.param({"retry_after": "0"}, 0.0, id="zero"),
        pytest.param({"retry_after_ms": "250"}, 0.25, id="retry-after-ms"),
        pytest.param({"retry_after_ms": "250", "retry_after": "9"}, 0.25, id="ms-wins-over-seconds"),
        pytest.param({"retry_after_ms": "soon", "retry_after": "3"}, 3.0, id="bad-ms-falls-back"),
        pytest.param({"retry_after_ms": "-5", "retry_after": "3"}, 3.0, id="negative-ms-falls-back"),
        pytest.param({"retry_after": "soon"}, None, id="garbage"),
        pytest.param({"retry_after": ""}, None, id="empty"),
        pytest.param({"retry_after": "-1"}, None, id="negative"),
        pytest.param({"retry_after": "nan"}, None, id="nan"),
        pytest.param({"retry_after": "inf"}, None, id="infinite"),
        pytest.param({"retry_after": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0, id="http-date"),
        pytest.param({"retry_after": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0, id="http-date-in-the-past"),
        pytest.param({"retry_after": "Mon, 99 Foo 2024 25:61:00 GMT"}, None, id="broken-date"),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(hdrs(**headers), now=NOW) == expected


def test_parse_retry_after_date_defaults_to_the_wall_clock() -> None:
    import time

    wait = parse_retry_after(hdrs(retry_after=email.utils.formatdate(time.time() + 120, usegmt=True)))
    assert wait is not None
    assert 118 <= wait <= 120


# -- is_retryable ----------------------------------------------------------------------------------------------
POLICY = RetryPolicy()


@pytest.mark.parametrize(
    ("error", "idempotent", "expected"),
    [
        # idempotent: connection trouble, timeouts and 408/429/5xx
        pytest.param(APIConnectionError("reset", sent=True), True, True, id="idem-reset"),
        pytest.param(APIConnectionError("refused", sent=False), True, True, id="idem-refused"),
        pytest.param(APITimeoutError("slow"), True, True, id="idem-timeout"),
        pytest.param(status(408), True, True, id="idem-408"),
        pytest.param(status(429), True, True, id="idem-429"),
        pytest.param(status(500), True, True, id="idem-500"),
        pytest.param(status(502), True, True, id="idem-502"),
        pytest.param(status(503), True, True, id="idem-503"),
        pytest.param(status(504), True, True, id="idem-504"),
        pytest.param(status(501), True, False, id="idem-501-not-in-the-list"),
        pytest.param(status(400), True, False, id="idem-400"),
        pytest.param(status(401), True, False, id="idem-401"),
        pytest.param(status(404), True, False, id="idem-404"),
        pytest.param(status(409), True, False, id="idem-409"),
        pytest.param(status(422), True, False, id="idem-422"),
        # non-idempotent: only when the request provably did not run
        pytest.param(APIConnectionError("refused", sent=False), False, True, id="nonidem-never-connected"),
        pytest.param(APIConnectionError("reset", sent=True), False, False, id="nonidem-reset-after-send"),
        pytest.param(APITimeoutError("slow"), False, False, id="nonidem-timeout"),
        pytest.param(APITimeoutError("no connection", sent=False), False, True, id="nonidem-connect-timeout"),
        pytest.param(status(429), False, True, id="nonidem-429"),
        pytest.param(status(503, retry_after=1.0), False, True, id="nonidem-503-with-retry-after"),
        pytest.param(status(503), False, False, id="nonidem-503-without-retry-after"),
        pytest.param(status(500), False, False, id="nonidem-500"),
        pytest.param(status(502), False, False, id="nonidem-502"),
        pytest.param(status(422), False, False, id="nonidem-422"),
        # the outcome-unknown error and non-transport errors are final
        pytest.param(OutcomeUnknownError("lost"), True, False, id="outcome-unknown"),
        pytest.param(ResponseValidationError("bad json"), True, False, id="validation"),
        pytest.param(APIError("other"), True, False, id="plain-api-error"),
    ],
)
def test_is_retryable(error: APIError, idempotent: bool, expected: bool) -> None:
    assert POLICY.is_retryable(error, idempotent=idempotent) is expected


def test_timeouts_are_not_retried_when_retry_timeouts_is_off() -> None:
    assert not RetryPolicy(retry_timeouts=False).is_retryable(APITimeoutError("slow"), idempotent=True)


def test_a_timeout_before_connecting_is_retried_even_when_retry_timeouts_is_off() -> None:
    policy = RetryPolicy(retry_timeouts=False)
    assert policy.is_retryable(APITimeoutError("no connection", sent=False), idempotent=True)


def test_retry_statuses_can_be_narrowed() -> None:
    policy = RetryPolicy(retry_statuses=frozenset({503}))
    assert not policy.is_retryable(status(500), idempotent=True)
    assert policy.is_retryable(status(503), idempotent=True)


@pytest.mark.parametrize(
    ("error", "idempotent", "expected"),
    [
        pytest.param(status(400, x_should_retry="true"), True, True, id="true-on-400"),
        pytest.param(status(500, x_should_retry="true"), False, True, id="true-on-nonidem-500"),
        pytest.param(status(503, x_should_retry="false"), True, False, id="false-on-503"),
        pytest.param(status(429, x_should_retry="false"), False, False, id="false-on-nonidem-429"),
    ],
)
def test_x_should_retry_overrides_the_status_rules(error: APIStatusError, idempotent: bool, expected: bool) -> None:
    assert POLICY.is_retryable(error, idempotent=idempotent) is expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(status(429, retryable=False), False, id="quota-429-final"),
        pytest.param(status(503, retryable=False, x_should_retry="true"), False, id="beats-x-should-retry"),
        pytest.param(status(400, retryable=True), True, id="service-says-retry-400"),
    ],
)
def test_retryable_set_by_the_service_beats_every_rule(error: APIStatusError, expected: bool) -> None:
    assert POLICY.is_retryable(error, idempotent=True) is expected


# -- decide ----------------------------------------------------------------------------------------------------
def test_decide_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    err = status(503)
    assert policy.decide(err, attempt=2, idempotent=True, rand=0.5).retry
    decision = policy.decide(err, attempt=3, idempotent=True, rand=0.5)
    assert not decision.retry
    assert decision.error is err


def test_max_attempts_one_never_retries() -> None:
    assert not RetryPolicy(max_attempts=1).decide(status(503), attempt=1, idempotent=True, rand=0.5).retry


def test_max_attempts_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_decide_does_not_retry_what_is_not_retryable() -> None:
    decision = POLICY.decide(status(422), attempt=1, idempotent=True, rand=0.5)
    assert not decision.retry
    assert decision.error is not None
    assert decision.error.status == 422  # type: ignore[attr-defined]


@pytest.mark.parametrize(("attempt", "base"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0), (9, 8.0)])
def test_backoff_grows_geometrically_to_max_delay(attempt: int, base: float) -> None:
    policy = RetryPolicy(max_attempts=10, initial_delay=0.5, multiplier=2.0, max_delay=8.0)
    assert policy.backoff_delay(attempt) == base
    # rand=0.5 is the middle of the jitter band: exactly the base delay
    assert policy.decide(status(503), attempt=attempt, idempotent=True, rand=0.5).delay == pytest.approx(base)


@pytest.mark.parametrize(("rand", "factor"), [(0.0, 0.75), (1.0, 1.25)])
def test_computed_backoff_is_jittered_both_ways(rand: float, factor: float) -> None:
    decision = RetryPolicy(jitter=0.25).decide(status(503), attempt=1, idempotent=True, rand=rand)
    assert decision.delay == pytest.approx(0.5 * factor)


@given(
    wait=st.floats(min_value=0.0, max_value=60.0, allow_nan=False),
    rand=st.floats(min_value=0.0, max_value=1.0),
    jitter=st.floats(min_value=0.0, max_value=1.0),
)
def test_jitter_never_shortens_a_server_requested_wait(wait: float, rand: float, jitter: float) -> None:
    decision = RetryPolicy(jitter=jitter).decide(status(429, retry_after=wait), attempt=1, idempotent=True, rand=rand)
    assert decision.retry
    assert wait <= decision.delay <= wait * (1 + jitter) + 1e-9


def test_a_server_wait_is_honoured_even_when_longer_than_max_delay() -> None:
    decision = RetryPolicy(max_delay=1.0).decide(status(503, retry_after=30.0), attempt=1, idempotent=True, rand=0.0)
    assert decision.delay == 30.0


def test_a_server_wait_beyond_the_cap_fails_at_once_with_the_wait_in_the_error() -> None:
    err = status(429, retry_after=120.0)
    decision = RetryPolicy(max_retry_after=60.0).decide(err, attempt=1, idempotent=True, rand=0.5)
    assert not decision.retry
    assert decision.error is err
    # The decision is pure: the wait goes into its reason; the error it was given is left as it was.
    assert decision.reason is not None
    assert "120s" in decision.reason
    assert "60s" in decision.reason
    assert str(err) == "429 boom retry_after=120s"


def test_a_server_wait_exactly_at_the_cap_is_waited() -> None:
    decision = RetryPolicy(max_retry_after=60.0).decide(status(429, retry_after=60.0), attempt=1, idempotent=True)
    assert decision.retry
    assert decision.delay >= 60.0


def test_policy_is_immutable_and_evolves() -> None:
    policy = RetryPolicy(max_attempts=3)
    other = policy.evolve(max_attempts=5)
    assert (policy.max_attempts, other.max_attempts) == (3, 5)
    assert other.backoff_delay(4) == 4.0
    with pytest.raises(AttributeError):
        policy.max_attempts = 4  # type: ignore[misc]
