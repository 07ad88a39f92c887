"""Batches (as_completed / amap), poll_until, the rate limiter's pause, and the converter's wire rules."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from typing import Any

import attrs
import pytest

from aioagents._batch import BatchResult, Progress, amap, as_completed
from aioagents._converter import make_converter, register_wire_names, structure, to_camel, unstructure
from aioagents._exceptions import (
    AioAgentsError,
    APIConnectionError,
    APIError,
    PollTimeoutError,
    ResponseValidationError,
    UnprocessableEntityError,
)
from aioagents._polling import poll_until
from aioagents._ratelimit import RateLimiter
from aioagents._transport import Transport
from aioagents.testing import Fault

from .conftest import CoreServer


# -- as_completed / amap ---------------------------------------------------------------------------------------------
async def fail_on_threes(n: int) -> int:
    await asyncio.sleep(0.001 * (n % 4))
    if n % 3 == 0:
        raise ValueError(f"item {n} failed")
    return n * 10


async def test_as_completed_yields_every_index_once_with_errors_captured() -> None:
    results = [r async for r in as_completed(fail_on_threes, range(20), concurrency=4)]
    assert sorted(r.index for r in results) == list(range(20))
    for r in results:
        assert r.input == r.index
        if r.index % 3 == 0:
            assert not r.ok
            assert isinstance(r.error, ValueError)
            assert str(r.error) == f"item {r.index} failed"
            with pytest.raises(ValueError, match="failed"):
                r.unwrap()
        else:
            assert r.ok
            assert r.unwrap() == r.index * 10


@pytest.mark.parametrize("concurrency", [1, 3, 8])
async def test_as_completed_keeps_at_most_concurrency_calls_in_flight(concurrency: int) -> None:
    in_flight = peak = 0

    async def work(n: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.005)
        in_flight -= 1
        return n

    results = [r async for r in as_completed(work, range(30), concurrency=concurrency)]
    assert len(results) == 30
    assert peak == concurrency


async def test_progress_callback_counts_done_and_failed() -> None:
    seen: list[Progress] = []
    async for _ in as_completed(fail_on_threes, range(10), concurrency=3, on_progress=seen.append):
        pass
    assert [p.done for p in seen] == list(range(1, 11))
    assert seen[-1] == Progress(done=10, failed=4, total=10)
    assert all(p.total == 10 for p in seen)


async def test_leaving_early_cancels_the_calls_in_flight() -> None:
    cancelled: list[int] = []
    started: list[int] = []

    async def work(n: int) -> int:
        started.append(n)
        if n == 0:
            return n
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise
        return n

    before = asyncio.all_tasks()
    async with contextlib.aclosing(as_completed(work, range(1000), concurrency=5)) as results:
        async for first in results:
            assert first.index == 0
            break
    assert sorted(cancelled) == sorted(n for n in started if n != 0)
    assert len(started) <= 6  # inputs are pulled lazily: only what was in flight
    assert {t for t in asyncio.all_tasks() - before if not t.done()} == set()


@pytest.mark.parametrize("inputs_are_async", [False, True], ids=["iterable", "async-iterable"])
async def test_a_slow_consumer_holds_the_workers_to_two_results_per_worker_ahead(inputs_are_async: bool) -> None:
    pulled = 0

    def numbers() -> Iterator[int]:
        nonlocal pulled
        for n in range(200):
            pulled += 1
            yield n

    async def anumbers() -> AsyncIterator[int]:
        for n in numbers():
            yield n

    async def instant(n: int) -> int:
        return n

    taken = 0
    ahead: list[int] = []
    source: Any = anumbers() if inputs_are_async else numbers()
    async for item in as_completed(instant, source, concurrency=4):
        taken += 1
        ahead.append(pulled - taken)
        await asyncio.sleep(0.001)  # a slow consumer: the workers are far faster
        assert item.ok
    assert taken == 200
    assert max(ahead) <= 2 * 4  # never more than two slots per worker taken ahead of the consumer
    assert max(ahead) >= 4  # but the workers did run ahead


async def test_as_completed_takes_async_inputs() -> None:
    async def numbers() -> AsyncIterator[int]:
        for n in range(5):
            yield n

    async def double(n: int) -> int:
        return 2 * n

    assert sorted(r.unwrap() for r in [r async for r in as_completed(double, numbers())]) == [0, 2, 4, 6, 8]


async def test_an_error_in_the_inputs_themselves_is_raised() -> None:
    def inputs() -> Iterator[int]:
        yield 1
        raise RuntimeError("the input source broke")

    async def ident(n: int) -> int:
        return n

    with pytest.raises(RuntimeError, match="input source broke"):
        [r async for r in as_completed(ident, inputs())]


async def test_concurrency_below_one_is_refused() -> None:
    async def ident(n: int) -> int:
        return n

    with pytest.raises(ValueError, match="concurrency"):
        [r async for r in as_completed(ident, [1], concurrency=0)]


async def test_amap_returns_results_in_input_order_over_a_real_server(srv: CoreServer) -> None:
    t = Transport(srv.url)
    for _ in range(3):
        srv.inject(Fault.status_code(422), path="/ok", method="PUT")

    async def call(method: str) -> int:
        return (await t.request(method, "/ok", idempotent=True)).status

    methods = ["GET", "PUT", "POST", "PUT", "GET", "PUT", "PUT"]
    results = await amap(call, methods, concurrency=3)
    await t.aclose()
    assert [r.index for r in results] == list(range(len(methods)))
    failed = [r for r in results if not r.ok]
    assert len(failed) == 3
    assert all(isinstance(r.error, UnprocessableEntityError) and r.input == "PUT" for r in failed)
    assert all(r.value == 200 for r in results if r.ok)


def test_batch_result_is_immutable() -> None:
    result: BatchResult[int, int] = BatchResult(index=0, input=1, value=2)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.value = 3  # type: ignore[misc]


# -- poll_until ------------------------------------------------------------------------------------------------------
async def test_poll_until_returns_the_first_done_result() -> None:
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await poll_until(fetch, lambda n: n >= 4, interval=0.001, max_interval=0.002) == 4
    assert calls == 4


async def test_poll_until_timeout_raises_poll_timeout_error_with_the_last_result() -> None:
    calls = 0

    async def fetch() -> dict[str, object]:
        nonlocal calls
        calls += 1
        return {"status": "running", "call": calls}

    started = time.monotonic()
    with pytest.raises(PollTimeoutError) as info:
        await poll_until(fetch, lambda s: s["status"] == "done", timeout=0.3, interval=0.05, what="job j-1")
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 1.0
    assert info.value.last == {"status": "running", "call": calls}
    assert "job j-1" in str(info.value)
    # A job that is only slow is no connection error: `except APIConnectionError` must not catch it.
    assert not isinstance(info.value, APIConnectionError)
    assert not isinstance(info.value, APIError)
    assert isinstance(info.value, AioAgentsError)
    assert isinstance(info.value, TimeoutError)


async def test_poll_until_waits_grow_up_to_max_interval() -> None:
    stamps: list[float] = []

    async def fetch() -> int:
        stamps.append(time.monotonic())
        return len(stamps)

    # Uncapped, the waits would be 0.02, 0.2, 2, 20 s; capped at 0.05 s they are 0.02, 0.05, 0.05, 0.05. The bounds
    # leave a loaded machine plenty of scheduling slack and still tell the two apart.
    await poll_until(fetch, lambda n: n >= 5, interval=0.02, multiplier=10.0, max_interval=0.05)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps[0] >= 0.02
    assert gaps[1] >= 0.05
    assert all(g < 1.0 for g in gaps)


@pytest.mark.usefixtures("instant_retries")
async def test_poll_waits_are_instant_in_testing_mode() -> None:
    async def fetch() -> float:
        return time.monotonic()

    started = time.monotonic()
    with pytest.raises(PollTimeoutError):
        await poll_until(fetch, lambda _: False, timeout=0.2, interval=5.0)
    assert time.monotonic() - started < 1.0


# -- RateLimiter -----------------------------------------------------------------------------------------------------
async def test_a_paused_limiter_holds_every_acquire_until_the_pause_ends() -> None:
    limiter = RateLimiter(1000)
    limiter.pause(0.3)
    started = time.monotonic()
    await asyncio.gather(limiter.acquire(), limiter.acquire())
    assert time.monotonic() - started >= 0.29


async def test_a_shorter_pause_never_shortens_a_longer_one() -> None:
    limiter = RateLimiter(1000)
    limiter.pause(0.3)
    limiter.pause(0.01)
    started = time.monotonic()
    await limiter.acquire()
    assert time.monotonic() - started >= 0.29


async def test_a_non_positive_pause_does_nothing() -> None:
    limiter = RateLimiter(1000)
    limiter.pause(0)
    limiter.pause(-5)
    started = time.monotonic()
    await limiter.acquire()
    assert time.monotonic() - started < 1.0  # a pause of 5 s would show


async def test_the_limiter_keeps_its_rate() -> None:
    limiter = RateLimiter(20, per=1, burst=1)
    started = time.monotonic()
    for _ in range(5):
        await limiter.acquire()
    assert time.monotonic() - started >= 4 / 20 * 0.9


async def test_a_burst_is_taken_at_once_and_the_next_unit_waits_for_the_drain() -> None:
    limiter = RateLimiter(2, per=1, burst=3)
    started = time.monotonic()
    for _ in range(3):
        await limiter.acquire()
    assert time.monotonic() - started < 0.4  # without the burst, the third unit alone would wait 1 s
    await limiter.acquire()
    assert time.monotonic() - started >= 0.45


async def test_taking_more_than_the_burst_at_once_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot take"):
        await RateLimiter(10, per=60, burst=5).acquire(6)


def test_one_limiter_serves_several_event_loops() -> None:
    limiter = RateLimiter(1000)
    asyncio.run(limiter.acquire())
    asyncio.run(limiter.acquire())  # a bucket bound to the first (closed) loop would fail here


def test_loops_run_one_after_another_keep_the_per_loop_bucket() -> None:
    limiter = RateLimiter(1000)
    for _ in range(3):
        asyncio.run(limiter.acquire())
    assert not limiter._shared  # a closed loop does not count as a second user


def test_threads_with_their_own_loops_share_one_rate() -> None:
    # 2 threads x 15 units at 50/s with a burst of 1: together at least 29/50 s. A bucket per loop (the old
    # behaviour) lets each thread take its own 50/s and finishes in about half that.
    limiter = RateLimiter(50, per=1, burst=1)
    barrier = threading.Barrier(2)

    def worker() -> None:
        async def take() -> None:
            await limiter.acquire()  # registers this loop
            barrier.wait(5)
            for _ in range(14):
                await limiter.acquire()

        asyncio.run(take())

    threads = [threading.Thread(target=worker) for _ in range(2)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    elapsed = time.monotonic() - started
    assert limiter._shared
    assert elapsed >= 28 / 50 * 0.95, elapsed


def test_a_cancelled_wait_gives_its_reservation_back() -> None:
    limiter = RateLimiter(10, per=1, burst=1)
    other = asyncio.new_event_loop()
    other.run_until_complete(limiter.acquire())  # this loop stays open: the next one makes the limiter shared

    async def scenario() -> float:
        await limiter.acquire()
        waiter = asyncio.ensure_future(limiter.acquire())  # must wait: reserved beyond the burst
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return limiter._level

    try:
        level = asyncio.run(scenario())
    finally:
        other.close()
    assert limiter._shared
    assert level <= 1.0 + 1e-9  # only the unit actually taken is still in the bucket


def test_a_limiter_rejects_a_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(0)


# -- converter -------------------------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class Job:
    job_id: str
    created_at: datetime
    exit_code: int | None = None


@pytest.mark.parametrize(
    ("name", "wire"), [("job_id", "jobId"), ("a", "a"), ("created_at_ms", "createdAtMs"), ("x_", "x")]
)
def test_to_camel(name: str, wire: str) -> None:
    assert to_camel(name) == wire


def test_register_wire_names_round_trips() -> None:
    conv = make_converter(strict=True)
    register_wire_names(conv, Job, to_camel)
    wire = {"jobId": "j-1", "createdAt": "2024-05-01T12:00:00+00:00", "exitCode": 0}
    job = structure(wire, Job, conv=conv)
    assert job == Job(job_id="j-1", created_at=datetime(2024, 5, 1, 12, tzinfo=timezone.utc), exit_code=0)
    assert unstructure(job, conv=conv) == wire


def test_register_wire_names_with_a_dict_and_omit_none() -> None:
    conv = make_converter(strict=True)
    register_wire_names(conv, Job, {"job_id": "id"}, omit_none=True)
    job = Job(job_id="j-2", created_at=datetime(2024, 5, 1, tzinfo=timezone.utc))
    assert unstructure(job, conv=conv) == {"id": "j-2", "created_at": "2024-05-01T00:00:00+00:00"}
    assert structure(unstructure(job, conv=conv), Job, conv=conv) == job


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("2024-05-01T12:00:00Z", id="iso-z"),
        pytest.param("2024-05-01T12:00:00", id="naive-iso-is-utc"),
        pytest.param("2024-05-01T14:00:00+02:00", id="offset"),
        pytest.param(1714564800, id="epoch-seconds"),
    ],
)
def test_datetimes_are_aware_utc_whatever_the_wire_form(value: object) -> None:
    job = structure({"job_id": "j", "created_at": value}, Job, conv=make_converter(strict=True))
    assert job.created_at == datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    assert job.created_at.tzinfo is not None


def test_strict_decoding_rejects_unknown_fields() -> None:
    with pytest.raises(ResponseValidationError, match="Job"):
        structure({"job_id": "j", "created_at": 0, "surprise": 1}, Job, conv=make_converter(strict=True))


def test_lenient_decoding_ignores_unknown_fields() -> None:
    job = structure({"job_id": "j", "created_at": 0, "surprise": 1}, Job, conv=make_converter(strict=False))
    assert job.job_id == "j"


def test_a_wrong_shape_raises_validation_error_naming_the_field_and_keeping_the_body() -> None:
    body = {"job_id": "j", "created_at": 0, "exit_code": "not a number"}
    with pytest.raises(ResponseValidationError, match="exit_code") as info:
        structure(body, Job, conv=make_converter(strict=True))
    assert info.value.body == body


def test_a_missing_field_raises_validation_error() -> None:
    with pytest.raises(ResponseValidationError, match="job_id"):
        structure({"created_at": 0}, Job, conv=make_converter(strict=False))


async def test_a_slow_consumer_holds_back_the_inputs() -> None:
    # Results wait for the consumer; workers must not run ahead through all the inputs meanwhile.
    started = 0

    async def instant(n: int) -> int:
        nonlocal started
        started += 1
        return n

    consumed = 0
    async for _ in as_completed(instant, range(2000), concurrency=4):
        consumed += 1
        assert started - consumed <= 3 * 4
        await asyncio.sleep(0)
    assert consumed == 2000


async def test_a_pause_extended_while_waiting_holds_the_waiters_to_the_new_end() -> None:
    limiter = RateLimiter(1000)
    started = time.monotonic()
    limiter.pause(0.2)
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.1)
    limiter.pause(0.4)  # a second 429 with a longer Retry-After: now ends at 0.5 s
    await waiter
    assert time.monotonic() - started >= 0.49


@pytest.mark.parametrize("body", [None, "a string", 5, [1, 2], {"job_id": None, "created_at": 0}])
def test_a_body_of_the_wrong_shape_raises_validation_error(body: object) -> None:
    with pytest.raises(ResponseValidationError):
        structure(body, Job, conv=make_converter(strict=True))


class Status(str, enum.Enum):
    RUNNING = "running"
    DONE = "done"


@attrs.frozen(kw_only=True)
class Run:
    id: str
    status: Status


def test_strings_stay_strict_while_str_enums_and_numeric_ids_still_decode() -> None:
    run = structure({"id": 42, "status": "done"}, Run, conv=make_converter(strict=True))
    assert run == Run(id="42", status=Status.DONE)
    assert type(run.status) is Status
    with pytest.raises(ResponseValidationError):
        structure({"id": None, "status": "done"}, Run, conv=make_converter(strict=True))


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize(("wire", "decoded"), [(3, 3), (3.0, 3), ("3", 3), (-1, -1), (None, None)])
def test_an_int_field_takes_integral_values(strict: bool, wire: object, decoded: int | None) -> None:
    job = structure({"job_id": "j", "created_at": 0, "exit_code": wire}, Job, conv=make_converter(strict=strict))
    assert job.exit_code == decoded


@pytest.mark.parametrize("strict", [True, False])
def test_a_fraction_in_an_int_field_is_an_error_not_a_truncation(strict: bool) -> None:
    with pytest.raises(ResponseValidationError, match=r"expected int.*exit_code"):
        structure({"job_id": "j", "created_at": 0, "exit_code": 1.5}, Job, conv=make_converter(strict=strict))
